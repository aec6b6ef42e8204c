// Access tokens of an OAuth mailbox, as its owner: from this instance's cache, else from the one
// stored for every worker, else refreshed once for all of them. The refresh runs under the
// config's advisory lock (private.lock_oauth_refresh), so of eight workers that find the token
// expired, one refreshes and seven read what it stored; a rotated refresh token is stored in the
// same transaction. A grant the provider no longer honours pauses the config's queue. A custom
// provider's token endpoint is the user's URL: reached only through the egress policy.
import type { UserClaims } from "../auth.ts";
import { type Sql, withUser } from "../db.ts";
import { ApiError } from "../http.ts";
import {
  AccessTokenCache,
  type CachedToken,
  egressCheckedFetch,
  EXPIRY_MARGIN_MS,
  OAuthError,
  refreshAccessToken,
  type RefreshOptions,
  refreshScopes,
  tokenEndpoint,
} from "../oauth/mod.ts";
import type { OAuthProvider, OAuthTransport } from "../oauth/mod.ts";
import type { EgressPolicy, Resolver } from "../smtp/egress.ts";
import type { TokenSource } from "../transports/mod.ts";

/** Tokens kept by this function instance, shared by every send it makes. */
export const INSTANCE_TOKENS = new AccessTokenCache();

/** What a token source needs to know about its config. */
export interface OAuthConfigRef {
  id: string;
  /** When its credentials last changed: a new grant is a new cache key, never the old token. */
  credentials_changed_at: string;
}

export interface TokenSourceOptions {
  cache?: AccessTokenCache;
  timeoutMs?: number;
  /** Allow an `http:` token endpoint (the local stand-in only). */
  allowHttp?: boolean;
  /** Replace the google and microsoft token endpoints (the local stand-in, in development and tests). */
  tokenUrl?: string;
  /**
   * The egress policy a custom provider's token endpoint must pass (the one SMTP hosts pass);
   * without it, such a refresh is not attempted.
   */
  egress?: EgressPolicy;
  /** Extra CA certificates (PEM) for custom token endpoints (MAILROOM_OAUTH_CA_CERTS). */
  caCerts?: string;
  /** For tests: how custom token endpoints' names are resolved. */
  resolve?: Resolver;
}

/** Where a grant's refresh goes, and how: a custom provider's only through the egress policy. */
function refreshRoute(grant: StoredGrant, options: TokenSourceOptions): { tokenUrl: string; options: RefreshOptions } {
  if (grant.provider !== "custom") {
    return {
      tokenUrl: options.tokenUrl ?? tokenEndpoint({ provider: grant.provider, tenant: grant.tenant }),
      options: { timeoutMs: options.timeoutMs, allowHttp: options.allowHttp },
    };
  }
  // Never the stand-in's URL, never plain HTTP: the user's endpoint, checked.
  if (!options.egress) {
    throw new Error("a custom provider's refresh needs the egress policy (TokenSourceOptions.egress)");
  }
  const fetch = egressCheckedFetch({
    policy: options.egress,
    resolve: options.resolve,
    caCerts: options.caCerts,
    timeoutMs: options.timeoutMs,
  });
  return {
    tokenUrl: tokenEndpoint({ provider: "custom", tokenUrl: grant.token_url }),
    options: { timeoutMs: options.timeoutMs, fetch, userEndpoint: true },
  };
}

interface StoredGrant {
  provider: OAuthProvider;
  client_id: string;
  tenant: string | null;
  token_url: string | null;
  scopes: string[] | null;
  transport: OAuthTransport;
  refresh_token: string | null;
  client_secret: string | null;
  access_token: string | null;
  access_token_expires_at: Date | null;
}

/**
 * A token source for one OAuth config, acting as its owner.
 *
 * @throws (from `get`) OAuthError: `oauth_reauth_required` (the config's queue is paused first),
 *   `oauth_client_rejected`, `oauth_scope_missing`, or a retryable `oauth_token_refresh_failed`.
 * @example
 * ```ts
 * const tokens = oauthTokenSource(ctx.sql, owner, config);
 * const report = await sendOverHttps("graph", message, tokens);
 * ```
 */
export function oauthTokenSource(
  sql: Sql,
  owner: UserClaims,
  config: OAuthConfigRef,
  options: TokenSourceOptions = {},
): TokenSource {
  const cache = options.cache ?? INSTANCE_TOKENS;
  const key = `${config.id}:${config.credentials_changed_at}`;
  return {
    get: () => cache.get(key, () => sharedToken(sql, owner, config.id, options)),
    invalidate: async (accessToken) => {
      cache.invalidate(key, accessToken);
      // The other workers must not keep using a token the provider refused (nor may the next get).
      await withUser(
        sql,
        owner,
        (tx) => tx`select private.forget_oauth_access_token(${config.id}::uuid, ${accessToken})`,
      )
        .catch(() => {});
    },
  };
}

/** Provider errors that judge the grant (a wrong or revoked one): a failed login for the credential guard. */
const GRANT_REFUSED = new Set(["invalid_grant", "invalid_client", "unauthorized_client"]);

/**
 * The stored token while it is fresh, else a refresh under the config's lock, stored for
 * everyone. A refresh with a grant that has not worked yet is a login attempt for the credential
 * guard (`private.begin_smtp_authentication`), settled in the same transaction, so a refused
 * grant counts even though the refresh then fails.
 */
async function sharedToken(sql: Sql, owner: UserClaims, configId: string, options: TokenSourceOptions) {
  let outcome: CachedToken | OAuthError;
  try {
    outcome = await withUser(sql, owner, async (tx): Promise<CachedToken | OAuthError> => {
      await tx`select private.lock_oauth_refresh(${configId}::uuid)`;
      const [grant] = await tx<StoredGrant[]>`
        select provider, client_id, tenant, token_url, scopes, transport, refresh_token, client_secret,
               access_token, access_token_expires_at
          from private.smtp_config_oauth_credentials(${configId}::uuid)`;
      if (!grant?.refresh_token) {
        return new OAuthError(
          "oauth_reauth_required",
          "This mailbox has no OAuth grant stored: connect it (give a refresh token)",
          false,
        );
      }
      const stored = grant.access_token_expires_at?.getTime() ?? 0;
      if (grant.access_token && stored - EXPIRY_MARGIN_MS > Date.now()) {
        return { accessToken: grant.access_token, expiresAt: stored };
      }
      const [{ attempt }] = await tx<{ attempt: string | null }[]>`
        select private.begin_smtp_authentication(${configId}::uuid)::text as attempt`;
      const settle = (result: "succeeded" | "failed" | "unanswered") =>
        attempt === null ? Promise.resolve() : tx`
          select private.settle_smtp_authentication(${configId}::uuid, ${result}, ${attempt}::bigint)`.then(() => {});
      try {
        const route = refreshRoute(grant, options);
        const fresh = await refreshAccessToken({
          tokenUrl: route.tokenUrl,
          clientId: grant.client_id,
          clientSecret: grant.client_secret,
          refreshToken: grant.refresh_token,
          scopes: refreshScopes({ provider: grant.provider, transport: grant.transport, scopes: grant.scopes }),
        }, route.options);
        await tx`
          select private.store_oauth_tokens(${configId}::uuid, ${fresh.accessToken},
                                            ${new Date(fresh.expiresAt).toISOString()}::timestamptz,
                                            ${grant.refresh_token}, ${fresh.rotatedRefreshToken ?? null})`;
        await settle("succeeded");
        return { accessToken: fresh.accessToken, expiresAt: fresh.expiresAt };
      } catch (error) {
        if (!(error instanceof OAuthError)) throw error;
        // Kept (the transaction commits): the guard counts a grant the provider refused.
        await settle(GRANT_REFUSED.has(error.providerError ?? "") ? "failed" : "unanswered");
        return error;
      }
    });
  } catch (error) {
    // The credential guard: too many refused grants or logins lately (429 auth_attempts_exceeded).
    if (error instanceof ApiError && error.status === 429) {
      throw new OAuthError(
        "oauth_token_refresh_failed",
        `${error.message}; the mailbox's grant is tried again later`,
        true,
        undefined,
        Number(error.headers?.["retry-after"] ?? error.details?.retry_after_seconds ?? 60),
      );
    }
    throw error;
  }
  if (!(outcome instanceof OAuthError)) return outcome;
  // Nothing sent through this mailbox can work until its owner connects it again: its queue
  // waits (nothing lost, nothing failed for good) instead of each message failing on it.
  if (!outcome.retryable) {
    await withUser(sql, owner, (tx) => tx`select private.pause_config_queue(${configId}::uuid, ${outcome.code})`);
  }
  throw outcome;
}
