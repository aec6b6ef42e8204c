// smtp-configs end to end: configs managed over HTTP with a user token, passwords in
// Vault, verification against real SMTP servers (TLS, STARTTLS, a server hiding
// STARTTLS, an untrusted certificate, a server that never greets, a closed port).
import assert from "node:assert/strict";
import { body, captureLogs, errorCode, startTestStack, type TestStack, type TestUser } from "./harness.ts";
import { type SmtpCatcher, startSmtpCatcher, startStallingServer } from "../local/smtp_catcher.ts";
import { generateSelfSigned } from "../local/certs.ts";
import { freePort } from "../local/postgres.ts";

const SMTP_USER = "agent";
const PASSWORD = "Vault-only-pa55word-1";
const ROTATED = "Vault-only-pa55word-2";

interface Config {
  id: string;
  name: string;
  host: string;
  port: number;
  security: string;
  is_default: boolean;
  is_active: boolean;
  has_password: boolean;
  limits: { per_minute: number; per_day: number; max_connections: number };
  warnings?: { code: string }[];
}

Deno.test({
  name: "smtp-configs",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const stack: TestStack = await startTestStack();
    const tls = { key: stack.certs.key, cert: stack.certs.cert };
    const users = { [SMTP_USER]: PASSWORD };
    const smtps: SmtpCatcher = await startSmtpCatcher({ mode: "tls", tls, users });
    const starttls: SmtpCatcher = await startSmtpCatcher({ mode: "starttls", tls, users });
    const alice: TestUser = await stack.createUser();
    const bob: TestUser = await stack.createUser();
    const responses: string[] = [];

    const call = async (user: TestUser, method: string, path = "", payload?: unknown) => {
      const res = await stack.invoke(`smtp-configs${path}`, { token: user.token, method, body: payload });
      const text = await res.text();
      responses.push(text);
      return { status: res.status, json: JSON.parse(text), headers: res.headers };
    };
    const tlsConfig = (over: Record<string, unknown> = {}) => ({
      name: "work",
      host: "localhost",
      port: smtps.port,
      security: "tls",
      username: SMTP_USER,
      password: PASSWORD,
      from_email: alice.email,
      from_name: "Alice's Agent",
      ...over,
    });

    const { logs } = await captureLogs(async () => {
      let work: Config;

      await t.step("creates a config; the row keeps only a Vault secret id", async () => {
        const res = await call(alice, "POST", "", tlsConfig());
        assert.equal(res.status, 201, JSON.stringify(res.json));
        work = res.json;
        assert.equal(work.name, "work");
        assert.equal(work.security, "tls");
        assert.equal(work.has_password, true);
        assert.equal(work.is_default, true, "a user's first config becomes the default");
        assert.deepEqual(work.limits, { per_minute: 30, per_day: 500, max_connections: 3 });
        assert.deepEqual(work.warnings, []);
        assert.ok(!("password" in work) && !("password_secret_id" in work));

        const [row] = await stack.sql`select * from public.user_smtp_configs where id = ${work.id}`;
        assert.ok(row.password_secret_id);
        assert.ok(!JSON.stringify(row).includes(PASSWORD));
        const [secret] = await stack.sql`
          select secret, decrypted_secret from vault.decrypted_secrets where id = ${row.password_secret_id}`;
        assert.notEqual(secret.secret, PASSWORD);
        assert.equal(secret.decrypted_secret, PASSWORD);
      });

      await t.step("verifies a TLS server: connects, authenticates, sends nothing", async () => {
        const res = await call(alice, "POST", `/${work.id}/verify`);
        assert.equal(res.status, 200, JSON.stringify(res.json));
        assert.equal(res.json.ok, true);
        assert.equal(res.json.tls, true);
        assert.equal(res.json.auth, true);
        assert.equal(typeof res.json.latency_ms, "number");
        assert.match(res.json.server_banner, /^220 /);
        assert.equal(smtps.messages().length, 0);
        const [recorded] = await stack.sql`
          select ok, error_class, latency_ms, server_banner from public.smtp_config_verifications where config_id = ${work.id}`;
        assert.equal(recorded.ok, true);
        assert.equal(recorded.error_class, null);
        assert.equal(recorded.latency_ms, res.json.latency_ms);
        assert.equal(recorded.server_banner, res.json.server_banner);
      });

      await t.step(
        "creates and verifies a STARTTLS config, with the hosted-port warning for 587-style ports",
        async () => {
          const res = await call(
            alice,
            "POST",
            "",
            tlsConfig({ name: "relay", port: starttls.port, security: "starttls" }),
          );
          assert.equal(res.status, 201);
          assert.equal(res.json.is_default, false, "the default stays where it was");
          const verified = await call(alice, "POST", "/relay/verify");
          assert.equal(verified.status, 200, JSON.stringify(verified.json));
          assert.equal(verified.json.tls, true);

          const submission = await call(
            alice,
            "POST",
            "",
            tlsConfig({ name: "office", host: "smtp.example.com", port: 587, security: "starttls" }),
          );
          assert.equal(submission.status, 201, JSON.stringify(submission.json));
          const codes = (submission.json.warnings as { code: string }[]).map((w) => w.code);
          assert.ok(codes.includes("port_blocked_on_hosted_supabase"), codes.join());
          assert.equal(submission.json.port, 587);
        },
      );

      await t.step("lists, and reads by id or by name", async () => {
        const list = await call(alice, "GET");
        assert.equal(list.status, 200);
        assert.deepEqual(list.json.configs.map((c: Config) => c.name), ["work", "office", "relay"]);
        assert.equal((await call(alice, "GET", `/${work.id}`)).json.name, "work");
        assert.equal((await call(alice, "GET", "/relay")).json.port, starttls.port);
      });

      await t.step("refuses a second config with the same name (409)", async () => {
        const res = await call(alice, "POST", "", tlsConfig());
        assert.equal(res.status, 409);
        assert.equal(res.json.error.code, "config_name_taken");
      });

      await t.step("validates fields with precise errors", async () => {
        const cases: [Record<string, unknown>, number, string, string?][] = [
          [{ port: 70000 }, 400, "invalid_request", "port"],
          [{ security: "ssl" }, 400, "invalid_request", "security"],
          [{ from_email: "not an address" }, 400, "invalid_request", "from_email"],
          [{ from_name: "Eve\r\nBcc: x@evil.example" }, 400, "invalid_header_value", "from_name"],
          [{ password: undefined }, 400, "invalid_request", "password"],
          [{ password: "nul\0byte" }, 400, "invalid_request", "password"],
          [{ name: "" }, 400, "invalid_request", "name"],
          [{ extra: true }, 400, "invalid_request"],
          [{ host: "smtp://mail.example.com" }, 400, "smtp_host_invalid"],
          [{ host: "mail example.com" }, 400, "smtp_host_invalid"],
        ];
        for (const [over, status, code, path] of cases) {
          const res = await call(
            alice,
            "POST",
            "",
            tlsConfig({ name: `v-${crypto.randomUUID().slice(0, 6)}`, ...over }),
          );
          assert.equal(res.status, status, `${JSON.stringify(over)}: ${JSON.stringify(res.json)}`);
          assert.equal(res.json.error.code, code);
          if (path) {
            const paths = (res.json.error.details.issues as { path: string }[]).map((i) => i.path);
            assert.ok(paths.includes(path), `${JSON.stringify(over)}: ${paths}`);
          }
        }
      });

      await t.step("refuses private, loopback and metadata hosts, non-SMTP ports and plaintext", async () => {
        const cases: [Record<string, unknown>, string][] = [
          [{ host: "127.0.0.1" }, "smtp_host_forbidden"],
          [{ host: "2130706433" }, "smtp_host_forbidden"],
          [{ host: "169.254.169.254", port: 465 }, "smtp_host_forbidden"],
          [{ host: "[::ffff:10.0.0.1]", port: 465 }, "smtp_host_forbidden"],
          [{ host: "metadata.google.internal", port: 465 }, "smtp_host_forbidden"],
          [{ host: "smtp.example.com", port: 22 }, "smtp_port_not_allowed"],
          [{ host: "smtp.example.com", port: 25, security: "none" }, "plaintext_not_allowed"],
        ];
        for (const [over, code] of cases) {
          const res = await call(alice, "POST", "", tlsConfig({ name: "hostile", ...over }));
          assert.equal(res.status, 422, JSON.stringify(res.json));
          assert.equal(res.json.error.code, code, JSON.stringify(over));
        }
      });

      await t.step("a refused local Mailpit is told which setting allows it", async () => {
        const mailpit = { name: "mailpit", port: 1025, username: null, password: undefined };
        const plaintext = await call(alice, "POST", "", tlsConfig({ ...mailpit, host: "10.0.0.5", security: "none" }));
        assert.equal(plaintext.json.error.code, "plaintext_not_allowed");
        assert.match(plaintext.json.error.message, /MAILROOM_ALLOW_PLAINTEXT_SMTP=true/);
        const address = await call(alice, "POST", "", tlsConfig({ ...mailpit, host: "10.0.0.5" }));
        assert.equal(address.json.error.code, "smtp_host_forbidden");
        assert.match(address.json.error.message, /MAILROOM_EGRESS_ALLOWLIST=10\.0\.0\.5:1025/);
        const name = await call(alice, "POST", "", tlsConfig({ ...mailpit, host: "mailpit" }));
        assert.equal(name.status, 400);
        assert.equal(name.json.error.code, "smtp_host_invalid");
        assert.match(name.json.error.message, /MAILROOM_EGRESS_ALLOWLIST=mailpit:1025/);
        const port = await call(alice, "POST", "", tlsConfig({ ...mailpit, host: "smtp.example.com" }));
        assert.equal(port.json.error.code, "smtp_port_not_allowed");
        assert.match(port.json.error.message, /MAILROOM_SMTP_ALLOWED_PORTS=1025/);
      });

      await t.step("verify reports precise failures", async () => {
        const hidden = await startSmtpCatcher({ mode: "starttls", tls, users, hideStartTls: true });
        const untrusted = await startSmtpCatcher({ mode: "tls", tls: await generateSelfSigned(), users });
        const stalling = await startStallingServer();
        try {
          // [config, code, whether a greeting arrived before the failure]
          const cases: [Record<string, unknown>, string, boolean][] = [
            [{ name: "no-starttls", port: hidden.port, security: "starttls" }, "smtp_tls_failed", true],
            [{ name: "self-signed", port: untrusted.port }, "smtp_tls_untrusted", false],
            [{ name: "silent", port: stalling.port }, "smtp_connect_timeout", false],
            [{ name: "closed", port: freePort() }, "smtp_connect_failed", false],
            [{ name: "wrong-password", password: "not-the-password" }, "smtp_auth_failed", true],
          ];
          for (const [over, code, greeted] of cases) {
            const created = await call(alice, "POST", "", tlsConfig(over));
            assert.equal(created.status, 201, JSON.stringify(created.json));
            const res = await call(alice, "POST", `/${over.name}/verify`);
            assert.equal(res.status, 502, `${over.name}: ${JSON.stringify(res.json)}`);
            assert.equal(res.json.error.code, code, `${over.name}`);
            assert.equal(typeof res.json.error.details.latency_ms, "number");
            assert.equal(typeof res.json.error.details.retryable, "boolean");
            const [recorded] = await stack.sql`
              select v.ok, v.error_class, v.server_banner from public.smtp_config_verifications v
              join public.user_smtp_configs c on c.id = v.config_id where c.name = ${over.name as string}`;
            const { server_banner: banner, ...outcome } = recorded;
            assert.deepEqual(outcome, { ok: false, error_class: code }, `${over.name} is recorded`);
            if (greeted) {
              assert.match(banner, /^220 /, `${over.name}: the greeting is recorded`);
              assert.equal(res.json.error.details.server_banner, banner);
            } else {
              assert.equal(banner, null, `${over.name}: no greeting arrived`);
            }
          }
          assert.equal(hidden.messages().length, 0, "no message and no credentials over a downgraded session");
        } finally {
          await hidden.close();
          await untrusted.close();
          await stalling.close();
        }
      });

      await t.step("rotates the password in place and verifies with the new one", async () => {
        const [before] = await stack
          .sql`select password_secret_id from public.user_smtp_configs where name = 'wrong-password'`;
        const res = await call(alice, "PATCH", "/wrong-password", { password: PASSWORD, name: "fixed" });
        assert.equal(res.status, 200, JSON.stringify(res.json));
        assert.equal(res.json.name, "fixed");
        const [after] = await stack.sql`
          select c.password_secret_id, s.decrypted_secret from public.user_smtp_configs c
          join vault.decrypted_secrets s on s.id = c.password_secret_id where c.name = 'fixed'`;
        assert.equal(after.password_secret_id, before.password_secret_id);
        assert.equal(after.decrypted_secret, PASSWORD);
        assert.equal((await call(alice, "POST", "/fixed/verify")).status, 200);

        const rotated = await call(alice, "PATCH", "/fixed", { password: ROTATED });
        assert.equal(rotated.status, 200);
        const [secret] = await stack
          .sql`select decrypted_secret from vault.decrypted_secrets where id = ${after.password_secret_id}`;
        assert.equal(secret.decrypted_secret, ROTATED);
      });

      await t.step("refuses an update to a forbidden host and leaves the config unchanged", async () => {
        const res = await call(alice, "PATCH", "/relay", { host: "10.1.2.3" });
        assert.equal(res.status, 422);
        assert.equal(res.json.error.code, "smtp_host_forbidden");
        assert.equal((await call(alice, "GET", "/relay")).json.host, "localhost");
        const limits = await call(alice, "PATCH", "/relay", { limits: { per_minute: 5 } });
        assert.deepEqual(limits.json.limits, { per_minute: 5, per_day: 500, max_connections: 3 });
        assert.equal((await call(alice, "PATCH", "/relay", {})).status, 400);
      });

      await t.step("keeps exactly one default when the default moves", async () => {
        const res = await call(alice, "POST", "/relay/default");
        assert.equal(res.status, 200);
        assert.equal(res.json.is_default, true);
        const defaults = await stack.sql`
          select name from public.user_smtp_configs where user_id = ${alice.id} and is_default`;
        assert.deepEqual(defaults.map((r) => r.name), ["relay"]);
        await Promise.all([call(alice, "POST", "/work/default"), call(alice, "POST", "/relay/default")]);
        const [{ n }] = await stack.sql`
          select count(*)::int as n from public.user_smtp_configs where user_id = ${alice.id} and is_default`;
        assert.equal(n, 1);
        assert.equal((await call(alice, "PATCH", "/work", { is_default: true })).json.is_default, true);
      });

      await t.step("deactivated configs cannot send; activated ones can", async () => {
        assert.equal((await call(alice, "POST", "/work/deactivate")).json.is_active, false);
        const blocked = await stack.invoke("send-email", {
          token: alice.token,
          body: { to: "x@example.com", text: "x" },
        });
        assert.equal(await errorCode(blocked, 409), "config_inactive");
        assert.equal((await call(alice, "POST", "/work/activate")).json.is_active, true);
        const sent = await stack.invoke("send-email", { token: alice.token, body: { to: "x@example.com", text: "x" } });
        assert.equal(sent.status, 200, await sent.clone().text());
        await sent.body?.cancel();
      });

      await t.step("rate-limits sends per config with 429 and Retry-After", async () => {
        await call(alice, "POST", "", tlsConfig({ name: "tiny", limits: { per_minute: 2, per_day: 100 } }));
        for (let i = 0; i < 2; i++) {
          const res = await stack.invoke("send-email", {
            token: alice.token,
            body: { to: "x@example.com", text: `x ${i}`, config: "tiny" },
          });
          assert.equal(res.status, 200);
          await res.body?.cancel();
        }
        const limited = await stack.invoke("send-email", {
          token: alice.token,
          body: { to: "x@example.com", text: "x 2", config: "tiny" },
        });
        const retryAfter = Number(limited.headers.get("retry-after"));
        assert.equal(await errorCode(limited, 429), "rate_limited");
        assert.ok(retryAfter >= 1 && retryAfter <= 60, `retry-after ${retryAfter}`);
      });

      await t.step("other users see, change, verify and delete nothing of Alice's", async () => {
        for (
          const [method, path] of [["GET", `/${work.id}`], ["PATCH", `/${work.id}`], ["DELETE", `/${work.id}`], [
            "POST",
            `/${work.id}/verify`,
          ], ["POST", `/${work.id}/default`]]
        ) {
          const res = await call(bob, method, path, method === "PATCH" ? { name: "mine" } : undefined);
          assert.equal(res.status, 404, `${method} ${path}`);
          assert.equal(res.json.error.code, "config_not_found");
        }
        assert.deepEqual((await call(bob, "GET")).json.configs, []);
        assert.equal((await call(alice, "GET", `/${work.id}`)).json.name, "work");
      });

      await t.step("deletes a config together with its Vault secret", async () => {
        const [row] = await stack.sql`select password_secret_id from public.user_smtp_configs where id = ${work.id}`;
        const res = await call(alice, "DELETE", `/${work.id}`);
        assert.deepEqual(res.json, { id: work.id, deleted: true });
        assert.equal((await call(alice, "GET", `/${work.id}`)).status, 404);
        const secrets = await stack.sql`select id from vault.secrets where id = ${row.password_secret_id}`;
        assert.equal(secrets.length, 0);
      });

      await t.step("answers unknown routes and methods clearly", async () => {
        assert.equal((await call(alice, "POST", "/relay/explode")).json.error.code, "route_not_found");
        assert.equal((await call(alice, "PUT", "/relay")).status, 405);
        assert.equal((await call(alice, "GET", "/%E0%A4%A")).json.error.code, "invalid_path");
        assert.equal((await call(alice, "GET", "/relay%00")).json.error.code, "invalid_path");
        const anonymous = await stack.invoke("smtp-configs", { method: "GET" });
        assert.equal(await errorCode(anonymous, 401), "missing_token");
      });
    });

    await t.step("the password never appears in a response or a log line", () => {
      for (const secret of [PASSWORD, ROTATED]) {
        assert.ok(!responses.some((r) => r.includes(secret)), "password in a response");
        assert.ok(!logs.includes(secret), "password in the logs");
      }
    });

    await smtps.close();
    await starttls.close();
    await stack.close();
  },
});

Deno.test({
  name: "smtp-configs on a platform that blocks port 587",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const stack = await startTestStack({ MAILROOM_PLATFORM_BLOCKED_PORTS: "587" });
    try {
      const user = await stack.createUser();
      await t.step("saves the config with a warning, then refuses to send before any network", async () => {
        const res = await stack.invoke("smtp-configs", {
          token: user.token,
          body: {
            name: "submission",
            host: "smtp.example.com",
            port: 587,
            security: "starttls",
            username: "u",
            password: "p",
            from_email: user.email,
          },
        });
        const created = await body<Config>(res);
        assert.equal(res.status, 201, JSON.stringify(created));
        assert.ok(created.warnings?.some((w) => w.code === "port_blocked_by_platform"));
        const send = await stack.invoke("send-email", { token: user.token, body: { to: "x@example.com", text: "x" } });
        assert.equal(await errorCode(send, 422), "smtp_port_blocked_by_platform");
        const verify = await stack.invoke("smtp-configs/submission/verify", { token: user.token });
        assert.equal(await errorCode(verify, 422), "smtp_port_blocked_by_platform");
      });
    } finally {
      await stack.close();
    }
  },
});

Deno.test({
  name: "smtp-configs verify is limited per user, also under concurrency",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const stack = await startTestStack({ MAILROOM_VERIFY_PER_MINUTE: "2" });
    const smtps = await startSmtpCatcher({
      mode: "tls",
      tls: { key: stack.certs.key, cert: stack.certs.cert },
      users: { [SMTP_USER]: PASSWORD },
    });
    try {
      const user = await stack.createUser();
      await stack.createConfig(user, { name: "main", port: smtps.port, username: SMTP_USER, password: PASSWORD });
      const attempts = await Promise.all(
        Array.from({ length: 5 }, () => stack.invoke("smtp-configs/main/verify", { token: user.token })),
      );
      const statuses = attempts.map((res) => res.status).sort();
      assert.deepEqual(statuses, [200, 200, 429, 429, 429]);
      const limited = attempts.find((res) => res.status === 429)!;
      const retryAfter = Number(limited.headers.get("retry-after"));
      assert.ok(retryAfter >= 1 && retryAfter <= 60, `retry-after ${retryAfter}`);
      assert.equal(await errorCode(limited, 429), "rate_limited");
      await Promise.all(attempts.filter((res) => res !== limited).map((res) => res.body?.cancel()));
      const [{ n }] = await stack.sql`select count(*)::int as n from public.smtp_config_verifications`;
      assert.equal(n, 2, "refused attempts open no SMTP session and leave no row");
    } finally {
      await smtps.close();
      await stack.close();
    }
  },
});

Deno.test({
  name: "send limits hold under concurrency, exactly, in O(1) per send",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const stack = await startTestStack();
    const smtps = await startSmtpCatcher({
      mode: "tls",
      tls: { key: stack.certs.key, cert: stack.certs.cert },
      users: { [SMTP_USER]: PASSWORD },
    });
    try {
      const user = await stack.createUser();
      const id = await stack.createConfig(user, {
        name: "main",
        port: smtps.port,
        username: SMTP_USER,
        password: PASSWORD,
      });
      await stack.sql`update public.user_smtp_configs set max_per_minute = 5 where id = ${id}`;

      await t.step("twenty concurrent sends through a 5-per-minute config: exactly five go out", async () => {
        const sends = await Promise.all(
          Array.from(
            { length: 20 },
            (_, i) => stack.invoke("send-email", { token: user.token, body: { to: `r${i}@example.com`, text: "x" } }),
          ),
        );
        const statuses = sends.map((res) => res.status);
        assert.equal(statuses.filter((s) => s === 200).length, 5, statuses.join(","));
        assert.equal(statuses.filter((s) => s === 429).length, 15, statuses.join(","));
        const limited = sends.find((res) => res.status === 429)!;
        const error = (await body<{ error: { code: string; details: Record<string, unknown> } }>(limited)).error;
        assert.equal(error.code, "rate_limited");
        assert.deepEqual([error.details.limit, error.details.per, error.details.config], [5, "minute", "main"]);
        const retryAfter = Number(limited.headers.get("retry-after"));
        assert.ok(retryAfter >= 1 && retryAfter <= 60, `retry-after ${retryAfter}`);
        await Promise.all(sends.filter((res) => res !== limited).map((res) => res.body?.cancel()));
        assert.equal((await smtps.waitForMessages(5)).length, 5);
        const [{ n }] = await stack.sql`select count(*)::int as n from public.email_audit_log where config_id = ${id}`;
        assert.equal(n, 5, "refused sends leave no audit row");
      });

      await t.step("the budget's cost does not grow with the day's volume: two rows per window", async () => {
        const [{ rows }] = await stack.sql`
          select count(*)::int as rows from private.send_budgets where config_id = ${id}`;
        assert.equal(rows, 2);
        const [{ slots }] = await stack.sql`
          select count(*)::int as slots from private.send_slots where config_id = ${id} and per = 'minute'`;
        assert.equal(slots, 5, "the minute's ring never holds more than its limit");
      });
    } finally {
      await smtps.close();
      await stack.close();
    }
  },
});
