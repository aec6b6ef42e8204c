// One IMAP session to a config's mailbox (imapflow): connected to the address the egress policy
// checked (TLS verified against the host's name), with explicit timeouts, logged in with the
// credentials the database decrypted for the owner. Errors become short reasons that name no
// secret (they are shown on the config and the audit row).
import { rootCertificates } from "node:tls";
// imapflow is loaded when a session is first opened, not with the functions that import this
// module: every send path does (for Sent copies), and most configs have no mailbox (the outbox
// worker's memory, 256 MB on the platform, is not spent on an IMAP client it does not use).
import type { ImapFlow } from "imapflow";
import type { UserClaims } from "../auth.ts";
import { type Tx, withUser } from "../db.ts";
import type { AppContext } from "../context.ts";
import { ApiError } from "../http.ts";
import { resolveImapServer } from "../smtp/egress.ts";

/** Where and how to log in, as private.imap_login gives it (the password decrypted for the owner). */
export interface ImapLogin {
  host: string;
  port: number;
  security: "tls" | "starttls" | "none";
  username: string | null;
  password: string | null;
  sent_folder: string | null;
  processed_folder: string | null;
  uid_validity: string | null;
  last_uid: string | null;
  created_at: Date;
  checked_at: Date | null;
  /** The code of the last failure (`imap_auth_failed`...), until a check or copy succeeds. */
  last_error_code: string | null;
}

/** The caller's config's IMAP login, or null when it has no IMAP settings. */
export async function loadImapLogin(tx: Tx, configId: string): Promise<ImapLogin | null> {
  const [row] = await tx<ImapLogin[]>`
    select host, port, security, username, password, sent_folder, processed_folder,
           uid_validity::text, last_uid::text, created_at, checked_at, last_error_code
      from private.imap_login(${configId}::uuid)`;
  return row ?? null;
}

/**
 * Keep a failure on the settings (shown as `last_error`). A refused login stops the scheduled
 * checks and the Sent copies until the credentials change or a check succeeds: a wrong password
 * retried every few minutes would get the account locked by its provider.
 */
export async function recordMailboxError(
  ctx: AppContext,
  owner: UserClaims,
  configId: string,
  error: MailboxError,
): Promise<void> {
  await withUser(
    ctx.sql,
    owner,
    (tx) => tx`select private.record_mailbox_error(${configId}::uuid, ${error.message}, ${error.code})`,
  ).catch(() => {});
}

/** A failure talking to the mailbox, with a reason fit to show (no credentials in it). */
export class MailboxError extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
  }
}

/** Names imapflow gives its errors, turned into reasons a user can act on. */
function reasonOf(error: unknown, login: Pick<ImapLogin, "host" | "port">): MailboxError {
  if (error instanceof MailboxError) return error;
  if (error instanceof ApiError) return new MailboxError(error.code, error.message);
  const e = error as { authenticationFailed?: boolean; code?: string; responseText?: string; message?: string };
  const where = `${login.host}:${login.port}`;
  if (e?.authenticationFailed) {
    return new MailboxError(
      "imap_auth_failed",
      `The IMAP server ${where} refused the login${e.responseText ? `: ${e.responseText.slice(0, 200)}` : ""}`,
    );
  }
  const code = e?.code ?? "";
  if (/ECONNREFUSED|ConnectionRefused/i.test(code + (e?.message ?? ""))) {
    return new MailboxError("imap_unreachable", `Nothing answers at ${where} (connection refused)`);
  }
  if (/TIMEOUT|ETIMEDOUT/i.test(code + (e?.message ?? ""))) {
    return new MailboxError("imap_timeout", `The IMAP server ${where} did not answer in time`);
  }
  if (/CERT|SSL|TLS|self.signed|unable to verify/i.test(code + (e?.message ?? ""))) {
    return new MailboxError("imap_tls_failed", `TLS with ${where} failed: ${(e?.message ?? code).slice(0, 200)}`);
  }
  return new MailboxError(
    "imap_failed",
    `IMAP with ${where} failed: ${(e?.responseText ?? e?.message ?? String(error)).slice(0, 200)}`,
  );
}

/** A logged-in session; close it with `logout`. */
export interface MailboxSession {
  client: ImapFlow;
  logout(): Promise<void>;
}

/**
 * Connect and log in. `timeouts` default to the SMTP ones of the deployment.
 *
 * @throws MailboxError with a user-facing reason.
 */
export async function openMailbox(ctx: AppContext, login: ImapLogin): Promise<MailboxSession> {
  if (!login.username || !login.password) {
    throw new MailboxError(
      "imap_incomplete",
      "The IMAP settings have no password: give one (or use_smtp_login with a password config)",
    );
  }
  let client: ImapFlow | undefined;
  try {
    const target = await resolveImapServer(ctx.config.egress, login, {
      timeoutMs: ctx.config.smtp.connectTimeoutMs,
    });
    const { smtp } = ctx.config;
    const { ImapFlow } = await import("imapflow");
    client = new ImapFlow(
      {
        host: target.address,
        servername: target.servername,
        port: login.port,
        secure: login.security === "tls",
        doSTARTTLS: login.security === "starttls" ? true : login.security === "none" ? false : undefined,
        auth: { user: login.username, pass: login.password },
        logger: false,
        disableAutoIdle: true,
        // What a hostile or broken server may make us hold: a report's head is read, never more.
        maxLiteralSize: 1024 * 1024,
        maxResponseSize: 2 * 1024 * 1024,
        maxLineLength: 256 * 1024,
        connectionTimeout: smtp.connectTimeoutMs,
        greetingTimeout: smtp.greetingTimeoutMs,
        socketTimeout: smtp.socketTimeoutMs,
        tls: {
          rejectUnauthorized: true,
          minVersion: "TLSv1.2",
          servername: target.servername,
          ...(smtp.caCerts ? { ca: [...rootCertificates, smtp.caCerts] } : {}),
        },
      } as ConstructorParameters<typeof ImapFlow>[0],
    );
    // An error after connecting (the socket reset) must not be an unhandled event.
    client.on("error", () => {});
    await client.connect();
  } catch (error) {
    client?.close();
    throw reasonOf(error, login);
  }
  const session = client;
  return {
    client: session,
    async logout() {
      try {
        await session.logout();
      } catch {
        session.close();
      }
    },
  };
}

/** Run `fn` over a logged-in session, logging out after; failures as MailboxError. */
export async function withMailbox<T>(
  ctx: AppContext,
  login: ImapLogin,
  fn: (session: MailboxSession) => Promise<T>,
): Promise<T> {
  const session = await openMailbox(ctx, login);
  try {
    return await fn(session);
  } catch (error) {
    // The database's own failures (recording what was read) stay what they are: not the mailbox's.
    if ((error as { name?: string })?.name === "PostgresError") throw error;
    throw reasonOf(error, login);
  } finally {
    await session.logout();
  }
}

export { reasonOf as mailboxFailure };
