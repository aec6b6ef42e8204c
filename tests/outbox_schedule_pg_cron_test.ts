// The outbox worker's schedule against a real pg_cron older than 1.5 (Debian's 1.4.2, package
// postgresql-15-cron): a cluster started with shared_preload_libraries = 'pg_cron', the
// extension created with the grants Supabase's image gives `postgres`, a stand-in for pg_net's
// net.http_post (pg_net has no package here), then our migrations. On 1.4 a 5-second schedule
// used to raise "invalid schedule: 5 seconds"; now the job is created to run every minute.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import postgres from "postgres";
import { bootstrapPlatform, freePort, pushMigrations, ROOT, startCluster } from "../local/postgres.ts";

// Skipped where the package is missing (.ci/run installs it).
const hasPgCron = existsSync("/usr/share/postgresql") &&
  [...Deno.readDirSync("/usr/share/postgresql")].some((v) =>
    existsSync(`/usr/share/postgresql/${v.name}/extension/pg_cron.control`)
  );

// What supabase/postgres runs after `create extension pg_cron`
// (ansible/files/postgresql_extension_custom_scripts/pg_cron/after-create.sql).
const SUPABASE_PG_CRON_GRANTS = `
  grant usage on schema cron to postgres with grant option;
  grant all on all functions in schema cron to postgres with grant option;
  grant all privileges on all tables in schema cron to postgres with grant option;
  revoke all on table cron.job from postgres;
  grant select on table cron.job to postgres with grant option;
`;

interface Job {
  jobname: string;
  schedule: string;
  command: string;
}

Deno.test({
  name: "outbox worker schedule on pg_cron 1.4",
  ignore: !hasPgCron,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const dir = await Deno.makeTempDir({ prefix: "mailroom-pg-cron-" });
    const port = freePort();
    let cluster = await startCluster({ dir, port, fast: true });
    const notices: string[] = [];
    let admin: postgres.Sql | undefined;
    let sql: postgres.Sql | undefined;
    try {
      // pg_cron starts its scheduler only when preloaded: set it, then restart the cluster.
      const setup = postgres(cluster.adminUrl, { max: 1, onnotice: () => {} });
      await setup`alter system set shared_preload_libraries = 'pg_cron'`;
      await setup.end();
      await cluster.stop();
      cluster = await startCluster({ dir, port, fast: true });
      await bootstrapPlatform(cluster.adminUrl);
      admin = postgres(cluster.adminUrl, { max: 1, onnotice: () => {} });
      await admin.unsafe(`create extension pg_cron schema pg_catalog; ${SUPABASE_PG_CRON_GRANTS}`);
      await admin.unsafe(`
        create schema net;
        create function net.http_post(url text, body jsonb default '{}', params jsonb default '{}',
                                      headers jsonb default '{}', timeout_milliseconds integer default 5000)
        returns bigint language sql as 'select 1::bigint';
        grant usage on schema net to postgres;`);
      // The documented order: migrations first, then the Vault secrets and the schedule.
      await pushMigrations(cluster.url);
      sql = postgres(cluster.url, {
        max: 1,
        onnotice: (notice) => notices.push(`${notice.severity}: ${notice.message}`),
      });
      const db = sql;
      const jobs = () => db<Job[]>`select jobname, schedule, command from cron.job order by jobname`;

      await t.step("the extension is pg_cron 1.4, which has no schedules in seconds", async () => {
        const [row] = await db<{ extversion: string }[]>`
          select extversion from pg_catalog.pg_extension where extname = 'pg_cron'`;
        assert.match(row.extversion, /^1\.4/);
        await assert.rejects(db`select cron.schedule('probe', '5 seconds', 'select 1')`, /invalid schedule/);
      });

      await t.step("the migrations applied, with nothing scheduled before the secrets exist", async () => {
        assert.deepEqual([...await jobs()], []);
      });

      await t.step("schedule_outbox_worker() schedules every minute and says why", async () => {
        await db`select vault.create_secret('https://example.supabase.co', 'mailroom_project_url')`;
        await db`select vault.create_secret('sb_secret_test', 'mailroom_process_outbox_key')`;
        notices.length = 0;
        const [row] = await db<{ result: string }[]>`select private.schedule_outbox_worker() as result`;
        assert.match(row.result, /^scheduled every minute: pg_cron 1\.4\S* cannot run jobs every 5 seconds$/);
        assert.ok(
          notices.some((n) => /NOTICE: pg_cron 1\.4\S* cannot run a job every 5 seconds/.test(n)),
          notices.join("\n"),
        );
        const [worker, purge] = await jobs();
        assert.equal(worker.jobname, "mailroom-process-outbox");
        assert.equal(worker.schedule, "* * * * *");
        assert.match(worker.command, /net\.http_post/);
        assert.equal(purge.jobname, "mailroom-purge-cron-history");
        assert.equal(purge.schedule, "30 3 * * *");
      });

      await t.step("scheduling again replaces the jobs instead of adding more", async () => {
        await db`select private.schedule_outbox_worker()`;
        await db`select private.schedule_outbox_worker()`;
        assert.deepEqual((await jobs()).map((j) => j.jobname), [
          "mailroom-process-outbox",
          "mailroom-purge-cron-history",
        ]);
      });

      await t.step("cron syntax is kept; a schedule pg_cron refuses is a warning, not an error", async () => {
        const [ok] = await db<{ result: string }[]>`select private.schedule_outbox_worker('*/2 * * * *') as result`;
        assert.equal(ok.result, "scheduled every */2 * * * *");
        notices.length = 0;
        const [bad] = await db<{ result: string }[]>`select private.schedule_outbox_worker('now and then') as result`;
        assert.match(bad.result, /^not scheduled: .*invalid schedule/);
        assert.ok(
          notices.some((n) => n.startsWith("WARNING: the outbox worker was not scheduled")),
          notices.join("\n"),
        );
        assert.equal((await jobs())[0].schedule, "*/2 * * * *");
      });

      await t.step("the scheduling migration applies again with the worker running", async () => {
        const migration = `${ROOT}/supabase/migrations/20261206130200_outbox_schedule_older_pg_cron.sql`;
        const text = (await Deno.readTextFile(migration)).replaceAll("create function", "create or replace function");
        await db.begin((tx) => tx.unsafe(text));
        assert.equal((await jobs()).length, 2);
      });

      await t.step("the purge deletes only our jobs' run details older than 7 days", async () => {
        await db`select cron.schedule('someone-elses-job', '0 4 * * *', 'select 1')`;
        const ids = Object.fromEntries(
          (await db<{ jobname: string; jobid: string }[]>`select jobname, jobid::text from cron.job`)
            .map((j) => [j.jobname, j.jobid]),
        );
        const run = (jobname: string, daysAgo: number) =>
          admin!`
            insert into cron.job_run_details (jobid, database, username, command, status, start_time, end_time)
            values (${ids[jobname]}::bigint, 'postgres', 'postgres', 'select 1',
                    'succeeded', now() - make_interval(days => ${daysAgo}), now() - make_interval(days => ${daysAgo}))`;
        await run("mailroom-process-outbox", 8);
        await run("mailroom-process-outbox", 6);
        await run("mailroom-purge-cron-history", 9);
        await run("someone-elses-job", 30);
        const [purge] = await db<Job[]>`select command from cron.job where jobname = 'mailroom-purge-cron-history'`;
        await db.unsafe(purge.command);
        const left = await db<{ jobname: string; days: number }[]>`
          select j.jobname, extract(day from now() - d.end_time)::int as days
            from cron.job_run_details d join cron.job j using (jobid)
           order by j.jobname, days`;
        assert.deepEqual([...left], [
          { jobname: "mailroom-process-outbox", days: 6 },
          { jobname: "someone-elses-job", days: 30 },
        ]);
      });
    } finally {
      await sql?.end({ timeout: 2 }).catch(() => {});
      await admin?.end({ timeout: 2 }).catch(() => {});
      await cluster.stop();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
