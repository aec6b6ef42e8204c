// What a message said, for its owner to read back: the message detail of email-analytics and an
// approval's preview. A message sent at once kept it when it was sent (email_audit_log.content,
// see mail/kept_content.ts); a queued one kept its request (payload), from which the same view is
// rebuilt as the worker builds it: the template rendered with its data, the text part made from
// the HTML when there is none, the stored attachments listed as they are stored now.
import type { Tx } from "../db.ts";
import { ApiError } from "../http.ts";
import { parseBody, type SendEmailRequest, sendEmailRequest } from "../schemas.ts";
import { attachmentIds, describeAttachments, storedAttachmentsById } from "../attachments/mod.ts";
import { bodies, sanitizeHeaders } from "../mail/compose.ts";
import type { HeaderField, KeptContent } from "../mail/kept_content.ts";
import { requestOf } from "../outbox/worker.ts";
import { contentOf } from "../send.ts";

/** A message's content and where it comes from. */
export interface MessageContent extends KeptContent {
  id: string;
  /** `sent`: kept as it went out; `request`: rebuilt from the queued request (templates as they are now). */
  source: "sent" | "request";
  to: string[];
  subject: string | null;
}

interface ContentRow {
  id: string;
  content: KeptContent | null;
  payload: unknown;
  batch_id: string | null;
  config_id: string | null;
  from_email: string;
  message_id: string | null;
  subject: string | null;
}

function addresses(list: SendEmailRequest["to"] | undefined): string[] {
  return (list ?? []).map((a) => a.address);
}

function notKept(id: string, reason?: string): ApiError {
  return new ApiError(
    404,
    "content_not_kept",
    reason
      ? `This message's content cannot be rebuilt from its request (${reason})`
      : "This message's content is not kept: it was sent more than 30 days ago, before messages kept their " +
        "content, or by another agent (an agent reads the content of its own sends only)",
    { message_id: id, ...(reason ? { reason } : {}) },
  );
}

/**
 * What a queued request says, rebuilt: recipients, subject, the text and HTML parts as the
 * worker would build them, the headers it sets, the attachments listed.
 *
 * @throws ApiError 404 `template_not_found` (a template deleted since), 400 for a payload no
 *   longer valid.
 */
export async function rebuiltContent(
  tx: Tx,
  row: Pick<ContentRow, "payload" | "batch_id" | "config_id"> & Partial<ContentRow>,
): Promise<Omit<MessageContent, "id" | "source">> {
  const request = parseBody(sendEmailRequest, await requestOf(tx, row, new Map()));
  const content = await contentOf(tx, request);
  const { text, html } = bodies(content);
  const stored = await storedAttachmentsById(tx, attachmentIds([request.attachments]));
  const to = addresses(request.to);
  const cc = addresses(request.cc);
  const headers: HeaderField[] = [
    ...(row.from_email ? [{ name: "From", value: row.from_email }] : []),
    { name: "To", value: to.join(", ") },
    ...(cc.length ? [{ name: "Cc", value: cc.join(", ") }] : []),
    ...(request.reply_to ? [{ name: "Reply-To", value: addresses(request.reply_to).join(", ") }] : []),
    ...(content.subject !== undefined ? [{ name: "Subject", value: content.subject }] : []),
    ...(row.message_id ? [{ name: "Message-ID", value: row.message_id }] : []),
    ...Object.entries(sanitizeHeaders(request.headers)).map(([name, value]) => ({ name, value })),
  ];
  return {
    to,
    cc,
    bcc: addresses(request.bcc),
    subject: content.subject ?? null,
    headers,
    text: text ?? null,
    html: html ?? null,
    attachments: describeAttachments(request.attachments, stored),
    truncated: false,
  };
}

/**
 * One of the caller's messages with what it said (run inside withUser). `agent`: the caller's
 * OAuth client, which reads the content of its own sends only (RLS on message_contents).
 *
 * @throws ApiError 404 `message_not_found` (not the caller's), 404 `content_not_kept`.
 */
export async function messageContent(tx: Tx, id: string, agent?: string): Promise<MessageContent> {
  const [row] = await tx<(ContentRow & { to_addresses: string[]; client_id: string | null })[]>`
    select a.id, m.content, a.payload, a.batch_id, a.config_id, a.from_email, a.message_id, a.subject, a.to_addresses,
           a.client_id
      from public.email_audit_log a
      -- Written by the statement that wrote the row (the same transaction, so the same now()).
      left join public.message_contents m
        on m.audit_id = a.id and m.user_id = a.user_id and m.created_at = a.created_at
     where a.id = ${id}::uuid`;
  if (!row) throw new ApiError(404, "message_not_found", `No message ${JSON.stringify(id)}`);
  // A queued message is shown from its request (what the worker sends); only a message sent at
  // once (no request kept) shows what it kept when it went: written by the statement that wrote
  // its audit row, so nothing written since can stand in for it.
  if (row.content && (row.payload === null || row.payload === undefined)) {
    const { cc, bcc, headers, text, html, attachments, truncated } = row.content;
    return {
      id: row.id,
      source: "sent",
      to: row.to_addresses,
      subject: row.subject,
      cc,
      bcc,
      headers,
      text,
      html,
      attachments,
      truncated,
    };
  }
  // An agent reads what its own sends said, never the owner's or another agent's.
  if (row.payload === null || row.payload === undefined || (agent !== undefined && row.client_id !== agent)) {
    throw notKept(row.id);
  }
  try {
    return { id: row.id, source: "request", ...await rebuiltContent(tx, row) };
  } catch (error) {
    // Its template deleted since, or a request this version no longer reads: there is nothing
    // faithful to show.
    if (error instanceof ApiError && error.status < 500) throw notKept(row.id, error.code);
    throw error;
  }
}
