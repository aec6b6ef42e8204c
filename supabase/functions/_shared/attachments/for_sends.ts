// What a send does with stored attachments when it is accepted: files given by URL are fetched
// once (per distinct URL) and stored as uploads, so the queued message names them by id; every
// id it names must be the caller's, and is held for as long as the send may still go; and each
// file enters the send's content fingerprint by its name, type and SHA-256, so the same bytes
// inline or by id make the same email (see _shared/duplicates).
import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import type { UserClaims } from "../auth.ts";
import type { AppContext } from "../context.ts";
import { type Tx, withUser } from "../db.ts";
import { ApiError, chargeRequest, isUuid } from "../http.ts";
import { type AttachmentInput, checkContentType, checkFilename } from "../mail/compose.ts";
import type { AttachmentDigest } from "../duplicates/mod.ts";
import { checkInlineFile, checkNotDisguised, settleContentType, typeByName } from "./content_type.ts";
import { fetchAttachmentUrl } from "./url_fetch.ts";
import { type HeldAttachment, holdAttachments, storeAttachment } from "./store.ts";

/**
 * How long a send keeps the files it names past its send time: the longest an approval may wait
 * (720 hours) plus the day deferred recipients are retried, and a day to spare.
 */
export const SEND_HOLD_DAYS = 32;

/** Distinct URLs one request may give: each is a fetch while the caller waits. */
export const MAX_URLS_PER_REQUEST = 10;

type UrlEntry = Extract<AttachmentInput, { url: string }>;

function isUrlEntry(item: unknown): item is UrlEntry {
  return item !== null && typeof item === "object" && typeof (item as { url?: unknown }).url === "string";
}

/** How much a built message holds per byte of a stored file it attaches (the file, and its base64 in the message). */
const BUILD_FACTOR = 2.4;

/**
 * Before a send is accepted: stored ids written as Postgres writes them (lower case), and the
 * attachments the lists give by URL fetched and stored, each distinct URL once, all within one
 * deadline; each such entry is replaced in place with `{id, filename?}` (its filename kept when
 * the caller gave one). Lists are read as given (unvalidated entries are left alone for
 * validation to refuse). With `request`, what this costs the instance in memory is charged to
 * its budget first: a fetch's worth for URLs, and with `loads` (a send built here and now) the
 * stored files it names.
 *
 * @throws ApiError 422 `too_many_attachment_urls`; the errors of {@linkcode fetchAttachmentUrl}
 *   and of storing (413 `attachment_storage_full`, 422 `attachment_type_mismatch`, 400
 *   `invalid_attachment`), with `details.url`; 503 `server_busy`.
 */
export async function resolveAttachmentReferences(
  ctx: AppContext,
  claims: UserClaims,
  lists: unknown[],
  options: { request?: Request; loads?: boolean } = {},
): Promise<void> {
  const entries: UrlEntry[] = [];
  for (const list of lists) {
    if (!Array.isArray(list)) continue;
    for (const item of list) {
      if (isUrlEntry(item)) entries.push(item);
      else if (item !== null && typeof item === "object" && typeof (item as { id?: unknown }).id === "string") {
        (item as { id: string }).id = (item as { id: string }).id.toLowerCase();
      }
    }
  }
  const { request } = options;
  if (request && options.loads) {
    const ids = attachmentIds(lists).filter(isUuid);
    if (ids.length > 0) {
      const [{ bytes }] = await withUser(ctx.sql, claims, (tx) =>
        tx<{ bytes: number }[]>`
          select coalesce(sum(size_bytes), 0)::float8 as bytes from public.attachments where id = any (${ids}::uuid[])`);
      await chargeRequest(request, Math.ceil(bytes * BUILD_FACTOR), claims.sub);
    }
  }
  if (entries.length === 0) return;
  const urls = [...new Set(entries.map((e) => e.url))];
  if (urls.length > MAX_URLS_PER_REQUEST) {
    throw new ApiError(
      422,
      "too_many_attachment_urls",
      `At most ${MAX_URLS_PER_REQUEST} different attachment URLs per request; upload the files with ` +
        "POST /attachments and attach them by id",
      { limit: MAX_URLS_PER_REQUEST, count: urls.length },
    );
  }
  // One file in hand at a time (its bytes and their copies on the way to Postgres).
  if (request) await chargeRequest(request, 2 * ctx.config.attachments.maxFileBytes, claims.sub);
  const deadline = Date.now() + ctx.config.attachments.urlTimeoutMs;
  const stored = new Map<string, string>();
  for (const entry of entries) {
    const key = JSON.stringify([entry.url, entry.filename ?? null, entry.content_type ?? null]);
    let id = stored.get(key);
    if (id === undefined) {
      id = (await storeFromUrl(ctx, claims, entry, deadline)).id;
      stored.set(key, id);
    }
    const filename = entry.filename;
    for (const field of Object.keys(entry)) delete (entry as Record<string, unknown>)[field];
    Object.assign(entry, filename === undefined ? { id } : { id, filename });
  }
}

/**
 * Fetch a file from an HTTPS URL (through the egress policy) and store it for the caller, as
 * POST /attachments does with `{url}`.
 */
export async function storeFromUrl(
  ctx: AppContext,
  claims: UserClaims,
  entry: { url: string; filename?: string; content_type?: string },
  deadline = Date.now() + ctx.config.attachments.urlTimeoutMs,
) {
  const limits = ctx.config.attachments;
  const declared = withUrl(entry.url, () => checkContentType(entry.content_type, 0));
  const timeoutMs = deadline - Date.now();
  if (timeoutMs <= 0) {
    throw new ApiError(422, "attachment_url_failed", `Could not fetch ${entry.url}: no time was left for it`, {
      url: entry.url,
    });
  }
  const fetched = await fetchAttachmentUrl(entry.url, {
    policy: ctx.config.egress,
    maxBytes: limits.maxFileBytes,
    timeoutMs,
    caCerts: ctx.config.oauth.caCerts,
  });
  const filename = entry.filename !== undefined
    ? withUrl(entry.url, () => checkFilename(entry.filename, 0))
    : usableName(fetched.filename);
  const contentType = await withUrl(
    entry.url,
    () => settleContentType(fetched.content, declared ?? validType(fetched.contentType), filename),
  );
  return await withUser(ctx.sql, claims, (tx) =>
    storeAttachment(tx, {
      filename,
      contentType,
      content: fetched.content,
      // As the URL parser writes it (the table keeps https URLs in that form).
      sourceUrl: new URL(entry.url).href,
    }, limits));
}

/** A server's file name if it is one we would accept, else "attachment". */
function usableName(name: string | undefined): string {
  if (name === undefined) return "attachment";
  try {
    return checkFilename(name, 0);
  } catch {
    return "attachment";
  }
}

/** A server's Content-Type if it is a plain `type/subtype`, else none. */
function validType(type: string | undefined): string | undefined {
  try {
    return checkContentType(type, 0);
  } catch {
    return undefined;
  }
}

/** Run `fn`; an ApiError it throws also names the URL it concerns. */
function withUrl<T>(url: string, fn: () => T): T {
  const named = (error: unknown): never => {
    if (error instanceof ApiError) {
      throw new ApiError(error.status, error.code, error.message, {
        ...(error.details as Record<string, unknown> ?? {}),
        url,
      });
    }
    throw error;
  };
  try {
    const value = fn();
    return (value instanceof Promise ? value.catch(named) : value) as T;
  } catch (error) {
    return named(error);
  }
}

/** The stored attachment ids the lists name (entries as given; anything else is ignored). */
export function attachmentIds(lists: unknown[]): string[] {
  const ids: string[] = [];
  for (const list of lists) {
    if (!Array.isArray(list)) continue;
    for (const item of list) {
      if (item !== null && typeof item === "object" && typeof (item as { id?: unknown }).id === "string") {
        ids.push((item as { id: string }).id);
      }
    }
  }
  return ids;
}

/**
 * In the send's transaction: the caller's stored attachments the lists name, each held until
 * `sendAt` + {@linkcode SEND_HOLD_DAYS}. Ids that are not the caller's (or gone) are missing
 * from the answer: the send's validation answers 404 `attachment_not_found` for them.
 */
export async function holdSendAttachments(
  tx: Tx,
  lists: unknown[],
  sendAt: Date = new Date(),
): Promise<Map<string, HeldAttachment>> {
  const ids = attachmentIds(lists);
  if (ids.length === 0) return new Map();
  return await holdAttachments(tx, ids, new Date(sendAt.getTime() + SEND_HOLD_DAYS * 86_400_000));
}

/**
 * At accept: a program among the files is refused unless it is called one, for inline files
 * (their bytes sniffed as an upload's are) and for a stored file given a new name in the send.
 *
 * @throws ApiError 422 `attachment_type_mismatch` (`details.index`).
 */
export async function checkAttachmentTypes(
  list: AttachmentInput[] | undefined,
  held: ReadonlyMap<string, HeldAttachment>,
): Promise<void> {
  for (const [index, item] of (list ?? []).entries()) {
    try {
      if ("url" in item) continue;
      if ("id" in item) {
        // A stored program renamed in the send (`setup` sent as `invoice.pdf`).
        const file = held.get(item.id.toLowerCase());
        if (file && item.filename !== undefined) checkNotDisguised(file.content_type, undefined, item.filename);
        continue;
      }
      const bytes = Buffer.from(item.content.replace(/\s+/g, ""), "base64");
      await checkInlineFile(bytes, item.content_type?.toLowerCase(), item.filename);
    } catch (error) {
      if (error instanceof ApiError) {
        throw new ApiError(error.status, error.code, `attachments.${index}: ${error.message}`, {
          ...(error.details as Record<string, unknown> ?? {}),
          index,
        });
      }
      throw error;
    }
  }
}

/** Stored sizes by id, as checkAttachments takes them. */
export function storedSizes(held: ReadonlyMap<string, HeldAttachment>): Map<string, number> {
  return new Map([...held].map(([id, file]) => [id, file.size_bytes]));
}

/**
 * The attachments of a send as its fingerprint takes them: name, type and SHA-256 of the bytes,
 * for inline ones (their type as nodemailer would label them when none is given) and stored
 * ones alike. Entries are already validated.
 */
export function attachmentDigests(
  list: AttachmentInput[] | undefined,
  stored: ReadonlyMap<string, { filename: string; content_type: string; sha256: string }>,
): AttachmentDigest[] {
  return (list ?? []).flatMap((item): AttachmentDigest[] => {
    if ("url" in item) return [];
    if ("id" in item) {
      const file = stored.get(item.id);
      if (!file) return [];
      return [{ filename: item.filename ?? file.filename, content_type: file.content_type, sha256: file.sha256 }];
    }
    return [{
      filename: item.filename,
      content_type: item.content_type?.toLowerCase() ?? typeByName(item.filename) ?? "application/octet-stream",
      sha256: base64Sha256(item.content),
    }];
  });
}

/** Base64 characters decoded per step of {@linkcode base64Sha256} (a multiple of 4). */
const HASH_SLICE_CHARS = 64 * 1024;

/**
 * SHA-256 of the bytes base64 (already checked) encodes, decoded a slice at a time: a 7 MiB
 * attachment never exists as one decoded buffer just to be hashed.
 */
export function base64Sha256(base64: string): string {
  const clean = /\s/.test(base64) ? base64.replace(/\s+/g, "") : base64;
  const hash = createHash("sha256");
  for (let at = 0; at < clean.length; at += HASH_SLICE_CHARS) {
    hash.update(Buffer.from(clean.slice(at, at + HASH_SLICE_CHARS), "base64"));
  }
  return hash.digest("hex");
}
