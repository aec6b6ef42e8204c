// /attachments: files stored once and attached by id from any number of messages.
//
//   POST   /attachments       store a file: multipart/form-data (field `file`) or JSON
//                             {filename, content (base64), content_type?} or {url, filename?}
//                             -> 201 (or 200: the same file, name and type was stored already)
//   GET    /attachments       the caller's files, newest first (?limit=, ?cursor=)
//   GET    /attachments/:id   one file's record (never its bytes)
//   DELETE /attachments/:id   delete it (409 attachment_in_use while a waiting message needs it)
import { bearerToken } from "../_shared/auth.ts";
import type { AppContext } from "../_shared/context.ts";
import { withUser } from "../_shared/db.ts";
import { ApiError, type Handler, json, methodNotAllowed, routeSegments, serveJson } from "../_shared/http.ts";
import { decodeCursor, encodeCursor } from "../_shared/analytics/params.ts";
import { deleteAttachment, getAttachment, listAttachments, storeUpload } from "../_shared/attachments/mod.ts";

const DEFAULT_PAGE = 50;
const MAX_PAGE = 200;

function pageOf(url: URL): { limit: number; cursor?: ReturnType<typeof decodeCursor> } {
  const rawLimit = url.searchParams.get("limit");
  const limit = rawLimit === null ? DEFAULT_PAGE : /^\d{1,3}$/.test(rawLimit) ? Number(rawLimit) : NaN;
  if (!(limit >= 1 && limit <= MAX_PAGE)) {
    throw new ApiError(400, "invalid_limit", `limit must be from 1 to ${MAX_PAGE}`, { param: "limit" });
  }
  const rawCursor = url.searchParams.get("cursor");
  return rawCursor === null ? { limit } : { limit, cursor: decodeCursor(rawCursor) };
}

/** Build the attachments handler over a shared context. */
export function createAttachmentsHandler(ctx: AppContext): Handler {
  return serveJson(async (req) => {
    const claims = await ctx.verifyToken(bearerToken(req));
    const [id, ...rest] = routeSegments(req, "attachments");
    if (rest.length > 0) throw new ApiError(404, "route_not_found", "No such route; /attachments or /attachments/:id");
    if (id === undefined) {
      if (req.method === "POST") {
        const { created, ...record } = await storeUpload(ctx, claims, req);
        return json(record, created ? 201 : 200);
      }
      if (req.method !== "GET") methodNotAllowed("GET, POST");
      const page = pageOf(new URL(req.url));
      const rows = await withUser(ctx.sql, claims, (tx) => listAttachments(tx, page));
      const last = rows.length === page.limit ? rows[rows.length - 1] : undefined;
      return json({
        attachments: rows,
        next_cursor: last ? encodeCursor({ createdAt: last.created_at, id: last.id }) : null,
      });
    }
    if (req.method === "GET") return json(await withUser(ctx.sql, claims, (tx) => getAttachment(tx, id)));
    if (req.method !== "DELETE") methodNotAllowed("GET, DELETE");
    await withUser(ctx.sql, claims, (tx) => deleteAttachment(tx, id));
    return json({ id, deleted: true });
  });
}
