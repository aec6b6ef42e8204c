// Limits on SMTP logins, kept in the database per user (private.credential_events) so that
// deleting a config resets nothing: before a session, check that the config's credentials
// may be tried; after it, record what the server said about them.
import type { Tx } from "../db.ts";
import { ApiError } from "../http.ts";

/** A login about to happen: its config and the attempt reserved for it (null: none was needed). */
export interface LoginAttempt {
  configId: string;
  attemptId: string | null;
}

/**
 * Check, before any SMTP I/O, that a login through `configId` is allowed, and reserve it.
 * Credentials that have authenticated since they last changed ("proven") always may;
 * unproven ones only while the user has had fewer than 5 failed (or unsettled) logins in
 * the last hour. Call it inside the user's transaction, before loading the credentials:
 * the config row stays locked until commit, so the credentials loaded are the ones
 * checked. A config without a username or without a password passes (no login happens).
 *
 * @throws ApiError 429 `auth_attempts_exceeded` with Retry-After (raised by the database,
 *   mapped in `withUser`); 404 `config_not_found` when the config is not (or no longer) the caller's.
 * @example
 * ```ts
 * await withUser(sql, claims, async (tx) => {
 *   const config = await findConfig(tx, ref);
 *   const login = await assertCanAuthenticate(tx, config.id);
 *   const credentials = await loadCredentials(tx, config.id);
 * });
 * ```
 */
export async function assertCanAuthenticate(tx: Tx, configId: string): Promise<LoginAttempt> {
  try {
    // Executed now, so that a statement the caller issues next (the credentials) follows it.
    const [row] = await tx<{ attempt: string | null }[]>`
      select private.begin_smtp_authentication(${configId}::uuid)::text as attempt`.execute();
    return { configId, attemptId: row.attempt };
  } catch (error) {
    if ((error as { code?: string })?.code !== "P0002") throw error;
    throw new ApiError(404, "config_not_found", `No SMTP config ${JSON.stringify(configId)}`);
  }
}

/**
 * Record the server's verdict on a login through `configId`, in a transaction after the
 * session: `ok` proves the credentials the reserved attempt used (unless they changed
 * since); a failure counts against the user's limit and makes the credentials unproven.
 *
 * @example
 * ```ts
 * const ok = authVerdict(failure?.code);
 * if (ok !== null) await withUser(sql, claims, (tx) => recordAuthResult(tx, login, ok));
 * ```
 */
export async function recordAuthResult(tx: Tx, login: LoginAttempt, ok: boolean): Promise<void> {
  await tx`select private.settle_smtp_authentication(
             ${login.configId}::uuid, ${ok ? "succeeded" : "failed"}, ${login.attemptId}::bigint)`;
}

/**
 * Free the attempt reserved by `assertCanAuthenticate` when the session ended before the
 * server judged the login (no connection, TLS refused, timeout): it then does not count.
 * Unreleased attempts count as failures for an hour.
 */
export async function releaseAuthAttempt(tx: Tx, login: LoginAttempt): Promise<void> {
  if (login.attemptId === null) return;
  await tx`select private.settle_smtp_authentication(${login.configId}::uuid, 'unanswered', ${login.attemptId}::bigint)`;
}

// Failures the server can only send once it has accepted the login (MAIL FROM, RCPT TO, DATA).
const AFTER_LOGIN = new Set([
  "smtp_sender_rejected",
  "smtp_sender_deferred",
  "smtp_recipients_rejected",
  "smtp_recipients_deferred",
  "smtp_message_rejected",
  "smtp_message_deferred",
  "smtp_outcome_unknown",
  "smtp_message_too_large",
  "smtp_utf8_unsupported",
]);

/**
 * What a session's outcome says about its login: `true` (success, or a failure the server
 * sent after accepting the login), `false` (`smtp_auth_failed`), or `null` when the
 * session ended before the login was judged (release the attempt instead).
 *
 * @example
 * ```ts
 * authVerdict(undefined); // true: the session succeeded
 * authVerdict("smtp_auth_failed"); // false
 * authVerdict("smtp_connect_timeout"); // null
 * ```
 */
export function authVerdict(failureCode: string | undefined): boolean | null {
  if (failureCode === undefined) return true;
  if (failureCode === "smtp_auth_failed" || failureCode === "smtp_basic_auth_disabled") return false;
  return AFTER_LOGIN.has(failureCode) ? true : null;
}
