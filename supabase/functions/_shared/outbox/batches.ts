// A user's batches as send-bulk shows them: progress computed in SQL over the batch's audit
// rows, the list newest first, and cancelling what has not started. Everything runs in the
// caller's RLS context, so another user's batch is simply not there (404).
import { isoUtc, type Tx } from "../db.ts";
import { ApiError, isUuid } from "../http.ts";
import { nextAttempt, waitDetail, waitReason } from "./waiting.ts";

/** Messages of a batch by status. */
export interface BatchCounts {
  queued: number;
  scheduled: number;
  sending: number;
  sent: number;
  deferred: number;
  failed: number;
  unknown: number;
  cancelled: number;
  /** Waiting for the owner's approval (see /oversight/approvals). */
  pending_approval: number;
  rejected: number;
  expired: number;
  /** Every recipient on the owner's suppression list: nothing sent. */
  suppressed: number;
}

/** A batch's progress. Timestamps are ISO 8601 in UTC with microseconds. */
export interface BatchStatus {
  batch_id: string;
  created_at: string;
  scheduled_at: string | null;
  total: number;
  counts: BatchCounts;
  first_sent_at: string | null;
  last_sent_at: string | null;
  /** Messages sent per minute between the first and the last send; null before two sends. */
  rate_per_minute: number | null;
  /** The most frequent error classes over the batch's messages, at most five. */
  top_errors: { error_class: string; count: number }[];
  /**
   * Only in one batch's progress (not in the list): why its queued and scheduled messages
   * wait, by reason, with the earliest next attempt (null: it waits for you) and one detail.
   */
  waiting?: { reason: string; count: number; next_attempt_at: string | null; detail: string | null }[];
  /** Only in one batch's progress: recipients by outcome so far, partly delivered messages included. */
  recipients?: { accepted: number; rejected: number; deferred: number };
}

/** Most batches one page of the list holds. */
export const MAX_BATCHES_PER_PAGE = 50;

function notFound(id: string): ApiError {
  return new ApiError(404, "batch_not_found", `No batch ${JSON.stringify(id)}`);
}

/** One jsonb document per batch `b`, with its counts over its audit rows. */
function summary(tx: Tx) {
  return tx`
    jsonb_build_object(
      'batch_id', b.id,
      'created_at', ${isoUtc(tx, "b.created_at")},
      'scheduled_at', ${isoUtc(tx, "b.scheduled_at")},
      'total', b.total,
      'counts', jsonb_build_object(
        'queued', s.queued, 'scheduled', s.scheduled, 'sending', s.sending, 'sent', s.sent,
        'deferred', s.deferred, 'failed', s.failed, 'unknown', s.unknown, 'cancelled', s.cancelled,
        'pending_approval', s.pending_approval, 'rejected', s.rejected_messages, 'expired', s.expired,
        'suppressed', s.suppressed),
      'first_sent_at', ${isoUtc(tx, "s.first_sent_at")},
      'last_sent_at', ${isoUtc(tx, "s.last_sent_at")},
      'rate_per_minute', case when s.last_sent_at > s.first_sent_at
        then round((s.sent / (extract(epoch from s.last_sent_at - s.first_sent_at) / 60))::numeric, 1) end,
      'top_errors', (
        select coalesce(jsonb_agg(jsonb_build_object('error_class', e.error_class, 'count', e.n)
                                  order by e.n desc, e.error_class), '[]'::jsonb)
          from (select a.error_class, count(*) as n
                  from public.email_audit_log a
                 where a.batch_id = b.id and a.error_class is not null
                 group by a.error_class
                 order by n desc, a.error_class
                 limit 5) e),
      'waiting', (
        select coalesce(jsonb_agg(jsonb_build_object('reason', w.reason, 'count', w.n,
                                                     'next_attempt_at', w.next_attempt_at, 'detail', w.detail)
                                  order by w.n desc, w.reason), '[]'::jsonb)
          from (select r.reason, count(*) as n, min(r.next_attempt_at) as next_attempt_at, min(r.detail) as detail
                  from (select ${waitReason(tx)} as reason, ${nextAttempt(tx)} as next_attempt_at,
                               ${waitDetail(tx)} as detail
                          from public.email_audit_log a
                          left join public.user_smtp_configs c on c.id = a.config_id
                         where a.batch_id = b.id and a.status in ('queued', 'scheduled')) r
                 group by r.reason) w),
      'recipients', jsonb_build_object('accepted', s.accepted, 'rejected', s.rejected, 'deferred', s.deferred_recipients)
    ) as status
    from public.email_batches b
    cross join lateral (
      select count(*) filter (where a.status = 'queued') as queued,
             count(*) filter (where a.status = 'scheduled') as scheduled,
             count(*) filter (where a.status = 'sending') as sending,
             count(*) filter (where a.status = 'sent') as sent,
             count(*) filter (where a.status = 'deferred') as deferred,
             count(*) filter (where a.status = 'failed') as failed,
             count(*) filter (where a.status = 'unknown') as unknown,
             count(*) filter (where a.status = 'cancelled') as cancelled,
             count(*) filter (where a.status = 'pending_approval') as pending_approval,
             count(*) filter (where a.status = 'rejected') as rejected_messages,
             count(*) filter (where a.status = 'expired') as expired,
             count(*) filter (where a.status = 'suppressed') as suppressed,
             min(a.completed_at) filter (where a.status = 'sent') as first_sent_at,
             max(a.completed_at) filter (where a.status = 'sent') as last_sent_at,
             coalesce(sum(cardinality(a.accepted)), 0) as accepted,
             coalesce(sum(cardinality(a.rejected)), 0) as rejected,
             coalesce(sum(cardinality(a.deferred)), 0) as deferred_recipients
        from public.email_audit_log a
       where a.batch_id = b.id
    ) s`;
}

/**
 * The progress of one of the caller's batches.
 *
 * @throws ApiError 404 `batch_not_found` (unknown, another user's, or not an id).
 * @example
 * ```ts
 * const status = await withUser(sql, claims, (tx) => batchStatus(tx, batchId));
 * status.counts.sent;
 * ```
 */
export async function batchStatus(tx: Tx, id: string): Promise<BatchStatus> {
  if (!isUuid(id)) throw notFound(id);
  const [row] = await tx<{ status: BatchStatus }[]>`select ${summary(tx)} where b.id = ${id}::uuid`;
  if (!row) throw notFound(id);
  return row.status;
}

/** Most messages one page of the list counts: a page stops before the batch that would pass it (but always holds one). */
export const MAX_MESSAGES_PER_PAGE = 100_000;

/** A batch the list may show: what choosing a page needs, before any counting. */
export interface ListCandidate {
  id: string;
  created_at: string;
  total: number;
}

/**
 * Which of `candidates` (newest first, up to `limit + 1` of them) one page shows, and whether
 * batches remain after it. A page holds at most `limit` batches and stops before the batch that
 * would take its message count past `budget`, so one request counts a bounded number of audit
 * rows however many a user has. It never ends between two batches created at the same instant
 * (`before` is a timestamp and could not resume between them), unless they fill the page.
 *
 * @example
 * ```ts
 * choosePage([{ id: "a", created_at: "2026-12-06T10:00:00.000000Z", total: 80_000 },
 *             { id: "b", created_at: "2026-12-05T10:00:00.000000Z", total: 80_000 }], 50, 100_000);
 * // { page: [a], more: true }
 * ```
 */
export function choosePage<T extends ListCandidate>(
  candidates: T[],
  limit: number,
  budget: number,
): { page: T[]; more: boolean } {
  let page: T[] = [];
  let messages = 0;
  for (const candidate of candidates.slice(0, limit)) {
    if (page.length > 0 && messages + candidate.total > budget) break;
    page.push(candidate);
    messages += candidate.total;
  }
  const next = candidates[page.length];
  if (next === undefined) return { page, more: false };
  const untied = page.filter((c) => c.created_at !== next.created_at);
  if (untied.length > 0) page = untied;
  return { page, more: true };
}

/**
 * The progress documents of the batches `ids`, newest first: the same document as
 * {@linkcode batchStatus}, with each batch's rows read once through the index-only scan of
 * email_audit_log_batch_progress (batch_id, status, error_class; see its migration) and grouped
 * by status and error class before anything else is derived.
 */
function pageSummaries(tx: Tx, ids: string[]) {
  return tx<{ status: BatchStatus }[]>`
    select jsonb_build_object(
             'batch_id', b.id,
             'created_at', ${isoUtc(tx, "b.created_at")},
             'scheduled_at', ${isoUtc(tx, "b.scheduled_at")},
             'total', b.total,
             'counts', s.counts,
             'first_sent_at', ${isoUtc(tx, "s.first_sent_at")},
             'last_sent_at', ${isoUtc(tx, "s.last_sent_at")},
             'rate_per_minute', case when s.last_sent_at > s.first_sent_at
               then round((s.sent / (extract(epoch from s.last_sent_at - s.first_sent_at) / 60))::numeric, 1) end,
             'top_errors', s.top_errors
           ) as status
      from public.email_batches b
      cross join lateral (
        with g as (
          select a.status, a.error_class, count(*) as n,
                 min(a.completed_at) as first_completed_at, max(a.completed_at) as last_completed_at
            from public.email_audit_log a
           where a.batch_id = b.id
           group by a.status, a.error_class
        )
        select (select jsonb_build_object(
                         'queued', coalesce(sum(g.n) filter (where g.status = 'queued'), 0),
                         'scheduled', coalesce(sum(g.n) filter (where g.status = 'scheduled'), 0),
                         'sending', coalesce(sum(g.n) filter (where g.status = 'sending'), 0),
                         'sent', coalesce(sum(g.n) filter (where g.status = 'sent'), 0),
                         'deferred', coalesce(sum(g.n) filter (where g.status = 'deferred'), 0),
                         'failed', coalesce(sum(g.n) filter (where g.status = 'failed'), 0),
                         'unknown', coalesce(sum(g.n) filter (where g.status = 'unknown'), 0),
                         'cancelled', coalesce(sum(g.n) filter (where g.status = 'cancelled'), 0),
                         'pending_approval', coalesce(sum(g.n) filter (where g.status = 'pending_approval'), 0),
                         'rejected', coalesce(sum(g.n) filter (where g.status = 'rejected'), 0),
                         'expired', coalesce(sum(g.n) filter (where g.status = 'expired'), 0),
                         'suppressed', coalesce(sum(g.n) filter (where g.status = 'suppressed'), 0))
                  from g) as counts,
               (select coalesce(sum(g.n), 0) from g where g.status = 'sent') as sent,
               (select min(g.first_completed_at) from g where g.status = 'sent') as first_sent_at,
               (select max(g.last_completed_at) from g where g.status = 'sent') as last_sent_at,
               (select coalesce(jsonb_agg(jsonb_build_object('error_class', e.error_class, 'count', e.n)
                                          order by e.n desc, e.error_class), '[]'::jsonb)
                  from (select g.error_class, sum(g.n) as n
                          from g
                         where g.error_class is not null
                         group by g.error_class
                         order by n desc, g.error_class
                         limit 5) e) as top_errors
      ) s
     where b.id = any (${ids}::uuid[])
     order by b.created_at desc, b.id desc`;
}

/**
 * The caller's batches, newest first, each with its progress; `before` (a `created_at` from an
 * earlier page, `next_before`) pages back. A page holds at most `limit` (50) batches and
 * {@linkcode MAX_MESSAGES_PER_PAGE} of their messages, so it may be shorter than `limit` while
 * more remain: `next_before` is null only on the last page.
 *
 * @example
 * ```ts
 * const { batches, next_before } = await withUser(sql, claims, (tx) => listBatches(tx));
 * ```
 */
export async function listBatches(
  tx: Tx,
  options: { before?: string; limit?: number } = {},
): Promise<{ batches: BatchStatus[]; next_before: string | null }> {
  const limit = Math.min(options.limit ?? MAX_BATCHES_PER_PAGE, MAX_BATCHES_PER_PAGE);
  const before = options.before === undefined ? tx`` : tx`where b.created_at < ${options.before}::text::timestamptz`;
  // The page is chosen from the batches' own rows (one index range), then only its batches are counted.
  const candidates = await tx<ListCandidate[]>`
    select b.id, ${isoUtc(tx, "b.created_at")} as created_at, b.total
      from public.email_batches b
      ${before}
     order by b.created_at desc, b.id desc
     limit ${limit + 1}`;
  const { page, more } = choosePage(candidates, limit, MAX_MESSAGES_PER_PAGE);
  if (page.length === 0) return { batches: [], next_before: null };
  const rows = await pageSummaries(tx, page.map((c) => c.id));
  return { batches: rows.map((row) => row.status), next_before: more ? page[page.length - 1].created_at : null };
}

/**
 * Cancel every message of the caller's batch that has not started (queued or scheduled).
 *
 * @returns how many were cancelled now (0 when nothing was left to cancel).
 * @throws ApiError 404 `batch_not_found`.
 * @example
 * ```ts
 * await withUser(sql, claims, (tx) => cancelBatch(tx, batchId)); // { batch_id, cancelled: 9998 }
 * ```
 */
export async function cancelBatch(tx: Tx, id: string): Promise<{ batch_id: string; cancelled: number }> {
  if (!isUuid(id)) throw notFound(id);
  const [batch] = await tx<{ id: string }[]>`select b.id from public.email_batches b where b.id = ${id}::uuid`;
  if (!batch) throw notFound(id);
  const [row] = await tx<{ cancelled: number }[]>`
    select private.cancel_outbox_messages(null::uuid[], ${batch.id}::uuid) as cancelled`;
  return { batch_id: batch.id, cancelled: row.cancelled };
}
