// The query string of email-analytics, checked before any SQL: every bad value is a 400 with
// a stable code. Dates are resolved (and their order and span checked) in Postgres, in the
// caller's time zone, by private.analytics_range.
import { ApiError, isUuid } from "../http.ts";

/** Statuses an audit row can have (the `status` filter accepts these). */
export const AUDIT_STATUSES = [
  "sent",
  "failed",
  "unknown",
  "deferred",
  "queued",
  "scheduled",
  "sending",
  "cancelled",
  "pending_approval",
  "rejected",
  "expired",
  "suppressed",
] as const;

/** Breakdowns the summary computes when `group_by` does not choose. */
export const DEFAULT_BREAKDOWNS = ["config", "recipient_domain", "error_code", "batch"] as const;

/** Most breakdowns one request may ask for. */
export const MAX_BREAKDOWNS = 8;
/** Messages per page: default and most. */
export const DEFAULT_PAGE_SIZE = 50;
export const MAX_PAGE_SIZE = 200;

/** Filters shared by the summary and the message list. */
export interface AnalyticsFilters {
  /** As given; private.analytics_range resolves them. */
  from?: string;
  to?: string;
  /** IANA time zone, canonical. */
  tz: string;
  /** Config id or name (resolved as the caller). */
  config?: string;
  statuses?: string[];
  batchId?: string;
  /** Template id or name (resolved as the caller). */
  template?: string;
}

/** The summary's own parameters. */
export interface SummaryQuery extends AnalyticsFilters {
  interval?: "hour" | "day";
  breakdowns: string[];
}

/** A page of the message list. */
export interface MessagesQuery extends AnalyticsFilters {
  limit: number;
  cursor?: MessageCursor;
  /** An address (lower-cased): rows whose To or envelope recipients name it. */
  recipient?: string;
  /** agent_context.agent as the sender set it. */
  agent?: string;
  /** The OAuth client (agent) whose token made the send. */
  clientId?: string;
}

/** Where a page starts: after this row in (created_at desc, id desc) order. */
export interface MessageCursor {
  /** created_at in UTC with microseconds, as the list prints it. */
  createdAt: string;
  id: string;
}

function refuse(code: string, message: string): never {
  throw new ApiError(400, code, message);
}

// YYYY-MM-DD, or an ISO 8601 timestamp with a zone (a `+` a query string turned into a space is put back).
const DATE = /^\d{4}-\d{2}-\d{2}$/;
const TIMESTAMP = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:?\d{2})$/;

function dateParam(params: URLSearchParams, name: "from" | "to"): string | undefined {
  const raw = params.get(name);
  if (raw === null) return undefined;
  const value = raw.trim().replace(" ", "+");
  if (DATE.test(value)) {
    const [y, m, d] = value.split("-").map(Number);
    const date = new Date(Date.UTC(y, m - 1, d));
    if (date.getUTCFullYear() === y && date.getUTCMonth() === m - 1 && date.getUTCDate() === d && y >= 1970) {
      return value;
    }
  } else if (TIMESTAMP.test(value) && !Number.isNaN(Date.parse(value))) {
    return value;
  }
  refuse("invalid_date", `${name} must be a date (2026-11-01) or a timestamp with a zone (2026-11-01T09:00:00Z)`);
}

/**
 * `tz` when it is an IANA time zone name, or a 400 `invalid_timezone`. Offsets (`+05`) are
 * refused: Intl reads them as UTC+5 and Postgres as POSIX UTC-5. The name is kept as given
 * (Intl would turn Asia/Kolkata into its legacy alias Asia/Calcutta).
 */
export function canonicalTimeZone(tz: string): string {
  if (tz.length > 64 || !/^[A-Za-z][A-Za-z0-9_+\-/]*$/.test(tz)) {
    refuse("invalid_timezone", "tz must be an IANA time zone name such as Europe/Paris");
  }
  try {
    new Intl.DateTimeFormat("en-US", { timeZone: tz });
    return tz;
  } catch {
    refuse("invalid_timezone", `Unknown time zone ${JSON.stringify(tz)}; use an IANA name such as Europe/Paris`);
  }
}

/** Parameters that take one value: a second one is refused rather than silently ignored. */
const SINGLE_VALUED = [
  "from",
  "to",
  "tz",
  "interval",
  "config",
  "batch_id",
  "template",
  "limit",
  "cursor",
  "recipient",
  "agent",
  "client_id",
];

function refuseRepeats(params: URLSearchParams): void {
  for (const name of SINGLE_VALUED) {
    if (params.getAll(name).length > 1) refuse("duplicate_parameter", `${name} may be given once`);
  }
}

function listParam(params: URLSearchParams, name: string): string[] | undefined {
  const values = params.getAll(name).flatMap((v) => v.split(",")).map((v) => v.trim()).filter((v) => v !== "");
  return values.length > 0 ? values : undefined;
}

function filters(params: URLSearchParams): AnalyticsFilters {
  refuseRepeats(params);
  const statuses = listParam(params, "status");
  for (const status of statuses ?? []) {
    if (!(AUDIT_STATUSES as readonly string[]).includes(status)) {
      refuse("invalid_status", `status must be one of ${AUDIT_STATUSES.join(", ")}`);
    }
  }
  const batchId = params.get("batch_id") ?? undefined;
  if (batchId !== undefined && !isUuid(batchId)) refuse("invalid_batch_id", "batch_id must be a batch's id (a UUID)");
  const config = params.get("config") ?? undefined;
  if (config !== undefined && (config === "" || config.length > 200)) {
    refuse("invalid_config", "config must be a config's id or name");
  }
  const template = params.get("template") ?? undefined;
  if (template !== undefined && (template === "" || template.length > 200)) {
    refuse("invalid_template", "template must be a template's id or name");
  }
  return {
    from: dateParam(params, "from"),
    to: dateParam(params, "to"),
    tz: canonicalTimeZone(params.get("tz") ?? "UTC"),
    config,
    statuses,
    batchId,
    template,
  };
}

const AGENT_CONTEXT_KEY = /^agent_context\.[A-Za-z0-9_-]{1,64}$/;

/**
 * The summary's query: filters, `interval` (hour or day; by default hour for ranges up to two
 * days), `group_by` (breakdowns, comma-separated: config, recipient_domain, error_code, batch,
 * agent_context.<key>).
 *
 * @throws ApiError 400 with a stable code for each bad parameter.
 * @example
 * ```ts
 * parseSummaryQuery(new URLSearchParams("tz=Europe/Paris&group_by=agent_context.agent"));
 * ```
 */
export function parseSummaryQuery(params: URLSearchParams): SummaryQuery {
  const interval = params.get("interval") ?? undefined;
  if (interval !== undefined && interval !== "hour" && interval !== "day") {
    refuse("invalid_interval", "interval must be hour or day");
  }
  const listed = listParam(params, "group_by");
  const groupBy = listed && [...new Set(listed)];
  if (groupBy && groupBy.length > MAX_BREAKDOWNS) {
    refuse("invalid_group_by", `group_by takes at most ${MAX_BREAKDOWNS} breakdowns`);
  }
  for (const key of groupBy ?? []) {
    if (!(DEFAULT_BREAKDOWNS as readonly string[]).includes(key) && !AGENT_CONTEXT_KEY.test(key)) {
      refuse(
        "invalid_group_by",
        `group_by must be ${DEFAULT_BREAKDOWNS.join(", ")} or agent_context.<key> (letters, digits, _ and -)`,
      );
    }
  }
  return {
    ...filters(params),
    interval,
    breakdowns: groupBy ?? [...DEFAULT_BREAKDOWNS],
  };
}

function textParam(params: URLSearchParams, name: string, code: string, what: string): string | undefined {
  const value = params.get(name)?.trim();
  if (value === undefined) return undefined;
  if (value === "" || value.length > 200) refuse(code, `${name} must be ${what} (at most 200 characters)`);
  return value;
}

/**
 * The message list's query: filters, `recipient` (an address), `agent` (agent_context.agent),
 * `client_id` (an OAuth client), `limit` (1-200, default 50), `cursor` (from the last page).
 *
 * @throws ApiError 400 with a stable code for each bad parameter.
 */
export function parseMessagesQuery(params: URLSearchParams): MessagesQuery {
  const recipient = params.get("recipient")?.trim().toLowerCase();
  if (recipient !== undefined && (recipient.length > 320 || !/^[^\s@]+@[^\s@]+$/.test(recipient))) {
    refuse("invalid_recipient", "recipient must be an email address, such as ada@example.com");
  }
  const rawLimit = params.get("limit");
  let limit = DEFAULT_PAGE_SIZE;
  if (rawLimit !== null) {
    limit = /^\d{1,3}$/.test(rawLimit) ? Number(rawLimit) : NaN;
    if (!(limit >= 1 && limit <= MAX_PAGE_SIZE)) refuse("invalid_limit", `limit must be from 1 to ${MAX_PAGE_SIZE}`);
  }
  const rawCursor = params.get("cursor");
  return {
    ...filters(params),
    limit,
    cursor: rawCursor === null ? undefined : decodeCursor(rawCursor),
    recipient,
    agent: textParam(params, "agent", "invalid_agent", "an agent's name as its agent_context.agent says"),
    clientId: textParam(params, "client_id", "invalid_client_id", "an OAuth client's id"),
  };
}

// created_at as the list prints it: UTC with microseconds.
const CURSOR_TIMESTAMP = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/;

/** An opaque cursor for the row after which the next page starts. */
export function encodeCursor(cursor: MessageCursor): string {
  const bytes = new TextEncoder().encode(JSON.stringify([cursor.createdAt, cursor.id]));
  return btoa(String.fromCharCode(...bytes)).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

/** @throws ApiError 400 `invalid_cursor` unless `raw` is a cursor this API issued. */
export function decodeCursor(raw: string): MessageCursor {
  try {
    if (raw.length > 200 || !/^[A-Za-z0-9_-]+$/.test(raw)) throw new Error("shape");
    const text = atob(raw.replaceAll("-", "+").replaceAll("_", "/"));
    const value = JSON.parse(text);
    if (
      Array.isArray(value) && value.length === 2 && typeof value[0] === "string" && CURSOR_TIMESTAMP.test(value[0]) &&
      !Number.isNaN(Date.parse(value[0])) &&
      typeof value[1] === "string" && isUuid(value[1])
    ) {
      return { createdAt: value[0], id: value[1] };
    }
  } catch {
    // Refused below.
  }
  refuse("invalid_cursor", "cursor must be the next_cursor of a previous page, unchanged");
}
