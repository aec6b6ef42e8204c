// /oversight: the owner's control over what agents send in their name.
//
//   GET  /oversight/guardrails   the account's guardrails and each config's own
//   PUT  /oversight/guardrails   replace the account's ({config} for one config's); agents may only tighten
//   POST /oversight/stop         stop all sending ({config} for one config); anyone signed in as the owner
//   POST /oversight/resume       lift it: the owner's first-party session only (no client_id)
//   GET  /oversight/events       who changed what, newest first (?before=<id>&limit=)
import { bearerToken } from "../_shared/auth.ts";
import type { AppContext } from "../_shared/context.ts";
import { withUser } from "../_shared/db.ts";
import { ApiError, type Handler, json, readJson, routeSegments, serveJson } from "../_shared/http.ts";
import {
  guardrailsRequest,
  listEvents,
  listGuardrails,
  resumeSending,
  setGuardrails,
  stopRequest,
  stopSending,
} from "../_shared/oversight/mod.ts";
import { parseBody } from "../_shared/schemas.ts";

/** Largest request body: two lists of at most 1,000 patterns. */
const MAX_BODY_BYTES = 1024 * 1024;
const MAX_EVENTS = 200;

function methodNotAllowed(allow: string): never {
  throw new ApiError(405, "method_not_allowed", `Use ${allow}`, undefined, { allow: `${allow}, OPTIONS` });
}

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
