-- A config whose credentials the SMTP server refused pauses its queue instead of burning
-- every queued message on the same 535: the worker marks it `needs_attention`, claims skip its
-- rows, and it resumes by itself once what was wrong can have been fixed (a new password or
-- destination, a successful verification, or the user switching it off and on again).

alter table public.user_smtp_configs
  add column needs_attention text,
  add constraint user_smtp_configs_needs_attention check (needs_attention is null or char_length(needs_attention) <= 64);

comment on column public.user_smtp_configs.needs_attention is
  'Why the outbox paused this config (e.g. smtp_auth_failed); cleared by a credential change or a successful verify.';

create function private.resume_paused_config_queue() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if old.needs_attention is not null and new.needs_attention is not distinct from old.needs_attention and (
       new.credentials_changed_at is distinct from old.credentials_changed_at
    or (new.credentials_verified_at is not null and new.credentials_verified_at is distinct from old.credentials_verified_at)
    or new.is_active is distinct from old.is_active
  ) then
    new.needs_attention := null;
  end if;
  return new;
end
$$;

create trigger user_smtp_configs_resume_paused_queue
  before update on public.user_smtp_configs
  for each row execute function private.resume_paused_config_queue();

-- Pause a config's queue, as its owner (the worker acts with the owner's claims).
create function private.pause_config_queue(p_config_id uuid, p_reason text)
returns void
language sql
security definer
set search_path = ''
as $$
  update public.user_smtp_configs c set needs_attention = left(p_reason, 64)
   where c.id = p_config_id and c.user_id = (select auth.uid())
$$;

revoke all on function private.resume_paused_config_queue() from public, anon, authenticated;
revoke all on function private.pause_config_queue(uuid, text) from public, anon, authenticated;
grant execute on function private.pause_config_queue(uuid, text) to authenticated;

create or replace function private.claim_outbox(p_worker text, p_limit integer, p_lease_seconds integer)
returns setof public.email_audit_log
language plpgsql
security definer
set search_path = ''
as $$
begin
  return query
  with ready as (
    select a.id, a.user_id, a.next_attempt_at
      from public.email_audit_log a
     where a.status in ('queued', 'scheduled')
       and a.next_attempt_at <= now()
       and (a.lease_until is null or a.lease_until < now())
       -- A config paused for attention (its credentials were refused) keeps its queue.
       and not exists (
         select 1 from public.user_smtp_configs c where c.id = a.config_id and c.needs_attention is not null
       )
     order by a.next_attempt_at
     limit p_limit * 20
  ),
  fair as (
    select r.id from (
      select ready.id, ready.next_attempt_at,
             row_number() over (partition by ready.user_id order by ready.next_attempt_at) as turn
        from ready
    ) r
    order by r.turn, r.next_attempt_at
    limit p_limit
  ),
  locked as (
    select a.id from public.email_audit_log a
     where a.id in (select fair.id from fair)
       and a.status in ('queued', 'scheduled')
       and (a.lease_until is null or a.lease_until < now())
       for update skip locked
  )
  update public.email_audit_log a
     set lease_until = now() + make_interval(secs => p_lease_seconds), leased_by = p_worker
    from locked
   where a.id = locked.id
  returning a.*;
end
$$;

