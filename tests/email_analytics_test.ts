// email-analytics against a real Postgres: rows from the real send paths (send-email and
// send-bulk to a scripted SMTP server) and bulk-loaded rows with known timestamps and
// outcomes. Exact numbers for every breakdown and filter, time zones across daylight-saving
// changes, empty ranges, keyset pagination while rows arrive, and user B's rows never showing
// in user A's numbers or pages, also through crafted filters, cursors and group_by values.
import assert from "node:assert/strict";
import { errorCode, startTestStack, type TestStack } from "./harness.ts";
import { startScriptedSmtp } from "./scripted_smtp.ts";
import { createClient } from "@supabase/supabase-js";
import { encodeCursor } from "../supabase/functions/_shared/analytics/params.ts";

interface Summary {
  range: { from: string; to: string; interval: string; tz: string };
  total: number;
  totals: Record<string, number>;
  success_rate: number | null;
  latency_ms: { count: number; p50: number | null; p90: number | null; p99: number | null };
  series: { start: string; total: number; sent: number; failed: number; unknown: number }[];
  breakdowns: Record<string, { key: string | null; name: string | null; total: number; sent: number }[]>;
}

interface Page {
  messages: { id: string; created_at: string; status: string; to: string[]; config: { name: string } | null }[];
  next_cursor: string | null;
}

async function get<T>(stack: TestStack, token: string, path: string): Promise<T> {
  const res = await stack.invoke(`email-analytics${path}`, { token, method: "GET" });
  const body = await res.json();
  assert.equal(res.status, 200, JSON.stringify(body));
  return body as T;
}

/** Insert audit rows for `userId` as a bulk load would (the postgres role, RLS bypassed). */
async function load(
  stack: TestStack,
  userId: string,
  rows: {
    config: string | null;
    status: string;
    created: string;
    to?: string[];
    latencyMs?: number;
    error?: string;
    batch?: string;
    template?: string;
    agent?: Record<string, unknown>;
  }[],
): Promise<string[]> {
  const ids: string[] = [];
  for (const row of rows) {
    const [{ id }] = await stack.sql<{ id: string }[]>`
      insert into public.email_audit_log
        (user_id, config_id, from_email, to_addresses, status, created_at, completed_at, error_class, batch_id,
         template_id, agent_context)
      values (${userId}, ${row.config}, 'sender@example.com', ${row.to ?? ["someone@alpha.example"]}, ${row.status},
              ${row.created}::text::timestamptz,
              ${row.latencyMs === undefined ? null : row.created}::text::timestamptz
                + make_interval(secs => ${(row.latencyMs ?? 0) / 1000}),
              ${row.error ?? null}, ${row.batch ?? null}, ${row.template ?? null},
              ${row.agent ? stack.sql.json(row.agent as never) : null})
      returning id`;
    ids.push(id);
  }
  return ids;
}

Deno.test({
  name: "email-analytics",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const stack = await startTestStack({ MAILROOM_ALLOW_PLAINTEXT_SMTP: "true" });
    const smtp = await startScriptedSmtp({
      rcpt: (address) => address.startsWith("gone@") ? "550 5.1.1 no such user" : "250 2.1.5 ok",
    });
    try {
      const alice = await stack.createUser();
      const bob = await stack.createUser();
      const main = await stack.createConfig(alice, { name: "main", port: smtp.port, security: "none", username: null });
      const other = await stack.createConfig(alice, {
        name: "other",
        port: smtp.port,
        security: "none",
        username: null,
        is_default: false,
      });
      const bobs = await stack.createConfig(bob, { name: "main", port: smtp.port, security: "none", username: null });
      const [template] = await stack.asDataApi(alice, (tx) =>
        tx<{ id: string }[]>`
        insert into public.email_templates (name, subject, text) values ('welcome', 'Hi', 'Hello') returning id`);
      const batchOf = async (user: { id: string }, config: string) => {
        const [batch] = await stack.sql<{ id: string }[]>`
          insert into public.email_batches (user_id, config_id, content, total)
          values (${user.id}, ${config}, '{"text": "x"}', 1) returning id`;
        return batch.id;
      };
      const aliceBatch = await batchOf(alice, main);
      const bobBatch = await batchOf(bob, bobs);

      // June 2026: a known set for the numbers. Bob's rows share the window and every key.
      const june = (day: number, hour = 12) => `2026-06-0${day}T${String(hour).padStart(2, "0")}:00:00Z`;
      await load(stack, alice.id, [
        { config: main, status: "sent", created: june(1), latencyMs: 1000, agent: { agent: "writer" } },
        {
          config: main,
          status: "sent",
          created: june(1, 13),
          latencyMs: 2000,
          to: ["a@alpha.example", "b@beta.example", "c@ALPHA.example"],
          agent: { agent: "writer" },
          template: template.id,
        },
        { config: main, status: "sent", created: june(2), latencyMs: 3000, template: template.id },
        {
          config: other,
          status: "failed",
          created: june(2, 13),
          to: ["x@beta.example"],
          error: "smtp_recipients_rejected",
          agent: { agent: "triage" },
        },
        {
          config: other,
          status: "failed",
          created: june(2, 14),
          to: ["y@beta.example"],
          error: "smtp_recipients_rejected",
          agent: { agent: "triage" },
        },
        {
          config: main,
          status: "unknown",
          created: june(3),
          error: "smtp_outcome_unknown",
          batch: aliceBatch,
          agent: { agent: "writer", run: 7 },
        },
        { config: main, status: "queued", created: june(3, 13), batch: aliceBatch },
        { config: null, status: "cancelled", created: june(3, 14) },
      ]);
      const [bobRow] = await load(stack, bob.id, [
        {
          config: bobs,
          status: "sent",
          created: june(2),
          latencyMs: 9000,
          to: ["z@alpha.example"],
          agent: { agent: "bob-bot", secret: "s" },
          batch: bobBatch,
        },
        { config: bobs, status: "failed", created: june(2), error: "smtp_auth_failed" },
      ]);
      const JUNE = "from=2026-06-01&to=2026-06-04";

      await t.step("totals, success rate and latency percentiles are exact", async () => {
        const s = await get<Summary>(stack, alice.token, `?${JUNE}`);
        assert.equal(s.total, 8);
        assert.deepEqual(s.totals, {
          sent: 3,
          failed: 2,
          unknown: 1,
          deferred: 0,
          queued: 1,
          scheduled: 0,
          sending: 0,
          cancelled: 1,
          pending_approval: 0,
          rejected: 0,
          expired: 0,
          suppressed: 0,
        });
        assert.equal(s.success_rate, 0.5, "3 sent of 6 finished");
        // percentile_cont over 1000, 2000, 3000 ms.
        assert.deepEqual(s.latency_ms, { count: 3, p50: 2000, p90: 2800, p99: 2980 });
        assert.deepEqual(s.range, {
          from: "2026-06-01T00:00:00.000000Z",
          to: "2026-06-04T00:00:00.000000Z",
          interval: "day",
          tz: "UTC",
        });
        assert.deepEqual(s.series, [
          { start: "2026-06-01T00:00:00+00:00", total: 2, sent: 2, failed: 0, unknown: 0 },
          { start: "2026-06-02T00:00:00+00:00", total: 3, sent: 1, failed: 2, unknown: 0 },
          { start: "2026-06-03T00:00:00+00:00", total: 3, sent: 0, failed: 0, unknown: 1 },
        ]);
      });

      await t.step("supabase.functions.invoke reads it with a query string, as docs/api.md shows", async () => {
        const supabase = createClient(stack.url, stack.anonKey, {
          auth: { persistSession: false, autoRefreshToken: false },
        });
        const { data, error } = await supabase.functions.invoke(`email-analytics?${JUNE}&tz=Europe/Paris`, {
          method: "GET",
          headers: { Authorization: `Bearer ${alice.token}` },
        });
        assert.equal(error, null);
        assert.equal(data.total, 8);
        assert.equal(data.range.tz, "Europe/Paris");
        assert.equal(data.series[0].start, "2026-06-01T00:00:00+02:00");
      });

      await t.step("every breakdown is exact, largest first", async () => {
        const s = await get<Summary>(stack, alice.token, `?${JUNE}`);
        assert.deepEqual(Object.keys(s.breakdowns), ["config", "recipient_domain", "error_code", "batch"]);
        assert.deepEqual(
          s.breakdowns.config.map((e) => [e.key, e.name, e.total, e.sent]),
          [[main, "main", 5, 3], [other, "other", 2, 0], [null, null, 1, 0]],
        );
        // A message counts once per domain it went to, whatever the case of the address.
        assert.deepEqual(
          s.breakdowns.recipient_domain.map((e) => [e.key, e.total, e.sent]),
          [["alpha.example", 6, 3], ["beta.example", 3, 1]],
        );
        assert.deepEqual(
          s.breakdowns.error_code.map((e) => [e.key, e.total]),
          [["smtp_recipients_rejected", 2], ["smtp_outcome_unknown", 1]],
        );
        assert.deepEqual(s.breakdowns.batch.map((e) => [e.key, e.total]), [[aliceBatch, 2]]);

        const agents = await get<Summary>(
          stack,
          alice.token,
          `?${JUNE}&group_by=agent_context.agent,agent_context.run,error_code`,
        );
        assert.deepEqual(Object.keys(agents.breakdowns), [
          "agent_context.agent",
          "agent_context.run",
          "error_code",
        ]);
        assert.deepEqual(
          agents.breakdowns["agent_context.agent"].map((e) => [e.key, e.total, e.sent]),
          [["writer", 3, 2], [null, 3, 1], ["triage", 2, 0]],
        );
        assert.deepEqual(agents.breakdowns["agent_context.run"].map((e) => [e.key, e.total]), [[null, 7], ["7", 1]]);
      });

      await t.step("each filter narrows the numbers exactly", async () => {
        const count = async (query: string) => (await get<Summary>(stack, alice.token, `?${JUNE}&${query}`)).total;
        assert.equal(await count("status=failed"), 2);
        assert.equal(await count("status=sent,unknown"), 4);
        assert.equal(await count("config=other"), 2);
        assert.equal(await count(`config=${main}`), 5);
        assert.equal(await count(`batch_id=${aliceBatch}`), 2);
        assert.equal(await count("template=welcome"), 2);
        assert.equal(await count(`template=${template.id}&status=sent`), 2);
        const within = async (range: string) => (await get<Summary>(stack, alice.token, `?${range}`)).total;
        assert.equal(await within("from=2026-06-02&to=2026-06-03"), 3);
        assert.equal(await within("from=2026-06-02T13:00:00Z&to=2026-06-02T14:00:00Z"), 1, "to is exclusive");
      });

      await t.step("an empty range has zeros, no rates and a zero-filled series", async () => {
        const s = await get<Summary>(stack, alice.token, "?from=2026-05-01&to=2026-05-03&interval=day");
        assert.equal(s.total, 0);
        assert.ok(Object.values(s.totals).every((n) => n === 0));
        assert.equal(s.success_rate, null);
        assert.deepEqual(s.latency_ms, { count: 0, p50: null, p90: null, p99: null });
        assert.deepEqual(s.series.map((b) => b.total), [0, 0]);
        assert.deepEqual(s.breakdowns.config, []);
        const hours = await get<Summary>(stack, alice.token, "?from=2026-05-01&to=2026-05-02&interval=hour");
        assert.equal(hours.series.length, 24);
      });

      await t.step("buckets follow the time zone across daylight-saving changes", async () => {
        await load(stack, alice.id, [
          // New York, spring forward on 2026-03-08 (a 23-hour day).
          { config: other, status: "sent", created: "2026-03-08T04:30:00Z" }, // 03-07 23:30 EST
          { config: other, status: "sent", created: "2026-03-08T05:30:00Z" }, // 03-08 00:30 EST
          { config: other, status: "sent", created: "2026-03-09T03:30:00Z" }, // 03-08 23:30 EDT
          { config: other, status: "sent", created: "2026-03-09T04:30:00Z" }, // 03-09 00:30 EDT
          // Fall back on 2026-11-01: 01:30 happens twice.
          { config: other, status: "sent", created: "2026-11-01T05:30:00Z" }, // 01:30 EDT
          { config: other, status: "failed", created: "2026-11-01T06:30:00Z" }, // 01:30 EST
        ]);
        const ny = await get<Summary>(
          stack,
          alice.token,
          "?from=2026-03-07&to=2026-03-10&tz=America/New_York&interval=day",
        );
        assert.equal(ny.range.from, "2026-03-07T05:00:00.000000Z", "a date is local midnight");
        assert.equal(ny.range.to, "2026-03-10T04:00:00.000000Z");
        assert.deepEqual(ny.series.map((b) => [b.start, b.total]), [
          ["2026-03-07T00:00:00-05:00", 1],
          ["2026-03-08T00:00:00-05:00", 2],
          ["2026-03-09T00:00:00-04:00", 1],
        ]);
        const utc = await get<Summary>(stack, alice.token, "?from=2026-03-07&to=2026-03-10&interval=day");
        assert.deepEqual(utc.series.map((b) => b.total), [0, 2, 2], "the same rows by UTC days");

        const fallBack = await get<Summary>(
          stack,
          alice.token,
          "?from=2026-11-01&to=2026-11-02&tz=America/New_York&interval=hour",
        );
        assert.equal(fallBack.series.length, 25, "the day has 25 hours");
        const oneThirty = fallBack.series.filter((b) => b.start.startsWith("2026-11-01T01:00:00"));
        assert.deepEqual(oneThirty.map((b) => [b.start, b.sent, b.failed]), [
          ["2026-11-01T01:00:00-04:00", 1, 0],
          ["2026-11-01T01:00:00-05:00", 0, 1],
        ]);

        // A skipped midnight (Santiago, 2026-09-06 starts at 01:00): the days after start at midnight again.
        await load(
          stack,
          alice.id,
          [5, 6, 7, 8].map((day) => ({ config: other, status: "sent", created: `2026-09-0${day}T16:00:00Z` })),
        );
        const santiago = await get<Summary>(
          stack,
          alice.token,
          "?from=2026-09-04&to=2026-09-10&tz=America/Santiago&interval=day",
        );
        assert.equal(santiago.total, 4);
        assert.deepEqual(santiago.series.map((b) => [b.start, b.total]), [
          ["2026-09-04T00:00:00-04:00", 0],
          ["2026-09-05T00:00:00-04:00", 1],
          ["2026-09-06T01:00:00-03:00", 1],
          ["2026-09-07T00:00:00-03:00", 1],
          ["2026-09-08T00:00:00-03:00", 1],
          ["2026-09-09T00:00:00-03:00", 0],
        ]);

        // Half-hour offsets: 2026-03-07T19:00Z is 00:30 on 03-08 in Kolkata.
        await load(stack, alice.id, [{ config: other, status: "sent", created: "2026-03-07T19:00:00Z" }]);
        const kolkata = await get<Summary>(
          stack,
          alice.token,
          "?from=2026-03-07&to=2026-03-09&tz=Asia/Kolkata&interval=day",
        );
        assert.equal(kolkata.range.tz, "Asia/Kolkata", "the zone as given, not an alias");
        assert.deepEqual(kolkata.series.map((b) => [b.start, b.total]), [
          ["2026-03-07T00:00:00+05:30", 0],
          ["2026-03-08T00:00:00+05:30", 3],
        ]);
      });

      await t.step("the message list pages newest first, each row exactly once while rows arrive", async () => {
        const start = Date.now();
        const at = (minutesAgo: number) => new Date(start - minutesAgo * 60_000).toISOString();
        const original = await load(
          stack,
          alice.id,
          Array.from({ length: 23 }, (_, i) => ({ config: main, status: "sent", created: at(30 + i) })),
        );
        const range = `from=${encodeURIComponent(at(120))}&to=${encodeURIComponent(at(-60))}`;
        const seen: string[] = [];
        let cursor: string | null = null;
        let late: string[] = [];
        for (let page = 0; page < 10; page++) {
          const query: string = `/messages?${range}&limit=5${cursor ? `&cursor=${cursor}` : ""}`;
          const body: Page = await get<Page>(stack, alice.token, query);
          seen.push(...body.messages.map((m) => m.id));
          const times = body.messages.map((m) => m.created_at);
          assert.deepEqual(times, [...times].sort().reverse(), "newest first");
          if (page === 1) {
            // New mail arrives (newer than every page so far), and one row older than the cursor lands late.
            await load(stack, alice.id, [{ config: main, status: "queued", created: new Date().toISOString() }]);
            late = await load(stack, alice.id, [{ config: main, status: "sent", created: at(100) }]);
          }
          cursor = body.next_cursor;
          if (!cursor) break;
        }
        assert.equal(new Set(seen).size, seen.length, "no row twice");
        assert.deepEqual(
          [...seen].sort(),
          [...original, ...late].sort(),
          "every row that was older than the cursor, once",
        );
      });

      await t.step("rows sharing a millisecond (one bulk insert) page exactly, microseconds kept", async () => {
        // What one send-bulk transaction writes: every row the same now(), with microseconds.
        const same = await load(
          stack,
          alice.id,
          Array.from(
            { length: 12 },
            () => ({ config: main, status: "queued", created: "2026-07-01T12:00:00.123456Z" }),
          ),
        );
        const close = await load(
          stack,
          alice.id,
          [1, 2, 3, 4].map((us) => ({ config: main, status: "queued", created: `2026-07-01T12:00:00.12346${us}Z` })),
        );
        const seen: string[] = [];
        let cursor: string | null = null;
        do {
          const query: string = `/messages?from=2026-07-01&to=2026-07-02&limit=5${cursor ? `&cursor=${cursor}` : ""}`;
          const body: Page = await get<Page>(stack, alice.token, query);
          seen.push(...body.messages.map((m) => m.id));
          cursor = body.next_cursor;
        } while (cursor);
        assert.deepEqual([...seen].sort(), [...same, ...close].sort(), "all 16, once each");
        const narrow = await get<Summary>(
          stack,
          alice.token,
          "?from=2026-07-01T12:00:00.123462Z&to=2026-07-01T12:00:00.123464Z",
        );
        assert.equal(narrow.total, 2, "from and to keep their microseconds");
      });

      await t.step("a message has its recipients, outcome, config and context; real sends included", async () => {
        const ok = await stack.invoke("send-email", {
          token: alice.token,
          body: { to: "real@alpha.example", subject: "real", text: "x", agent_context: { agent: "live" } },
        });
        assert.equal(ok.status, 200);
        const { id } = await ok.json();
        const failed = await stack.invoke("send-email", {
          token: alice.token,
          body: { to: "gone@beta.example", subject: "bounce", text: "x" },
        });
        assert.equal(await errorCode(failed, 502), "smtp_recipients_rejected");
        const bulk = await stack.invoke("send-bulk", {
          token: alice.token,
          body: { config: "other", subject: "bulk", text: "x", recipients: ["b1@gamma.example", "gone@gamma.example"] },
        });
        assert.equal(bulk.status, 202);
        const { batch_id } = await bulk.json();
        await stack.drainOutbox();

        const message = await get<Record<string, unknown>>(stack, alice.token, `/messages/${id}`);
        assert.equal(message.status, "sent");
        assert.equal(message.subject, "real");
        assert.deepEqual(message.to, ["real@alpha.example"]);
        assert.deepEqual((message.config as { name: string }).name, "main");
        assert.deepEqual(message.agent_context, { agent: "live" });
        assert.match(String(message.message_id), /^<.+@.+>$/);
        assert.equal((message.recipients as { status: string }[])[0].status, "accepted");

        const today = await get<Summary>(stack, alice.token, `?from=${new Date(Date.now() - 3600_000).toISOString()}`);
        assert.equal(today.breakdowns.recipient_domain.find((e) => e.key === "gamma.example")?.total, 2);
        const batch = await get<Summary>(stack, alice.token, `?batch_id=${batch_id}`);
        assert.deepEqual([batch.total, batch.totals.sent, batch.totals.failed], [2, 1, 1]);
        const failures = await get<Page>(stack, alice.token, "/messages?status=failed&config=main");
        assert.ok(failures.messages.some((m) => m.to[0] === "gone@beta.example"));
      });

      await t.step("a message's content is what went out; recipient, agent and client filters find it", async () => {
        const agentToken = await stack.mint({ sub: alice.id, email: alice.email, clientId: "claude-desktop" });
        const before = smtp.messages().length;
        const res = await stack.invoke("send-email", {
          token: agentToken,
          body: {
            to: "Ada <Content@Delta.example>",
            cc: "cc@delta.example",
            bcc: "hidden@delta.example",
            subject: "Quarterly <numbers>",
            html: "<p>Hello <b>Ada</b></p><img src=x onerror=alert(1)>",
            headers: { "X-Campaign": "q3" },
            attachments: [{ filename: "notes.txt", content: btoa("some notes"), content_type: "text/plain" }],
            agent_context: { agent: "reporter" },
          },
        });
        assert.equal(res.status, 200, await res.clone().text());
        const { id } = await res.json();
        const content = await get<Record<string, unknown>>(stack, alice.token, `/messages/${id}/content`);
        assert.equal(content.source, "sent");
        assert.deepEqual([content.to, content.cc, content.bcc], [
          ["Content@delta.example"],
          ["cc@delta.example"],
          ["hidden@delta.example"],
        ]);
        assert.equal(content.html, "<p>Hello <b>Ada</b></p><img src=x onerror=alert(1)>");
        assert.match(String(content.text), /Hello Ada/);
        assert.deepEqual(content.attachments, [{ filename: "notes.txt", content_type: "text/plain", size_bytes: 10 }]);
        assert.equal(content.truncated, false);
        // The header block is the one the SMTP server received, field for field.
        const received = smtp.messages()[before].data;
        const headers = content.headers as { name: string; value: string }[];
        for (const name of ["Subject", "Message-ID", "Date", "X-Campaign", "To", "Cc", "From"]) {
          const field = headers.find((h) => h.name === name);
          assert.ok(field, name);
          assert.ok(received.replace(/\r\n[ \t]+/g, " ").includes(`${name}: ${field.value}`), name);
        }
        assert.ok(!headers.some((h) => h.name.toLowerCase() === "bcc"));
        // The agent that sent it reads it; another agent of the same user does not.
        const mine = await stack.invoke(`email-analytics/messages/${id}/content`, { token: agentToken, method: "GET" });
        assert.equal(mine.status, 200);
        const otherAgent = await stack.mint({ sub: alice.id, email: alice.email, clientId: "other-agent" });
        assert.equal(
          await errorCode(
            await stack.invoke(`email-analytics/messages/${id}/content`, { token: otherAgent, method: "GET" }),
            404,
          ),
          "content_not_kept",
        );

        // Filters: the Bcc address (any case) finds it once it was sent; the agent's name and client too.
        const byRecipient = await get<Page>(stack, alice.token, "/messages?recipient=HIDDEN@delta.example");
        assert.deepEqual(byRecipient.messages.map((m) => m.id), [id]);
        const byTo = await get<Page>(stack, alice.token, "/messages?recipient=content@DELTA.example");
        assert.deepEqual(byTo.messages.map((m) => m.id), [id]);
        // Pages of a filtered list: keyset cursors carry through, every row once.
        const more = [];
        for (const subject of ["second", "third"]) {
          const sent = await stack.invoke("send-email", {
            token: alice.token,
            body: { to: "content@delta.example", subject, text: "x", agent_context: { agent: "reporter" } },
          });
          more.push((await sent.json()).id);
        }
        const first = await get<Page>(stack, alice.token, "/messages?recipient=content@delta.example&limit=2");
        assert.deepEqual(first.messages.map((m) => m.id), [more[1], more[0]]);
        const second = await get<Page>(
          stack,
          alice.token,
          `/messages?recipient=content@delta.example&limit=2&cursor=${first.next_cursor}`,
        );
        assert.deepEqual([second.messages.map((m) => m.id), second.next_cursor], [[id], null]);
        const sentByReporter = await get<Page>(stack, alice.token, "/messages?agent=reporter&status=sent&config=main");
        assert.deepEqual(sentByReporter.messages.map((m) => m.id), [more[1], more[0], id]);
        const byAgent = await get<Page>(stack, alice.token, "/messages?agent=reporter&status=failed");
        assert.deepEqual(byAgent.messages.map((m) => m.id), []);
        const byClient = await get<{ messages: { id: string; client_id: string | null }[] }>(
          stack,
          alice.token,
          "/messages?client_id=claude-desktop",
        );
        assert.deepEqual(byClient.messages.map((m) => [m.id, m.client_id]), [[id, "claude-desktop"]]);
        // Bob's filters and content never reach Alice's message.
        assert.equal(
          (await get<Page>(stack, bob.token, "/messages?recipient=hidden@delta.example")).messages.length,
          0,
        );
        assert.equal(
          await errorCode(
            await stack.invoke(`email-analytics/messages/${id}/content`, { token: bob.token, method: "GET" }),
            404,
          ),
          "message_not_found",
        );

        // A queued one (a bulk row) is rebuilt from its request.
        const bulk = await stack.invoke("send-bulk", {
          token: alice.token,
          body: { template: "welcome", recipients: [{ email: "bulk@delta.example", data: { name: "Bo" } }] },
        });
        assert.equal(bulk.status, 202, await bulk.clone().text());
        await stack.drainOutbox();
        const [queued] = (await get<Page>(stack, alice.token, "/messages?recipient=bulk@delta.example")).messages;
        const rebuilt = await get<Record<string, unknown>>(stack, alice.token, `/messages/${queued.id}/content`);
        assert.deepEqual([rebuilt.source, rebuilt.subject, rebuilt.text, rebuilt.to], [
          "request",
          "Hi",
          "Hello",
          ["bulk@delta.example"],
        ]);
        // A row with neither (the loaded June rows) says its content was not kept.
        const [june] = (await get<Page>(stack, alice.token, `/messages?${JUNE}&limit=1`)).messages;
        assert.equal(
          await errorCode(
            await stack.invoke(`email-analytics/messages/${june.id}/content`, { token: alice.token, method: "GET" }),
            404,
          ),
          "content_not_kept",
        );
      });

      await t.step("user A never sees user B's numbers or rows", async () => {
        const s = await get<Summary>(stack, alice.token, `?${JUNE}&group_by=agent_context.agent,agent_context.secret`);
        assert.equal(s.total, 8, "bob's two June rows are not counted");
        assert.ok(!s.breakdowns["agent_context.agent"].some((e) => e.key === "bob-bot"));
        assert.deepEqual(s.breakdowns["agent_context.secret"].map((e) => e.key), [null]);
        // Bob's ids as filters: his config is not found, his batch has nothing of Alice's.
        assert.equal(
          await errorCode(
            await stack.invoke(`email-analytics?config=${bobs}`, { token: alice.token, method: "GET" }),
            404,
          ),
          "config_not_found",
        );
        assert.equal((await get<Summary>(stack, alice.token, `?${JUNE}&batch_id=${bobBatch}`)).total, 0);
        assert.equal(
          await errorCode(
            await stack.invoke(`email-analytics/messages/${bobRow}`, { token: alice.token, method: "GET" }),
            404,
          ),
          "message_not_found",
        );
        // A cursor crafted from Bob's row only positions Alice's list.
        const [bobTime] = await stack.sql<{ t: string }[]>`
          select to_char(created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') as t
            from public.email_audit_log where id = ${bobRow}`;
        const crafted = encodeCursor({ createdAt: bobTime.t, id: bobRow });
        const page = await get<Page>(stack, alice.token, `/messages?${JUNE}&cursor=${crafted}&limit=200`);
        assert.ok(page.messages.length > 0);
        const owners = await stack.sql<{ user_id: string }[]>`
          select distinct user_id from public.email_audit_log where id = any (${
          page.messages.map((m) => m.id)
        }::uuid[])`;
        assert.deepEqual(owners.map((o) => o.user_id), [alice.id]);
        // And Bob sees exactly his own.
        const bobs2 = await get<Summary>(stack, bob.token, `?${JUNE}`);
        assert.deepEqual([bobs2.total, bobs2.totals.sent, bobs2.latency_ms.p50], [2, 1, 9000]);
      });

      await t.step("bad input is a 400 with a stable code", async () => {
        const cases: [string, string][] = [
          ["?from=yesterday", "invalid_date"],
          ["?from=2026-02-30", "invalid_date"],
          ["?to=2026-06-01T25:00:00Z", "invalid_date"],
          ["?from=2026-06-02&to=2026-06-01", "invalid_range"],
          ["?from=2026-06-01&to=2026-06-01", "invalid_range"],
          ["?from=2025-01-01&to=2026-06-01", "range_too_large"],
          ["?group_by=agent_context", "invalid_group_by"],
          ["?group_by=agent_context.a';drop", "invalid_group_by"],
          ["?group_by=user_id", "invalid_group_by"],
          [
            `?group_by=${Array(9).fill("config").join(",")},${
              Array.from({ length: 8 }, (_, i) => `agent_context.k${i}`)
            }`,
            "invalid_group_by",
          ],
          ["?interval=week", "invalid_interval"],
          ["?tz=Mars/Olympus", "invalid_timezone"],
          ["?tz=UTC';select", "invalid_timezone"],
          ["?tz=%2B05", "invalid_timezone"],
          ["?tz=UTC&tz=Europe/Paris", "duplicate_parameter"],
          ["/messages?limit=1&limit=500", "duplicate_parameter"],
          [
            `/messages?cursor=${encodeCursor({ createdAt: "2026-02-30T00:00:00.000000Z", id: crypto.randomUUID() })}`,
            "invalid_cursor",
          ],
          ["?status=delivered", "invalid_status"],
          ["?batch_id=42", "invalid_batch_id"],
          ["/messages?cursor=not-a-cursor", "invalid_cursor"],
          [`/messages?cursor=${btoa('["2026-01-01", "x"]')}`, "invalid_cursor"],
          ["/messages?limit=0", "invalid_limit"],
          ["/messages?limit=1000", "invalid_limit"],
          ["/messages?recipient=nobody", "invalid_recipient"],
          ["/messages?agent=", "invalid_agent"],
          [`/messages?client_id=${"x".repeat(201)}`, "invalid_client_id"],
          ["/messages?agent=a&agent=b", "duplicate_parameter"],
        ];
        for (const [query, code] of cases) {
          const res = await stack.invoke(`email-analytics${query}`, { token: alice.token, method: "GET" });
          assert.equal(await errorCode(res, 400), code, query);
        }
        assert.equal(
          await errorCode(
            await stack.invoke("email-analytics?template=nope", { token: alice.token, method: "GET" }),
            404,
          ),
          "template_not_found",
        );
        assert.equal(
          await errorCode(await stack.invoke("email-analytics", { token: alice.token, method: "POST", body: {} }), 405),
          "method_not_allowed",
        );
        assert.equal(
          await errorCode(await stack.invoke("email-analytics/other", { token: alice.token, method: "GET" }), 404),
          "route_not_found",
        );
        assert.equal(await errorCode(await stack.invoke("email-analytics", { method: "GET" }), 401), "missing_token");
      });
    } finally {
      await smtp.close();
      await stack.close();
    }
  },
});
