// Builds the exact MIME message we send (nodemailer's MailComposer): addresses in
// canonical form and de-duplicated, a text alternative for HTML, allowlisted headers,
// in-memory attachments only, and the limits checked on what will really go out.
import MailComposer from "nodemailer/lib/mail-composer";
import { Buffer } from "node:buffer";
import { type Address, canonicalAddress, countRecipients, dedupeRecipients } from "./addresses.ts";
import { bodies, type CompositionLimits, type InMemoryAttachment } from "./compose.ts";
import { ApiError } from "../http.ts";

/** Everything a message is made of, after validation and template rendering. */
export interface MessageParts {
  from: Address;
  to: Address[];
  cc?: Address[];
  bcc?: Address[];
  replyTo?: Address[];
  subject?: string;
  text?: string;
  html?: string;
  headers?: Record<string, string>;
  attachments?: InMemoryAttachment[];
  /** A Message-ID fixed beforehand (queued sends), else a fresh one. */
  messageId?: string;
  /** The Date header: when the message was first accepted (queued sends, so a retry is the same message). */
  date?: Date;
}

/** The message as it goes on the wire, with its SMTP envelope. */
export interface BuiltMessage {
  raw: Buffer;
  messageId: string;
  envelope: { from: string; to: string[] };
  recipients: { to: Address[]; cc: Address[]; bcc: Address[] };
  /** The text part as sent (made from the HTML when only HTML was given), and the HTML part. */
  text?: string;
  html?: string;
}

const forComposer = (list: Address[]) => list.map((a) => ({ name: a.name ?? "", address: a.address }));

/**
 * Build the raw message. From is always the config's address (only its display name
 * may differ) and the envelope is derived here, never taken from the caller: it lists
 * the same canonical addresses the headers show, with no second parser in between.
 *
 * @throws ApiError 422 `too_many_recipients` / `subject_too_long`, 413 `html_too_large` / `message_too_large`.
 */
export async function buildMessage(parts: MessageParts, limits: CompositionLimits): Promise<BuiltMessage> {
  // Addresses arrive in canonical form (mail/addresses.ts): what the headers show is exactly
  // what the envelope carries and the audit row records.
  const recipients = dedupeRecipients({ to: parts.to, cc: parts.cc ?? [], bcc: parts.bcc ?? [] });
  const count = countRecipients(recipients);
  if (count > limits.maxRecipients) {
    throw new ApiError(422, "too_many_recipients", `At most ${limits.maxRecipients} recipients per message`, {
      limit: limits.maxRecipients,
      count,
    });
  }
  if (parts.subject !== undefined && parts.subject.length > limits.maxSubjectChars) {
    throw new ApiError(422, "subject_too_long", `The subject exceeds ${limits.maxSubjectChars} characters`, {
      limit: limits.maxSubjectChars,
    });
  }
  if (parts.html !== undefined && Buffer.byteLength(parts.html) > limits.maxHtmlBytes) {
    throw new ApiError(413, "html_too_large", `The HTML body exceeds ${limits.maxHtmlBytes} bytes`, {
      limit_bytes: limits.maxHtmlBytes,
    });
  }

  const sender = canonicalAddress(parts.from.address);
  if (typeof sender !== "string") {
    throw new ApiError(422, "config_invalid_sender", `The config's from_email ${sender.error}; update the config`);
  }
  const from = { ...parts.from, address: sender };
  const { text, html } = bodies({ text: parts.text, html: parts.html });
  const composer = new MailComposer({
    ...(parts.messageId ? { messageId: parts.messageId } : {}),
    ...(parts.date ? { date: parts.date } : {}),
    from: forComposer([from])[0],
    to: forComposer(recipients.to),
    cc: recipients.cc.length ? forComposer(recipients.cc) : undefined,
    bcc: recipients.bcc.length ? forComposer(recipients.bcc) : undefined,
    replyTo: parts.replyTo?.length ? forComposer(parts.replyTo) : undefined,
    subject: parts.subject,
    text,
    html,
    headers: parts.headers,
    attachments: parts.attachments,
    disableFileAccess: true,
    disableUrlAccess: true,
  });
  const node = composer.compile();
  const messageId = node.messageId();
  const raw: Buffer = await node.build();
  if (raw.length > limits.maxMessageBytes) {
    throw new ApiError(
      413,
      "message_too_large",
      `The message is ${raw.length} bytes; the limit is ${limits.maxMessageBytes}`,
      {
        limit_bytes: limits.maxMessageBytes,
        size_bytes: raw.length,
      },
    );
  }
  const all = [...recipients.to, ...recipients.cc, ...recipients.bcc].map((a) => a.address);
  return { raw, messageId, envelope: { from: from.address, to: all }, recipients, text, html };
}
