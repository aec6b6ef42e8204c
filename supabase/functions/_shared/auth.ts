// Verifies the caller's Supabase JWT: asymmetric keys through the project's JWKS, the
// legacy HS256 secret as a fallback. Returns the claims the database needs for RLS.
import * as jose from "jose";
import type { Config } from "./config.ts";
import { ApiError } from "./http.ts";

/** Claims of a signed-in user, as Supabase Auth issues them. */
export interface UserClaims extends jose.JWTPayload {
  sub: string;
  role: "authenticated";
  email?: string;
}

/** Verifies a bearer token; throws `ApiError(401)` for anything but a valid user token. */
export type TokenVerifier = (token: string) => Promise<UserClaims>;

const ASYMMETRIC_ALGS = ["ES256", "RS256", "EdDSA"];
/** Clock difference tolerated between Supabase Auth and this function, in seconds. */
export const CLOCK_SKEW_SECONDS = 60;

function unauthorized(code: string, message: string): ApiError {
  return new ApiError(401, code, message, undefined, { "www-authenticate": "Bearer" });
}

/** Verified tokens kept per function instance (each about 1 KiB). */
export const TOKEN_CACHE_ENTRIES = 1000;

/**
 * A verifier that remembers tokens it verified until they expire, so an agent's burst of
 * calls pays for one signature check (an ES256 verify is most of a small request's CPU).
 * Bounded (oldest out first); a failure is never remembered. A session revoked before its
 * token expires stays usable here until then, exactly as with any stateless JWT check: that
 * is Supabase Auth's contract (short-lived access tokens), not something a function can see.
 *
 * @example
 * ```ts
 * const verify = cachedVerifier(createTokenVerifier(config.jwt));
 * ```
 */
export function cachedVerifier(verify: TokenVerifier, entries = TOKEN_CACHE_ENTRIES): TokenVerifier {
  const cache = new Map<string, UserClaims>();
  return async (token) => {
    const hit = cache.get(token);
    if (hit && typeof hit.exp === "number" && hit.exp > Date.now() / 1000) return hit;
    cache.delete(token);
    const claims = await verify(token);
    if (cache.size >= entries) cache.delete(cache.keys().next().value!);
    cache.set(token, claims);
    return claims;
  };
}

/**
 * Create a verifier for the project's tokens.
 *
 * @example
 * ```ts
 * const verify = createTokenVerifier(config.jwt);
 * const claims = await verify(bearerToken(req));
 * ```
 */
export function createTokenVerifier(jwt: Config["jwt"]): TokenVerifier {
  const keySet = jwt.jwks
    ? jose.createLocalJWKSet(jwt.jwks as jose.JSONWebKeySet)
    : jose.createRemoteJWKSet(new URL(jwt.jwksUrl), { cooldownDuration: 30_000 });
  const secret = jwt.secret ? new TextEncoder().encode(jwt.secret) : undefined;
  const options = { issuer: jwt.issuer, audience: "authenticated", requiredClaims: ["exp", "sub"] };

  return async (token) => {
    let alg: string | undefined;
    try {
      alg = jose.decodeProtectedHeader(token).alg;
    } catch {
      throw unauthorized("invalid_token", "Bearer token is not a JWT");
    }

    let payload: jose.JWTPayload;
    try {
      if (alg === "HS256" && secret) {
        ({ payload } = await jose.jwtVerify(token, secret, { ...options, algorithms: ["HS256"] }));
      } else if (alg && ASYMMETRIC_ALGS.includes(alg)) {
        ({ payload } = await jose.jwtVerify(token, keySet, { ...options, algorithms: ASYMMETRIC_ALGS }));
      } else {
        throw unauthorized("invalid_token", `Tokens signed with ${alg ?? "no algorithm"} are not accepted`);
      }
    } catch (error) {
      if (error instanceof ApiError) throw error;
      if (error instanceof jose.errors.JWTExpired) throw unauthorized("token_expired", "Token has expired");
      const keysUnreachable = error instanceof jose.errors.JWKSTimeout || !(error instanceof jose.errors.JOSEError);
      if (keysUnreachable) {
        // The key set could not be fetched (or parsed): our problem, not the caller's token.
        throw new ApiError(503, "auth_unavailable", "The signing keys could not be fetched; retry shortly", undefined, {
          "retry-after": "5",
        });
      }
      throw unauthorized("invalid_token", "Token could not be verified");
    }

    // jose checks iat only for a maximum token age; a token "issued" in the future is a forged
    // or mis-minted one whatever its expiry says.
    if (typeof payload.iat === "number" && payload.iat > Date.now() / 1000 + CLOCK_SKEW_SECONDS) {
      throw unauthorized("invalid_token", "Token is issued in the future");
    }
    if (payload.role !== "authenticated") {
      throw unauthorized("invalid_token", "Token is not a signed-in user's token");
    }
    if (typeof payload.sub !== "string" || !/^[0-9a-f-]{36}$/i.test(payload.sub)) {
      throw unauthorized("invalid_token", "Token has no valid subject");
    }
    if (payload.is_anonymous === true && !jwt.allowAnonymousUsers) {
      throw new ApiError(403, "anonymous_user_not_allowed", "Anonymous sign-ins cannot send email; sign in properly");
    }
    return payload as UserClaims;
  };
}

/** The bearer token of a request, or 401 `missing_token`. */
export function bearerToken(req: Request): string {
  const header = req.headers.get("authorization") ?? "";
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (!match) throw unauthorized("missing_token", "Send the user's JWT as Authorization: Bearer <token>");
  return match[1];
}
