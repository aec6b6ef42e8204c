// The attachments table, as the functions reach it: in the caller's RLS context, with the
// writes through the private functions that check the quota and what still needs a file
// (supabase/migrations/20261207060000_stored_attachments.sql).
import { Buffer } from "node:buffer";
import { isoUtc, type Tx } from "../db.ts";
import { ApiError, isUuid } from "../http.ts";
import type { StoredContent } from "../mail/compose.ts";
import type { MessageCursor } from "../analytics/params.ts";

/** A stored attachment as the API shows it (never its bytes). */
export interface AttachmentRecord {
  id: string;
  filename: string;
  content_type: string;
  size_bytes: number;
  /** SHA-256 of the bytes, hex. */
  sha256: string;
  /** Where it was fetched from, for a file given by URL. */
  source_url: string | null;
  created_at: string;
  expires_at: string;
}

/** A stored attachment's content and hash, as a message is built from it. */
export type StoredFile = StoredContent & { sha256: string };

/** What a send needs to know of a stored attachment it references. */
export interface HeldAttachment {
  id: string;
  filename: string;
  content_type: string;
  size_bytes: number;
  /** SHA-256 of the bytes, hex. */
  sha256: string;
}

function columns(tx: Tx) {
  return tx`a.id, a.filename, a.content_type, a.size_bytes, encode(a.sha256, 'hex') as sha256, a.source_url,
            ${isoUtc(tx, "a.created_at")} as created_at, ${isoUtc(tx, "a.expires_at")} as expires_at`;
}

/** A file to store: its bytes, and the name and type it was settled on. */
export interface NewAttachment {
  filename: string;
  contentType: string;
  content: Uint8Array;
  sourceUrl?: string;
}

/**
 * Store a file for the caller (or find the same file, same name and type, stored already: its
 * retention starts again). `created` says which.
 *
 * @throws ApiError 413 `attachment_storage_full` (`details.limit_bytes`, `used_bytes`).
 */
export async function storeAttachment(
  tx: Tx,
  file: NewAttachment,
  limits: { retentionDays: number; storageBytesPerUser: number },
): Promise<AttachmentRecord & { created: boolean }> {
  const content = Buffer.from(file.content.buffer, file.content.byteOffset, file.content.byteLength);
  const [row] = await tx<(Omit<AttachmentRecord, "sha256" | "created_at" | "expires_at"> & {
    sha256: Buffer;
    created_at: Date;
    expires_at: Date;
    created: boolean;
  })[]>`
    select * from private.store_attachment(${file.filename}, ${file.contentType}, ${content}::bytea,
                                           ${file.sourceUrl ?? null}::text, ${limits.retentionDays}::integer,
                                           ${limits.storageBytesPerUser}::bigint)`;
  return {
    ...row,
    sha256: Buffer.from(row.sha256).toString("hex"),
    created_at: row.created_at.toISOString(),
    expires_at: row.expires_at.toISOString(),
  };
}

/** A page of the caller's attachments, newest first, after `cursor`. */
export async function listAttachments(
  tx: Tx,
  page: { limit: number; cursor?: MessageCursor },
): Promise<AttachmentRecord[]> {
  const after = page.cursor
    ? tx`and (a.created_at, a.id) < (${page.cursor.createdAt}::timestamptz, ${page.cursor.id}::uuid)`
    : tx``;
  return await tx<AttachmentRecord[]>`
    select ${columns(tx)} from public.attachments a
     where a.user_id = (select auth.uid()) and a.expires_at > now() ${after}
     order by a.created_at desc, a.id desc
     limit ${page.limit}`;
}

function notFound(id: string): ApiError {
  return new ApiError(404, "attachment_not_found", `No attachment ${JSON.stringify(id)}`, { id });
}

/** One of the caller's attachments; 404 for anything else (another user's looks the same as none). */
export async function getAttachment(tx: Tx, id: string): Promise<AttachmentRecord> {
  if (!isUuid(id)) throw notFound(id);
  const [row] = await tx<AttachmentRecord[]>`
    select ${columns(tx)} from public.attachments a where a.id = ${id}::uuid and a.expires_at > now()`;
  if (!row) throw notFound(id);
  return row;
}

/** Several of the caller's attachments by id, as the API shows them (the others are left out). */
export async function storedAttachmentsById(tx: Tx, ids: string[]): Promise<Map<string, AttachmentRecord>> {
  const valid = [...new Set(ids.filter(isUuid))];
  if (valid.length === 0) return new Map();
  const rows = await tx<AttachmentRecord[]>`
    select ${columns(tx)} from public.attachments a where a.id = any (${valid}::uuid[])`;
  return new Map(rows.map((row) => [row.id, row]));
}

/**
 * Delete one of the caller's attachments.
 *
 * @throws ApiError 404 `attachment_not_found`, 409 `attachment_in_use` (`details.messages`).
 */
export async function deleteAttachment(tx: Tx, id: string): Promise<void> {
  if (!isUuid(id)) throw notFound(id);
  await tx`select private.delete_attachment(${id}::uuid)`;
}

/**
 * The caller's attachments a send references, each kept at least until `until` (a send that
 * waits keeps its files). Unknown, expired and other users' ids are simply not in the answer.
 */
export async function holdAttachments(tx: Tx, ids: string[], until: Date): Promise<Map<string, HeldAttachment>> {
  const valid = [...new Set(ids.filter(isUuid))];
  if (valid.length === 0) return new Map();
  // Rounded up to a whole day, so that many sends of one file update its row once a day at most.
  const day = 86_400_000;
  const rounded = new Date(Math.ceil(until.getTime() / day) * day);
  const rows = await tx<(Omit<HeldAttachment, "sha256"> & { sha256: Buffer })[]>`
    select id, filename, content_type, size_bytes, sha256
      from private.hold_attachments(${valid}::uuid[], ${rounded.toISOString()}::timestamptz)`;
  return new Map(rows.map((row) => [row.id, { ...row, sha256: Buffer.from(row.sha256).toString("hex") }]));
}

/**
 * The bytes of the caller's attachments, for building messages (RLS shows only theirs; expired
 * ones are gone). Those already in `into` are not read again: a worker's group of messages that
 * share a file reads it once.
 */
export async function loadAttachmentContents(
  tx: Tx,
  ids: string[],
  into: Map<string, StoredFile> = new Map(),
): Promise<Map<string, StoredFile>> {
  const missing = [...new Set(ids.filter((id) => isUuid(id) && !into.has(id)))];
  if (missing.length === 0) return into;
  const rows = await tx<{ id: string; filename: string; content_type: string; sha256: string; content: Uint8Array }[]>`
    select a.id, a.filename, a.content_type, encode(a.sha256, 'hex') as sha256, a.content from public.attachments a
     where a.id = any (${missing}::uuid[]) and a.expires_at > now()`;
  for (const row of rows) {
    into.set(row.id, {
      filename: row.filename,
      contentType: row.content_type,
      sha256: row.sha256,
      content: row.content,
    });
  }
  return into;
}
