// /email-analytics: what the caller's agents sent, computed in Postgres in the caller's RLS
// context (never by loading rows into the function).
//
//   GET /email-analytics                 totals, success rate, latency, series, breakdowns
//   GET /email-analytics/messages        the audit rows, newest first, keyset-paginated
//   GET /email-analytics/messages/:id    one of them
//   GET /email-analytics/messages/:id/content   what it said: headers, text, HTML, attachments listed
//
// Filters (all optional, on both lists): from, to (date or timestamp; default the last 30
// days), tz (IANA, default UTC), config (id or name), status (comma-separated), batch_id,
// template (id or name). The list also takes recipient, agent and client_id; the summary
// interval (hour, day) and group_by.
import { bearerToken } from "../_shared/auth.ts";
import type { AppContext } from "../_shared/context.ts";
import { withUser } from "../_shared/db.ts";
import { ApiError, type Handler, isUuid, json, routeSegments, serveJson } from "../_shared/http.ts";
import { parseMessagesQuery, parseSummaryQuery } from "../_shared/analytics/params.ts";
import { messageContent } from "../_shared/analytics/content.ts";
import { analyticsSummary, getMessage, listMessages, summarizeSettledDays } from "../_shared/analytics/store.ts";

/** Build the email-analytics handler over a shared context. */
export function createEmailAnalyticsHandler(ctx: AppContext): Handler {
  return serveJson(async (req) => {
    const claims = await ctx.verifyToken(bearerToken(req));
    const [resource, id, ...rest] = routeSegments(req, "email-analytics");
    if (req.method !== "GET") {
      throw new ApiError(405, "method_not_allowed", "Use GET", undefined, { allow: "GET, OPTIONS" });
    }
    const params = new URL(req.url).searchParams;
    if (resource === undefined) {
      const query = parseSummaryQuery(params);
      // Settled days first, committed on their own: kept even if the summary then runs out of time.
      await summarizeSettledDays(ctx.sql, claims, query);
      return json(await withUser(ctx.sql, claims, (tx) => analyticsSummary(tx, query)));
    }
    const content = rest.length === 1 && rest[0] === "content";
    if (resource !== "messages" || (rest.length > 0 && !content)) {
      throw new ApiError(404, "route_not_found", "No such route");
    }
    if (id !== undefined && !isUuid(id)) {
      throw new ApiError(404, "message_not_found", `No message ${JSON.stringify(id)}`);
    }
    if (content) {
      const agent = typeof claims.client_id === "string" ? claims.client_id : undefined;
      return json(await withUser(ctx.sql, claims, (tx) => messageContent(tx, id!, agent)));
    }
    if (id !== undefined) return json(await withUser(ctx.sql, claims, (tx) => getMessage(tx, id)));
    const query = parseMessagesQuery(params);
    return json(await withUser(ctx.sql, claims, (tx) => listMessages(tx, query)));
  });
}
