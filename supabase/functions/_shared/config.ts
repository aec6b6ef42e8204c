// Deployment configuration, read once from the environment into a typed object.
import { type EgressPolicy, loadEgressPolicy } from "./smtp/egress.ts";
import { type CompositionLimits, loadCompositionLimits } from "./mail/compose.ts";
import type { SmtpSettings } from "./smtp/session.ts";
import { DEFAULT_POOL_OPTIONS, type PoolOptions } from "./smtp/pool.ts";
import { type BulkLimits, DEFAULT_CPU_BUDGET_MS, loadBulkLimits } from "./outbox/limits.ts";
import { type AttachmentLimits, loadAttachmentLimits } from "./attachments/limits.ts";
import { DEFAULT_BODY_BUDGET_BYTES } from "./admission.ts";
import ipaddr from "ipaddr.js";

/** Everything the functions need from their environment. */
export interface Config {
  /** Base URL of the Supabase project, e.g. https://abc.supabase.co */
  supabaseUrl: string;
  /** Postgres connection string (on hosted Supabase: the transaction pooler). */
  dbUrl: string;
  /** Whether `dbUrl` goes through a transaction pooler (no prepared statements). */
  dbPooled: boolean;
  jwt: {
    /** Inline JWKS JSON; when absent the JWKS is fetched from `jwksUrl`. */
    jwks?: { keys: Record<string, unknown>[] };
    jwksUrl: string;
    /** Legacy HS256 secret, accepted as a fallback when set. */
    secret?: string;
    issuer: string;
    /** Whether Supabase anonymous sign-ins (is_anonymous) may use the API. */
    allowAnonymousUsers?: boolean;
  };
  /** Timeouts, trust and the EHLO name of every SMTP session. */
  smtp: SmtpSettings;
  /** Reuse of SMTP connections across a function instance's sends; null: a new one per send. */
  smtpPool: PoolOptions | null;
  /** Where SMTP connections may go. */
  egress: EgressPolicy;
  /**
   * The page where the owner approves a held send (MAILROOM_APPROVAL_URL, e.g. the dashboard's
   * `https://app.example.com/approvals`): a message's is `<url>/<id>`, a batch's
   * `<url>/batch/<batch_id>`. The MCP tools send the person there (URL-mode elicitation).
   */
  approvalUrl?: string;
  /**
   * A static page that confirms an unsubscribe with a button (MAILROOM_UNSUBSCRIBE_PAGE_URL, e.g.
   * the dashboard's `https://app.example.com/unsubscribe.html`): a GET of an unsubscribe link is
   * sent there (303) with its token; unset, the function explains in plain text.
   */
  unsubscribePageUrl?: string;
  /**
   * OAuth mailboxes: the providers' endpoints, replaced only to point at the local stand-ins
   * (local/oauth_standin.ts) in development and tests; `http:` is allowed only for loopback ones.
   * `caCerts`: extra CAs a custom provider's token endpoint may be signed by (MAILROOM_OAUTH_CA_CERTS).
   */
  oauth: {
    tokenUrl?: string;
    graphUrl?: string;
    gmailUrl?: string;
    allowHttp: boolean;
    timeoutMs: number;
    caCerts?: string;
  };
  /** Size and count limits of a message. */
  limits: CompositionLimits;
  /** SMTP config verifications a user may run per minute. */
  verifyPerMinute: number;
  /** Server-side keys that may start the outbox worker (secret API keys, legacy service-role key). */
  workerKeys: string[];
  /**
   * MAILROOM_UNSUBSCRIBE_SECRETS (comma-separated, the first signs): the one-click unsubscribe
   * links' keys; empty: derived from the secret API keys (see _shared/consent).
   */
  unsubscribeSecrets: string[];
  /** How long one process-outbox run keeps claiming. */
  outboxBudgetMs: number;
  /** How often the worker reads each mailbox's inbox for bounce reports (MAILROOM_MAILBOX_CHECK_SECONDS). */
  mailboxCheckSeconds: number;
  /** CPU time one process-outbox run spends (the platform stops an invocation at 2 s). */
  outboxCpuBudgetMs: number;
  /** Request bodies one instance holds at once (admission by bytes). */
  bodyBudgetBytes: number;
  /** Limits of one send-bulk request (MAILROOM_BULK_MAX_RECIPIENTS). */
  bulk: BulkLimits;
  /** Stored attachments: largest file, storage per user, retention, URL fetch timeout. */
  attachments: AttachmentLimits;
  /** Browser origins the MCP endpoint accepts (MAILROOM_ALLOWED_ORIGINS), e.g. `https://app.example.com`. */
  allowedOrigins: string[];
}

/** Raised when the environment cannot produce a usable configuration. */
export class ConfigError extends Error {
  override name = "ConfigError";
}

type Env = Record<string, string | undefined>;

function required(env: Env, name: string): string {
  const value = env[name]?.trim();
  if (!value) throw new ConfigError(`missing environment variable ${name}`);
  return value;
}

function positiveInt(env: Env, name: string, fallback: number): number {
  const raw = env[name]?.trim();
  if (!raw) return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value <= 0) {
    throw new ConfigError(`${name} must be a positive integer, got "${raw}"`);
  }
  return value;
}

/** `true` or `false` (any case), else `fallback` when unset. */
function flag(env: Env, name: string, fallback: boolean): boolean {
  const raw = env[name]?.trim().toLowerCase();
  if (!raw) return fallback;
  if (raw !== "true" && raw !== "false") throw new ConfigError(`${name} must be true or false, got "${env[name]}"`);
  return raw === "true";
}

function parseJwks(raw: string | undefined): Config["jwt"]["jwks"] {
  if (!raw?.trim()) return undefined;
  try {
    const parsed = JSON.parse(raw);
    const keys = Array.isArray(parsed) ? parsed : parsed?.keys;
    if (!Array.isArray(keys)) throw new Error("no keys array");
    return { keys };
  } catch (error) {
    throw new ConfigError(`SUPABASE_JWKS is not a JWKS document: ${(error as Error).message}`);
  }
}

const HOST_NAME = /^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/i;

/**
 * The name we greet SMTP servers with (EHLO): MAILROOM_SMTP_EHLO_NAME, else the host of
 * SUPABASE_URL, so servers see the project's public name and never the function's internal
 * host name. An IP address becomes an address literal (`[127.0.0.1]`), as RFC 5321 asks.
 */
/**
 * A page's URL (MAILROOM_APPROVAL_URL, MAILROOM_UNSUBSCRIBE_PAGE_URL): https (http only for
 * loopback, as local development serves it), or unset.
 */
function pageUrl(name: string, configured: string | undefined): string | undefined {
  const value = configured?.trim();
  if (!value) return undefined;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new ConfigError(`${name} is not a URL: "${value}"`);
  }
  const loopback = ["127.0.0.1", "localhost", "[::1]"].includes(url.hostname);
  if (url.protocol !== "https:" && !(url.protocol === "http:" && loopback)) {
    throw new ConfigError(`${name} must be an https URL (http only on loopback)`);
  }
  return value.replace(/\/+$/, "");
}

function ehloName(configured: string | undefined, supabaseUrl: string): string {
  const value = configured?.trim();
  if (value) {
    if (!HOST_NAME.test(value) && !/^\[[0-9a-f:.IPv6]+\]$/i.test(value)) {
      throw new ConfigError(`MAILROOM_SMTP_EHLO_NAME must be a host name or an address literal, got "${value}"`);
    }
    return value;
  }
  let host: string;
  try {
    host = new URL(supabaseUrl).hostname.replace(/^\[|\]$/g, "");
  } catch {
    throw new ConfigError(`SUPABASE_URL is not a URL: "${supabaseUrl}"`);
  }
  if (ipaddr.IPv4.isValid(host) && ipaddr.IPv4.isValidFourPartDecimal(host)) return `[${host}]`;
  if (ipaddr.IPv6.isValid(host)) return `[IPv6:${host}]`;
  if (!HOST_NAME.test(host)) throw new ConfigError(`SUPABASE_URL has no usable host name for EHLO: "${host}"`);
  return host.toLowerCase();
}

/**
 * The keys process-outbox accepts: every value of SUPABASE_SECRET_KEYS (the platform's JSON
 * map of `sb_secret_...` keys) and, while a project still has it, the legacy
 * SUPABASE_SERVICE_ROLE_KEY.
 */
/** MAILROOM_UNSUBSCRIBE_SECRETS: comma-separated secrets of at least 32 characters, the first signing. */
function unsubscribeSecrets(raw: string | undefined): string[] {
  const secrets = (raw ?? "").split(",").map((s) => s.trim()).filter((s) => s !== "");
  if (secrets.some((s) => s.length < 32)) {
    throw new ConfigError("MAILROOM_UNSUBSCRIBE_SECRETS: each secret needs at least 32 characters");
  }
  return secrets;
}

function workerKeys(env: Env): string[] {
  const keys: string[] = [];
  const raw = env.SUPABASE_SECRET_KEYS?.trim();
  if (raw) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(raw);
    } catch {
      throw new ConfigError("SUPABASE_SECRET_KEYS must be a JSON object of key names to keys");
    }
    if (!parsed || typeof parsed !== "object" || Array.isArray(parsed)) {
      throw new ConfigError("SUPABASE_SECRET_KEYS must be a JSON object of key names to keys");
    }
    for (const value of Object.values(parsed)) if (typeof value === "string" && value.length >= 16) keys.push(value);
  }
  const legacy = env.SUPABASE_SERVICE_ROLE_KEY?.trim();
  if (legacy && legacy.length >= 16) keys.push(legacy);
  return keys;
}

/**
 * MAILROOM_ALLOWED_ORIGINS: comma-separated exact origins (`scheme://host[:port]`, http or https),
 * normalised as browsers send them (`https://A.example:443` is `https://a.example`). No `*`, no
 * wildcards, no `null`: a request without Origin (a server-side client) needs no entry.
 */
function allowedOrigins(env: Env): string[] {
  const origins = new Set<string>();
  for (const entry of (env.MAILROOM_ALLOWED_ORIGINS ?? "").split(",").map((e) => e.trim()).filter(Boolean)) {
    const refuse = (why: string) =>
      new ConfigError(
        `MAILROOM_ALLOWED_ORIGINS: "${entry}" ${why}; list exact origins such as https://app.example.com`,
      );
    if (entry.toLowerCase() === "null") throw refuse("is the opaque origin any sandboxed frame or file:// page sends");
    if (entry.includes("*")) throw refuse("is a wildcard, which would let any web page call the MCP endpoint");
    if (!/^https?:\/\/[^/?#@\s]+\/?$/i.test(entry)) throw refuse("is not an http(s) origin (scheme://host[:port])");
    let origin: string;
    try {
      origin = new URL(entry).origin;
    } catch {
      throw refuse("is not an http(s) origin (scheme://host[:port])");
    }
    origins.add(origin);
  }
  return [...origins];
}

function orConfigError<T>(load: () => T): T {
  try {
    return load();
  } catch (error) {
    throw new ConfigError((error as Error).message);
  }
}

/**
 * Build the configuration from environment variables.
 *
 * @example
 * ```ts
 * const config = loadConfig(Deno.env.toObject());
 * ```
 */
export function loadConfig(env: Env): Config {
  const supabaseUrl = required(env, "SUPABASE_URL").replace(/\/+$/, "");
  // Hosted projects reserve the SUPABASE_ prefix for secrets, so the pooler URL is set as MAILROOM_DB_URL.
  const dbUrl = env.MAILROOM_DB_URL?.trim() || required(env, "SUPABASE_DB_URL");
  const pooledFlag = env.MAILROOM_DB_POOLED?.trim();
  const limits = orConfigError(() => loadCompositionLimits(env));
  return {
    supabaseUrl,
    dbUrl,
    // Supavisor's transaction mode listens on 6543; prepared statements do not survive it.
    dbPooled: pooledFlag ? pooledFlag === "true" : /:6543\//.test(dbUrl),
    jwt: {
      jwks: parseJwks(env.SUPABASE_JWKS),
      jwksUrl: env.MAILROOM_JWKS_URL?.trim() || `${supabaseUrl}/auth/v1/.well-known/jwks.json`,
      secret: env.MAILROOM_JWT_SECRET?.trim() || env.SUPABASE_JWT_SECRET?.trim() || env.JWT_SECRET?.trim() ||
        undefined,
      issuer: env.MAILROOM_JWT_ISSUER?.trim() || `${supabaseUrl}/auth/v1`,
      allowAnonymousUsers: env.MAILROOM_ALLOW_ANONYMOUS_USERS === "true",
    },
    smtp: {
      connectTimeoutMs: positiveInt(env, "MAILROOM_SMTP_CONNECT_TIMEOUT_MS", 10_000),
      greetingTimeoutMs: positiveInt(env, "MAILROOM_SMTP_GREETING_TIMEOUT_MS", 10_000),
      socketTimeoutMs: positiveInt(env, "MAILROOM_SMTP_SOCKET_TIMEOUT_MS", 30_000),
      // Inside the platform's 150 s (Free) wall clock, with room for the database work around it.
      sessionTimeoutMs: positiveInt(env, "MAILROOM_SMTP_SESSION_TIMEOUT_MS", 120_000),
      caCerts: env.MAILROOM_SMTP_CA_CERTS?.trim() || undefined,
      ehloName: ehloName(env.MAILROOM_SMTP_EHLO_NAME, supabaseUrl),
    },
    smtpPool: !flag(env, "MAILROOM_SMTP_REUSE_CONNECTIONS", true) ? null : {
      maxPerKey: positiveInt(env, "MAILROOM_SMTP_POOL_MAX_CONNECTIONS", DEFAULT_POOL_OPTIONS.maxPerKey),
      idleMs: positiveInt(env, "MAILROOM_SMTP_POOL_IDLE_MS", DEFAULT_POOL_OPTIONS.idleMs),
      maxMessages: positiveInt(env, "MAILROOM_SMTP_POOL_MAX_MESSAGES", DEFAULT_POOL_OPTIONS.maxMessages),
      busyWaitMs: DEFAULT_POOL_OPTIONS.busyWaitMs,
    },
    egress: orConfigError(() => loadEgressPolicy(env)),
    approvalUrl: pageUrl("MAILROOM_APPROVAL_URL", env.MAILROOM_APPROVAL_URL),
    unsubscribePageUrl: pageUrl("MAILROOM_UNSUBSCRIBE_PAGE_URL", env.MAILROOM_UNSUBSCRIBE_PAGE_URL),
    oauth: oauthEndpoints(env),
    limits,
    verifyPerMinute: positiveInt(env, "MAILROOM_VERIFY_PER_MINUTE", 10),
    workerKeys: workerKeys(env),
    unsubscribeSecrets: unsubscribeSecrets(env.MAILROOM_UNSUBSCRIBE_SECRETS),
    // Well inside the platform's wall clock (150 s on Free), with room to finish the last send.
    outboxBudgetMs: positiveInt(env, "MAILROOM_OUTBOX_BUDGET_MS", 50_000),
    mailboxCheckSeconds: positiveInt(env, "MAILROOM_MAILBOX_CHECK_SECONDS", 300),
    outboxCpuBudgetMs: positiveInt(env, "MAILROOM_OUTBOX_CPU_BUDGET_MS", DEFAULT_CPU_BUDGET_MS),
    bodyBudgetBytes: positiveInt(env, "MAILROOM_BODY_BUDGET_BYTES", DEFAULT_BODY_BUDGET_BYTES),
    bulk: orConfigError(() => loadBulkLimits(env)),
    attachments: orConfigError(() => loadAttachmentLimits(env, limits.maxAttachmentBytes)),
    allowedOrigins: allowedOrigins(env),
  };
}

/** The stand-ins' endpoints when set (MAILROOM_OAUTH_TOKEN_URL, MAILROOM_GRAPH_URL, MAILROOM_GMAIL_URL). */
function oauthEndpoints(env: Record<string, string | undefined>): Config["oauth"] {
  const urls = {
    tokenUrl: env.MAILROOM_OAUTH_TOKEN_URL?.trim() || undefined,
    graphUrl: env.MAILROOM_GRAPH_URL?.trim() || undefined,
    gmailUrl: env.MAILROOM_GMAIL_URL?.trim() || undefined,
  };
  const loopback = /^http:\/\/(127\.0\.0\.1|localhost|\[::1\])(:\d+)?(\/|$)/;
  for (const [name, url] of Object.entries(urls)) {
    if (url && !url.startsWith("https://") && !loopback.test(url)) {
      throw new ConfigError(`${name}: an OAuth endpoint must be https (or http on loopback for a local stand-in)`);
    }
  }
  return {
    ...urls,
    allowHttp: Object.values(urls).some((url) => url !== undefined && loopback.test(url)),
    timeoutMs: positiveInt(env, "MAILROOM_OAUTH_TIMEOUT_MS", 10_000),
    caCerts: env.MAILROOM_OAUTH_CA_CERTS?.trim() || undefined,
  };
}
