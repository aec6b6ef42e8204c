// POST /send-email: validate, authenticate, send now (or queue it for `scheduled_at`), answer
// with the outcome. GET /send-email/:id reads the message back (the message view of
// email-analytics); POST /send-email/:id/cancel cancels a scheduled send; POST
// /send-email/:id/retry sends again a message the outbox set aside after a worker crash.
import { bearerToken } from "../_shared/auth.ts";
import type { AppContext } from "../_shared/context.ts";
import { withUser } from "../_shared/db.ts";
import { getMessage } from "../_shared/analytics/store.ts";
import { ApiError, type Handler, isUuid, json, readJson, routeSegments, serveJson } from "../_shared/http.ts";
import { idempotencyKey, onceForKey } from "../_shared/store/idempotency.ts";
import { parseBody, sendEmailRequest } from "../_shared/schemas.ts";
import { cancelEmail, dryRunEmail, scheduleEmail, sendEmail } from "../_shared/send.ts";
import { sendingClaims } from "../_shared/oversight/mod.ts";
import { retrySetAside } from "../_shared/outbox/set_aside.ts";
import { resolveAttachmentReferences } from "../_shared/attachments/mod.ts";

/** Largest request body accepted (JSON, before attachments are decoded). */
export const MAX_BODY_BYTES = 15 * 1024 * 1024;

/** Build the send-email handler over a shared context. */
export function createSendEmailHandler(ctx: AppContext): Handler {
  return serveJson(async (req) => {
    const [id, action, ...rest] = routeSegments(req, "send-email");
    const reading = id !== undefined && action === undefined;
    if (req.method === "GET" && reading) {
      const claims = await ctx.verifyToken(bearerToken(req));
      return json(await withUser(ctx.sql, claims, (tx) => getMessage(tx, id)));
    }
    if (req.method !== "POST") {
      const allow = reading ? "GET, OPTIONS" : "POST, OPTIONS";
      throw new ApiError(
        405,
        "method_not_allowed",
        reading
          ? "Use GET to read a message (its cancel and retry are POST /send-email/:id/cancel and /retry)"
          : "Use POST to send; GET /send-email/:id reads one message, GET /email-analytics/messages lists them",
        undefined,
        { allow },
      );
    }
    const claims = await ctx.verifyToken(bearerToken(req));
    if (id !== undefined) {
      if ((action !== "cancel" && action !== "retry") || rest.length > 0 || !isUuid(id)) {
        throw new ApiError(
          404,
          "route_not_found",
          "No such route; POST /send-email, GET /send-email/:id, POST /send-email/:id/cancel or /send-email/:id/retry",
        );
      }
      return json(action === "cancel" ? await cancelEmail(ctx, claims, id) : await retrySetAside(ctx, claims, id));
    }
    const key = idempotencyKey(req);
    const raw = await readJson(req, MAX_BODY_BYTES, claims.sub);
    const body = parseBody(sendEmailRequest, raw);
    // Files given by URL are fetched once and stored; the send (and any retry) names them by id.
    const fetchUrls = () =>
      resolveAttachmentReferences(ctx, claims, [body.attachments, (raw as { attachments?: unknown }).attachments], {
        request: req,
        loads: true,
      });
    // A dry run writes nothing, so it needs no idempotency: checked, rendered, answered.
    if (body.dry_run) return json(await fetchUrls().then(() => dryRunEmail(ctx, sendingClaims(req, claims), body)));
    const later = body.scheduled_at !== undefined && Date.parse(body.scheduled_at) > Date.now();
    // As the database sees the sender: through which agent tool, when the request says so.
    const sending = sendingClaims(req, claims);
    return await onceForKey(ctx.sql, claims, key, raw, async () => {
      await fetchUrls();
      if (later) {
        const scheduled = { ...body, scheduled_at: body.scheduled_at! };
        return {
          status: 202,
          body: await scheduleEmail(ctx, sending, scheduled, raw as Record<string, unknown>, { idempotencyKey: key }),
        };
      }
      const result = await sendEmail(ctx, sending, body, { idempotencyKey: key, raw: raw as Record<string, unknown> });
      // Held for the owner's approval: accepted, not sent.
      return { status: result.status === "pending_approval" ? 202 : 200, body: result };
    });
  });
}
