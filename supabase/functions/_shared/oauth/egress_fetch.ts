// How a refresh reaches a custom provider's token endpoint: a URL the user wrote, so a way into
// our own network unless checked like an SMTP host. The URL's host is resolved once and checked
// by the egress policy; the request then goes to that checked address and nowhere else
// (egress/pinned_https.ts). HTTPS only; no redirect is followed (a 3xx comes back as a response,
// which the refresh refuses); the answer is capped in size and time.
import { ApiError } from "../http.ts";
import { type EgressPolicy, type ResolvedEndpoint, type Resolver, resolveTokenUrl } from "../smtp/egress.ts";
import { OAuthError, type OAuthFailureCode, type TokenFetch } from "./refresh.ts";
import { pinnedRequest } from "../egress/pinned_https.ts";

/** A token endpoint's answer is a small JSON object; anything bigger is not one. */
export const MAX_TOKEN_RESPONSE_BYTES = 64 * 1024;

export interface EgressFetchOptions {
  /** The deployment's egress policy (the same as for SMTP hosts). */
  policy: EgressPolicy;
  /** The resolver (the system's, cached, by default; a scripted one in tests). */
  resolve?: Resolver;
  /** Extra CA certificates (PEM) to trust besides the system's (MAILROOM_OAUTH_CA_CERTS). */
  caCerts?: string;
  /** Default 64 KiB. */
  maxResponseBytes?: number;
  /** Resolution's timeout, and the request's when the caller gives no signal (default 10 s). */
  timeoutMs?: number;
}

/** Codes of the egress policy's refusals, as a refresh reports them. */
const REFUSALS: Record<string, OAuthFailureCode> = {
  oauth_token_url_invalid: "oauth_token_url_invalid",
  oauth_token_url_forbidden: "oauth_token_url_forbidden",
  oauth_token_url_port_not_allowed: "oauth_token_url_port_not_allowed",
};

/**
 * A `fetch` for a custom provider's token endpoint (oauth4webapi's `customFetch`), checked by the
 * egress policy and pinned to the address it checked.
 *
 * @throws (from the fetch) OAuthError `oauth_token_url_forbidden` (and `_invalid`,
 *   `_port_not_allowed`), not retryable; a retryable `oauth_token_refresh_failed` when the name
 *   does not resolve; an Error saying why the endpoint could not be reached.
 * @example
 * ```ts
 * await refreshAccessToken(request, { fetch: egressCheckedFetch({ policy: ctx.config.egress }), userEndpoint: true });
 * ```
 */
export function egressCheckedFetch(options: EgressFetchOptions): TokenFetch {
  return async (url, init) => {
    let endpoint: ResolvedEndpoint;
    try {
      endpoint = await resolveTokenUrl(options.policy, url, {
        resolve: options.resolve,
        timeoutMs: options.timeoutMs,
      });
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      const refusal = REFUSALS[error.code];
      // A name that does not resolve now may resolve later: tried again, the mailbox not paused.
      if (!refusal) throw new OAuthError("oauth_token_refresh_failed", error.message, true);
      throw new OAuthError(refusal, error.message, false);
    }
    return await pinnedRequest(endpoint, init, {
      ...options,
      maxResponseBytes: options.maxResponseBytes ?? MAX_TOKEN_RESPONSE_BYTES,
    });
  };
}
