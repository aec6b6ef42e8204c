-- Per-config sending limits, and what managing configs over HTTP needs.
--
-- * max_per_minute / max_per_day protect the user's SMTP account (providers suspend
--   accounts that burst); every sending path checks them against the audit log.
-- * private.set_default_smtp_config swaps the default atomically, so "exactly one
--   default per user" holds even with concurrent requests.

alter table public.user_smtp_configs
  add column max_per_minute integer not null default 30,
  add column max_per_day integer not null default 500,
  add constraint user_smtp_configs_max_per_minute check (max_per_minute between 1 and 10000),
  add constraint user_smtp_configs_max_per_day check (max_per_day between 1 and 1000000);

comment on column public.user_smtp_configs.max_per_minute is 'Messages per rolling minute through this config.';
comment on column public.user_smtp_configs.max_per_day is 'Messages per rolling 24 hours through this config.';

grant insert (max_per_minute, max_per_day), update (max_per_minute, max_per_day)
  on public.user_smtp_configs to authenticated;

-- Rate-limit windows are counted per config over recent audit rows.
drop index if exists public.email_audit_log_config;
create index email_audit_log_config_created on public.email_audit_log (config_id, created_at desc);

-- Make a config the caller's only default, in one statement-level step.
create function private.set_default_smtp_config(p_config_id uuid)
returns void
language plpgsql
security invoker
set search_path = ''
as $$
begin
  -- Serialise default swaps per user; the partial unique index is the final guard.
  perform pg_advisory_xact_lock(hashtextextended('mailroom.default_config:' || (select auth.uid())::text, 0));
  if not exists (
    select 1 from public.user_smtp_configs c where c.id = p_config_id and c.user_id = (select auth.uid())
  ) then
    raise exception 'smtp config not found' using errcode = 'P0002';
  end if;
  update public.user_smtp_configs c set is_default = false
   where c.user_id = (select auth.uid()) and c.is_default and c.id <> p_config_id;
  update public.user_smtp_configs c set is_default = true where c.id = p_config_id;
end
$$;

revoke all on function private.set_default_smtp_config(uuid) from public, anon, authenticated;
grant execute on function private.set_default_smtp_config(uuid) to authenticated;
