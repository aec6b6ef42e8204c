// POST /send-email: validate, authenticate, send now, answer with the outcome.
import { bearerToken } from "../_shared/auth.ts";
import type { AppContext } from "../_shared/context.ts";
import { ApiError, type Handler, readJson, serveJson } from "../_shared/http.ts";
import { idempotencyKey, onceForKey } from "../_shared/store/idempotency.ts";
import { parseBody, sendEmailRequest } from "../_shared/schemas.ts";
import { sendEmail } from "../_shared/send.ts";

/** Largest request body accepted (JSON, before attachments are decoded). */
export const MAX_BODY_BYTES = 15 * 1024 * 1024;

/** Build the send-email handler over a shared context. */
export function createSendEmailHandler(ctx: AppContext): Handler {
  return serveJson(async (req) => {
    if (req.method !== "POST") {
      throw new ApiError(405, "method_not_allowed", "Use POST", undefined, { allow: "POST, OPTIONS" });
    }
    const claims = await ctx.verifyToken(bearerToken(req));
    const key = idempotencyKey(req);
    const raw = await readJson(req, MAX_BODY_BYTES);
    const body = parseBody(sendEmailRequest, raw);
    return await onceForKey(ctx.sql, claims, key, raw, async () => ({
      status: 200,
      body: await sendEmail(ctx, claims, body, { idempotencyKey: key }),
    }));
  });
}
