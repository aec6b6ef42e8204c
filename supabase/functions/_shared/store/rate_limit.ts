// Per-config sending limits (messages per rolling minute and per rolling day), counted
// over the user's own audit rows and reserved under a per-config transaction lock so
// concurrent sends cannot both slip under the limit.
import type { Tx } from "../db.ts";
import { ApiError } from "../http.ts";

/** A config's identity and limits. */
export interface ConfigLimits {
  id: string;
  name: string;
  limits: { per_minute: number; per_day: number };
}

interface Window {
  last_minute: number;
  last_day: number;
  minute_frees_in: number | null;
  day_frees_in: number | null;
}

/**
 * Check that `count` more messages fit; call inside the transaction that then writes
 * the audit rows, so the lock covers both.
 *
 * @throws ApiError 429 `rate_limited` with Retry-After.
 */
export async function reserveSendCapacity(tx: Tx, config: ConfigLimits, count = 1): Promise<void> {
  await tx`select pg_advisory_xact_lock(hashtextextended('mailroom.config_rate:' || ${config.id}, 0))`;
  const [window] = await tx<Window[]>`
    select count(*) filter (where created_at > now() - interval '1 minute')::int as last_minute,
           count(*)::int as last_day,
           -- clock_timestamp(), not now(): this transaction may have waited on the lock while others inserted.
           least(ceil(extract(epoch from (min(created_at) filter (where created_at > now() - interval '1 minute')
                + interval '1 minute' - clock_timestamp()))), 60)::int as minute_frees_in,
           least(ceil(extract(epoch from (min(created_at) + interval '24 hours' - clock_timestamp()))), 86400)::int
             as day_frees_in
      from public.email_audit_log
     where config_id = ${config.id} and created_at > now() - interval '24 hours'`;

  if (window.last_minute + count > config.limits.per_minute) {
    throw limited(config, "minute", config.limits.per_minute, window.minute_frees_in);
  }
  if (window.last_day + count > config.limits.per_day) {
    throw limited(config, "day", config.limits.per_day, window.day_frees_in);
  }
}

function limited(config: ConfigLimits, per: "minute" | "day", limit: number, freesIn: number | null): ApiError {
  return rateLimited(
    `SMTP config ${JSON.stringify(config.name)} allows ${limit} messages per ${per}`,
    { config: config.name, limit, per },
    freesIn ?? (per === "minute" ? 60 : 86_400),
  );
}

/** 429 `rate_limited` with Retry-After (seconds, at least 1). */
export function rateLimited(what: string, details: Record<string, unknown>, retryAfterSeconds: number): ApiError {
  const retryAfter = Math.max(1, Math.ceil(retryAfterSeconds));
  return new ApiError(
    429,
    "rate_limited",
    `${what}; retry in ${retryAfter} s`,
    { ...details, retry_after_seconds: retryAfter },
    { "retry-after": String(retryAfter) },
  );
}
