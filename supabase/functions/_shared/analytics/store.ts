// email-analytics in SQL, as the caller: the summary is one call of private.email_analytics
// (see its migrations: settled days come from a rollup, the rest from the rows), the message
// list one keyset query. Both run
// inside withUser, so RLS decides which rows exist; config and template filters are resolved
// the same way (another user's config is a 404, like a missing one). A summary costs about one
// pass over the caller's rows in its range, so every analytics request runs under a statement
// timeout shorter than the role's: a batch of agent tool calls cannot hold the database for long.
import type { z } from "zod";
import type { UserClaims } from "../auth.ts";
import { isoUtc, type Sql, type Tx, withUser } from "../db.ts";
import type { analyticsSummary as summarySchema, message as messageSchema } from "../responses.ts";
import { ApiError, isUuid } from "../http.ts";
import { findConfig } from "../store/smtp_configs.ts";
import { findTemplate } from "../store/templates.ts";
import { waiting } from "../outbox/waiting.ts";
import {
  type AnalyticsFilters,
  encodeCursor,
  type MessageCursor,
  type MessagesQuery,
  type SummaryQuery,
} from "./params.ts";

/** What GET /email-analytics answers (the schema is the OpenAPI document's). */
export type AnalyticsSummary = z.infer<typeof summarySchema>;

/** One audit row as the message list shows it. */
export type MessageRow = z.infer<typeof messageSchema>;

// Timestamps come out with isoUtc and go back into SQL as text (`::text::timestamptz`).

/**
 * How long one statement of an analytics request may run (`statement_timeout`, transaction-local),
 * below the `authenticated` role's 8 s: a 30-day summary of 230,000 rows takes about 0.5-1.5 s on
 * the local stack, a year of a million rows would not finish, and should not hold a connection.
 */
export const ANALYTICS_STATEMENT_TIMEOUT = "3s";

/** Options of the store functions (tests change them). */
export interface StoreOptions {
  statementTimeout?: string;
  /**
   * Whether the summary may read the rollup of settled days (default true); false reads every
   * row of the range, as the summary did before the rollup (tests compare both).
   */
  rollup?: boolean;
  /** Most messages in a range whose latency percentiles are computed exactly from the rows (default 50,000). */
  exactLatencyRows?: number;
}

/**
 * Set the request's statement timeout. Sent without waiting, so it shares a round trip with the
 * request's first statement; if it failed, that statement fails too (the transaction aborted).
 */
function limitStatements(tx: Tx, options: StoreOptions): void {
  const timeout = options.statementTimeout ?? ANALYTICS_STATEMENT_TIMEOUT;
  tx`select set_config('statement_timeout', ${timeout}, true)`.execute().catch(() => {});
}

/** A statement stopped by the timeout as the 503 the caller can act on; anything else unchanged. */
async function bounded<T>(options: StoreOptions, run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (error) {
    const e = error as { code?: string; message?: string };
    if (e?.code === "57014" && /statement timeout/.test(e.message ?? "")) {
      const timeout = options.statementTimeout ?? ANALYTICS_STATEMENT_TIMEOUT;
      throw new ApiError(
        503,
        "analytics_timeout",
        `The analytics query ran longer than ${timeout} and was stopped: ask for a shorter range (from, to) ` +
          "or narrow it (config, status, batch_id, template)",
        { statement_timeout: timeout, retryable: false },
      );
    }
    throw error;
  }
}

interface ResolvedFilters {
  from: string;
  to: string;
  configId: string | null;
  templateId: string | null;
}

async function resolveFilters(tx: Tx, filters: AnalyticsFilters): Promise<ResolvedFilters> {
  const configId = filters.config === undefined ? null : (await findConfig(tx, filters.config)).id;
  const templateId = filters.template === undefined ? null : (await findTemplate(tx, filters.template)).id;
  try {
    const [range] = await tx<{ from: string; to: string }[]>`
      select ${isoUtc(tx, "r.range_from")} as from, ${isoUtc(tx, "r.range_to")} as to
        from private.analytics_range(${filters.from ?? null}, ${filters.to ?? null}, ${filters.tz}) r`;
    return { ...range, configId, templateId };
  } catch (error) {
    // A date the patterns let through but the calendar does not have (e.g. 24:30).
    const code = (error as { code?: string })?.code ?? "";
    if (code.startsWith("22")) throw new ApiError(400, "invalid_date", "from and to must be real dates and times");
    throw error;
  }
}

/**
 * Summarize the caller's settled days in `query`'s range (a week of them at most), in a
 * transaction of its own as the caller, before the summary reads them: what is summarized is
 * kept even if the summary itself then runs out of time, so a busy mailbox's requests get
 * cheaper one after another instead of timing out alike. A summary the rollup cannot serve
 * (filtered by config, batch or template, or grouped by agent_context) summarizes nothing; a
 * timeout here only means the summary reads those days' rows.
 *
 * @example
 * ```ts
 * await summarizeSettledDays(ctx.sql, claims, query);
 * const summary = await withUser(ctx.sql, claims, (tx) => analyticsSummary(tx, query));
 * ```
 */
export async function summarizeSettledDays(
  sql: Sql,
  claims: UserClaims,
  query: SummaryQuery,
  options: StoreOptions = {},
): Promise<number> {
  if (options.rollup === false || query.config !== undefined || query.template !== undefined) return 0;
  if (query.batchId !== undefined || query.breakdowns.some((b) => b.startsWith("agent_context."))) return 0;
  try {
    return await withUser(sql, claims, async (tx) => {
      limitStatements(tx, options);
      const [{ days }] = await tx<{ days: number }[]>`
        select private.summarize_email_stats(r.range_from, r.range_to) as days
          from private.analytics_range(${query.from ?? null}, ${query.to ?? null}, ${query.tz}) r`;
      return days;
    });
  } catch (error) {
    const code = (error as { code?: string })?.code ?? "";
    // Out of time, or a range the summary will refuse with its own clear error: nothing summarized.
    if (code === "57014" || code.startsWith("22") || error instanceof ApiError) return 0;
    throw error;
  }
}

/**
 * The caller's summary for `query` (run inside withUser).
 *
 * @throws ApiError 400 for a bad range, 404 `config_not_found` / `template_not_found` for filters,
 *   503 `analytics_timeout` when a statement runs past {@linkcode ANALYTICS_STATEMENT_TIMEOUT}.
 * @example
 * ```ts
 * const summary = await withUser(sql, claims, (tx) => analyticsSummary(tx, parseSummaryQuery(params)));
 * ```
 */
export function analyticsSummary(
  tx: Tx,
  query: SummaryQuery,
  options: StoreOptions = {},
): Promise<AnalyticsSummary> {
  limitStatements(tx, options);
  return bounded(options, () => summaryOf(tx, query, options));
}

async function summaryOf(tx: Tx, query: SummaryQuery, options: StoreOptions): Promise<AnalyticsSummary> {
  const { from, to, configId, templateId } = await resolveFilters(tx, query);
  const interval = query.interval ?? (Date.parse(to) - Date.parse(from) <= 2 * 86_400_000 ? "hour" : "day");
  const [{ summary }] = await tx<{ summary: Omit<AnalyticsSummary, "range"> }[]>`
    select private.email_analytics(
      ${from}::text::timestamptz, ${to}::text::timestamptz, ${interval}, ${query.tz}, ${query.breakdowns}::text[],
      ${configId}::uuid, ${query.statuses ?? null}::text[], ${query.batchId ?? null}::uuid, ${templateId}::uuid,
      p_rollup => ${options.rollup ?? true}, p_exact_latency_rows => ${options.exactLatencyRows ?? 50_000}
    ) as summary`;
  return { range: { from, to, interval, tz: query.tz }, ...summary };
}

function messageColumns(tx: Tx) {
  return tx`
    a.id, ${isoUtc(tx, "a.created_at")} as created_at, ${isoUtc(tx, "a.completed_at")} as completed_at,
    ${isoUtc(tx, "a.scheduled_at")} as scheduled_at, a.status, a.from_email as from, a.to_addresses as to,
    a.cc_count, a.bcc_count, a.subject, a.recipients, a.bounced, a.reports, a.sent_copy,
    a.error_class as error_code, a.error_message,
    a.smtp_response_code, a.message_id, a.attempts, a.batch_id,
    case when a.config_id is null then null else jsonb_build_object('id', a.config_id, 'name', c.name) end as config,
    a.template_id, a.agent_context, a.client_id, a.via, a.suppressed, a.duplicate_of, ${waiting(tx)} as waiting`;
}

/**
 * One page of the caller's audit rows, newest first, after `query.cursor` (run inside withUser).
 * Keyset pagination on (created_at, id): a row shows up once however many arrive meanwhile.
 * Under the same statement timeout as the summary.
 */
export function listMessages(
  tx: Tx,
  query: MessagesQuery,
  options: StoreOptions = {},
): Promise<{ messages: MessageRow[]; next_cursor: string | null }> {
  limitStatements(tx, options);
  return bounded(options, () => messagesOf(tx, query));
}

async function messagesOf(
  tx: Tx,
  query: MessagesQuery,
): Promise<{ messages: MessageRow[]; next_cursor: string | null }> {
  const { from, to, configId, templateId } = await resolveFilters(tx, query);
  const rows = await pageOf(tx, query, { from, to, configId, templateId });
  const page = rows.slice(0, query.limit);
  const last = page.at(-1);
  return {
    messages: page,
    next_cursor: rows.length > query.limit && last ? encodeCursor({ createdAt: last.created_at, id: last.id }) : null,
  };
}

async function pageOf(
  tx: Tx,
  query: MessagesQuery,
  { from, to, configId, templateId }: ResolvedFilters,
): Promise<MessageRow[]> {
  const after = (cursor: MessageCursor) =>
    tx`and (a.created_at, a.id) < (${cursor.createdAt}::text::timestamptz, ${cursor.id}::uuid)`;
  try {
    // A recipient or agent filter: the page's ids come from private.filtered_message_ids (why:
    // see 20261207080000_message_filters_and_content.sql), then the rows by id.
    if (query.recipient || query.agent) {
      const ids = (await tx<{ id: string }[]>`
        select private.filtered_message_ids(
          ${from}::text::timestamptz, ${to}::text::timestamptz, ${configId ?? null}::uuid,
          ${query.statuses ?? null}::text[], ${query.batchId ?? null}::uuid, ${templateId ?? null}::uuid,
          ${query.recipient ?? null}::text, ${query.agent ?? null}::text, ${query.clientId ?? null}::text,
          ${query.cursor?.createdAt ?? null}::text::timestamptz, ${query.cursor?.id ?? null}::uuid,
          ${query.limit + 1}::integer) as id`).map((r) => r.id);
      if (ids.length === 0) return [];
      return await tx<MessageRow[]>`
        select ${messageColumns(tx)}
          from public.email_audit_log a
          left join public.user_smtp_configs c on c.id = a.config_id
         where a.id = any (${ids}::uuid[])
         order by a.created_at desc, a.id desc`;
    }
    return await tx<MessageRow[]>`
    select ${messageColumns(tx)}
      from public.email_audit_log a
      left join public.user_smtp_configs c on c.id = a.config_id
     where a.created_at >= ${from}::text::timestamptz and a.created_at < ${to}::text::timestamptz
       ${configId ? tx`and a.config_id = ${configId}::uuid` : tx``}
       ${query.statuses ? tx`and a.status = any (${query.statuses}::text[])` : tx``}
       ${query.batchId ? tx`and a.batch_id = ${query.batchId}::uuid` : tx``}
       ${templateId ? tx`and a.template_id = ${templateId}::uuid` : tx``}
       ${query.clientId ? tx`and a.client_id = ${query.clientId}::text` : tx``}
       ${query.cursor ? after(query.cursor) : tx``}
     order by a.created_at desc, a.id desc
     limit ${query.limit + 1}`;
  } catch (error) {
    // A cursor whose timestamp the calendar does not have (only a crafted one can).
    if (query.cursor && String((error as { code?: string })?.code ?? "").startsWith("22")) {
      throw new ApiError(400, "invalid_cursor", "cursor must be the next_cursor of a previous page, unchanged");
    }
    throw error;
  }
}

/** One of the caller's audit rows, else 404 `message_not_found`. */
export async function getMessage(tx: Tx, id: string, options: StoreOptions = {}): Promise<MessageRow> {
  if (!isUuid(id)) throw new ApiError(404, "message_not_found", `No message ${JSON.stringify(id)}`);
  limitStatements(tx, options);
  const [row] = await bounded(options, () =>
    tx<MessageRow[]>`
    select ${messageColumns(tx)}
      from public.email_audit_log a
      left join public.user_smtp_configs c on c.id = a.config_id
     where a.id = ${id}::uuid`);
  if (!row) throw new ApiError(404, "message_not_found", `No message ${JSON.stringify(id)}`);
  return row;
}
