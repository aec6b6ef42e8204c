// A custom OAuth provider's token endpoint is a URL the user wrote: checked by the egress policy
// SMTP hosts pass (tested without network, with a scripted resolver), then reached only at the
// address that was checked, over verified TLS, without following redirects, within a size and a
// time limit, and quoted no further than its OAuth error code. The network steps run against the
// local stand-in of a token endpoint (local/oauth_standin.ts) served over HTTPS on loopback.
import assert from "node:assert/strict";
import { generateCertificates } from "../local/certs.ts";
import { startOAuthStandin } from "../local/oauth_standin.ts";
import { ApiError } from "../supabase/functions/_shared/http.ts";
import {
  egressCheckedFetch,
  MAX_TOKEN_RESPONSE_BYTES,
  OAuthError,
  refreshAccessToken,
} from "../supabase/functions/_shared/oauth/mod.ts";
import {
  checkTokenUrlStatically,
  loadEgressPolicy,
  type Resolver,
  resolveTokenUrl,
} from "../supabase/functions/_shared/smtp/egress.ts";

function refusal(fn: () => unknown): ApiError {
  try {
    fn();
  } catch (error) {
    if (error instanceof ApiError) return error;
    throw error;
  }
  throw new Error("not refused");
}

async function refusedAsync(promise: Promise<unknown>): Promise<ApiError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof ApiError) return error;
    throw error;
  }
  throw new Error("not refused");
}

async function refused(promise: Promise<unknown>): Promise<OAuthError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof OAuthError, String(error));
    return error;
  }
  assert.fail("expected an OAuthError");
}

/** Scripted DNS: each name's answers in turn (the last one repeats), and how often it was asked. */
function scriptedResolver(answers: Record<string, string[][]>): Resolver & { asked: Record<string, number> } {
  const asked: Record<string, number> = {};
  const resolve = (host: string) => {
    const turns = answers[host];
    if (!turns) return Promise.reject(Object.assign(new Error("ENOTFOUND"), { code: "ENOTFOUND" }));
    const turn = asked[host] = (asked[host] ?? 0) + 1;
    return Promise.resolve(turns[Math.min(turn, turns.length) - 1]);
  };
  return Object.assign(resolve, { asked });
}

Deno.test("token endpoint URLs follow the egress policy of SMTP hosts", async (t) => {
  const policy = loadEgressPolicy({});

  await t.step("refuses what is not a plain https URL, and every spelling of a non-public address", () => {
    const cases: [string, string][] = [
      ["http://idp.example.com/token", "oauth_token_url_invalid"],
      ["https://user:pw@idp.example.com/token", "oauth_token_url_invalid"],
      ["https://idp.example.com/token#top", "oauth_token_url_invalid"],
      ["https://intranet/token", "oauth_token_url_invalid"],
      ["https://127.0.0.1/token", "oauth_token_url_forbidden"],
      ["https://2130706433/token", "oauth_token_url_forbidden"],
      ["https://0x7f.1/token", "oauth_token_url_forbidden"],
      ["https://[::1]/token", "oauth_token_url_forbidden"],
      ["https://[::ffff:10.0.0.1]/token", "oauth_token_url_forbidden"],
      ["https://169.254.169.254/latest/meta-data/iam", "oauth_token_url_forbidden"],
      ["https://10.0.0.5/token", "oauth_token_url_forbidden"],
      ["https://100.64.0.1/token", "oauth_token_url_forbidden"],
      ["https://0.0.0.0/token", "oauth_token_url_forbidden"],
      ["https://metadata.google.internal/computeMetadata", "oauth_token_url_forbidden"],
      ["https://idp.localhost/token", "oauth_token_url_forbidden"],
      ["https://idp.example.com:8443/token", "oauth_token_url_port_not_allowed"],
      ["https://idp.example.com:25/token", "oauth_token_url_port_not_allowed"],
    ];
    for (const [url, code] of cases) {
      assert.equal(refusal(() => checkTokenUrlStatically(policy, url)).code, code, url);
    }
  });

  await t.step("allows a public https endpoint on 443, by name or by address", () => {
    for (
      const url of [
        "https://idp.example.com/oauth2/token",
        "https://IDP.example.com:443/t?tenant=a",
        "https://93.184.215.14/token",
      ]
    ) {
      assert.doesNotThrow(() => checkTokenUrlStatically(policy, url), url);
    }
  });

  await t.step("refusals say which setting would allow it, as an SMTP host's do", () => {
    const loopback = refusal(() => checkTokenUrlStatically(policy, "https://127.0.0.1/token"));
    assert.equal(loopback.status, 422);
    assert.match(loopback.message, /^Token endpoint host "127\.0\.0\.1" is not allowed: loopback address/);
    assert.match(loopback.message, /MAILROOM_EGRESS_ALLOWLIST=127\.0\.0\.1:443/);
    assert.equal(loopback.details?.setting, "MAILROOM_EGRESS_ALLOWLIST");
    const port = refusal(() => checkTokenUrlStatically(policy, "https://idp.example.com:8443/token"));
    assert.equal(port.status, 422);
    assert.match(port.message, /MAILROOM_OAUTH_ALLOWED_PORTS=8443/);
    assert.match(port.message, /MAILROOM_EGRESS_ALLOWLIST=idp\.example\.com:8443/);
    const bare = refusal(() => checkTokenUrlStatically(policy, "https://intranet/token"));
    assert.equal(bare.status, 400);
  });

  await t.step("the deployment's settings loosen it, and the platform's blocked ports stay blocked", () => {
    const ports = loadEgressPolicy({ MAILROOM_OAUTH_ALLOWED_PORTS: "8443" });
    assert.doesNotThrow(() => checkTokenUrlStatically(ports, "https://idp.example.com:8443/token"));
    const listed = loadEgressPolicy({ MAILROOM_EGRESS_ALLOWLIST: "localhost:9443" });
    assert.doesNotThrow(() => checkTokenUrlStatically(listed, "https://localhost:9443/token"));
    assert.equal(
      refusal(() => checkTokenUrlStatically(listed, "https://localhost:9444/token")).code,
      "oauth_token_url_invalid",
    );
    // SMTP's own settings do not open token endpoints.
    const smtpPorts = loadEgressPolicy({ MAILROOM_SMTP_ALLOWED_PORTS: "8443" });
    assert.equal(
      refusal(() => checkTokenUrlStatically(smtpPorts, "https://idp.example.com:8443/token")).code,
      "oauth_token_url_port_not_allowed",
    );
    // A host allowlisted without a port (an SMTP server on the deployment's network) exempts its
    // address, not every port of it, and never a port the platform blocks.
    const hostOnly = loadEgressPolicy({
      MAILROOM_EGRESS_ALLOWLIST: "mailpit.corp.internal",
      MAILROOM_PLATFORM_BLOCKED_PORTS: "25,587",
    });
    assert.doesNotThrow(() => checkTokenUrlStatically(hostOnly, "https://mailpit.corp.internal/token"));
    for (const port of [8443, 6443, 25]) {
      assert.equal(
        refusal(() => checkTokenUrlStatically(hostOnly, `https://mailpit.corp.internal:${port}/admin`)).code,
        "oauth_token_url_port_not_allowed",
        String(port),
      );
    }
    const blockedNamed = loadEgressPolicy({
      MAILROOM_EGRESS_ALLOWLIST: "mailpit.corp.internal:25",
      MAILROOM_PLATFORM_BLOCKED_PORTS: "25,587",
    });
    assert.equal(
      refusal(() => checkTokenUrlStatically(blockedNamed, "https://mailpit.corp.internal:25/")).code,
      "oauth_token_url_port_not_allowed",
    );
    const hosted = loadEgressPolicy({ SUPABASE_URL: "https://abc.supabase.co", MAILROOM_OAUTH_ALLOWED_PORTS: "587" });
    assert.equal(
      refusal(() => checkTokenUrlStatically(hosted, "https://idp.example.com:587/token")).code,
      "oauth_token_url_port_not_allowed",
    );
  });

  await t.step("a name is resolved once and every answer must be public", async () => {
    const resolve = scriptedResolver({
      "idp.example.com": [["93.184.215.14"]],
      "private.example.com": [["10.0.0.7"]],
      "mixed.example.com": [["93.184.215.14", "127.0.0.1"]],
      "metadata.example.com": [["169.254.169.254"]],
    });
    const endpoint = await resolveTokenUrl(policy, "https://idp.example.com/oauth2/token", { resolve });
    assert.deepEqual([endpoint.address, endpoint.servername, endpoint.port, endpoint.url.pathname], [
      "93.184.215.14",
      "idp.example.com",
      443,
      "/oauth2/token",
    ]);
    assert.equal(resolve.asked["idp.example.com"], 1);
    for (const host of ["private.example.com", "mixed.example.com", "metadata.example.com"]) {
      const error = await refusedAsync(resolveTokenUrl(policy, `https://${host}/token`, { resolve }));
      assert.equal(error.code, "oauth_token_url_forbidden", host);
      assert.match(error.message, /it resolves to a \w+ address/);
    }
    const missing = await refusedAsync(resolveTokenUrl(policy, "https://nowhere.example.com/token", { resolve }));
    assert.equal(missing.code, "oauth_token_url_not_found");
  });
});

Deno.test({
  name: "refresh through the egress-checked fetch, against an HTTPS token endpoint",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async (t) => {
    const localCerts = await generateCertificates();
    const rebindCerts = await generateCertificates({ names: ["token.rebind.example"] });
    const standin = await startOAuthStandin({ tls: localCerts });
    // The same kind of endpoint with a certificate for a name no real DNS knows.
    const rebound = await startOAuthStandin({ tls: rebindCerts });
    const caCerts = [localCerts.caCert, rebindCerts.caCert].join("\n");
    const port = Number(new URL(standin.url).port);
    const reboundPort = Number(new URL(rebound.url).port);
    const CLIENT = { clientId: "custom-client", clientSecret: "custom-client-secret" };
    const RT = "custom-refresh-secret";
    const grant = { ...CLIENT, refreshToken: RT, scopes: ["mail.send"], mailbox: "a@example.com" };
    standin.addGrant(grant);
    rebound.addGrant(grant);
    const request = (tokenUrl: string) => ({ tokenUrl, ...CLIENT, refreshToken: RT, scopes: ["mail.send"] });
    const localhostOnly = scriptedResolver({ localhost: [["127.0.0.1"]] });
    const listed = loadEgressPolicy({ MAILROOM_EGRESS_ALLOWLIST: `localhost:${port}` });
    const through = (options: Parameters<typeof egressCheckedFetch>[0], timeoutMs?: number) => ({
      fetch: egressCheckedFetch(options),
      userEndpoint: true,
      ...(timeoutMs ? { timeoutMs } : {}),
    });
    const opts = through({ policy: listed, resolve: localhostOnly, caCerts });
    try {
      await t.step("a refresh reaches an allowed endpoint over verified TLS", async () => {
        const token = await refreshAccessToken(request(standin.tokenUrl), opts);
        assert.match(token.accessToken, /^standin-at-/);
        assert.equal(standin.counts.token, 1);
      });

      await t.step("a certificate the deployment does not trust is refused", async () => {
        const error = await refused(
          refreshAccessToken(request(standin.tokenUrl), through({ policy: listed, resolve: localhostOnly })),
        );
        assert.deepEqual([error.code, error.retryable], ["oauth_token_refresh_failed", true]);
        assert.match(error.message, /TLS certificate was refused/);
      });

      await t.step("the connection goes to the address that was checked, and only to it", async () => {
        // No real resolver knows this name: the request can only have gone to the scripted answer.
        const resolve = scriptedResolver({ "token.rebind.example": [["127.0.0.1"], ["127.0.0.2"]] });
        const policy = loadEgressPolicy({ MAILROOM_EGRESS_ALLOWLIST: `token.rebind.example:${reboundPort}` });
        const url = `https://token.rebind.example:${reboundPort}/token`;
        const before = rebound.counts.token;
        const token = await refreshAccessToken(request(url), through({ policy, resolve, caCerts }));
        assert.match(token.accessToken, /^standin-at-/);
        assert.equal(resolve.asked["token.rebind.example"], 1, "resolved once for the check and the connection");
        // The next refresh checks again and goes where that answer says (nothing listens there).
        const moved = await refused(refreshAccessToken(request(url), through({ policy, resolve, caCerts })));
        assert.match(moved.message, /token\.rebind\.example \(127\.0\.0\.2:\d+\): the connection failed/);
        assert.equal(rebound.counts.token, before + 1);
      });

      await t.step("TLS is verified against the URL's name, not the address connected to", async () => {
        const resolve = scriptedResolver({ "token.rebind.example": [["127.0.0.1"]] });
        const policy = loadEgressPolicy({ MAILROOM_EGRESS_ALLOWLIST: `token.rebind.example:${port}` });
        const before = standin.counts.token;
        const error = await refused(
          refreshAccessToken(
            request(`https://token.rebind.example:${port}/token`),
            through({ policy, resolve, caCerts }),
          ),
        );
        assert.match(error.message, /TLS certificate was refused \(ERR_TLS_CERT_ALTNAME_INVALID\)/);
        assert.equal(standin.counts.token, before);
      });

      await t.step("a name that resolved to a public address cannot be made to connect elsewhere", async () => {
        // DNS rebinding: public for the check, loopback for anyone who asks again.
        const resolve = scriptedResolver({ "token.rebind.example": [["93.184.215.14"], ["127.0.0.1"]] });
        const policy = loadEgressPolicy({ MAILROOM_OAUTH_ALLOWED_PORTS: String(reboundPort) });
        const before = rebound.counts.token;
        const error = await refused(
          refreshAccessToken(
            request(`https://token.rebind.example:${reboundPort}/token`),
            through({ policy, resolve, caCerts }, 1_000),
          ),
        );
        assert.equal(error.code, "oauth_token_refresh_failed");
        // Refused, unreachable or silent (the machine's network decides), but only ever that address.
        assert.match(error.message, /\(93\.184\.215\.14:\d+\)|did not answer in time/);
        assert.equal(resolve.asked["token.rebind.example"], 1, "never asked again");
        assert.equal(rebound.counts.token, before, "the loopback endpoint heard nothing");
      });

      await t.step("a name that resolves to loopback is refused before any connection, for good", async () => {
        const resolve = scriptedResolver({ "idp.example.com": [["127.0.0.1"]] });
        const policy = loadEgressPolicy({ MAILROOM_OAUTH_ALLOWED_PORTS: String(port) });
        const before = standin.counts.token;
        const error = await refused(
          refreshAccessToken(request(`https://idp.example.com:${port}/token`), through({ policy, resolve, caCerts })),
        );
        assert.deepEqual([error.code, error.retryable, error.status], ["oauth_token_url_forbidden", false, 422]);
        assert.match(error.message, /it resolves to a loopback address/);
        assert.equal(standin.counts.token, before);
      });

      await t.step("a redirect is refused, and where it points never hears of the grant", async () => {
        const before = rebound.counts.token;
        standin.script({ endpoint: "token", status: 307, headers: { location: rebound.tokenUrl } });
        const error = await refused(refreshAccessToken(request(standin.tokenUrl), opts));
        assert.deepEqual([error.code, error.retryable], ["oauth_token_url_redirected", false]);
        assert.match(error.message, /answered 307 \(a redirect\); redirects are not followed/);
        assert.ok(!error.message.includes(rebound.tokenUrl), "the Location is not repeated");
        assert.equal(rebound.counts.token, before);
      });

      await t.step("an answer larger than the cap is not read", async () => {
        standin.script({ endpoint: "token", status: 200, body: "x".repeat(MAX_TOKEN_RESPONSE_BYTES + 1) });
        const error = await refused(refreshAccessToken(request(standin.tokenUrl), opts));
        assert.deepEqual([error.code, error.retryable], ["oauth_token_refresh_failed", true]);
        assert.match(error.message, /the answer is larger than 65536 bytes/);
      });

      await t.step("a slow endpoint times out as retryable", async () => {
        standin.script({ endpoint: "token", delayMs: 1_500 });
        const error = await refused(
          refreshAccessToken(
            request(standin.tokenUrl),
            through({ policy: listed, resolve: localhostOnly, caCerts }, 300),
          ),
        );
        assert.deepEqual([error.code, error.retryable], ["oauth_token_refresh_failed", true]);
        assert.match(error.message, /did not answer in time/);
      });

      await t.step("invalid_grant needs the user; the endpoint's own words are not repeated", async () => {
        standin.script({
          endpoint: "token",
          status: 400,
          body: { error: "invalid_grant", error_description: `internal-detail-7 for ${RT} / ${CLIENT.clientSecret}` },
        });
        const error = await refused(refreshAccessToken(request(standin.tokenUrl), opts));
        assert.deepEqual([error.code, error.retryable, error.providerError], [
          "oauth_reauth_required",
          false,
          "invalid_grant",
        ]);
        assert.match(error.message, /\(invalid_grant\); connect the mailbox again/);
        for (const said of ["internal-detail-7", RT, CLIENT.clientSecret]) assert.ok(!error.message.includes(said));
        standin.script({ endpoint: "token", status: 400, body: { error: "<b>x</b> internal-detail-8" } });
        const odd = await refused(refreshAccessToken(request(standin.tokenUrl), opts));
        assert.equal(odd.code, "oauth_token_refresh_failed");
        assert.ok(!odd.message.includes("internal-detail-8"), odd.message);
      });
    } finally {
      await standin.close();
      await rebound.close();
    }
  },
});
