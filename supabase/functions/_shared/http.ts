// HTTP plumbing shared by every function: the one error type, JSON responses, CORS and
// the wrapper that renders errors in the contract's shape.
import { AdmissionRefused, ByteBudget, DEFAULT_BODY_BUDGET_BYTES, type Release } from "./admission.ts";

/** CORS headers for browser callers (supabase-js sends these request headers). */
export const corsHeaders: Record<string, string> = {
  "access-control-allow-origin": "*",
  "access-control-allow-headers": "authorization, x-client-info, apikey, content-type, idempotency-key, x-mailroom-via",
  "access-control-allow-methods": "GET, POST, PUT, PATCH, DELETE, OPTIONS",
  "access-control-expose-headers": "x-request-id, retry-after, idempotent-replayed, etag",
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
  console.error(JSON.stringify(internalErrorLog(error, requestId)));
  const body = {
    error: { code: "internal_error", message: "Internal error", details: { request_id: requestId } },
  };
  return json(body, 500, headers);
}

/** Longest message and stack an internal error's log line carries. */
const MAX_LOGGED_CHARS = 4000;

/**
 * The log line of an unexpected error: what the operator needs to find the bug (the error's
 * class, code, message and stack, and the request id the caller was given). Never the request
 * body or headers: only the thrown value is read. A driver's message may quote a value (a
 * Postgres error names the offending input), so messages and stacks are cut short.
 *
 * @example
 * ```ts
 * internalErrorLog(new TypeError("x is undefined"), "3f2c…");
 * // { level: "error", request_id: "3f2c…", error: "TypeError", message: "x is undefined", stack: "TypeError: …" }
 * ```
 */
export function internalErrorLog(error: unknown, requestId: string): Record<string, unknown> {
  const e = (error ?? {}) as { name?: unknown; code?: unknown; message?: unknown; stack?: unknown };
  const cut = (value: unknown) => typeof value === "string" ? value.slice(0, MAX_LOGGED_CHARS) : undefined;
  return {
    level: "error",
    request_id: requestId,
    error: typeof e.name === "string" ? e.name : typeof error,
    code: typeof e.code === "string" || typeof e.code === "number" ? e.code : undefined,
    message: cut(e.message) ?? (typeof error === "string" ? cut(error) : undefined),
    stack: cut(e.stack),
  };
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
      return req.method === "GET" ? await conditional(req, res) : res;
    } catch (error) {
      return errorResponse(error, requestId);
    } finally {
      releaseBody(req);
    }
  };
}

/**
 * A JSON answer to a GET carries an ETag (its content's SHA-256) and `Cache-Control: private,
 * no-cache`: a client that polls (the dashboard's batch progress, an agent's status checks) asks
 * with If-None-Match and gets `304 Not Modified` without the body when nothing changed; a
 * browser does this by itself.
 */
async function conditional(req: Request, res: Response): Promise<Response> {
  if (res.status !== 200 || !res.headers.get("content-type")?.startsWith("application/json")) return res;
  const body = new Uint8Array(await res.arrayBuffer());
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", body));
  const etag = `W/"${[...digest.subarray(0, 16)].map((b) => b.toString(16).padStart(2, "0")).join("")}"`;
  const headers = new Headers(res.headers);
  headers.set("etag", etag);
  headers.set("cache-control", "private, no-cache");
  const asked = req.headers.get("if-none-match")?.split(",").map((tag) => tag.trim()) ?? [];
  if (asked.includes(etag) || asked.includes("*")) {
    headers.delete("content-type");
    return new Response(null, { status: 304, headers });
  }
  return new Response(body, { status: 200, headers });
}

/** A body of unknown length (chunked) is charged to the budget this much at a time, as it arrives. */
const CHARGE_STEP_BYTES = 1024 * 1024;

/** How long a request waits for room before 503 `server_busy`. */
export const BODY_ADMISSION_WAIT_MS = 2_000;

/**
 * The slowest a body may arrive (after a 5 s start): a client that trickles its body is cut
 * off (408 `body_timeout`) instead of holding its share of the budget for the platform's 150 s.
 */
export const MIN_BODY_BYTES_PER_SECOND = 256 * 1024;
const BODY_GRACE_MS = 5_000;

let bodyBudget = new ByteBudget(DEFAULT_BODY_BUDGET_BYTES, BODY_ADMISSION_WAIT_MS);
/** Each request's share of the budget, given back when serveJson's handler is done with it. */
const admitted = new WeakMap<Request, { releases: Release[]; owner?: string; bytes: number }>();
/** What each caller (the token's subject) holds of the budget in this instance. */
const heldByOwner = new Map<string, number>();

function releaseBody(req: Request): void {
  const entry = admitted.get(req);
  if (!entry) return;
  admitted.delete(req);
  for (const release of entry.releases) release();
  giveBackOwnerBytes(entry.owner, entry.bytes);
}

function giveBackOwnerBytes(owner: string | undefined, bytes: number): void {
  if (owner === undefined) return;
  const left = (heldByOwner.get(owner) ?? 0) - bytes;
  if (left > 0) heldByOwner.set(owner, left);
  else heldByOwner.delete(owner);
}

function serverBusy(retryAfterSeconds: number): ApiError {
  return new ApiError(
    503,
    "server_busy",
    "This instance is holding as many request bodies as it can; retry shortly",
    { retry_after_seconds: retryAfterSeconds },
    { "retry-after": String(retryAfterSeconds) },
  );
}

/** Set this instance's body budget (createContext does, from the configuration). */
export function setBodyBudget(limitBytes: number, waitMs = BODY_ADMISSION_WAIT_MS): void {
  bodyBudget = new ByteBudget(limitBytes, waitMs);
}

/**
 * Hold `bytes` of the body in the instance's budget until the request is answered: the
 * declared length up front (so large bodies queue in order, not in pieces), or, for a body
 * without one (chunked), each MiB as it arrives. Waits briefly for room.
 *
 * @throws ApiError 503 `server_busy` with Retry-After when no room came, or at once when the
 *   caller already holds half the budget.
 */
async function chargeBody(req: Request, bytes: number, owner?: string): Promise<void> {
  let entry = admitted.get(req);
  if (!entry) admitted.set(req, entry = { releases: [], owner, bytes: 0 });
  const retryAfter = Math.max(1, Math.ceil(bodyBudget.waitMs / 1000));
  // One caller holds at most half the budget (one body always): nobody's uploads hold everyone out.
  // Counted before waiting, so two of a caller's requests arriving together see each other.
  const own = entry.bytes;
  const mine = owner === undefined ? 0 : heldByOwner.get(owner) ?? 0;
  if (mine > own && mine + bytes > bodyBudget.limitBytes / 2) throw serverBusy(retryAfter);
  entry.bytes += bytes;
  if (owner !== undefined) heldByOwner.set(owner, mine + bytes);
  try {
    entry.releases.push(await bodyBudget.admit(bytes, own));
  } catch (error) {
    entry.bytes -= bytes;
    giveBackOwnerBytes(owner, bytes);
    if (!(error instanceof AdmissionRefused)) throw error;
    throw serverBusy(error.retryAfterSeconds);
  }
}

/** Deepest nesting of objects and arrays a JSON request body may have (`json_too_deep`). */
export const MAX_JSON_DEPTH = 64;

/**
 * Hold `bytes` more of the instance's budget for this request until it is answered: memory it
 * will use beyond its body (a file fetched from a URL, stored files a send builds from), so a
 * small request cannot make an instance hold megabytes unaccounted.
 *
 * @throws ApiError 503 `server_busy` with Retry-After when no room came.
 */
export async function chargeRequest(req: Request, bytes: number, owner?: string): Promise<void> {
  if (bytes > 0) await chargeBody(req, bytes, owner);
}

/**
 * Read a request body within limits, so that no body can hold the server for long: it is read as
 * a stream and counted; past `maxBytes` reading stops (the stream is cancelled) and the answer is
 * 413 `payload_too_large`, with or without a `Content-Length`; what is read is charged to the
 * instance's body budget (admission), and a body that trickles in is cut off (408).
 *
 * @throws ApiError 413 `payload_too_large` (`details.limit_bytes`), 408, 503 (admission).
 */
export async function readBytes(req: Request, maxBytes: number, owner?: string): Promise<Uint8Array> {
  const declared = Number(req.headers.get("content-length") ?? "0");
  if (declared > maxBytes) {
    // Refused unread: cancelled, so the connection is not left holding a body nobody reads.
    req.body?.cancel().catch(() => {});
    throw payloadTooLarge(maxBytes);
  }
  if (declared > 0 && req.body !== null) {
    await chargeBody(req, declared, owner).catch((error) => {
      req.body?.cancel().catch(() => {});
      throw error;
    });
  }
  const deadlineMs = BODY_GRACE_MS +
    Math.ceil(((declared > 0 ? declared : maxBytes) / MIN_BODY_BYTES_PER_SECOND) * 1000);
  // A body of unknown length is charged as it arrives, without the caller's cap: a burst of
  // such bodies from one caller would otherwise each hold a piece and refuse the others.
  const charge = declared > 0 ? undefined : (bytes: number) => chargeBody(req, bytes);
  return await readBody(req, maxBytes, deadlineMs, charge, declared > 0 ? declared : 0);
}

/**
 * Parse a JSON request body within limits, so that no body can hold the server for long:
 *
 * - the body is read as by {@linkcode readBytes}: past `maxBytes` reading stops (the stream is
 *   cancelled) and the answer is 413 `payload_too_large`, with or without a `Content-Length`;
 * - it must be UTF-8 and JSON (400 `invalid_json`);
 * - objects and arrays may nest at most {@linkcode MAX_JSON_DEPTH} deep (400 `json_too_deep`),
 *   decided by a linear scan before parsing, so later recursive walks cannot overflow the stack;
 * - no string or key may hold a lone UTF-16 surrogate such as `"\ud800"` (400 `invalid_json`,
 *   `details.path`): it parses, but Postgres (jsonb, text) refuses it.
 *
 * @throws ApiError 413 `payload_too_large` (`details.limit_bytes`), 400 `invalid_json`,
 *   400 `json_too_deep` (`details.limit`).
 * @example
 * ```ts
 * const body = await readJson(req, 64 * 1024);
 * ```
 */
export async function readJson(req: Request, maxBytes: number, owner?: string): Promise<unknown> {
  const bytes = await readBytes(req, maxBytes, owner);
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(bytes);
  } catch {
    throw new ApiError(400, "invalid_json", "Request body is not valid UTF-8");
  }
  checkJsonDepth(text);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new ApiError(400, "invalid_json", "Request body is not valid JSON");
  }
  // Valid UTF-8 cannot carry a lone surrogate: only a `\uD800`-`\uDFFF` escape can, so a body
  // without one (nearly all) is not walked.
  const path = SURROGATE_ESCAPE.test(text) ? loneSurrogatePath(value) : null;
  if (path !== null) {
    throw new ApiError(
      400,
      "invalid_json",
      `${
        path || "body"
      }: contains a lone UTF-16 surrogate (\\ud800-\\udfff without its pair); strings must be valid Unicode`,
      { path },
    );
  }
  return value;
}

function payloadTooLarge(maxBytes: number): ApiError {
  return new ApiError(413, "payload_too_large", `Request body exceeds ${maxBytes} bytes`, { limit_bytes: maxBytes });
}

/**
 * The whole body, or 413 as soon as it passes `maxBytes` (the rest is never read), or 408 when
 * it has not all arrived within `deadlineMs`.
 */
async function readBody(
  req: Request,
  maxBytes: number,
  deadlineMs: number,
  charge?: (bytes: number) => Promise<void>,
  expectedBytes = 0,
): Promise<Uint8Array> {
  if (req.body === null) return new Uint8Array();
  const reader = req.body.getReader();
  // One buffer, filled as chunks arrive (each chunk is garbage at once): a declared body is
  // held once, not twice (chunks, then their concatenation).
  let buffer = new Uint8Array(Math.min(expectedBytes || 64 * 1024, maxBytes));
  let total = 0;
  let timedOut = false;
  let uncharged = 0;
  const timer = setTimeout(() => {
    timedOut = true;
    reader.cancel().catch(() => {});
  }, deadlineMs);
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (timedOut) {
        throw new ApiError(
          408,
          "body_timeout",
          `The request body did not arrive within ${Math.round(deadlineMs / 1000)} s`,
          {
            min_bytes_per_second: MIN_BODY_BYTES_PER_SECOND,
          },
        );
      }
      if (done) break;
      total += value.byteLength;
      if (total > maxBytes) {
        // Not awaited: cancelling must not wait on a client that keeps the connection open.
        reader.cancel().catch(() => {});
        throw payloadTooLarge(maxBytes);
      }
      if (total > buffer.byteLength) {
        const grown = new Uint8Array(Math.min(Math.max(total, buffer.byteLength * 2), maxBytes));
        grown.set(buffer.subarray(0, total - value.byteLength));
        buffer = grown;
      }
      buffer.set(value, total - value.byteLength);
      // A body of unknown length is charged a MiB at a time, as it arrives.
      uncharged += value.byteLength;
      if (charge && uncharged >= CHARGE_STEP_BYTES) {
        await charge(uncharged).catch((error) => {
          reader.cancel().catch(() => {});
          throw error;
        });
        uncharged = 0;
      }
    }
    if (charge && uncharged > 0) await charge(uncharged);
  } finally {
    clearTimeout(timer);
    reader.releaseLock();
  }
  return total === buffer.byteLength ? buffer : buffer.subarray(0, total);
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_BRACKET = 0x5b; // [
const OPEN_BRACE = 0x7b; // {
const CLOSE_BRACKET = 0x5d; // ]
const CLOSE_BRACE = 0x7d; // }

/**
 * Refuse text whose arrays and objects nest deeper than {@linkcode MAX_JSON_DEPTH}, counting
 * brackets outside strings in one pass. Malformed text may be miscounted; JSON.parse refuses it next.
 */
function checkJsonDepth(text: string): void {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === BACKSLASH) i++;
      else if (c === QUOTE) inString = false;
    } else if (c === QUOTE) {
      inString = true;
    } else if (c === OPEN_BRACKET || c === OPEN_BRACE) {
      if (++depth > MAX_JSON_DEPTH) {
        throw new ApiError(
          400,
          "json_too_deep",
          `Request body nests arrays and objects deeper than ${MAX_JSON_DEPTH}`,
          {
            limit: MAX_JSON_DEPTH,
          },
        );
      }
    } else if (c === CLOSE_BRACKET || c === CLOSE_BRACE) {
      depth--;
    }
  }
}

/**
 * Refuse an already parsed value (an MCP tool's arguments) whose arrays and objects nest deeper
 * than {@linkcode MAX_JSON_DEPTH}, as readJson refuses such a body; walked without recursion.
 *
 * @throws ApiError 400 `json_too_deep` (`details.limit`).
 */
export function checkValueDepth(value: unknown): void {
  const stack: [unknown, number][] = [[value, 0]];
  while (stack.length > 0) {
    const [current, depth] = stack.pop()!;
    if (current === null || typeof current !== "object") continue;
    if (depth + 1 > MAX_JSON_DEPTH) {
      throw new ApiError(400, "json_too_deep", `Arguments nest arrays and objects deeper than ${MAX_JSON_DEPTH}`, {
        limit: MAX_JSON_DEPTH,
      });
    }
    for (const inner of Object.values(current)) {
      if (inner !== null && typeof inner === "object") stack.push([inner, depth + 1]);
    }
  }
}

/** Dotted path of the first string or key with a lone surrogate, or null. Depth is bounded before this runs. */
const SURROGATE_ESCAPE = /\\u[dD][89abcdefABCDEF]/;

function loneSurrogatePath(value: unknown): string | null {
  const found = loneSurrogateSteps(value);
  return found === null ? null : found.reverse().join(".");
}

/** The steps to the first ill-formed string or key, innermost first (built only once one is found). */
function loneSurrogateSteps(value: unknown): string[] | null {
  if (typeof value === "string") return value.isWellFormed() ? null : [];
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const found = loneSurrogateSteps(value[i]);
      if (found !== null) return [...found, String(i)];
    }
  } else if (value !== null && typeof value === "object") {
    for (const [key, inner] of Object.entries(value)) {
      if (!key.isWellFormed()) return [key.toWellFormed()];
      const found = loneSurrogateSteps(inner);
      if (found !== null) return [...found, key];
    }
  }
  return null;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** 405 `method_not_allowed`, with the Allow header listing `allow` (and OPTIONS). */
export function methodNotAllowed(allow: string): never {
  throw new ApiError(405, "method_not_allowed", `Use ${allow}`, undefined, { allow: `${allow}, OPTIONS` });
}

/** Whether `value` is spelled as a UUID (ids in paths, or a `config`/`template` given by id rather than name). */
export function isUuid(value: string): boolean {
  return UUID.test(value);
}

/** Path segments after the function's own name, URL-decoded. */
export function routeSegments(req: Request, functionName: string): string[] {
  const segments = new URL(req.url).pathname.split("/").filter(Boolean);
  const at = segments.indexOf(functionName);
  let decoded: string[];
  try {
    decoded = segments.slice(at + 1).map((s) => decodeURIComponent(s));
  } catch {
    throw new ApiError(400, "invalid_path", "The path has a malformed percent-escape");
  }
  // Postgres text cannot hold NUL, and no name or id contains a control character.
  // deno-lint-ignore no-control-regex
  if (decoded.some((s) => /[\x00-\x1f\x7f]/.test(s))) {
    throw new ApiError(400, "invalid_path", "A path segment contains a control character");
  }
  return decoded;
}
