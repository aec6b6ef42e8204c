// The outbox sends each config's mail over up to its max_connections SMTP sessions at once,
// against real sockets: a slow server sees that many sessions and every message exactly once;
// a server that refuses one more connection (421) or hangs up after a few messages loses
// nothing and gets nothing twice; wrong credentials cost one login, not one per session; and
// several configs drain side by side.
import assert from "node:assert/strict";
import { startTestStack, type TestStack, type TestUser } from "./harness.ts";
import { type ScriptedSmtp, type ScriptOptions, startScriptedSmtp } from "./scripted_smtp.ts";

/** Queue `count` messages for `user` through `config` with the Data API, due now; their ids. */
async function queue(stack: TestStack, user: TestUser, config: string, count: number, tag: string): Promise<string[]> {
  return await stack.asDataApi(user, async (tx) => {
    const rows = await tx<{ id: string }[]>`
      insert into public.email_audit_log (config_id, from_email, to_addresses, status, payload)
      select ${config}::uuid, 'x@example.com', array[${tag} || i || '@example.com'], 'queued',
             jsonb_build_object('kind', 'request', 'request',
               jsonb_build_object('to', ${tag} || i || '@example.com', 'subject', 'n' || i, 'text', 'hello'))
        from generate_series(1, ${count}) i
      returning id`;
    return rows.map((row) => row.id);
  });
}

/** How many times each recipient arrived at the server. */
function copies(smtp: ScriptedSmtp): Map<string, number> {
  const seen = new Map<string, number>();
  for (const message of smtp.messages()) {
    for (const rcpt of message.rcptTo) seen.set(rcpt, (seen.get(rcpt) ?? 0) + 1);
  }
  return seen;
}

Deno.test({
  name: "the outbox sends a config's mail over max_connections sessions at once",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const stack = await startTestStack({ MAILROOM_ALLOW_PLAINTEXT_SMTP: "true" });
    const servers: ScriptedSmtp[] = [];
    const configured = async (script: ScriptOptions, maxConnections?: number, password?: string) => {
      const extensions = script.users ? ["PIPELINING", "AUTH PLAIN"] : ["PIPELINING"];
      const smtp = await startScriptedSmtp({ extensions, ...script });
      servers.push(smtp);
      const user = await stack.createUser();
      const id = await stack.createConfig(user, {
        port: smtp.port,
        security: "none",
        username: script.users ? "mailer" : null,
        ...(password ? { password } : {}),
      });
      await stack.sql`
        update public.user_smtp_configs
           set max_per_minute = 10000, max_per_day = 100000, max_connections = coalesce(${
        maxConnections ?? null
      }, max_connections)
         where id = ${id}`;
      return { smtp, user, id };
    };
    const statuses = async (ids: string[]) =>
      (await stack.sql<{ status: string }[]>`
        select status from public.email_audit_log where id = any (${ids}::uuid[])`).map((row) => row.status).sort();
    const drainUntilDone = async (ids: string[]) => {
      for (let i = 0; i < 10; i++) {
        await stack.drainOutbox();
        if ((await statuses(ids)).every((s) => s === "sent")) return;
      }
    };

    try {
      await t.step("a slow server sees the default 3 sessions at once and each message once", async () => {
        // A slow final reply keeps each session busy, so a second and third are worth opening.
        const { smtp, user, id } = await configured({ dataReplyDelayMs: 80 });
        const ids = await queue(stack, user, id, 24, "a");
        const report = await stack.drainOutbox();
        assert.equal(report.sent, 24, JSON.stringify(report));
        assert.deepEqual(await statuses(ids), Array(24).fill("sent"));
        assert.equal(smtp.peakConnections(), 3, "max_connections (default 3) sessions at once, no more");
        assert.equal(smtp.connections(), 3, "each session reused for the run");
        assert.equal(copies(smtp).size, 24);
        assert.ok([...copies(smtp).values()].every((n) => n === 1), "nothing sent twice");
      });

      await t.step("max_connections 1 sends one at a time", async () => {
        const { smtp, user, id } = await configured({ dataReplyDelayMs: 30 }, 1);
        const ids = await queue(stack, user, id, 6, "b");
        await stack.drainOutbox();
        assert.deepEqual(await statuses(ids), Array(6).fill("sent"));
        assert.equal(smtp.peakConnections(), 1);
      });

      await t.step("a server that refuses a third connection (421): nothing lost, nothing twice", async () => {
        const { smtp, user, id } = await configured({ dataReplyDelayMs: 50, maxConnections: 2 }, 5);
        const ids = await queue(stack, user, id, 20, "c");
        await drainUntilDone(ids);
        assert.deepEqual(await statuses(ids), Array(20).fill("sent"));
        assert.ok(smtp.refusedConnections() >= 1, "the server did refuse the connection beyond its limit");
        assert.equal(smtp.peakConnections(), 2);
        assert.equal(copies(smtp).size, 20);
        assert.ok([...copies(smtp).values()].every((n) => n === 1), "nothing sent twice");
        const [config] = await stack.sql`select needs_attention from public.user_smtp_configs where id = ${id}`;
        assert.equal(config.needs_attention, null);
      });

      await t.step("a server that hangs up after two messages per session: nothing lost, nothing twice", async () => {
        const { smtp, user, id } = await configured({ dataReplyDelayMs: 20, closeAfterMessages: 2 });
        const ids = await queue(stack, user, id, 20, "d");
        await drainUntilDone(ids);
        assert.deepEqual(await statuses(ids), Array(20).fill("sent"));
        assert.ok(smtp.connections() >= 10, `a new session after each hang-up (${smtp.connections()})`);
        assert.equal(copies(smtp).size, 20);
        assert.ok([...copies(smtp).values()].every((n) => n === 1), "nothing sent twice");
      });

      await t.step("wrong credentials cost one login, not one per session; the queue waits", async () => {
        const { smtp, user, id } = await configured({ users: { mailer: "right" } }, 5, "wrong");
        const ids = await queue(stack, user, id, 10, "e");
        await stack.drainOutbox();
        const logins = smtp.transcript().filter((line) => line.toUpperCase().startsWith("AUTH"));
        assert.equal(logins.length, 1, `one AUTH attempt (${logins.length})`);
        assert.equal(smtp.connections(), 1);
        assert.deepEqual(await statuses(ids), Array(10).fill("queued"));
        const [config] = await stack.sql`select needs_attention from public.user_smtp_configs where id = ${id}`;
        assert.equal(config.needs_attention, "smtp_auth_failed");
      });

      await t.step(
        "a password changed at the server since the last run: one failed login, not one per session",
        async () => {
          const users: Record<string, string> = { mailer: "right" };
          const { smtp, user, id } = await configured({ users, dataReplyDelayMs: 50 }, 5, "right");
          const first = await queue(stack, user, id, 3, "w");
          await stack.drainOutbox();
          assert.deepEqual(await statuses(first), Array(3).fill("sent"));
          smtp.dropConnections();
          users.mailer = "rotated";
          const before = smtp.transcript().length;
          const ids = await queue(stack, user, id, 10, "x");
          await stack.drainOutbox();
          const logins = smtp.transcript().slice(before).filter((line) => line.toUpperCase().startsWith("AUTH"));
          assert.equal(logins.length, 1, `failed logins in the second run: ${logins.length}`);
          assert.deepEqual(await statuses(ids), Array(10).fill("queued"));
        },
      );

      await t.step("a row is marked sending only once a session can carry it", async () => {
        // The config allows 10 sessions, the server 2: eight senders wait for a session, unmarked.
        const { smtp, user, id } = await configured({ dataReplyDelayMs: 600, maxConnections: 2 }, 10);
        const ids = await queue(stack, user, id, 8, "y");
        const drain = stack.drainOutbox();
        let worst = 0;
        for (const until = Date.now() + 20_000; Date.now() < until;) {
          const [{ sending, sent }] = await stack.sql<{ sending: number; sent: number }[]>`
            select count(*) filter (where status = 'sending')::int as sending,
                   count(*) filter (where status = 'sent')::int as sent
              from public.email_audit_log where id = any (${ids}::uuid[])`;
          const mailFrom = smtp.transcript().filter((line) => line.toUpperCase().startsWith("MAIL FROM")).length;
          // Committed `sending` (or done) without a MAIL FROM at the server: marked, not on the wire.
          // One may be seen in the instant between a mark's commit and its MAIL FROM's arrival.
          worst = Math.max(worst, sending + sent - mailFrom);
          if (sent === ids.length) break;
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
        await drain;
        assert.deepEqual(await statuses(ids), Array(8).fill("sent"));
        assert.ok(worst <= 1, `rows marked while waiting for a session: ${worst}`);
        assert.equal(smtp.peakConnections(), 2);
      });

      await t.step("several users' configs drain side by side, each over its own sessions", async () => {
        const users = await Promise.all(Array.from({ length: 4 }, () => configured({ dataReplyDelayMs: 60 })));
        const ids = (await Promise.all(users.map(({ user, id }, i) => queue(stack, user, id, 9, `f${i}-`)))).flat();
        await drainUntilDone(ids);
        assert.deepEqual(await statuses(ids), Array(36).fill("sent"));
        for (const { smtp } of users) {
          assert.equal(copies(smtp).size, 9);
          assert.ok(smtp.peakConnections() > 1 && smtp.peakConnections() <= 3, `peak ${smtp.peakConnections()}`);
        }
      });
    } finally {
      await Promise.all(servers.map((smtp) => smtp.close()));
      await stack.close();
    }
  },
});

Deno.test({
  name: "a run stops claiming at its CPU budget; what it held goes back, nothing is lost or sent twice",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    // A budget far below what 60 messages take (1 ms: spent before the first send): each run
    // claims once, sends at least one message, and puts the rest back; the next runs carry on.
    const stack = await startTestStack({ MAILROOM_ALLOW_PLAINTEXT_SMTP: "true", MAILROOM_OUTBOX_CPU_BUDGET_MS: "1" });
    const smtp = await startScriptedSmtp({ extensions: ["PIPELINING"] });
    try {
      const user = await stack.createUser();
      const config = await stack.createConfig(user, { port: smtp.port, security: "none", username: null });
      await stack.sql`update public.user_smtp_configs set max_per_minute = 10000, max_per_day = 100000
                       where id = ${config}`;
      const ids = await queue(stack, user, config, 60, "cpu");
      const first = await stack.drainOutbox();
      assert.ok(first.claimed > 0, "a run always makes its first claim");
      assert.ok(first.sent >= 1 && first.sent < 60, `one run under a 1 ms budget sent ${first.sent} of 60`);
      const after = await stack.sql<{ status: string; leased: boolean }[]>`
        select status, lease_until is not null as leased from public.email_audit_log where id = any (${ids}::uuid[])`;
      assert.ok(after.every((row) => ["sent", "queued"].includes(row.status)), "nothing left in flight");
      assert.ok(after.every((row) => row.status === "sent" || !row.leased), "what it held went back");
      let runs = 1;
      while ((await stack.drainOutbox()).claimed > 0) runs++;
      const statuses = await stack.sql<{ status: string }[]>`
        select status from public.email_audit_log where id = any (${ids}::uuid[])`;
      assert.ok(statuses.every((row) => row.status === "sent"), JSON.stringify(statuses));
      assert.ok(runs > 1, "the next runs carried on");
      assert.equal(copies(smtp).size, 60);
      assert.ok([...copies(smtp).values()].every((n) => n === 1), "nothing sent twice");
    } finally {
      await smtp.close();
      await stack.close();
    }
  },
});
