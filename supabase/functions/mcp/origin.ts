// The Origin check of the MCP endpoint. The Streamable HTTP transport says servers MUST
// validate Origin and answer 403 to an invalid one (DNS rebinding, and pages the user merely
// visits): a request without Origin is a server-side client and passes; a browser's passes only
// when its origin is listed exactly in MAILROOM_ALLOWED_ORIGINS (the handler then echoes that
// origin in Access-Control-Allow-Origin, never `*`).
//
// The SDK's `originValidationResponse` is not used: it matches host names regardless of scheme
// and port (so listing app.example.com would also admit http://app.example.com:8080) and answers
// with a JSON-RPC error instead of our `{"error": {...}}` shape.
import { ApiError } from "../_shared/http.ts";

/** Longest Origin value repeated back in an error's details. */
const MAX_ECHOED_ORIGIN = 200;

/**
 * The request's Origin when it may call the endpoint, `undefined` when it has none.
 *
 * Compared as sent: browsers serialise an origin one way (`https://app.example.com`, default port
 * omitted), which is how the configuration is normalised. `null` (sandboxed frames, file://
 * pages), an empty value and several joined values are never listed, so they are refused.
 *
 * @throws ApiError 403 `origin_not_allowed` (`details.origin`).
 * @example
 * ```ts
 * const origin = allowedOrigin(req, new Set(["https://app.example.com"]));
 * ```
 */
export function allowedOrigin(req: Request, allowed: ReadonlySet<string>): string | undefined {
  const origin = req.headers.get("origin");
  if (origin === null) return undefined;
  if (allowed.has(origin)) return origin;
  throw new ApiError(
    403,
    "origin_not_allowed",
    `Requests from the web page at origin "${origin.slice(0, MAX_ECHOED_ORIGIN)}" may not call this MCP server. ` +
      "Clients that are not browsers send no Origin header; a browser app's origin must be listed exactly in the " +
      "server's MAILROOM_ALLOWED_ORIGINS.",
    { origin: origin.slice(0, MAX_ECHOED_ORIGIN) },
  );
}
