// Database access in the caller's RLS context, exactly as PostgREST does it: one
// transaction with `request.jwt.claims` set and the role switched to `authenticated`.
// Failures that are not ours to answer with a 500 (the database down, a deleted user, a
// limit the database enforces) leave here as ApiErrors.
import postgres from "postgres";
import type { Config } from "./config.ts";
import type { UserClaims } from "./auth.ts";
import { ApiError } from "./http.ts";

/** A postgres.js client. */
export type Sql = postgres.Sql;
/** A transaction handle inside `withUser` (a connection reserved for the transaction). */
export type Tx = postgres.Sql;

/** Create the connection pool (lazy: connects on first query). */
export function createSql(config: Pick<Config, "dbUrl" | "dbPooled">, max = 5): Sql {
  return postgres(config.dbUrl, {
    max,
    // Supavisor in transaction mode cannot keep prepared statements.
    prepare: !config.dbPooled,
    idle_timeout: 20,
    connect_timeout: 10,
    onnotice: () => {},
    connection: { application_name: "mailroom" },
  });
}

/**
 * Run `fn` in one transaction as the user: RLS policies and `auth.uid()` apply.
 *
 * `begin`, the claims and `fn`'s first statement go down the connection together
 * (postgres.js pipelines what is sent before an answer comes), so a one-statement request
 * costs two round trips (that batch, then `commit`) where `sql.begin` takes four.
 *
 * @throws ApiError 503 `database_unavailable` (with Retry-After) when Postgres cannot be
 *   reached, 401 `user_not_found` when the token's user no longer exists, 409
 *   `concurrent_update` on a deadlock or serialization failure, and whatever a database
 *   function raised as SQLSTATE `PGRST` (e.g. 429 limits), as PostgREST would answer it.
 * @example
 * ```ts
 * const rows = await withUser(sql, claims, (tx) => tx`select * from public.user_smtp_configs`);
 * ```
 */
export function withUser<T>(sql: Sql, claims: UserClaims, fn: (tx: Tx) => Promise<T>): Promise<T> {
  return transaction(sql, claims, fn);
}

/**
 * As {@linkcode withUser}, but the transaction ends with `last`, sent with `commit` right
 * behind it instead of after its answer: the row locks `last` takes (a config's send budget)
 * are held for no round trip to this process, however busy its event loop is, so
 * concurrent requests that need the same lock do not queue behind each other's network
 * waits. Resolves to what `fn` returned and `last`'s rows.
 *
 * @example
 * ```ts
 * const { value, last } = await withUserEndingWith(sql, claims, prepare, (tx, p) =>
 *   tx`select private.reserve_send_slots(${p.configId}::uuid, 1)`);
 * ```
 */
export async function withUserEndingWith<T, R extends readonly postgres.MaybeRow[]>(
  sql: Sql,
  claims: UserClaims,
  fn: (tx: Tx) => Promise<T>,
  last: (tx: Tx, value: T) => postgres.PendingQuery<R>,
): Promise<{ value: T; last: postgres.RowList<R> }> {
  let rows: postgres.RowList<R> | undefined;
  const value = await transaction(sql, claims, fn, (tx, value) => {
    const query = last(tx, value).execute();
    return query.then((result) => void (rows = result));
  });
  return { value, last: rows! };
}

async function transaction<T>(
  sql: Sql,
  claims: UserClaims,
  fn: (tx: Tx) => Promise<T>,
  last?: (tx: Tx, value: T) => Promise<void>,
): Promise<T> {
  let conn: postgres.ReservedSql;
  try {
    conn = await sql.reserve();
  } catch (error) {
    throw databaseApiError(error) ?? error;
  }
  // What fn and last get: the connection while the transaction is open. A query issued after
  // that (from a branch fn left running) throws, instead of running outside the transaction
  // or inside the next request's on the same connection.
  let open = true;
  const tx = guarded(conn, () => open);
  // Whether commit or rollback was sent; if neither, the connection is rolled back before release.
  let ended = false;
  try {
    // Supabase's auth.uid() reads the legacy request.jwt.claim.sub before request.jwt.claims:
    // set both, transaction-local, so nothing a pooled session left behind can stand in for ours.
    // PostgREST also applies the role's statement_timeout per request (8 s for
    // `authenticated` on Supabase): a slow query fails here as it would through the Data API.
    const begin = conn`begin`.execute();
    const setup = conn`select set_config('request.jwt.claims', ${JSON.stringify(claims)}, true),
                      set_config('request.jwt.claim.sub', ${claims.sub}, true),
                      set_config('request.jwt.claim.role', 'authenticated', true),
                      set_config('role', 'authenticated', true),
                      set_config('statement_timeout', ${AUTHENTICATED_STATEMENT_TIMEOUT}, true)`.execute();
    // Their failures are read below; until then they must not count as unhandled.
    begin.catch(() => {});
    setup.catch(() => {});
    let value: T;
    try {
      value = await fn(tx);
    } catch (error) {
      open = false;
      ended = true;
      await conn`rollback`.catch(() => {});
      // A failed setup is the real cause of fn's aborted statements.
      const [began, set] = await Promise.allSettled([begin, setup]);
      throw [began, set].find((s): s is PromiseRejectedResult => s.status === "rejected")?.reason ?? error;
    }
    // `last`'s statement is executed before `commit` is, so both go down the wire in that order,
    // right behind `begin` and the setup when fn sent nothing: one round trip for it all. A
    // failed statement aborts the transaction, and Postgres answers that `commit` with ROLLBACK.
    const lastDone = last ? last(tx, value) : undefined;
    open = false;
    const commit = conn`commit`.execute();
    ended = true;
    const settled = await Promise.allSettled([begin, setup, lastDone, commit]);
    const failed = settled.find((s): s is PromiseRejectedResult => s.status === "rejected");
    if (failed) throw failed.reason;
    // A statement that failed inside fn and was caught there still aborted the transaction.
    const committed = (settled[3] as PromiseFulfilledResult<postgres.RowList<postgres.Row[]>>).value;
    if (committed.command !== "COMMIT") throw new Error(`transaction ended with ${committed.command}`);
    return value;
  } catch (error) {
    throw databaseApiError(error) ?? error;
  } finally {
    open = false;
    // Something threw between fn and commit: the transaction must not go back to the pool open.
    if (!ended) await conn`rollback`.catch(() => {});
    conn.release();
  }
}

/** `conn` for as long as `isOpen()`; afterwards every query (tagged, `unsafe`, `file`) throws. */
function guarded(conn: postgres.ReservedSql, isOpen: () => boolean): Tx {
  const refuse = () => {
    throw new Error("A query was issued after its transaction ended: await every statement inside withUser");
  };
  return new Proxy(conn, {
    apply(target, thisArg, args) {
      if (!isOpen()) refuse();
      return Reflect.apply(target, thisArg, args);
    },
    get(target, property, receiver) {
      const value = Reflect.get(target, property, receiver);
      if ((property === "unsafe" || property === "file") && typeof value === "function") {
        return (...args: unknown[]) => {
          if (!isOpen()) refuse();
          return value.apply(target, args);
        };
      }
      return value;
    },
  }) as unknown as Tx;
}

/** The `authenticated` role's statement timeout on Supabase (`alter role authenticated set statement_timeout`). */
export const AUTHENTICATED_STATEMENT_TIMEOUT = "8s";

/**
 * A timestamptz column as ISO 8601 in UTC with microseconds (`2026-11-25T16:31:50.123456Z`):
 * exact, so it can come back as a cursor or `?before=` (sent as text: postgres.js would pass a
 * timestamptz parameter through a JS Date and drop the microseconds), and without a `+`.
 */
export function isoUtc(tx: Tx, column: string) {
  return tx`to_char(${tx(column)} at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`;
}

/** Seconds a client should wait before retrying when the database is unavailable. */
const UNAVAILABLE_RETRY_AFTER_SECONDS = 5;

// postgres.js's own connection errors, and the socket's.
const CONNECTION_FAILURES = new Set([
  "CONNECT_TIMEOUT",
  "CONNECTION_CLOSED",
  "CONNECTION_ENDED",
  "CONNECTION_DESTROYED",
  "ECONNREFUSED",
  "ECONNRESET",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EPIPE",
]);
// Server-side refusals: shutting down, starting up, out of connections.
const SERVER_UNAVAILABLE = new Set(["57P01", "57P02", "57P03", "53300"]);

interface DatabaseError {
  code?: string;
  message?: string;
  detail?: string;
  constraint_name?: string;
}

/**
 * The ApiError a database failure stands for, or undefined when it is a bug (a 500).
 *
 * @example
 * ```ts
 * try { await sql`select 1`; } catch (error) { throw databaseApiError(error) ?? error; }
 * ```
 */
export function databaseApiError(error: unknown): ApiError | undefined {
  if (error instanceof ApiError || typeof error !== "object" || error === null) return undefined;
  const e = error as DatabaseError;
  const code = typeof e.code === "string" ? e.code : "";
  if (code === "PGRST") return raisedApiError(e);
  if (CONNECTION_FAILURES.has(code) || SERVER_UNAVAILABLE.has(code) || code.startsWith("08")) {
    return new ApiError(
      503,
      "database_unavailable",
      `The database is unavailable; retry in ${UNAVAILABLE_RETRY_AFTER_SECONDS} s`,
      { retry_after_seconds: UNAVAILABLE_RETRY_AFTER_SECONDS },
      { "retry-after": String(UNAVAILABLE_RETRY_AFTER_SECONDS) },
    );
  }
  // Every table's owner column references auth.users: the token outlived its user.
  if (code === "23503" && e.constraint_name?.endsWith("_user_id_fkey")) {
    return new ApiError(401, "user_not_found", "The user this token was issued to no longer exists");
  }
  // The role's statement_timeout (8 s for `authenticated` on Supabase) stopped a statement.
  if (code === "57014" && /statement timeout/.test(e.message ?? "")) {
    return new ApiError(
      503,
      "database_timeout",
      "The database stopped this request's work at its time limit; retry shortly, or ask for less at once",
      { retryable: true, retry_after_seconds: UNAVAILABLE_RETRY_AFTER_SECONDS },
      { "retry-after": String(UNAVAILABLE_RETRY_AFTER_SECONDS) },
    );
  }
  if (code === "40P01" || code === "40001") {
    return new ApiError(409, "concurrent_update", "Another request changed the same data at the same time; retry", {
      retryable: true,
    });
  }
  return undefined;
}

/**
 * A `raise sqlstate 'PGRST'` in PostgREST's convention: the message is JSON `{code,
 * message}`, the detail JSON `{status, headers, details?}`.
 */
function raisedApiError(e: DatabaseError): ApiError | undefined {
  try {
    const message = JSON.parse(e.message ?? "") as { code?: unknown; message?: unknown };
    const detail = JSON.parse(e.detail ?? "") as { status?: unknown; headers?: unknown; details?: unknown };
    if (typeof message.code !== "string" || typeof detail.status !== "number") return undefined;
    const headers: Record<string, string> = {};
    if (detail.headers && typeof detail.headers === "object") {
      for (const [name, value] of Object.entries(detail.headers)) {
        if (typeof value === "string") headers[name.toLowerCase()] = value;
      }
    }
    const details = detail.details && typeof detail.details === "object"
      ? detail.details as Record<string, unknown>
      : undefined;
    return new ApiError(detail.status, message.code, String(message.message ?? message.code), details, headers);
  } catch {
    return undefined;
  }
}
