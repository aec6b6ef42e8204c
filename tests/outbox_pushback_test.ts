// The outbox under servers that push back and users who attack it: a config whose server
// refuses the session (421) or the sender (450) backs off without spending its rows'
// attempts; a slow server delays only its own mail; a TLS failure pauses the config instead
// of failing its queue; and a worker holding another user's huge payloads stays alive and
// keeps delivering everyone else's mail. Time is moved with SQL, never by sleeping.
import assert from "node:assert/strict";
import { body, type ErrorBody, startTestStack, type TestStack, type TestUser, userWithCatcher } from "./harness.ts";
import { type ScriptOptions, startScriptedSmtp } from "./scripted_smtp.ts";
import { FUNCTION_MEMORY_MB } from "../local/function_processes.ts";
import { Buffer } from "node:buffer";

const MiB = 1024 * 1024;

/** Queue `count` messages for `user` through config `config` with the Data API, due now. */
async function queue(
  stack: TestStack,
  user: TestUser,
  config: string,
  count: number,
  text = "hello",
): Promise<string[]> {
  return await stack.asDataApi(user, async (tx) => {
    const rows = await tx<{ id: string }[]>`
      insert into public.email_audit_log (config_id, from_email, to_addresses, status, payload)
      select ${config}::uuid, 'x@example.com', array['r' || i || '@example.com'], 'queued',
             jsonb_build_object('kind', 'request', 'request',
               jsonb_build_object('to', 'r' || i || '@example.com', 'subject', 'n' || i, 'text', ${text}::text))
        from generate_series(1, ${count}) i
      returning id`;
    return rows.map((row) => row.id);
  });
}

Deno.test({
  name: "the outbox when servers push back",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const stack: TestStack = await startTestStack({ MAILROOM_ALLOW_PLAINTEXT_SMTP: "true" });
    let configs = 0;
    const withServer = async (user: TestUser, script: ScriptOptions = {}, security: "none" | "starttls" = "none") => {
      const smtp = await startScriptedSmtp({ extensions: ["PIPELINING"], ...script });
      const id = await stack.createConfig(user, {
        name: `p${++configs}`,
        port: smtp.port,
        security,
        username: null,
        is_default: false,
      });
      return { smtp, id };
    };
    const rowsOf = (ids: string[]) =>
      stack.sql<{ id: string; status: string; attempts: number; error_class: string | null; completed_at: Date }[]>`
        select id, status, attempts, error_class, completed_at from public.email_audit_log
         where id = any (${ids}::uuid[]) order by created_at, id`;
    const configRow = async (id: string) =>
      (await stack.sql<{ backoff_until: Date | null; backoff_reason: string | null; needs_attention: string | null }[]>`
        select backoff_until, backoff_reason, needs_attention from public.user_smtp_configs where id = ${id}`)[0];

    try {
      for (
        const [label, script, reason] of [
          ["421 at the greeting", { greeting: "421 4.7.0 Too many connections, try again in 120 seconds" }, /421/],
          ["450 at MAIL FROM", { mail: () => "450 4.7.1 Rate limit exceeded, try again in 300 seconds" }, /450/],
        ] as const
      ) {
        await t.step(`${label}: the config backs off, its rows keep their attempts, others' mail goes`, async () => {
          const refusing = await stack.createUser();
          const other = await stack.createUser();
          const pushing = await withServer(refusing, script);
          const fine = await withServer(other);
          const waiting = await queue(stack, refusing, pushing.id, 12);
          const [mine] = await queue(stack, other, fine.id, 1);

          await stack.drainOutbox();
          assert.equal(fine.smtp.messages().length, 1, "the other user's mail went out");
          assert.equal((await rowsOf([mine]))[0].status, "sent");
          assert.ok(pushing.smtp.connections() <= 2, `one try, not one per row (${pushing.smtp.connections()})`);
          const rows = await rowsOf(waiting);
          assert.ok(rows.every((row) => row.status === "queued"), JSON.stringify(rows.map((r) => r.status)));
          const charged = rows.filter((row) => row.attempts > 0);
          assert.ok(charged.length <= 1, `at most the row that met the refusal is charged (${charged.length})`);
          const config = await configRow(pushing.id);
          assert.ok(config.backoff_until && config.backoff_until.getTime() > Date.now() + 60_000, "backed off");
          assert.match(config.backoff_reason ?? "", reason);

          // Due again, but the config is still backed off: nobody tries it.
          await stack
            .sql`update public.email_audit_log set next_attempt_at = now() where id = any (${waiting}::uuid[])`;
          const before = pushing.smtp.connections();
          await stack.drainOutbox();
          assert.equal(pushing.smtp.connections(), before, "no connection while the config is backed off");
          await pushing.smtp.close();
          await fine.smtp.close();
        });
      }

      await t.step("a slow server delays only its own mail: configs proceed concurrently", async () => {
        const slowUsers = await Promise.all([0, 1, 2].map(() => stack.createUser()));
        const slow = await Promise.all(slowUsers.map((user) => withServer(user, { dataReplyDelayMs: 1_500 })));
        const quickUser = await stack.createUser();
        const quick = await withServer(quickUser);
        const slowRows = (await Promise.all(slowUsers.map((user, i) => queue(stack, user, slow[i].id, 2)))).flat();
        const [quickRow] = await queue(stack, quickUser, quick.id, 1);
        await stack.drainOutbox();
        const [done] = await rowsOf([quickRow]);
        const firstSlow = Math.min(...(await rowsOf(slowRows)).map((row) => row.completed_at.getTime()));
        assert.equal(done.status, "sent");
        assert.ok(
          done.completed_at.getTime() < firstSlow,
          "the quick server's mail was done before any slow server answered its first message",
        );
        await Promise.all([...slow, quick].map((s) => s.smtp.close()));
      });

      await t.step("a TLS failure pauses the config and keeps its queue; fixing the config resumes it", async () => {
        const user = await stack.createUser();
        // STARTTLS asked of a server that does not offer it.
        const server = await withServer(user, {}, "starttls");
        const ids = await queue(stack, user, server.id, 5);
        await stack.drainOutbox();
        const config = await configRow(server.id);
        assert.equal(config.needs_attention, "smtp_tls_failed");
        const rows = await rowsOf(ids);
        assert.ok(rows.every((row) => row.status === "queued" && row.attempts === 0), JSON.stringify(rows));
        assert.equal(server.smtp.messages().length, 0);
        // Scheduling through the paused config is accepted; it waits with the rest.
        const when = new Date(Date.now() + 3_600_000).toISOString();
        const name = (await stack.sql`select name from public.user_smtp_configs where id = ${server.id}`)[0].name;
        const scheduled = await stack.invoke("send-email", {
          token: user.token,
          body: { to: "later@example.com", text: "x", config: name, scheduled_at: when },
        });
        const answer = await body<{ status: string; scheduled_at: string }>(scheduled);
        assert.equal(scheduled.status, 202, JSON.stringify(answer));
        assert.equal(Date.parse(answer.scheduled_at), Date.parse(when));
        // The user fixes it (this test server speaks plaintext only).
        const res = await stack.invoke(`smtp-configs/${server.id}`, {
          token: user.token,
          method: "PATCH",
          body: { security: "none" },
        });
        assert.equal(res.status, 200, await res.text());
        await stack.drainOutbox();
        assert.equal(server.smtp.messages().length, 5, "the queue went out once the config was fixed");
        await server.smtp.close();
      });

      await t.step("send-email: deferred recipients are retried through the outbox, same Message-ID", async () => {
        const user = await stack.createUser();
        let greylisted = 0;
        const server = await withServer(user, {
          rcpt: (address) => address.startsWith("later") && greylisted++ < 1 ? "450 4.2.0 Greylisted" : "250 2.1.5 Ok",
        });
        const name = (await stack.sql`select name from public.user_smtp_configs where id = ${server.id}`)[0].name;
        const res = await stack.invoke("send-email", {
          token: user.token,
          body: { to: ["now@example.com", "later@example.com"], subject: "both", text: "hi", config: name },
        });
        const sent = await body<
          {
            id: string;
            deferred: string[];
            message_id: string;
            retry?: { next_attempt_at: string; recipients: string[] };
          }
        >(res);
        assert.equal(res.status, 200, JSON.stringify(sent));
        assert.deepEqual(sent.deferred, ["later@example.com"]);
        assert.deepEqual(sent.retry?.recipients, ["later@example.com"]);
        assert.ok(Date.parse(sent.retry!.next_attempt_at) > Date.now(), "the next attempt is ahead");
        assert.equal((await rowsOf([sent.id]))[0].status, "queued", "the row waits for its deferred recipient");

        const waiting = await body<{ waiting: { reason: string; detail: string | null } | null }>(
          await stack.invoke(`email-analytics/messages/${sent.id}`, { token: user.token, method: "GET" }),
        );
        assert.equal(waiting.waiting?.reason, "deferred_by_server");
        assert.match(waiting.waiting?.detail ?? "", /Greylisted/);
        const [partly] = await stack.sql`select accepted, deferred from public.email_audit_log where id = ${sent.id}`;
        assert.deepEqual([partly.accepted, partly.deferred], [["now@example.com"], ["later@example.com"]]);

        await stack.sql`update public.email_audit_log set next_attempt_at = now() where id = ${sent.id}`;
        await stack.drainOutbox();
        const messages = server.smtp.messages();
        assert.equal(messages.length, 2);
        assert.deepEqual(messages[1].rcptTo, ["later@example.com"], "only the deferred recipient, once more");
        for (const m of messages) assert.match(m.data, new RegExp(`^Message-ID: ${sent.message_id}\\r?$`, "m"));
        const [row] = await stack.sql`select status, accepted from public.email_audit_log where id = ${sent.id}`;
        assert.equal(row.status, "sent");
        assert.deepEqual([...row.accepted].sort(), ["later@example.com", "now@example.com"]);

        // Opting out: the caller retries by itself; the row is final.
        greylisted = 0;
        const own = await stack.invoke("send-email", {
          token: user.token,
          body: { to: ["now@example.com", "later@example.com"], text: "hi", config: name, retry_deferred: false },
        });
        const ownBody = await body<{ id: string; retry?: unknown }>(own);
        assert.equal(own.status, 200);
        assert.equal(ownBody.retry, undefined);
        assert.equal((await rowsOf([ownBody.id]))[0].status, "sent");
        await server.smtp.close();
      });

      await t.step("progress says why mail waits: budget, paused config, deferred by the server", async () => {
        const user = await stack.createUser();
        const server = await withServer(user);
        await stack.sql`update public.user_smtp_configs set max_per_day = 3 where id = ${server.id}`;
        const name = (await stack.sql`select name from public.user_smtp_configs where id = ${server.id}`)[0].name;
        const accepted = await stack.invoke("send-bulk", {
          token: user.token,
          body: {
            recipients: [1, 2, 3, 4, 5].map((i) => ({ email: `b${i}@example.com` })),
            subject: "s",
            text: "t",
            config: name,
          },
        });
        const batch = await body<{ batch_id: string; warnings?: { code: string; message: string }[] }>(accepted);
        assert.equal(accepted.status, 202, JSON.stringify(batch));
        assert.deepEqual(batch.warnings?.map((w) => w.code), ["exceeds_daily_budget"], "warned at accept");
        await stack.drainOutbox();
        assert.equal(server.smtp.messages().length, 3);
        type Progress = {
          counts: { queued: number; sent: number };
          waiting: { reason: string; count: number; next_attempt_at: string | null; detail: string | null }[];
          recipients: { accepted: number };
        };
        const progress = await body<Progress>(
          await stack.invoke(`send-bulk/${batch.batch_id}`, { token: user.token, method: "GET" }),
        );
        assert.equal(progress.counts.queued, 2);
        assert.equal(progress.recipients.accepted, 3);
        assert.equal(progress.waiting.length, 1, JSON.stringify(progress.waiting));
        assert.equal(progress.waiting[0].reason, "rate_limited");
        assert.equal(progress.waiting[0].count, 2);
        assert.ok(progress.waiting[0].next_attempt_at && Date.parse(progress.waiting[0].next_attempt_at) > Date.now());
        assert.match(progress.waiting[0].detail ?? "", /per day/);

        // The config is paused: that is the reason now, and no next attempt until it is fixed.
        await stack
          .sql`update public.user_smtp_configs set needs_attention = 'smtp_auth_failed' where id = ${server.id}`;
        const paused = await body<Progress>(
          await stack.invoke(`send-bulk/${batch.batch_id}`, { token: user.token, method: "GET" }),
        );
        assert.deepEqual(
          paused.waiting.map((w) => [w.reason, w.count, w.next_attempt_at, w.detail]),
          [["config_paused", 2, null, "smtp_auth_failed"]],
        );
        const [{ id: one }] = await stack.sql`select id from public.email_audit_log
                                               where batch_id = ${batch.batch_id} and status = 'queued' limit 1`;
        const message = await body<{ waiting: { reason: string; detail: string | null } | null }>(
          await stack.invoke(`email-analytics/messages/${one}`, { token: user.token, method: "GET" }),
        );
        assert.deepEqual(message.waiting && [message.waiting.reason, message.waiting.detail], [
          "config_paused",
          "smtp_auth_failed",
        ]);
        await server.smtp.close();
      });

      await t.step("a message set aside after workers died holding it: its owner retries it", async () => {
        const user = await stack.createUser();
        const server = await withServer(user);
        const [id] = await queue(stack, user, server.id, 1);
        // Two workers claimed it and died: their leases ran out without a start or a release, and
        // the sweep that starts every drain counted each loss.
        for (const worker of ["dead-1", "dead-2"]) {
          await stack.sql`select id from private.claim_outbox(${worker}, 1, 60, 16777216,
                            array(select c.id from public.user_smtp_configs c where c.id <> ${server.id}))`;
          await stack.sql`update public.email_audit_log set lease_until = now() - interval '1 second'
                           where leased_by = ${worker}`;
          await stack.sql`select private.sweep_outbox()`;
        }
        const [row] = await rowsOf([id]);
        assert.deepEqual([row.status, row.error_class], ["queued", "worker_crashed"]);
        assert.equal(server.smtp.messages().length, 0, "set aside, not sent");
        const stranger = await stack.createUser();
        const denied = await stack.invoke(`send-email/${id}/retry`, { token: stranger.token });
        assert.equal(denied.status, 404);
        const retried = await stack.invoke(`send-email/${id}/retry`, { token: user.token });
        assert.deepEqual(await body(retried), { id, status: "queued" });
        const again = await stack.invoke(`send-email/${id}/retry`, { token: user.token });
        assert.equal(again.status, 409);
        assert.equal((await body<ErrorBody>(again)).error.code, "not_retryable");
        await stack.drainOutbox();
        assert.equal(server.smtp.messages().length, 1);
        assert.equal((await rowsOf([id]))[0].status, "sent");
        await server.smtp.close();
      });
    } finally {
      await stack.close();
    }
  },
});

Deno.test({
  name: "the outbox worker survives another user's huge payloads, and everyone else's mail still goes",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const stack = await startTestStack({}, { isolation: "process" });
    const attacker = await userWithCatcher(stack);
    const victim = await userWithCatcher(stack);
    try {
      // What crashed the worker: 10 scheduled sends of about 10 MB accepted through the API
      // (a 7 MiB attachment each), and 10 rows of 9 MiB inserted straight through the Data API.
      const attachment = Buffer.from(new Uint8Array(7 * MiB).map((_, i) => i % 251)).toString("base64");
      for (let i = 0; i < 10; i++) {
        const res = await stack.invoke("send-email", {
          token: attacker.user.token,
          body: {
            to: `r${i}@example.com`,
            text: "big",
            scheduled_at: new Date(Date.now() + 3_600_000).toISOString(),
            attachments: [{ filename: "big.bin", content: attachment }],
          },
        });
        assert.equal(res.status, 202, await res.text());
      }
      const [{ id: attackerConfig }] = await stack.sql<{ id: string }[]>`
        select id from public.user_smtp_configs where user_id = ${attacker.user.id}`;
      for (let i = 0; i < 2; i++) await queue(stack, attacker.user, attackerConfig, 5, "x".repeat(9 * MiB));
      await stack.sql`update public.email_audit_log set next_attempt_at = now(), scheduled_at = now()
                       where user_id = ${attacker.user.id}`;
      const [{ id: victimConfig }] = await stack.sql<{ id: string }[]>`
        select id from public.user_smtp_configs where user_id = ${victim.user.id}`;
      const [victimRow] = await queue(stack, victim.user, victimConfig, 1);

      const worker = stack.processes.find((p) => p.name === "process-outbox")!;
      const report = await stack.drainOutbox();
      const peak = worker.peakRssBytes();
      console.log(`process-outbox peak RSS: ${Math.round((peak ?? 0) / MiB)} MB; ${JSON.stringify(report)}`);
      assert.equal(worker.restarts, 0, "the worker did not die");
      // The platform counts a worker's used heap plus external memory against its 256 MB (the
      // Edge Runtime's supervisor); the process's RSS is printed above, for the record.
      assert.ok(report.peak_memory_mib > 0 && report.peak_memory_mib < FUNCTION_MEMORY_MB, JSON.stringify(report));
      assert.equal(victim.smtp.messages().length, 1, "the victim's mail went out in the same run");
      const [{ status }] = await stack.sql`select status from public.email_audit_log where id = ${victimRow}`;
      assert.equal(status, "sent");
      assert.ok(attacker.smtp.messages().length >= 1, "the attacker's mail goes too, one large message at a time");
    } finally {
      await attacker.smtp.close();
      await victim.smtp.close();
      await stack.close();
    }
  },
});
