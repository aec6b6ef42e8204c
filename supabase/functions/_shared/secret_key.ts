// Server-to-server calls (the outbox scheduler, pg_cron + pg_net) authenticate with a secret
// API key (`apikey: sb_secret_...`), never with a user JWT.
import { timingSafeEqual } from "node:crypto";
import { Buffer } from "node:buffer";
import { ApiError } from "./http.ts";

/**
 * Check that the request carries one of `keys`, in `apikey` or as `Authorization: Bearer`,
 * compared in constant time.
 *
 * @throws ApiError 401 `missing_secret_key` / `invalid_secret_key`; 503 `worker_not_configured`
 *   when the deployment has no key at all.
 */
export function requireSecretKey(req: Request, keys: string[]): void {
  if (keys.length === 0) {
    throw new ApiError(503, "worker_not_configured", "No secret API key is configured (SUPABASE_SECRET_KEYS)");
  }
  const bearer = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.get("authorization") ?? "")?.[1];
  const offered = req.headers.get("apikey") ?? bearer;
  if (!offered) {
    throw new ApiError(401, "missing_secret_key", "Send a secret API key in the apikey header");
  }
  const given = Buffer.from(offered);
  const match = keys.some((key) => {
    const expected = Buffer.from(key);
    return expected.length === given.length && timingSafeEqual(expected, given);
  });
  if (!match) throw new ApiError(401, "invalid_secret_key", "This endpoint takes a secret API key, not a user token");
}
