// Database access in the caller's RLS context, exactly as PostgREST does it: one
// transaction with `request.jwt.claims` set and the role switched to `authenticated`.
import postgres from "postgres";
import type { Config } from "./config.ts";
import type { UserClaims } from "./auth.ts";

/** A postgres.js client. */
export type Sql = postgres.Sql;
/** A transaction handle inside `withUser`. */
export type Tx = postgres.TransactionSql;

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
 * @example
 * ```ts
 * const rows = await withUser(sql, claims, (tx) => tx`select * from public.user_smtp_configs`);
 * ```
 */
export function withUser<T>(sql: Sql, claims: UserClaims, fn: (tx: Tx) => Promise<T>): Promise<T> {
  return sql.begin(async (tx) => {
    // Supabase's auth.uid() reads the legacy request.jwt.claim.sub before request.jwt.claims:
    // set both, transaction-local, so nothing a pooled session left behind can stand in for ours.
    await tx`select set_config('request.jwt.claims', ${JSON.stringify(claims)}, true),
                    set_config('request.jwt.claim.sub', ${claims.sub}, true),
                    set_config('request.jwt.claim.role', 'authenticated', true),
                    set_config('role', 'authenticated', true)`;
    return await fn(tx);
  }) as Promise<T>;
}
