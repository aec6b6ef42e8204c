// Email addresses in nodemailer's vocabulary ({name, address}), reduced to one canonical
// form that the To/Cc header, the SMTP envelope, the audit row and the API response all
// share, so no second parser downstream can read an address differently.
//
// What we accept (and why):
// - A dot-atom local part (RFC 5321 `Dot-string`): ASCII atext, or UTF-8 letters and
//   symbols (RFC 6531). A quoted local part is accepted only when its content is itself a
//   dot-atom, and is then written unquoted (`"john"@example.com` -> `john@example.com`,
//   RFC 5321 4.1.2: quote only when needed). Anything that would need quotes (spaces,
//   commas, `<`, `>`, `@`, `"`, `\`) is refused: such a local part is read differently by
//   different parsers, and that is how one address became several RCPT commands.
// - A host name (IDN allowed, written in ASCII/punycode and lower case; in UTF-8 when the
//   local part is UTF-8, as RFC 6531 and nodemailer's header do). Domain literals
//   (`a@[127.0.0.1]`) are refused: through a user's relay they reach internal hosts.
// - A display name, as `Name <addr>`, `"Quoted \"Name\"" <addr>` or `{email, name}`.
//   RFC 5322 comments, groups and obsolete syntax are refused.
// The parser is a single left-to-right pass with bounded input: no backtracking, so no
// input can make it slow (the library used before was super-linear on parentheses).
import { domainToASCII, domainToUnicode } from "node:url";

/** A mailbox: what nodemailer calls an address object. */
export interface Address {
  name?: string;
  address: string;
}

/** How callers may spell a recipient: "a@b.c", "Name <a@b.c>" or {email, name}. */
export type RecipientInput = string | { email: string; name?: string };

/** Longest recipient string (`Name <addr>`), in UTF-16 code units: one header line. */
export const MAX_MAILBOX_INPUT = 998;
/** Longest display name, in characters. */
export const MAX_DISPLAY_NAME = 200;
const MAX_LOCAL_PART_OCTETS = 64;
const MAX_DOMAIN = 253;

// CR, LF and NUL would let a value break out of its header line.
const HEADER_BREAKERS = /[\r\n\0]/;
// Other control characters, and format characters (bidi overrides, zero-width) that make a
// name or address read differently from what it is.
const INVISIBLE = /[\p{Cc}\p{Cf}]/u;
// RFC 5322 atext, plus any visible non-ASCII character (RFC 6531 UTF8-non-ascii).
const ATOM = String.raw`(?:[A-Za-z0-9!#$%&'*+/=?^_\x60{|}~-]|[^\x00-\x7F\p{C}\p{Z}])+`;
const DOT_ATOM = new RegExp(`^${ATOM}(?:\\.${ATOM})*$`, "u");
const LDH_LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

/** Parse one mailbox into its canonical form; returns an error message instead of throwing. */
export function parseAddress(input: RecipientInput): Address | { error: string } {
  const raw = typeof input === "string" ? input : input.email;
  const separateName = typeof input === "string" ? undefined : input.name;
  if (typeof raw !== "string") return { error: "is not a valid email address" };
  if (raw.length > MAX_MAILBOX_INPUT) return { error: `exceeds ${MAX_MAILBOX_INPUT} characters` };
  if (HEADER_BREAKERS.test(raw) || (separateName !== undefined && HEADER_BREAKERS.test(separateName))) {
    return { error: "must not contain CR, LF or NUL" };
  }

  const split = splitNameAndSpec(raw.trim());
  if ("error" in split) return split;
  if (typeof input !== "string" && split.name !== undefined) {
    return { error: "email must be a bare address when name is given separately" };
  }
  const name = (separateName ?? split.name ?? "").trim();
  if (name.length > MAX_DISPLAY_NAME) return { error: `display name exceeds ${MAX_DISPLAY_NAME} characters` };
  if (INVISIBLE.test(name)) return { error: "display name must not contain control or invisible format characters" };

  const address = canonicalAddress(split.spec);
  if (typeof address !== "string") return address;
  return name ? { name, address } : { address };
}

/**
 * The canonical form of a bare address (`local@domain`): local part unquoted where that is
 * possible, domain in lower-case ASCII. Used for config sender addresses as well.
 */
export function canonicalAddress(spec: string): string | { error: string } {
  const at = spec.lastIndexOf("@");
  if (at <= 0 || at === spec.length - 1) return { error: "is not a valid email address" };
  const local = canonicalLocalPart(spec.slice(0, at));
  if (typeof local !== "string") return local;
  const domain = canonicalDomain(spec.slice(at + 1));
  if (typeof domain !== "string") return domain;
  // A non-ASCII local part needs SMTPUTF8 anyway; the domain then goes in UTF-8 too (RFC 6531),
  // which is also how nodemailer writes such an address into the header.
  return needsSmtpUtf8(local) ? `${local}@${domainToUnicode(domain)}` : `${local}@${domain}`;
}

/** Whether `address` needs SMTPUTF8 (RFC 6531): a non-ASCII local part. */
export function needsSmtpUtf8(address: string): boolean {
  return /[^\p{ASCII}]/u.test(address);
}

function splitNameAndSpec(text: string): { name?: string; spec: string } | { error: string } {
  if (!text.endsWith(">")) {
    if (/[<>]/.test(text)) return { error: "is not a valid email address" };
    return { spec: text };
  }
  const open = text.lastIndexOf("<");
  if (open < 0) return { error: "is not a valid email address" };
  const spec = text.slice(open + 1, -1).trim();
  if (/[<>]/.test(spec)) return { error: "is not a valid email address" };
  const phrase = text.slice(0, open).trim();
  if (phrase === "") return { spec };
  const name = displayName(phrase);
  return typeof name === "string" ? { name, spec } : name;
}

function displayName(phrase: string): string | { error: string } {
  if (!phrase.startsWith('"')) {
    if (/["<>\\]/.test(phrase)) return { error: 'display name must be quoted ("...") to contain " < > or \\' };
    return phrase;
  }
  const content = unquote(phrase);
  return content ?? { error: "display name has unbalanced quotes" };
}

/** The content of a quoted string (`"..."` with `\` escapes), or undefined if it is not exactly one. */
function unquote(text: string): string | undefined {
  if (text.length < 2 || !text.startsWith('"') || !text.endsWith('"')) return undefined;
  let out = "";
  for (let i = 1; i < text.length - 1; i++) {
    const c = text[i];
    if (c === '"') return undefined;
    if (c === "\\") {
      i++;
      if (i >= text.length - 1) return undefined;
      out += text[i];
    } else {
      out += c;
    }
  }
  return out;
}

function canonicalLocalPart(local: string): string | { error: string } {
  let value = local;
  if (local.startsWith('"')) {
    const content = unquote(local);
    if (content === undefined || !DOT_ATOM.test(content)) {
      return { error: "has a quoted local part; only local parts that need no quotes are accepted" };
    }
    value = content;
  } else if (!DOT_ATOM.test(local)) {
    return { error: "is not a valid email address" };
  }
  if (new TextEncoder().encode(value).length > MAX_LOCAL_PART_OCTETS) {
    return { error: `local part exceeds ${MAX_LOCAL_PART_OCTETS} octets` };
  }
  return value;
}

function canonicalDomain(domain: string): string | { error: string } {
  if (domain.startsWith("[")) return { error: "has a domain literal ([...]); use a host name" };
  if (domain.length > MAX_DOMAIN || INVISIBLE.test(domain)) return { error: "is not a valid email address" };
  // domainToASCII applies UTS #46 (IDN to punycode, lower case) and returns "" when it cannot.
  const ascii = domainToASCII(domain);
  const labels = ascii.split(".");
  if (!ascii || ascii.length > MAX_DOMAIN || !labels.every((label) => LDH_LABEL.test(label))) {
    return { error: "has a domain that is not a valid host name" };
  }
  if (labels.length < 2) return { error: "domain must be fully qualified" };
  if (/^[0-9]+$/.test(labels[labels.length - 1])) return { error: "has a domain that is not a valid host name" };
  return ascii;
}

/** Recipients by header, in nodemailer's vocabulary. */
export interface Recipients {
  to: Address[];
  cc?: Address[];
  bcc?: Address[];
}

/**
 * Drop repeated recipients across to, cc and bcc, keeping the first occurrence in the order
 * to, cc, bcc (so an address in both to and bcc stays visible in to). Addresses compare
 * case-insensitively in full (local part too, as practically every server does) and with the
 * domain in ASCII form, so `a@bücher.de` and `A@xn--bcher-kva.de` are one recipient.
 *
 * @example
 * ```ts
 * dedupeRecipients({ to: [{ address: "a@example.com" }], bcc: [{ address: "A@EXAMPLE.com" }] });
 * // { to: [{ address: "a@example.com" }], cc: [], bcc: [] }
 * ```
 */
export function dedupeRecipients(recipients: Recipients): Required<Recipients> {
  const seen = new Set<string>();
  const keep = (list: Address[] | undefined) =>
    (list ?? []).filter((recipient) => {
      const key = recipientKey(recipient.address);
      if (seen.has(key)) return false;
      seen.add(key);
      return true;
    });
  return { to: keep(recipients.to), cc: keep(recipients.cc), bcc: keep(recipients.bcc) };
}

/**
 * The key under which two spellings of one mailbox compare equal: case-insensitive in full,
 * the domain in ASCII (what {@linkcode dedupeRecipients} compares).
 */
export function recipientKey(address: string): string {
  const at = address.lastIndexOf("@");
  if (at < 0) return address.toLowerCase();
  const domain = address.slice(at + 1);
  return `${address.slice(0, at).toLowerCase()}@${(domainToASCII(domain) || domain).toLowerCase()}`;
}

/**
 * How many recipients over to, cc and bcc (count after {@linkcode dedupeRecipients}).
 *
 * @example
 * ```ts
 * countRecipients({ to: [{ address: "a@example.com" }], cc: [{ address: "b@example.com" }] }); // 2
 * ```
 */
export function countRecipients(recipients: Recipients): number {
  return recipients.to.length + (recipients.cc?.length ?? 0) + (recipients.bcc?.length ?? 0);
}
