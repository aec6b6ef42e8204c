// SMTP config verifications: started as pending before any network I/O by a database
// function that counts them per user over events a config's deletion cannot reset, then
// settled with the outcome, together with what the session said about the login.
import type { z } from "zod";
import type { UserClaims } from "../auth.ts";
import type { verificationList } from "../responses.ts";
import { isoUtc, type Sql, type Tx, withUser } from "../db.ts";
import { authVerdict, type LoginAttempt, recordAuthResult, releaseAuthAttempt } from "./credential_guard.ts";

/** How a verification ended. */
export interface VerificationOutcome {
  ok: boolean;
  errorClass?: string;
  latencyMs: number;
  serverBanner?: string | null;
}

/**
 * Reserve one verification of `configId`: at most 10 per user per rolling minute (the
 * database's limit), or `perMinute` when that is lower.
 *
 * @throws ApiError 429 `rate_limited` with Retry-After (raised by the database).
 * @returns the pending verification's id.
 */
export async function startVerification(tx: Tx, configId: string, perMinute?: number): Promise<string> {
  const [row] = await tx<{ id: string }[]>`
    select private.begin_smtp_verification(${configId}::uuid, ${perMinute ?? null}::integer) as id`;
  return row.id;
}

/**
 * Settle a pending verification and the login attempt it reserved; failures to record
 * are logged, never thrown over the result.
 */
export async function finishVerification(
  sql: Sql,
  claims: UserClaims,
  verification: { id: string; login: LoginAttempt },
  outcome: VerificationOutcome,
): Promise<void> {
  try {
    await withUser(sql, claims, async (tx) => {
      await tx`select private.record_verification_outcome(
                 ${verification.id}::uuid, ${outcome.ok}, ${outcome.errorClass ?? null},
                 ${Math.round(outcome.latencyMs)}, ${outcome.serverBanner ?? null})`;
      const verdict = authVerdict(outcome.ok ? undefined : outcome.errorClass);
      if (verdict === null) await releaseAuthAttempt(tx, verification.login);
      else await recordAuthResult(tx, verification.login, verdict);
    });
  } catch (error) {
    const e = error as { name?: string; code?: string };
    console.error(JSON.stringify({
      level: "error",
      msg: "could not record verification outcome",
      verification_id: verification.id,
      error: e?.name,
      code: e?.code,
    }));
  }
}

/** One verification as the history lists it. */
export type VerificationRecord = z.infer<typeof verificationList>["verifications"][number];

/** Most verifications one history page holds. */
export const MAX_VERIFICATIONS_LISTED = 50;

/**
 * The caller's verifications of `configId`, newest first (at most {@linkcode MAX_VERIFICATIONS_LISTED}).
 * RLS shows only the caller's own; one still running has ok false and error_class "pending".
 */
export async function listVerifications(tx: Tx, configId: string): Promise<VerificationRecord[]> {
  return await tx<VerificationRecord[]>`
    select v.id, v.ok, v.error_class, v.latency_ms, v.server_banner,
           ${isoUtc(tx, "v.created_at")} as created_at
      from public.smtp_config_verifications v
     where v.config_id = ${configId}::uuid
     order by v.created_at desc, v.id desc
     limit ${MAX_VERIFICATIONS_LISTED}`;
}
