-- Duplicate-send protection without a key. Agents retry on timeouts, loop, and send the same
-- thing again in a new request; an Idempotency-Key protects only a client that sends one. A
-- send carries its content fingerprint (a SHA-256 the functions compute over the config, the
-- set of recipients, subject, text, HTML, the template's content with its data, and the
-- attachments: see _shared/duplicates), and a user's fingerprint is held for the config's
-- `duplicate_window_seconds` (default 10 minutes, 0 turns it off) by the message it came with.
-- Another send with the same fingerprint meanwhile is refused with 409 `duplicate_send`, naming
-- that message, unless the caller says `allow_duplicate` (then it goes, and its row records
-- which message it repeats in `duplicate_of`).
--
-- The check is the insert of the audit row itself (a trigger), so it holds across function
-- instances and workers and costs one primary-key lookup, not a scan of the log. Two identical
-- sends at once: the second's insert into private.send_fingerprints waits for the first's
-- transaction, then finds its row: one mail, one 409. Only messages that went or may go hold
-- their fingerprint: one that failed, was deferred by the server, was cancelled, rejected or
-- expired leaves it to the next.
-- The outbox's own retries (deferred recipients, set-aside messages) reuse their row and are
-- never checked again.

alter table public.user_smtp_configs
  add column duplicate_window_seconds integer not null default 600
    constraint user_smtp_configs_duplicate_window check (duplicate_window_seconds between 0 and 86400);

comment on column public.user_smtp_configs.duplicate_window_seconds is
  'How long a send through this config refuses an identical one (409 duplicate_send); 0 turns it off';

-- Users manage configs through the functions, in their own RLS context (as with max_connections).
grant insert (duplicate_window_seconds), update (duplicate_window_seconds) on public.user_smtp_configs to authenticated;

alter table public.email_audit_log
  add column content_fingerprint bytea
    constraint email_audit_log_content_fingerprint_length check (octet_length(content_fingerprint) = 32),
  add column duplicate_of uuid;

comment on column public.email_audit_log.content_fingerprint is
  'SHA-256 of what the send says (config, recipients, content, attachments): see private.claim_send_fingerprint';
comment on column public.email_audit_log.duplicate_of is
  'The earlier message this one repeats, sent anyway with allow_duplicate (it may since be deleted)';

-- The functions insert it with the row; `duplicate_of` is the trigger's to write.
grant insert (content_fingerprint) on public.email_audit_log to authenticated;

create table private.send_fingerprints (
  user_id uuid not null references auth.users (id) on delete cascade,
  fingerprint bytea not null,
  audit_id uuid not null,
  -- Held while claimed_at + the config's window (as it is now: a window lowered applies at once)
  -- is ahead; expires_at (the window when claimed) is when the cleanup may forget it.
  claimed_at timestamptz not null default now(),
  expires_at timestamptz not null,
  primary key (user_id, fingerprint)
);

comment on table private.send_fingerprints is
  'Each user''s recent sends by content fingerprint, held until expires_at by the message that came with it';

alter table private.send_fingerprints enable row level security;
-- No policies: only the trigger and the cleanup (security definer) reach it.
revoke all on private.send_fingerprints from public, anon, authenticated;

create index send_fingerprints_expiry on private.send_fingerprints (expires_at);

-- The statuses of a message that went or may still go: they hold its fingerprint. Not `failed`,
-- `cancelled`, `rejected` or `expired`, and not `deferred`: an immediate send every recipient of
-- which the server deferred (4xx) reached nobody, and its caller is told to retry (502,
-- retryable). `unknown` (no answer after the final dot) may have been delivered: it holds.
create function private.send_may_go(p_status text)
returns boolean
language sql
immutable
set search_path = ''
as $$
  select p_status in ('scheduled', 'queued', 'pending_approval', 'sending', 'sent', 'unknown')
$$;

-- The 409 that names the earlier message.
create function private.duplicate_send_error(p_earlier public.email_audit_log, p_window integer)
returns void
language plpgsql
set search_path = ''
as $$
begin
  perform private.raise_api_error(409, 'duplicate_send',
    format('This exact email (same config, recipients, subject, body and attachments) was already %s at %s '
           || '(message %s, status %s); it was not sent again. Send it with allow_duplicate: true only if it '
           || 'should really go twice',
           case when p_earlier.status in ('scheduled', 'queued', 'pending_approval') then 'accepted' else 'sent' end,
           to_char(p_earlier.created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'), p_earlier.id,
           p_earlier.status),
    jsonb_build_object(
      'duplicate_of', jsonb_build_object(
        'id', p_earlier.id, 'status', p_earlier.status, 'message_id', p_earlier.message_id,
        'created_at', p_earlier.created_at, 'scheduled_at', p_earlier.scheduled_at),
      'window_seconds', p_window));
end
$$;

-- The message that holds a user's fingerprint now, or null: the fingerprint's row locked (a
-- claim in flight is waited for), then the holder read afresh (each statement of a volatile
-- function sees what committed before it, so a holder that committed meanwhile is seen).
create function private.fingerprint_holder(p_user_id uuid, p_fingerprint bytea, p_window integer)
returns public.email_audit_log
language plpgsql
set search_path = ''
as $$
declare
  v_held private.send_fingerprints;
  v_holder public.email_audit_log;
begin
  select * into v_held from private.send_fingerprints f
   where f.user_id = p_user_id and f.fingerprint = p_fingerprint
     for update;
  if not found or v_held.expires_at <= now() or v_held.claimed_at + make_interval(secs => p_window) <= now() then
    return null;
  end if;
  select * into v_holder from public.email_audit_log a where a.id = v_held.audit_id;
  if v_holder.id is null or not private.send_may_go(v_holder.status) then
    return null;
  end if;
  return v_holder;
end
$$;

-- Before a row is inserted: hold its fingerprint for the config's window, or refuse it as a
-- duplicate of the message that holds it (`mailroom.allow_duplicate` = 'yes' in the
-- transaction: take the fingerprint over and record which message it repeats). Only a row
-- its own user inserts is checked: the claims are the caller's, and an insert in someone
-- else's name (which RLS refuses after this trigger) must learn nothing of their mail.
create function private.claim_send_fingerprint()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_window integer;
  v_holder public.email_audit_log;
begin
  if new.content_fingerprint is null or new.user_id is distinct from (select auth.uid()) then
    return new;
  end if;
  select c.duplicate_window_seconds into v_window
    from public.user_smtp_configs c where c.id = new.config_id and c.user_id = new.user_id;
  if coalesce(v_window, 0) = 0 then
    return new;
  end if;
  loop
    insert into private.send_fingerprints (user_id, fingerprint, audit_id, expires_at)
    values (new.user_id, new.content_fingerprint, new.id, now() + make_interval(secs => v_window))
    on conflict do nothing;
    if found then
      return new;
    end if;
    -- Held already (by a transaction that has committed by now: the insert waited for it).
    continue when not exists (
      select 1 from private.send_fingerprints f where f.user_id = new.user_id and f.fingerprint = new.content_fingerprint);
    v_holder := private.fingerprint_holder(new.user_id, new.content_fingerprint, v_window);
    if v_holder.id is not null then
      if coalesce(current_setting('mailroom.allow_duplicate', true), '') <> 'yes' then
        perform private.duplicate_send_error(v_holder, v_window);
      end if;
      new.duplicate_of := v_holder.id;
    end if;
    update private.send_fingerprints f
       set audit_id = new.id, claimed_at = now(), expires_at = now() + make_interval(secs => v_window)
     where f.user_id = new.user_id and f.fingerprint = new.content_fingerprint;
    return new;
  end loop;
end
$$;

-- A batch's rows are claimed together, by private.claim_batch_fingerprints (one statement for
-- 10,000 rows rather than a trigger call each).
create trigger email_audit_log_refuse_duplicates
  before insert on public.email_audit_log
  for each row when (new.content_fingerprint is not null and new.batch_id is null)
  execute function private.claim_send_fingerprint();

-- send-bulk, once its batch's rows are in: hold their fingerprints for the config's window. It
-- has left out the entries that repeat a recent message or an earlier entry (private.duplicate_sends);
-- one that became a repeat since (an identical send committed meanwhile) refuses the whole batch
-- with 409 duplicate_send, naming the message. With `mailroom.allow_duplicate` = 'yes' every row
-- takes its fingerprint over and records the message it repeats. The fingerprints nobody holds
-- are claimed in one statement; each one held already is looked at on its own (rare), afresh.
create function private.claim_batch_fingerprints(p_batch_id uuid)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_user uuid := (select auth.uid());
  v_window integer;
  v_allow boolean := coalesce(current_setting('mailroom.allow_duplicate', true), '') = 'yes';
  v_fingerprints bytea[];
  v_ids uuid[];
  v_held_fingerprints bytea[];
  v_held_ids uuid[];
  v_holder public.email_audit_log;
begin
  select c.duplicate_window_seconds into v_window
    from public.email_batches b join public.user_smtp_configs c on c.id = b.config_id and c.user_id = b.user_id
   where b.id = p_batch_id and b.user_id = v_user;
  if coalesce(v_window, 0) = 0 then
    return 0;
  end if;
  -- One row per fingerprint (with allow_duplicate a batch may repeat itself).
  select coalesce(array_agg(r.content_fingerprint), '{}'), coalesce(array_agg(r.id), '{}')
    into v_fingerprints, v_ids
    from (select distinct on (a.content_fingerprint) a.content_fingerprint, a.id
            from public.email_audit_log a
           where a.batch_id = p_batch_id and a.user_id = v_user and a.content_fingerprint is not null
           order by a.content_fingerprint, a.id) r;
  -- Those nobody holds, claimed at once; the ones held already, kept aside.
  with source as (
    select u.fingerprint, u.id from unnest(v_fingerprints, v_ids) as u (fingerprint, id)
  ),
  claimed as (
    insert into private.send_fingerprints (user_id, fingerprint, audit_id, expires_at)
    select v_user, s.fingerprint, s.id, now() + make_interval(secs => v_window) from source s
    on conflict do nothing
    returning fingerprint
  )
  select coalesce(array_agg(s.fingerprint), '{}'), coalesce(array_agg(s.id), '{}')
    into v_held_fingerprints, v_held_ids
    from source s where not exists (select 1 from claimed c where c.fingerprint = s.fingerprint);
  for v_at in 1 .. cardinality(v_held_fingerprints) loop
    v_holder := private.fingerprint_holder(v_user, v_held_fingerprints[v_at], v_window);
    if v_holder.id is not null then
      if not v_allow then
        perform private.duplicate_send_error(v_holder, v_window);
      end if;
      update public.email_audit_log a set duplicate_of = v_holder.id where a.id = v_held_ids[v_at];
    end if;
    -- Free, or taken over (a fingerprint the cleanup forgot meanwhile is claimed afresh).
    insert into private.send_fingerprints (user_id, fingerprint, audit_id, expires_at)
    values (v_user, v_held_fingerprints[v_at], v_held_ids[v_at], now() + make_interval(secs => v_window))
    on conflict (user_id, fingerprint) do update
      set audit_id = excluded.audit_id, claimed_at = now(), expires_at = excluded.expires_at;
  end loop;
  return cardinality(v_fingerprints);
end
$$;

-- The caller's messages that would refuse these fingerprints through this config now (what a
-- dry run shows, and what send-bulk leaves out before it queues the rest). Null window: none.
create function private.duplicate_sends(p_config_id uuid, p_fingerprints bytea[])
returns table (fingerprint bytea, earlier jsonb, window_seconds integer)
language sql
stable
security definer
set search_path = ''
as $$
  select f.fingerprint,
         jsonb_build_object('id', a.id, 'status', a.status, 'message_id', a.message_id,
                            'created_at', a.created_at, 'scheduled_at', a.scheduled_at),
         c.duplicate_window_seconds
    from public.user_smtp_configs c
    join private.send_fingerprints f on f.user_id = c.user_id and f.fingerprint = any (p_fingerprints)
    join public.email_audit_log a on a.id = f.audit_id
   where c.id = p_config_id
     and c.user_id = (select auth.uid())
     and c.duplicate_window_seconds > 0
     and f.expires_at > now()
     and f.claimed_at + make_interval(secs => c.duplicate_window_seconds) > now()
     and private.send_may_go(a.status)
$$;

-- The same check, before the send's budget is reserved (send-email's statement calls it first,
-- so a repeat is told it already went rather than to wait for the budget); the insert's trigger
-- still decides, should an identical send commit in between.
create function private.refuse_duplicate_send(p_config_id uuid, p_fingerprint bytea)
returns void
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  v_window integer;
  v_earlier public.email_audit_log;
begin
  if coalesce(current_setting('mailroom.allow_duplicate', true), '') = 'yes' then
    return;
  end if;
  select c.duplicate_window_seconds into v_window
    from public.user_smtp_configs c where c.id = p_config_id and c.user_id = (select auth.uid());
  if coalesce(v_window, 0) = 0 then
    return;
  end if;
  select a.* into v_earlier
    from private.send_fingerprints f join public.email_audit_log a on a.id = f.audit_id
   where f.user_id = (select auth.uid()) and f.fingerprint = p_fingerprint and f.expires_at > now()
     and f.claimed_at + make_interval(secs => v_window) > now()
     and private.send_may_go(a.status);
  if found then
    perform private.duplicate_send_error(v_earlier, v_window);
  end if;
end
$$;

-- Fingerprints past their window, a bounded number per call (the worker's sweep calls it).
create function private.forget_expired_send_fingerprints()
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_forgotten integer;
begin
  -- Never waiting for a row a send holds locked (nor deadlocking with one): what is locked
  -- now is forgotten next time.
  delete from private.send_fingerprints f
   where f.ctid = any (array(
     select g.ctid from private.send_fingerprints g where g.expires_at <= now() limit 10000
        for update skip locked));
  get diagnostics v_forgotten = row_count;
  return v_forgotten;
end
$$;

revoke all on function private.send_may_go(text), private.duplicate_send_error(public.email_audit_log, integer),
  private.fingerprint_holder(uuid, bytea, integer), private.claim_send_fingerprint(), private.claim_batch_fingerprints(uuid), private.duplicate_sends(uuid, bytea[]),
  private.refuse_duplicate_send(uuid, bytea), private.forget_expired_send_fingerprints()
  from public, anon, authenticated;
-- What send-email and send-bulk call in the user's session; the rest runs inside them.
grant execute on function private.claim_batch_fingerprints(uuid), private.duplicate_sends(uuid, bytea[]),
  private.refuse_duplicate_send(uuid, bytea)
  to authenticated;
