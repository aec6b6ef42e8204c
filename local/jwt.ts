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
  extra?: Record<string, unknown>;
}

/** Mint a token shaped like Supabase Auth's access tokens. */
export function mintToken(signingKey: SigningKey, options: MintOptions): Promise<string> {
  const role = options.role ?? "authenticated";
  const claims: Record<string, unknown> = {
    role,
    ...(role === "authenticated" ? { aud: "authenticated", email: options.email, aal: "aal1" } : {}),
    ...options.extra,
  };
  const jwt = new jose.SignJWT(claims)
    .setProtectedHeader({ alg: "ES256", kid: signingKey.privateJwk.kid, typ: "JWT" })
    .setIssuer(options.issuer)
    .setIssuedAt(options.issuedAt)
    .setExpirationTime(options.expiresIn ?? "1h");
  if (options.sub) jwt.setSubject(options.sub);
  return jwt.sign(signingKey.key);
}
