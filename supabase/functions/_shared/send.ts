// One email, sent now: resolve the config and its Vault password in the user's RLS
// context, write the in-flight audit row, talk SMTP, record the outcome.
import type { UserClaims } from "./auth.ts";
import type { AppContext } from "./context.ts";
import { type Tx, withUser } from "./db.ts";
import { ApiError } from "./http.ts";
import type { SendEmailRequest } from "./schemas.ts";
import { classifySmtpError, deliver, type OutgoingMessage, type SmtpServer } from "./smtp.ts";
import { checkServerStatically, type ResolvedTarget, resolveTarget } from "./egress.ts";
import { reserveSendCapacity } from "./rate_limit.ts";

/** The 200 response of a send. */
export interface SendResult {
  id: string;
  status: "sent";
  message_id: string;
  accepted: string[];
  rejected: string[];
}

interface ConfigRow {
  id: string;
  name: string;
  host: string;
  port: number;
  security: SmtpServer["security"];
  from_email: string;
  from_name: string | null;
  is_active: boolean;
  max_per_minute: number;
  max_per_day: number;
  username: string | null;
  password: string | null;
  has_password: boolean;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Find the config the request names (id or name), or the user's default one. */
async function resolveConfig(tx: Tx, ref: string | undefined): Promise<ConfigRow> {
  const where = ref === undefined
    ? tx`c.is_default`
    : UUID.test(ref)
    ? tx`(c.id = ${ref}::uuid or c.name = ${ref})`
    : tx`c.name = ${ref}`;
  const rows = await tx<ConfigRow[]>`
    select c.id, c.name, c.host, c.port, c.security, c.from_email, c.from_name, c.is_active,
           c.max_per_minute, c.max_per_day,
           cred.username, cred.password, c.password_secret_id is not null as has_password
      from public.user_smtp_configs c
      cross join lateral private.smtp_config_credentials(c.id) cred
     where ${where}
     order by (c.id::text = ${ref ?? ""}) desc
     limit 1`;
  const config = rows[0];
  if (!config) {
    throw ref === undefined
      ? new ApiError(404, "config_not_found", "No default SMTP config; name one with `config` or set a default")
      : new ApiError(404, "config_not_found", `No SMTP config ${JSON.stringify(ref)}`);
  }
  if (!config.is_active) {
    throw new ApiError(409, "config_inactive", `SMTP config ${JSON.stringify(config.name)} is deactivated`);
  }
  if (config.username && !config.has_password) {
    throw new ApiError(422, "config_incomplete", `SMTP config ${JSON.stringify(config.name)} has no password`);
  }
  return config;
}

function composeMessage(config: ConfigRow, req: SendEmailRequest): OutgoingMessage {
  return {
    from: config.from_name ? { name: config.from_name, address: config.from_email } : { address: config.from_email },
    to: req.to,
    cc: req.cc,
    bcc: req.bcc,
    replyTo: req.reply_to,
    subject: req.subject,
    text: req.text,
    html: req.html,
  };
}

async function recordOutcome(
  ctx: AppContext,
  claims: UserClaims,
  auditId: string,
  failure: { outcome: "failed" | "unknown"; code: string; message: string; responseCode?: number },
): Promise<void> {
  await withUser(ctx.sql, claims, (tx) =>
    tx`select private.record_email_outcome(
         ${auditId}::uuid, ${failure.outcome}, null, '{}'::text[], '{}'::text[],
         ${failure.code}, ${failure.message}, ${failure.responseCode ?? null})`);
}

/**
 * Send `req` as the user in `claims` and audit it.
 *
 * @throws ApiError 404/409/422 for config problems, 502 for SMTP failures (audited).
 */
export async function sendEmail(ctx: AppContext, claims: UserClaims, req: SendEmailRequest): Promise<SendResult> {
  const { config, message, auditId } = await withUser(ctx.sql, claims, async (tx) => {
    const config = await resolveConfig(tx, req.config);
    checkServerStatically(ctx.config.egress, config);
    await reserveSendCapacity(tx, config);
    const message = composeMessage(config, req);
    const [audit] = await tx<{ id: string }[]>`
      insert into public.email_audit_log
        (config_id, from_email, to_addresses, cc_count, bcc_count, subject, status, agent_context)
      values (${config.id}, ${config.from_email}, ${message.to.map((a) => a.address)},
              ${message.cc?.length ?? 0}, ${message.bcc?.length ?? 0}, ${message.subject ?? null},
              'sending', ${req.agent_context ? tx.json(req.agent_context as never) : null})
      returning id`;
    return { config, message, auditId: audit.id };
  });

  const server: SmtpServer = {
    host: config.host,
    port: config.port,
    security: config.security,
    username: config.username,
    password: config.password,
  };

  let delivery;
  try {
    const target: ResolvedTarget = await resolveTarget(ctx.config.egress, config.host, config.port);
    delivery = await deliver(server, target, message, ctx.config.smtp);
  } catch (error) {
    if (error instanceof ApiError) {
      await recordOutcome(ctx, claims, auditId, { outcome: "failed", code: error.code, message: error.message });
      throw error;
    }
    const failure = classifySmtpError(error);
    await recordOutcome(ctx, claims, auditId, failure);
    throw new ApiError(502, failure.code, failure.message, {
      id: auditId,
      status: failure.outcome,
      smtp_response_code: failure.responseCode,
      smtp_response: failure.response,
    });
  }

  await withUser(ctx.sql, claims, (tx) =>
    tx`select private.record_email_outcome(
         ${auditId}::uuid, 'sent', ${delivery.messageId}, ${delivery.accepted}::text[],
         ${delivery.rejected}::text[], null, null, null)`);
  return {
    id: auditId,
    status: "sent",
    message_id: delivery.messageId,
    accepted: delivery.accepted,
    rejected: delivery.rejected,
  };
}
