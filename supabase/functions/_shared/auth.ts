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

function unauthorized(code: string, message: string, reason?: TokenRefusal): ApiError {
  return new ApiError(401, code, message, reason ? { reason } : undefined, { "www-authenticate": "Bearer" });
}

/**
 * Why a token was refused as `invalid_token`, in `details.reason` (the code stays
 * `invalid_token` for all of them, so clients that branch on it keep working).
 */
export type TokenRefusal =
  | "anon_key"
  | "secret_key"
  | "signing_key_unknown"
  | "not_a_jwt"
  | "algorithm_not_accepted"
  | "signature_or_claims"
  | "issued_in_future"
  | "not_user_token"
  | "no_subject";

/** What to do about a missing or unusable user token, said once for every message below. */
const GET_A_USER_TOKEN = "send a signed-in user's access token: sign in with supabase-js " +
  "(supabase.auth.signInWithPassword, then supabase.functions.invoke sends the session's token), " +
  "or on the local stack run `npm run token`";

/**
 * Refusals for API keys sent where a user's token belongs, decided before any signature check
 * (they are refused whether or not the signature holds): supabase-js sends the project's anon
 * (publishable) key as the bearer token when nobody is signed in.
 */
function apiKeyRefusal(token: string): ApiError | null {
  if (token.startsWith("sb_publishable_")) return anonKey("publishable");
  if (token.startsWith("sb_secret_")) return secretKey();
  let role: unknown;
  try {
    role = jose.decodeJwt(token).role;
  } catch {
    return null;
  }
  if (role === "anon") return anonKey("anon");
  if (role === "service_role") return secretKey();
  return null;
}

function anonKey(kind: "anon" | "publishable"): ApiError {
  return unauthorized(
    "invalid_token",
    `This is the project's ${kind} key, not a signed-in user's token (supabase-js sends it when no one is ` +
      `signed in): ${GET_A_USER_TOKEN}`,
    "anon_key",
  );
}

function secretKey(): ApiError {
  return unauthorized(
    "invalid_token",
    "This is a server-side secret (service_role or sb_secret_) key, not a user's token, and must not leave the " +
      `server; mail is sent as a user: ${GET_A_USER_TOKEN}`,
    "secret_key",
  );
}

function noSubject(): ApiError {
  return unauthorized("invalid_token", `Token has no valid subject (a user id); ${GET_A_USER_TOKEN}`, "no_subject");
}

function unknownSigningKey(kid: string | undefined): ApiError {
  return unauthorized(
    "invalid_token",
    `Token was signed by a key this project does not have${kid ? ` (kid ${JSON.stringify(kid)})` : ""}: the ` +
      "signing keys changed since it was issued (locally: `.local` was reset, or the token is from another " +
      `stack). Get a new one: ${GET_A_USER_TOKEN}`,
    "signing_key_unknown",
  );
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
    const refusal = apiKeyRefusal(token);
    if (refusal) throw refusal;
    let alg: string | undefined;
    let kid: string | undefined;
    try {
      ({ alg, kid } = jose.decodeProtectedHeader(token));
    } catch {
      throw unauthorized("invalid_token", `Bearer token is not a JWT; ${GET_A_USER_TOKEN}`, "not_a_jwt");
    }

    let payload: jose.JWTPayload;
    try {
      if (alg === "HS256" && secret) {
        ({ payload } = await jose.jwtVerify(token, secret, { ...options, algorithms: ["HS256"] }));
      } else if (alg && ASYMMETRIC_ALGS.includes(alg)) {
        ({ payload } = await jose.jwtVerify(token, keySet, { ...options, algorithms: ASYMMETRIC_ALGS }));
      } else {
        throw unauthorized(
          "invalid_token",
          `Tokens signed with ${alg ?? "no algorithm"} are not accepted`,
          "algorithm_not_accepted",
        );
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
      if (error instanceof jose.errors.JWKSNoMatchingKey) throw unknownSigningKey(kid);
      if (error instanceof jose.errors.JWTClaimValidationFailed && error.claim === "sub") throw noSubject();
      throw unauthorized(
        "invalid_token",
        "Token could not be verified (signature, issuer or audience do not match this project)",
        "signature_or_claims",
      );
    }

    // jose checks iat only for a maximum token age; a token "issued" in the future is a forged
    // or mis-minted one whatever its expiry says.
    if (typeof payload.iat === "number" && payload.iat > Date.now() / 1000 + CLOCK_SKEW_SECONDS) {
      throw unauthorized("invalid_token", "Token is issued in the future", "issued_in_future");
    }
    if (payload.role !== "authenticated") {
      throw unauthorized(
        "invalid_token",
        `Token is not a signed-in user's token; ${GET_A_USER_TOKEN}`,
        "not_user_token",
      );
    }
    if (typeof payload.sub !== "string" || !/^[0-9a-f-]{36}$/i.test(payload.sub)) {
      throw noSubject();
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
  if (!match) {
    throw unauthorized("missing_token", `Send the user's JWT as Authorization: Bearer <token>; ${GET_A_USER_TOKEN}`);
  }
  return match[1];
}
