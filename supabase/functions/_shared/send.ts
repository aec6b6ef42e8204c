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
import { type Credentials, findConfig, loadCredentials, type SmtpConfig } from "./smtp_configs.ts";

/** The 200 response of a send. */
export interface SendResult {
  id: string;
  status: "sent";
  message_id: string;
  accepted: string[];
  rejected: string[];
}

/** Find the config the request names (id or name) or the default one; it must be usable. */
async function resolveConfig(tx: Tx, ref: string | undefined): Promise<SmtpConfig & Credentials> {
  const config = await findConfig(tx, ref);
  if (!config.is_active) {
    throw new ApiError(409, "config_inactive", `SMTP config ${JSON.stringify(config.name)} is deactivated`);
  }
  const credentials = await loadCredentials(tx, config.id);
  if (config.username && !credentials.password) {
    throw new ApiError(422, "config_incomplete", `SMTP config ${JSON.stringify(config.name)} has no password`);
  }
  return { ...config, ...credentials };
}

function composeMessage(config: SmtpConfig, req: SendEmailRequest): OutgoingMessage {
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
