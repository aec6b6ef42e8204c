-- Scheduling the outbox worker where pg_cron is older than 1.5, and purging pg_cron's history.
--
-- 1. Schedules in seconds ('5 seconds') came with pg_cron 1.5. On older ones (Debian 12 ships
--    1.4.2; hosted Supabase has 1.6.4) cron.schedule raised "invalid schedule: 5 seconds", so
--    private.schedule_outbox_worker() failed instead of doing what it can, and a migration that
--    called it aborted. Now a schedule in seconds becomes once a minute ('* * * * *', with a
--    notice) where pg_cron cannot take it, and anything else that goes wrong (an older pg_cron
--    still, missing privileges) is a warning and a 'not scheduled: ...' answer, never an error:
--    the migration that calls it always applies. pg_net is recognised by the function the job
--    calls (net.http_post) rather than by the extension's name, so a test can stand in for it
--    (pg_net has no package for this machine; pg_cron does).
--
--    The first migration (20261125153000) still runs the old function once, before this one
--    replaces it: on pg_cron < 1.5 it aborts if both Vault secrets were stored before that
--    migration first ran. The README's deploy steps store them afterwards, as before.
--
-- 2. Every run of a job leaves a row in cron.job_run_details and nothing removes them: every
--    5 seconds is 17,280 rows a day. Wherever our worker is scheduled, a daily job (03:30 UTC)
--    deletes the run details of our own jobs (named mailroom-%) older than 7 days. Only ours:
--    the table holds every job of the project, and how long to keep the history of jobs we did
--    not create is their owner's choice (Supabase's docs show the one-line purge of all of them).
--
-- Statements that name cron or net objects run through EXECUTE, so this compiles and lints where
-- those schemas do not exist (the local stack).

-- The schedule pg_cron `p_pg_cron_version` (an extversion: '1.4-1', '1.6') accepts for
-- `p_schedule`: itself, except a schedule in seconds before 1.5, which becomes every minute.
create function private.cron_schedule_for(p_schedule text, p_pg_cron_version text)
returns text
language sql
immutable
set search_path = ''
as $$
  select case
    when p_schedule !~* '^\s*[0-9]+\s+seconds?\s*$' then p_schedule
    when coalesce((pg_catalog.regexp_match(p_pg_cron_version, '^([0-9]+)\.([0-9]+)'))::integer[] >= array[1, 5], false)
      then p_schedule
    else '* * * * *'
  end
$$;

-- Daily, delete the run details of our own jobs older than 7 days. Scheduled only where the
-- outbox worker is (its 17,280 runs a day are what fills the table); idempotent (cron.schedule
-- with a job's name replaces that job).
create function private.schedule_cron_history_purge()
returns text
language plpgsql
set search_path = ''
as $$
declare
  v_worker_scheduled boolean;
begin
  if not exists (select 1 from pg_catalog.pg_extension where extname = 'pg_cron') then
    return 'not scheduled: pg_cron is not enabled';
  end if;
  -- format(): plpgsql_check reads a constant EXECUTE string, and cron.job does not exist where it lints.
  execute format('select exists (select 1 from %I.job where jobname = $1)', 'cron')
    into v_worker_scheduled using 'mailroom-process-outbox';
  if not v_worker_scheduled then
    return 'not scheduled: the outbox worker is not scheduled here';
  end if;
  execute format(
    'select cron.schedule(%L, %L, %L)',
    'mailroom-purge-cron-history',
    '30 3 * * *',
    $job$
      delete from cron.job_run_details d
       using cron.job j
       where j.jobid = d.jobid
         and j.jobname like 'mailroom-%'
         and d.end_time < now() - interval '7 days'
    $job$
  );
  return 'scheduled daily at 03:30 UTC: run details of mailroom-% jobs older than 7 days are deleted';
exception when others then
  raise warning 'the cron history purge was not scheduled: %', sqlerrm;
  return 'not scheduled: ' || sqlerrm;
end
$$;

create or replace function private.schedule_outbox_worker(p_interval text default '5 seconds')
returns text
language plpgsql
set search_path = ''
as $$
declare
  v_version text;
  v_schedule text;
begin
  select e.extversion into v_version from pg_catalog.pg_extension e where e.extname = 'pg_cron';
  if v_version is null
     or not exists (select 1
                      from pg_catalog.pg_proc p
                      join pg_catalog.pg_namespace n on n.oid = p.pronamespace
                     where n.nspname = 'net' and p.proname = 'http_post') then
    return 'not scheduled: enable the pg_cron and pg_net extensions first';
  end if;
  if not exists (select 1 from vault.decrypted_secrets where name = 'mailroom_project_url')
     or not exists (select 1 from vault.decrypted_secrets where name = 'mailroom_process_outbox_key') then
    return 'not scheduled: store the Vault secrets mailroom_project_url and mailroom_process_outbox_key first';
  end if;
  v_schedule := private.cron_schedule_for(p_interval, v_version);
  if v_schedule <> p_interval then
    raise notice 'pg_cron % cannot run a job every %: the outbox worker runs every minute instead (pg_cron 1.5 or later can)',
      v_version, p_interval;
  end if;
  execute format(
    'select cron.schedule(%L, %L, %L)',
    'mailroom-process-outbox',
    v_schedule,
    $job$
      select net.http_post(
        url := (select decrypted_secret from vault.decrypted_secrets where name = 'mailroom_project_url')
               || '/functions/v1/process-outbox',
        headers := jsonb_build_object(
          'apikey', (select decrypted_secret from vault.decrypted_secrets where name = 'mailroom_process_outbox_key'),
          'content-type', 'application/json'
        ),
        body := '{}'::jsonb,
        timeout_milliseconds := 60000
      )
    $job$
  );
  perform private.schedule_cron_history_purge();
  if v_schedule <> p_interval then
    return 'scheduled every minute: pg_cron ' || v_version || ' cannot run jobs every ' || p_interval;
  end if;
  return 'scheduled every ' || p_interval;
exception when others then
  raise warning 'the outbox worker was not scheduled: %', sqlerrm;
  return 'not scheduled: ' || sqlerrm;
end
$$;

revoke all on function private.cron_schedule_for(text, text) from public, anon, authenticated;
revoke all on function private.schedule_cron_history_purge() from public, anon, authenticated;
revoke all on function private.schedule_outbox_worker(text) from public, anon, authenticated;

-- Where the worker already runs (scheduled by the first migration or by hand), start purging now.
select private.schedule_cron_history_purge();
