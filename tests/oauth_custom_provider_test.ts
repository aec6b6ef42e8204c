// A custom OAuth provider end to end: a config naming its own token endpoint (the local stand-in
// of one, local/oauth_standin.ts, served over HTTPS on loopback with its own CA) is created,
// verified and used through the functions, and sends through a real TLS SMTP server with XOAUTH2.
// A token endpoint on a non-public address is refused at creation and, when the Data API moves it
// there later, at the next refresh, before any connection; a revoked grant pauses the queue until
// the mailbox is connected again; no secret appears in a response, a log line or an audit row.
import assert from "node:assert/strict";
import { captureLogs, startTestStack } from "./harness.ts";
import { generateCertificates } from "../local/certs.ts";
import { startOAuthStandin } from "../local/oauth_standin.ts";
import { startSmtpCatcher } from "../local/smtp_catcher.ts";

const CLIENT_ID = "idp-client";
const CLIENT_SECRET = "idp-client-secret-value";
const REFRESH = ["idp-refresh-secret-1", "idp-refresh-secret-2", "idp-refresh-secret-3"];
const SCOPES = ["mail.send", "offline_access"];

Deno.test({
  name: "a custom OAuth provider through the functions",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    // The token endpoint's certificate comes from a CA of its own, which only MAILROOM_OAUTH_CA_CERTS trusts.
    const tokenCerts = await generateCertificates();
    const standin = await startOAuthStandin({ tls: tokenCerts });
    // The test stack allowlists `localhost`, as a deployment lists its own servers; a token
    // endpoint off port 443 needs its port named too.
    const standinPort = new URL(standin.url).port;
    const stack = await startTestStack({
      MAILROOM_OAUTH_CA_CERTS: tokenCerts.caCert,
      MAILROOM_EGRESS_ALLOWLIST: `localhost,localhost:${standinPort}`,
    });
    const user = await stack.createUser();
    const smtp = await startSmtpCatcher({
      mode: "tls",
      tls: { key: stack.certs.key, cert: stack.certs.cert },
      users: { nobody: "no password login here" },
      acceptAccessToken: (name, token) => name === user.email && standin.acceptsSmtpToken(token, SCOPES),
    });
    const seen: string[] = [];
    const call = async (path: string, method: string, payload?: unknown) => {
      const res = await stack.invoke(path, { token: user.token, method, body: payload });
      const text = await res.text();
      seen.push(text);
      return { status: res.status, json: JSON.parse(text) };
    };
    const grant = (refreshToken: string) =>
      standin.addGrant({
        clientId: CLIENT_ID,
        clientSecret: CLIENT_SECRET,
        refreshToken,
        scopes: SCOPES,
        mailbox: user.email,
      });
    const customConfig = (name: string, oauth: Record<string, unknown> = {}) => ({
      name,
      auth_type: "oauth2",
      transport: "smtp",
      host: "localhost",
      port: smtp.port,
      security: "tls",
      from_email: user.email,
      oauth: {
        provider: "custom",
        client_id: CLIENT_ID,
        client_secret: CLIENT_SECRET,
        refresh_token: REFRESH[0],
        token_url: standin.tokenUrl,
        scopes: SCOPES,
        ...oauth,
      },
    });
    try {
      grant(REFRESH[0]);

      await t.step("a config names its provider's token endpoint and scopes; the secrets stay in Vault", async () => {
        const { status, json } = await call("smtp-configs", "POST", customConfig("idp"));
        assert.equal(status, 201, JSON.stringify(json));
        assert.deepEqual([json.auth_type, json.transport, json.has_password, json.warnings], [
          "oauth2",
          "smtp",
          false,
          [],
        ]);
        assert.deepEqual(json.oauth, {
          provider: "custom",
          client_id: CLIENT_ID,
          tenant: null,
          token_url: standin.tokenUrl,
          scopes: SCOPES,
          has_refresh_token: true,
          has_client_secret: true,
        });
      });

      await t.step("verify gets a token from that endpoint and logs in to the SMTP server with it", async () => {
        const { logs } = await captureLogs(async () => {
          const { status, json } = await call("smtp-configs/idp/verify", "POST");
          assert.equal(status, 200, JSON.stringify(json));
          assert.deepEqual([json.ok, json.tls, json.auth], [true, true, true]);
          assert.match(json.server_banner ?? "", /^220 /);
        });
        seen.push(logs);
        assert.equal(standin.counts.token, 1);
        assert.deepEqual(standin.presentedRefreshTokens, [REFRESH[0]]);
      });

      await t.step("send-email goes through the SMTP server with XOAUTH2, on the same token", async () => {
        const { logs } = await captureLogs(async () => {
          const { status, json } = await call("send-email", "POST", {
            config: "idp",
            to: "ada@example.com",
            subject: "Custom provider",
            text: "Hello through XOAUTH2",
          });
          assert.equal(status, 200, JSON.stringify(json));
          assert.deepEqual([json.status, json.accepted], ["sent", ["ada@example.com"]]);
        });
        seen.push(logs);
        const caught = smtp.messages().at(-1)!;
        assert.equal(caught.authUser, user.email);
        assert.ok(caught.secure);
        assert.match(caught.raw, /^Subject: Custom provider$/m);
        assert.equal(standin.counts.token, 1, "the verified token was reused");
      });

      await t.step(
        "refused at creation: a token endpoint the egress policy forbids, with the SMTP codes' wording",
        async () => {
          const before = standin.counts.token;
          const cases: [string, number, string][] = [
            // The stand-in really listens there: only the policy stands in the way.
            [`https://127.0.0.1:${standinPort}/token`, 422, "oauth_token_url_forbidden"],
            ["https://169.254.169.254/latest/api/token", 422, "oauth_token_url_forbidden"],
            ["https://10.1.2.3/oauth2/token", 422, "oauth_token_url_forbidden"],
            ["https://idp.internal/oauth2/token", 422, "oauth_token_url_forbidden"],
            ["https://idp.example.com:8443/token", 422, "oauth_token_url_port_not_allowed"],
            ["https://intranet/token", 400, "oauth_token_url_invalid"],
          ];
          for (const [url, status, code] of cases) {
            const res = await call("smtp-configs", "POST", customConfig("refused", { token_url: url }));
            assert.deepEqual([res.status, res.json.error?.code], [status, code], `${url}: ${JSON.stringify(res.json)}`);
          }
          const forbidden = await call("smtp-configs", "POST", customConfig("refused", { token_url: cases[0][0] }));
          assert.match(
            forbidden.json.error.message,
            /^Token endpoint host "127\.0\.0\.1" is not allowed: loopback address/,
          );
          assert.match(
            forbidden.json.error.message,
            new RegExp(`MAILROOM_EGRESS_ALLOWLIST=127\\.0\\.0\\.1:${standinPort}`),
          );
          assert.equal(standin.counts.token, before, "nothing reached the endpoint");
          const list = await call("smtp-configs", "GET");
          assert.ok(!list.json.configs.some((c: { name: string }) => c.name === "refused"));
        },
      );

      await t.step("refused by the schema, with the field at fault", async () => {
        const cases: [Record<string, unknown>, string][] = [
          [{ ...customConfig("bad"), transport: "graph", host: undefined, port: undefined }, "transport"],
          [{ ...customConfig("bad"), transport: "gmail_api", host: undefined, port: undefined }, "transport"],
          [customConfig("bad", { token_url: undefined }), "oauth.token_url"],
          [customConfig("bad", { token_url: "http://localhost/token" }), "oauth.token_url"],
          [customConfig("bad", { tenant: "contoso.com" }), "oauth.tenant"],
          [customConfig("bad", { scopes: ["mail.send offline_access"] }), "oauth.scopes.0"],
          [customConfig("bad", { provider: "google" }), "oauth.token_url"],
        ];
        for (const [body, path] of cases) {
          const { status, json } = await call("smtp-configs", "POST", body);
          assert.equal(status, 400, JSON.stringify(json));
          assert.equal(json.error.code, "invalid_request");
          const paths = (json.error.details?.issues ?? []).map((i: { path: string }) => i.path);
          assert.ok(paths.includes(path), `${path}: ${JSON.stringify(json.error)}`);
        }
      });

      await t.step(
        "an endpoint moved to a forbidden address is refused at the next refresh, and the config paused",
        async () => {
          grant(REFRESH[1]);
          const created = await call("smtp-configs", "POST", customConfig("moved", { refresh_token: REFRESH[1] }));
          assert.equal(created.status, 201, JSON.stringify(created.json));
          // Through the Data API, around the API's check; the grant goes with the old URL (trigger) ...
          const loopbackUrl = `https://127.0.0.1:${standinPort}/token`;
          await stack.asDataApi(
            user,
            (tx) => tx`update public.user_smtp_configs set oauth_token_url = ${loopbackUrl} where name = 'moved'`,
          );
          // ... so the user connects it again: a grant and a URL the stand-in (listening right there) would take.
          const reconnected = await call("smtp-configs/moved", "PATCH", { oauth: { refresh_token: REFRESH[1] } });
          assert.equal(reconnected.status, 200, JSON.stringify(reconnected.json));
          const before = standin.counts.token;
          const { logs } = await captureLogs(async () => {
            const verify = await call("smtp-configs/moved/verify", "POST");
            assert.deepEqual([verify.status, verify.json.error?.code], [422, "oauth_token_url_forbidden"]);
            assert.match(verify.json.error.message, /Token endpoint host "127\.0\.0\.1" is not allowed/);
            assert.equal(verify.json.error.details?.retryable, false);
            const send = await call("send-email", "POST", { config: "moved", to: "x@example.com", text: "x" });
            assert.deepEqual([send.status, send.json.error?.code], [422, "oauth_token_url_forbidden"]);
          });
          seen.push(logs);
          assert.equal(standin.counts.token, before, "no refresh reached the loopback endpoint");
          const config = await call("smtp-configs/moved", "GET");
          assert.equal(config.json.needs_attention, "oauth_token_url_forbidden");
        },
      );

      await t.step("invalid_grant pauses the config and its queue; connecting again sends what waited", async () => {
        // The provider revokes the grant and ends its open sessions (a pooled session that it
        // kept open would carry mail until its next login; the worker's sessions outlive a run).
        standin.revoke(REFRESH[0]);
        smtp.dropConnections();
        const { logs } = await captureLogs(async () => {
          const queued = await call("send-bulk", "POST", {
            config: "idp",
            recipients: ["later@example.com"],
            subject: "Waited",
            text: "x",
          });
          assert.equal(queued.status, 202, JSON.stringify(queued.json));
          await stack.drainOutbox();
          const progress = await call(`send-bulk/${queued.json.batch_id}`, "GET");
          assert.equal(progress.json.counts.sent ?? 0, 0, JSON.stringify(progress.json));
          assert.equal(progress.json.counts.failed ?? 0, 0, "nothing failed for good");
          const paused = await call("smtp-configs/idp", "GET");
          assert.equal(paused.json.needs_attention, "oauth_reauth_required");
          const refused = await call("send-email", "POST", { config: "idp", to: "x@example.com", text: "x" });
          assert.deepEqual([refused.status, refused.json.error?.code], [502, "oauth_reauth_required"]);
          assert.match(refused.json.error.message, /connect the mailbox again/);

          grant(REFRESH[2]);
          const reconnected = await call("smtp-configs/idp", "PATCH", { oauth: { refresh_token: REFRESH[2] } });
          assert.equal(reconnected.json.needs_attention, null);
          await stack.drainOutbox();
          const done = await call(`send-bulk/${queued.json.batch_id}`, "GET");
          assert.equal(done.json.counts.sent, 1, JSON.stringify(done.json));
        });
        seen.push(logs);
        assert.ok(smtp.messages().some((m) => m.envelope.rcptTo.includes("later@example.com")));
      });

      await t.step("no refresh token, client secret or access token in any answer, log or audit row", async () => {
        const rows = await stack.sql`select row_to_json(a)::text as row from public.email_audit_log a`;
        const verifications = await stack
          .sql`select row_to_json(v)::text as row from public.smtp_config_verifications v`;
        const everything = [...seen, ...rows.map((r) => r.row), ...verifications.map((r) => r.row)].join("\n");
        for (const secret of [...REFRESH, CLIENT_SECRET]) assert.ok(!everything.includes(secret), secret);
        assert.ok(!/standin-at-/.test(everything), "no access token");
      });
    } finally {
      await smtp.close();
      await stack.close();
      await standin.close();
    }
  },
});
