// Egress policy for user-supplied destinations, which are an SSRF vector: SMTP hosts, and the
// token endpoint of a `custom` OAuth provider. Only public unicast addresses on the allowed ports
// (SMTP's, HTTPS's), resolved once and connected to by address (so a second DNS answer cannot
// swap in a private one), TLS still verified against the name.
import ipaddr from "ipaddr.js";
import { lookup } from "node:dns/promises";
import { ApiError } from "../http.ts";

/** Ports SMTP submission and relay use; anything else needs the deployment allowlist. */
export const SMTP_PORTS: readonly number[] = [465, 587, 25, 2465, 2587, 2525];

/** Ports an OAuth token endpoint may use (HTTPS); others need MAILROOM_OAUTH_ALLOWED_PORTS or the allowlist. */
export const TOKEN_ENDPOINT_PORTS: readonly number[] = [443];

/** What the deployment allows. */
export interface EgressPolicy {
  /** SMTP_PORTS plus MAILROOM_SMTP_ALLOWED_PORTS. */
  allowedPorts: Set<number>;
  /** TOKEN_ENDPOINT_PORTS plus MAILROOM_OAUTH_ALLOWED_PORTS: where a custom provider's token endpoint may listen. */
  tokenEndpointPorts: Set<number>;
  /** Hosts (optionally host:port) exempt from the address and port rules, e.g. the local catcher. */
  allowlist: { host: string; port?: number }[];
  /** Ports the platform blocks outright (hosted Supabase: 25 and 587). */
  platformBlockedPorts: Set<number>;
  /** Whether `security: "none"` (no TLS at all) may be used. */
  allowPlaintext: boolean;
}

/** A host checked by the policy: where to connect, and the name to verify TLS against. */
export interface ResolvedTarget {
  /** IP address to connect to. */
  address: string;
  /** TLS server name (SNI and certificate check); undefined for IP-literal hosts. */
  servername?: string;
}

/** Resolves a host name to all of its addresses (node:dns lookup in production). */
export type Resolver = (host: string) => Promise<string[]>;

/** The system resolver (getaddrinfo, so /etc/hosts counts as it would for the socket). */
export const systemResolver: Resolver = async (host) => {
  const answers = await lookup(host, { all: true, verbatim: true });
  // IPv4 first: many hosting networks have no IPv6 egress.
  return answers.sort((a, b) => a.family - b.family).map((a) => a.address);
};

/** How long a name's addresses are reused (getaddrinfo gives no TTL; a short one keeps changes visible). */
export const DNS_CACHE_MS = 10_000;
const DNS_CACHE_ENTRIES = 1_000;

/**
 * `resolve` with its answers kept for `ttlMs` per name (at most 1,000 names, oldest dropped):
 * a config that sends often pays one lookup per `ttlMs`, not one per message. Only answers
 * are kept, never verdicts: every send still checks every address against the policy, and
 * connects only to an address it checked. Failures are not kept.
 */
export function cachedResolver(resolve: Resolver, ttlMs = DNS_CACHE_MS): Resolver {
  const cache = new Map<string, { answers: Promise<string[]>; expires: number }>();
  return (host) => {
    const now = Date.now();
    const hit = cache.get(host);
    if (hit && hit.expires > now) return hit.answers;
    cache.delete(host);
    if (cache.size >= DNS_CACHE_ENTRIES) cache.delete(cache.keys().next().value!);
    const answers = resolve(host);
    cache.set(host, { answers, expires: now + ttlMs });
    answers.catch(() => cache.get(host)?.answers === answers && cache.delete(host));
    return answers;
  };
}

/** The system resolver behind a short cache (see {@linkcode cachedResolver}). */
export const cachedSystemResolver: Resolver = cachedResolver(systemResolver);

function parseList(raw: string | undefined): string[] {
  return (raw ?? "").split(",").map((s) => s.trim()).filter(Boolean);
}

function parsePorts(raw: string | undefined, name: string): number[] {
  return parseList(raw).map((p) => {
    const port = Number(p);
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`${name}: "${p}" is not a port`);
    return port;
  });
}

function parseAllowlistEntry(entry: string): { host: string; port?: number } {
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(entry);
  if (bracketed) return { host: bracketed[1].toLowerCase(), port: bracketed[2] ? Number(bracketed[2]) : undefined };
  const parts = entry.split(":");
  if (parts.length === 2 && /^\d+$/.test(parts[1])) return { host: parts[0].toLowerCase(), port: Number(parts[1]) };
  return { host: entry.toLowerCase() };
}

/** Whether this looks like hosted Supabase, whose network blocks outbound 25 and 587. */
export function isHostedSupabase(env: Record<string, string | undefined>): boolean {
  if (env.SB_REGION) return true;
  try {
    return /\.supabase\.(co|red)$/.test(new URL(env.SUPABASE_URL ?? "").hostname);
  } catch {
    return false;
  }
}

/**
 * Read the policy from the environment: MAILROOM_SMTP_ALLOWED_PORTS, MAILROOM_OAUTH_ALLOWED_PORTS,
 * MAILROOM_EGRESS_ALLOWLIST, MAILROOM_PLATFORM_BLOCKED_PORTS, MAILROOM_ALLOW_PLAINTEXT_SMTP.
 */
export function loadEgressPolicy(env: Record<string, string | undefined>): EgressPolicy {
  const blocked = env.MAILROOM_PLATFORM_BLOCKED_PORTS;
  return {
    allowedPorts: new Set([
      ...SMTP_PORTS,
      ...parsePorts(env.MAILROOM_SMTP_ALLOWED_PORTS, "MAILROOM_SMTP_ALLOWED_PORTS"),
    ]),
    tokenEndpointPorts: new Set([
      ...TOKEN_ENDPOINT_PORTS,
      ...parsePorts(env.MAILROOM_OAUTH_ALLOWED_PORTS, "MAILROOM_OAUTH_ALLOWED_PORTS"),
    ]),
    allowlist: parseList(env.MAILROOM_EGRESS_ALLOWLIST).map(parseAllowlistEntry),
    platformBlockedPorts: new Set(
      blocked !== undefined
        ? parsePorts(blocked, "MAILROOM_PLATFORM_BLOCKED_PORTS")
        : isHostedSupabase(env)
        ? [25, 587]
        : [],
    ),
    allowPlaintext: env.MAILROOM_ALLOW_PLAINTEXT_SMTP === "true",
  };
}

const LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/;
const FORBIDDEN_NAMES = /(^|\.)(localhost|internal|local|localdomain|home\.arpa|invalid|test)$/;

/** A host as written in a config: a DNS name or an IP literal, normalised. */
export interface ParsedHost {
  host: string;
  ip?: ipaddr.IPv4 | ipaddr.IPv6;
}

/**
 * What the policy is guarding, as its refusals name it: an SMTP host, or the host of a custom
 * OAuth provider's token endpoint. Both follow the same rules; each has its own codes.
 */
export interface Destination {
  /** How messages name it ("SMTP host"). */
  noun: string;
  /** A server of this kind a deployment might run on its own network (for the allowlist hint). */
  example: string;
  codes: { invalid: string; forbidden: string; notFound: string; port?: string };
  /** For a URL: the field it is in, as refusals name it (`token_url`, `url`). */
  field?: string;
  /**
   * Only allowlist entries that name the port exempt a host (a user's attachment URL must not
   * reach every HTTPS service of a host allowlisted for its SMTP server).
   */
  allowlistNeedsPort?: boolean;
}

/** A config's SMTP server. */
export const SMTP_HOST: Destination = {
  noun: "SMTP host",
  example: "a local Mailpit",
  codes: { invalid: "smtp_host_invalid", forbidden: "smtp_host_forbidden", notFound: "smtp_host_not_found" },
};

/** A webhook's endpoint (the user's own server receiving their message events). */
export const WEBHOOK_URL: Destination = {
  noun: "Webhook host",
  example: "a service of your own",
  codes: {
    invalid: "webhook_url_invalid",
    forbidden: "webhook_url_forbidden",
    notFound: "webhook_url_not_found",
    port: "webhook_url_port_not_allowed",
  },
  field: "url",
  allowlistNeedsPort: true,
};

/** A config's IMAP server (bounces read back, Sent copies). */
export const IMAP_HOST: Destination = {
  noun: "IMAP host",
  example: "a local Dovecot",
  codes: {
    invalid: "imap_host_invalid",
    forbidden: "imap_host_forbidden",
    notFound: "imap_host_not_found",
    port: "imap_port_not_allowed",
  },
  field: "host",
};

/** Ports IMAP uses: 993 (implicit TLS) and 143 (STARTTLS); others need the allowlist. */
export const IMAP_PORTS: readonly number[] = [993, 143];

/** The token endpoint of a custom OAuth provider (`oauth.token_url`). */
export const TOKEN_ENDPOINT: Destination = {
  noun: "Token endpoint host",
  example: "an identity provider",
  codes: {
    invalid: "oauth_token_url_invalid",
    forbidden: "oauth_token_url_forbidden",
    notFound: "oauth_token_url_not_found",
    port: "oauth_token_url_port_not_allowed",
  },
  field: "token_url",
};

/** Where an attachment given by URL is fetched from (and every redirect on the way). */
export const ATTACHMENT_URL: Destination = {
  noun: "Attachment URL host",
  example: "a file server",
  codes: {
    invalid: "attachment_url_invalid",
    forbidden: "attachment_url_forbidden",
    notFound: "attachment_url_not_found",
    port: "attachment_url_port_not_allowed",
  },
  field: "url",
  allowlistNeedsPort: true,
};

function invalidHost(destination: Destination, host: string, why: string): ApiError {
  return new ApiError(400, destination.codes.invalid, `${destination.noun} ${JSON.stringify(host)} ${why}`, { host });
}

/**
 * Parse and normalise a host: lower case, no trailing dot, IDN to punycode, every IPv4
 * spelling (decimal, hex, octal, short forms) and IPv6 (bracketed or not) recognised.
 */
export function parseHost(input: string, destination: Destination = SMTP_HOST): ParsedHost {
  // Pure, and asked for the same few hosts on every send: remembered (failures are not).
  const known = parsedHosts.get(input);
  if (known) return known;
  const parsed = parseHostOnce(input, destination);
  if (parsedHosts.size >= PARSED_HOSTS) parsedHosts.delete(parsedHosts.keys().next().value!);
  parsedHosts.set(input, Object.freeze(parsed));
  return parsed;
}

const PARSED_HOSTS = 1_000;
const parsedHosts = new Map<string, ParsedHost>();

/**
 * The address `s` spells, or null. Every IPv4 spelling is made of digits, hex digits, `x` and
 * dots, and every IPv6 one has a colon: anything else is a host name, told apart without
 * asking ipaddr.js (whose `isValid` answers a host name by throwing and catching inside).
 */
export function ipLiteral(s: string): ipaddr.IPv4 | ipaddr.IPv6 | null {
  if (!s.includes(":") && !/^[0-9a-fx.]+$/i.test(s)) return null;
  return ipaddr.isValid(s) ? ipaddr.parse(s) : null;
}

function parseHostOnce(input: string, destination: Destination): ParsedHost {
  const invalid = (why: string) => invalidHost(destination, input, why);
  const raw = input.trim();
  if (!raw || raw.length > 253) throw invalid("must be 1 to 253 characters");
  if (/[\s/\\@?#]/.test(raw) || /^[a-z][a-z0-9+.-]*:\/\//i.test(raw)) {
    throw invalid("must be a host name or IP address, not a URL");
  }
  const unbracketed = raw.startsWith("[") && raw.endsWith("]") ? raw.slice(1, -1) : raw;
  if (unbracketed.includes("%")) throw invalid("must not carry an IPv6 zone");
  const literal = ipLiteral(unbracketed);
  if (literal) return { host: unbracketed.toLowerCase(), ip: literal };
  if (unbracketed !== raw) throw invalid("is not a valid IPv6 address");

  let ascii: string;
  try {
    ascii = new URL(`http://${raw.replace(/\.$/, "")}`).hostname;
  } catch {
    throw invalid("is not a valid host name");
  }
  // The URL parser turns numeric spellings into dotted quads; those are IP literals.
  const spelled = ipLiteral(ascii);
  if (spelled) return { host: ascii, ip: spelled };
  const labels = ascii.split(".");
  if (!labels.every((l) => LABEL.test(l)) || /^\d+$/.test(labels[labels.length - 1])) {
    throw invalid("is not a valid host name");
  }
  return { host: ascii };
}

/** Why an address may not be connected to, or null when it is public unicast. */
export function forbiddenRange(address: ipaddr.IPv4 | ipaddr.IPv6): string | null {
  let ip = address;
  if (ip.kind() === "ipv6") {
    const v6 = ip as ipaddr.IPv6;
    if (v6.isIPv4MappedAddress()) {
      ip = v6.toIPv4Address();
    } else if (v6.parts.slice(0, 6).every((part) => part === 0)) {
      // Deprecated IPv4-compatible form (::a.b.c.d); ipaddr.js calls it unicast.
      return "ipv4Compatible";
    }
  }
  const range = ip.range();
  return range === "unicast" ? null : range;
}

function allowlisted(policy: EgressPolicy, host: string, port: number, destination?: Destination): boolean {
  const portless = !destination?.allowlistNeedsPort;
  return policy.allowlist.some((entry) =>
    entry.host === host && ((portless && entry.port === undefined) || entry.port === port)
  );
}

/** The settings that loosen the policy, named in its refusals (they are the deployment's, not a user's). */
export const EGRESS_SETTINGS = {
  allowlist: "MAILROOM_EGRESS_ALLOWLIST",
  ports: "MAILROOM_SMTP_ALLOWED_PORTS",
  plaintext: "MAILROOM_ALLOW_PLAINTEXT_SMTP",
  tokenEndpointPorts: "MAILROOM_OAUTH_ALLOWED_PORTS",
} as const;

/** How a deployment exempts one server, e.g. a Mailpit on its own network. */
function allowlistHint(destination: Destination, host: string, port: number): string {
  return `A server on the deployment's own network (${destination.example}, say) is allowed by listing it in the ` +
    `functions' environment: ${EGRESS_SETTINGS.allowlist}=${host}:${port} (host or host:port, comma-separated; ` +
    `\`npm run dev\` passes it through)`;
}

function forbidden(destination: Destination, host: string, port: number, why: string): ApiError {
  return new ApiError(
    422,
    destination.codes.forbidden,
    `${destination.noun} ${JSON.stringify(host)} is not allowed: ${why}. ${allowlistHint(destination, host, port)}`,
    { host, setting: EGRESS_SETTINGS.allowlist },
  );
}

/** Check a port against the policy (config time and send time). */
export function checkPort(policy: EgressPolicy, host: string, port: number): void {
  if (allowlisted(policy, host, port)) return;
  if (!policy.allowedPorts.has(port)) {
    throw new ApiError(
      422,
      "smtp_port_not_allowed",
      `Port ${port} is not an SMTP port; use one of ${[...policy.allowedPorts].join(", ")}, or allow it on this ` +
        `deployment with ${EGRESS_SETTINGS.ports}=${port} (comma-separated) or for this host alone with ` +
        `${EGRESS_SETTINGS.allowlist}=${host}:${port}`,
      { port, allowed_ports: [...policy.allowedPorts], settings: [EGRESS_SETTINGS.ports, EGRESS_SETTINGS.allowlist] },
    );
  }
}

/** Check what can be checked without DNS: syntax, name, literal address, port. */
export function checkHostStatically(policy: EgressPolicy, input: string, port: number): ParsedHost {
  const parsed = checkNameStatically(policy, SMTP_HOST, input, port);
  checkPort(policy, parsed.host, port);
  return parsed;
}

/** The address rules every destination shares: a fully qualified name or a public literal address. */
function checkNameStatically(policy: EgressPolicy, destination: Destination, input: string, port: number): ParsedHost {
  const parsed = parseHost(input, destination);
  if (allowlisted(policy, parsed.host, port, destination)) return parsed;
  if (!parsed.ip && !parsed.host.includes(".")) {
    throw new ApiError(
      400,
      destination.codes.invalid,
      `${destination.noun} ${JSON.stringify(input)} is not a fully qualified host name. ${
        allowlistHint(destination, parsed.host, port)
      }`,
      { host: input, setting: EGRESS_SETTINGS.allowlist },
    );
  }
  if (parsed.ip) {
    const range = forbiddenRange(parsed.ip);
    if (range) throw forbidden(destination, parsed.host, port, `${range} address`);
  } else if (FORBIDDEN_NAMES.test(parsed.host)) {
    throw forbidden(destination, parsed.host, port, "reserved or internal name");
  }
  return parsed;
}

/** Options of a resolution: the resolver (the system's, cached, by default) and its timeout. */
export interface ResolveOptions {
  resolve?: Resolver;
  timeoutMs?: number;
}

/**
 * Resolve a host for connecting: every answer must be public unicast (a name that
 * resolves to any private address is refused), and the first one is used.
 */
export async function resolveTarget(
  policy: EgressPolicy,
  input: string,
  port: number,
  options: ResolveOptions = {},
): Promise<ResolvedTarget> {
  return await resolveChecked(policy, SMTP_HOST, checkHostStatically(policy, input, port), port, options);
}

/** The address to connect to for a host that passed the static checks: resolved once, every answer checked. */
async function resolveChecked(
  policy: EgressPolicy,
  destination: Destination,
  parsed: ParsedHost,
  port: number,
  options: ResolveOptions,
): Promise<ResolvedTarget> {
  const { resolve = cachedSystemResolver, timeoutMs = 10_000 } = options;
  if (parsed.ip) return { address: parsed.ip.toString() };
  let answers: string[];
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error("DNS timeout")), timeoutMs);
    });
    answers = await Promise.race([resolve(parsed.host), timeout]);
  } catch {
    throw notFound(destination, parsed.host, "could not be resolved");
  } finally {
    clearTimeout(timer);
  }
  if (answers.length === 0) throw notFound(destination, parsed.host, "has no addresses");
  if (!allowlisted(policy, parsed.host, port, destination)) {
    for (const answer of answers) {
      const address = ipLiteral(answer);
      const range = address ? forbiddenRange(address) : "unparseable";
      if (range) throw forbidden(destination, parsed.host, port, `it resolves to a ${range} address`);
    }
  }
  return { address: answers[0], servername: parsed.host };
}

function notFound(destination: Destination, host: string, why: string): ApiError {
  return new ApiError(502, destination.codes.notFound, `${destination.noun} ${JSON.stringify(host)} ${why}`, { host });
}

/** A custom provider's token endpoint, checked: the URL, the port, and where to connect. */
export interface ResolvedEndpoint extends ResolvedTarget {
  url: URL;
  port: number;
}

/**
 * Check a token endpoint URL without DNS: https only, no credentials or fragment in it, a host
 * that passes the address rules of an SMTP host, and an HTTPS port (443, MAILROOM_OAUTH_ALLOWED_PORTS)
 * the platform does not block. The allowlist exempts a host (or host:port) from the address and port rules.
 *
 * @throws ApiError 400 `oauth_token_url_invalid`, 422 `oauth_token_url_forbidden`,
 *   422 `oauth_token_url_port_not_allowed`.
 */
export function checkTokenUrlStatically(policy: EgressPolicy, input: string): { url: URL; parsed: ParsedHost } {
  return checkHttpsUrlStatically(policy, TOKEN_ENDPOINT, input);
}

/**
 * Check an HTTPS URL of a destination without DNS, as {@linkcode checkTokenUrlStatically} does
 * for a token endpoint; the refusals carry the destination's codes.
 */
export function checkHttpsUrlStatically(
  policy: EgressPolicy,
  destination: Destination,
  input: string,
): { url: URL; parsed: ParsedHost } {
  const invalid = (why: string) => new ApiError(400, destination.codes.invalid, `${destination.field ?? "url"} ${why}`);
  let url: URL;
  try {
    url = new URL(input);
  } catch {
    throw invalid("is not a URL");
  }
  if (url.protocol !== "https:") throw invalid("must be an https URL");
  if (url.username || url.password) throw invalid("must not carry a user name or password");
  if (url.hash) throw invalid("must not have a fragment");
  const port = tokenUrlPort(url);
  const parsed = checkNameStatically(policy, destination, url.hostname, port);
  // An allowlist entry for a host (an SMTP server, say) exempts its address, not every port of
  // it: another port needs an entry naming it, and a port the platform blocks stays blocked.
  const portNamed = policy.allowlist.some((entry) => entry.host === parsed.host && entry.port === port);
  if (policy.platformBlockedPorts.has(port) || (!policy.tokenEndpointPorts.has(port) && !portNamed)) {
    throw new ApiError(
      422,
      destination.codes.port ?? destination.codes.forbidden,
      `Port ${port} is not allowed for ${destination.noun.toLowerCase()}s; use ${
        [...policy.tokenEndpointPorts].filter((p) => !policy.platformBlockedPorts.has(p)).join(", ")
      }, or allow it on this deployment with ${EGRESS_SETTINGS.tokenEndpointPorts}=${port} (comma-separated) or ` +
        `for this host alone with ${EGRESS_SETTINGS.allowlist}=${parsed.host}:${port}`,
      {
        port,
        allowed_ports: [...policy.tokenEndpointPorts],
        settings: [EGRESS_SETTINGS.tokenEndpointPorts, EGRESS_SETTINGS.allowlist],
      },
    );
  }
  return { url, parsed };
}

/** The port a token URL names, or HTTPS's. */
function tokenUrlPort(url: URL): number {
  return url.port === "" ? 443 : Number(url.port);
}

/**
 * Check a token endpoint URL and resolve its host once, as an SMTP host is resolved: every
 * answer public unicast (unless allowlisted); the first is where to connect, with TLS verified
 * against the URL's host name.
 *
 * @throws ApiError as {@linkcode checkTokenUrlStatically}; 422 `oauth_token_url_forbidden` when
 *   the name resolves to a non-public address; 502 `oauth_token_url_not_found`.
 * @example
 * ```ts
 * const endpoint = await resolveTokenUrl(policy, "https://idp.example.com/oauth2/token");
 * // { url, port: 443, address: "93.184.215.14", servername: "idp.example.com" }
 * ```
 */
export async function resolveTokenUrl(
  policy: EgressPolicy,
  input: string,
  options: ResolveOptions = {},
): Promise<ResolvedEndpoint> {
  return await resolveHttpsUrl(policy, TOKEN_ENDPOINT, input, options);
}

/**
 * Check an IMAP server without DNS: the address rules of an SMTP host, plaintext only where the
 * deployment allows it, and an IMAP port (993, 143) unless the allowlist names the host.
 *
 * @throws ApiError 400 `imap_host_invalid`, 422 `imap_host_forbidden` / `imap_port_not_allowed` /
 *   `plaintext_not_allowed`.
 */
export function checkImapServerStatically(
  policy: EgressPolicy,
  server: { host: string; port: number; security: string },
): ParsedHost {
  if (server.security === "none" && !policy.allowPlaintext) {
    throw new ApiError(
      422,
      "plaintext_not_allowed",
      `security "none" sends the IMAP password unencrypted and is disabled on this deployment; use tls (993) or ` +
        `starttls (143), or set ${EGRESS_SETTINGS.plaintext}=true for a server on the deployment's own network`,
      { setting: EGRESS_SETTINGS.plaintext },
    );
  }
  const parsed = checkNameStatically(policy, IMAP_HOST, server.host, server.port);
  if (!IMAP_PORTS.includes(server.port) && !allowlisted(policy, parsed.host, server.port)) {
    throw new ApiError(
      422,
      "imap_port_not_allowed",
      `Port ${server.port} is not an IMAP port; use 993 (tls) or 143 (starttls), or allow it for this host with ` +
        `${EGRESS_SETTINGS.allowlist}=${parsed.host}:${server.port}`,
      { port: server.port, allowed_ports: [...IMAP_PORTS], settings: [EGRESS_SETTINGS.allowlist] },
    );
  }
  return parsed;
}

/** Check an IMAP server and resolve its host once, every answer public unless allowlisted. */
export async function resolveImapServer(
  policy: EgressPolicy,
  server: { host: string; port: number; security: string },
  options: ResolveOptions = {},
): Promise<ResolvedTarget> {
  const parsed = checkImapServerStatically(policy, server);
  return await resolveChecked(policy, IMAP_HOST, parsed, server.port, options);
}

/** Check an HTTPS URL of a destination and resolve its host once, as {@linkcode resolveTokenUrl} does. */
export async function resolveHttpsUrl(
  policy: EgressPolicy,
  destination: Destination,
  input: string,
  options: ResolveOptions = {},
): Promise<ResolvedEndpoint> {
  const { url, parsed } = checkHttpsUrlStatically(policy, destination, input);
  const port = tokenUrlPort(url);
  return { url, port, ...await resolveChecked(policy, destination, parsed, port, options) };
}

/** Refuse, before any network, what the platform would silently drop. */
export function checkPlatformPort(policy: EgressPolicy, port: number): void {
  if (policy.platformBlockedPorts.has(port)) {
    throw new ApiError(
      422,
      "smtp_port_blocked_by_platform",
      `Outbound port ${port} is blocked by the hosting platform (Supabase Edge Functions block 25 and 587); ` +
        "use implicit TLS on 465 or your provider's 2465/2587",
      { port },
    );
  }
}

/** Warnings for a config's port, given at config time so nobody learns it from a timeout. */
export function portWarnings(policy: EgressPolicy, port: number): { code: string; message: string }[] {
  if (policy.platformBlockedPorts.has(port)) {
    return [{
      code: "port_blocked_by_platform",
      message: `This deployment cannot reach port ${port} (the platform blocks it); sending with this config will ` +
        "fail with smtp_port_blocked_by_platform. Use implicit TLS on 465 (or 2465/2587 where your provider offers them).",
    }];
  }
  if (port !== 25 && port !== 587) return [];
  return [{
    code: "port_blocked_on_hosted_supabase",
    message: `Hosted Supabase Edge Functions block outbound port ${port}; this config works locally but not when ` +
      "deployed. Prefer implicit TLS on 465 (or 2465/2587 where your provider offers them).",
  }];
}

/**
 * Everything about a server that can be refused before any network: plaintext when the
 * deployment does not allow it, platform-blocked ports, host syntax, literal address, port.
 */
export function checkServerStatically(
  policy: EgressPolicy,
  server: { host: string; port: number; security: string },
  options: { sending: boolean } = { sending: true },
): ParsedHost {
  if (server.security === "none" && !policy.allowPlaintext) {
    throw new ApiError(
      422,
      "plaintext_not_allowed",
      'security "none" sends credentials and mail unencrypted and is disabled on this deployment; use tls or ' +
        `starttls, or, for a server on the deployment's own network (a local Mailpit, say), set ` +
        `${EGRESS_SETTINGS.plaintext}=true in the functions' environment (and list the server in ` +
        `${EGRESS_SETTINGS.allowlist} when it is on a private address)`,
      { setting: EGRESS_SETTINGS.plaintext },
    );
  }
  // A config on a blocked port is still saved (with a warning): it works elsewhere.
  if (options.sending) checkPlatformPort(policy, server.port);
  return checkHostStatically(policy, server.host, server.port);
}
