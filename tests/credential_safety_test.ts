// Credential safety end to end, as an attacker holding a valid user token (or a
// prompt-injected agent) would try it: a stored password never follows its config to
// another server or account; guessing and probing are limited per user in the database,
// over a record that deleting configs cannot reset; and what is the caller's doing
// (concurrent default swaps, odd paths, a deleted user, a database that is down) gets a
// stable 4xx/503, never a 500.
import assert from "node:assert/strict";
import { SMTPServer } from "smtp-server";
import { body, errorCode, startTestStack, type TestStack, type TestUser } from "./harness.ts";
import { databaseApiError } from "../supabase/functions/_shared/db.ts";
import { ApiError } from "../supabase/functions/_shared/http.ts";
import { authVerdict } from "../supabase/functions/_shared/store/credential_guard.ts";
import { type SmtpCatcher, startSmtpCatcher } from "../local/smtp_catcher.ts";
import { freePort } from "../local/postgres.ts";

const SMTP_USER = "agent";
const PASSWORD = "home-server-pa55word";
const OTHER_PASSWORD = "other-server-pa55word";

interface Config {
  id: string;
  name: string;
  is_default: boolean;
  has_password: boolean;
  warnings?: { code: string }[];
}

/** An implicit-TLS SMTP server that records every login it is offered and accepts only `accept`. */
interface RecordingServer {
  port: number;
  connections: number;
  logins: { username: string; password: string }[];
  close(): Promise<void>;
}

async function startRecordingServer(
  tls: { key: string; cert: string },
  accept: { username: string; password: string },
): Promise<RecordingServer> {
  const recorder = { connections: 0, logins: [] as { username: string; password: string }[] };
  const server = new SMTPServer({
    secure: true,
    key: tls.key,
    cert: tls.cert,
    logger: false,
    disableReverseLookup: true,
    authMethods: ["PLAIN", "LOGIN"],
    onConnect(_session, callback) {
      recorder.connections++;
      callback();
    },
    onAuth(auth, _session, callback) {
      const login = { username: auth.username ?? "", password: auth.password ?? "" };
      recorder.logins.push(login);
      if (login.username === accept.username && login.password === accept.password) {
        return callback(null, { user: login.username });
      }
      callback(Object.assign(new Error("Authentication failed"), { responseCode: 535 }));
    },
    onData(stream, _session, callback) {
      stream.resume();
      stream.on("end", () => callback());
    },
  });
  server.on("error", () => {});
  const port = await new Promise<number>((resolve) => {
    server.listen(0, "127.0.0.1", () => resolve((server.server.address() as { port: number }).port));
  });
  return {
    port,
    get connections() {
      return recorder.connections;
    },
    logins: recorder.logins,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

Deno.test({
  name: "credential safety",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const stack: TestStack = await startTestStack();
    const tls = { key: stack.certs.key, cert: stack.certs.cert };
    const home: SmtpCatcher = await startSmtpCatcher({ mode: "tls", tls, users: { [SMTP_USER]: PASSWORD } });
    const other = await startRecordingServer(tls, { username: SMTP_USER, password: OTHER_PASSWORD });

    const call = async (user: TestUser, method: string, path = "", payload?: unknown) => {
      const res = await stack.invoke(`smtp-configs${path}`, { token: user.token, method, body: payload });
      return { status: res.status, json: await body(res), headers: res.headers };
    };
    const send = async (user: TestUser, config: string) => {
      const res = await stack.invoke("send-email", {
        token: user.token,
        // Each its own email (the same one twice would be refused as duplicate_send).
        body: { to: "someone@example.com", subject: crypto.randomUUID(), text: "hi", config },
      });
      return { status: res.status, json: await body(res) };
    };
    const config = (user: TestUser, over: Record<string, unknown> = {}) => ({
      name: "work",
      host: "localhost",
      port: home.port,
      security: "tls",
      username: SMTP_USER,
      password: PASSWORD,
      from_email: user.email,
      ...over,
    });
    const asDataApi = stack.asDataApi;
    /** Lower a database limit for one step; restored afterwards. */
    const withLimit = async (name: string, max: number, fn: () => Promise<void>) => {
      const [{ max_events }] = await stack.sql`
        select max_events from private.credential_limits where name = ${name}`;
      await stack.sql`update private.credential_limits set max_events = ${max} where name = ${name}`;
      try {
        await fn();
      } finally {
        await stack.sql`update private.credential_limits set max_events = ${max_events} where name = ${name}`;
      }
    };
    const retryAfter = (headers: Headers) => Number(headers.get("retry-after"));

    try {
      // A stored password never follows the config ---------------------------------------------
      await t.step("moving a config to another server drops its password: verify and send get 422", async () => {
        const alice = await stack.createUser();
        const created = await call(alice, "POST", "", config(alice));
        assert.equal(created.status, 201, JSON.stringify(created.json));
        assert.equal((await call(alice, "POST", "/work/verify")).status, 200);
        const [{ password_secret_id: secretId }] = await stack.sql`
          select password_secret_id from public.user_smtp_configs where user_id = ${alice.id}`;

        const moved = await call(alice, "PATCH", "/work", { port: other.port });
        assert.equal(moved.status, 200, JSON.stringify(moved.json));
        assert.equal(moved.json.has_password, false);
        assert.deepEqual((moved.json as unknown as Config).warnings?.map((w) => w.code), ["password_cleared"]);
        assert.equal((await stack.sql`select id from vault.secrets where id = ${secretId}`).length, 0);

        const verify = await call(alice, "POST", "/work/verify");
        assert.equal(verify.status, 422, JSON.stringify(verify.json));
        assert.equal((verify.json as { error: { code: string } }).error.code, "config_incomplete");
        const sent = await send(alice, "work");
        assert.equal(sent.status, 422, JSON.stringify(sent.json));
        assert.equal((sent.json as { error: { code: string } }).error.code, "config_incomplete");
        // A scheduled send or a batch is refused now too, not left to fail at send time.
        const scheduled = await stack.invoke("send-email", {
          token: alice.token,
          body: {
            to: "someone@example.com",
            text: "hi",
            config: "work",
            scheduled_at: new Date(Date.now() + 3_600_000),
          },
        });
        assert.equal(await errorCode(scheduled, 422), "config_incomplete");
        const bulk = await stack.invoke("send-bulk", {
          token: alice.token,
          body: { config: "work", text: "hi", recipients: [{ email: "someone@example.com" }] },
        });
        assert.equal(await errorCode(bulk, 422), "config_incomplete");
        assert.equal(other.connections, 0, "the new server was never contacted");
        assert.deepEqual(other.logins, []);
      });

      await t.step("a new server and a password in one PATCH: only that password reaches the new server", async () => {
        const bob = await stack.createUser();
        assert.equal((await call(bob, "POST", "", config(bob))).status, 201);
        const moved = await call(bob, "PATCH", "/work", { port: other.port, password: OTHER_PASSWORD });
        assert.equal(moved.status, 200, JSON.stringify(moved.json));
        assert.equal(moved.json.has_password, true);
        assert.deepEqual(moved.json.warnings, []);
        const verify = await call(bob, "POST", "/work/verify");
        assert.equal(verify.status, 200, JSON.stringify(verify.json));
        assert.deepEqual(other.logins, [{ username: SMTP_USER, password: OTHER_PASSWORD }]);
        assert.ok(!other.logins.some((l) => l.password === PASSWORD), "the home password never left for it");
      });

      await t.step("a send racing a PATCH never pairs the new password with the old server", async () => {
        const liz = await stack.createUser();
        const created = await call(liz, "POST", "", config(liz, { name: "racing" }));
        const id = (created.json as { id: string }).id;
        const before = other.logins.length;
        // The PATCH's statements (new port, then the new password), held open while a send starts.
        let release!: () => void;
        let patched!: () => void;
        const gate = new Promise<void>((resolve) => release = resolve);
        const applied = new Promise<void>((resolve) => patched = resolve);
        const patch = asDataApi(liz, async (tx) => {
          await tx`update public.user_smtp_configs set port = ${other.port} where id = ${id}`;
          await tx`select private.set_smtp_config_password(${id}::uuid, ${OTHER_PASSWORD})`;
          patched();
          await gate;
        });
        await applied;
        const sending = send(liz, "racing");
        // Wait (with a deadline) until the send is blocked on the PATCH's row lock.
        for (let i = 0;; i++) {
          const [{ waiting }] = await stack.sql`
            select count(*)::int as waiting from pg_stat_activity where wait_event_type = 'Lock'`;
          if (waiting > 0) break;
          if (i > 200) throw new Error("the send never waited for the PATCH");
          await new Promise((r) => setTimeout(r, 10));
        }
        release();
        await patch;
        const result = await sending;
        assert.equal(result.status, 200, JSON.stringify(result.json));
        const logins = other.logins.slice(before);
        assert.deepEqual(logins.map((l) => l.password), [OTHER_PASSWORD], "the new password went to the new server");
      });

      await t.step("a new username or security drops the password; a new name, sender or limit keeps it", async () => {
        const carol = await stack.createUser();
        assert.equal((await call(carol, "POST", "", config(carol))).status, 201);
        const renamed = await call(carol, "PATCH", "/work", {
          name: "office",
          from_name: "Carol's agent",
          limits: { per_minute: 5 },
          is_active: true,
        });
        assert.equal(renamed.json.has_password, true);
        assert.deepEqual(renamed.json.warnings, []);
        const sameHost = await call(carol, "PATCH", "/office", { host: "localhost", port: home.port });
        assert.equal(sameHost.json.has_password, true, "naming the same destination again keeps the password");

        const user = await call(carol, "PATCH", "/office", { username: "ceo" });
        assert.equal(user.json.has_password, false, "the password belonged to another account");
        assert.deepEqual((user.json as unknown as Config).warnings?.map((w) => w.code), ["password_cleared"]);

        await call(carol, "PATCH", "/office", { username: SMTP_USER, password: PASSWORD });
        const security = await call(carol, "PATCH", "/office", { security: "starttls" });
        assert.equal(security.json.has_password, false);
      });

      await t.step("an UPDATE through the Data API drops the password as well", async () => {
        const dave = await stack.createUser();
        assert.equal((await call(dave, "POST", "", config(dave))).status, 201);
        await asDataApi(dave, (tx) => tx`update public.user_smtp_configs set host = 'smtp.example.com'`);
        const read = await call(dave, "GET", "/work");
        assert.equal(read.json.host, "smtp.example.com");
        assert.equal(read.json.has_password, false);
        assert.equal((await send(dave, "work")).status, 422);
      });

      // Guessing and probing are limited for real ------------------------------------------------
      await t.step("deleting and recreating a config does not reset the verification limit", async () => {
        await withLimit("verification", 3, async () => {
          const erin = await stack.createUser();
          assert.equal((await call(erin, "POST", "", config(erin))).status, 201);
          for (let i = 0; i < 3; i++) assert.equal((await call(erin, "POST", "/work/verify")).status, 200);
          const limited = await call(erin, "POST", "/work/verify");
          assert.equal(limited.status, 429);
          assert.equal((limited.json as { error: { code: string } }).error.code, "rate_limited");
          assert.ok(retryAfter(limited.headers) >= 1 && retryAfter(limited.headers) <= 60);

          assert.equal((await call(erin, "DELETE", "/work")).status, 200);
          assert.equal((await call(erin, "POST", "", config(erin))).status, 201);
          const again = await call(erin, "POST", "/work/verify");
          assert.equal(again.status, 429, "the recreated config is still limited");
          assert.equal((again.json as { error: { code: string } }).error.code, "rate_limited");
        });
      });

      await t.step("config creation is limited per user, through the API and the Data API", async () => {
        await withLimit("config_creation", 3, async () => {
          const frank = await stack.createUser();
          for (const name of ["a", "b", "c"]) {
            assert.equal((await call(frank, "POST", "", config(frank, { name }))).status, 201);
          }
          const limited = await call(frank, "POST", "", config(frank, { name: "d" }));
          assert.equal(limited.status, 429, JSON.stringify(limited.json));
          assert.equal((limited.json as { error: { code: string } }).error.code, "config_creation_limited");
          assert.ok(retryAfter(limited.headers) > 3000 && retryAfter(limited.headers) <= 3600);
          assert.equal(limited.json.error && (limited.json.error as { details: { limit: number } }).details.limit, 3);

          assert.equal((await call(frank, "DELETE", "/a")).status, 200);
          assert.equal((await call(frank, "POST", "", config(frank, { name: "d" }))).status, 429);
          await assert.rejects(
            asDataApi(frank, (tx) =>
              tx`insert into public.user_smtp_configs (name, host, port, from_email)
                 values ('e', 'smtp.example.com', 465, ${frank.email})`),
            (error: { code?: string; message?: string }) =>
              error.code === "PGRST" && error.message!.includes("config_creation_limited"),
          );
          const grace = await stack.createUser();
          assert.equal((await call(grace, "POST", "", config(grace))).status, 201, "other users are not affected");
        });
      });

      await t.step("password changes are limited per user", async () => {
        await withLimit("password_change", 3, async () => {
          const heidi = await stack.createUser();
          assert.equal((await call(heidi, "POST", "", config(heidi, { password: "guess-1" }))).status, 201);
          assert.equal((await call(heidi, "PATCH", "/work", { password: "guess-2" })).status, 200);
          assert.equal((await call(heidi, "PATCH", "/work", { password: "guess-3" })).status, 200);
          const limited = await call(heidi, "PATCH", "/work", { password: "guess-4" });
          assert.equal(limited.status, 429);
          assert.equal((limited.json as { error: { code: string } }).error.code, "password_change_limited");
          assert.ok(retryAfter(limited.headers) >= 1);
          const [stored] = await stack.sql`
            select s.decrypted_secret from public.user_smtp_configs c
            join vault.decrypted_secrets s on s.id = c.password_secret_id where c.user_id = ${heidi.id}`;
          assert.equal(stored.decrypted_secret, "guess-3", "the refused password was not stored");
        });
      });

      await t.step("after 5 wrong passwords new guesses get 429; retries and proven credentials do not", async () => {
        const ivan = await stack.createUser();
        assert.equal((await call(ivan, "POST", "", config(ivan, { name: "good" }))).status, 201);
        assert.equal((await call(ivan, "POST", "/good/verify")).status, 200, "proves the good credentials");
        assert.equal((await call(ivan, "POST", "", config(ivan, { name: "guess", password: "wrong-0" }))).status, 201);
        for (let i = 1; i <= 5; i++) {
          const failed = await call(ivan, "POST", "/guess/verify");
          assert.equal(failed.status, 502);
          assert.equal((failed.json as { error: { code: string } }).error.code, "smtp_auth_failed");
          if (i < 5) await call(ivan, "PATCH", "/guess", { password: `wrong-${i}` });
        }
        const retried = await call(ivan, "POST", "/guess/verify");
        assert.equal(retried.status, 502, "the same wrong password again is no new guess");
        await call(ivan, "PATCH", "/guess", { password: "wrong-5" });
        const refused = await call(ivan, "POST", "/guess/verify");
        assert.equal(refused.status, 429, JSON.stringify(refused.json));
        assert.equal((refused.json as { error: { code: string } }).error.code, "auth_attempts_exceeded");
        assert.ok(retryAfter(refused.headers) > 3000 && retryAfter(refused.headers) <= 3600);
        const [{ n }] = await stack.sql`
          select count(*)::int as n from public.smtp_config_verifications v
          join public.user_smtp_configs c on c.id = v.config_id where c.name = 'guess' and c.user_id = ${ivan.id}`;
        assert.equal(n, 6, "the refused attempt opened no session and left no row");

        assert.equal((await call(ivan, "DELETE", "/guess")).status, 200);
        assert.equal((await call(ivan, "POST", "", config(ivan, { name: "guess", password: "wrong-2" }))).status, 201);
        assert.equal((await call(ivan, "POST", "/guess/verify")).status, 429, "recreating the config does not help");
        await call(ivan, "PATCH", "/guess", { password: PASSWORD });
        assert.equal((await call(ivan, "POST", "/guess/verify")).status, 429, "unproven until a login succeeds");

        assert.equal((await call(ivan, "POST", "/good/verify")).status, 200, "proven credentials keep working");
        assert.equal((await send(ivan, "good")).status, 200);
        await call(ivan, "PATCH", "/good", { password: PASSWORD });
        assert.equal(
          (await call(ivan, "POST", "/good/verify")).status,
          429,
          "a new password is unproven again, even the same one",
        );
      });

      await t.step("send-email is no password oracle: its failed logins count, then 429 before any SMTP", async () => {
        const kim = await stack.createUser();
        assert.equal((await call(kim, "POST", "", config(kim, { name: "oracle", password: "guess-0" }))).status, 201);
        const before = home.messages().length;
        for (let i = 1; i <= 5; i++) {
          const failed = await send(kim, "oracle");
          assert.equal(failed.status, 502);
          assert.equal((failed.json as { error: { code: string } }).error.code, "smtp_auth_failed");
          await call(kim, "PATCH", "/oracle", { password: `guess-${i}` });
        }
        const refused = await send(kim, "oracle");
        assert.equal(refused.status, 429, JSON.stringify(refused.json));
        assert.equal((refused.json as { error: { code: string } }).error.code, "auth_attempts_exceeded");
        await call(kim, "PATCH", "/oracle", { password: PASSWORD });
        assert.equal((await send(kim, "oracle")).status, 429, "even the right password waits: no oracle");
        assert.equal(home.messages().length, before, "nothing was delivered");
      });

      await t.step(
        "the stop button answers before the guard: a stopped send reads no password, costs no login",
        async () => {
          const lee = await stack.createUser();
          assert.equal((await call(lee, "POST", "", config(lee, { name: "held", password: "wrong" }))).status, 201);
          for (let i = 1; i <= 5; i++) {
            assert.equal((await send(lee, "held")).status, 502);
            await call(lee, "PATCH", "/held", { password: `wrong-${i}` });
          }
          const stop = await stack.invoke("oversight/stop", { token: lee.token, body: { config: "held" } });
          assert.equal(stop.status, 200, JSON.stringify(await body(stop)));
          const attempts = () =>
            stack.sql<{ n: number }[]>`
            select count(*)::int as n from private.credential_events where user_id = ${lee.id} and kind = 'auth_attempt'`
              .then(([row]) => row.n);
          const before = await attempts();
          const stopped = await send(lee, "held");
          assert.equal(stopped.status, 409, JSON.stringify(stopped.json));
          assert.equal((stopped.json as { error: { code: string } }).error.code, "sending_stopped");
          assert.equal(await attempts(), before, "no login was begun for a stopped send");
        },
      );

      await t.step("concurrent guesses with different passwords cannot slip past the limit", async () => {
        const judy = await stack.createUser();
        for (let i = 0; i < 10; i++) {
          const created = await call(
            judy,
            "POST",
            "",
            config(judy, { name: `g${i}`, port: other.port, password: `guess-${i}` }),
          );
          assert.equal(created.status, 201);
        }
        const attempts = await Promise.all(
          Array.from({ length: 10 }, (_, i) => stack.invoke(`smtp-configs/g${i}/verify`, { token: judy.token })),
        );
        const codes = await Promise.all(
          attempts.map(async (res) => `${res.status} ${(await body(res) as { error: { code: string } }).error.code}`),
        );
        assert.deepEqual(codes.sort(), [
          ...Array(5).fill("429 auth_attempts_exceeded"),
          ...Array(5).fill("502 smtp_auth_failed"),
        ]);
        assert.equal(other.logins.filter((l) => l.password.startsWith("guess-")).length, 5);
      });

      await t.step("parallel logins with the same new credentials are one attempt, not many", async () => {
        const kate = await stack.createUser();
        assert.equal((await call(kate, "POST", "", config(kate, { name: "fresh" }))).status, 201);
        const sends = await Promise.all(Array.from({ length: 8 }, () => send(kate, "fresh")));
        assert.deepEqual(sends.map((r) => r.status), Array(8).fill(200), JSON.stringify(sends.map((r) => r.json)));
      });

      // No 500 for what is the caller's doing -------------------------------------------------------
      await t.step(
        "concurrent default swaps, PATCHes and creates answer 200/201 or 409; one default remains",
        async () => {
          const kim = await stack.createUser();
          for (const name of ["a", "b", "c"]) {
            assert.equal(
              (await call(kim, "POST", "", config(kim, { name, username: null, password: undefined }))).status,
              201,
            );
          }
          const requests = Array.from({ length: 20 }, (_, i) => {
            switch (i % 4) {
              case 0:
                return call(kim, "POST", "/a/default");
              case 1:
                return call(kim, "PATCH", "/b", { is_default: true });
              case 2:
                return call(
                  kim,
                  "POST",
                  "",
                  config(kim, { name: `n${i}`, is_default: true, username: null, password: undefined }),
                );
              default:
                return call(kim, "POST", "/c/default");
            }
          });
          const statuses = (await Promise.all(requests)).map((r) => r.status);
          assert.ok(statuses.every((s) => s === 200 || s === 201 || s === 409), statuses.join());
          // 409 is only the last resort: changes are serialised per user, so none should need it.
          assert.deepEqual(statuses.filter((s) => s === 409), [], statuses.join());
          const [{ n }] = await stack.sql`
          select count(*)::int as n from public.user_smtp_configs where user_id = ${kim.id} and is_default`;
          assert.equal(n, 1);
        },
      );

      await t.step("a NUL or control character in a path segment is 400 invalid_path", async () => {
        const leo = await stack.createUser();
        for (const [method, path] of [["GET", "/%00"], ["POST", "/work%00/verify"], ["PATCH", "/a%0Ab"]]) {
          const res = await stack.invoke(`smtp-configs${path}`, {
            token: leo.token,
            method,
            body: method === "PATCH" ? { name: "x" } : undefined,
          });
          assert.equal(await errorCode(res, 400), "invalid_path", `${method} ${path}`);
        }
      });

      await t.step("a token of a user deleted from auth.users gets 401 user_not_found", async () => {
        const mallory = await stack.createUser();
        await stack.sql`delete from auth.users where id = ${mallory.id}`;
        const res = await stack.invoke("smtp-configs", { token: mallory.token, body: config(mallory) });
        assert.equal(await errorCode(res, 401), "user_not_found");
      });
    } finally {
      await home.close();
      await other.close();
      await stack.close();
    }
  },
});

Deno.test({
  name: "a database that cannot be reached answers 503 database_unavailable with Retry-After",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const stack = await startTestStack({ SUPABASE_DB_URL: `postgres://postgres@127.0.0.1:${freePort()}/postgres` });
    try {
      const user = await stack.createUser();
      const requests = [
        stack.invoke("smtp-configs", { token: user.token, method: "GET" }),
        stack.invoke("smtp-configs/work/verify", { token: user.token }),
        stack.invoke("send-email", { token: user.token, body: { to: "x@example.com", text: "x" } }),
      ];
      for (const res of await Promise.all(requests)) {
        assert.equal(res.headers.get("retry-after"), "5");
        assert.equal(await errorCode(res, 503), "database_unavailable");
      }
    } finally {
      await stack.close();
    }
  },
});

Deno.test("databaseApiError maps what is not a bug to a stable status and code", async (t) => {
  const mapped = (error: unknown) => {
    const e = databaseApiError(error);
    return e && { status: e.status, code: e.code, retryAfter: e.headers?.["retry-after"] };
  };
  await t.step("a limit raised as PGRST becomes that status, code, details and Retry-After", () => {
    const e = databaseApiError({
      code: "PGRST",
      message: JSON.stringify({ code: "auth_attempts_exceeded", message: "At most 5 ..." }),
      detail: JSON.stringify({
        status: 429,
        headers: { "Retry-After": "42" },
        details: { limit: 5, per: "hour", retry_after_seconds: 42 },
      }),
    });
    assert.ok(e instanceof ApiError);
    assert.deepEqual(
      { status: e.status, code: e.code, details: e.details, headers: e.headers },
      {
        status: 429,
        code: "auth_attempts_exceeded",
        details: { limit: 5, per: "hour", retry_after_seconds: 42 },
        headers: { "retry-after": "42" },
      },
    );
    assert.equal(databaseApiError({ code: "PGRST", message: "not json", detail: "{}" }), undefined);
  });
  await t.step("an unreachable or refusing database is 503 database_unavailable", () => {
    for (
      const code of [
        "ECONNREFUSED",
        "CONNECT_TIMEOUT",
        "CONNECTION_CLOSED",
        "CONNECTION_ENDED",
        "57P01",
        "57P03",
        "53300",
        "08006",
      ]
    ) {
      assert.deepEqual(mapped({ code }), { status: 503, code: "database_unavailable", retryAfter: "5" }, code);
    }
  });
  await t.step("a missing owner is 401 user_not_found; other foreign keys stay bugs", () => {
    assert.deepEqual(mapped({ code: "23503", constraint_name: "user_smtp_configs_user_id_fkey" }), {
      status: 401,
      code: "user_not_found",
      retryAfter: undefined,
    });
    assert.equal(mapped({ code: "23503", constraint_name: "email_audit_log_config_id_fkey" }), undefined);
  });
  await t.step("a deadlock or serialization failure is 409 concurrent_update", () => {
    for (const code of ["40P01", "40001"]) assert.equal(mapped({ code })?.status, 409);
  });
  await t.step("ApiErrors and unknown errors pass through", () => {
    assert.equal(databaseApiError(new ApiError(404, "config_not_found", "x")), undefined);
    assert.equal(databaseApiError({ code: "42P01" }), undefined);
    assert.equal(databaseApiError(new Error("boom")), undefined);
  });
});

Deno.test("authVerdict reads a session's outcome as a login verdict", () => {
  assert.equal(authVerdict(undefined), true, "a session that succeeded logged in");
  assert.equal(authVerdict("smtp_auth_failed"), false);
  for (const code of ["smtp_recipients_rejected", "smtp_sender_deferred", "smtp_outcome_unknown"]) {
    assert.equal(authVerdict(code), true, `${code} comes after the login`);
  }
  for (const code of ["smtp_connect_failed", "smtp_tls_untrusted", "smtp_auth_deferred", "smtp_host_forbidden"]) {
    assert.equal(authVerdict(code), null, `${code}: the login was never judged`);
  }
});
