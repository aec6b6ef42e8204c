// What a function instance builds once at start-up and every request shares.
import { type Config, loadConfig } from "./config.ts";
import { cachedVerifier, createTokenVerifier, type TokenVerifier } from "./auth.ts";
import { createSql, type Sql } from "./db.ts";
import { createSessionPool, type SessionPool } from "./smtp/pool.ts";
import { setBodyBudget } from "./http.ts";

/** Shared per-instance state: configuration, the connection pools, the token verifier. */
export interface AppContext {
  config: Config;
  sql: Sql;
  verifyToken: TokenVerifier;
  /** SMTP sessions send-email reuses across requests (absent when reuse is off). */
  smtpPool?: SessionPool;
}

/**
 * Build the context from environment variables.
 *
 * @example
 * ```ts
 * Deno.serve(createSendEmailHandler(createContext(Deno.env.toObject())));
 * ```
 */
export function createContext(env: Record<string, string | undefined>): AppContext {
  const config = loadConfig(env);
  setBodyBudget(config.bodyBudgetBytes);
  return {
    config,
    sql: createSql(config),
    verifyToken: cachedVerifier(createTokenVerifier(config.jwt)),
    smtpPool: config.smtpPool ? createSessionPool(config.smtpPool) : undefined,
  };
}
