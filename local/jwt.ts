// The local stack's stand-in for Supabase Auth's signing keys: one ES256 key pair kept
// on disk, its public half served as a JWKS, and tokens minted the way Auth mints them.
import * as jose from "jose";
import { existsSync } from "node:fs";

/** The local signing key: private JWK with a kid. */
export interface SigningKey {
  privateJwk: jose.JWK;
  publicJwk: jose.JWK;
  key: CryptoKey;
}

async function fromPrivateJwk(privateJwk: jose.JWK): Promise<SigningKey> {
  const { d: _d, ...publicJwk } = privateJwk;
  const key = await jose.importJWK(privateJwk, "ES256") as CryptoKey;
  return { privateJwk, publicJwk: { ...publicJwk, key_ops: ["verify"] }, key };
}

/** A fresh ES256 signing key. */
export async function generateSigningKey(): Promise<SigningKey> {
  const { privateKey } = await jose.generateKeyPair("ES256", { extractable: true });
  const privateJwk = { ...await jose.exportJWK(privateKey), alg: "ES256", use: "sig", kid: crypto.randomUUID() };
  return fromPrivateJwk(privateJwk);
}

/** Load the key stored at `path`, creating it on first use. */
export async function loadOrCreateSigningKey(path: string): Promise<SigningKey> {
  if (existsSync(path)) return fromPrivateJwk(JSON.parse(Deno.readTextFileSync(path)));
  const signingKey = await generateSigningKey();
  Deno.mkdirSync(path.replace(/\/[^/]+$/, ""), { recursive: true });
  Deno.writeTextFileSync(path, JSON.stringify(signingKey.privateJwk), { mode: 0o600 });
  return signingKey;
}

/** The JWKS document served at /auth/v1/.well-known/jwks.json. */
export function jwks(signingKey: SigningKey): { keys: jose.JWK[] } {
  return { keys: [signingKey.publicJwk] };
}

/** Claims and lifetime of a token to mint. */
export interface MintOptions {
  issuer: string;
  sub?: string;
  email?: string;
  role?: "authenticated" | "anon" | "service_role";
  expiresIn?: string | number;
  /** `iat` in seconds since the epoch; now when absent. */
  issuedAt?: number;
  /**
   * Mint the token Supabase Auth's OAuth 2.1 server issues to this OAuth client (an MCP client,
   * a third-party app: to mailroom, an agent) instead of a first-party session's.
   */
  clientId?: string;
  extra?: Record<string, unknown>;
}

/** The scope Supabase Auth grants an OAuth client that asks for none (its `default_scope`). */
export const OAUTH_DEFAULT_SCOPE = "email";

/**
 * What Supabase Auth adds to an access token it issues to an OAuth client: the client's id, the
 * granted scope, the session the authorization code opened and how it was opened (supabase/auth
 * `internal/tokens/service.go`, `GenerateAccessToken`; the method is `oauth_provider/authorization_code`).
 *
 * @example
 * ```ts
 * oauthClientClaims("local-agent", 1_765_000_000).client_id; // "local-agent"
 * ```
 */
export function oauthClientClaims(clientId: string, issuedAt: number): Record<string, unknown> {
  return {
    client_id: clientId,
    scope: OAUTH_DEFAULT_SCOPE,
    session_id: crypto.randomUUID(),
    amr: [{ method: "oauth_provider/authorization_code", timestamp: issuedAt }],
  };
}

/** Mint a token shaped like Supabase Auth's access tokens (an OAuth client's with `clientId`). */
export function mintToken(signingKey: SigningKey, options: MintOptions): Promise<string> {
  const role = options.role ?? "authenticated";
  const issuedAt = options.issuedAt ?? Math.floor(Date.now() / 1000);
  const claims: Record<string, unknown> = {
    role,
    ...(role === "authenticated" ? { aud: "authenticated", email: options.email, aal: "aal1" } : {}),
    ...(options.clientId === undefined ? {} : oauthClientClaims(options.clientId, issuedAt)),
    ...options.extra,
  };
  const jwt = new jose.SignJWT(claims)
    .setProtectedHeader({ alg: "ES256", kid: signingKey.privateJwk.kid, typ: "JWT" })
    .setIssuer(options.issuer)
    .setIssuedAt(issuedAt)
    .setExpirationTime(options.expiresIn ?? "1h");
  if (options.sub) jwt.setSubject(options.sub);
  return jwt.sign(signingKey.key);
}
