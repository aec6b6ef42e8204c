// A config's IMAP settings as the API shows and changes them, in the caller's RLS context. The
// password goes straight into Vault (private.set_imap_password) and never comes back out here.
import { isoUtc, type Tx } from "../db.ts";
import { ApiError } from "../http.ts";
import type { ImapSettingsRequest } from "../schemas.ts";
import { checkImapServerStatically, type EgressPolicy } from "../smtp/egress.ts";
import { findConfig, type SmtpConfig } from "../store/smtp_configs.ts";

/** IMAP settings as the API returns them: never the password, only whether there is one. */
export interface ImapSettings {
  config_id: string;
  host: string;
  port: number;
  security: "tls" | "starttls" | "none";
  username: string | null;
  has_password: boolean;
  use_smtp_login: boolean;
  read_bounces: boolean;
  copy_to_sent: boolean;
  sent_folder: string | null;
  processed_folder: string | null;
  /** When the inbox was last read (ISO 8601), and why the last check failed, if it did. */
  checked_at: string | null;
  last_error: string | null;
  last_error_at: string | null;
  /** Null when the scheduled checks stopped: the login was refused (until the password changes). */
  next_check_at: string | null;
  created_at: string;
  updated_at: string;
}

function columns(tx: Tx) {
  return tx`i.config_id, i.host, i.port, i.security, i.username, i.password_secret_id is not null as has_password,
            i.use_smtp_login, i.read_bounces, i.copy_to_sent, i.sent_folder, i.processed_folder,
            ${isoUtc(tx, "i.checked_at")} as checked_at, i.last_error, ${
    isoUtc(tx, "i.last_error_at")
  } as last_error_at,
            case when i.next_check_at <> 'infinity' then ${isoUtc(tx, "i.next_check_at")} end as next_check_at, ${
    isoUtc(tx, "i.created_at")
  } as created_at,
            ${isoUtc(tx, "i.updated_at")} as updated_at`;
}

function notConfigured(config: Pick<SmtpConfig, "name">): ApiError {
  return new ApiError(
    404,
    "imap_not_configured",
    `Config ${JSON.stringify(config.name)} has no IMAP settings; PATCH /smtp-configs/{id}/imap with host and a login`,
  );
}

/** The IMAP settings of the config `ref` (by id or name). */
export async function getImapSettings(tx: Tx, ref: string): Promise<ImapSettings> {
  const config = await findConfig(tx, ref);
  const [row] = await tx<ImapSettings[]>`
    select ${columns(tx)} from public.smtp_config_imap i where i.config_id = ${config.id}::uuid`;
  if (!row) throw notConfigured(config);
  return row;
}

/**
 * Create or change a config's IMAP settings. The server is checked against the egress policy;
 * a new host, port, security or username drops the stored password and `use_smtp_login`
 * (a database trigger) unless this request gives them again, which are stored after it.
 *
 * @throws ApiError 400 `invalid_request` (first time without host or login), 422
 *   `imap_login_unavailable` (use_smtp_login on an OAuth config), the egress policy's refusals.
 */
export async function putImapSettings(
  tx: Tx,
  ref: string,
  req: ImapSettingsRequest,
  policy: EgressPolicy,
): Promise<ImapSettings> {
  const config = await findConfig(tx, ref, true);
  const [before] = await tx<ImapSettings[]>`
    select ${columns(tx)} from public.smtp_config_imap i where i.config_id = ${config.id}::uuid for update`;
  if (req.use_smtp_login === true && config.auth_type !== "password") {
    throw new ApiError(
      422,
      "imap_login_unavailable",
      `Config ${JSON.stringify(config.name)} signs in with OAuth: give the IMAP username and password instead`,
    );
  }
  const host = req.host ?? before?.host;
  if (host === undefined) throw invalid("host is required the first time");
  const server = { host, port: req.port ?? before?.port ?? 993, security: req.security ?? before?.security ?? "tls" };
  const { host: checkedHost } = checkImapServerStatically(policy, server);
  const username = req.username !== undefined ? req.username : before?.username ?? null;
  const smtpLogin = req.use_smtp_login ?? (req.password !== undefined ? false : undefined);
  if (!before && req.password === undefined && req.use_smtp_login !== true) {
    throw invalid("give the IMAP login: username and password, or use_smtp_login: true");
  }
  if (req.password !== undefined && !username) throw invalid("a password needs a username");
  // The SMTP login goes only to an IMAP server in the SMTP server's own domain (the database
  // gives it to no other): whoever holds a token must not be able to send it elsewhere.
  const smtpLoginAfter = smtpLogin ?? (before?.use_smtp_login === true && before.host === checkedHost);
  if (smtpLoginAfter) {
    const [{ same }] = await tx<{ same: boolean }[]>`
      select private.same_mail_domain(${checkedHost}, ${config.host}) as same`;
    if (!same) {
      throw new ApiError(
        422,
        "imap_login_unavailable",
        `use_smtp_login sends the SMTP password only to an IMAP server in ${config.host}'s domain; ` +
          `for ${checkedHost} give the IMAP username and password`,
      );
    }
  }
  // Gmail and Microsoft 365 keep what is submitted to them in Sent already: no second copy by default.
  const providerKeepsSent = AUTO_SENT_HOSTS.has(config.host.toLowerCase()) || config.transport !== "smtp";
  const fields = {
    host: checkedHost,
    port: server.port,
    security: server.security,
    username,
    ...(req.read_bounces !== undefined ? { read_bounces: req.read_bounces } : {}),
    ...(req.copy_to_sent !== undefined
      ? { copy_to_sent: req.copy_to_sent }
      : !before && providerKeepsSent
      ? { copy_to_sent: false }
      : {}),
    ...(req.sent_folder !== undefined ? { sent_folder: req.sent_folder } : {}),
    ...(req.processed_folder !== undefined ? { processed_folder: req.processed_folder } : {}),
  };
  if (before) {
    await tx`update public.smtp_config_imap set ${tx(fields)} where config_id = ${config.id}::uuid`;
  } else {
    await tx`insert into public.smtp_config_imap ${tx({ config_id: config.id, ...fields })}`;
  }
  // After the destination: stored with it (the trigger drops credentials a new destination does not give).
  if (smtpLogin !== undefined) {
    await tx`update public.smtp_config_imap set use_smtp_login = ${smtpLogin} where config_id = ${config.id}::uuid`;
  }
  if (req.password !== undefined) await tx`select private.set_imap_password(${config.id}::uuid, ${req.password})`;
  return await getImapSettings(tx, config.id);
}

/** Remove a config's IMAP settings (its IMAP password goes with them). */
export async function deleteImapSettings(tx: Tx, ref: string): Promise<{ config_id: string; deleted: true }> {
  const config = await findConfig(tx, ref);
  const rows = await tx`delete from public.smtp_config_imap where config_id = ${config.id}::uuid returning config_id`;
  if (rows.length === 0) throw notConfigured(config);
  return { config_id: config.id, deleted: true };
}

/** SMTP servers that put what they are given in the mailbox's Sent folder themselves. */
const AUTO_SENT_HOSTS = new Set([
  "smtp.gmail.com",
  "smtp.googlemail.com",
  "smtp.office365.com",
  "smtp-mail.outlook.com",
]);

function invalid(message: string): ApiError {
  return new ApiError(400, "invalid_request", `imap: ${message}`);
}
