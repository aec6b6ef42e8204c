// POST /attachments: a file as multipart/form-data (field `file`, as `curl -F file=@report.pdf`
// sends it) or as JSON ({filename, content: base64} or {url}), read no further than the size
// limit allows, named and typed as send-email would attach it, and stored for the caller.
import type { UserClaims } from "../auth.ts";
import type { AppContext } from "../context.ts";
import { withUser } from "../db.ts";
import { ApiError, chargeRequest, readBytes, readJson } from "../http.ts";
import { checkContentType, checkFilename } from "../mail/compose.ts";
import { parseBody, uploadAttachmentRequest } from "../schemas.ts";
import { settleContentType } from "./content_type.ts";
import { storeFromUrl } from "./for_sends.ts";
import { type AttachmentRecord, storeAttachment } from "./store.ts";

/** Room for a multipart body's boundaries and part headers, or a JSON body's other fields. */
const ENVELOPE_BYTES = 64 * 1024;

function tooLarge(limit: number): ApiError {
  return new ApiError(413, "attachment_too_large", `The file exceeds ${limit} bytes`, { limit_bytes: limit });
}

/** Field errors of an upload, named by the field alone (not `attachments.0.`). */
function field<T>(fn: () => T): T {
  try {
    return fn();
  } catch (error) {
    if (error instanceof ApiError && error.code === "invalid_attachment") {
      const details = error.details as { field?: string };
      throw new ApiError(400, "invalid_attachment", error.message.replace(/^attachments\.0\./, ""), {
        field: details?.field,
      });
    }
    throw error;
  }
}

/** A body read within its limit; one larger is refused as the file it carries (413 attachment_too_large). */
async function withinFileLimit<T>(reading: Promise<T>, fileLimit: number): Promise<T> {
  try {
    return await reading;
  } catch (error) {
    if (error instanceof ApiError && error.code === "payload_too_large") throw tooLarge(fileLimit);
    throw error;
  }
}

/**
 * Store the file a POST /attachments request carries, for the caller.
 *
 * @throws ApiError 415 `unsupported_media_type`, 413 `attachment_too_large` (refused while
 *   reading), 400 `invalid_request` / `invalid_attachment`, 422 `attachment_type_mismatch`,
 *   413 `attachment_storage_full`, and for `{url}` the errors of fetching it.
 */
export async function storeUpload(
  ctx: AppContext,
  claims: UserClaims,
  req: Request,
): Promise<AttachmentRecord & { created: boolean }> {
  const limits = ctx.config.attachments;
  const type = (req.headers.get("content-type") ?? "").split(";")[0].trim().toLowerCase();
  let file: { filename: string; declared?: string; content: Uint8Array };
  if (type === "multipart/form-data") {
    const bytes = await withinFileLimit(
      readBytes(req, limits.maxFileBytes + ENVELOPE_BYTES, claims.sub),
      limits.maxFileBytes,
    );
    file = await formFile(req, bytes);
  } else if (type === "application/json" || type === "") {
    const base64Limit = Math.ceil(limits.maxFileBytes / 3) * 4;
    const body = parseBody(
      uploadAttachmentRequest,
      await withinFileLimit(readJson(req, base64Limit + ENVELOPE_BYTES, claims.sub), limits.maxFileBytes),
    );
    if ("url" in body) {
      // The fetched bytes and their copies on the way to Postgres: charged to the instance first.
      await chargeRequest(req, 2 * limits.maxFileBytes, claims.sub);
      return await storeFromUrl(ctx, claims, body);
    }
    const base64 = body.content.replace(/\r?\n/g, "");
    let content: Uint8Array;
    try {
      content = Uint8Array.fromBase64(base64, { lastChunkHandling: "strict" });
    } catch {
      throw new ApiError(400, "invalid_attachment", "content: must be standard base64 with padding", {
        field: "content",
      });
    }
    file = { filename: body.filename, declared: body.content_type, content };
  } else {
    throw new ApiError(
      415,
      "unsupported_media_type",
      "Send the file as multipart/form-data (a field named file) or as JSON {filename, content (base64)} or {url}",
    );
  }
  if (file.content.byteLength > limits.maxFileBytes) throw tooLarge(limits.maxFileBytes);
  if (file.content.byteLength === 0) {
    throw new ApiError(400, "invalid_attachment", "The file is empty", { field: "content" });
  }
  const filename = field(() => checkFilename(file.filename, 0));
  const declared = field(() => checkContentType(file.declared, 0));
  const contentType = await settleContentType(file.content, declared, filename);
  return await withUser(
    ctx.sql,
    claims,
    (tx) => storeAttachment(tx, { filename, contentType, content: file.content }, limits),
  );
}

/**
 * The `file` part of a multipart body already read: its bytes, its name (or the `filename`
 * field's), and its declared type (the `content_type` field's, else the part's own).
 */
async function formFile(
  req: Request,
  bytes: Uint8Array,
): Promise<{ filename: string; declared?: string; content: Uint8Array }> {
  let form: FormData;
  try {
    form = await new Response(bytes as Uint8Array<ArrayBuffer>, {
      headers: { "content-type": req.headers.get("content-type")! },
    }).formData();
  } catch {
    throw new ApiError(400, "invalid_request", "The body is not valid multipart/form-data");
  }
  const part = form.get("file");
  if (!(part instanceof File)) {
    throw new ApiError(400, "invalid_request", 'Send the file in a form field named "file" (curl -F file=@name.pdf)', {
      field: "file",
    });
  }
  const name = form.get("filename");
  const declared = form.get("content_type");
  const partType = part.type.split(";")[0].trim().toLowerCase();
  return {
    filename: typeof name === "string" && name !== "" ? name : part.name,
    ...(typeof declared === "string" && declared !== ""
      ? { declared }
      : partType !== "" && partType !== "application/octet-stream"
      ? { declared: partType }
      : {}),
    content: new Uint8Array(await part.arrayBuffer()),
  };
}
