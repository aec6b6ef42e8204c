// One email, sent now: resolve the config (and its Vault password) and the template in
// the user's RLS context, build the exact message, reserve capacity and write the
// in-flight audit row in one transaction, talk SMTP, record the outcome.
import type { UserClaims } from "./auth.ts";
import type { AppContext } from "./context.ts";
import { type Tx, withUser } from "./db.ts";
import { ApiError } from "./http.ts";
import type { SendEmailRequest } from "./schemas.ts";
import { deliver, describeFailure, type SmtpServer } from "./smtp/smtp.ts";
import { checkServerStatically, type ResolvedTarget, resolveTarget } from "./smtp/egress.ts";
import { reserveSendCapacity } from "./store/rate_limit.ts";
import { type Credentials, findConfig, loadCredentials, type SmtpConfig } from "./store/smtp_configs.ts";
import { decodeAttachments, sanitizeHeaders } from "./mail/compose.ts";
import { buildMessage, type BuiltMessage } from "./mail/message.ts";
import { renderTemplate } from "./mail/templates.ts";
import { findTemplate } from "./store/templates.ts";

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

/** Template parts first, explicit request fields over them. */
async function contentOf(
  tx: Tx,
  req: SendEmailRequest,
): Promise<{ subject?: string; text?: string; html?: string; templateId: string | null }> {
  if (req.template === undefined) return { subject: req.subject, text: req.text, html: req.html, templateId: null };
  const template = await findTemplate(tx, req.template);
  const rendered = renderTemplate(template, req.data ?? {});
  return {
    subject: req.subject ?? rendered.subject,
    text: req.text ?? rendered.text,
    html: req.html ?? rendered.html,
    templateId: template.id,
  };
}

async function compose(
  ctx: AppContext,
  tx: Tx,
  config: SmtpConfig,
  req: SendEmailRequest,
): Promise<{ message: BuiltMessage; subject?: string; templateId: string | null }> {
  const content = await contentOf(tx, req);
  if (content.text === undefined && content.html === undefined) {
    throw new ApiError(422, "template_empty", "The template has neither an HTML nor a text part");
  }
  const limits = ctx.config.limits;
  const fromName = req.from_name ?? config.from_name ?? undefined;
  const message = await buildMessage({
    from: fromName ? { name: fromName, address: config.from_email } : { address: config.from_email },
    to: req.to,
    cc: req.cc,
    bcc: req.bcc,
    replyTo: req.reply_to,
    subject: content.subject,
    text: content.text,
    html: content.html,
    headers: sanitizeHeaders(req.headers),
    attachments: decodeAttachments(req.attachments, {
      maxCount: limits.maxAttachments,
      maxTotalBytes: limits.maxAttachmentBytes,
    }),
  }, limits);
  return { message, subject: content.subject, templateId: content.templateId };
}

interface Outcome {
  status: "sent" | "failed" | "unknown";
  messageId?: string;
  accepted?: string[];
  rejected?: string[];
  code?: string;
  message?: string;
  responseCode?: number;
}

/**
 * Record the outcome on the in-flight audit row, trying twice. A failure here must not
 * hide what happened on the wire (above all a delivered message), so it is logged with
 * the audit id and swallowed; the row then stays `sending` until a sweep marks it.
 */
async function recordOutcome(ctx: AppContext, claims: UserClaims, auditId: string, outcome: Outcome): Promise<void> {
  for (let attempt = 1; attempt <= 2; attempt++) {
    try {
      await withUser(ctx.sql, claims, (tx) =>
        tx`select private.record_email_outcome(
             ${auditId}::uuid, ${outcome.status}, ${outcome.messageId ?? null},
             ${outcome.accepted ?? []}::text[], ${outcome.rejected ?? []}::text[],
             ${outcome.code ?? null}, ${outcome.message ?? null}, ${outcome.responseCode ?? null})`);
      return;
    } catch (error) {
      if (attempt === 2) {
        const e = error as { name?: string; code?: string };
        console.error(JSON.stringify({
          level: "error",
          msg: "could not record send outcome",
          audit_id: auditId,
          status: outcome.status,
          error: e?.name,
          code: e?.code,
        }));
      }
    }
  }
}

/**
 * Send `req` as the user in `claims` and audit it.
 *
 * @throws ApiError 4xx for config, template and composition problems (not audited),
 *   429 over the config's limits, 422/502 for egress and SMTP failures (audited).
 */
export async function sendEmail(ctx: AppContext, claims: UserClaims, req: SendEmailRequest): Promise<SendResult> {
  const { config, message, auditId } = await withUser(ctx.sql, claims, async (tx) => {
    const config = await resolveConfig(tx, req.config);
    checkServerStatically(ctx.config.egress, config);
    const { message, subject, templateId } = await compose(ctx, tx, config, req);
    await reserveSendCapacity(tx, config);
    const { to, cc, bcc } = message.recipients;
    const [audit] = await tx<{ id: string }[]>`
      insert into public.email_audit_log
        (config_id, template_id, from_email, to_addresses, cc_count, bcc_count, subject, status, agent_context)
      values (${config.id}, ${templateId}, ${config.from_email}, ${to.map((a) => a.address)},
              ${cc.length}, ${bcc.length}, ${subject ?? null}, 'sending',
              ${req.agent_context ? tx.json(req.agent_context as never) : null})
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
    const target: ResolvedTarget = await resolveTarget(ctx.config.egress, config.host, config.port, {
      timeoutMs: ctx.config.smtp.connectTimeoutMs,
    });
    delivery = await deliver(server, target, message, ctx.config.smtp);
  } catch (error) {
    const { httpStatus, failure, details } = describeFailure(error);
    await recordOutcome(ctx, claims, auditId, {
      status: failure.outcome,
      code: failure.code,
      message: failure.message,
      responseCode: failure.responseCode,
    });
    throw new ApiError(httpStatus, failure.code, failure.message, {
      ...details,
      id: auditId,
      status: failure.outcome,
      smtp_response_code: failure.responseCode,
      smtp_response: failure.response,
    });
  }

  await recordOutcome(ctx, claims, auditId, {
    status: "sent",
    messageId: delivery.messageId,
    accepted: delivery.accepted,
    rejected: delivery.rejected,
  });
  return {
    id: auditId,
    status: "sent",
    message_id: delivery.messageId,
    accepted: delivery.accepted,
    rejected: delivery.rejected,
  };
}
