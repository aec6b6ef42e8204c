// What a message sent at once keeps for its owner to read later (email_audit_log.content): its
// header block as it went on the wire, its text and HTML parts (each capped) and its attachments
// by name, type and size. Never attachment bytes. Queued messages keep their request instead
// (email_audit_log.payload), from which the same view is rebuilt.

/** Characters kept of each body part; the rest is cut and `truncated` says so. */
export const MAX_KEPT_PART_CHARS = 200_000;
/**
 * Most bytes of the kept content as JSON text (the table allows 1 MiB): text in other scripts
 * takes three bytes a character, and escaping up to six, so parts are cut by what they encode to.
 */
export const MAX_KEPT_JSON_BYTES = 900_000;
/** Header fields kept (a message has a few dozen). */
export const MAX_KEPT_HEADERS = 100;

/** One attachment as a listing shows it (see _shared/attachments/describe.ts). */
export interface DescribedAttachment {
  /** A stored attachment's id; absent for one given inline. */
  id?: string;
  filename: string;
  content_type: string | null;
  size_bytes: number;
}

/** One header field, unfolded, its value as on the wire (encoded words stay encoded). */
export interface HeaderField {
  name: string;
  value: string;
}

/** A message's content as its owner reads it back. */
export interface KeptContent {
  /** Cc and Bcc addresses (To is on the audit row). */
  cc: string[];
  bcc: string[];
  headers: HeaderField[];
  text: string | null;
  html: string | null;
  attachments: DescribedAttachment[];
  /** A body part was longer than MAX_KEPT_PART_CHARS and is cut. */
  truncated: boolean;
}

/**
 * The header fields of a raw RFC 5322 message: the block before the first empty line, unfolded
 * (a line starting with a space or tab continues the field before it).
 *
 * @example
 * ```ts
 * headerFields(new TextEncoder().encode("Subject: Hi\r\n there\r\nTo: a@b.c\r\n\r\nbody"));
 * // [{ name: "Subject", value: "Hi there" }, { name: "To", value: "a@b.c" }]
 * ```
 */
export function headerFields(raw: Uint8Array): HeaderField[] {
  const bytes = raw.subarray(0, Math.min(raw.length, 64 * 1024));
  const text = new TextDecoder().decode(bytes);
  const end = text.search(/\r?\n\r?\n/);
  const block = end === -1 ? text : text.slice(0, end);
  const fields: HeaderField[] = [];
  for (const line of block.split(/\r?\n/)) {
    if (/^[ \t]/.test(line) && fields.length > 0) {
      fields[fields.length - 1].value += " " + line.trim();
      continue;
    }
    const colon = line.indexOf(":");
    if (colon <= 0) continue;
    if (fields.length === MAX_KEPT_HEADERS) break;
    fields.push({ name: line.slice(0, colon), value: line.slice(colon + 1).trim() });
  }
  return fields;
}

/**
 * `text` cut to at most `chars` UTF-16 units, never between the halves of a surrogate pair, and
 * well-formed (a lone surrogate, which JSON input can carry, becomes U+FFFD: jsonb refuses one).
 */
function cut(text: string, chars: number): string {
  if (text.length <= chars) return text.toWellFormed();
  return text.slice(0, /[\uD800-\uDBFF]/.test(text[chars - 1]) ? chars - 1 : chars).toWellFormed();
}

const jsonBytes = (value: unknown) => new TextEncoder().encode(JSON.stringify(value)).length;

/**
 * What a sent message keeps: its headers from `raw`, its parts cut to MAX_KEPT_PART_CHARS each
 * and then, longest first, until the whole encodes to MAX_KEPT_JSON_BYTES; its attachments listed.
 */
export function keptContent(
  message: {
    raw: Uint8Array;
    text?: string;
    html?: string;
    recipients: { cc: { address: string }[]; bcc: { address: string }[] };
  },
  attachments: DescribedAttachment[],
): KeptContent {
  const content: KeptContent = {
    cc: message.recipients.cc.map((a) => a.address.toWellFormed()),
    bcc: message.recipients.bcc.map((a) => a.address.toWellFormed()),
    headers: headerFields(message.raw),
    text: message.text === undefined ? null : cut(message.text, MAX_KEPT_PART_CHARS),
    html: message.html === undefined ? null : cut(message.html, MAX_KEPT_PART_CHARS),
    attachments: attachments.map((a) => ({ ...a, filename: a.filename.toWellFormed() })),
    truncated: (message.text?.length ?? 0) > MAX_KEPT_PART_CHARS || (message.html?.length ?? 0) > MAX_KEPT_PART_CHARS,
  };
  for (let size = jsonBytes(content); size > MAX_KEPT_JSON_BYTES; size = jsonBytes(content)) {
    const longer = (content.html?.length ?? 0) >= (content.text?.length ?? 0) ? "html" : "text";
    const part = content[longer] ?? "";
    // Shrink by the share the excess takes, and a little more.
    const keep = Math.floor(part.length * (MAX_KEPT_JSON_BYTES / size) * 0.9);
    content[longer] = keep > 0 ? cut(part, keep) : null;
    content.truncated = true;
  }
  return content;
}
