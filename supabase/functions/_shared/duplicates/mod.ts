// Duplicate-send protection: what makes two sends "the same email", and how a send asks the
// database to refuse a repeat. The database holds each user's recent fingerprints and refuses
// a second send of one within the config's window with 409 `duplicate_send` (see
// supabase/migrations/20261207050000_duplicate_send_protection.sql): this module only computes
// the fingerprint and says, per transaction, whether a repeat is wanted.
import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import type { Tx } from "../db.ts";
import { recipientKey } from "../mail/addresses.ts";

/** A config's duplicate window when none is set: 10 minutes. */
export const DEFAULT_DUPLICATE_WINDOW_SECONDS = 600;
/** The longest window a config may set: a day. */
export const MAX_DUPLICATE_WINDOW_SECONDS = 86_400;

/** What a send says, as far as "the same email" goes. */
export interface SendContent {
  /** The config it goes through (its id: a name or the default resolves to it first). */
  configId: string;
  /** Every recipient: to, cc and bcc (order and case do not matter). */
  recipients: string[];
  /** Its subject, bodies and template, or their {@linkcode contentDigest} (a batch shares one). */
  content: MessageContent | string;
  /** The template's data (shared and own merged, as the message is rendered with it). */
  data?: Record<string, unknown>;
  /** Its files by name, type and content hash (see _shared/attachments: an upload and the same bytes inline agree). */
  attachments?: AttachmentDigest[];
}

/** An attachment as a fingerprint takes it. */
export interface AttachmentDigest {
  filename: string;
  content_type: string;
  /** SHA-256 of the bytes, hex. */
  sha256: string;
}

/** What a message says, apart from its recipients and its template's data. */
export interface MessageContent {
  subject?: string | null;
  text?: string | null;
  html?: string | null;
  /** The template's own content, when the send uses one: an edited template makes another email. */
  template?: TemplateContent | null;
}

/** A template as a fingerprint takes it: its own content (an edited template makes another email). */
type TemplateContent = { subject: string | null; text: string | null; html: string | null };

/**
 * What a send-email request (or a send-bulk message) says, its recipients and config aside: its
 * subject and bodies, the template's content, the data it is rendered with, the attachments.
 */
export function requestContent(
  req: {
    subject?: string;
    text?: string;
    html?: string;
    data?: Record<string, unknown>;
  },
  template?: TemplateContent,
  attachments?: AttachmentDigest[],
): Omit<SendContent, "configId" | "recipients"> & { content: MessageContent } {
  return {
    content: {
      subject: req.subject,
      text: req.text,
      html: req.html,
      template: template && { subject: template.subject, text: template.text, html: template.html },
    },
    data: template ? req.data : undefined,
    attachments,
  };
}

/**
 * The digest of a message's subject, bodies and template: computed once for the content a
 * batch's recipients share, rather than hashing a template's HTML 10,000 times.
 */
export function contentDigest(content: MessageContent): string {
  const template = content.template;
  return sha256Hex(JSON.stringify([
    content.subject ?? null,
    content.text ?? null,
    content.html ?? null,
    template ? [template.subject, template.text, template.html] : null,
  ]));
}

/**
 * The content fingerprint of a send: SHA-256 over its config, the set of its recipients,
 * subject, text, HTML, the template's content with its data, and the attachments (name, type
 * and content). Rendering is deterministic, so equal inputs render equal messages; two
 * requests that spell the same recipients differently (order, case, display names) are the
 * same email.
 *
 * @example
 * ```ts
 * const content = { subject: "Hi", text: "x" };
 * const a = contentFingerprint({ configId, recipients: ["A@x.org", "b@x.org"], content });
 * const b = contentFingerprint({ configId, recipients: ["b@x.org", "a@x.org"], content: contentDigest(content) });
 * // a and b are equal: 32 bytes
 * ```
 */
export function contentFingerprint(send: SendContent): Uint8Array {
  const templated = typeof send.content === "string" ? send.data !== undefined : Boolean(send.content.template);
  // A fixed shape, written as an array: only the data's keys need sorting.
  const canonical = JSON.stringify([
    2,
    send.configId,
    [...new Set(send.recipients.map(recipientKey))].sort(),
    typeof send.content === "string" ? send.content : contentDigest(send.content),
    templated ? sortedKeys(send.data ?? {}) : null,
    (send.attachments ?? [])
      .map((a) => [a.filename, a.content_type, a.sha256])
      .sort((x, y) => JSON.stringify(x) < JSON.stringify(y) ? -1 : 1),
  ]);
  return new Uint8Array(createHash("sha256").update(canonical).digest());
}

/**
 * A fingerprint as a statement parameter: bytes, which postgres.js sends as a bytea (a string
 * would be taken as the bytes of its characters).
 */
export function fingerprintParameter(fingerprint: Uint8Array): Buffer {
  return Buffer.from(fingerprint);
}

/**
 * With `allow_duplicate: true`, a send identical to a recent one goes anyway (its row records
 * the message it repeats) for the rest of this transaction; otherwise nothing is sent and such
 * a send is refused. The statement goes down the connection now, without waiting for its
 * answer: the inserts after it in the transaction see the setting.
 */
export function allowDuplicates(tx: Tx, allow: boolean | undefined): void {
  if (!allow) return;
  // A failure aborts the transaction, and the statements after it say so.
  tx`select set_config('mailroom.allow_duplicate', 'yes', true)`.execute().catch(() => {});
}

/** The message a duplicate repeats, as the 409's `details.duplicate_of` names it. */
export interface EarlierSend {
  id: string;
  status: string;
  message_id: string;
  created_at: string;
  scheduled_at: string | null;
}

/**
 * The caller's recent messages through `configId` that these fingerprints repeat (what a dry
 * run reports, and what send-bulk leaves out before queueing the rest), by fingerprint in hex.
 */
export async function earlierSends(
  tx: Tx,
  configId: string,
  fingerprints: string[],
): Promise<Map<string, { earlier: EarlierSend; windowSeconds: number }>> {
  const found = new Map<string, { earlier: EarlierSend; windowSeconds: number }>();
  if (fingerprints.length === 0) return found;
  const rows = await tx<{ fingerprint: string; earlier: EarlierSend; window_seconds: number }[]>`
    select encode(d.fingerprint, 'hex') as fingerprint, d.earlier, d.window_seconds
      from private.duplicate_sends(${configId}::uuid,
                                   array(select decode(h, 'hex') from unnest(${fingerprints}::text[]) h)) d`;
  for (const row of rows) found.set(row.fingerprint, { earlier: row.earlier, windowSeconds: row.window_seconds });
  return found;
}

/**
 * The refusal of a repeat, as the database words it for a send (409 `duplicate_send`): what a
 * dry run reports.
 */
export function duplicateSendRefusal(
  { earlier, windowSeconds }: { earlier: EarlierSend; windowSeconds: number },
): { status: 409; code: "duplicate_send"; message: string; details: Record<string, unknown> } {
  const accepted = ["scheduled", "queued", "pending_approval"].includes(earlier.status);
  return {
    status: 409,
    code: "duplicate_send",
    message:
      `This exact email (same config, recipients, subject, body and attachments) was already ${
        accepted ? "accepted" : "sent"
      } at ${
        new Date(earlier.created_at).toISOString().replace(/\.\d{3}Z$/, "Z")
      } (message ${earlier.id}, status ${earlier.status}); ` +
      "it was not sent again. Send it with allow_duplicate: true only if it should really go twice",
    details: { duplicate_of: earlier, window_seconds: windowSeconds },
  };
}

/** Lower-case hex of bytes. */
export function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("hex");
}

function sha256Hex(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}

/** A value with every object's keys in sorted order, so equal data always serialises alike. */
function sortedKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortedKeys);
  if (value === null || typeof value !== "object") return value;
  const sorted: Record<string, unknown> = {};
  for (const key of Object.keys(value).sort()) sorted[key] = sortedKeys((value as Record<string, unknown>)[key]);
  return sorted;
}
