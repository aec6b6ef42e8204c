// SMTP config verifications: recorded as pending before any network I/O, so that
// concurrent requests count against the per-user limit, then settled with the outcome.
import type { UserClaims } from "../auth.ts";
import { type Sql, type Tx, withUser } from "../db.ts";
import { rateLimited } from "./rate_limit.ts";

/** How a verification ended. */
export interface VerificationOutcome {
  ok: boolean;
  errorClass?: string;
  latencyMs: number;
  serverBanner?: string | null;
}

/**
 * Reserve one verification for `configId` within `perMinute` per user.
 *
 * @throws ApiError 429 `rate_limited` with Retry-After.
 * @returns the pending verification's id.
 */
export async function startVerification(tx: Tx, userId: string, configId: string, perMinute: number): Promise<string> {
  await tx`select pg_advisory_xact_lock(hashtextextended('mailroom.verify:' || ${userId}, 0))`;
  const [window] = await tx<{ count: number; frees_in: number | null }[]>`
    select count(*)::int as count,
           -- clock_timestamp(), not now(): this transaction may have waited on the lock while others inserted.
           least(extract(epoch from (min(created_at) + interval '1 minute' - clock_timestamp())), 60)::float8 as frees_in
      from public.smtp_config_verifications
     where created_at > now() - interval '1 minute'`;
  if (window.count >= perMinute) {
    throw rateLimited(
      `You may verify SMTP configs ${perMinute} times per minute`,
      { limit: perMinute, per: "minute" },
      window.frees_in ?? 60,
    );
  }
  const [row] = await tx<{ id: string }[]>`
    insert into public.smtp_config_verifications (config_id, ok, error_class)
    values (${configId}::uuid, false, 'pending')
    returning id`;
  return row.id;
}

/** Settle a pending verification; failures to record are logged, never thrown over the result. */
export async function finishVerification(
  sql: Sql,
  claims: UserClaims,
  verificationId: string,
  outcome: VerificationOutcome,
): Promise<void> {
  try {
    await withUser(sql, claims, (tx) =>
      tx`select private.record_verification_outcome(
           ${verificationId}::uuid, ${outcome.ok}, ${outcome.errorClass ?? null},
           ${Math.round(outcome.latencyMs)}, ${outcome.serverBanner ?? null})`);
  } catch (error) {
    const e = error as { name?: string; code?: string };
    console.error(JSON.stringify({
      level: "error",
      msg: "could not record verification outcome",
      verification_id: verificationId,
      error: e?.name,
      code: e?.code,
    }));
  }
}
