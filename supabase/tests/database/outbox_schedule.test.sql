-- Scheduling the outbox worker and the cron history purge (20261206130200) where pg_cron is
-- not installed, as on the local stack: every call answers 'not scheduled: ...' and none
-- raises, so a migration calling them always applies. Which schedule an older pg_cron gets is
-- a pure function, checked here for each version; tests/outbox_schedule_pg_cron_test.ts runs
-- the same functions against Debian's pg_cron 1.4.2.
begin;
create extension if not exists pgtap with schema extensions;
set local search_path = public, extensions;

select plan(17);

-- The schedule for each pg_cron version -------------------------------------------------------
select is(private.cron_schedule_for('5 seconds', '1.4-1'), '* * * * *',
  'pg_cron 1.4 (Debian''s 1.4.2 reports 1.4-1) runs a 5-second schedule every minute instead');
select is(private.cron_schedule_for('1 second', '1.4'), '* * * * *', 'so it does a 1-second one');
select is(private.cron_schedule_for(' 30 Seconds ', '1.3'), '* * * * *',
  'whatever the spacing and case of a schedule in seconds');
select is(private.cron_schedule_for('5 seconds', '1.5'), '5 seconds', 'pg_cron 1.5 takes seconds');
select is(private.cron_schedule_for('5 seconds', '1.6'), '5 seconds', 'pg_cron 1.6 (hosted: 1.6.4) takes seconds');
select is(private.cron_schedule_for('5 seconds', '1.10'), '5 seconds', 'versions compare as numbers, not text');
select is(private.cron_schedule_for('5 seconds', '2.0'), '5 seconds', 'a later major version takes seconds');
select is(private.cron_schedule_for('5 seconds', null), '* * * * *', 'an unknown version gets every minute');
select is(private.cron_schedule_for('*/2 * * * *', '1.4-1'), '*/2 * * * *', 'cron syntax passes unchanged');

-- Without pg_cron: not scheduled, never an error ----------------------------------------------
select is(
  private.schedule_outbox_worker(),
  'not scheduled: enable the pg_cron and pg_net extensions first',
  'without pg_cron the worker is not scheduled, and says what to enable'
);
do $$
begin
  perform vault.create_secret('https://example.supabase.co', 'mailroom_project_url');
  perform vault.create_secret('sb_secret_test', 'mailroom_process_outbox_key');
end
$$;
create schema net;
create function net.http_post(url text, body jsonb, headers jsonb, timeout_milliseconds integer)
returns bigint language sql as 'select 1::bigint';
select is(
  private.schedule_outbox_worker(),
  'not scheduled: enable the pg_cron and pg_net extensions first',
  'with pg_net and both secrets but no pg_cron, still not scheduled'
);
select lives_ok(
  $$select private.schedule_outbox_worker('not a schedule')$$,
  'a schedule pg_cron would refuse does not raise either'
);
select is(
  private.schedule_cron_history_purge(),
  'not scheduled: pg_cron is not enabled',
  'without pg_cron the history purge is not scheduled'
);

-- Who may call them: the migration role only ---------------------------------------------------
select function_privs_are(
  'private', 'schedule_outbox_worker', array['text'], 'authenticated', array[]::name[],
  'authenticated cannot schedule the outbox worker'
);
select function_privs_are(
  'private', 'schedule_cron_history_purge', array[]::name[], 'authenticated', array[]::name[],
  'authenticated cannot schedule the cron history purge'
);
select function_privs_are(
  'private', 'schedule_cron_history_purge', array[]::name[], 'anon', array[]::name[],
  'anon cannot schedule the cron history purge'
);
select function_privs_are(
  'private', 'cron_schedule_for', array['text', 'text'], 'anon', array[]::name[],
  'anon cannot execute private.cron_schedule_for'
);

select finish();
rollback;
