// /webhooks: HTTPS endpoints of yours that receive your message events, signed per Standard Webhooks.
//
//   GET    /webhooks                       yours, oldest first
//   POST   /webhooks                       add {url, description?, event_types?}: 201 with its secret (shown once)
//   GET    /webhooks/:id                   one
//   PATCH  /webhooks/:id                   change url, description, event_types, enabled (true: start afresh)
//   DELETE /webhooks/:id                   remove it
//   POST   /webhooks/:id/rotate-secret     a new secret (shown once); the old one signs beside it for 24 h
//   POST   /webhooks/:id/test              queue a webhook.test event now
//   GET    /webhooks/:id/deliveries        its latest deliveries (?limit=, at most 100)
//
// Adding, changing and removing take your own session: an agent's token (client_id) gets 403
// first_party_session_required (it could otherwise have your mail's events sent to itself).
import { bearerToken } from "../_shared/auth.ts";
import type { AppContext } from "../_shared/context.ts";
import { type Tx, withUser } from "../_shared/db.ts";
import { ApiError, type Handler, json, methodNotAllowed, readJson, routeSegments, serveJson } from "../_shared/http.ts";
import { parseBody } from "../_shared/schemas.ts";
import { isAgentRequest } from "../_shared/oversight/mod.ts";
import {
  createWebhook,
  createWebhookRequest,
  deleteWebhook,
  getWebhook,
  listDeliveries,
  listWebhooks,
  queueTest,
  rotateWebhookSecret,
  updateWebhook,
  updateWebhookRequest,
} from "../_shared/webhooks/mod.ts";

const MAX_BODY_BYTES = 16 * 1024;

function limitOf(url: URL): number {
  const raw = url.searchParams.get("limit");
  const limit = raw === null ? 20 : /^\d{1,3}$/.test(raw) ? Number(raw) : NaN;
  if (!(limit >= 1 && limit <= 100)) {
    throw new ApiError(400, "invalid_limit", "limit must be from 1 to 100", { param: "limit" });
  }
  return limit;
}

/** Build the webhooks handler over a shared context. */
export function createWebhooksHandler(ctx: AppContext): Handler {
  return serveJson(async (req) => {
    const claims = await ctx.verifyToken(bearerToken(req));
    const [id, action, ...rest] = routeSegments(req, "webhooks");
    if (rest.length > 0) throw new ApiError(404, "route_not_found", "No such route");
    const method = req.method;
    const changing = method !== "GET" && !(action === "test" || action === "deliveries");
    // Refused at once here; the database refuses it too, whichever way it comes (Data API included).
    if (changing && isAgentRequest(req, claims)) {
      throw new ApiError(
        403,
        "first_party_session_required",
        "Only you, signed in yourself, can add, change or remove webhooks; an agent may read them",
      );
    }
    const run = <T>(fn: (tx: Tx) => Promise<T>) => withUser(ctx.sql, claims, fn);
    if (id === undefined) {
      if (method === "GET") return json({ webhooks: await run(listWebhooks) });
      if (method !== "POST") methodNotAllowed("GET, POST");
      const body = parseBody(createWebhookRequest, await readJson(req, MAX_BODY_BYTES));
      return json(await run((tx) => createWebhook(tx, body, ctx.config.egress)), 201);
    }
    if (action === undefined) {
      if (method === "GET") return json(await run((tx) => getWebhook(tx, id)));
      if (method === "PATCH") {
        const body = parseBody(updateWebhookRequest, await readJson(req, MAX_BODY_BYTES));
        return json(await run((tx) => updateWebhook(tx, id, body, ctx.config.egress)));
      }
      if (method === "DELETE") return json(await run((tx) => deleteWebhook(tx, id)));
      methodNotAllowed("GET, PATCH, DELETE");
    }
    if (action === "deliveries") {
      if (method !== "GET") methodNotAllowed("GET");
      const limit = limitOf(new URL(req.url));
      return json({ webhook_id: id, deliveries: await run((tx) => listDeliveries(tx, id, limit)) });
    }
    if (action === "test") {
      if (method !== "POST") methodNotAllowed("POST");
      return json(await run((tx) => queueTest(tx, id)), 202);
    }
    if (action === "rotate-secret") {
      if (method !== "POST") methodNotAllowed("POST");
      return json(await run((tx) => rotateWebhookSecret(tx, id)));
    }
    throw new ApiError(
      404,
      "route_not_found",
      `No action ${JSON.stringify(action)}; use deliveries, test or rotate-secret`,
    );
  });
}
