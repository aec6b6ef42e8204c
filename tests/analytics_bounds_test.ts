// email-analytics requests run under their own statement timeout, shorter than the role's 8 s,
// and a query stopped by it is a 503 `analytics_timeout` that says how to ask for less.
// Against a real Postgres, as the user, with the rows written straight into the table.
import assert from "node:assert/strict";
import { bootstrapPlatform, freePort, pushMigrations, startCluster } from "../local/postgres.ts";
import { AUTHENTICATED_STATEMENT_TIMEOUT, createSql, withUser } from "../supabase/functions/_shared/db.ts";
import { ApiError } from "../supabase/functions/_shared/http.ts";
import { parseMessagesQuery, parseSummaryQuery } from "../supabase/functions/_shared/analytics/params.ts";
import {
  ANALYTICS_STATEMENT_TIMEOUT,
  analyticsSummary,
  getMessage,
  listMessages,
} from "../supabase/functions/_shared/analytics/store.ts";

Deno.test({
  name: "analytics statement timeout",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const dir = await Deno.makeTempDir({ prefix: "mailroom-analytics-bounds-" });
    const cluster = await startCluster({ dir, port: freePort(), fast: true });
    const sql = createSql({ dbUrl: cluster.url, dbPooled: false }, 2);
    try {
      await bootstrapPlatform(cluster.adminUrl);
      await pushMigrations(cluster.url);
      const [{ id: user }] = await sql<{ id: string }[]>`
        insert into auth.users (id, email) values (gen_random_uuid(), 'busy@example.com') returning id`;
      // 100,000 sends over the last 30 days: a summary reads them all (about 0.1-0.5 s here).
      await sql`
        insert into public.email_audit_log (user_id, from_email, to_addresses, status, created_at, completed_at)
        select ${user}, 'sender@example.com', array['r' || i || '@example.com'], 'sent',
               now() - make_interval(secs => i * 25), now() - make_interval(secs => i * 25 - 1)
          from generate_series(1, 100000) i`;
      await sql`analyze public.email_audit_log`;
      const claims = { sub: user, role: "authenticated" as const };
      const timeoutIn = (tx: Parameters<Parameters<typeof withUser>[2]>[0]) =>
        tx<{ timeout: string }[]>`select current_setting('statement_timeout') as timeout`.then(([r]) => r.timeout);

      await t.step("the summary, the message list and one message each run under the analytics timeout", async () => {
        assert.notEqual(ANALYTICS_STATEMENT_TIMEOUT, AUTHENTICATED_STATEMENT_TIMEOUT);
        const seen = await withUser(sql, claims, async (tx) => {
          const summary = await analyticsSummary(tx, parseSummaryQuery(new URLSearchParams()));
          assert.equal(summary.total, 100_000);
          return await timeoutIn(tx);
        });
        assert.equal(seen, ANALYTICS_STATEMENT_TIMEOUT);
        const listed = await withUser(sql, claims, async (tx) => {
          const { messages } = await listMessages(tx, parseMessagesQuery(new URLSearchParams({ limit: "2" })));
          await getMessage(tx, messages[0].id);
          return await timeoutIn(tx);
        });
        assert.equal(listed, ANALYTICS_STATEMENT_TIMEOUT);
      });

      await t.step("a summary that runs past it is stopped: 503 analytics_timeout, not a 500", async () => {
        const error = await withUser(
          sql,
          claims,
          // From the rows (the rollup the first step made would answer in a few ms).
          (tx) =>
            analyticsSummary(tx, parseSummaryQuery(new URLSearchParams()), { statementTimeout: "5ms", rollup: false }),
        ).then(() => undefined, (e) => e);
        assert.ok(error instanceof ApiError, String(error));
        assert.equal(error.status, 503);
        assert.equal(error.code, "analytics_timeout");
        assert.match(error.message, /ran longer than 5ms.*shorter range/);
        assert.deepEqual(error.details, { statement_timeout: "5ms", retryable: false });
      });

      await t.step("the timeout ends with the request: the next transaction has the role's again", async () => {
        assert.equal(await withUser(sql, claims, timeoutIn), AUTHENTICATED_STATEMENT_TIMEOUT);
      });
    } finally {
      await sql.end({ timeout: 2 });
      await cluster.stop();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
