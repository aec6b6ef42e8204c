// Deployment configuration, read once from the environment into a typed object.
import { type EgressPolicy, loadEgressPolicy } from "./smtp/egress.ts";
import { type CompositionLimits, loadCompositionLimits } from "./mail/compose.ts";

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
  smtp: {
    connectTimeoutMs: number;
    greetingTimeoutMs: number;
    socketTimeoutMs: number;
    /** Extra trusted CA certificates (PEM), e.g. the local catcher's. Never disables verification. */
    caCerts?: string;
  };
  /** Where SMTP connections may go. */
  egress: EgressPolicy;
  /** Size and count limits of a message. */
  limits: CompositionLimits;
  /** SMTP config verifications a user may run per minute. */
  verifyPerMinute: number;
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
      caCerts: env.MAILROOM_SMTP_CA_CERTS?.trim() || undefined,
    },
    egress: orConfigError(() => loadEgressPolicy(env)),
    limits: orConfigError(() => loadCompositionLimits(env)),
    verifyPerMinute: positiveInt(env, "MAILROOM_VERIFY_PER_MINUTE", 10),
  };
}
