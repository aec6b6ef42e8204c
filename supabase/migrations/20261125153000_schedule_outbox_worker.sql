-- On Supabase, pg_cron + pg_net start the outbox worker every few seconds: a POST to the
-- process-outbox function with a secret API key read from Vault, and no body to speak of (pg_net
-- bodies over 64 KB hang; the worker finds its work in the table).
--
-- Guarded: where pg_cron or pg_net is missing (the local stack, a project that has not enabled
-- them yet) nothing is scheduled and the migration still applies. After enabling both
-- extensions and storing the two Vault secrets (README, "Deploying"), run
--   select private.schedule_outbox_worker();
-- once. Statements that name cron/net objects run through EXECUTE, so this file also compiles
-- (and lints) where those schemas do not exist.

create function private.schedule_outbox_worker(p_interval text default '5 seconds')
returns text
language plpgsql
set search_path = ''
as $$
begin
  if not exists (select 1 from pg_catalog.pg_extension where extname = 'pg_cron')
     or not exists (select 1 from pg_catalog.pg_extension where extname = 'pg_net') then
    return 'not scheduled: enable the pg_cron and pg_net extensions first';
  end if;
  if not exists (select 1 from vault.decrypted_secrets where name = 'mailroom_project_url')
     or not exists (select 1 from vault.decrypted_secrets where name = 'mailroom_process_outbox_key') then
    return 'not scheduled: store the Vault secrets mailroom_project_url and mailroom_process_outbox_key first';
  end if;
  execute format(
    'select cron.schedule(%L, %L, %L)',
    'mailroom-process-outbox',
    p_interval,
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
  return 'scheduled every ' || p_interval;
end
$$;

revoke all on function private.schedule_outbox_worker(text) from public, anon, authenticated;

select private.schedule_outbox_worker();
