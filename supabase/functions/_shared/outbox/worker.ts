// The outbox worker: claim due rows (fairly, under a lease), send each as its owner, record
// the outcome in the owner's RLS context, and stop within a time budget. Any number of
// workers may run at once; rows are claimed with FOR UPDATE SKIP LOCKED (see the outbox
// migration). Workers have no user JWT: for each row they act with the same claims withUser
// sets for that row's user, so RLS and auth.uid() hold exactly as for the user's own request.
import type { UserClaims } from "../auth.ts";
import type { AppContext } from "../context.ts";
import { withUser } from "../db.ts";
import { ApiError } from "../http.ts";
import { parseBody, type SendEmailRequest, sendEmailRequest } from "../schemas.ts";
import { type Outcome, outcomeOf, prepareSend, refusalOutcome, transmit } from "../send.ts";
import type { RecipientOutcome } from "../smtp/outcome.ts";
import { createSessionPool, type SessionPool } from "../smtp/pool.ts";

/** Batch contents kept per drain (each up to 4 MiB). */
const BATCH_CACHE_ENTRIES = 4;

/** An outbox row as the worker needs it. */
interface OutboxRow {
  id: string;
  user_id: string;
  config_id: string | null;
  batch_id: string | null;
  message_id: string;
  created_at: Date;
  payload: unknown;
  recipients: RecipientOutcome[] | null;
}

/** How one drain went. */
export interface DrainReport {
  claimed: number;
  sent: number;
  queued: number;
  failed: number;
  unknown: number;
  postponed: number;
  swept: number;
  duration_ms: number;
}

/** How a worker runs. */
export interface DrainOptions {
  /** A name for the leases it takes (unique per worker). */
  workerId: string;
  /** Stop claiming after this long (well inside the platform's limits). */
  budgetMs: number;
  /** Rows claimed per round trip. */
  batchSize?: number;
  /** How long a claimed row stays ours without renewal. */
  leaseSeconds?: number;
}

/**
 * Drain the outbox until it is empty or the time budget is spent.
 *
 * @example
 * ```ts
 * const report = await drainOutbox(ctx, { workerId: crypto.randomUUID(), budgetMs: 50_000 });
 * ```
 */
export async function drainOutbox(ctx: AppContext, options: DrainOptions): Promise<DrainReport> {
  const started = performance.now();
  const deadline = Date.now() + options.budgetMs;
  const lease = options.leaseSeconds ?? 90;
  const report: DrainReport = {
    claimed: 0,
    sent: 0,
    queued: 0,
    failed: 0,
    unknown: 0,
    postponed: 0,
    swept: 0,
    duration_ms: 0,
  };
  const [{ swept }] = await ctx.sql<{ swept: number }[]>`select private.sweep_outbox() as swept`;
  report.swept = swept;
  const batches = new Map<string, Record<string, unknown>>();
  const paused = new Set<string>();
  // One connection per config and credentials for the whole run, closed at the end.
  const pool = createSessionPool();
  try {
    await drainRounds(ctx, options, deadline, lease, report, batches, paused, pool);
  } finally {
    pool.close();
  }
  report.duration_ms = Math.round(performance.now() - started);
  return report;
}

async function drainRounds(
  ctx: AppContext,
  options: DrainOptions,
  deadline: number,
  lease: number,
  report: DrainReport,
  batches: Map<string, Record<string, unknown>>,
  paused: Set<string>,
  pool: SessionPool,
): Promise<void> {
  while (Date.now() < deadline) {
    const rows = await ctx.sql<OutboxRow[]>`
      select id, user_id, config_id, batch_id, message_id, created_at, payload, recipients
        from private.claim_outbox(${options.workerId}, ${options.batchSize ?? 10}, ${lease})`;
    if (rows.length === 0) break;
    report.claimed += rows.length;
    for (const row of rows) {
      if (Date.now() >= deadline) {
        await postpone(ctx, options.workerId, row.id, 0);
        report.postponed++;
        continue;
      }
      if (row.config_id && paused.has(row.config_id)) {
        await postpone(ctx, options.workerId, row.id, 0);
        report.postponed++;
        continue;
      }
      const result = await sendRow(ctx, options.workerId, lease, row, batches, paused, pool);
      report[result]++;
    }
  }
}

type RowResult = "sent" | "queued" | "failed" | "unknown" | "postponed";

async function sendRow(
  ctx: AppContext,
  workerId: string,
  lease: number,
  row: OutboxRow,
  batches: Map<string, Record<string, unknown>>,
  paused: Set<string>,
  pool: SessionPool,
): Promise<RowResult> {
  const [{ started }] = await ctx.sql<{ started: boolean }[]>`
    select private.start_outbox_send(${row.id}::uuid, ${workerId}, ${inFlightLease(ctx, lease)}) as started`;
  if (!started) return "postponed";
  const owner: UserClaims = { sub: row.user_id, role: "authenticated" };

  let request: SendEmailRequest;
  try {
    request = parseBody(sendEmailRequest, await requestOf(ctx, owner, row, batches));
  } catch (error) {
    return await record(ctx, owner, row.id, failedOutcome(row, error, "invalid_payload"));
  }

  let prepared;
  try {
    prepared = await withUser(
      ctx.sql,
      owner,
      (tx) => prepareSend(ctx, tx, request, { messageId: row.message_id, date: row.created_at }),
    );
  } catch (error) {
    // Over a limit, or the database is unreachable (withUser maps that to 503): back to the
    // queue, no attempt counted. Anything else is a bug with this message: it fails, once.
    if (error instanceof ApiError && (error.status === 429 || error.status >= 500)) {
      const retry = Number(error.details?.retry_after_seconds ?? error.headers?.["retry-after"] ?? 30);
      await postpone(ctx, workerId, row.id, retry);
      return "postponed";
    }
    return await record(ctx, owner, row.id, failedOutcome(row, error, "internal_error"));
  }

  if (prepared.config.needs_attention) {
    // Paused meanwhile (by another worker): leave the message for when the config is fixed.
    paused.add(prepared.config.id);
    await postpone(ctx, workerId, row.id, 0);
    return "postponed";
  }
  // Recipients accepted or refused for good by earlier attempts are not sent to again.
  const settled = new Set((row.recipients ?? []).filter((r) => r.status !== "deferred").map((r) => r.address));
  const pending = prepared.message.envelope.to.filter((address) => !settled.has(address));
  const transmission = await transmit(ctx, owner, prepared, pending, pool);
  const { to, cc, bcc } = prepared.message.recipients;
  const outcome: Outcome = {
    ...("refused" in transmission
      ? refusalOutcome(prepared.message, transmission.refused.failure)
      : outcomeOf(transmission.report)),
    sent: { to: to.map((a) => a.address), cc_count: cc.length, bcc_count: bcc.length, subject: prepared.subject },
  };
  if (outcome.error_class && PAUSES_CONFIG.has(outcome.error_class)) {
    // Every message through this config would fail the same way: pause its queue, keep the message.
    await withUser(
      ctx.sql,
      owner,
      (tx) => tx`select private.pause_config_queue(${prepared.config.id}::uuid, ${outcome.error_class!})`,
    );
    paused.add(prepared.config.id);
    await postpone(ctx, workerId, row.id, 0);
    return "postponed";
  }
  return await record(ctx, owner, row.id, outcome);
}

// The server refused the config's credentials (or they cannot be used): nothing queued
// through it can succeed until the user fixes the config.
const PAUSES_CONFIG = new Set(["smtp_auth_failed", "smtp_auth_required", "smtp_auth_unavailable"]);

/** The send-email request a row stands for: its own, or its batch's content for its recipient. */
async function requestOf(
  ctx: AppContext,
  owner: UserClaims,
  row: OutboxRow,
  batches: Map<string, Record<string, unknown>>,
): Promise<unknown> {
  const payload = (row.payload ?? {}) as { kind?: string; request?: unknown; to?: unknown; data?: unknown };
  if (payload.kind === "request") return { ...(payload.request as object), config: row.config_id ?? undefined };
  if (payload.kind !== "recipient" || !row.batch_id) throw new ApiError(422, "invalid_payload", "Unknown payload");
  let content = batches.get(row.batch_id);
  if (!content) {
    const [batch] = await withUser(
      ctx.sql,
      owner,
      (tx) =>
        tx<{ content: Record<string, unknown> }[]>`select content from public.email_batches where id = ${row.batch_id}`,
    );
    content = batch?.content ?? {};
    // A few batches at a time: contents can be megabytes each, and a drain may meet many.
    if (batches.size >= BATCH_CACHE_ENTRIES) batches.delete(batches.keys().next().value!);
    batches.set(row.batch_id, content);
  }
  const shared = (content.data ?? {}) as Record<string, unknown>;
  const own = (payload.data ?? {}) as Record<string, unknown>;
  const merged = content.template !== undefined ? { data: { ...shared, ...own } } : {};
  return { ...content, ...merged, to: [payload.to], config: row.config_id ?? undefined };
}

function failedOutcome(row: OutboxRow, error: unknown, fallback: string): Outcome {
  const known = error instanceof ApiError;
  return {
    status: "failed",
    message_id: row.message_id,
    error_class: known ? error.code : fallback,
    error_message: known ? error.message : "The message could not be prepared",
    retryable: false,
  };
}

async function record(ctx: AppContext, owner: UserClaims, id: string, outcome: Outcome): Promise<RowResult> {
  try {
    const [{ status }] = await withUser(
      ctx.sql,
      owner,
      (tx) =>
        tx<{ status: string }[]>`select private.record_outbox_attempt(${id}::uuid, ${
          tx.json(outcome as never)
        }) as status`,
    );
    return status === "queued" ? "queued" : status as RowResult;
  } catch (error) {
    // Left `sending`: the sweep marks it unknown when the lease ends (it may have gone out).
    const e = error as { name?: string; code?: string };
    console.error(
      JSON.stringify({ level: "error", msg: "could not record outbox attempt", id, error: e?.name, code: e?.code }),
    );
    return "unknown";
  }
}

async function postpone(ctx: AppContext, workerId: string, id: string, seconds: number): Promise<void> {
  await ctx.sql`select private.postpone_outbox_send(${id}::uuid, ${workerId}, ${Math.max(0, Math.ceil(seconds))})`;
}

/** A message in flight keeps its lease for longer than its SMTP session can last, so no sweep takes it mid-send. */
function inFlightLease(ctx: AppContext, lease: number): number {
  return Math.max(lease, Math.ceil((ctx.config.smtp.sessionTimeoutMs ?? 0) / 1000) + 30);
}
