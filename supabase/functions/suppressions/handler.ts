// /suppressions: addresses your mail never goes to again. Every send path skips them.
//
//   GET    /suppressions            the list in address order (?limit=, ?after=<address>, ?reason=)
//   POST   /suppressions            add {address} or {addresses: [...]}, reason (default manual), source
//   GET    /suppressions/:address   one entry (404 suppression_not_found)
//   DELETE /suppressions/:address   lift it: your own session only (an agent gets 403)
import { bearerToken } from "../_shared/auth.ts";
import type { AppContext } from "../_shared/context.ts";
import { withUser } from "../_shared/db.ts";
import { ApiError, type Handler, json, methodNotAllowed, readJson, routeSegments, serveJson } from "../_shared/http.ts";
import { parseBody } from "../_shared/schemas.ts";
import { isAgentRequest } from "../_shared/oversight/mod.ts";
import {
  addSuppressions,
  addSuppressionsRequest,
  getSuppression,
  listSuppressions,
  removeSuppression,
  SUPPRESSION_REASONS,
} from "../_shared/suppressions/mod.ts";

const DEFAULT_PAGE = 100;
const MAX_PAGE = 1000;
/** 1,000 addresses of at most 320 characters, and room for the rest. */
const MAX_BODY_BYTES = 512 * 1024;

function listOptions(url: URL): { limit: number; after?: string; reason?: string } {
  const rawLimit = url.searchParams.get("limit");
  const limit = rawLimit === null ? DEFAULT_PAGE : /^\d{1,4}$/.test(rawLimit) ? Number(rawLimit) : NaN;
  if (!(limit >= 1 && limit <= MAX_PAGE)) {
    throw new ApiError(400, "invalid_limit", `limit must be from 1 to ${MAX_PAGE}`, { param: "limit" });
  }
  const after = url.searchParams.get("after");
  const reason = url.searchParams.get("reason");
  if (reason !== null && !(SUPPRESSION_REASONS as readonly string[]).includes(reason)) {
    throw new ApiError(400, "invalid_reason", `reason must be one of ${SUPPRESSION_REASONS.join(", ")}`);
  }
  return {
    limit,
    // The last address of the page before, as the list shows it (opaque: never re-read).
    ...(after !== null ? { after } : {}),
    ...(reason !== null ? { reason } : {}),
  };
}

/** Build the suppressions handler over a shared context. */
export function createSuppressionsHandler(ctx: AppContext): Handler {
  return serveJson(async (req) => {
    const claims = await ctx.verifyToken(bearerToken(req));
    const [address, ...rest] = routeSegments(req, "suppressions");
    if (rest.length > 0) {
      throw new ApiError(404, "route_not_found", "No such route; /suppressions or /suppressions/:address");
    }
    if (address === undefined) {
      if (req.method === "POST") {
        const request = parseBody(addSuppressionsRequest, await readJson(req, MAX_BODY_BYTES));
        const result = await withUser(ctx.sql, claims, (tx) => addSuppressions(tx, request));
        return json(result, result.added > 0 ? 201 : 200);
      }
      if (req.method !== "GET") methodNotAllowed("GET, POST");
      const options = listOptions(new URL(req.url));
      return json(await withUser(ctx.sql, claims, (tx) => listSuppressions(tx, options)));
    }
    if (req.method === "GET") return json(await withUser(ctx.sql, claims, (tx) => getSuppression(tx, address)));
    if (req.method !== "DELETE") methodNotAllowed("GET, DELETE");
    const agent = isAgentRequest(req, claims);
    const removed = await withUser(ctx.sql, claims, (tx) => removeSuppression(tx, address, agent));
    return json({ address: removed, deleted: true });
  });
}
