// OAuth mailboxes end to end: a Microsoft 365 config that sends through Microsoft Graph and a
// Gmail one through the Gmail API, created, verified and used through the functions, against
// the local stand-in of the providers (token endpoint, Graph sendMail, Gmail send; named as
// such in local/oauth_standin.ts) over real HTTP. The grant never appears in a response, a log
// line or an audit row; a throttled API defers; a revoked grant pauses the queue until the
// mailbox is connected again.
import assert from "node:assert/strict";
import { captureLogs, startTestStack } from "./harness.ts";
import { startOAuthStandin } from "../local/oauth_standin.ts";
import { startSmtpCatcher } from "../local/smtp_catcher.ts";

const SECRETS = [
  "m365-refresh-secret",
  "m365-client-secret",
  "gmail-refresh-secret",
  "m365-refresh-secret-2",
  "gsmtp-refresh-secret",
];

Deno.test({
  name: "OAuth mailboxes through the functions",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const standin = await startOAuthStandin();
    const stack = await startTestStack({
      MAILROOM_OAUTH_TOKEN_URL: standin.tokenUrl,
      MAILROOM_GRAPH_URL: standin.graphUrl,
      MAILROOM_GMAIL_URL: standin.gmailUrl,
    });
    const seen: string[] = [];
    const answer = async (res: Response) => {
      const text = await res.text();
      seen.push(text);
      return { status: res.status, json: JSON.parse(text) };
    };
    try {
      const user = await stack.createUser();
      standin.addGrant({
        clientId: "m365-client",
        clientSecret: "m365-client-secret",
        refreshToken: "m365-refresh-secret",
        scopes: ["https://graph.microsoft.com/Mail.Send", "offline_access"],
        mailbox: user.email,
      });
      standin.addGrant({
        clientId: "gmail-client",
        refreshToken: "gmail-refresh-secret",
        scopes: ["https://www.googleapis.com/auth/gmail.send"],
        mailbox: user.email,
      });
      const call = (path: string, method: string, payload?: unknown) =>
        stack.invoke(path, { token: user.token, method, body: payload }).then(answer);

      await t.step("a Microsoft 365 config from the preset needs only the grant; it sends through Graph", async () => {
        const { status, json } = await call("smtp-configs", "POST", {
          name: "work",
          preset: "microsoft365",
          from_email: user.email,
          oauth: {
            client_id: "m365-client",
            client_secret: "m365-client-secret",
            refresh_token: "m365-refresh-secret",
          },
        });
        assert.equal(status, 201, JSON.stringify(json));
        assert.deepEqual([json.auth_type, json.transport, json.host, json.has_password], [
          "oauth2",
          "graph",
          "graph.microsoft.com",
          false,
        ]);
        assert.deepEqual(json.oauth, {
          provider: "microsoft",
          client_id: "m365-client",
          tenant: null,
          token_url: null,
          scopes: null,
          has_refresh_token: true,
          has_client_secret: true,
        });
      });

      await t.step("verify gets a token from the grant", async () => {
        const { status, json } = await call("smtp-configs/work/verify", "POST");
        assert.equal(status, 200, JSON.stringify(json));
        assert.deepEqual([json.ok, json.auth], [true, true]);
      });

      await t.step("send-email goes through Graph with the built message; Bcc delivered unseen", async () => {
        const before = standin.deliveries.length;
        const { status, json } = await call("send-email", "POST", {
          config: "work",
          to: "ada@example.com",
          bcc: "audit@example.com",
          subject: "Through Graph",
          text: "Hello from Microsoft 365",
        });
        assert.equal(status, 200, JSON.stringify(json));
        assert.equal(json.status, "sent");
        assert.deepEqual(json.accepted.sort(), ["ada@example.com", "audit@example.com"]);
        const delivery = standin.deliveries[before];
        assert.equal(delivery.via, "graph");
        const delivered = new TextDecoder().decode(delivery.delivered);
        assert.match(delivered, /^Subject: Through Graph$/m);
        assert.ok(!delivered.includes("audit@example.com"), "Bcc is not shown");
        assert.ok(delivery.rcptTo.includes("audit@example.com"));
        const [audit] = await stack.sql`select status, config_id is not null as has_config, recipients
                                          from public.email_audit_log where id = ${json.id}`;
        assert.equal(audit.status, "sent");
        seen.push(JSON.stringify(audit));
      });

      await t.step("the outbox sends queued mail through the Gmail API", async () => {
        const created = await call("smtp-configs", "POST", {
          name: "gmail",
          auth_type: "oauth2",
          transport: "gmail_api",
          from_email: user.email,
          oauth: { provider: "google", client_id: "gmail-client", refresh_token: "gmail-refresh-secret" },
        });
        assert.equal(created.status, 201, JSON.stringify(created.json));
        const before = standin.deliveries.length;
        const { status, json } = await call("send-bulk", "POST", {
          config: "gmail",
          recipients: ["a@example.com", "b@example.com", "c@example.com"],
          subject: "Batch",
          text: "Through the Gmail API",
        });
        assert.equal(status, 202, JSON.stringify(json));
        await stack.drainOutbox();
        const progress = await call(`send-bulk/${json.batch_id}`, "GET");
        assert.equal(progress.json.counts.sent, 3, JSON.stringify(progress.json));
        assert.deepEqual(standin.deliveries.slice(before).map((d) => d.via), ["gmail", "gmail", "gmail"]);
      });

      await t.step("a throttled API defers with its Retry-After, nothing lost", async () => {
        standin.script({
          endpoint: "graph",
          status: 429,
          retryAfter: "30",
          body: { error: { code: "ApplicationThrottled" } },
        });
        const { status, json } = await call("send-email", "POST", { config: "work", to: "x@example.com", text: "x" });
        assert.equal(status, 502);
        assert.deepEqual([json.error.code, json.error.details?.retryable], ["provider_throttled", true]);
      });

      await t.step("a revoked grant pauses the queue; connecting the mailbox again resumes it", async () => {
        standin.revoke("m365-refresh-secret");
        await stack.sql`update public.user_smtp_configs set oauth_access_token_expires_at = now() where name = 'work'`;
        const { logs } = await captureLogs(async () => {
          const refused = await call("send-email", "POST", { config: "work", to: "x@example.com", text: "x" });
          assert.equal(refused.status, 502);
          assert.equal(refused.json.error.code, "oauth_reauth_required");
          assert.match(refused.json.error.message, /connect the mailbox again/);
        });
        seen.push(logs);
        const paused = await call("smtp-configs/work", "GET");
        assert.equal(paused.json.needs_attention, "oauth_reauth_required");
        standin.addGrant({
          clientId: "m365-client",
          clientSecret: "m365-client-secret",
          refreshToken: "m365-refresh-secret-2",
          scopes: ["https://graph.microsoft.com/Mail.Send", "offline_access"],
          mailbox: user.email,
        });
        const reconnected = await call("smtp-configs/work", "PATCH", {
          oauth: { refresh_token: "m365-refresh-secret-2" },
        });
        assert.equal(reconnected.status, 200, JSON.stringify(reconnected.json));
        assert.equal(reconnected.json.needs_attention, null);
        const sent = await call("send-email", "POST", { config: "work", to: "x@example.com", text: "again" });
        assert.equal(sent.status, 200, JSON.stringify(sent.json));
      });

      await t.step(
        "Gmail over SMTP with XOAUTH2: verify and send log in with the token; a refused one is renewed once, " +
          "a revoked grant is oauth_reauth_required",
        async () => {
          standin.addGrant({
            clientId: "gsmtp-client",
            refreshToken: "gsmtp-refresh-secret",
            scopes: ["https://mail.google.com/"],
            mailbox: user.email,
          });
          let refuseNext = false;
          const smtp = await startSmtpCatcher({
            mode: "tls",
            tls: { key: stack.certs.key, cert: stack.certs.cert },
            users: { nobody: "no password login here" },
            acceptAccessToken: (name, token) => {
              if (refuseNext) {
                refuseNext = false;
                return false;
              }
              return name === user.email && standin.acceptsSmtpToken(token);
            },
          });
          try {
            const created = await call("smtp-configs", "POST", {
              name: "gsmtp",
              auth_type: "oauth2",
              transport: "smtp",
              host: "localhost",
              port: smtp.port,
              security: "tls",
              from_email: user.email,
              oauth: { provider: "google", client_id: "gsmtp-client", refresh_token: "gsmtp-refresh-secret" },
            });
            assert.equal(created.status, 201, JSON.stringify(created.json));
            const verified = await call("smtp-configs/gsmtp/verify", "POST");
            assert.equal(verified.status, 200, JSON.stringify(verified.json));
            assert.match(verified.json.server_banner ?? "", /^220 /);
            const refreshes = standin.counts.token;
            refuseNext = true;
            const sent = await call("send-email", "POST", {
              config: "gsmtp",
              to: "x@example.com",
              subject: "XOAUTH2",
              text: "x",
            });
            assert.equal(sent.status, 200, JSON.stringify(sent.json));
            assert.equal(standin.counts.token - refreshes, 1, "the refused token was replaced by one fresh one");
            const caught = smtp.messages().at(-1)!;
            assert.equal(caught.authUser, user.email);
            assert.match(caught.raw, /^Subject: XOAUTH2$/m);
            // Revoked while its token is still held: the server refuses the token on the next login
            // (verify opens a session of its own), and the refresh that should replace it finds the
            // grant gone. That is the grant's failure (connect again), not a refused login.
            standin.revoke("gsmtp-refresh-secret");
            const revoked = await call("smtp-configs/gsmtp/verify", "POST");
            assert.deepEqual([revoked.status, revoked.json.error?.code], [502, "oauth_reauth_required"]);
            assert.match(revoked.json.error.message, /connect the mailbox again/);
            const paused = await call("smtp-configs/gsmtp", "GET");
            assert.equal(paused.json.needs_attention, "oauth_reauth_required");
          } finally {
            await smtp.close();
          }
        },
      );

      await t.step("bad OAuth configs are refused with the field at fault", async () => {
        const cases: [Record<string, unknown>, string][] = [
          [{ auth_type: "oauth2", transport: "graph" }, "oauth"],
          [{
            auth_type: "oauth2",
            transport: "graph",
            oauth: { provider: "google", client_id: "c", refresh_token: "r" },
          }, "transport"],
          [{
            auth_type: "oauth2",
            transport: "smtp",
            oauth: { provider: "google", client_id: "c", refresh_token: "r" },
          }, "host"],
          [{
            auth_type: "oauth2",
            transport: "smtp",
            host: "smtp.x.example",
            oauth: { provider: "custom", client_id: "c", refresh_token: "r" },
          }, "oauth.token_url"],
          [{
            auth_type: "oauth2",
            transport: "graph",
            oauth: { provider: "custom", client_id: "c", refresh_token: "r", token_url: "https://x.example/token" },
          }, "transport"],
          [{ transport: "graph", host: "x.example.com" }, "transport"],
          [{
            auth_type: "oauth2",
            transport: "gmail_api",
            password: "p",
            oauth: { provider: "google", client_id: "c", refresh_token: "r" },
          }, "password"],
        ];
        for (const [fields, path] of cases) {
          const { status, json } = await call("smtp-configs", "POST", {
            name: "bad",
            from_email: user.email,
            ...fields,
          });
          assert.equal(status, 400, JSON.stringify(json));
          const paths = (json.error.details?.issues ?? []).map((i: { path: string }) => i.path);
          assert.ok(paths.includes(path), `${JSON.stringify(fields)}: ${JSON.stringify(json.error)}`);
        }
        const patch = await call("smtp-configs/work", "PATCH", { host: "smtp.office365.com" });
        assert.equal(patch.status, 400);
      });

      await t.step("no refresh token, client secret or access token in any answer, log or audit row", async () => {
        const rows = await stack.sql`select row_to_json(a)::text as row from public.email_audit_log a`;
        const everything = [...seen, ...rows.map((r) => r.row)].join("\n");
        for (const secret of SECRETS) assert.ok(!everything.includes(secret), secret);
        assert.ok(!/standin-at-/.test(everything), "no access token");
      });
    } finally {
      await stack.close();
      await standin.close();
    }
  },
});
