// send-email end to end: a real Postgres with our migrations, real SMTP servers with TLS
// and AUTH on random ports, the function called over HTTP exactly as clients call it.
import assert from "node:assert/strict";
import { simpleParser } from "mailparser";
import { createClient } from "@supabase/supabase-js";
import { body, captureLogs, type ErrorBody, startTestStack, type TestStack, type TestUser } from "./harness.ts";
import { type SmtpCatcher, startSmtpCatcher, startStallingServer } from "../local/smtp_catcher.ts";
import { generateSelfSigned } from "../local/certs.ts";
import { freePort } from "../local/postgres.ts";
import { generateSigningKey, mintToken } from "../local/jwt.ts";

const SMTP_USER = "mailer";
const SMTP_PASSWORD = "s3cret-Pa55word-do-not-leak";

Deno.test({
  name: "send-email",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const stack: TestStack = await startTestStack();
    const tls = { key: stack.certs.key, cert: stack.certs.cert };
    const users = { [SMTP_USER]: SMTP_PASSWORD };
    const smtps: SmtpCatcher = await startSmtpCatcher({ mode: "tls", tls, users });
    const starttls: SmtpCatcher = await startSmtpCatcher({ mode: "starttls", tls, users });
    const alice: TestUser = await stack.createUser("alice@example.com");
    const bob: TestUser = await stack.createUser("bob@example.com");
    const aliceConfig = await stack.createConfig(alice, {
      name: "work",
      port: smtps.port,
      security: "tls",
      username: SMTP_USER,
      password: SMTP_PASSWORD,
      from_email: "alice@example.com",
      from_name: "Alice Agent",
    });
    await stack.createConfig(alice, {
      name: "relay-starttls",
      port: starttls.port,
      security: "starttls",
      username: SMTP_USER,
      password: SMTP_PASSWORD,
      is_default: false,
    });

    try {
      await t.step("delivers through the default config via supabase.functions.invoke", async () => {
        smtps.clear();
        const supabase = createClient(stack.url, stack.anonKey, {
          auth: { persistSession: false, autoRefreshToken: false },
        });
        const { data, error } = await supabase.functions.invoke("send-email", {
          headers: { Authorization: `Bearer ${alice.token}` },
          body: {
            to: "Jane Doe <jane@example.com>",
            cc: [{ email: "carol@example.org", name: "Carol" }],
            bcc: "hidden@example.net",
            reply_to: "replies@example.com",
            subject: "Quarterly numbers ✓",
            text: "Plain body",
            html: "<p>HTML <b>body</b></p>",
            agent_context: { agent: "test-suite", run: 1 },
          },
        });
        assert.equal(error, null);
        assert.equal(data.status, "sent");
        assert.match(data.id, /^[0-9a-f-]{36}$/);
        assert.ok(data.message_id);
        assert.deepEqual(
          [...data.accepted].sort(),
          ["carol@example.org", "hidden@example.net", "jane@example.com"],
        );
        assert.deepEqual(data.rejected, []);

        const [message] = await smtps.waitForMessages(1);
        assert.equal(message.authUser, SMTP_USER);
        assert.equal(message.secure, true);
        assert.equal(message.envelope.mailFrom, "alice@example.com");
        assert.deepEqual(
          [...message.envelope.rcptTo].sort(),
          ["carol@example.org", "hidden@example.net", "jane@example.com"],
        );
        assert.ok(!/hidden@example\.net/.test(message.raw.split(/\r?\n\r?\n/)[0]), "bcc must not be in the headers");
        const mail = await simpleParser(message.raw);
        assert.equal(mail.subject, "Quarterly numbers ✓");
        assert.equal(mail.text?.trim(), "Plain body");
        assert.equal(mail.html, "<p>HTML <b>body</b></p>");
        assert.deepEqual(mail.from?.value, [{ address: "alice@example.com", name: "Alice Agent" }]);
        assert.deepEqual(mail.to && !Array.isArray(mail.to) && mail.to.value, [
          { address: "jane@example.com", name: "Jane Doe" },
        ]);
        assert.deepEqual(mail.cc && !Array.isArray(mail.cc) && mail.cc.value, [
          { address: "carol@example.org", name: "Carol" },
        ]);
        assert.equal(mail.bcc, undefined);
        assert.deepEqual(mail.replyTo?.value, [{ address: "replies@example.com", name: "" }]);
        assert.equal(mail.messageId, data.message_id);
        assert.match(message.raw, /Content-Type: multipart\/alternative/i);

        const [audit] = await stack.sql`select * from public.email_audit_log where id = ${data.id}`;
        assert.equal(audit.user_id, alice.id);
        assert.equal(audit.config_id, aliceConfig);
        assert.equal(audit.status, "sent");
        assert.equal(audit.message_id, data.message_id);
        assert.deepEqual(audit.to_addresses, ["jane@example.com"]);
        assert.equal(audit.cc_count, 1);
        assert.equal(audit.bcc_count, 1);
        assert.equal(audit.subject, "Quarterly numbers ✓");
        assert.deepEqual(audit.agent_context, { agent: "test-suite", run: 1 });
        assert.ok(audit.completed_at instanceof Date);
        assert.equal(audit.error_class, null);
      });

      await t.step("sends over STARTTLS with a config chosen by name, via plain fetch", async () => {
        starttls.clear();
        const res = await stack.invoke("send-email", {
          token: alice.token,
          body: { to: "x@example.com", subject: "via starttls", text: "hello", config: "relay-starttls" },
        });
        assert.equal(res.status, 200);
        const result = await body<{ status: string; accepted: string[] }>(res);
        assert.equal(result.status, "sent");
        const [message] = await starttls.waitForMessages(1);
        assert.equal(message.secure, true, "STARTTLS must have upgraded the session");
        assert.deepEqual(message.envelope.rcptTo, ["x@example.com"]);
      });

      await t.step("selects a config by id", async () => {
        smtps.clear();
        const res = await stack.invoke("send-email", {
          token: alice.token,
          body: { to: "y@example.com", text: "by id", config: aliceConfig },
        });
        assert.equal(res.status, 200);
        await smtps.waitForMessages(1);
      });

      await t.step("answers 401 without a token, with an expired one and with a forged one", async () => {
        const message = { to: "a@example.com", text: "x" };
        const missing = await stack.invoke("send-email", { body: message });
        assert.equal(missing.status, 401);
        assert.equal((await body<ErrorBody>(missing)).error.code, "missing_token");

        const expired = await stack.mint({ sub: alice.id, expiresIn: Math.floor(Date.now() / 1000) - 10 });
        const res = await stack.invoke("send-email", { token: expired, body: message });
        assert.equal(res.status, 401);
        assert.equal((await body<ErrorBody>(res)).error.code, "token_expired");

        const [header, payload] = alice.token.split(".");
        const tampered = JSON.parse(atob(payload.replace(/-/g, "+").replace(/_/g, "/")));
        tampered.sub = bob.id;
        const forgedPayload = btoa(JSON.stringify(tampered)).replace(/=+$/, "").replace(/\+/g, "-").replace(/\//g, "_");
        const forged = `${header}.${forgedPayload}.${alice.token.split(".")[2]}`;
        const res2 = await stack.invoke("send-email", { token: forged, body: message });
        assert.equal(res2.status, 401);
        assert.equal((await body<ErrorBody>(res2)).error.code, "invalid_token");

        const anon = await stack.invoke("send-email", { token: stack.anonKey, body: message });
        assert.equal(anon.status, 401);
      });

      await t.step(
        "names the anon key and a token from keys the stack no longer has, and says what to do",
        async () => {
          const message = { to: "x@example.com", subject: "s", text: "t" };
          // What supabase-js sends when no one is signed in: the anon key as the bearer token.
          const supabase = createClient(stack.url, stack.anonKey, {
            auth: { persistSession: false, autoRefreshToken: false },
          });
          const { error: invokeError } = await supabase.functions.invoke("send-email", { body: message });
          const anon = (invokeError as { context: Response }).context;
          assert.equal(anon.status, 401);
          const anonError = (await body<ErrorBody>(anon)).error;
          assert.equal(anonError.code, "invalid_token");
          assert.equal(anonError.details?.reason, "anon_key");
          assert.match(anonError.message, /anon key, not a signed-in user's token/);
          assert.match(anonError.message, /signInWithPassword/);
          assert.match(anonError.message, /npm run token/);

          // A token minted before `.local` was reset: same issuer and subject, a signing key since replaced.
          const oldKey = await generateSigningKey();
          const stale = await mintToken(oldKey, { issuer: `${stack.url}/auth/v1`, sub: alice.id });
          const res = await stack.invoke("send-email", { token: stale, body: message });
          assert.equal(res.status, 401);
          const staleError = (await body<ErrorBody>(res)).error;
          assert.equal(staleError.code, "invalid_token");
          assert.equal(staleError.details?.reason, "signing_key_unknown");
          assert.match(staleError.message, /signing keys changed/);
          assert.match(staleError.message, /npm run token/);
        },
      );

      await t.step(
        'explains "from": the sender is the config\'s from_email, chosen with config and from_name',
        async () => {
          const res = await stack.invoke("send-email", {
            token: alice.token,
            body: { from: "Alice <alice@example.com>", to: "x@example.com", subject: "s", text: "t", mode: 1 },
          });
          assert.equal(res.status, 400);
          const error = (await body<ErrorBody>(res)).error;
          assert.equal(error.code, "invalid_request");
          const issues = error.details?.issues as { path: string; message: string }[];
          const from = issues.find((i) => i.path === "from");
          assert.ok(from, JSON.stringify(issues));
          assert.match(from.message, /from_email/);
          assert.match(from.message, /`config`/);
          assert.match(from.message, /`from_name`/);
          assert.ok(
            issues.some((i) => i.path === "" && i.message === 'Unrecognized key: "mode"'),
            JSON.stringify(issues),
          );
          assert.match(error.message, /^from: there is no "from"/);
          // The config's own name for it, used in a send, is explained the same way.
          const fromEmail = await stack.invoke("send-email", {
            token: alice.token,
            body: { from_email: "alice@example.com", to: "x@example.com", subject: "s", text: "t" },
          });
          const fromEmailIssues = (await body<ErrorBody>(fromEmail)).error.details?.issues as { path: string }[];
          assert.deepEqual(fromEmailIssues.map((i) => i.path), ["from_email"]);
        },
      );

      await t.step("answers 400 with field paths for a malformed body", async () => {
        const res = await fetch(`${stack.url}/functions/v1/send-email`, {
          method: "POST",
          headers: { authorization: `Bearer ${alice.token}`, "content-type": "application/json" },
          body: "{not json",
        });
        assert.equal(res.status, 400);
        assert.equal((await body<ErrorBody>(res)).error.code, "invalid_json");

        const res2 = await stack.invoke("send-email", {
          token: alice.token,
          body: { to: ["ok@example.com", "broken"], subject: "a\r\nBcc: evil@example.com" },
        });
        assert.equal(res2.status, 400);
        const error = (await body<ErrorBody>(res2)).error;
        assert.equal(error.code, "invalid_header_value", "a CR/LF in the subject is a header injection attempt");
        const paths = (error.details?.issues as { path: string }[]).map((i) => i.path);
        assert.ok(paths.includes("to.1"), `paths: ${paths}`);
        assert.ok(paths.includes("subject"), `paths: ${paths}`);
      });

      await t.step("answers 405 to other methods and handles CORS preflight", async () => {
        const res = await stack.invoke("send-email", { token: alice.token, method: "GET" });
        assert.equal(res.status, 405);
        assert.equal((await body<ErrorBody>(res)).error.code, "method_not_allowed");
        const preflight = await fetch(`${stack.url}/functions/v1/send-email`, { method: "OPTIONS" });
        await preflight.body?.cancel();
        assert.equal(preflight.status, 204);
        assert.match(preflight.headers.get("access-control-allow-headers") ?? "", /authorization/);
      });

      await t.step("answers 404 for an unknown config and for another user's config", async () => {
        const res = await stack.invoke("send-email", {
          token: alice.token,
          body: { to: "a@example.com", text: "x", config: "nope" },
        });
        assert.equal(res.status, 404);
        assert.equal((await body<ErrorBody>(res)).error.code, "config_not_found");

        const res2 = await stack.invoke("send-email", {
          token: bob.token,
          body: { to: "a@example.com", text: "x", config: aliceConfig },
        });
        assert.equal(res2.status, 404);
        assert.equal((await body<ErrorBody>(res2)).error.code, "config_not_found");

        const res3 = await stack.invoke("send-email", { token: bob.token, body: { to: "a@example.com", text: "x" } });
        assert.equal(res3.status, 404, "bob has no default config");
        const bobAudit = await stack
          .sql`select count(*)::int as n from public.email_audit_log where user_id = ${bob.id}`;
        assert.equal(bobAudit[0].n, 0);
      });

      await t.step("answers 409 for a deactivated config", async () => {
        await stack.createConfig(alice, {
          name: "paused",
          port: smtps.port,
          password: "x",
          is_default: false,
          is_active: false,
        });
        const res = await stack.invoke("send-email", {
          token: alice.token,
          body: { to: "a@example.com", text: "x", config: "paused" },
        });
        assert.equal(res.status, 409);
        assert.equal((await body<ErrorBody>(res)).error.code, "config_inactive");
      });

      await t.step(
        "answers 502 smtp_auth_failed for bad credentials, audits it, never leaks the password",
        async () => {
          const wrongPassword = "wr0ng-Pa55word-do-not-leak";
          await stack.createConfig(alice, {
            name: "bad-auth",
            port: smtps.port,
            password: wrongPassword,
            is_default: false,
          });
          const { result: res, logs } = await captureLogs(() =>
            stack.invoke("send-email", {
              token: alice.token,
              body: { to: "a@example.com", text: "x", config: "bad-auth" },
            })
          );
          const text = await res.text();
          assert.equal(res.status, 502);
          const error = (JSON.parse(text) as ErrorBody).error;
          assert.equal(error.code, "smtp_auth_failed");
          assert.equal(error.details?.smtp_response_code, 535);

          const [audit] = await stack.sql`select * from public.email_audit_log where id = ${error.details
            ?.id as string}`;
          assert.equal(audit.status, "failed");
          assert.equal(audit.error_class, "smtp_auth_failed");
          assert.equal(audit.smtp_response_code, 535);

          const allAudit = JSON.stringify(await stack.sql`select * from public.email_audit_log`);
          for (const secret of [wrongPassword, SMTP_PASSWORD]) {
            assert.ok(!text.includes(secret), "password in response");
            assert.ok(!logs.includes(secret), "password in logs");
            assert.ok(!allAudit.includes(secret), "password in audit rows");
          }
          const [row] = await stack.sql`select * from public.user_smtp_configs where name = 'bad-auth'`;
          assert.ok(!JSON.stringify(row).includes(wrongPassword), "password in the config row");
        },
      );

      await t.step("answers 502 smtp_connect_timeout when the server never greets", async () => {
        const stalling = await startStallingServer();
        try {
          await stack.createConfig(alice, { name: "stalling", port: stalling.port, password: "x", is_default: false });
          const res = await stack.invoke("send-email", {
            token: alice.token,
            body: { to: "a@example.com", text: "x", config: "stalling" },
          });
          assert.equal(res.status, 502);
          const error = (await body<ErrorBody>(res)).error;
          assert.equal(error.code, "smtp_connect_timeout");
          const [audit] = await stack.sql`select status, error_class from public.email_audit_log where id = ${error
            .details?.id as string}`;
          assert.deepEqual({ ...audit }, { status: "deferred", error_class: "smtp_connect_timeout" });
          assert.equal(error.details?.retryable, true);
        } finally {
          await stalling.close();
        }
      });

      await t.step("answers 502 smtp_connect_failed for a closed port", async () => {
        await stack.createConfig(alice, { name: "closed", port: freePort(), password: "x", is_default: false });
        const res = await stack.invoke("send-email", {
          token: alice.token,
          body: { to: "a@example.com", text: "x", config: "closed" },
        });
        assert.equal(res.status, 502);
        assert.equal((await body<ErrorBody>(res)).error.code, "smtp_connect_failed");
      });

      await t.step("refuses a server whose certificate is not trusted", async () => {
        const untrusted = await startSmtpCatcher({ mode: "tls", tls: await generateSelfSigned(), users });
        try {
          await stack.createConfig(alice, {
            name: "untrusted",
            port: untrusted.port,
            password: SMTP_PASSWORD,
            is_default: false,
          });
          const res = await stack.invoke("send-email", {
            token: alice.token,
            body: { to: "a@example.com", text: "x", config: "untrusted" },
          });
          assert.equal(res.status, 502);
          assert.equal((await body<ErrorBody>(res)).error.code, "smtp_tls_untrusted");
          assert.equal(untrusted.messages().length, 0);
        } finally {
          await untrusted.close();
        }
      });

      await t.step("GET /send-email/:id answers with the message view, only to its owner", async () => {
        smtps.clear();
        const sent = await body(
          await stack.invoke("send-email", {
            token: alice.token,
            body: { to: "reader@example.com", subject: "Read me back", text: "x", config: "work" },
          }),
        );
        assert.equal(sent.status, "sent");
        const res = await stack.invoke(`send-email/${sent.id}`, { token: alice.token, method: "GET" });
        assert.equal(res.status, 200);
        const view = await body(res);
        assert.equal(view.id, sent.id);
        assert.equal(view.status, "sent");
        assert.equal(view.subject, "Read me back");
        assert.equal(view.message_id, sent.message_id);
        assert.deepEqual(view.to, ["reader@example.com"]);
        assert.deepEqual((view.config as { name: string }).name, "work");
        // The same view email-analytics gives.
        const analytics = await stack.invoke(`email-analytics/messages/${sent.id}`, {
          token: alice.token,
          method: "GET",
        });
        assert.deepEqual(await body(analytics), view);

        for (const [path, token] of [[`send-email/${sent.id}`, bob.token], ["send-email/not-an-id", alice.token]]) {
          const missing = await stack.invoke(path, { token, method: "GET" });
          assert.equal(missing.status, 404, path);
          assert.equal((await body<ErrorBody>(missing)).error.code, "message_not_found");
        }
        const unauthenticated = await stack.invoke(`send-email/${sent.id}`, { method: "GET" });
        assert.equal(unauthenticated.status, 401);
        await unauthenticated.body?.cancel();
        const deleting = await stack.invoke(`send-email/${sent.id}`, { token: alice.token, method: "DELETE" });
        assert.equal(deleting.status, 405);
        assert.equal(deleting.headers.get("allow"), "GET, OPTIONS");
        await deleting.body?.cancel();
      });

      await t.step("cancelling twice answers cancelled both times; a sent message is not cancellable", async () => {
        const later = new Date(Date.now() + 3_600_000).toISOString();
        const scheduled = await body(
          await stack.invoke("send-email", {
            token: alice.token,
            body: { to: "later@example.com", subject: "Later", text: "x", scheduled_at: later },
          }),
        );
        assert.equal(scheduled.status, "scheduled");
        for (const attempt of ["first", "second"]) {
          const res = await stack.invoke(`send-email/${scheduled.id}/cancel`, { token: alice.token });
          assert.equal(res.status, 200, attempt);
          assert.deepEqual(await body(res), { id: scheduled.id, status: "cancelled" }, attempt);
        }
        const view = await body(
          await stack.invoke(`send-email/${scheduled.id}`, { token: alice.token, method: "GET" }),
        );
        assert.equal(view.status, "cancelled");

        const [sent] = await stack.sql`
          select id from public.email_audit_log where user_id = ${alice.id} and status = 'sent' limit 1`;
        const refused = await stack.invoke(`send-email/${sent.id}/cancel`, { token: alice.token });
        assert.equal(refused.status, 409);
        const error = (await body<ErrorBody>(refused)).error;
        assert.equal(error.code, "not_cancellable");
        assert.equal(error.details?.status, "sent");
        const others = await stack.invoke(`send-email/${scheduled.id}/cancel`, { token: bob.token });
        assert.equal(others.status, 404);
        assert.equal((await body<ErrorBody>(others)).error.code, "message_not_found");
      });

      await t.step("a template without a subject sends only when the request gives one", async () => {
        await stack.asDataApi(alice, (tx) =>
          tx`insert into public.email_templates (name, subject, text)
             values ('no-subject', null, 'Body for {{name}}'), ('subject-from-data', '{{title}}', 'Body')`);
        smtps.clear();
        const refused = await stack.invoke("send-email", {
          token: alice.token,
          body: { to: "t@example.com", template: "no-subject", data: { name: "Ann" } },
        });
        assert.equal(refused.status, 422);
        const error = (await body<ErrorBody>(refused)).error;
        assert.equal(error.code, "subject_missing");
        assert.deepEqual(error.details, { template: "no-subject", reason: "template_has_no_subject" });
        assert.match(error.message, /add "subject" to the request/);

        const later = new Date(Date.now() + 3_600_000).toISOString();
        const scheduled = await stack.invoke("send-email", {
          token: alice.token,
          body: { to: "t@example.com", template: "no-subject", data: { name: "Ann" }, scheduled_at: later },
        });
        assert.equal(scheduled.status, 422, "refused when accepted, not when the outbox gets to it");
        assert.equal((await body<ErrorBody>(scheduled)).error.code, "subject_missing");

        const blank = await stack.invoke("send-email", {
          token: alice.token,
          body: { to: "t@example.com", template: "subject-from-data", data: { title: " " } },
        });
        assert.equal(blank.status, 422);
        assert.equal((await body<ErrorBody>(blank)).error.details?.reason, "rendered_empty");

        const given = await stack.invoke("send-email", {
          token: alice.token,
          body: { to: "t@example.com", template: "no-subject", data: { name: "Ann" }, subject: "Given here" },
        });
        assert.equal(given.status, 200);
        await given.body?.cancel();
        const [message] = await smtps.waitForMessages(1);
        const mail = await simpleParser(message.raw);
        assert.equal(mail.subject, "Given here");
        assert.equal(mail.text?.trim(), "Body for Ann");
        const [{ n }] = await stack.sql`
          select count(*)::int as n from public.email_audit_log where user_id = ${alice.id} and to_addresses = '{t@example.com}'`;
        assert.equal(n, 1, "the refused sends left no audit row");
      });

      await t.step("user B reads none of user A's audit rows through RLS", async () => {
        const rows = await stack.asDataApi(bob, (tx) => tx`select id from public.email_audit_log`);
        assert.equal(rows.length, 0);
      });
    } finally {
      await smtps.close();
      await starttls.close();
      await stack.close();
    }
  },
});
