// Idempotency-Key for sends (private.idempotency_keys): the same key and body replay the
// first response, the same key with another body is refused, and a concurrent duplicate is
// told to wait, so a retrying agent never sends twice.
import type { UserClaims } from "../auth.ts";
import { type Sql, withUser } from "../db.ts";
import { ApiError, json } from "../http.ts";

/** What a send produced: its status and JSON body. */
export interface StoredResponse {
  status: number;
  body: unknown;
}

// Printable ASCII, as Stripe and Resend accept; long enough for a UUID or a hash with a prefix.
const KEY_SHAPE = /^[\x21-\x7e]{1,255}$/;

/**
 * The request's `Idempotency-Key`, if any.
 *
 * @throws ApiError 400 `invalid_idempotency_key` when present but not 1-255 printable ASCII characters.
 */
export function idempotencyKey(req: Request): string | undefined {
  const key = req.headers.get("idempotency-key");
  if (key === null) return undefined;
  if (!KEY_SHAPE.test(key)) {
    throw new ApiError(
      400,
      "invalid_idempotency_key",
      "Idempotency-Key must be 1 to 255 printable ASCII characters without spaces",
    );
  }
  return key;
}

/**
 * A fingerprint of the request body: the same body gives the same one, whatever the order of
 * its keys (a client may serialise a retry differently).
 */
export async function fingerprint(body: unknown): Promise<string> {
  const bytes = new TextEncoder().encode(JSON.stringify(body, sortedKeys));
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes)).toHex();
}

/** JSON.stringify replacer: objects with their keys in sorted order (arrays keep theirs). */
function sortedKeys(_key: string, value: unknown): unknown {
  if (value === null || typeof value !== "object" || Array.isArray(value)) return value;
  return Object.fromEntries(Object.entries(value).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/**
 * Run `send` at most once per key: a new key runs it and stores its response once the send
 * was audited (a result, or an error that names an audit row); a request refused before
 * anything was sent gives the key back so that a retry runs afresh.
 *
 * @throws ApiError 422 `idempotency_key_reused` (another body), 409 `request_in_progress`, 409
 *   `request_interrupted` (taken over 10 minutes ago and never finished).
 * @example
 * ```ts
 * return await onceForKey(sql, claims, idempotencyKey(req), body, async () => ({ status: 200, body: await send() }));
 * ```
 */
export async function onceForKey(
  sql: Sql,
  claims: UserClaims,
  key: string | undefined,
  request: unknown,
  send: () => Promise<StoredResponse>,
): Promise<Response> {
  if (key === undefined) {
    const result = await send();
    return json(result.body, result.status);
  }
  const hash = await fingerprint(request);
  const [started] = await withUser(
    sql,
    claims,
    (tx) =>
      tx<{ outcome: string; response_status: number | null; response_body: unknown }[]>`
      select outcome, response_status, response_body from private.begin_idempotent_request(${key}, ${hash})`,
  );
  if (started.outcome === "mismatch") {
    throw new ApiError(
      422,
      "idempotency_key_reused",
      "This Idempotency-Key was used with a different request; use a new key for a new request",
    );
  }
  if (started.outcome === "in_progress") {
    throw new ApiError(409, "request_in_progress", "A request with this Idempotency-Key is still being processed", {
      retryable: true,
    }, { "retry-after": "1" });
  }
  if (started.outcome === "interrupted") {
    // The first request's instance stopped mid-way: it may or may not have sent.
    const audit = started.response_body as { id: string; status: string; message_id: string | null } | null;
    throw new ApiError(
      409,
      "request_interrupted",
      "The first request with this Idempotency-Key was interrupted before it finished and may or may not have " +
        "sent: look it up (its audit row, or your batches) instead of retrying; a new key sends again",
      { retryable: false, ...(audit ? { id: audit.id, status: audit.status, message_id: audit.message_id } : {}) },
    );
  }
  if (started.outcome === "replay") {
    return json(started.response_body, started.response_status ?? 200, { "idempotent-replayed": "true" });
  }

  let result: StoredResponse;
  try {
    result = await send();
  } catch (error) {
    const audited = error instanceof ApiError && typeof error.details?.id === "string";
    if (audited) {
      const body = { error: { code: error.code, message: error.message, details: error.details } };
      await settle(sql, claims, key, { status: error.status, body });
    } else {
      await release(sql, claims, key);
    }
    throw error;
  }
  await settle(sql, claims, key, result);
  return json(result.body, result.status);
}

async function settle(sql: Sql, claims: UserClaims, key: string, response: StoredResponse): Promise<void> {
  await withUser(
    sql,
    claims,
    (tx) =>
      tx`select private.finish_idempotent_request(${key}, ${response.status}, ${tx.json(response.body as never)})`,
  );
}

async function release(sql: Sql, claims: UserClaims, key: string): Promise<void> {
  try {
    await withUser(sql, claims, (tx) => tx`select private.release_idempotent_request(${key})`);
  } catch {
    // The key stays taken until it expires; the request's own error is what the caller hears.
  }
}
