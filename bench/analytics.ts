// The analytics case of `deno task bench`: 1,000,000 audit rows across 1,000 users (the
// busiest with 100,000), spread over the last 365 days; then, for the busiest user's last 30
// days, the email-analytics summary and one page of messages through the function (median of
// several runs), side by side with the seed's approach measured in the same run: select the
// user's rows for the range (as the user, RLS on) and count them in the function.
import type postgres from "postgres";
import type { TestStack } from "../tests/harness.ts";

export interface AnalyticsBenchOptions {
  rows: number;
  users: number;
  runs: number;
}

export interface AnalyticsBenchRow {
  case: string;
  median_ms: number;
  vs_seed: string;
}

async function median(runs: number, fn: () => Promise<unknown>): Promise<number> {
  await fn(); // warm
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const started = performance.now();
    await fn();
    times.push(performance.now() - started);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)];
}

/** Bulk-load the rows straight into Postgres (generate_series; no send path could write a million in a bench). */
async function seed(sql: postgres.Sql, options: AnalyticsBenchOptions): Promise<string> {
  const busiestRows = Math.round(options.rows / 10);
  const [{ id: busiest }] = await sql<{ id: string }[]>`
    insert into auth.users (id, email)
    select gen_random_uuid(), 'analytics-bench-' || i || '@example.com' from generate_series(1, ${options.users}) i
    returning id`;
  const users = await sql<{ id: string }[]>`
    select id from auth.users where email like 'analytics-bench-%' and id <> ${busiest}`;
  const configs = await sql<{ id: string }[]>`
    insert into public.user_smtp_configs (user_id, name, host, port, from_email, is_default)
    select ${busiest}, 'config-' || i, 'smtp' || i || '.example.com', 465, 'sender@example.com', i = 1
      from generate_series(1, 3) i
    returning id`;
  const insert = (userExpr: postgres.PendingQuery<postgres.Row[]>, count: number, configIds: string[] | null) =>
    sql`
      insert into public.email_audit_log
        (user_id, config_id, from_email, to_addresses, status, error_class, created_at, completed_at, agent_context)
      select ${userExpr}, ${configIds ? sql`(${configIds}::uuid[])[1 + i % 3]` : sql`null`}, 'sender@example.com',
             array['r' || i || '@domain' || (i % 20) || '.example'],
             case when i % 100 < 85 then 'sent' when i % 100 < 93 then 'failed'
                  when i % 100 < 97 then 'unknown' else 'queued' end,
             case when i % 100 between 85 and 92 then 'smtp_recipients_rejected'
                  when i % 100 between 93 and 96 then 'smtp_outcome_unknown' end,
             now() - make_interval(secs => (i::double precision / ${count}) * 365 * 86400),
             case when i % 100 < 97 then now() - make_interval(secs => (i::double precision / ${count}) * 365 * 86400)
                  + make_interval(secs => 0.2 + (i % 50) / 10.0) end,
             jsonb_build_object('agent', 'agent-' || (i % 5), 'via', 'bench')
        from generate_series(1, ${count}) i`;
  await insert(sql`${busiest}::uuid`, busiestRows, configs.map((c) => c.id));
  const others = users.map((u) => u.id);
  await insert(sql`(${others}::uuid[])[1 + i % ${others.length}]`, options.rows - busiestRows, null);
  await sql`analyze public.email_audit_log`;
  return busiest;
}

/** As the user, through RLS, the way withUser (and PostgREST) does it. */
function asUser<T>(sql: postgres.Sql, userId: string, fn: (tx: postgres.TransactionSql) => Promise<T>): Promise<T> {
  return sql.begin(async (tx) => {
    await tx`select set_config('request.jwt.claims', ${JSON.stringify({ sub: userId, role: "authenticated" })}, true),
                    set_config('request.jwt.claim.sub', ${userId}, true),
                    set_config('role', 'authenticated', true)`;
    return await fn(tx);
  }) as Promise<T>;
}

/**
 * Seed, measure, print the table and the plan; returns the rows for the JSON report.
 *
 * @example
 * ```ts
 * await benchAnalytics(stack, token => ..., { rows: 1_000_000, users: 1_000, runs: 7 });
 * ```
 */
export async function benchAnalytics(
  stack: TestStack,
  options: AnalyticsBenchOptions,
): Promise<{ rows: AnalyticsBenchRow[]; plan: string[]; seedSeconds: number; busiestInRange: number }> {
  const seeding = performance.now();
  const busiest = await seed(stack.sql, options);
  const seedSeconds = (performance.now() - seeding) / 1000;
  const token = await stack.mint({ sub: busiest });
  const from = new Date(Date.now() - 30 * 86_400_000).toISOString();
  const range = `from=${encodeURIComponent(from)}`;

  const summary = await median(options.runs, async () => {
    const res = await stack.invoke(`email-analytics?${range}`, { token, method: "GET" });
    if (res.status !== 200) throw new Error(`email-analytics answered ${res.status}: ${await res.text()}`);
    await res.json();
  });
  const page = await median(options.runs, async () => {
    const res = await stack.invoke(`email-analytics/messages?${range}&limit=50`, { token, method: "GET" });
    if (res.status !== 200) throw new Error(`email-analytics/messages answered ${res.status}`);
    await res.json();
  });
  const sqlOnly = await median(
    options.runs,
    () =>
      asUser(stack.sql, busiest, (tx) =>
        tx`select private.email_analytics(${from}::timestamptz, now(), 'day', 'UTC',
                                        array['config', 'recipient_domain', 'error_code', 'batch'])`),
  );
  // The seed's approach: every row of the range into the function, counted there.
  let busiestInRange = 0;
  const seedApproach = await median(options.runs, async () => {
    const rows = await asUser(stack.sql, busiest, (tx) =>
      tx<Record<string, unknown>[]>`
        select * from public.email_audit_log where created_at >= ${from}::timestamptz order by created_at desc`);
    const byStatus: Record<string, number> = {};
    const byDomain: Record<string, number> = {};
    for (const row of rows) {
      byStatus[row.status as string] = (byStatus[row.status as string] ?? 0) + 1;
      for (const to of row.to_addresses as string[]) {
        const domain = to.split("@")[1];
        byDomain[domain] = (byDomain[domain] ?? 0) + 1;
      }
    }
    busiestInRange = rows.length;
  });
  const plan = await asUser(stack.sql, busiest, (tx) =>
    tx<{ "QUERY PLAN": string }[]>`
      explain (analyze, costs off, timing off, summary off)
      select count(*) from public.email_audit_log a where a.created_at >= ${from}::timestamptz and a.created_at < now()`);

  const ratio = (ms: number) => `${(seedApproach / ms).toFixed(1)}x faster`;
  const rows: AnalyticsBenchRow[] = [
    {
      case: "GET /email-analytics (30-day summary, through the function)",
      median_ms: summary,
      vs_seed: ratio(summary),
    },
    { case: "  of which private.email_analytics in SQL", median_ms: sqlOnly, vs_seed: ratio(sqlOnly) },
    { case: "GET /email-analytics/messages (one page of 50)", median_ms: page, vs_seed: ratio(page) },
    { case: "seed's approach: select the rows, count in the function", median_ms: seedApproach, vs_seed: "1.0x" },
  ];
  console.log(
    `\n### Analytics at ${options.rows.toLocaleString("en")} rows (${options.users} users; the busiest has ` +
      `${Math.round(options.rows / 10).toLocaleString("en")}, ${
        busiestInRange.toLocaleString("en")
      } in its last 30 days; ` +
      `median of ${options.runs} runs; seeded in ${seedSeconds.toFixed(0)} s)\n`,
  );
  console.log("| case | median | vs the seed's approach |");
  console.log("| --- | ---: | ---: |");
  for (const r of rows) console.log(`| ${r.case} | ${r.median_ms.toFixed(1)} ms | ${r.vs_seed} |`);
  const planLines = plan.map((p) => p["QUERY PLAN"]);
  console.log("\nThe plan of the range scan (as the busiest user, RLS on):\n");
  console.log(planLines.map((l) => `    ${l}`).join("\n"));
  return { rows, plan: planLines, seedSeconds, busiestInRange };
}
