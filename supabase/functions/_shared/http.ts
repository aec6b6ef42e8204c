// HTTP plumbing shared by every function: the one error type, JSON responses, CORS and
// the wrapper that renders errors in the contract's shape.

/** CORS headers for browser callers (supabase-js sends these request headers). */
export const corsHeaders: Record<string, string> = {
  "access-control-allow-origin": "*",
  "access-control-allow-headers": "authorization, x-client-info, apikey, content-type, idempotency-key",
  "access-control-allow-methods": "GET, POST, PATCH, DELETE, OPTIONS",
  "access-control-expose-headers": "x-request-id, retry-after",
};

/**
 * The error every module throws; rendered once as
 * `{"error": {"code", "message", "details"}}` with `status`.
 *
 * @example
 * ```ts
 * throw new ApiError(404, "config_not_found", "No SMTP config named \"work\"");
 * ```
 */
export class ApiError extends Error {
  override name = "ApiError";
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details?: Record<string, unknown>,
    readonly headers?: Record<string, string>,
  ) {
    super(message);
  }
}

/** A JSON response with CORS headers. */
export function json(body: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { ...corsHeaders, "content-type": "application/json; charset=utf-8", ...headers },
  });
}

/** Render any thrown value; unknown errors become 500 `internal_error` without internals. */
export function errorResponse(error: unknown, requestId: string): Response {
  const headers = { "x-request-id": requestId };
  if (error instanceof ApiError) {
    const body = { error: { code: error.code, message: error.message, details: error.details } };
    return json(body, error.status, { ...headers, ...error.headers });
  }
  // Only the error's class and code are logged: messages of foreign errors are not ours to trust.
  const e = error as { name?: string; code?: string };
  console.error(JSON.stringify({ level: "error", request_id: requestId, error: e?.name, code: e?.code }));
  const body = {
    error: { code: "internal_error", message: "Internal error", details: { request_id: requestId } },
  };
  return json(body, 500, headers);
}

/** A request handler as `Deno.serve` takes it. */
export type Handler = (req: Request) => Promise<Response>;

/** Wrap a handler with CORS preflight handling and error rendering. */
export function serveJson(handler: Handler): Handler {
  return async (req) => {
    const requestId = crypto.randomUUID();
    if (req.method === "OPTIONS") return new Response(null, { status: 204, headers: corsHeaders });
    try {
      const res = await handler(req);
      res.headers.set("x-request-id", requestId);
      return res;
    } catch (error) {
      return errorResponse(error, requestId);
    }
  };
}

/** Parse a JSON request body, turning a malformed one into a 400. */
export async function readJson(req: Request, maxBytes: number): Promise<unknown> {
  const declared = Number(req.headers.get("content-length") ?? "0");
  if (declared > maxBytes) {
    throw new ApiError(413, "payload_too_large", `Request body exceeds ${maxBytes} bytes`, { limit_bytes: maxBytes });
  }
  const text = await req.text();
  if (new TextEncoder().encode(text).length > maxBytes) {
    throw new ApiError(413, "payload_too_large", `Request body exceeds ${maxBytes} bytes`, {
      limit_bytes: maxBytes,
    });
  }
  try {
    return JSON.parse(text);
  } catch {
    throw new ApiError(400, "invalid_json", "Request body is not valid JSON");
  }
}
