// The outbox end to end: scheduled send-email, the process-outbox worker (secret key only),
// retries of deferred recipients only, permanent failures, cancel, and a dead worker's row.
// Time is moved by setting rows' due times with SQL, never by sleeping.
import assert from "node:assert/strict";
import { body, type ErrorBody, startTestStack, type TestStack, type TestUser } from "./harness.ts";
import { type ScriptOptions, startScriptedSmtp } from "./scripted_smtp.ts";
import postgres from "postgres";

const inAnHour = () => new Date(Date.now() + 3_600_000).toISOString();

Deno.test({
  name: "the outbox",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const stack: TestStack = await startTestStack({ MAILROOM_ALLOW_PLAINTEXT_SMTP: "true" });
    const user: TestUser = await stack.createUser();
    let configs = 0;
    const withServer = async (script: ScriptOptions = {}) => {
      const smtp = await startScriptedSmtp({ extensions: ["PIPELINING"], ...script });
      const name = `o${++configs}`;
      await stack.createConfig(user, { name, port: smtp.port, security: "none", username: null, is_default: false });
      return { smtp, name };
    };
    const schedule = (payload: Record<string, unknown>) =>
      stack.invoke("send-email", { token: user.token, body: { scheduled_at: inAnHour(), ...payload } });
    const due = (id: string) => stack.sql`update public.email_audit_log set next_attempt_at = now() where id = ${id}`;
    const row = async (id: string) =>
      (await stack.sql`select status, attempts, message_id, recipients, error_class from public.email_audit_log
                        where id = ${id}`)[0];

    try {
      await t.step("process-outbox takes only a secret key", async () => {
        const none = await fetch(`${stack.url}/functions/v1/process-outbox`, { method: "POST" });
        assert.equal(none.status, 401);
        assert.equal((await body<ErrorBody>(none)).error.code, "missing_secret_key");
        const anonKey = await stack.invoke("process-outbox", {});
        assert.equal(anonKey.status, 401, "the anon (publishable) key is not a secret key");
        assert.equal((await body<ErrorBody>(anonKey)).error.code, "invalid_secret_key");
        const asUser = await stack.invoke("process-outbox", { token: user.token, headers: { apikey: user.token } });
        assert.equal(asUser.status, 401);
        assert.equal((await body<ErrorBody>(asUser)).error.code, "invalid_secret_key");
        const report = await stack.drainOutbox();
        assert.equal(typeof report.claimed, "number");
      });

      await t.step("a scheduled send waits for its time, then goes out once with its fixed Message-ID", async () => {
        const { smtp, name } = await withServer();
        const res = await schedule({ to: "later@example.com", subject: "tomorrow", text: "x", config: name });
        const scheduled = await body<{ id: string; status: string; message_id: string; scheduled_at: string }>(res);
        assert.equal(res.status, 202, JSON.stringify(scheduled));
        assert.equal(scheduled.status, "scheduled");
        assert.match(scheduled.message_id, new RegExp(`^<${scheduled.id}@example\\.com>$`));
        await stack.drainOutbox();
        assert.equal(smtp.messages().length, 0, "not before its time");
        await due(scheduled.id);
        await stack.drainOutbox();
        assert.equal(smtp.messages().length, 1);
        assert.match(smtp.messages()[0].data, new RegExp(`^Message-ID: ${scheduled.message_id}\\r?$`, "m"));
        const after = await row(scheduled.id);
        assert.deepEqual([after.status, after.attempts, after.message_id], ["sent", 1, scheduled.message_id]);
        await stack.drainOutbox();
        assert.equal(smtp.messages().length, 1, "exactly once");
        await smtp.close();
      });

      await t.step("a scheduled send can be cancelled before it starts, not after", async () => {
        const { smtp, name } = await withServer();
        const res = await schedule({ to: "never@example.com", text: "x", config: name });
        const { id } = await body<{ id: string }>(res);
        const cancel = await stack.invoke(`send-email/${id}/cancel`, { token: user.token });
        assert.deepEqual(await body(cancel), { id, status: "cancelled" });
        await due(id);
        await stack.drainOutbox();
        assert.equal(smtp.messages().length, 0);
        // Cancelling again answers as the first time (idempotent, as the cancel tool promises).
        const again = await stack.invoke(`send-email/${id}/cancel`, { token: user.token });
        assert.equal(again.status, 200);
        assert.deepEqual(await body(again), { id, status: "cancelled" });
        const other = await stack.createUser();
        const stranger = await stack.invoke(`send-email/${id}/cancel`, { token: other.token });
        assert.equal(stranger.status, 404, "another user's message does not exist for them");
        await smtp.close();
      });

      await t.step(
        "a deferred recipient is retried alone, after backoff; the accepted one is not sent again",
        async () => {
          let greylisted = true;
          const { smtp, name } = await withServer({
            rcpt: (address) =>
              address.startsWith("grey") && greylisted ? "450 4.2.0 Greylisted, try again in 1 seconds" : "250 OK",
          });
          const res = await schedule({ to: ["ok@example.com", "grey@example.com"], text: "x", config: name });
          const { id } = await body<{ id: string }>(res);
          await due(id);
          await stack.drainOutbox();
          let now = await row(id);
          assert.equal(now.status, "queued", "back in the queue for the deferred recipient");
          assert.deepEqual(smtp.messages().map((m) => m.rcptTo), [["ok@example.com"]]);
          greylisted = false;
          await due(id);
          await stack.drainOutbox();
          now = await row(id);
          assert.equal(now.status, "sent");
          assert.equal(now.attempts, 2);
          assert.deepEqual(smtp.messages().map((m) => m.rcptTo), [["ok@example.com"], ["grey@example.com"]]);
          assert.equal(smtp.messages()[0].data, smtp.messages()[1].data, "the same message, Message-ID and all");
          const statuses = (now.recipients as { address: string; status: string }[]).map((r) => [r.address, r.status]);
          assert.deepEqual(statuses.sort(), [["grey@example.com", "accepted"], ["ok@example.com", "accepted"]]);
          await smtp.close();
        },
      );

      await t.step("a permanent refusal fails for good; nothing is retried", async () => {
        const { smtp, name } = await withServer({ rcpt: () => "550 5.1.1 no such user" });
        const { id } = await body<{ id: string }>(await schedule({ to: "gone@example.com", text: "x", config: name }));
        await due(id);
        await stack.drainOutbox();
        const now = await row(id);
        assert.deepEqual([now.status, now.error_class], ["failed", "smtp_recipients_rejected"]);
        await stack.drainOutbox();
        assert.equal(smtp.transcript().filter((l) => l.startsWith("MAIL FROM")).length, 1);
        await smtp.close();
      });

      await t.step("a worker that died mid-send leaves the row unknown, never resent", async () => {
        const { smtp, name } = await withServer();
        const { id } = await body<{ id: string }>(await schedule({ to: "maybe@example.com", text: "x", config: name }));
        await due(id);
        // A worker claims and starts the row, then dies before recording anything.
        await stack.sql`select * from private.claim_outbox('dead-worker', 10, 60)`;
        await stack.sql`select private.start_outbox_send(${id}::uuid, 'dead-worker', 60)`;
        await stack.sql`update public.email_audit_log set lease_until = now() - interval '1 second' where id = ${id}`;
        const report = await stack.drainOutbox();
        assert.equal(report.swept, 1);
        const now = await row(id);
        assert.deepEqual([now.status, now.error_class], ["unknown", "worker_lost"]);
        assert.equal(smtp.messages().length, 0, "not resent");
        await smtp.close();
      });

      await t.step("refused credentials pause the config's queue; a new password resumes it", async () => {
        const smtp = await startScriptedSmtp({
          extensions: ["PIPELINING", "AUTH PLAIN"],
          users: { u: "right-password" },
        });
        await stack.createConfig(user, {
          name: "wrong-pw",
          port: smtp.port,
          security: "none",
          username: "u",
          password: "wrong-password",
          is_default: false,
        });
        const ids: string[] = [];
        for (let i = 0; i < 3; i++) {
          const res = await schedule({ to: `p${i}@example.com`, text: "x", config: "wrong-pw" });
          ids.push((await body<{ id: string }>(res)).id);
        }
        for (const id of ids) await due(id);
        await stack.drainOutbox();
        const logins = () => smtp.transcript().filter((line) => line.startsWith("AUTH")).length;
        assert.equal(logins(), 1, "one refused login, not one per message");
        const [config] = await stack.sql`select needs_attention from public.user_smtp_configs where name = 'wrong-pw'`;
        assert.equal(config.needs_attention, "smtp_auth_failed");
        const waiting = await stack.sql`select status, attempts from public.email_audit_log where id = any(${ids})`;
        assert.deepEqual(waiting.map((r) => [r.status, r.attempts]), [["queued", 0], ["queued", 0], ["queued", 0]]);
        await stack.drainOutbox();
        assert.equal(logins(), 1, "a paused queue is not tried");

        const listed = await stack.invoke("smtp-configs/wrong-pw", { token: user.token, method: "GET" });
        assert.equal((await body<{ needs_attention: string }>(listed)).needs_attention, "smtp_auth_failed");
        const fixed = await stack.invoke("smtp-configs/wrong-pw", {
          token: user.token,
          method: "PATCH",
          body: { password: "right-password" },
        });
        assert.equal((await body<{ needs_attention: string | null }>(fixed)).needs_attention, null);
        await stack.drainOutbox();
        assert.equal(smtp.messages().length, 3, "all three go out once the config is fixed");
        await smtp.close();
      });

      await t.step("four workers at once: no message twice, and a 20-per-minute config sends exactly 20", async () => {
        const { smtp, name } = await withServer();
        const [config] = await stack.sql`select id from public.user_smtp_configs where name = ${name}`;
        await stack.sql`update public.user_smtp_configs set max_per_minute = 20 where id = ${config.id}`;
        const ids = await stack.asDataApi(user, async (tx) => {
          return await tx<{ id: string }[]>`
            insert into public.email_audit_log (config_id, from_email, to_addresses, status, payload)
            select ${config.id}, ${user.email}, array['w' || i || '@example.com'], 'queued',
                   jsonb_build_object('kind', 'request', 'request',
                     jsonb_build_object('to', 'w' || i || '@example.com', 'text', 'x'))
              from generate_series(1, 60) i
            returning id`;
        }) as { id: string }[];
        const reports = await Promise.all([1, 2, 3, 4].map(() => stack.drainOutbox()));
        const sent = reports.reduce((n, r) => n + r.sent, 0);
        assert.equal(sent, 20, JSON.stringify(reports));
        const messageIds = smtp.messages().map((m) => /^Message-ID: (\S+)/m.exec(m.data)?.[1]);
        assert.equal(messageIds.length, 20);
        assert.equal(new Set(messageIds).size, 20, "no message was sent twice");
        const statuses = await stack.sql`
          select status, count(*)::int as n from public.email_audit_log where id = any(${ids.map((r) => r.id)})
          group by status order by status`;
        assert.deepEqual(statuses.map((r) => [r.status, r.n]), [["queued", 40], ["sent", 20]]);
        await smtp.close();
      });

      await t.step("a send-bulk batch is delivered by the worker, personalised per recipient", async () => {
        const { smtp, name } = await withServer();
        const res = await stack.invoke("send-bulk", {
          token: user.token,
          body: {
            config: name,
            template: "welcome",
            data: { product: "Mailroom", login_url: "https://example.com/login", tips: ["Add a config"] },
            recipients: [
              { email: "ann@example.com", name: "Ann", data: { name: "Ann" } },
              { email: "bob@example.com", data: { name: "Bob" } },
            ],
          },
        });
        const accepted = await body<{ batch_id: string; queued: number }>(res);
        assert.equal(res.status, 202, JSON.stringify(accepted));
        assert.equal(accepted.queued, 2);
        await stack.drainOutbox();
        const received = smtp.messages();
        assert.equal(received.length, 2);
        const ann = received.find((m) => m.rcptTo[0] === "ann@example.com")!;
        assert.match(ann.data, /^To: Ann <ann@example\.com>\r?$/m);
        assert.match(ann.data, /Ann/);
        const status = await body<{ counts: Record<string, number> }>(
          await stack.invoke(`send-bulk/${accepted.batch_id}`, { token: user.token, method: "GET" }),
        );
        assert.equal(status.counts.sent, 2);
        await smtp.close();
      });

      await t.step("one user's big batch does not hold back another user's mail queued after it", async () => {
        const smtp = await startScriptedSmtp({ extensions: ["PIPELINING"] });
        const big = await stack.createUser();
        const small = await stack.createUser();
        for (const owner of [big, small]) {
          const id = await stack.createConfig(owner, { port: smtp.port, security: "none", username: null });
          await stack
            .sql`update public.user_smtp_configs set max_per_minute = 1000, max_per_day = 10000 where id = ${id}`;
        }
        const queue = async (owner: TestUser, recipients: string[]) => {
          const res = await stack.invoke("send-bulk", { token: owner.token, body: { text: "x", recipients } });
          assert.equal(res.status, 202, await res.text());
        };
        await queue(big, Array.from({ length: 600 }, (_, i) => `big${i}@example.com`));
        await queue(small, ["small@example.com"]);
        const report = await stack.drainOutbox();
        assert.equal(report.sent, 601, JSON.stringify(report));
        const order = smtp.messages().map((m) => m.rcptTo[0]);
        const position = order.indexOf("small@example.com");
        assert.ok(position >= 0 && position < 30, `the small user's mail went out as message ${position + 1} of 601`);
        await smtp.close();
      });

      await t.step("deleting a config cancels what it still had waiting; nothing goes out another way", async () => {
        const owner = await stack.createUser();
        const fallback = await startScriptedSmtp({ extensions: ["PIPELINING"] });
        const doomed = await startScriptedSmtp({ extensions: ["PIPELINING"] });
        await stack.createConfig(owner, { name: "personal", port: fallback.port, security: "none", username: null });
        await stack.createConfig(owner, {
          name: "work",
          port: doomed.port,
          security: "none",
          username: null,
          is_default: false,
        });
        const scheduled = await stack.invoke("send-email", {
          token: owner.token,
          body: { config: "work", to: "x@example.com", text: "via work only", scheduled_at: inAnHour() },
        });
        const { id } = await body<{ id: string }>(scheduled);
        assert.equal(scheduled.status, 202);
        const bulk = await stack.invoke("send-bulk", {
          token: owner.token,
          body: { config: "work", text: "bulk via work", recipients: ["y@example.com", "z@example.com"] },
        });
        assert.equal(bulk.status, 202, await bulk.text());
        const removed = await stack.invoke("smtp-configs/work", { token: owner.token, method: "DELETE" });
        assert.equal(removed.status, 200, await removed.text());
        await stack.sql`update public.email_audit_log set next_attempt_at = now() where user_id = ${owner.id}`;
        await stack.drainOutbox();
        assert.equal(fallback.messages().length + doomed.messages().length, 0, "nothing was sent");
        const rows = await stack
          .sql`select status, error_class from public.email_audit_log where user_id = ${owner.id}`;
        assert.deepEqual(rows.map((r) => [r.status, r.error_class]), Array(3).fill(["cancelled", "config_deleted"]));
        const status = await stack.invoke(`send-email/${id}/cancel`, { token: owner.token, body: {} });
        assert.equal(status.status, 200, "already cancelled: answered as cancelled");
        assert.deepEqual(await body(status), { id, status: "cancelled" });
        await fallback.close();
        await doomed.close();
      });

      await t.step("eight workers claiming at once each get a full chunk, and no row twice", async () => {
        const owner = await stack.createUser();
        const configId = await stack.createConfig(owner, { port: 2525, security: "none", username: null });
        await stack.sql`
          insert into public.email_audit_log (user_id, config_id, from_email, to_addresses, status, payload)
          select ${owner.id}, ${configId}, ${owner.email}, array['c' || i || '@example.com'], 'queued', '{}'
            from generate_series(1, 400) i`;
        // Eight connections, so the claims really run at the same time.
        const workers = postgres(stack.dbUrl, { max: 8, onnotice: () => {} });
        try {
          for (let round = 0; round < 2; round++) {
            const claims = await Promise.all(
              Array.from(
                { length: 8 },
                (_, i) =>
                  workers<{ id: string }[]>`select id from private.claim_outbox(${`race-${round}-${i}`}, 25, 60)`,
              ),
            );
            assert.deepEqual(claims.map((rows) => rows.length), Array(8).fill(25), `round ${round}`);
            const ids = claims.flat().map((row) => row.id);
            assert.equal(new Set(ids).size, 200, "no row claimed twice");
          }
        } finally {
          await workers.end();
          await stack.sql`delete from public.email_audit_log where user_id = ${owner.id}`;
          // Anything else these claims leased goes back to the queue for the next steps.
          await stack.sql`update public.email_audit_log set lease_until = null, leased_by = null
                           where leased_by like 'race-%'`;
        }
      });

      await t.step("a row inserted through the Data API records what was really sent", async () => {
        const { smtp, name } = await withServer();
        const [config] = await stack.sql`select id from public.user_smtp_configs where name = ${name}`;
        const [inserted] = await stack.asDataApi(user, async (tx) => {
          return await tx<{ id: string; from_email: string }[]>`
            insert into public.email_audit_log (config_id, from_email, to_addresses, subject, status, payload)
            values (${config.id}, 'ceo@victim.example', array['audit-shows@example.com'], 'harmless', 'queued',
                    ${tx.json({ kind: "request", request: { to: "real@example.com", subject: "real", text: "x" } })})
            returning id, from_email`;
        }) as { id: string; from_email: string }[];
        assert.equal(inserted.from_email, user.email, "the sender is the config's");
        await stack.drainOutbox();
        const [after] = await stack.sql`select status, to_addresses, subject from public.email_audit_log
                                         where id = ${inserted.id}`;
        assert.deepEqual({ ...after }, { status: "sent", to_addresses: ["real@example.com"], subject: "real" });
        assert.equal(smtp.messages()[0].mailFrom, user.email);
        await smtp.close();
      });

      await t.step(
        "a worker run reuses one connection per config (max_connections 1); a connection the server closed is replaced",
        async () => {
          const enqueue = async (configName: string, count: number) => {
            const [config] = await stack.sql`
              update public.user_smtp_configs set max_connections = 1 where name = ${configName} returning id`;
            await stack.asDataApi(user, async (tx) => {
              await tx`
              insert into public.email_audit_log (config_id, from_email, to_addresses, status, payload)
              select ${config.id}, ${user.email}, array['r' || i || '@example.com'], 'queued',
                     jsonb_build_object('kind', 'request', 'request',
                       jsonb_build_object('to', 'r' || i || '@example.com', 'text', 'x'))
                from generate_series(1, ${count}) i`;
            });
          };
          const steady = await withServer();
          await enqueue(steady.name, 25);
          await stack.drainOutbox();
          assert.equal(steady.smtp.messages().length, 25);
          assert.equal(steady.smtp.connections(), 1, "25 messages, one connection");
          // Each transaction ended with the server's final reply: none needed an RSET before the next.
          assert.equal(steady.smtp.transcript().filter((line) => /^RSET/i.test(line)).length, 0);

          // This server hangs up after every 3 messages: the next message goes over a fresh
          // connection, and nothing is lost or sent twice.
          const closing = await withServer({ closeAfterMessages: 3 });
          await enqueue(closing.name, 10);
          const report = await stack.drainOutbox();
          assert.equal(report.sent, 10, JSON.stringify(report));
          const ids = closing.smtp.messages().map((m) => /^Message-ID: (\S+)/m.exec(m.data)?.[1]);
          assert.equal(new Set(ids).size, 10, "each message exactly once");
          assert.equal(closing.smtp.connections(), 4);
          await steady.smtp.close();
          await closing.smtp.close();
        },
      );

      await t.step("bad scheduled requests are refused at once", async () => {
        const past = await stack.invoke("send-email", {
          token: user.token,
          body: { to: "a@example.com", text: "x", scheduled_at: "tomorrow" },
        });
        assert.equal(past.status, 400);
        const far = await stack.invoke("send-email", {
          token: user.token,
          body: { to: "a@example.com", text: "x", scheduled_at: new Date(Date.now() + 40 * 86_400_000).toISOString() },
        });
        assert.equal(far.status, 400);
        const { smtp, name } = await withServer();
        await smtp.close();
        const noTemplate = await schedule({ to: "a@example.com", template: "no-such-template", config: name });
        assert.equal(noTemplate.status, 404);
        assert.equal((await body<ErrorBody>(noTemplate)).error.code, "template_not_found");
      });
    } finally {
      await stack.close();
    }
  },
});
