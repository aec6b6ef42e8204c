// /send-bulk: queue one message per recipient (or per send-email body) in one request, follow
// a batch's progress, list batches, cancel what has not started. Sending is the outbox
// worker's job; this function only validates and queues.
//
//   POST /send-bulk                    queue a batch (202; Idempotency-Key supported)
//   GET  /send-bulk[?before=&limit=]   the caller's batches, newest first
//   GET  /send-bulk/:id (or ?batch_id=) one batch's progress
//   POST /send-bulk/:id/cancel         cancel its messages that have not started
import { bearerToken, type UserClaims } from "../_shared/auth.ts";
import type { AppContext } from "../_shared/context.ts";
import { withUser } from "../_shared/db.ts";
import { ApiError, type Handler, json, methodNotAllowed, readJson, routeSegments, serveJson } from "../_shared/http.ts";
import { batchStatus, cancelBatch, listBatches, MAX_BATCHES_PER_PAGE } from "../_shared/outbox/batches.ts";
import { type BulkLimits, checkBulkBounds, enqueueBulk } from "../_shared/outbox/enqueue.ts";
import { sendingClaims } from "../_shared/oversight/mod.ts";
import { parseBody, sendBulkRequest } from "../_shared/schemas.ts";
import { idempotencyKey, onceForKey } from "../_shared/store/idempotency.ts";
import { kickOutbox } from "../_shared/outbox/kick.ts";

/**
 * Largest request body: 10,000 recipients with a few hundred bytes of data each, or a few
 * thousand short messages. Read as a stream and refused past the limit (413).
 */
export const MAX_BODY_BYTES = 16 * 1024 * 1024;

async function create(ctx: AppContext, claims: UserClaims, req: Request, limits: BulkLimits): Promise<Response> {
  const key = idempotencyKey(req);
  const raw = await readJson(req, MAX_BODY_BYTES, claims.sub);
  const body = parseBody(sendBulkRequest, raw);
  // Counts before anything that reads every entry (the idempotency fingerprint included).
  checkBulkBounds(body, limits);
  // A dry run writes nothing, so it takes no idempotency key's place: checked, rendered, answered.
  if (body.dry_run) return json(await enqueueBulk(ctx, sendingClaims(req, claims), body, limits, { request: req }));
  const response = await onceForKey(ctx.sql, claims, key, raw, async () => ({
    status: 202,
    body: await enqueueBulk(ctx, sendingClaims(req, claims), body, limits, { request: req }),
  }));
  // Start sending now where the platform allows work after the response; the scheduler covers the rest.
  if (response.status === 202 && !body.scheduled_at) kickOutbox(ctx);
  return response;
}

// ISO 8601 with a zone, as the list returns created_at; a `+` that a query string turned into a space is put back.
const TIMESTAMP = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:?\d{2})$/;

function listOptions(params: URLSearchParams): { before?: string; limit?: number } {
  const options: { before?: string; limit?: number } = {};
  const before = params.get("before")?.replace(" ", "+");
  if (before !== undefined) {
    if (!TIMESTAMP.test(before) || Number.isNaN(Date.parse(before))) {
      throw new ApiError(
        400,
        "invalid_request",
        "before must be a created_at from the list, e.g. 2026-12-01T09:00:00Z",
      );
    }
    options.before = before;
  }
  const limit = params.get("limit");
  if (limit !== null) {
    const value = /^\d{1,3}$/.test(limit) ? Number(limit) : NaN;
    if (!(value >= 1 && value <= MAX_BATCHES_PER_PAGE)) {
      throw new ApiError(400, "invalid_request", `limit must be an integer from 1 to ${MAX_BATCHES_PER_PAGE}`);
    }
    options.limit = value;
  }
  return options;
}

/** Build the send-bulk handler over a shared context (limits: `ctx.config.bulk`). */
export function createSendBulkHandler(ctx: AppContext): Handler {
  const limits: BulkLimits = ctx.config.bulk;
  return serveJson(async (req) => {
    const claims = await ctx.verifyToken(bearerToken(req));
    const [id, action, ...rest] = routeSegments(req, "send-bulk");
    const method = req.method;
    if (rest.length > 0) throw new ApiError(404, "route_not_found", "No such route");

    if (id === undefined) {
      if (method === "POST") return await create(ctx, claims, req, limits);
      if (method !== "GET") methodNotAllowed("GET, POST");
      const params = new URL(req.url).searchParams;
      const batchId = params.get("batch_id");
      if (batchId !== null) return json(await withUser(ctx.sql, claims, (tx) => batchStatus(tx, batchId)));
      const options = listOptions(params);
      return json(await withUser(ctx.sql, claims, (tx) => listBatches(tx, options)));
    }
    if (action === undefined) {
      if (method !== "GET") methodNotAllowed("GET");
      return json(await withUser(ctx.sql, claims, (tx) => batchStatus(tx, id)));
    }
    if (action !== "cancel") {
      throw new ApiError(404, "route_not_found", `No action ${JSON.stringify(action)}; use cancel`);
    }
    if (method !== "POST") methodNotAllowed("POST");
    return json(await withUser(ctx.sql, claims, (tx) => cancelBatch(tx, id)));
  });
}
