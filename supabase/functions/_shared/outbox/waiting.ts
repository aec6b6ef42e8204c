// Why a queued or scheduled message waits, and until when: one SQL expression shared by the
// message views (email-analytics) and a batch's progress (send-bulk), so "queued" never comes
// without a reason. Read over an audit row `a` joined to its config `c`.
import type { Tx } from "../db.ts";

/**
 * Reasons, most specific first:
 * - `set_aside`: a worker died twice holding it; it waits for you (`POST /send-email/:id/retry`);
 * - `config_paused`: the config needs attention (detail: why, e.g. `smtp_auth_failed`);
 * - `server_pushed_back`: the server refused for now (421, 450 at MAIL FROM); the config backs off;
 * - `rate_limited`: the config's per-minute or per-day budget is spent;
 * - `deferred_by_server`: the server deferred it (or some recipients); retried with backoff;
 * - `scheduled`: its time has not come;
 * - `due`: it waits for the next worker run.
 */
export const WAIT_REASONS = [
  "set_aside",
  "config_paused",
  "server_pushed_back",
  "rate_limited",
  "deferred_by_server",
  "scheduled",
  "due",
] as const;

/** The reason (null unless the row is queued or scheduled). */
export function waitReason(tx: Tx) {
  return tx`case
    when a.status not in ('queued', 'scheduled') then null
    when a.error_class = 'worker_crashed' then 'set_aside'
    when c.needs_attention is not null then 'config_paused'
    when c.backoff_until > now() then 'server_pushed_back'
    when a.error_class = 'rate_limited' then 'rate_limited'
    when a.attempts > 0 and a.error_class is not null then 'deferred_by_server'
    when a.next_attempt_at > now() then 'scheduled'
    else 'due'
  end`;
}

/** `{reason, detail, next_attempt_at}` as jsonb, or null for a row that does not wait. */
export function waiting(tx: Tx) {
  return tx`case when a.status in ('queued', 'scheduled') then jsonb_build_object(
    'reason', ${waitReason(tx)},
    'detail', ${waitDetail(tx)},
    'next_attempt_at', ${nextAttempt(tx)}
  ) end`;
}

/** Why, in the words of the server, the config or the outbox (null when the reason says it all). */
export function waitDetail(tx: Tx) {
  return tx`case
    when a.error_class = 'worker_crashed' then a.error_message
    when c.needs_attention is not null then c.needs_attention
    when c.backoff_until > now() then c.backoff_reason
    when a.error_class = 'rate_limited' then a.error_message
    when a.attempts > 0 and a.error_class is not null then coalesce(a.smtp_response, a.error_message)
  end`;
}

/** When it is tried next: null while it waits for someone (paused, set aside). */
export function nextAttempt(tx: Tx) {
  return tx`case
    when a.next_attempt_at = 'infinity' or c.needs_attention is not null then null
    else to_char(greatest(a.next_attempt_at, c.backoff_until) at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
  end`;
}
