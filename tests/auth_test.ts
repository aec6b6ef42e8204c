import assert from "node:assert/strict";
import * as jose from "jose";
import { bearerToken, cachedVerifier, createTokenVerifier } from "../supabase/functions/_shared/auth.ts";
import { ApiError } from "../supabase/functions/_shared/http.ts";
import { generateSigningKey, jwks, mintToken } from "../local/jwt.ts";

const issuer = "http://127.0.0.1:54321/auth/v1";
const legacySecret = "super-secret-jwt-token-with-at-least-32-characters";
const sub = "6f1c2b9e-3a4d-4e5f-8a7b-1c2d3e4f5a6b";

async function rejectsWith(promise: Promise<unknown>, code: string, reason?: string): Promise<ApiError> {
  let refused: ApiError | undefined;
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof ApiError, `expected ApiError, got ${error}`);
    assert.equal(error.status, 401);
    assert.equal(error.code, code);
    if (reason !== undefined) assert.equal(error.details?.reason, reason);
    refused = error;
    return true;
  });
  return refused!;
}

function hs256(claims: Record<string, unknown>, secret: string, exp: string | number = "1h") {
  return new jose.SignJWT(claims).setProtectedHeader({ alg: "HS256" }).setIssuer(issuer)
    .setIssuedAt().setExpirationTime(exp).sign(new TextEncoder().encode(secret));
}

Deno.test("token verification", async (t) => {
  const key = await generateSigningKey();
  const otherKey = await generateSigningKey();
  const verify = createTokenVerifier({ jwks: jwks(key), jwksUrl: "unused", issuer, secret: legacySecret });
  const verifyWithoutSecret = createTokenVerifier({ jwks: jwks(key), jwksUrl: "unused", issuer });

  await t.step("accepts an ES256 user token signed by a key in the JWKS", async () => {
    const claims = await verify(await mintToken(key, { issuer, sub, email: "a@example.com" }));
    assert.equal(claims.sub, sub);
    assert.equal(claims.role, "authenticated");
  });

  await t.step("accepts an HS256 token signed with the legacy secret", async () => {
    const token = await hs256({ sub, role: "authenticated", aud: "authenticated" }, legacySecret);
    assert.equal((await verify(token)).sub, sub);
  });

  await t.step("rejects HS256 tokens when no legacy secret is configured", async () => {
    const token = await hs256({ sub, role: "authenticated", aud: "authenticated" }, legacySecret);
    await rejectsWith(verifyWithoutSecret(token), "invalid_token");
  });

  await t.step("rejects an HS256 token keyed with the public key (algorithm confusion)", async () => {
    const token = await hs256({ sub, role: "authenticated", aud: "authenticated" }, JSON.stringify(key.publicJwk));
    await rejectsWith(verify(token), "invalid_token");
    await rejectsWith(verifyWithoutSecret(token), "invalid_token");
  });

  await t.step("rejects an unsigned token (alg none)", async () => {
    const enc = (v: unknown) => jose.base64url.encode(JSON.stringify(v));
    const now = Math.floor(Date.now() / 1000);
    const token = `${enc({ alg: "none", typ: "JWT" })}.${
      enc({ sub, role: "authenticated", aud: "authenticated", iss: issuer, exp: now + 600 })
    }.`;
    await rejectsWith(verify(token), "invalid_token");
  });

  await t.step(
    "rejects a token signed by a key outside the JWKS, saying the keys changed and how to get a new one",
    async () => {
      const error = await rejectsWith(
        verify(await mintToken(otherKey, { issuer, sub })),
        "invalid_token",
        "signing_key_unknown",
      );
      assert.match(error.message, new RegExp(`kid "${otherKey.privateJwk.kid}"`));
      assert.match(error.message, /signing keys changed/);
      assert.match(error.message, /\.local` was reset/);
      assert.match(error.message, /npm run token/);
    },
  );

  await t.step("a token with a known kid but a bad signature is not called a key change", async () => {
    const token = await mintToken(key, { issuer, sub });
    const forged = await mintToken(otherKey, { issuer, sub: "00000000-0000-4000-8000-000000000000" });
    const spliced = `${token.split(".").slice(0, 2).join(".")}.${forged.split(".")[2]}`;
    await rejectsWith(verify(spliced), "invalid_token", "signature_or_claims");
  });

  await t.step("rejects an expired token with token_expired", async () => {
    const token = await mintToken(key, { issuer, sub, expiresIn: Math.floor(Date.now() / 1000) - 60 });
    await rejectsWith(verify(token), "token_expired");
  });

  await t.step("rejects a token from another issuer", async () => {
    await rejectsWith(verify(await mintToken(key, { issuer: "https://evil.example/auth/v1", sub })), "invalid_token");
  });

  await t.step("rejects the anon key and service-role tokens", async () => {
    await rejectsWith(verify(await mintToken(key, { issuer, role: "anon" })), "invalid_token");
    await rejectsWith(verify(await mintToken(key, { issuer, role: "service_role", sub })), "invalid_token");
  });

  await t.step("names the anon (publishable) key as such and says how to get a user's token", async () => {
    const signedHere = await rejectsWith(
      verify(await mintToken(key, { issuer, role: "anon" })),
      "invalid_token",
      "anon_key",
    );
    // A hosted project's legacy anon key is HS256 with the project's secret, which this verifier may not hold.
    const legacy = await hs256({ role: "anon", iss: "supabase" }, "a-secret-this-verifier-does-not-know-at-all");
    const hosted = await rejectsWith(verifyWithoutSecret(legacy), "invalid_token", "anon_key");
    const publishable = await rejectsWith(verify("sb_publishable_abc123"), "invalid_token", "anon_key");
    for (const error of [signedHere, hosted, publishable]) {
      assert.match(error.message, /not a signed-in user's token/);
      assert.match(error.message, /signInWithPassword/);
      assert.match(error.message, /npm run token/);
    }
    assert.match(publishable.message, /publishable key/);
  });

  await t.step("names a secret key sent as a bearer token", async () => {
    await rejectsWith(
      verify(await mintToken(key, { issuer, role: "service_role", sub })),
      "invalid_token",
      "secret_key",
    );
    await rejectsWith(verify("sb_secret_abc123"), "invalid_token", "secret_key");
  });

  await t.step("rejects a user token without a subject", async () => {
    await rejectsWith(verify(await mintToken(key, { issuer })), "invalid_token", "no_subject");
  });

  await t.step("rejects a token for another audience", async () => {
    const token = await mintToken(key, { issuer, sub, extra: { aud: "somebody-else" } });
    await rejectsWith(verify(token), "invalid_token");
  });

  await t.step("rejects a token issued in the future, beyond a small clock skew", async () => {
    const now = Math.floor(Date.now() / 1000);
    const future = await mintToken(key, { issuer, sub, issuedAt: now + 3600, expiresIn: now + 7200 });
    await rejectsWith(verify(future), "invalid_token");
    const skewed = await mintToken(key, { issuer, sub, issuedAt: now + 20, expiresIn: now + 3600 });
    assert.equal((await verify(skewed)).sub, sub, "a few seconds of skew are tolerated");
  });

  await t.step("rejects garbage", async () => {
    await rejectsWith(verify("not-a-jwt"), "invalid_token", "not_a_jwt");
  });

  await t.step("refuses anonymous sign-ins unless the deployment allows them", async () => {
    const token = await mintToken(key, { issuer, sub, extra: { is_anonymous: true } });
    await assert.rejects(
      verify(token),
      (e: unknown) => e instanceof ApiError && e.status === 403 && e.code === "anonymous_user_not_allowed",
    );
    const allowing = createTokenVerifier({ jwks: jwks(key), jwksUrl: "unused", issuer, allowAnonymousUsers: true });
    assert.equal((await allowing(token)).sub, sub);
  });

  await t.step("answers 503 auth_unavailable when the JWKS cannot be fetched", async () => {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (listener.addr as Deno.NetAddr).port;
    listener.close();
    const unreachable = createTokenVerifier({ jwksUrl: `http://127.0.0.1:${port}/jwks.json`, issuer });
    const token = await mintToken(key, { issuer, sub });
    await assert.rejects(
      unreachable(token),
      (e: unknown) => e instanceof ApiError && e.status === 503 && e.code === "auth_unavailable",
    );
  });
});

Deno.test("bearerToken reads the Authorization header", async (t) => {
  await t.step("returns the token", () => {
    const req = new Request("http://x", { headers: { authorization: "Bearer abc.def.ghi" } });
    assert.equal(bearerToken(req), "abc.def.ghi");
  });
  await t.step("throws 401 missing_token without a bearer header", () => {
    for (const value of [undefined, "Basic dXNlcjpwYXNz", "Bearer", "Bearer a b"]) {
      const req = new Request("http://x", { headers: value ? { authorization: value } : {} });
      assert.throws(() => bearerToken(req), (e: unknown) => e instanceof ApiError && e.code === "missing_token");
    }
  });
});

Deno.test("verified tokens are remembered until they expire, failures never", async () => {
  const key = await generateSigningKey();
  let checks = 0;
  const inner = createTokenVerifier({ jwks: jwks(key), jwksUrl: "unused", issuer });
  const verify = cachedVerifier((token) => {
    checks++;
    return inner(token);
  }, 2);
  const token = await mintToken(key, { issuer, sub });
  assert.equal((await verify(token)).sub, sub);
  assert.equal((await verify(token)).sub, sub);
  assert.equal(checks, 1, "the second call is served from the cache");

  // Expiring in 2 s: served until then, checked (and refused) after.
  const shortLived = await mintToken(key, { issuer, sub, expiresIn: "2s" });
  await verify(shortLived);
  await new Promise((r) => setTimeout(r, 2100));
  await rejectsWith(verify(shortLived), "token_expired");

  // A bad token is checked every time.
  const before = checks;
  await rejectsWith(verify("not-a-token"), "invalid_token");
  await rejectsWith(verify("not-a-token"), "invalid_token");
  assert.equal(checks, before + 2);

  // Bounded: the oldest goes first.
  const a = await mintToken(key, { issuer, sub, email: "a@example.com" });
  const b = await mintToken(key, { issuer, sub, email: "b@example.com" });
  await verify(a);
  await verify(b);
  const count = checks;
  await verify(token);
  assert.equal(checks, count + 1, "evicted tokens are verified again");
});
