-- Outbox claims one user cannot turn against everyone (issue 26, second review).
--
-- Why: 25 scheduled sends of about 10 MB each came due together, one claim took them all, the
-- worker died of V8's out-of-memory at its 256 MB heap, and after every restart the same rows
-- were claimed again when their lease ran out: nobody's mail went out any more. Now:
--
-- 1. A claim is bounded by bytes as well as rows (p_max_bytes, the first row always taken so a
--    large one still goes, alone). Each queued row carries the size of what the worker will
--    hold for it (payload_bytes, set on insert): its payload as JSON text (jsonb's compact form
--    would let `1e131071` stand for 131,072 digits) plus, for a batch's recipient, the batch's
--    shared content (email_batches.content_bytes), which its message is built from.
-- 2. Payloads agree with the API: at most 15 MiB as JSON text, send-email's body limit (the
--    Data API allowed 16 MiB). NOT VALID: rows already queued are left as they are.
-- 3. A claimed row whose lease ran out while it was still queued (its worker died before it
--    started, or vanished) is a suspect: the sweep counts the loss (lease_losses), and the
--    claim hands a suspect out alone, never in a chunk with other rows, so a second death is
--    its own. A row lost twice is set aside for its owner: it stays `queued` with error_class
--    `worker_crashed` at next_attempt_at 'infinity' (the way a paused config's rows wait), the
--    owner sees why and retries (private.retry_set_aside_messages) or cancels it. A claim no
--    longer takes a row whose lease merely ran out: the sweep (every drain starts with it)
--    counts and frees it first. Workers renew the leases of what they hold while they live
--    (private.renew_outbox_leases) and free them when a run ends (private.release_outbox_leases),
--    so only a death leaves one behind. A worker asks for a suspect (p_suspects) only with empty
--    hands, once per run, so a suspect never pushes other rows out of a claim nor dies with
--    them; a row that started sending is no longer a suspect.
-- 4. A server that pushes back (421, or 450/451 at MAIL FROM) backs its config off for a while
--    (user_smtp_configs.backoff_until, set by the worker as the owner); the claim passes over a
--    backed-off config's rows, and over the configs a worker names as busy (p_skip_configs):
--    one slow or refusing server holds only its own mail.
-- 5. A queued message's Date is when it is first sent, not when it was accepted: the claim
--    stamps first_attempt_at once (retries keep it; a row put back before it was ever tried
--    loses it again), and the worker builds the message with it.
-- 6. A queued row records the config it will be sent through: one inserted without a config
--    (the Data API can) gets its owner's default config, so the sender and the Message-ID's
--    domain are that config's, never the inserted from_email.
-- 7. A config says how many SMTP connections it takes at once (max_connections, default 2).

alter table public.email_audit_log
  add column payload_bytes integer,
  add column lease_losses smallint not null default 0,
  add column first_attempt_at timestamptz,
  drop constraint email_audit_log_payload_size,
  add constraint email_audit_log_payload_size check (octet_length(payload::text) <= 15728640) not valid;

comment on column public.email_audit_log.payload_bytes is
  'Size of payload (set on insert): claims are bounded by bytes as well as rows.';
comment on column public.email_audit_log.lease_losses is
  'How often a worker claimed this row and died before starting or releasing it; at 2 it is set aside.';

alter table public.user_smtp_configs
  add column backoff_until timestamptz,
  add column backoff_reason text,
  add constraint user_smtp_configs_backoff_reason check (backoff_reason is null or char_length(backoff_reason) <= 300);

-- How many SMTP connections to this server one function instance may hold at once (providers
-- allow few: Microsoft 365 about 3 per mailbox). Users set it like the send limits.
alter table public.user_smtp_configs
  add column max_connections smallint not null default 2,
  add constraint user_smtp_configs_max_connections check (max_connections between 1 and 20);
grant insert (max_connections), update (max_connections) on public.user_smtp_configs to authenticated;

comment on column public.user_smtp_configs.backoff_until is
  'The server pushed back (421, or 450/451 at MAIL FROM): the outbox leaves this config alone until then.';

alter table public.email_batches
  add column content_bytes integer generated always as (octet_length(content::text)) stored;

-- Rows already waiting: their size as the claim counts it.
update public.email_audit_log a
   set payload_bytes = coalesce(octet_length(a.payload::text), 0)
       + coalesce((select b.content_bytes from public.email_batches b where b.id = a.batch_id), 0)
 where a.status in ('queued', 'scheduled');

-- Queued rows: their config (the owner's default when none is named), its sender, their size.
create or replace function private.prepare_outbox_row() returns trigger
language plpgsql
set search_path = ''
as $$
declare
  v_config record;
begin
  if new.status in ('queued', 'scheduled') then
    if new.config_id is null then
      select c.id into new.config_id from public.user_smtp_configs c
       where c.user_id = new.user_id and c.is_default;
    end if;
    select c.from_email, c.needs_attention into v_config from public.user_smtp_configs c where c.id = new.config_id;
    -- The sender is the config's, whatever the inserted row says (the Data API can insert too).
    new.from_email := coalesce(v_config.from_email, new.from_email);
    new.attempts := 0;
    new.lease_losses := 0;
    -- What the worker will hold for it: the payload as it arrives (text, never the compressed
    -- or compact stored form) and, for a batch's recipient, the batch's shared content.
    new.payload_bytes := coalesce(octet_length(new.payload::text), 0)
      + coalesce((select b.content_bytes from public.email_batches b where b.id = new.batch_id), 0);
    new.message_id := '<' || new.id::text || '@' || lower(split_part(new.from_email, '@', 2)) || '>';
    new.status := case when new.scheduled_at > now() then 'scheduled' else 'queued' end;
    new.next_attempt_at := case
      when v_config.needs_attention is not null then 'infinity'
      else greatest(coalesce(new.scheduled_at, now()), now())
    end;
    new.lease_until := null;
    new.leased_by := null;
  end if;
  return new;
end
$$;

drop function private.claim_outbox(text, integer, integer);

-- The fair claim of 20261125190000 (round-robin over owners from a random one, dealt one per
-- owner per turn, then topped up), with the bounds above. A row can be claimed when it is due,
-- nobody holds a lease on it (a lease that ran out is the sweep's to count first), and its
-- config is neither paused, backed off nor named busy by the worker.
create function private.claim_outbox(
  p_worker text,
  p_limit integer,
  p_lease_seconds integer,
  p_max_bytes bigint default 16777216,
  p_skip_configs uuid[] default '{}',
  p_suspects boolean default true
)
returns setof public.email_audit_log
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_start uuid := gen_random_uuid();
  v_after uuid := null;
  v_wrapped boolean := false;
  v_owner uuid;
  v_due timestamptz;
  v_owners uuid[] := '{}'::uuid[];
  v_probes integer := 0;
  v_passed integer := 0;
  v_skip uuid[] := coalesce(p_skip_configs, '{}'::uuid[]);
  v_ids uuid[];
  v_held uuid[];
  v_kept uuid[];
begin
  if p_worker is null or p_limit is null or p_limit < 1 or p_lease_seconds is null or p_lease_seconds < 1
     or p_max_bytes is null or p_max_bytes < 1 then
    raise exception 'claim_outbox needs a worker, a positive limit, lease and byte bound' using errcode = '22023';
  end if;

  loop
    exit when cardinality(v_owners) >= p_limit or v_probes >= 4 * p_limit or v_passed >= 1000;
    if v_after is not null then
      select a.user_id, a.next_attempt_at into v_owner, v_due from public.email_audit_log a
       where a.status in ('queued', 'scheduled') and a.user_id > v_after
       order by a.user_id, a.next_attempt_at limit 1;
    elsif v_wrapped then
      select a.user_id, a.next_attempt_at into v_owner, v_due from public.email_audit_log a
       where a.status in ('queued', 'scheduled')
       order by a.user_id, a.next_attempt_at limit 1;
    else
      select a.user_id, a.next_attempt_at into v_owner, v_due from public.email_audit_log a
       where a.status in ('queued', 'scheduled') and a.user_id >= v_start
       order by a.user_id, a.next_attempt_at limit 1;
    end if;
    if v_owner is null or (v_wrapped and v_owner >= v_start) then
      exit when v_wrapped;
      v_wrapped := true;
      v_after := null;
      continue;
    end if;
    v_after := v_owner;
    if v_due > now() then
      v_passed := v_passed + 1;
      continue;
    end if;
    v_probes := v_probes + 1;
    if exists (
      select 1 from public.email_audit_log a
       where a.user_id = v_owner and a.status in ('queued', 'scheduled') and a.next_attempt_at <= now()
         and a.lease_until is null
         and (p_suspects or a.lease_losses = 0)
         and (a.config_id is null or a.config_id <> all (v_skip))
         and not exists (
           select 1 from public.user_smtp_configs c
            where c.id = a.config_id and (c.needs_attention is not null or c.backoff_until > now())
         )
    ) then
      v_owners := v_owners || v_owner;
    end if;
  end loop;

  select coalesce(array_agg(dealt.id), '{}'::uuid[]) into v_ids
    from (
      select c.id
        from unnest(v_owners) with ordinality as o (user_id, position)
       cross join lateral (
         select d.id, row_number() over (order by d.next_attempt_at) as turn
           from (
             select a.id, a.next_attempt_at
               from public.email_audit_log a
              where a.user_id = o.user_id
                and a.status in ('queued', 'scheduled')
                and a.next_attempt_at <= now()
                and a.lease_until is null
         and (p_suspects or a.lease_losses = 0)
                and (a.config_id is null or a.config_id <> all (v_skip))
                and not exists (
                  select 1 from public.user_smtp_configs c
                   where c.id = a.config_id and (c.needs_attention is not null or c.backoff_until > now())
                )
              order by a.next_attempt_at
              limit p_limit
           ) d
       ) c
       order by c.turn, o.position
       limit p_limit
    ) dealt;

  select coalesce(array_agg(held.id), '{}'::uuid[]) into v_held
    from (
      select a.id from public.email_audit_log a
       where a.id = any (v_ids)
         and a.status in ('queued', 'scheduled')
         and a.next_attempt_at <= now()
         and a.lease_until is null
         and (p_suspects or a.lease_losses = 0)
         and (a.config_id is null or a.config_id <> all (v_skip))
         and not exists (
           select 1 from public.user_smtp_configs c
            where c.id = a.config_id and (c.needs_attention is not null or c.backoff_until > now())
         )
         for update of a skip locked
    ) held;

  if cardinality(v_held) < p_limit then
    v_held := v_held || array(
      select a.id from public.email_audit_log a
       where a.status in ('queued', 'scheduled')
         and a.next_attempt_at <= now()
         and a.lease_until is null
         and (p_suspects or a.lease_losses = 0)
         and (a.config_id is null or a.config_id <> all (v_skip))
         and not exists (
           select 1 from public.user_smtp_configs c
            where c.id = a.config_id and (c.needs_attention is not null or c.backoff_until > now())
         )
         and a.id <> all (v_held)
       order by a.next_attempt_at
       limit p_limit - cardinality(v_held)
         for update of a skip locked
    );
  end if;

  -- Keep, in order, what fits p_max_bytes (the first row always). A suspect (a row whose
  -- worker died holding it) goes alone: the first suspect held, and nothing else. The rows
  -- not kept stay unleased (their locks end with this statement's transaction).
  select coalesce(array_agg(k.id order by k.ord), '{}'::uuid[]) into v_kept
    from (
      select h.id, h.ord, a.lease_losses,
             sum(coalesce(a.payload_bytes, 0)) over (order by h.ord) as running,
             min(h.ord) filter (where a.lease_losses > 0) over () as first_suspect
        from unnest(v_held) with ordinality as h (id, ord)
        join public.email_audit_log a on a.id = h.id
    ) k
   where case when k.first_suspect is not null then k.ord = k.first_suspect
              else k.ord = 1 or k.running <= p_max_bytes end;

  return query
  update public.email_audit_log a
     set lease_until = now() + make_interval(secs => p_lease_seconds), leased_by = p_worker,
         first_attempt_at = coalesce(a.first_attempt_at, now())
   where a.id = any (v_kept)
  returning a.*;
end
$$;

-- Rows whose worker died: in flight become unknown (as before); claimed but never started or
-- released are freed and counted, and set aside at the second loss.
create or replace function private.sweep_outbox()
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_count integer;
begin
  update public.email_audit_log a
     set status = 'unknown', error_class = 'worker_lost',
         error_message = 'The send was interrupted after it started; it may or may not have been delivered',
         retryable = false, completed_at = now(), lease_until = null
   where a.status = 'sending'
     and ((a.lease_until is not null and a.lease_until < now())
          or (a.lease_until is null and a.created_at < now() - interval '15 minutes'));
  get diagnostics v_count = row_count;

  update public.email_audit_log a
     set lease_until = null, leased_by = null,
         first_attempt_at = case when a.attempts = 0 then null else a.first_attempt_at end,
         lease_losses = least(a.lease_losses + 1, 32767),
         next_attempt_at = case when a.lease_losses + 1 >= 2 then 'infinity' else a.next_attempt_at end,
         error_class = case when a.lease_losses + 1 >= 2 then 'worker_crashed' else a.error_class end,
         error_message = case when a.lease_losses + 1 >= 2
           then 'The outbox worker stopped twice while this message was in its hands, so it is set aside: '
                || 'retry it (POST /send-email/<id>/retry) or cancel it'
           else a.error_message end,
         retryable = case when a.lease_losses + 1 >= 2 then false else a.retryable end
   where a.status in ('queued', 'scheduled')
     and a.lease_until is not null and a.lease_until < now();
  return v_count;
end
$$;

-- Put claimed or started rows back without counting an attempt; a row never tried loses the
-- Date it was given at its claim. With a reason (e.g. `rate_limited`), the row says why it
-- waits (error_class and error_message, until its next attempt records another outcome).
-- Returns how many it put back (rows no longer this worker's are not).
drop function private.postpone_outbox_sends(uuid[], text, integer);
create function private.postpone_outbox_sends(
  p_audit_ids uuid[],
  p_worker text,
  p_seconds integer,
  p_reason text default null,
  p_message text default null
)
returns integer
language sql
security definer
set search_path = ''
as $$
  with postponed as (
    update public.email_audit_log a
       set status = 'queued',
           attempts = case when a.status = 'sending' then greatest(a.attempts - 1, 0) else a.attempts end,
           first_attempt_at = case
             when (case when a.status = 'sending' then greatest(a.attempts - 1, 0) else a.attempts end) = 0 then null
             else a.first_attempt_at end,
           error_class = coalesce(left(p_reason, 64), a.error_class),
           error_message = case when p_reason is null then a.error_message else left(p_message, 1000) end,
           next_attempt_at = now() + make_interval(secs => greatest(p_seconds, 0)),
           lease_until = null, leased_by = null
     where a.id = any (p_audit_ids) and a.leased_by = p_worker and a.status in ('queued', 'scheduled', 'sending')
    returning 1
  )
  select count(*)::integer from postponed
$$;

-- Starting a row's send ends its suspicion: it survived its preparation.
create or replace function private.start_outbox_send(p_audit_id uuid, p_worker text, p_lease_seconds integer)
returns boolean
language plpgsql
security definer
set search_path = ''
as $$
begin
  update public.email_audit_log a
     set status = 'sending', attempts = a.attempts + 1, lease_losses = 0,
         lease_until = now() + make_interval(secs => p_lease_seconds)
   where a.id = p_audit_id and a.leased_by = p_worker and a.status in ('queued', 'scheduled');
  return found;
end
$$;

create or replace function private.start_outbox_sends(p_audit_ids uuid[], p_worker text, p_lease_seconds integer)
returns setof uuid
language sql
security definer
set search_path = ''
as $$
  update public.email_audit_log a
     set status = 'sending', attempts = a.attempts + 1, lease_losses = 0,
         lease_until = now() + make_interval(secs => p_lease_seconds)
   where a.id = any (p_audit_ids) and a.leased_by = p_worker and a.status in ('queued', 'scheduled')
  returning a.id;
$$;

-- A live worker keeps what it holds: only a death lets a lease run out.
create function private.renew_outbox_leases(p_worker text, p_lease_seconds integer)
returns integer
language sql
security definer
set search_path = ''
as $$
  with renewed as (
    update public.email_audit_log a
       set lease_until = now() + make_interval(secs => p_lease_seconds)
     where a.leased_by = p_worker and a.status in ('queued', 'scheduled')
       and a.lease_until is not null and a.lease_until >= now()
    returning 1
  )
  select count(*)::integer from renewed
$$;

-- A worker frees what it still holds when its run ends (rows it claimed and did not start).
create function private.release_outbox_leases(p_worker text)
returns integer
language sql
security definer
set search_path = ''
as $$
  with released as (
    update public.email_audit_log a
       set lease_until = null, leased_by = null,
           first_attempt_at = case when a.attempts = 0 then null else a.first_attempt_at end
     where a.leased_by = p_worker and a.status in ('queued', 'scheduled') and a.lease_until is not null
    returning 1
  )
  select count(*)::integer from released
$$;

-- The owner sends set-aside messages again. They stay suspects (lease_losses 1): claimed alone,
-- and set aside again if a worker dies holding them once more. Returns the ids retried.
create function private.retry_set_aside_messages(p_audit_ids uuid[])
returns setof uuid
language sql
security definer
set search_path = ''
as $$
  update public.email_audit_log a
     set lease_losses = 1, error_class = null, error_message = null, retryable = null,
         next_attempt_at = greatest(coalesce(a.scheduled_at, now()), now())
   where a.id = any (coalesce(p_audit_ids, '{}'))
     and a.user_id = (select auth.uid())
     and a.status in ('queued', 'scheduled')
     and a.error_class = 'worker_crashed'
  returning a.id
$$;

-- A server that pushed back: leave the config alone until then (as its owner; the worker acts
-- with the owner's claims). A later, shorter backoff never shortens a longer one.
create function private.back_off_config(p_config_id uuid, p_seconds integer, p_reason text)
returns timestamptz
language sql
security definer
set search_path = ''
as $$
  update public.user_smtp_configs c
     set backoff_until = greatest(coalesce(c.backoff_until, now()), now() + make_interval(secs => greatest(p_seconds, 1))),
         backoff_reason = left(p_reason, 300)
   where c.id = p_config_id and c.user_id = (select auth.uid())
  returning c.backoff_until
$$;

-- A resumed config releases its paused rows, but not those set aside after a worker died.
create or replace function private.resume_paused_config_queue() returns trigger
language plpgsql
security definer
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
  if old.needs_attention is not null and new.needs_attention is null then
    update public.email_audit_log a
       set next_attempt_at = greatest(coalesce(a.scheduled_at, now()), now())
     where a.config_id = new.id
       and a.status in ('queued', 'scheduled')
       and a.next_attempt_at = 'infinity'
       and a.error_class is distinct from 'worker_crashed';
  end if;
  -- Fixed or verified: a backoff from the old server or credentials no longer applies.
  if new.credentials_changed_at is distinct from old.credentials_changed_at
     or (new.credentials_verified_at is not null and new.credentials_verified_at is distinct from old.credentials_verified_at) then
    new.backoff_until := null;
    new.backoff_reason := null;
  end if;
  return new;
end
$$;

revoke all on function private.prepare_outbox_row() from public, anon, authenticated;
revoke all on function private.claim_outbox(text, integer, integer, bigint, uuid[], boolean) from public, anon, authenticated;
revoke all on function private.renew_outbox_leases(text, integer) from public, anon, authenticated;
revoke all on function private.start_outbox_send(uuid, text, integer) from public, anon, authenticated;
revoke all on function private.start_outbox_sends(uuid[], text, integer) from public, anon, authenticated;
revoke all on function private.sweep_outbox() from public, anon, authenticated;
revoke all on function private.postpone_outbox_sends(uuid[], text, integer, text, text) from public, anon, authenticated;
revoke all on function private.release_outbox_leases(text) from public, anon, authenticated;
revoke all on function private.retry_set_aside_messages(uuid[]) from public, anon, authenticated;
revoke all on function private.back_off_config(uuid, integer, text) from public, anon, authenticated;
revoke all on function private.resume_paused_config_queue() from public, anon, authenticated;
-- As the rows' owner (the functions and the worker act with the owner's claims):
grant execute on function private.retry_set_aside_messages(uuid[]) to authenticated;
grant execute on function private.back_off_config(uuid, integer, text) to authenticated;
-- claim/start/renew/sweep/release: only the worker's own connection (postgres), never a user.
