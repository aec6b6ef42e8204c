// /oversight: the owner's control over what agents send in their name.
//
//   GET  /oversight/guardrails   the account's guardrails and each config's own
//   PUT  /oversight/guardrails   replace the account's ({config} for one config's); agents may only tighten
//   POST /oversight/stop         stop all sending ({config} for one config); anyone signed in as the owner
//   POST /oversight/resume       lift it: the owner's first-party session only (no client_id)
//   GET  /oversight/events       who changed what, newest first (?before=<id>&limit=)
//   GET  /oversight/approvals    sends waiting for approval, oldest first (?after=<id>&limit=)
//   GET  /oversight/approvals/:id                 one, with its rendered content
//   POST /oversight/approvals/:id/approve|reject  decide (the owner's own session only)
//   POST /oversight/approvals/batch/:batch_id/approve|reject  a batch's pending messages at once
import { bearerToken, type UserClaims } from "../_shared/auth.ts";
import type { AppContext } from "../_shared/context.ts";
import { type Tx, withUser } from "../_shared/db.ts";
import {
  ApiError,
  type Handler,
  isUuid,
  json,
  methodNotAllowed,
  readJson,
  routeSegments,
  serveJson,
} from "../_shared/http.ts";
import {
  decide,
  decisionRequest,
  findHeld,
  guardrailsRequest,
  listEvents,
  listGuardrails,
  listPending,
  resumeSending,
  setGuardrails,
  stopRequest,
  stopSending,
} from "../_shared/oversight/mod.ts";
import { parseBody } from "../_shared/schemas.ts";
import { rebuiltContent } from "../_shared/analytics/content.ts";

/** Largest request body: two lists of at most 1,000 patterns. */
const MAX_BODY_BYTES = 1024 * 1024;
const MAX_EVENTS = 200;

/** `?name=` as a whole number in [min, max], or undefined when absent. */
function intParam(url: URL, name: string, min: number, max: number): number | undefined {
  const raw = url.searchParams.get(name);
  if (raw === null) return undefined;
  const value = Number(raw);
  if (!/^\d+$/.test(raw) || value < min || value > max) {
    throw new ApiError(400, "invalid_request", `${name} must be a whole number from ${min} to ${max}`);
  }
  return value;
}

/** Build the oversight handler over a shared context. */
export function createOversightHandler(ctx: AppContext): Handler {
  return serveJson(async (req) => {
    const claims = await ctx.verifyToken(bearerToken(req));
    const [what, ...rest] = routeSegments(req, "oversight");
    if (what === "approvals") return await approvals(ctx, claims, req, rest);
    if (rest.length > 0 || what === undefined) {
      throw new ApiError(404, "route_not_found", "Use /oversight/guardrails, /stop, /resume or /events");
    }
    const body = async () => (req.headers.get("content-length") === "0" ? {} : await readJson(req, MAX_BODY_BYTES));
    switch (what) {
      case "guardrails":
        if (req.method === "GET") return json(await withUser(ctx.sql, claims, listGuardrails));
        if (req.method !== "PUT") methodNotAllowed("GET, PUT");
        {
          const change = parseBody(guardrailsRequest, await body());
          return json(await withUser(ctx.sql, claims, (tx) => setGuardrails(tx, change)));
        }
      case "stop":
      case "resume": {
        if (req.method !== "POST") methodNotAllowed("POST");
        const scope = parseBody(stopRequest, await body());
        const act = what === "stop" ? stopSending : resumeSending;
        return json(await withUser(ctx.sql, claims, (tx) => act(tx, scope)));
      }
      case "events": {
        if (req.method !== "GET") methodNotAllowed("GET");
        const url = new URL(req.url);
        const before = intParam(url, "before", 1, Number.MAX_SAFE_INTEGER);
        const limit = intParam(url, "limit", 1, MAX_EVENTS) ?? 50;
        const events = await withUser(ctx.sql, claims, (tx) => listEvents(tx, before, limit));
        return json({ events, next_before: events.length === limit ? events.at(-1)!.id : null });
      }
      default:
        throw new ApiError(404, "route_not_found", "Use /oversight/guardrails, /stop, /resume or /events");
    }
  });
}

const ROUTES = "GET /oversight/approvals, GET /oversight/approvals/:id, POST /oversight/approvals/:id/approve or " +
  "/reject, POST /oversight/approvals/batch/:batch_id/approve or /reject";

async function approvals(ctx: AppContext, claims: UserClaims, req: Request, rest: string[]): Promise<Response> {
  const [first, second, third, ...more] = rest;
  if (first === undefined) {
    if (req.method !== "GET") methodNotAllowed("GET");
    const url = new URL(req.url);
    const after = url.searchParams.get("after") ?? undefined;
    if (after !== undefined && !isUuid(after)) throw new ApiError(400, "invalid_request", "after must be a message id");
    const limit = intParam(url, "limit", 1, MAX_EVENTS) ?? 50;
    return json(await withUser(ctx.sql, claims, (tx) => listPending(tx, after, limit)));
  }
  const batch = first === "batch";
  const id = batch ? second : first;
  const action = batch ? third : second;
  if (id === undefined || !isUuid(id) || (batch ? more.length > 0 : third !== undefined)) {
    throw new ApiError(404, "route_not_found", `No such route; ${ROUTES}`);
  }
  if (action === undefined && !batch) {
    if (req.method !== "GET") methodNotAllowed("GET");
    return json(await withUser(ctx.sql, claims, (tx) => heldWithContent(tx, id)));
  }
  if (action !== "approve" && action !== "reject") {
    throw new ApiError(404, "route_not_found", `No such route; ${ROUTES}`);
  }
  if (req.method !== "POST") methodNotAllowed("POST");
  const { reason } = parseBody(
    decisionRequest,
    req.headers.get("content-length") === "0" || !req.body ? {} : await readJson(req, MAX_BODY_BYTES),
  );
  const target = batch ? { batchId: id } : { ids: [id] };
  return json(await withUser(ctx.sql, claims, (tx) => decide(tx, target, action === "approve", reason)));
}

/** A held send and what would be sent: recipients, subject, text and HTML as rendered, attachments listed. */
async function heldWithContent(tx: Tx, id: string) {
  const { payload, ...held } = await findHeld(tx, id);
  if (payload === null || payload === undefined) return { ...held, content: null };
  const { to, cc, bcc, subject, text, html, attachments } = await rebuiltContent(tx, { payload, ...held });
  return { ...held, content: { to, cc, bcc, subject, text, html, attachments } };
}
