// SMTP configurations as the API shows them, and every change to them, run inside the
// caller's RLS context. Passwords go straight into Vault and never come back out here,
// except to the sending paths through `loadCredentials`.
import { DEFAULT_DUPLICATE_WINDOW_SECONDS } from "../duplicates/mod.ts";
import { isoUtc, type Tx } from "../db.ts";
import { ApiError, isUuid } from "../http.ts";
import type { CreateConfigRequest, UpdateConfigRequest } from "../schemas.ts";

/** A config as the API returns it: never the password, only whether one is stored. */
export interface SmtpConfig {
  id: string;
  name: string;
  host: string;
  port: number;
  security: "tls" | "starttls" | "none";
  auth_type: "password" | "oauth2";
  /** How messages leave: SMTP (password or XOAUTH2), Microsoft Graph or the Gmail API. */
  transport: "smtp" | "graph" | "gmail_api";
  /** The OAuth grant's issuer and client (its secrets stay in Vault); null for a password config. */
  oauth: {
    provider: "google" | "microsoft" | "custom";
    client_id: string;
    tenant: string | null;
    token_url: string | null;
    scopes: string[] | null;
    has_refresh_token: boolean;
    has_client_secret: boolean;
  } | null;
  username: string | null;
  from_email: string;
  from_name: string | null;
  is_default: boolean;
  is_active: boolean;
  limits: { per_minute: number; per_day: number; max_connections: number };
  /** How long a send through it refuses the same email again (409 duplicate_send); 0: never. */
  duplicate_window_seconds: number;
  /** Hard bounces at RCPT join the owner's suppression list. */
  suppress_hard_bounces: boolean;
  /** Its mailbox over IMAP (GET /smtp-configs/:id/imap has the whole settings), or null. */
  imap: { host: string; read_bounces: boolean; copy_to_sent: boolean; last_error: string | null } | null;
  has_password: boolean;
  /** When the server, login, password or OAuth grant last changed (ISO 8601). */
  credentials_changed_at: string;
  /** Why the outbox paused this config's queue (e.g. `smtp_auth_failed`), until fixed or verified. */
  needs_attention: string | null;
  /** Until when the outbox leaves the config alone after its server pushed back (ISO 8601), or null. */
  backoff_until: string | null;
  backoff_reason: string | null;
  created_at: string;
  updated_at: string;
}

/** Decrypted credentials, for the sending paths only. */
export interface Credentials {
  username: string | null;
  password: string | null;
}

/** A warning returned with a config that was saved anyway. */
export interface ConfigWarning {
  code: string;
  message: string;
}

function columns(tx: Tx) {
  return tx`c.id, c.name, c.host, c.port, c.security, c.auth_type, c.transport,
            case when c.auth_type = 'oauth2' then json_build_object(
              'provider', c.oauth_provider, 'client_id', c.oauth_client_id, 'tenant', c.oauth_tenant,
              'token_url', c.oauth_token_url, 'scopes', c.oauth_scopes,
              'has_refresh_token', c.oauth_refresh_token_secret_id is not null,
              'has_client_secret', c.oauth_client_secret_secret_id is not null) end as oauth,
            c.username, c.from_email, c.from_name, c.is_default, c.is_active,
            json_build_object('per_minute', c.max_per_minute, 'per_day', c.max_per_day,
                              'max_connections', c.max_connections) as limits,
            c.duplicate_window_seconds, c.suppress_hard_bounces,
            (select json_build_object('host', i.host, 'read_bounces', i.read_bounces, 'copy_to_sent', i.copy_to_sent,
                                      'last_error', i.last_error)
               from public.smtp_config_imap i where i.config_id = c.id) as imap,
            c.password_secret_id is not null as has_password, ${
    isoUtc(tx, "c.credentials_changed_at")
  } as credentials_changed_at,
            c.needs_attention,
            case when c.backoff_until > now() then ${isoUtc(tx, "c.backoff_until")} end as backoff_until,
            case when c.backoff_until > now() then c.backoff_reason end as backoff_reason,
            c.created_at, c.updated_at`;
}

/** Where-clause for a config (alias `c`) named by id or name, or the default one when `ref` is undefined. */
export function byRef(tx: Tx, ref: string | undefined) {
  if (ref === undefined) return tx`c.is_default`;
  return isUuid(ref) ? tx`c.id = ${ref}::uuid` : tx`c.name = ${ref}`;
}

function notFound(ref: string | undefined): ApiError {
  return ref === undefined
    ? new ApiError(404, "config_not_found", "No default SMTP config; name one with `config` or set a default")
    : new ApiError(404, "config_not_found", `No SMTP config ${JSON.stringify(ref)}`);
}

/**
 * One of the caller's configs that a send can use: active, and holding a password when it
 * logs in. The password itself stays in Vault (the send path reads it as it logs in). Not locked: a
 * sender that logs in pins the config when it reads the credentials.
 *
 * @throws ApiError 404 `config_not_found`, 409 `config_inactive`, 422 `config_incomplete`.
 */
export async function findUsableConfig(tx: Tx, ref: string | undefined): Promise<SmtpConfig> {
  const config = await findConfig(tx, ref);
  if (!config.is_active) {
    throw new ApiError(409, "config_inactive", `SMTP config ${JSON.stringify(config.name)} is deactivated`);
  }
  if (config.auth_type === "oauth2") {
    if (!config.oauth?.has_refresh_token) throw incomplete(config);
    return config;
  }
  if (config.username && !config.has_password) throw incomplete(config);
  return config;
}

/** 422 `config_incomplete`: the config logs in but has no password (or no OAuth grant). */
export function incomplete(config: Pick<SmtpConfig, "name" | "auth_type">): ApiError {
  return config.auth_type === "oauth2"
    ? new ApiError(
      422,
      "config_incomplete",
      `Config ${
        JSON.stringify(config.name)
      } has no OAuth grant: connect the mailbox (PATCH it with oauth.refresh_token)`,
    )
    : new ApiError(422, "config_incomplete", `SMTP config ${JSON.stringify(config.name)} has no password`);
}

/** All of the caller's configs, default first. */
export function listConfigs(tx: Tx): Promise<SmtpConfig[]> {
  return tx<SmtpConfig[]>`
    select ${columns(tx)} from public.user_smtp_configs c order by c.is_default desc, c.name`;
}

/** One of the caller's configs by id or name (or the default), else 404; optionally locked. */
export async function findConfig(
  tx: Tx,
  ref: string | undefined,
  lock: boolean | "share" = false,
): Promise<SmtpConfig> {
  // `share`: the sending paths read the destination and then the credentials; the row lock
  // keeps a concurrent PATCH (new host and password) from landing between the two reads.
  const locking = lock === "share" ? tx`for share` : lock ? tx`for update` : tx``;
  // Sent now (not when awaited), so that statements issued after this call follow it.
  const rows = await tx<SmtpConfig[]>`
    select ${columns(tx)} from public.user_smtp_configs c where ${byRef(tx, ref)} ${locking}`.execute();
  if (!rows[0]) throw notFound(ref);
  return rows[0];
}

/** The config's username and decrypted password (owner-checked inside Postgres). */
export async function loadCredentials(tx: Tx, configId: string): Promise<Credentials> {
  const [row] = await tx<Credentials[]>`
    select username, password from private.smtp_config_credentials(${configId}::uuid)`;
  return row ?? { username: null, password: null };
}

/** A config's credentials and the destination they go to, read together. */
export interface Login extends Credentials {
  host: string;
  port: number;
  security: SmtpConfig["security"];
}

/** Turn constraint violations into the API's conflict errors. */
export function mapConstraintError(error: unknown): never {
  const e = error as { code?: string; constraint_name?: string };
  if (e?.code === "23505" && e.constraint_name === "user_smtp_configs_name_per_user") {
    throw new ApiError(409, "config_name_taken", "You already have an SMTP config with that name");
  }
  if (e?.code === "23505" && e.constraint_name === "user_smtp_configs_one_default_per_user") {
    throw new ApiError(409, "default_conflict", "Another request changed the default config at the same time; retry");
  }
  if (e?.code === "23514") {
    throw new ApiError(400, "invalid_request", `A value is out of range (${e.constraint_name ?? "check"})`);
  }
  // Last resort: changes are serialised per user (lockConfigsForChange), so this should not happen.
  if (e?.code === "40P01" || e?.code === "40001") {
    throw new ApiError(409, "default_conflict", "Another request changed your configs at the same time; retry", {
      retryable: true,
    });
  }
  throw error;
}

/**
 * Serialise every change to the caller's configs: the per-user lock first, then the
 * current default's row, before any other lock. A default swap touches two rows and a
 * password change takes the user's credential-event lock; taking these in one order in
 * every path is what keeps concurrent swaps from deadlocking.
 */
async function lockConfigsForChange(tx: Tx): Promise<void> {
  await tx`select pg_advisory_xact_lock(hashtextextended('mailroom.default_config:' || (select auth.uid())::text, 0))`;
  await tx`select c.id from public.user_smtp_configs c where c.is_default for update`;
}

async function hasDefault(tx: Tx): Promise<boolean> {
  const [row] = await tx<{ has: boolean }[]>`
    select exists (select 1 from public.user_smtp_configs where is_default) as has`;
  return row.has;
}

/** Create a config and store its password in Vault, in the caller's transaction. */
export async function createConfig(tx: Tx, req: CreateConfigRequest): Promise<SmtpConfig> {
  await lockConfigsForChange(tx);
  const makeDefault = req.is_default ?? !(await hasDefault(tx));
  try {
    const [row] = await tx<{ id: string }[]>`
      insert into public.user_smtp_configs
        (name, host, port, security, username, from_email, from_name, is_active, max_per_minute, max_per_day,
         max_connections, auth_type, transport, oauth_provider, oauth_client_id, oauth_tenant, oauth_token_url,
         oauth_scopes, duplicate_window_seconds, suppress_hard_bounces)
      values (${req.name}, ${req.host}, ${req.port}, ${req.security}, ${req.username ?? null}, ${req.from_email},
              ${req.from_name ?? null}, ${req.is_active}, ${req.limits?.per_minute ?? 30}, ${
      req.limits?.per_day ?? 500
    }, ${req.limits?.max_connections ?? 3}, ${req.auth_type}, ${req.transport}, ${req.oauth?.provider ?? null},
              ${req.oauth?.client_id ?? null}, ${req.oauth?.tenant ?? null}, ${req.oauth?.token_url ?? null},
              ${req.oauth?.scopes ?? null}::text[], ${req.duplicate_window_seconds ?? DEFAULT_DUPLICATE_WINDOW_SECONDS},
              ${req.suppress_hard_bounces ?? true})
      returning id`;
    if (req.password !== undefined) {
      await tx`select private.set_smtp_config_password(${row.id}::uuid, ${req.password})`;
    }
    if (req.oauth !== undefined) {
      await tx`select private.set_smtp_config_oauth(${row.id}::uuid, ${req.oauth.refresh_token},
                                                    ${req.oauth.client_secret ?? null})`;
    }
    if (makeDefault) await tx`select private.set_default_smtp_config(${row.id}::uuid)`;
    return await findConfig(tx, row.id);
  } catch (error) {
    return mapConstraintError(error);
  }
}

/**
 * Apply a partial update to the config `ref`, under the per-user change lock. A new host,
 * port, security or username drops the stored password (a database trigger) unless the
 * same request gives one, which is stored after the destination so it survives.
 *
 * @returns the config before and after the change.
 */
export async function updateConfig(
  tx: Tx,
  ref: string,
  req: UpdateConfigRequest & { host?: string },
): Promise<{ before: SmtpConfig; after: SmtpConfig }> {
  await lockConfigsForChange(tx);
  const before = await findConfig(tx, ref, true);
  if (req.oauth !== undefined && before.auth_type !== "oauth2") {
    throw new ApiError(400, "invalid_request", "oauth: this config logs in with a password; create an OAuth config");
  }
  if (req.password !== undefined && before.auth_type === "oauth2") {
    throw new ApiError(400, "invalid_request", "password: an OAuth config has no password; reconnect it with oauth");
  }
  const changes: Record<string, unknown> = {};
  for (const key of ["name", "host", "port", "security", "username", "from_email", "from_name", "is_active"] as const) {
    if (req[key] !== undefined) changes[key] = req[key];
  }
  if (req.limits?.per_minute !== undefined) changes.max_per_minute = req.limits.per_minute;
  if (req.limits?.per_day !== undefined) changes.max_per_day = req.limits.per_day;
  if (req.limits?.max_connections !== undefined) changes.max_connections = req.limits.max_connections;
  if (req.duplicate_window_seconds !== undefined) changes.duplicate_window_seconds = req.duplicate_window_seconds;
  if (req.suppress_hard_bounces !== undefined) changes.suppress_hard_bounces = req.suppress_hard_bounces;
  if (req.is_default === false) changes.is_default = false;
  try {
    if (Object.keys(changes).length > 0) {
      await tx`update public.user_smtp_configs set ${tx(changes)} where id = ${before.id}::uuid`;
    }
    if (req.is_default === true) await tx`select private.set_default_smtp_config(${before.id}::uuid)`;
    if (req.password !== undefined) {
      await tx`select private.set_smtp_config_password(${before.id}::uuid, ${req.password})`;
    }
    if (req.oauth !== undefined) {
      await tx`select private.set_smtp_config_oauth(${before.id}::uuid, ${req.oauth.refresh_token},
                                                    ${req.oauth.client_secret ?? null})`;
    }
    return { before, after: await findConfig(tx, before.id) };
  } catch (error) {
    return mapConstraintError(error);
  }
}

/** Delete a config; its Vault secret goes with it (trigger). Audit rows stay. */
export async function deleteConfig(tx: Tx, ref: string): Promise<{ id: string; deleted: true }> {
  const config = await findConfig(tx, ref);
  await tx`delete from public.user_smtp_configs where id = ${config.id}::uuid`;
  return { id: config.id, deleted: true };
}
