// The refresh-token grant (RFC 6749 section 6) through oauth4webapi, and what its failures mean
// for a mailbox: a grant the provider no longer honours needs the user (reauthorise), a
// provider that is down or throttling needs only time. No secret ever reaches an error message.
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
  | "oauth_token_refresh_failed";

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
  constructor(
    readonly code: OAuthFailureCode,
    message: string,
    readonly retryable: boolean,
    /** The provider's own error code (`invalid_grant`, ...), when it gave one. */
    readonly providerError?: string,
    readonly retryAfterSeconds?: number,
  ) {
    super(message);
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

export interface RefreshOptions {
  timeoutMs?: number;
  /** Allow `http:` (the local stand-in only; the caller decides from the egress allowlist). */
  allowHttp?: boolean;
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
  let response: Response;
  try {
    response = await oauth.refreshTokenGrantRequest(server, client, auth, request.refreshToken, {
      signal: AbortSignal.timeout(options.timeoutMs ?? 10_000),
      ...(request.scopes?.length ? { additionalParameters: { scope: request.scopes.join(" ") } } : {}),
      ...(options.allowHttp ? { [oauth.allowInsecureRequests]: true } : {}),
    });
  } catch (error) {
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
  let result: oauth.TokenEndpointResponse;
  try {
    result = await oauth.processRefreshTokenResponse(server, client, response);
  } catch (error) {
    throw classify(error, redact);
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

function classify(error: unknown, redact: (text: string) => string): OAuthError {
  if (error instanceof oauth.ResponseBodyError) {
    const said = error.error_description ? `: ${redact(error.error_description).slice(0, 300)}` : "";
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
          `The token endpoint refused the refresh (${error.error}${said}); it is tried again later`,
          true,
          error.error,
        );
    }
  }
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
