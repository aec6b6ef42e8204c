// Will mail from this config reach the inbox? What DNS can tell: whether the From domain has an
// SPF record and whether it names the sending provider, and whether it publishes a DMARC policy
// (Gmail and Yahoo require both for bulk senders since 2024). Said in plain words, with what to
// add; never a reason to refuse a config (DNS may be private, or still propagating).
import { resolveTxt as nodeResolveTxt } from "node:dns/promises";
import { PRESETS, type ProviderPreset } from "../presets/providers.ts";

/** TXT records of a name, each joined from its strings; [] when the name has none. */
export type TxtResolver = (name: string) => Promise<string[]>;

/** The runtime's resolver (Deno's and the Edge Runtime's node:dns). */
export const systemTxtResolver: TxtResolver = async (name) => {
  try {
    return (await nodeResolveTxt(name)).map((parts) => parts.join(""));
  } catch (error) {
    const code = (error as { code?: string })?.code;
    if (code === "ENOTFOUND" || code === "ENODATA") return [];
    throw error;
  }
};

/** What the check found. */
export interface DeliverabilityReport {
  domain: string;
  /** `false` when DNS could not be asked (the rest is then unknown). */
  checked: boolean;
  spf: { found: boolean; record: string | null; covers_provider: boolean | null; provider: string | null };
  dmarc: { found: boolean; record: string | null; policy: "none" | "quarantine" | "reject" | null };
  /** `likely_inbox`, `may_land_in_spam`, or `unknown` when DNS could not be asked. */
  verdict: "likely_inbox" | "may_land_in_spam" | "unknown";
  /** What to change, in plain words. */
  hints: string[];
}

/** The provider that sends through `host` (an SMTP server or a send API), from the presets' list. */
function providerOf(host: string): ProviderPreset | undefined {
  const name = host.toLowerCase();
  return PRESETS.find((p) => p.sending.domains.some((d) => name === d || name.endsWith(`.${d}`)));
}

/** Mailbox providers' own domains: their senders' SPF and DMARC are the provider's business. */
const MAILBOX_DOMAINS =
  /^(gmail|googlemail|outlook|hotmail|live|msn|icloud|me|mac|yahoo|ymail|fastmail|zoho)\.[a-z.]+$/;

/**
 * Check `fromEmail`'s domain for a config that sends through `host`.
 *
 * @example
 * ```ts
 * await checkDeliverability("me@acme.example", "smtp.sendgrid.net", resolver);
 * // { verdict: "may_land_in_spam", hints: ["Add include:sendgrid.net to the SPF record of acme.example", ...] }
 * ```
 */
export async function checkDeliverability(
  fromEmail: string,
  host: string,
  resolve: TxtResolver = systemTxtResolver,
  timeoutMs = 3_000,
): Promise<DeliverabilityReport> {
  const domain = fromEmail.slice(fromEmail.lastIndexOf("@") + 1).toLowerCase();
  const preset = providerOf(host);
  const provider = preset
    ? { name: preset.name, includes: preset.sending.spf_includes, add: `include:${preset.sending.spf_includes[0]}` }
    : null;
  const report: DeliverabilityReport = {
    domain,
    checked: false,
    spf: { found: false, record: null, covers_provider: null, provider: provider?.name ?? null },
    dmarc: { found: false, record: null, policy: null },
    verdict: "unknown",
    hints: [],
  };
  if (MAILBOX_DOMAINS.test(domain)) {
    return {
      ...report,
      checked: true,
      verdict: "likely_inbox",
      hints: [`${domain} is the mailbox provider's own domain: its SPF and DMARC are the provider's`],
    };
  }
  let spfRecords: string[];
  let dmarcRecords: string[];
  try {
    [spfRecords, dmarcRecords] = await withTimeout(
      Promise.all([resolve(domain), resolve(`_dmarc.${domain}`)]),
      timeoutMs,
    );
  } catch {
    return { ...report, hints: [`DNS could not be asked about ${domain} from here; check SPF and DMARC yourself`] };
  }
  report.checked = true;

  const spf = spfRecords.filter((r) => /^v=spf1(\s|$)/i.test(r.trim()));
  if (spf.length === 0) {
    report.hints.push(
      `${domain} has no SPF record: receivers cannot tell your server may send for it. Add a TXT record ` +
        `"v=spf1 ${provider?.add ?? "include:<your provider's SPF>"} ~all"`,
    );
  } else if (spf.length > 1) {
    report.spf = { ...report.spf, found: true, record: spf.join(" | ") };
    report.hints.push(`${domain} has ${spf.length} SPF records; receivers treat that as an error: merge them into one`);
  } else {
    const record = spf[0].trim();
    const covers = provider
      ? provider.includes.some((include) =>
        new RegExp(`(^|\\s)[+~?-]?include:${escape(include)}(\\s|$)`, "i").test(record)
      )
      : null;
    report.spf = { found: true, record, covers_provider: covers, provider: provider?.name ?? null };
    if (covers === false) report.hints.push(`Add ${provider!.add} to the SPF record of ${domain}`);
    if (/\+all\b/i.test(record)) report.hints.push(`The SPF record of ${domain} ends in +all: anyone may send as you`);
  }

  const dmarc = dmarcRecords.filter((r) => /^v=DMARC1\s*(;|$)/i.test(r.trim()));
  if (dmarc.length === 0) {
    report.hints.push(
      `${domain} publishes no DMARC policy: Gmail and Yahoo require one of bulk senders. Add a TXT record at ` +
        `_dmarc.${domain}: "v=DMARC1; p=none; rua=mailto:dmarc@${domain}"`,
    );
  } else {
    const record = dmarc[0].trim();
    const policy = /(?:^|;)\s*p\s*=\s*(none|quarantine|reject)\b/i.exec(record)?.[1].toLowerCase() as
      | "none"
      | "quarantine"
      | "reject"
      | undefined;
    report.dmarc = { found: true, record, policy: policy ?? null };
  }

  const spfOk = report.spf.found && spf.length === 1 && report.spf.covers_provider !== false;
  report.verdict = spfOk && report.dmarc.found ? "likely_inbox" : "may_land_in_spam";
  if (report.verdict === "may_land_in_spam") {
    report.hints.push(
      "Until then, mail from this config may land in spam, most of all at Gmail, Yahoo and Outlook.com",
    );
  }
  return report;
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error("DNS timeout")), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
