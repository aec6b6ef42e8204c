// The refresh-token grant (RFC 6749 section 6) through oauth4webapi, and what its failures mean
// for a mailbox: a grant the provider no longer honours needs the user (reauthorise), a
// provider that is down or throttling needs only time. No secret ever reaches an error message,
// and a user's own token endpoint (a custom provider) is quoted no further than its error code.
import * as oauth from "oauth4webapi";

/** Why a refresh failed, as the API, the audit row and the outbox speak of it. */
export type OAuthFailureCode =
  /** The grant was revoked, expired, or the password changed: the user must authorise again. */
  | "oauth_reauth_required"
  /** The provider does not accept the client id or secret (or the app was disabled). */
  | "oauth_client_rejected"
  /** The grant lacks a scope the transport needs. */
  | "oauth_scope_missing"
  /** The provider could not be reached, timed out, throttled us or answered nonsense: try later. */
  | "oauth_token_refresh_failed"
  /** The token endpoint answered with a redirect, which is never followed (the grant would go along). */
  | "oauth_token_url_redirected"
  /** A custom provider's token endpoint is not a usable https URL. */
  | "oauth_token_url_invalid"
  /** It is, or resolves to, an address the egress policy refuses (private, loopback, metadata, ...). */
  | "oauth_token_url_forbidden"
  /** Its port is not one token endpoints may use here. */
  | "oauth_token_url_port_not_allowed";

/** The API's status for a failure: the egress policy's refusals are the request's (4xx), the rest the provider's (502). */
const FAILURE_STATUS: Partial<Record<OAuthFailureCode, number>> = {
  oauth_token_url_invalid: 400,
  oauth_token_url_forbidden: 422,
  oauth_token_url_port_not_allowed: 422,
};

/**
 * A failed refresh. `retryable` says whether the same grant may work later without the user.
 *
 * @example
 * ```ts
 * try { await refreshAccessToken(...); } catch (e) { if (e instanceof OAuthError && !e.retryable) pause(); }
 * ```
 */
export class OAuthError extends Error {
  override name = "OAuthError";
  /** The HTTP status the API answers this failure with. */
  readonly status: number;
  constructor(
    readonly code: OAuthFailureCode,
    message: string,
    readonly retryable: boolean,
    /** The provider's own error code (`invalid_grant`, ...), when it gave one. */
    readonly providerError?: string,
    readonly retryAfterSeconds?: number,
  ) {
    super(message);
    this.status = FAILURE_STATUS[code] ?? 502;
  }
}

/** A fresh access token. */
export interface RefreshedToken {
  accessToken: string;
  /** Epoch milliseconds. */
  expiresAt: number;
  /** Set when the provider rotated the refresh token: store it, and never use the old one again. */
  rotatedRefreshToken?: string;
}

/** What a refresh needs. The secrets are the caller's, read from Vault for this request only. */
export interface RefreshRequest {
  tokenUrl: string;
  clientId: string;
  clientSecret?: string | null;
  refreshToken: string;
  scopes?: string[];
}

/** How a refresh reaches the token endpoint: `fetch`'s shape, as oauth4webapi calls it. */
export type TokenFetch = (
  url: string,
  init: {
    method: string;
    headers: Record<string, string>;
    body?: URLSearchParams | string | null;
    redirect?: string;
    signal?: AbortSignal;
  },
) => Promise<Response>;

export interface RefreshOptions {
  timeoutMs?: number;
  /** Allow `http:` (the local stand-in only; the caller decides from the egress allowlist). */
  allowHttp?: boolean;
  /**
   * Reach the endpoint with this instead of `fetch` (a custom provider's: checked by the egress
   * policy and pinned to the checked address, see egress_fetch.ts). It may throw an OAuthError,
   * which the refresh passes on as it is.
   */
  fetch?: TokenFetch;
  /**
   * The endpoint is the user's own (a custom provider): its error messages are not quoted, only
   * its OAuth error code, so a refusal never carries more of the endpoint's answer than that.
   */
  userEndpoint?: boolean;
  /** For tests: the clock. */
  now?: () => number;
}

/** Lifetime assumed when a provider omits `expires_in`. */
const DEFAULT_LIFETIME_SECONDS = 600;

/**
 * Exchange a refresh token for an access token.
 *
 * @throws OAuthError with the failure's code; never with a secret in its message.
 * @example
 * ```ts
 * const { accessToken, expiresAt } = await refreshAccessToken({
 *   tokenUrl: GOOGLE_TOKEN_URL, clientId, clientSecret, refreshToken,
 * });
 * ```
 */
export async function refreshAccessToken(
  request: RefreshRequest,
  options: RefreshOptions = {},
): Promise<RefreshedToken> {
  const now = options.now ?? Date.now;
  const server: oauth.AuthorizationServer = {
    issuer: new URL(request.tokenUrl).origin,
    token_endpoint: request.tokenUrl,
  };
  const client: oauth.Client = { client_id: request.clientId };
  const auth = request.clientSecret ? oauth.ClientSecretPost(request.clientSecret) : oauth.None();
  const redact = (text: string) => redactSecrets(text, [request.refreshToken, request.clientSecret]);
  const quote = options.userEndpoint ? () => "" : redact;
  let response: Response;
  try {
    response = await oauth.refreshTokenGrantRequest(server, client, auth, request.refreshToken, {
      signal: AbortSignal.timeout(options.timeoutMs ?? 10_000),
      ...(request.scopes?.length ? { additionalParameters: { scope: request.scopes.join(" ") } } : {}),
      ...(options.allowHttp ? { [oauth.allowInsecureRequests]: true } : {}),
      ...(options.fetch ? { [oauth.customFetch]: options.fetch } : {}),
    });
  } catch (error) {
    if (error instanceof OAuthError) throw error;
    const timedOut = (error as Error)?.name === "TimeoutError" || (error as Error)?.name === "AbortError";
    throw new OAuthError(
      "oauth_token_refresh_failed",
      timedOut
        ? `The token endpoint ${server.issuer} did not answer in time`
        : `The token endpoint ${server.issuer} could not be reached: ${
          redact(String((error as Error)?.message ?? error))
        }`,
      true,
    );
  }
  if (response.status === 429 || response.status >= 500) {
    await response.body?.cancel();
    throw new OAuthError(
      "oauth_token_refresh_failed",
      `The token endpoint answered ${response.status}; the refresh is tried again later`,
      true,
      undefined,
      retryAfterSeconds(response.headers.get("retry-after"), now()),
    );
  }
  if (response.status >= 300 && response.status < 400) {
    // Followed, the form (refresh token, client secret) would go wherever the Location says.
    await response.body?.cancel();
    throw new OAuthError(
      "oauth_token_url_redirected",
      `The token endpoint ${server.issuer} answered ${response.status} (a redirect); redirects are not followed, ` +
        "so the grant never goes anywhere else: give the token endpoint's own URL",
      false,
    );
  }
  let result: oauth.TokenEndpointResponse;
  try {
    result = await oauth.processRefreshTokenResponse(server, client, response);
  } catch (error) {
    throw classify(error, redact, quote);
  }
  const lifetime = typeof result.expires_in === "number" && result.expires_in > 0
    ? result.expires_in
    : DEFAULT_LIFETIME_SECONDS;
  return {
    accessToken: result.access_token,
    expiresAt: now() + lifetime * 1000,
    ...(result.refresh_token && result.refresh_token !== request.refreshToken
      ? { rotatedRefreshToken: result.refresh_token }
      : {}),
  };
}

/** An OAuth error code as the RFC spells them (`invalid_grant`); anything else is not repeated. */
const ERROR_CODE = /^[A-Za-z0-9_.-]{1,64}$/;

function classify(
  error: unknown,
  redact: (text: string) => string,
  quote: (text: string) => string,
): OAuthError {
  if (error instanceof oauth.ResponseBodyError) {
    const described = error.error_description ? quote(error.error_description).slice(0, 300) : "";
    const said = described ? `: ${described}` : "";
    const code = ERROR_CODE.test(error.error) ? error.error : "an unrecognised error";
    switch (error.error) {
      case "invalid_grant":
        return new OAuthError(
          "oauth_reauth_required",
          `The provider no longer accepts this mailbox's authorisation (${error.error}${said}); ` +
            "connect the mailbox again to give a new refresh token",
          false,
          error.error,
        );
      case "invalid_client":
      case "unauthorized_client":
        return new OAuthError(
          "oauth_client_rejected",
          `The provider refused the OAuth client (${error.error}${said}); check the client id and secret`,
          false,
          error.error,
        );
      case "invalid_scope":
        return new OAuthError(
          "oauth_scope_missing",
          `The authorisation lacks the scope sending needs (${error.error}${said}); connect the mailbox again`,
          false,
          error.error,
        );
      default:
        // An error the grant's owner cannot act on (temporarily_unavailable, ...): tried again
        // later, never a reason to pause the mailbox.
        return new OAuthError(
          "oauth_token_refresh_failed",
          `The token endpoint refused the refresh (${code}${said}); it is tried again later`,
          true,
          code,
        );
    }
  }
  // oauth4webapi's own messages name what was wrong, never the body (it rides in `cause`).
  return new OAuthError(
    "oauth_token_refresh_failed",
    `The token endpoint's answer could not be used: ${
      redact(String((error as Error)?.message ?? error)).slice(0, 300)
    }`,
    true,
  );
}

/** `Retry-After` in seconds (delta or HTTP date), bounded to an hour. */
export function retryAfterSeconds(header: string | null, now = Date.now()): number | undefined {
  if (!header) return undefined;
  const seconds = /^\d+$/.test(header.trim()) ? Number(header.trim()) : (Date.parse(header) - now) / 1000;
  if (!Number.isFinite(seconds)) return undefined;
  return Math.min(Math.max(Math.ceil(seconds), 0), 3600);
}

/** Remove every occurrence of the given secrets from a text. */
export function redactSecrets(text: string, secrets: (string | null | undefined)[]): string {
  let out = text;
  for (const secret of secrets) if (secret && secret.length >= 4) out = out.split(secret).join("[redacted]");
  return out;
}
