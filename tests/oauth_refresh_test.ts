// The refresh-token grant and the per-instance token cache, against the local stand-in of a
// provider's token endpoint over real HTTP (Google and Microsoft cannot run here; the stand-in
// answers as RFC 6749 and their docs say, and is named as such in local/oauth_standin.ts).
import assert from "node:assert/strict";
import { startOAuthStandin } from "../local/oauth_standin.ts";
import { AccessTokenCache, OAuthError, refreshAccessToken } from "../supabase/functions/_shared/oauth/mod.ts";

const CLIENT = { clientId: "client-1", clientSecret: "client-secret-value" };
const RT = "refresh-token-secret-1";

async function refused(promise: Promise<unknown>): Promise<OAuthError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof OAuthError, String(error));
    return error;
  }
  assert.fail("expected an OAuthError");
}

Deno.test("refresh-token grant against a token endpoint over HTTP", async (t) => {
  const standin = await startOAuthStandin({ tokenLifetimeSeconds: 3600 });
  const request = (refreshToken = RT) => ({ tokenUrl: standin.tokenUrl, ...CLIENT, refreshToken });
  const opts = { allowHttp: true };
  try {
    standin.addGrant({ ...CLIENT, refreshToken: RT, scopes: ["https://mail.google.com/"], mailbox: "a@example.com" });

    await t.step("gives an access token and when it expires", async () => {
      const before = Date.now();
      const token = await refreshAccessToken(request(), opts);
      assert.match(token.accessToken, /^standin-at-/);
      assert.ok(token.expiresAt >= before + 3_599_000 && token.expiresAt <= Date.now() + 3_600_000);
      assert.equal(token.rotatedRefreshToken, undefined);
    });

    await t.step("the cache refreshes once for eight concurrent sends, then reuses the token", async () => {
      const cache = new AccessTokenCache();
      const before = standin.counts.token;
      const tokens = await Promise.all(
        Array.from({ length: 8 }, () => cache.get("config-1:v1", () => refreshAccessToken(request(), opts))),
      );
      assert.equal(new Set(tokens).size, 1);
      assert.equal(await cache.get("config-1:v1", () => refreshAccessToken(request(), opts)), tokens[0]);
      assert.equal(standin.counts.token - before, 1);
    });

    await t.step("a token about to expire is refreshed; one the provider refused is dropped", async () => {
      let clock = Date.now();
      const cache = new AccessTokenCache(() => clock);
      const refresh = () => refreshAccessToken(request(), { ...opts, now: () => clock });
      const first = await cache.get("k", refresh);
      clock += 3_600_000 - 59_000; // inside the last minute
      const second = await cache.get("k", refresh);
      assert.notEqual(second, first);
      cache.invalidate("k", first); // a stale refusal does not drop the newer token
      assert.equal(await cache.get("k", refresh), second);
      cache.invalidate("k", second);
      assert.notEqual(await cache.get("k", refresh), second);
    });

    await t.step("a rotated refresh token is returned, and the old one is refused from then on", async () => {
      standin.addGrant({
        ...CLIENT,
        refreshToken: "rotating-1",
        scopes: ["s"],
        mailbox: "b@example.com",
        rotate: true,
      });
      const token = await refreshAccessToken(request("rotating-1"), opts);
      assert.match(token.rotatedRefreshToken ?? "", /^standin-rt-/);
      const again = await refreshAccessToken(request(token.rotatedRefreshToken!), opts);
      assert.ok(again.rotatedRefreshToken && again.rotatedRefreshToken !== token.rotatedRefreshToken);
      const old = await refused(refreshAccessToken(request("rotating-1"), opts));
      assert.equal(old.code, "oauth_reauth_required");
    });

    await t.step("a revoked grant needs the user: oauth_reauth_required, not retryable, no secret in it", async () => {
      standin.addGrant({ ...CLIENT, refreshToken: "to-revoke-secret", scopes: ["s"], mailbox: "c@example.com" });
      standin.revoke("to-revoke-secret");
      const error = await refused(refreshAccessToken(request("to-revoke-secret"), opts));
      assert.equal(error.code, "oauth_reauth_required");
      assert.equal(error.retryable, false);
      assert.equal(error.providerError, "invalid_grant");
      assert.match(error.message, /connect the mailbox again/);
      for (const secret of ["to-revoke-secret", CLIENT.clientSecret]) assert.ok(!error.message.includes(secret));
    });

    await t.step("a wrong client secret and a missing scope have their own codes", async () => {
      const client = await refused(refreshAccessToken({ ...request(), clientSecret: "wrong-secret-value" }, opts));
      assert.equal(client.code, "oauth_client_rejected");
      assert.ok(!client.message.includes("wrong-secret-value"));
      const scope = await refused(
        refreshAccessToken({ ...request(), scopes: ["https://graph.microsoft.com/Mail.Send"] }, opts),
      );
      assert.equal(scope.code, "oauth_scope_missing");
      assert.equal(scope.retryable, false);
    });

    await t.step("a throttled or failing endpoint is retryable, with its Retry-After", async () => {
      standin.script({ endpoint: "token", status: 429, retryAfter: "30" });
      const throttled = await refused(refreshAccessToken(request(), opts));
      assert.deepEqual([throttled.code, throttled.retryable, throttled.retryAfterSeconds], [
        "oauth_token_refresh_failed",
        true,
        30,
      ]);
      standin.setDown(true);
      const down = await refused(refreshAccessToken(request(), opts));
      standin.setDown(false);
      assert.deepEqual([down.code, down.retryable], ["oauth_token_refresh_failed", true]);
    });

    await t.step("an error the owner cannot act on (temporarily_unavailable) is retryable, never a pause", async () => {
      standin.script({ endpoint: "token", status: 400, body: { error: "temporarily_unavailable" } });
      const error = await refused(refreshAccessToken(request(), opts));
      assert.deepEqual([error.code, error.retryable, error.providerError], [
        "oauth_token_refresh_failed",
        true,
        "temporarily_unavailable",
      ]);
    });

    await t.step("a slow endpoint times out as retryable", async () => {
      standin.script({ endpoint: "token", delayMs: 1_500 });
      const slow = await refused(refreshAccessToken(request(), { ...opts, timeoutMs: 200 }));
      assert.deepEqual([slow.code, slow.retryable], ["oauth_token_refresh_failed", true]);
      assert.match(slow.message, /did not answer in time/);
    });

    await t.step("plain http is refused unless allowed: nothing reaches the endpoint", async () => {
      const before = standin.counts.token;
      const error = await refused(refreshAccessToken(request()));
      assert.equal(error.code, "oauth_token_refresh_failed");
      assert.equal(standin.counts.token, before);
    });
  } finally {
    await standin.close();
  }
});
