// Delivery reports in a mailbox, recognised and read: delivery status notifications (RFC 3464,
// `multipart/report; report-type=delivery-status`) and complaint reports (ARF, RFC 5965,
// `report-type=feedback-report`). The MIME tree comes from @zone-eu/mailsplit, the splitter
// mailparser is built on: mailparser's own simpleParser flattens a report (a `message/rfc822`
// part shown inline loses its Message-ID), so the parts are walked here. The report fields (a
// block of header-like fields per message and per recipient) are read here too. Anything else,
// or a report that does not say which message it is about, gives no reports: never an error.
import { Buffer } from "node:buffer";
import type { Transform } from "node:stream";
// The MIME splitter is loaded with the first report read (see imap.ts on why not before).
import type { Splitter as SplitterClass } from "@zone-eu/mailsplit";

/** What a report says about one recipient of one message. */
export interface DeliveryReport {
  /** The reported message's Message-ID, with its angle brackets. */
  message_id: string;
  address: string;
  /** The address as first given (Original-Recipient), when it differs (an alias expanded on the way). */
  original_address?: string;
  /** `bounce` (Action: failed), `delay` (Action: delayed) or `complaint` (an ARF report). */
  kind: "bounce" | "delay" | "complaint";
  /** The enhanced status code (`5.1.1`), or for a complaint its feedback type. */
  status?: string;
  /** What the remote server said (`smtp; 550 5.1.1 ...`, without the type). */
  diagnostic?: string;
  remote_mta?: string;
  /** When the report was written (its Date), ISO 8601. */
  reported_at?: string;
}

/** Parts that carry the reported message or its headers. */
const ORIGINAL_TYPES = new Set([
  "message/rfc822",
  "text/rfc822-headers",
  "message/rfc822-headers",
  "message/global",
  "message/global-headers",
]);

/** Most recipients read from one report (a report about thousands is not one of ours). */
const MAX_RECIPIENTS = 20;
/** Header values longer than this are cut before they are looked at (a report's fields are short). */
const MAX_FIELD = 4096;

/**
 * The reports in one message of the mailbox; an empty list when it is not a delivery or
 * complaint report, or names no Message-ID.
 *
 * @example
 * ```ts
 * const reports = await readReports(source);
 * // [{ message_id: "<abc@example.com>", address: "gone@example.net", kind: "bounce", status: "5.1.1", ... }]
 * ```
 */
export async function readReports(raw: Uint8Array): Promise<DeliveryReport[]> {
  let parts: Part[];
  try {
    parts = await partsOf(raw);
  } catch {
    return [];
  }
  const root = parts[0];
  if (!root || root.type !== "multipart/report") return [];
  const reportType = /report-type\s*=\s*"?([\w-]+)/i.exec(root.headers.getFirst("content-type"))?.[1]?.toLowerCase();
  const messageId = originalMessageId(parts);
  if (!messageId) return [];
  // A delivery status notification comes from the null sender (RFC 3464 section 2): one with
  // another envelope sender (Return-Path, as the delivering server wrote it) is not one.
  const returnPath = root.headers.getFirst("return-path");
  const date = new Date(root.headers.getFirst("date"));
  const reportedAt = Number.isNaN(date.getTime()) ? undefined : date.toISOString();

  if (reportType === "delivery-status" || reportType === "global-delivery-status") {
    if (returnPath && returnPath.replace(/\s/g, "") !== "<>") return [];
    const status = parts.find((p) =>
      p.type === "message/delivery-status" || p.type === "message/global-delivery-status"
    );
    if (!status) return [];
    const [, ...recipients] = fieldBlocks(status.body.toString("utf8"));
    const reports: DeliveryReport[] = [];
    for (const fields of recipients.slice(0, MAX_RECIPIENTS)) {
      const action = fields.get("action")?.toLowerCase();
      const kind = action === "failed" ? "bounce" : action === "delayed" ? "delay" : null;
      const original = addressOf(fields.get("original-recipient"));
      const address = addressOf(fields.get("final-recipient")) ?? original;
      if (!kind || !address) continue;
      const code = fields.get("status")?.match(/^[245]\.\d{1,3}\.\d{1,3}/)?.[0];
      reports.push(clean({
        message_id: messageId,
        address,
        original_address: original && original !== address ? original : undefined,
        kind,
        status: code,
        diagnostic: typed(fields.get("diagnostic-code")),
        remote_mta: typed(fields.get("remote-mta")),
        reported_at: reportedAt,
      }));
    }
    return reports;
  }

  if (reportType === "feedback-report") {
    const feedback = parts.find((p) => p.type === "message/feedback-report");
    if (!feedback) return [];
    const [fields] = fieldBlocks(feedback.body.toString("utf8"));
    if (!fields) return [];
    // The complainer: Original-Rcpt-To, else the reported message's only To address.
    const named = fields.getAll("original-rcpt-to").map(addressOf).filter((a): a is string => a !== null);
    const to = originalHeader(parts, "to");
    const toAddresses = to ? addressesIn(to) : [];
    const addresses = named.length > 0 ? named : toAddresses.length === 1 ? toAddresses : [];
    const type = fields.get("feedback-type")?.toLowerCase().slice(0, 16) ?? "abuse";
    return addresses.slice(0, MAX_RECIPIENTS).map((address) =>
      clean({
        message_id: messageId,
        address,
        kind: "complaint",
        status: type,
        diagnostic: fields.get("user-agent") ? `complaint (${fields.get("user-agent")})` : "complaint",
        reported_at: reportedAt,
      })
    );
  }
  return [];
}

/** Header-like fields, unfolded, case-insensitive, some repeated. */
class Fields {
  #values = new Map<string, string[]>();
  add(name: string, value: string): void {
    const key = name.toLowerCase();
    this.#values.set(key, [...(this.#values.get(key) ?? []), value]);
  }
  get(name: string): string | undefined {
    return this.#values.get(name)?.[0];
  }
  getAll(name: string): string[] {
    return this.#values.get(name) ?? [];
  }
  get size(): number {
    return this.#values.size;
  }
}

/** The blocks of fields of a delivery-status or feedback-report part (blank lines between them). */
function fieldBlocks(text: string): Fields[] {
  const blocks: Fields[] = [];
  let current = new Fields();
  let last: { name: string; value: string } | null = null;
  const flush = () => {
    if (last) current.add(last.name, last.value.trim().slice(0, MAX_FIELD));
    last = null;
  };
  for (const line of text.split(/\r?\n/)) {
    if (line.trim() === "") {
      flush();
      if (current.size > 0) blocks.push(current);
      current = new Fields();
      continue;
    }
    if (/^[ \t]/.test(line) && last) {
      const held = last as { value: string };
      if (held.value.length < MAX_FIELD) held.value += " " + line.trim();
      continue;
    }
    flush();
    const colon = line.indexOf(":");
    if (colon > 0) last = { name: line.slice(0, colon).trim(), value: line.slice(colon + 1) };
  }
  flush();
  if (current.size > 0) blocks.push(current);
  return blocks;
}

/** A MIME part: its type, its parent's, its headers and its body decoded. */
interface Part {
  type: string;
  parentType: string | null;
  headers: { getFirst(key: string): string };
  body: Buffer;
}

/** Most parts read from one message (a report has three or four). */
const MAX_PARTS = 50;

/** The parts of a message, depth first; an embedded message's headers are a part of their own. */
async function partsOf(raw: Uint8Array): Promise<Part[]> {
  const { Splitter } = await import("@zone-eu/mailsplit") as { Splitter: typeof SplitterClass };
  return await new Promise((resolve, reject) => {
    // Typed for its "data" events only; it is a Node Transform stream.
    const splitter = new Splitter({ maxHeadSize: 256 * 1024 }) as unknown as Transform;
    const parts: (Part & { chunks: Buffer[]; encoding: string | false })[] = [];
    splitter.on("data", (data: SplitterData) => {
      if (data.type === "node" && parts.length < MAX_PARTS) {
        parts.push({
          type: (data.contentType || "text/plain").toLowerCase(),
          parentType: data.parentNode ? (data.parentNode.contentType || null) : null,
          headers: data.headers || { getFirst: () => "" },
          body: Buffer.alloc(0),
          chunks: [],
          encoding: data.encoding,
        });
      } else if (data.type === "body" && parts.length > 0) {
        parts[parts.length - 1].chunks.push(data.value);
      }
    });
    splitter.on(
      "end",
      () =>
        resolve(
          parts.map(({ chunks, encoding, ...part }) => ({ ...part, body: decoded(Buffer.concat(chunks), encoding) })),
        ),
    );
    splitter.on("error", reject);
    splitter.end(Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength));
  });
}

/** What the Splitter emits. */
type SplitterData =
  | {
    type: "node";
    contentType: string | false;
    encoding: string | false;
    headers: { getFirst(key: string): string } | false;
    parentNode: { contentType: string | false } | false;
  }
  | { type: "body" | "data"; value: Buffer };

/** A body by its Content-Transfer-Encoding (reports are 7bit or 8bit; base64 and QP are allowed). */
function decoded(body: Buffer, encoding: string | false): Buffer {
  if (encoding === "base64") return Buffer.from(body.toString("latin1"), "base64");
  if (encoding === "quoted-printable") {
    const text = body.toString("latin1").replace(/=\r?\n/g, "");
    return Buffer.from(
      text.replace(/=([0-9A-Fa-f]{2})/g, (_, hex) => String.fromCharCode(parseInt(hex, 16))),
      "latin1",
    );
  }
  return body;
}

/** A header of the reported message: from its embedded headers, or a headers-only part. */
function originalHeader(parts: Part[], name: string): string | null {
  const embedded = parts.find((p) => p.parentType !== null && ORIGINAL_TYPES.has(p.parentType.toLowerCase()));
  if (embedded) return embedded.headers.getFirst(name) || null;
  const headersOnly = parts.find((p) => ORIGINAL_TYPES.has(p.type));
  if (!headersOnly) return null;
  const text = headersOnly.body.toString("utf8");
  const end = text.search(/\r?\n\r?\n/);
  const [fields] = fieldBlocks(end >= 0 ? text.slice(0, end) : text);
  return fields?.get(name) ?? null;
}

/** The Message-ID of the reported message, with angle brackets; null when it has none. */
function originalMessageId(parts: Part[]): string | null {
  return originalHeader(parts, "message-id")?.match(/<[^<>\s]{1,996}>/)?.[0] ?? null;
}

/** `rfc822; someone@example.net` → `someone@example.net` (lower case); null for anything else. */
function addressOf(field: string | undefined | null): string | null {
  if (!field) return null;
  const value = field.includes(";") ? field.slice(field.indexOf(";") + 1) : field;
  const address = value.trim().replace(/^<|>$/g, "").toLowerCase();
  return address.length <= 320 && /^[^\s@]+@[^\s@]+$/.test(address) ? address : null;
}

/** `smtp; 550 ...` → `550 ...`, cut to what a row keeps. */
function typed(field: string | undefined): string | undefined {
  if (!field) return undefined;
  const value = field.includes(";") ? field.slice(field.indexOf(";") + 1).trim() : field.trim();
  return value.slice(0, 1000) || undefined;
}

/** The addresses of an address-list header, by a linear scan (no backtracking on hostile input). */
function addressesIn(value: string): string[] {
  const found: string[] = [];
  for (const item of value.slice(0, MAX_FIELD).split(",")) {
    const bracket = item.lastIndexOf("<");
    const candidate = (bracket >= 0 ? item.slice(bracket + 1).split(">")[0] : item).trim().toLowerCase();
    if (addressOf(candidate)) found.push(candidate);
  }
  return found;
}

/** Without the fields left undefined, and with control characters out of every string (jsonb has no NUL). */
function clean(report: DeliveryReport): DeliveryReport {
  return Object.fromEntries(
    Object.entries(report).filter(([, v]) => v !== undefined).map((
      [k, v],
    ) => [k, typeof v === "string" ? [...v].filter((c) => c >= " " && c !== "\x7f").join("") : v]),
  ) as unknown as DeliveryReport;
}
