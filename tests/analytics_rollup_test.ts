// The email-analytics rollup gives the same answers as the rows: the summary through the
// function (which summarizes settled days and reads them back) against the same summary computed
// from every row (rollup off), for random data, filters and time zones, after a config is
// deleted and after a summarized row is changed behind the app's back.
import assert from "node:assert/strict";
import { startTestStack } from "./harness.ts";
import { createSql, withUser } from "../supabase/functions/_shared/db.ts";
import { parseSummaryQuery } from "../supabase/functions/_shared/analytics/params.ts";
import { analyticsSummary, summarizeSettledDays } from "../supabase/functions/_shared/analytics/store.ts";

Deno.test({
  name: "email-analytics rollup",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const stack = await startTestStack();
    const sql = createSql({ dbUrl: stack.dbUrl, dbPooled: false }, 2);
    try {
      const alice = await stack.createUser();
      const bob = await stack.createUser();
      const main = await stack.createConfig(alice, { name: "main", port: 2525 });
      const spare = await stack.createConfig(alice, { name: "spare", port: 2525, is_default: false });
      const [template] = await stack.asDataApi(alice, (tx) =>
        tx<{ id: string }[]>`
          insert into public.email_templates (name, subject, text) values ('welcome', 'Hi', 'Hello') returning id`);
      const [batch] = await stack.sql<{ id: string }[]>`
        insert into public.email_batches (user_id, config_id, content, total)
        values (${alice.id}, ${main}, '{"text": "x"}', 1) returning id`;
      // 3,000 random rows over the last 12 days (final ones older than a day; some still queued
      // in the last two days), 1-3 recipients each; bob's rows share the window.
      const seed = (user: string, rows: number) =>
        stack.sql`
          insert into public.email_audit_log
            (user_id, config_id, batch_id, template_id, from_email, to_addresses, status, error_class,
             created_at, completed_at, agent_context)
          select ${user}, (array[${main}::uuid, ${spare}::uuid, null])[1 + (random() * 2.99)::int],
                 case when random() < 0.3 then ${batch.id}::uuid end,
                 case when random() < 0.2 then ${template.id}::uuid end,
                 'sender@example.com',
                 array(select 'r' || k || '@d' || (random() * 7)::int || '.example'
                         from generate_series(1, 1 + (random() * 2)::int) k),
                 s.status,
                 case when s.status in ('failed', 'unknown') then (array['e1', 'e2'])[1 + (random())::int] end,
                 s.created, case when s.status = 'sent' then s.created + make_interval(secs => random() * 30) end,
                 jsonb_build_object('agent', 'a' || (random() * 3)::int)
            from (
              select now() - make_interval(secs => random() * 12 * 86400) as created,
                     (array['sent', 'sent', 'sent', 'failed', 'unknown', 'deferred', 'cancelled'])
                       [1 + (random() * 6)::int] as status
                from generate_series(1, ${rows})
            ) s0
            cross join lateral (
              select s0.created,
                     case when s0.created > now() - interval '2 days' and random() < 0.1 then 'queued'
                          else s0.status end as status
            ) s`;
      await seed(alice.id, 3000);
      await seed(bob.id, 500);

      const claims = { sub: alice.id, role: "authenticated" as const };
      const fromRows = (query: string) =>
        withUser(
          sql,
          claims,
          (tx) => analyticsSummary(tx, parseSummaryQuery(new URLSearchParams(query)), { rollup: false }),
        );
      const throughFunction = async (query: string) => {
        const res = await stack.invoke(`email-analytics?${query}`, { token: alice.token, method: "GET" });
        const body = await res.json();
        assert.equal(res.status, 200, JSON.stringify(body));
        return body;
      };
      // `to` fixed: by default it is now, which moves between the two calls.
      const to = new Date().toISOString();
      const from = `${new Date(Date.now() - 13 * 86_400_000).toISOString()}&to=${to}`;
      const queries = [
        `from=${from}`,
        `from=${from}&tz=Europe/Paris`,
        `from=${from}&tz=America/New_York&interval=hour`,
        `from=${from}&tz=Asia/Kolkata`,
        `from=${from}&status=sent,failed`,
        `from=${from}&config=spare`,
        `from=${from}&batch_id=${batch.id}`,
        `from=${from}&template=welcome&status=sent`,
        `from=${from}&group_by=recipient_domain,config`,
        `from=${from}&group_by=agent_context.agent,error_code`,
        `to=${to}`, // 30 days before to
      ];
      const assertSame = async (label: string) => {
        for (const query of queries) {
          assert.deepEqual(await throughFunction(query), await fromRows(query), `${label}: ${query}`);
        }
      };

      await t.step("settled days are summarized a week per request, kept even when the summary times out", async () => {
        const query = parseSummaryQuery(new URLSearchParams(`from=${from}`));
        const summarized = async () =>
          (await stack.sql<{ days: number }[]>`
            select count(*)::int as days from private.email_stats_days where user_id = ${alice.id}`)[0].days;
        assert.equal(await summarizeSettledDays(sql, claims, query), 7);
        await assert.rejects(
          withUser(sql, claims, (tx) => analyticsSummary(tx, query, { statementTimeout: "1ms" })),
          (error: { code?: string }) => error.code === "analytics_timeout",
        );
        assert.equal(await summarized(), 7, "the first week stays summarized");
        const rest = await summarizeSettledDays(sql, claims, query);
        assert.ok(rest >= 2 && rest <= 7, `the next request summarizes the rest (${rest})`);
        assert.equal(await summarized(), 7 + rest);
        // A summary the rollup cannot serve summarizes nothing.
        const filtered = parseSummaryQuery(new URLSearchParams(`from=${from}&config=spare`));
        assert.equal(await summarizeSettledDays(sql, claims, filtered), 0);
        await stack.sql`delete from private.email_stats_days where user_id = ${alice.id}`;
      });

      await t.step("the function's answers equal the rows' for every filter, breakdown and zone", async () => {
        await assertSame("first");
        const [{ days }] = await stack.sql<{ days: number }[]>`
          select count(*)::int as days from private.email_stats_days where user_id = ${alice.id}`;
        assert.ok(days >= 9, `settled days were summarized (${days})`);
        await assertSame("again, from the rollup");
      });

      await t.step("a deleted config reads as null in the rollup, as in the rows", async () => {
        await stack.asDataApi(alice, (tx) => tx`delete from public.user_smtp_configs where id = ${spare}`);
        queries.splice(queries.indexOf(`from=${from}&config=spare`), 1);
        await assertSame("config deleted");
      });

      await t.step("a summarized row changed behind the app's back is counted as it is now", async () => {
        await stack.sql`
          update public.email_audit_log set status = 'failed', error_class = 'e3', completed_at = null
           where id in (select id from public.email_audit_log
                         where user_id = ${alice.id} and status = 'sent' and created_at < now() - interval '5 days'
                         limit 50)`;
        await stack.sql`
          delete from public.email_audit_log
           where id in (select id from public.email_audit_log
                         where user_id = ${alice.id} and created_at < now() - interval '6 days' limit 20)`;
        await assertSame("rows changed");
      });

      await t.step("above the exact-latency size, percentiles come from the histogram within 1%", async () => {
        const query = parseSummaryQuery(new URLSearchParams(`from=${from}`));
        const exact = await withUser(sql, claims, (tx) => analyticsSummary(tx, query, { rollup: false }));
        const histogram = await withUser(sql, claims, (tx) => analyticsSummary(tx, query, { exactLatencyRows: 0 }));
        assert.equal(histogram.latency_ms.count, exact.latency_ms.count);
        for (const p of ["p50", "p90", "p99"] as const) {
          const [a, b] = [exact.latency_ms[p] as number, histogram.latency_ms[p] as number];
          assert.ok(Math.abs(a - b) <= a * 0.01 + 1, `${p}: ${b} within 1% of ${a}`);
        }
      });

      await t.step("bob's rollup is his own: alice's numbers never include his rows", async () => {
        const bobs = await stack.invoke(`email-analytics?from=${from}`, { token: bob.token, method: "GET" });
        const body = await bobs.json();
        assert.equal(body.total, 500);
        const days = await stack.asDataApi(
          alice,
          (tx) => tx<{ user_id: string }[]>`select distinct user_id from private.email_stats_days`,
        );
        assert.deepEqual(days.map((d) => d.user_id), [alice.id], "alice reads only her own summarized days");
      });
    } finally {
      await sql.end({ timeout: 2 });
      await stack.close();
    }
  },
});
