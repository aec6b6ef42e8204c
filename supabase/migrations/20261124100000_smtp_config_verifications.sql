-- A record of every SMTP config verification, readable by its owner.
--
-- Why: `verify` opens a real SMTP session with the config's credentials, so it is both
-- useful history ("did this config work last time, how fast?") and something to bound:
-- unthrottled, it would let anyone use this service to probe SMTP servers or guess
-- passwords. The sending path's limits cover sends; this table lets verify be limited too.

create table public.smtp_config_verifications (
  id uuid primary key default gen_random_uuid(),
  user_id uuid not null default auth.uid() references auth.users (id) on delete cascade,
  config_id uuid not null references public.user_smtp_configs (id) on delete cascade,
  ok boolean not null,
  error_class text,
  latency_ms integer,
  server_banner text,
  created_at timestamptz not null default now(),
  constraint smtp_config_verifications_error check ((ok and error_class is null) or (not ok and error_class is not null)),
  constraint smtp_config_verifications_latency check (latency_ms >= 0),
  constraint smtp_config_verifications_banner_length check (char_length(server_banner) <= 200)
);

comment on table public.smtp_config_verifications is
  'Each POST /smtp-configs/:id/verify: outcome, error class, latency. Owners read; nobody rewrites.';

create index smtp_config_verifications_user_created on public.smtp_config_verifications (user_id, created_at desc);
create index smtp_config_verifications_config_created on public.smtp_config_verifications (config_id, created_at desc);

alter table public.smtp_config_verifications enable row level security;

revoke all on public.smtp_config_verifications from anon, authenticated;
grant select on public.smtp_config_verifications to authenticated;
grant insert (config_id, ok, error_class) on public.smtp_config_verifications to authenticated;

create policy "owner can read own verifications"
  on public.smtp_config_verifications for select to authenticated
  using (user_id = (select auth.uid()));

-- A verification is recorded as pending before any network I/O (so concurrent requests
-- count against the limit), then settled once by private.record_verification_outcome.
create policy "owner can start verifications of own configs"
  on public.smtp_config_verifications for insert to authenticated
  with check (
    user_id = (select auth.uid())
    and not ok
    and error_class = 'pending'
    and exists (
      select 1 from public.user_smtp_configs c where c.id = config_id and c.user_id = (select auth.uid())
    )
  );

create function private.record_verification_outcome(
  p_verification_id uuid,
  p_ok boolean,
  p_error_class text,
  p_latency_ms integer,
  p_server_banner text
) returns void
language plpgsql
security definer
set search_path = ''
as $$
begin
  if p_ok is null or (not p_ok and (p_error_class is null or p_error_class = 'pending')) then
    raise exception 'an outcome is ok, or failed with an error class' using errcode = '22023';
  end if;
  update public.smtp_config_verifications v
     set ok = p_ok,
         error_class = case when p_ok then null else p_error_class end,
         latency_ms = greatest(p_latency_ms, 0),
         server_banner = left(p_server_banner, 200)
   where v.id = p_verification_id
     and v.user_id = (select auth.uid())
     and v.error_class = 'pending';
  if not found then
    raise exception 'no pending verification % for this user', p_verification_id using errcode = 'P0002';
  end if;
end
$$;

revoke all on function private.record_verification_outcome(uuid, boolean, text, integer, text)
  from public, anon, authenticated;
grant execute on function private.record_verification_outcome(uuid, boolean, text, integer, text) to authenticated;
