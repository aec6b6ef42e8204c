// send-email reuses SMTP connections within a function instance: real Postgres, a real SMTP
// server over real sockets (the scripted one, counting connections and logins).
import assert from "node:assert/strict";
import { body, startTestStack, type TestStack, type TestUser } from "./harness.ts";
import { type ScriptedSmtp, startScriptedSmtp } from "./scripted_smtp.ts";
import { createSessionPool } from "../supabase/functions/_shared/smtp/pool.ts";
import { SmtpSession } from "../supabase/functions/_shared/smtp/session.ts";

const IDLE_MS = 1_500;

async function send(stack: TestStack, user: TestUser, to = "friend@example.com"): Promise<Response> {
  return await stack.invoke("send-email", {
    token: user.token,
    body: { to, subject: "pooled", text: `hi ${crypto.randomUUID()}` },
  });
}

async function sendOk(stack: TestStack, user: TestUser, to?: string): Promise<void> {
  const res = await send(stack, user, to);
  const answer = await body(res);
  assert.equal(res.status, 200, JSON.stringify(answer));
}

const logins = (smtp: ScriptedSmtp) => smtp.transcript().filter((line) => /^AUTH /i.test(line)).length;

async function until(check: () => boolean, ms = 5_000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 20));
  }
}

Deno.test({
  name: "send-email reuses SMTP connections per config within an instance",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const stack = await startTestStack({
      MAILROOM_ALLOW_PLAINTEXT_SMTP: "true",
      MAILROOM_SMTP_POOL_MAX_CONNECTIONS: "2",
      MAILROOM_SMTP_POOL_IDLE_MS: String(IDLE_MS),
      // The same server under two names.
      MAILROOM_EGRESS_ALLOWLIST: "localhost,127.0.0.1",
    });
    // Any login is accepted, so a changed password shows as a new AUTH, not as a refusal.
    const smtp = await startScriptedSmtp({ extensions: ["PIPELINING", "AUTH PLAIN"], authReply: () => "235 2.7.0 ok" });
    try {
      const alice = await stack.createUser();
      const bob = await stack.createUser();
      const aliceConfig = await stack.createConfig(alice, {
        port: smtp.port,
        security: "none",
        username: "mailer",
        password: "first",
      });
      await stack.createConfig(bob, { port: smtp.port, security: "none", username: "mailer", password: "first" });

      await t.step("consecutive sends through one config share one connection and one login", async () => {
        for (let i = 0; i < 5; i++) await sendOk(stack, alice, `seq${i}@example.com`);
        assert.equal(smtp.connections(), 1);
        assert.equal(logins(smtp), 1);
        assert.equal(smtp.messages().length, 5);
      });

      await t.step("concurrent sends open at most MAILROOM_SMTP_POOL_MAX_CONNECTIONS; each goes out once", async () => {
        const results = await Promise.all(
          Array.from({ length: 12 }, (_, i) => send(stack, alice, `burst${i}@example.com`)),
        );
        for (const res of results) assert.equal(res.status, 200, await res.text());
        assert.ok(smtp.peakConnections() <= 3, `peak ${smtp.peakConnections()} connections`);
        const burst = smtp.messages().flatMap((m) => m.rcptTo).filter((r) => r.startsWith("burst"));
        assert.equal(burst.length, 12);
        assert.equal(new Set(burst).size, 12);
      });

      await t.step(
        "another user's config to the same server, with the same login, gets its own connection",
        async () => {
          const before = smtp.connections();
          await sendOk(stack, bob, "from-bob@example.com");
          assert.equal(smtp.connections(), before + 1);
          const last = smtp.messages().at(-1)!;
          assert.equal(last.mailFrom, bob.email);
          // And alice's next send does not go over bob's session.
          await sendOk(stack, alice, "from-alice@example.com");
          assert.equal(smtp.messages().at(-1)!.mailFrom, alice.email);
        },
      );

      await t.step("a new password: the next send logs in afresh and the old connections are closed", async () => {
        const quitsBefore = smtp.transcript().filter((l) => l === "QUIT").length;
        const loginsBefore = logins(smtp);
        const patched = await stack.invoke(`smtp-configs/${aliceConfig}`, {
          token: alice.token,
          method: "PATCH",
          body: { password: "second" },
        });
        assert.equal(patched.status, 200, await patched.text());
        await sendOk(stack, alice, "after-rotation@example.com");
        assert.equal(logins(smtp), loginsBefore + 1);
        const auth = smtp.transcript().filter((line) => /^AUTH /i.test(line)).at(-1)!;
        const decoded = atob(auth.split(" ").at(-1)!);
        assert.equal(decoded, "\0mailer\0second");
        // alice's sessions under the old password (up to 2) said QUIT.
        await until(() => smtp.transcript().filter((l) => l === "QUIT").length > quitsBefore);
      });

      await t.step("the same address under a new host name is a new connection (its TLS name differs)", async () => {
        const connections = smtp.connections();
        const patched = await stack.invoke(`smtp-configs/${aliceConfig}`, {
          token: alice.token,
          method: "PATCH",
          body: { host: "127.0.0.1", password: "second" },
        });
        assert.equal(patched.status, 200, await patched.text());
        await sendOk(stack, alice, "renamed@example.com");
        assert.equal(smtp.connections(), connections + 1);
      });

      await t.step(
        "a connection the server dropped while idle: the next send goes out once, on a fresh one",
        async () => {
          smtp.dropConnections();
          await until(() => smtp.openConnections() === 0);
          const connections = smtp.connections();
          await sendOk(stack, alice, "after-drop@example.com");
          assert.equal(smtp.connections(), connections + 1);
          const copies = smtp.messages().filter((m) => m.rcptTo.includes("after-drop@example.com"));
          assert.equal(copies.length, 1);
        },
      );

      await t.step("an idle connection is closed after MAILROOM_SMTP_POOL_IDLE_MS, with QUIT", async () => {
        await sendOk(stack, alice, "before-idle@example.com");
        assert.ok(smtp.openConnections() >= 1);
        await until(() => smtp.openConnections() === 0, IDLE_MS + 3_000);
        assert.equal(smtp.transcript().at(-1), "QUIT");
      });
    } finally {
      await smtp.close();
      await stack.close();
    }
  },
});

Deno.test({
  name: "MAILROOM_SMTP_REUSE_CONNECTIONS=false: send-email opens a connection per send",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const stack = await startTestStack({
      MAILROOM_ALLOW_PLAINTEXT_SMTP: "true",
      MAILROOM_SMTP_REUSE_CONNECTIONS: "false",
    });
    const smtp = await startScriptedSmtp({ extensions: ["PIPELINING"] });
    try {
      const user = await stack.createUser();
      await stack.createConfig(user, { port: smtp.port, security: "none", username: null });
      for (let i = 0; i < 3; i++) await sendOk(stack, user);
      assert.equal(smtp.connections(), 3);
    } finally {
      await smtp.close();
      await stack.close();
    }
  },
});

Deno.test({
  name: "a reused connection carries refusals per recipient and at DATA, then the next message",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const stack = await startTestStack({ MAILROOM_ALLOW_PLAINTEXT_SMTP: "true" });
    const smtp = await startScriptedSmtp({
      extensions: ["PIPELINING"],
      rcpt: (address) =>
        address.startsWith("busy")
          ? "450 4.2.1 mailbox busy"
          : address.startsWith("gone")
          ? "550 5.1.1 no such user"
          : "250 2.1.5 ok",
      dataReply: (index) => index === 2 ? "554 5.7.1 message refused" : "250 2.0.0 queued",
    });
    try {
      const user = await stack.createUser();
      await stack.createConfig(user, { port: smtp.port, security: "none", username: null });
      const post = (to: string[]) =>
        stack.invoke("send-email", { token: user.token, body: { to, subject: "pooled", text: "hi" } });

      const first = await post(["one@example.com"]);
      assert.equal(first.status, 200, await first.text());

      const mixed = await post(["two@example.com", "busy@example.com", "gone@example.com"]);
      const mixedBody = await body<{ accepted: string[]; deferred: string[]; rejected: string[] }>(mixed);
      assert.equal(mixed.status, 200);
      assert.deepEqual([mixedBody.accepted, mixedBody.deferred, mixedBody.rejected], [
        ["two@example.com"],
        ["busy@example.com"],
        ["gone@example.com"],
      ]);

      const refusedAtData = await post(["three@example.com"]);
      assert.equal(refusedAtData.status, 502);
      assert.equal((await body<{ error: { code: string } }>(refusedAtData)).error.code, "smtp_message_rejected");

      const everyoneGone = await post(["gone-a@example.com", "gone-b@example.com"]);
      assert.equal(everyoneGone.status, 502);
      assert.equal((await body<{ error: { code: string } }>(everyoneGone)).error.code, "smtp_recipients_rejected");

      const after = await post(["four@example.com"]);
      assert.equal(after.status, 200, await after.text());
      assert.deepEqual(
        smtp.messages().map((m) => m.rcptTo),
        [["one@example.com"], ["two@example.com"], ["three@example.com"], ["four@example.com"]],
        "each message reached the server once, with only its own accepted recipients",
      );
      assert.equal(smtp.connections(), 1, "one connection carried all five");
      assert.ok(smtp.transcript().includes("RSET"), "a failed transaction is reset before the next");
    } finally {
      await smtp.close();
      await stack.close();
    }
  },
});

Deno.test({
  name: "the pool serves waiting senders first come, first served",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const smtp = await startScriptedSmtp({ extensions: ["PIPELINING"] });
    const pool = createSessionPool({ maxPerKey: 1 });
    const key = { config: "c1", id: "c1-key" };
    const open = () =>
      SmtpSession.open({ host: "127.0.0.1", port: smtp.port, security: "none" }, { address: "127.0.0.1" }, {
        connectTimeoutMs: 5_000,
        greetingTimeoutMs: 5_000,
        socketTimeoutMs: 5_000,
        ehloName: "mailroom.test",
      });
    try {
      const first = await pool.take(key, open);
      const served: string[] = [];
      const waiting = pool.take(key, open).then((taken) => {
        served.push("waiting");
        return taken;
      });
      // Let the second taker reach the queue, then give the session back and, in the same turn,
      // ask again: the one that waited gets it, not the one that just arrived.
      await new Promise((r) => setTimeout(r, 20));
      pool.give(key, first.session, true);
      const latecomer = pool.take(key, open).then((taken) => {
        served.push("latecomer");
        return taken;
      });
      // Whoever got it first gives it back, so the other is served too whatever the order.
      const second = await Promise.race([waiting, latecomer]);
      pool.give(key, second.session, true);
      const third = await (served[0] === "waiting" ? latecomer : waiting);
      pool.give(key, third.session, true);
      assert.deepEqual(served, ["waiting", "latecomer"]);
      assert.equal(second.session, first.session, "the waiting sender got the session given back");
      assert.equal(second.reused, true);
      assert.equal(smtp.connections(), 1, "never more than the one connection");
    } finally {
      pool.close();
      await smtp.close();
    }
  },
});

Deno.test({
  name: "a reused connection whose server stopped answering is not retried: one timeout, not two",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const stack = await startTestStack({
      MAILROOM_ALLOW_PLAINTEXT_SMTP: "true",
      MAILROOM_SMTP_SOCKET_TIMEOUT_MS: "400",
    });
    let mails = 0;
    // Answers the first message, then never answers MAIL FROM again (on any connection). No
    // PIPELINING, so the client waits for that answer.
    const smtp = await startScriptedSmtp({ extensions: [], mail: () => ++mails === 1 ? "250 OK" : null });
    try {
      const user = await stack.createUser();
      await stack.createConfig(user, { port: smtp.port, security: "none", username: null });
      await sendOk(stack, user, "first@example.com");
      const res = await send(stack, user, "second@example.com");
      const answer = await body<{ error: { code: string } }>(res);
      assert.equal(res.status, 502, JSON.stringify(answer));
      assert.equal(answer.error.code, "smtp_timeout");
      assert.equal(smtp.connections(), 1, "no second connection: the timeout was not retried");
      assert.equal(mails, 2);
    } finally {
      await smtp.close();
      await stack.close();
    }
  },
});

Deno.test({
  name: "send-email within a server's connection limit and the config's max_connections",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const stack = await startTestStack({ MAILROOM_ALLOW_PLAINTEXT_SMTP: "true" });
    try {
      await t.step("10 concurrent sends to a server that serves 1 connection: all sent once it frees", async () => {
        // A slow final reply keeps the first session busy while the others arrive.
        const smtp = await startScriptedSmtp({ extensions: ["PIPELINING"], maxConnections: 1, dataReplyDelayMs: 50 });
        const user = await stack.createUser();
        const config = await stack.createConfig(user, { port: smtp.port, security: "none", username: null });
        await stack.sql`update public.user_smtp_configs set max_connections = 5 where id = ${config}`;
        const answers = await Promise.all(
          Array.from({ length: 10 }, (_, i) => send(stack, user, `c${i}@example.com`)),
        );
        const statuses = await Promise.all(
          answers.map(async (res) => `${res.status} ${(await res.text()).slice(0, 120)}`),
        );
        assert.ok(statuses.every((s) => s.startsWith("200 ")), statuses.join("\n"));
        assert.equal(smtp.messages().length, 10, "each went out once");
        assert.ok(smtp.refusedConnections() >= 1, "the server did refuse the extra connections");
        assert.equal(smtp.peakConnections(), 1);
        await smtp.close();
      });

      await t.step("the pool opens no more connections per config than its max_connections (default 3)", async () => {
        const smtp = await startScriptedSmtp({ extensions: ["PIPELINING"], dataReplyDelayMs: 50 });
        const user = await stack.createUser();
        const config = await stack.createConfig(user, { port: smtp.port, security: "none", username: null });
        const [{ max_connections }] = await stack.sql`select max_connections from public.user_smtp_configs
                                                       where id = ${config}`;
        assert.equal(max_connections, 3);
        const answers = await Promise.all(Array.from({ length: 8 }, (_, i) => send(stack, user, `d${i}@example.com`)));
        assert.deepEqual(answers.map((res) => res.status), Array(8).fill(200));
        await Promise.all(answers.map((res) => res.body?.cancel()));
        assert.ok(smtp.peakConnections() <= 3, `peak ${smtp.peakConnections()}`);
        assert.equal(smtp.messages().length, 8);
        await smtp.close();
      });
    } finally {
      await stack.close();
    }
  },
});
