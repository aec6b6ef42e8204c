// The analytics rollup at its edges (each found by an adversarial review, each failing before
// its fix): a UTC day is 24 hours in a zone that changes its clock that day; a recipient
// without a domain (inserted through the Data API) cannot make summaries fail; a day still
// waiting on a row does not hold back the newer settled days.
import assert from "node:assert/strict";
import { startTestStack } from "./harness.ts";

Deno.test({
  name: "email-analytics rollup edges",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const stack = await startTestStack();
    try {
      const get = async (token: string, query: string) => {
        const res = await stack.invoke(`email-analytics?${query}`, { token, method: "GET" });
        return { status: res.status, body: await res.json() };
      };

      await t.step("a day on which the zone changes its clock counts each row once", async () => {
        const alice = await stack.createUser();
        // The latest settled UTC day on which America/New_York changes its offset.
        const [{ d }] = await stack.sql<{ d: Date }[]>`
          select d from generate_series(date_trunc('day', now(), 'UTC') - interval '360 days',
                                        date_trunc('day', now(), 'UTC') - interval '4 days', interval '1 day') d
           where extract(timezone from d at time zone 'America/New_York' at time zone 'UTC') is not null
             and ((d + interval '24 hours') at time zone 'America/New_York') - (d at time zone 'America/New_York')
                 <> interval '24 hours'
           order by d desc limit 1`;
        // One sent message every hour, two days either side of it.
        await stack.sql`
          insert into public.email_audit_log (user_id, from_email, to_addresses, status, created_at, completed_at)
          select ${alice.id}, 'a@example.com', array['x@d.example'], 'sent', h + interval '10 minutes',
                 h + interval '10 minutes 1 second'
            from generate_series(${d}::timestamptz - interval '2 days', ${d}::timestamptz + interval '2 days',
                                 interval '1 hour') h`;
        const from = new Date(d.getTime() - 2 * 86_400_000).toISOString();
        const to = new Date(d.getTime() + 36 * 3_600_000).toISOString(); // mid-day after the DST day
        const query = `from=${from}&to=${to}&tz=America/New_York`;
        for (let i = 0; i < 3; i++) await get(alice.token, query); // summarize the settled days
        const [{ n }] = await stack.sql<{ n: number }[]>`
          select count(*)::int as n from public.email_audit_log
           where user_id = ${alice.id} and created_at >= ${from} and created_at < ${to}`;
        const { body } = await get(alice.token, query);
        assert.equal(body.total, n, `rows created in [${from}, ${to}): ${n}; the summary says ${body.total}`);
      });

      await t.step("a row with a NULL recipient (inserted through the Data API) never breaks the summary", async () => {
        const bob = await stack.createUser();
        const [row] = await stack.asDataApi(bob, (tx) =>
          tx<{ id: string }[]>`
            insert into public.email_audit_log (from_email, to_addresses, status, payload, scheduled_at)
            values ('b@example.com', '{NULL}', 'scheduled', '{}', now() + interval '30 days') returning id`);
        const cancel = await stack.invoke(`send-email/${row.id}/cancel`, { token: bob.token });
        assert.equal(cancel.status, 200);
        // Two days later (time passing, simulated):
        await stack.sql`update public.email_audit_log set created_at = now() - interval '3 days' where id = ${row.id}`;
        for (let i = 0; i < 6; i++) {
          const { status, body } = await get(bob.token, "");
          assert.equal(status, 200, `request ${i + 1}: ${JSON.stringify(body)}`);
        }
      });

      await t.step("old days with a pending row do not stop the newer settled days from being summarized", async () => {
        const carol = await stack.createUser();
        await stack.sql`
          insert into public.email_audit_log (user_id, from_email, to_addresses, status, created_at, completed_at)
          select ${carol.id}, 'c@example.com', array['x@d.example'],
                 case when g < 7 then 'scheduled' else 'sent' end,
                 date_trunc('day', now(), 'UTC') - interval '29 days' + g * interval '1 day' + interval '1 hour',
                 case when g >= 7 then now() end
            from generate_series(0, 26) g`;
        for (let i = 0; i < 5; i++) await get(carol.token, "");
        const [{ n }] = await stack.sql<{ n: number }[]>`
          select count(*)::int as n from private.email_stats_days where user_id = ${carol.id}`;
        assert.ok(n > 0, `20 settled days, none summarized after 5 requests (${n})`);
      });
    } finally {
      await stack.close();
    }
  },
});
