// Turning a validated send request into nodemailer message fields: bodies, allowed extra headers
// and in-memory attachments, within size limits.
import { Buffer } from "node:buffer";
import { Readable } from "node:stream";
import { checkHtmlComplexity, htmlToText } from "./html.ts";
import { ApiError } from "../http.ts";

/** Size limits of one message. */
export interface CompositionLimits {
  /** Recipients over to, cc and bcc together (after de-duplication). */
  maxRecipients: number;
  /** The whole encoded message as the SMTP server receives it (headers, bodies, base64 attachments). */
  maxMessageBytes: number;
  /** The HTML body, UTF-8 encoded. */
  maxHtmlBytes: number;
  /** The subject, in UTF-16 code units (RFC 5322's line limit). */
  maxSubjectChars: number;
  /** Number of attachments. */
  maxAttachments: number;
  /** All attachments together, decoded. */
  maxAttachmentBytes: number;
}

/** Defaults for {@linkcode CompositionLimits}; {@linkcode loadCompositionLimits} applies overrides. */
export const DEFAULT_LIMITS: Readonly<CompositionLimits> = Object.freeze({
  maxRecipients: 50,
  maxMessageBytes: 10 * 1024 * 1024,
  maxHtmlBytes: 2 * 1024 * 1024,
  maxSubjectChars: 998,
  maxAttachments: 10,
  // Base64 grows content by a third: 7 MiB of attachments still fit a 10 MiB message.
  maxAttachmentBytes: 7 * 1024 * 1024,
});

const LIMIT_VARIABLES: Record<keyof CompositionLimits, string> = {
  maxRecipients: "MAILROOM_MAX_RECIPIENTS",
  maxMessageBytes: "MAILROOM_MAX_MESSAGE_BYTES",
  maxHtmlBytes: "MAILROOM_MAX_HTML_BYTES",
  maxSubjectChars: "MAILROOM_MAX_SUBJECT_CHARS",
  maxAttachments: "MAILROOM_MAX_ATTACHMENTS",
  maxAttachmentBytes: "MAILROOM_MAX_ATTACHMENT_BYTES",
};

/**
 * Composition limits from the environment, each falling back to {@linkcode DEFAULT_LIMITS}:
 *
 * | variable                        | limit                | default  |
 * | ------------------------------- | -------------------- | -------- |
 * | `MAILROOM_MAX_RECIPIENTS`       | `maxRecipients`      | 50       |
 * | `MAILROOM_MAX_MESSAGE_BYTES`    | `maxMessageBytes`    | 10 MiB   |
 * | `MAILROOM_MAX_HTML_BYTES`       | `maxHtmlBytes`       | 2 MiB    |
 * | `MAILROOM_MAX_SUBJECT_CHARS`    | `maxSubjectChars`    | 998      |
 * | `MAILROOM_MAX_ATTACHMENTS`      | `maxAttachments`     | 10       |
 * | `MAILROOM_MAX_ATTACHMENT_BYTES` | `maxAttachmentBytes` | 7 MiB    |
 *
 * `MAILROOM_MAX_SUBJECT_CHARS` cannot exceed 998. Values are positive integers in plain digits.
 *
 * @throws Error naming the variable when a value is not a positive integer.
 * @example
 * ```ts
 * const limits = loadCompositionLimits(Deno.env.toObject());
 * ```
 */
export function loadCompositionLimits(env: Record<string, string | undefined>): CompositionLimits {
  const limits = { ...DEFAULT_LIMITS };
  for (const [key, name] of Object.entries(LIMIT_VARIABLES) as [keyof CompositionLimits, string][]) {
    const raw = env[name]?.trim();
    if (!raw) continue;
    const value = /^\d+$/.test(raw) ? Number(raw) : NaN;
    if (!Number.isSafeInteger(value) || value <= 0) {
      throw new Error(`${name} must be a positive integer, got "${raw}"`);
    }
    limits[key] = value;
  }
  if (limits.maxSubjectChars > DEFAULT_LIMITS.maxSubjectChars) {
    throw new Error(`MAILROOM_MAX_SUBJECT_CHARS must not exceed ${DEFAULT_LIMITS.maxSubjectChars}`);
  }
  return limits;
}

/**
 * The bodies to send: HTML alone gets a generated text alternative (nodemailer then builds
 * multipart/alternative); text alone stays text; both are kept as given.
 *
 * @example
 * ```ts
 * bodies({ html: "<p>Hi</p>" }); // { html: "<p>Hi</p>", text: "Hi" }
 * ```
 */
export function bodies(input: { text?: string; html?: string }): { text?: string; html?: string } {
  const out: { text?: string; html?: string } = {};
  if (input.text !== undefined) out.text = input.text;
  if (input.html !== undefined) {
    out.html = input.html;
    if (out.text === undefined) out.text = htmlToText(input.html);
  }
  return out;
}

/**
 * Refuse content that building the message would refuse, without building it: for a message
 * accepted now and built later (a queued or scheduled one). The subject must fit
 * `maxSubjectChars` and the HTML `maxHtmlBytes` (as buildMessage checks them), and HTML without
 * a text part must be simple enough to generate one from (as {@linkcode htmlToText} checks it;
 * `checkShape: false` skips that when the caller knows the shape was already checked).
 *
 * @throws ApiError 422 `subject_too_long` (`details.limit`), 413 `html_too_large`
 *   (`details.limit_bytes`), 422 `html_too_complex`.
 * @example
 * ```ts
 * checkContent({ subject: "Hi", html: "<p>Hi</p>" }, DEFAULT_LIMITS); // passes
 * ```
 */
export function checkContent(
  content: { subject?: string; text?: string; html?: string },
  limits: Pick<CompositionLimits, "maxSubjectChars" | "maxHtmlBytes">,
  options: { checkShape?: boolean } = {},
): void {
  if (content.subject !== undefined && content.subject.length > limits.maxSubjectChars) {
    throw new ApiError(422, "subject_too_long", `The subject exceeds ${limits.maxSubjectChars} characters`, {
      limit: limits.maxSubjectChars,
    });
  }
  if (content.html === undefined) return;
  // UTF-16 length <= UTF-8 length <= 3 x UTF-16 length: most bodies need no encoding.
  if (content.html.length * 3 > limits.maxHtmlBytes && Buffer.byteLength(content.html) > limits.maxHtmlBytes) {
    throw new ApiError(413, "html_too_large", `The HTML body exceeds ${limits.maxHtmlBytes} bytes`, {
      limit_bytes: limits.maxHtmlBytes,
    });
  }
  if (content.text === undefined && options.checkShape !== false) checkHtmlComplexity(content.html);
}

/** Most extra headers a message may carry. */
export const MAX_HEADERS = 20;
/** Longest extra header value, in UTF-16 code units (RFC 5322's line limit). */
export const MAX_HEADER_VALUE = 998;

// Headers a caller may set besides any X-*; canonical spelling by lower-case name. Everything
// else (From, To, Subject, Content-*, Received, DKIM-Signature, ...) is the sender's business.
const ALLOWED_HEADERS = new Map(
  ["List-Unsubscribe", "List-Unsubscribe-Post", "List-Id", "In-Reply-To", "References", "Auto-Submitted", "Precedence"]
    .map((name) => [name.toLowerCase(), name]),
);
// RFC 5322 field-name: printable US-ASCII except the colon; at most a folded line's worth.
const FIELD_NAME = /^[\x21-\x39\x3b-\x7e]{1,76}$/;
// Control characters other than tab (Unicode Cc: C0, DEL, C1). CR, LF and NUL would end a header
// line; the others have no business in a header value or a file name either.
const CONTROL = /[^\P{Cc}\t]/u;

/**
 * Check the caller's extra headers against the allow-list (any `X-*`, `List-Unsubscribe`,
 * `List-Unsubscribe-Post`, `List-Id`, `In-Reply-To`, `References`, `Auto-Submitted`,
 * `Precedence`; case-insensitive) and return them for nodemailer's `headers`, known names in
 * canonical spelling.
 *
 * @throws ApiError 400 `header_not_allowed` (not a field name, or not allowed),
 *   400 `duplicate_header` (same name twice, in any case), 400 `invalid_header_value` (not a
 *   string, a control character such as CR, LF or NUL, or longer than 998), 400 `too_many_headers`
 *   (more than {@linkcode MAX_HEADERS}); `details.header` names the header.
 * @example
 * ```ts
 * sanitizeHeaders({ "list-unsubscribe": "<mailto:u@example.com>", "X-Campaign": "q3" });
 * // { "List-Unsubscribe": "<mailto:u@example.com>", "X-Campaign": "q3" }
 * ```
 */
export function sanitizeHeaders(headers: Record<string, string> | undefined): Record<string, string> {
  if (headers === undefined) return {};
  const entries = Object.entries(headers);
  if (entries.length > MAX_HEADERS) {
    throw new ApiError(400, "too_many_headers", `At most ${MAX_HEADERS} extra headers are allowed`, {
      limit: MAX_HEADERS,
    });
  }
  const out: Record<string, string> = {};
  const seen = new Set<string>();
  for (const [header, value] of entries) {
    const lower = header.toLowerCase();
    const isExtension = lower.startsWith("x-") && lower.length > 2;
    if (!FIELD_NAME.test(header) || !(isExtension || ALLOWED_HEADERS.has(lower))) {
      throw new ApiError(400, "header_not_allowed", `Header ${JSON.stringify(header)} may not be set`, { header });
    }
    if (seen.has(lower)) {
      throw new ApiError(400, "duplicate_header", `Header ${JSON.stringify(header)} is given more than once`, {
        header,
      });
    }
    seen.add(lower);
    if (typeof value !== "string" || CONTROL.test(value) || value.length > MAX_HEADER_VALUE) {
      throw new ApiError(
        400,
        "invalid_header_value",
        `Header ${JSON.stringify(header)} must be a single-line string of at most ${MAX_HEADER_VALUE} characters`,
        { header },
      );
    }
    if (lower === "list-unsubscribe" && !isListUnsubscribe(value)) {
      throw new ApiError(
        400,
        "invalid_header_value",
        `Header ${JSON.stringify(header)} must be a comma-separated list of <https://...> and <mailto:...> entries`,
        { header, expected: "<https://...>, <mailto:...>" },
      );
    }
    out[ALLOWED_HEADERS.get(lower) ?? header] = value;
  }
  return out;
}

/**
 * RFC 2369 / RFC 8058: `<uri>` entries separated by commas, each an https URL with a host or a
 * mailto address. Anything else (javascript:, http:, bare URLs) would be a link the recipient's
 * mail client offers under the sender's name.
 */
function isListUnsubscribe(value: string): boolean {
  return value.split(",").every((entry) => {
    const uri = /^<([^<>\s]+)>$/.exec(entry.trim())?.[1];
    if (uri === undefined) return false;
    if (/^mailto:[^@]+@[^@]+$/i.test(uri)) return true;
    if (!/^https:\/\//i.test(uri)) return false;
    try {
      return new URL(uri).hostname !== "";
    } catch {
      return false;
    }
  });
}

/**
 * An attachment as the API takes it: base64 content, a stored attachment by id (its file name
 * may be given anew), or an HTTPS URL (fetched and stored when the send is accepted, so a
 * message being built never holds one: see _shared/attachments).
 */
export type AttachmentInput =
  | { filename: string; content: string; content_type?: string }
  | { id: string; filename?: string }
  | { url: string; filename?: string; content_type?: string };

/** A stored attachment's content, as the send's transaction read it (see _shared/attachments). */
export interface StoredContent {
  filename: string;
  contentType: string;
  content: Uint8Array;
}

/**
 * An attachment as nodemailer takes it, with in-memory content only: never `path`, `href` or
 * `raw`, so nodemailer cannot be made to read a file or fetch a URL. The content is a stream
 * that decodes the caller's base64 a slice at a time as the message is built, so a 7 MiB
 * attachment never exists a second time as one decoded buffer (nor a third, as nodemailer's
 * re-encoding of that buffer in one piece).
 */
export interface InMemoryAttachment {
  filename: string;
  content: Readable | Buffer;
  contentType?: string;
}

/** Base64 characters decoded per slice (a multiple of 4): 48 KiB of content. */
const DECODE_SLICE_CHARS = 64 * 1024;

/** A stream of the bytes `base64` (already checked) encodes, decoded a slice at a time when read. */
function decodingStream(base64: string): Readable {
  let offset = 0;
  return new Readable({
    read() {
      if (offset >= base64.length) {
        this.push(null);
        return;
      }
      const slice = base64.slice(offset, offset + DECODE_SLICE_CHARS);
      offset += slice.length;
      const bytes = Uint8Array.fromBase64(slice);
      this.push(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
    },
  });
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
// RFC 6838 restricted-name, type/subtype only (no parameters).
const MEDIA_TYPE = /^[a-z0-9][a-z0-9!#$&^_.+-]{0,126}\/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}$/i;
const MAX_FILENAME = 255;

/**
 * Check base64 attachments and turn them into in-memory nodemailer attachments.
 *
 * - `content`: standard base64 (RFC 4648 alphabet, `=` padding required, zero padding bits);
 *   line breaks are ignored so MIME-wrapped base64 is accepted; anything else is rejected.
 * - `filename`: 1 to 255 characters, no `/` or `\`, not `.` or `..`, and none of the characters
 *   that break or disguise a name: controls (C0, DEL, C1 including NEL U+0085), the line and
 *   paragraph separators U+2028 and U+2029 (line breaks to many renderers and to JavaScript
 *   source), bidirectional controls (U+202A-E, U+2066-9, U+200E/F, U+061C: U+202E makes
 *   `invoice\u202Efdp.exe` read as `invoiceexe.pdf`), and every other format or
 *   default-ignorable character, which renders as nothing (zero-width characters, soft hyphen,
 *   Hangul fillers, variation selectors, tag characters). The zero-width joiner inside an emoji
 *   sequence and a variation selector after an emoji are what they are meant for and stay.
 * - `content_type`: `type/subtype` without parameters; stored lower-case. When absent,
 *   nodemailer guesses it from the filename.
 *
 * Limits are checked before decoding, so oversized input is never allocated.
 *
 * @throws ApiError 413 `too_many_attachments` (`details.limit`), 413 `attachments_too_large`
 *   (`details.limit_bytes`), 400 `invalid_attachment` (`details.index`, `details.field`; the
 *   message starts with the field's path, e.g. `attachments.0.filename:`, and names a refused
 *   character by its code point, e.g. `U+2028 (a line separator) at position 7`).
 * @example
 * ```ts
 * decodeAttachments([{ filename: "hi.txt", content: "aGk=" }], { maxCount: 10, maxTotalBytes: 1024 });
 * // [{ filename: "hi.txt", content: Readable of "hi" }]
 * ```
 */
export function decodeAttachments(
  list: AttachmentInput[] | undefined,
  limits: { maxCount: number; maxTotalBytes: number },
  stored: ReadonlyMap<string, StoredContent> = new Map(),
): InMemoryAttachment[] {
  const sizes = new Map([...stored].map(([id, file]) => [id, file.content.byteLength]));
  // Ids are looked up as Postgres writes them: lower case.
  return checkAttachments(list, limits, sizes).map((part) => {
    if ("id" in part) {
      const file = stored.get(part.id.toLowerCase())!;
      const content = Buffer.from(file.content.buffer, file.content.byteOffset, file.content.byteLength);
      return { filename: part.filename ?? file.filename, content, contentType: file.contentType };
    }
    const content = decodingStream(part.base64);
    return part.contentType === undefined
      ? { filename: part.filename, content }
      : { filename: part.filename, content, contentType: part.contentType };
  });
}

/** An attachment checked: inline base64 (line breaks removed), or a stored one by id. */
export type CheckedAttachment =
  | { filename: string; contentType?: string; base64: string }
  | { id: string; filename?: string };

/**
 * Check attachments as {@linkcode decodeAttachments} does, without decoding or reading any: a
 * stored attachment counts by its size in `storedSizes` (by id); one not there is 404
 * `attachment_not_found`. What the accept paths of queued sends run.
 */
export function checkAttachments(
  list: AttachmentInput[] | undefined,
  limits: { maxCount: number; maxTotalBytes: number },
  storedSizes: ReadonlyMap<string, number> = new Map(),
): CheckedAttachment[] {
  if (list === undefined) return [];
  if (list.length > limits.maxCount) {
    throw new ApiError(413, "too_many_attachments", `At most ${limits.maxCount} attachments are allowed`, {
      limit: limits.maxCount,
    });
  }
  let total = 0;
  const count = (bytes: number) => {
    total += bytes;
    if (total > limits.maxTotalBytes) {
      throw new ApiError(
        413,
        "attachments_too_large",
        `Attachments exceed ${limits.maxTotalBytes} bytes in total`,
        { limit_bytes: limits.maxTotalBytes },
      );
    }
  };
  return list.map((item, index): CheckedAttachment => {
    if ("url" in item) {
      throw invalidAttachment(index, "url", "an attachment by URL is fetched when the send is accepted, not here");
    }
    if ("id" in item) {
      const size = storedSizes.get(item.id.toLowerCase());
      if (size === undefined) throw attachmentNotFound(index, item.id);
      count(size);
      return item.filename === undefined
        ? { id: item.id }
        : { id: item.id, filename: checkFilename(item.filename, index) };
    }
    const filename = checkFilename(item.filename, index);
    const contentType = checkContentType(item.content_type, index);
    const base64 = typeof item.content === "string" ? item.content.replace(/\r?\n/g, "") : "";
    if (typeof item.content !== "string" || base64.length % 4 !== 0 || !BASE64.test(base64)) {
      throw invalidAttachment(index, "content", "content must be standard base64 with padding");
    }
    count(decodedLength(base64));
    // The alphabet and padding are checked above; only the last group can still have padding
    // bits set, and strict decoding of it refuses those.
    try {
      Uint8Array.fromBase64(base64.slice(-4), { lastChunkHandling: "strict" });
    } catch {
      throw invalidAttachment(index, "content", "content must be standard base64 with padding");
    }
    return contentType === undefined ? { filename, base64 } : { filename, contentType, base64 };
  });
}

/** The bytes checked base64 (no line breaks) decodes to. */
export function decodedLength(base64: string): number {
  const padding = base64.endsWith("==") ? 2 : base64.endsWith("=") ? 1 : 0;
  return (base64.length / 4) * 3 - padding;
}

// What breaks or disguises a file name: controls (Cc, tab included), format characters (Cf: bidi
// controls, zero-width characters, soft hyphen, tags, ...), line and paragraph separators (Zl,
// Zp), and default-ignorable code points, which render as nothing (Hangul fillers, the combining
// grapheme joiner, variation selectors, ...).
const NOT_IN_FILENAME = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Default_Ignorable_Code_Point}]/u;
// Except the zero-width joiner inside an emoji sequence (👨‍👩‍👧) and a variation selector right after
// an emoji (❤️, 1️⃣), where they are what they are meant for.
const EMOJI_JOINER = /(?<=[\p{Extended_Pictographic}\p{Emoji_Modifier}]\uFE0F?)\u200D(?=\p{Extended_Pictographic})/gu;
const EMOJI_VARIATION = /(?<=\p{Emoji})[\uFE0E\uFE0F]/gu;
const BIDI_CONTROL = /\p{Bidi_Control}/u;

/** 404 `attachment_not_found`: no stored attachment of the caller's with that id (or it expired). */
export function attachmentNotFound(index: number, id: string): ApiError {
  return new ApiError(
    404,
    "attachment_not_found",
    `attachments.${index}.id: no stored attachment ${JSON.stringify(id)} (it was deleted, expired, or is not yours); ` +
      "upload it again with POST /attachments",
    { index, attachment_id: id },
  );
}

/** A file name as an attachment may carry it, or 400 `invalid_attachment` naming what is wrong. */
export function checkFilename(filename: unknown, index: number): string {
  const shape = `filename must be 1 to ${MAX_FILENAME} characters, without "/" or "\\", and not "." or ".."`;
  if (typeof filename !== "string" || filename.length === 0 || filename.length > MAX_FILENAME) {
    throw invalidAttachment(index, "filename", shape);
  }
  if (/[/\\]/.test(filename) || filename === "." || filename === "..") {
    throw invalidAttachment(index, "filename", shape);
  }
  // Emoji joiners and variation selectors are blanked, not removed, so positions stay the same.
  const visible = filename.replace(EMOJI_JOINER, " ").replace(EMOJI_VARIATION, " ");
  const at = visible.search(NOT_IN_FILENAME);
  if (at >= 0) {
    const code = filename.codePointAt(at)!;
    const character = `U+${code.toString(16).toUpperCase().padStart(4, "0")}`;
    throw invalidAttachment(
      index,
      "filename",
      `filename contains ${character} (${characterKind(String.fromCodePoint(code))}) at position ${at}; ` +
        "file names may not hold control, line-separator, bidirectional or invisible characters",
    );
  }
  return filename;
}

/** What a refused file name character is, in words. */
function characterKind(character: string): string {
  if (/\p{Cc}/u.test(character)) return "a control character";
  if (character === "\u2028") return "a line separator";
  if (character === "\u2029") return "a paragraph separator";
  if (BIDI_CONTROL.test(character)) return "a bidirectional control";
  return "an invisible character";
}

/** A declared content type (`type/subtype`, lower-cased), or 400 `invalid_attachment`. */
export function checkContentType(contentType: unknown, index: number): string | undefined {
  if (contentType === undefined) return undefined;
  if (typeof contentType !== "string" || !MEDIA_TYPE.test(contentType)) {
    throw invalidAttachment(index, "content_type", "content_type must look like type/subtype");
  }
  return contentType.toLowerCase();
}

// The message leads with the field's path; details keep {index, field}, which clients read.
export function invalidAttachment(index: number, field: string, reason: string): ApiError {
  return new ApiError(400, "invalid_attachment", `attachments.${index}.${field}: ${reason}`, { index, field });
}
