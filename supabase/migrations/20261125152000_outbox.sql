-- The durable outbox: queued, scheduled and retried sends, drained by any number of workers.
--
-- Why the audit log is the outbox: one row per message from the moment it is accepted to its
-- final outcome, so progress, history and analytics read one table, and "every outcome is in
-- the audit trail" holds by construction. Queue mechanics are columns on it (payload, when,
-- lease); a partial index over the rows still to send keeps claiming cheap however long the
-- history grows. Batches (send-bulk) keep what their messages share.
--
-- * Users insert queued/scheduled rows as themselves (RLS; send-bulk and scheduled
--   send-email do it through the functions, the Data API may too: the worker validates every
--   payload again at send time) and read their rows; they never move a status. Cancelling is
--   private.cancel_outbox_messages, owner-checked.
-- * Workers have no user JWT. They claim due rows (private.claim_outbox: FOR UPDATE SKIP
--   LOCKED, a lease, fair across users), mark the one in flight `sending`, and record each
--   outcome as the row's owner (the same claims withUser sets: auth.uid() = the sender) with
--   private.record_outbox_attempt, which settles the row or re-queues its deferred recipients
--   with backoff.
-- * A worker that dies: rows it claimed but had not started come back when the lease ends; the
--   one it had in flight becomes `unknown` (it may have been delivered; SMTP has no
--   idempotency, so it is never resent automatically). send-email rows left `sending` by a
--   dead function are swept to `unknown` the same way (private.sweep_outbox).
-- * The Message-ID is fixed when the row is created, from its id and the sender's domain, so a
--   retried message and the recipient's copy can be matched.

create table public.email_batches (
  id uuid primary key default gen_random_uuid(),
  user_id uuid not null default auth.uid() references auth.users (id) on delete cascade,
  config_id uuid references public.user_smtp_configs (id) on delete set null,
  template_id uuid references public.email_templates (id) on delete set null,
  -- The shared parts of every message: subject/text/html/template/data/headers/from_name.
  content jsonb not null,
  agent_context jsonb,
  total integer not null,
  scheduled_at timestamptz,
  created_at timestamptz not null default now(),
  constraint email_batches_total check (total between 1 and 100000),
  constraint email_batches_content check (jsonb_typeof(content) = 'object' and octet_length(content::text) <= 4194304)
);

comment on table public.email_batches is 'A send-bulk request: what its messages share. The messages are email_audit_log rows.';

create index email_batches_user_created on public.email_batches (user_id, created_at desc);

alter table public.email_batches enable row level security;
revoke all on public.email_batches from anon, authenticated;
grant select on public.email_batches to authenticated;
grant insert (id, config_id, template_id, content, agent_context, total, scheduled_at)
  on public.email_batches to authenticated;

create policy "owner can read own batches"
  on public.email_batches for select to authenticated
  using (user_id = (select auth.uid()));

create policy "owner can create batches for own configs"
  on public.email_batches for insert to authenticated
  with check (
    user_id = (select auth.uid())
    and (config_id is null or exists (
      select 1 from public.user_smtp_configs c where c.id = config_id and c.user_id = (select auth.uid())
    ))
  );

-- The outbox columns -----------------------------------------------------------------------
alter table public.email_audit_log
  add column batch_id uuid references public.email_batches (id) on delete set null,
  -- What to send: a send-email request (scheduled) or one recipient of a batch {to, data}.
  add column payload jsonb,
  add column scheduled_at timestamptz,
  add column next_attempt_at timestamptz,
  add column lease_until timestamptz,
  add column leased_by text,
  drop constraint email_audit_log_status,
  add constraint email_audit_log_status check (
    status in ('scheduled', 'queued', 'sending', 'sent', 'deferred', 'failed', 'unknown', 'cancelled')
  ),
  add constraint email_audit_log_payload_size check (octet_length(payload::text) <= 16777216);

comment on column public.email_audit_log.payload is 'For queued sends: the request, or one recipient {to, data} of its batch.';

-- What workers look for: rows still to send, by due time.
create index email_audit_log_due on public.email_audit_log (next_attempt_at)
  where status in ('queued', 'scheduled');
create index email_audit_log_in_flight on public.email_audit_log (lease_until)
  where status = 'sending';
create index email_audit_log_batch on public.email_audit_log (batch_id) where batch_id is not null;

grant insert (batch_id, payload, scheduled_at) on public.email_audit_log to authenticated;

-- Queued rows get their fixed Message-ID, a clean attempt count and their due time.
create function private.prepare_outbox_row() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if new.status in ('queued', 'scheduled') then
    -- The sender is the config's, whatever the inserted row says (the Data API can insert too).
    new.from_email := coalesce(
      (select c.from_email from public.user_smtp_configs c where c.id = new.config_id), new.from_email);
    new.attempts := 0;
    new.message_id := '<' || new.id::text || '@' || lower(split_part(new.from_email, '@', 2)) || '>';
    new.status := case when new.scheduled_at > now() then 'scheduled' else 'queued' end;
    new.next_attempt_at := greatest(coalesce(new.scheduled_at, now()), now());
    new.lease_until := null;
    new.leased_by := null;
  end if;
  return new;
end
$$;

create trigger email_audit_log_prepare_outbox_row
  before insert on public.email_audit_log
  for each row execute function private.prepare_outbox_row();

alter policy "owner can record own sends in flight" on public.email_audit_log
  with check (
    user_id = (select auth.uid())
    and status in ('scheduled', 'queued', 'sending')
    and completed_at is null
    -- Queued rows carry the Message-ID the trigger fixed; in-flight sends get theirs at the outcome.
    and (message_id is null or status in ('scheduled', 'queued'))
    -- Only queued rows carry something for the worker to send.
    and (status in ('scheduled', 'queued') or (payload is null and batch_id is null and scheduled_at is null))
    and (
      config_id is null
      or exists (
        select 1 from public.user_smtp_configs c
         where c.id = config_id and c.user_id = (select auth.uid())
      )
    )
    and (
      template_id is null
      or exists (
        select 1 from public.email_templates t
         where t.id = template_id and (t.user_id = (select auth.uid()) or t.user_id is null)
      )
    )
    and (
      batch_id is null
      or exists (
        select 1 from public.email_batches b where b.id = batch_id and b.user_id = (select auth.uid())
      )
    )
  );

-- Paused configs -------------------------------------------------------------------------------
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

-- Workers ------------------------------------------------------------------------------------
-- Claim up to p_limit due rows for a worker, interleaving users so that one user's big batch
-- does not starve another's single mail. Claimed rows stay queued/scheduled under a lease
-- until the worker starts each one.
create function private.claim_outbox(p_worker text, p_limit integer, p_lease_seconds integer)
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

-- Start the send of a claimed row: it is now in flight. False when it was cancelled or the
-- lease was lost meanwhile.
create function private.start_outbox_send(p_audit_id uuid, p_worker text, p_lease_seconds integer)
returns boolean
language plpgsql
security definer
set search_path = ''
as $$
begin
  update public.email_audit_log a
     set status = 'sending', attempts = a.attempts + 1,
         lease_until = now() + make_interval(secs => p_lease_seconds)
   where a.id = p_audit_id and a.leased_by = p_worker and a.status in ('queued', 'scheduled');
  return found;
end
$$;

-- Put a claimed or started row back without counting an attempt (its config is over its
-- limit now, or the worker ran out of time before starting it).
create function private.postpone_outbox_send(p_audit_id uuid, p_worker text, p_seconds integer)
returns void
language plpgsql
security definer
set search_path = ''
as $$
begin
  update public.email_audit_log a
     set status = 'queued',
         attempts = case when a.status = 'sending' then greatest(a.attempts - 1, 0) else a.attempts end,
         next_attempt_at = now() + make_interval(secs => greatest(p_seconds, 0)),
         lease_until = null, leased_by = null
   where a.id = p_audit_id and a.leased_by = p_worker and a.status in ('queued', 'scheduled', 'sending');
end
$$;

-- Rows whose worker died: claimed but not started come back; in flight become unknown. And
-- send-email rows a dead function left `sending` for 15 minutes become unknown.
create function private.sweep_outbox()
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
  return v_count;
end
$$;

-- Record the outcome of one attempt, as the row's owner. `p_outcome` is the jsonb that
-- private.record_email_outcome takes; recipients accepted by earlier attempts are kept. While
-- recipients are still deferred (and the message is younger than 24 hours) the row goes back
-- to the queue with exponential backoff and jitter (or the server's "retry in N s" hint when
-- longer), and only those recipients are tried again.
create function private.record_outbox_attempt(p_audit_id uuid, p_outcome jsonb)
returns text
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_row public.email_audit_log;
  v_recipients jsonb;
  v_deferred integer;
  v_status text := p_outcome ->> 'status';
  v_delay double precision;
begin
  select * into v_row from public.email_audit_log a
   where a.id = p_audit_id and a.user_id = (select auth.uid()) and a.status = 'sending'
     for update;
  if not found then
    raise exception 'no in-flight outbox row % for this user', p_audit_id using errcode = 'P0002';
  end if;

  -- Earlier attempts' accepted (and refused) recipients stand; this attempt's results replace the rest.
  select coalesce(jsonb_agg(r order by r ->> 'address'), '[]'::jsonb) into v_recipients
    from (
      select r from jsonb_array_elements(coalesce(v_row.recipients, '[]'::jsonb)) r
       where r ->> 'status' in ('accepted', 'rejected', 'unknown')
         and not exists (select 1 from jsonb_array_elements(coalesce(p_outcome -> 'recipients', '[]')) n
                          where n ->> 'address' = r ->> 'address')
      union all
      select n from jsonb_array_elements(coalesce(p_outcome -> 'recipients', '[]')) n
    ) merged (r);
  select count(*) into v_deferred from jsonb_array_elements(v_recipients) r where r ->> 'status' = 'deferred';

  if v_status = 'deferred' or (v_deferred > 0 and v_status <> 'unknown') then
    if v_row.created_at > now() - interval '24 hours' then
      v_delay := least(60 * power(2, greatest(v_row.attempts - 1, 0)), 3600) * (0.8 + random() * 0.4);
      v_delay := greatest(v_delay, coalesce((p_outcome ->> 'retry_after_seconds')::double precision, 0));
      update public.email_audit_log a
         set status = 'queued', recipients = v_recipients,
             next_attempt_at = now() + make_interval(secs => v_delay),
             lease_until = null, leased_by = null,
             error_class = p_outcome ->> 'error_class', error_message = left(p_outcome ->> 'error_message', 1000),
             smtp_response_code = (p_outcome ->> 'smtp_response_code')::integer,
             smtp_enhanced_code = left(p_outcome ->> 'smtp_enhanced_code', 16),
             smtp_response = left(p_outcome ->> 'smtp_response', 1000), retryable = true
       where a.id = p_audit_id;
      return 'queued';
    end if;
    -- Out of time: what is still deferred has failed.
    p_outcome := jsonb_set(p_outcome, '{error_class}', '"expired"');
    p_outcome := jsonb_set(p_outcome, '{retryable}', 'false');
    v_recipients := (
      select jsonb_agg(case when r ->> 'status' = 'deferred' then jsonb_set(r, '{status}', '"rejected"') else r end)
        from jsonb_array_elements(v_recipients) r
    );
  end if;

  v_status := case
    when exists (select 1 from jsonb_array_elements(v_recipients) r where r ->> 'status' = 'accepted') then 'sent'
    when v_status = 'unknown' then 'unknown'
    else 'failed'
  end;
  perform private.record_email_outcome(p_audit_id,
    p_outcome || jsonb_build_object('status', v_status, 'recipients', v_recipients, 'message_id', v_row.message_id));
  -- The row shows what was sent (the worker built it from the payload), not what was inserted.
  update public.email_audit_log a
     set lease_until = null,
         to_addresses = case when p_outcome -> 'sent' ? 'to'
                             then array(select jsonb_array_elements_text(p_outcome -> 'sent' -> 'to'))
                             else a.to_addresses end,
         cc_count = coalesce((p_outcome -> 'sent' ->> 'cc_count')::integer, a.cc_count),
         bcc_count = coalesce((p_outcome -> 'sent' ->> 'bcc_count')::integer, a.bcc_count),
         subject = case when p_outcome -> 'sent' ? 'subject' then left(p_outcome -> 'sent' ->> 'subject', 998) else a.subject end
   where a.id = p_audit_id;
  return v_status;
end
$$;

-- Cancel messages that have not started: by id, or a whole batch. Returns how many.
create function private.cancel_outbox_messages(p_audit_ids uuid[], p_batch_id uuid default null)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_count integer;
begin
  update public.email_audit_log a
     set status = 'cancelled', completed_at = now(), lease_until = null, leased_by = null
   where a.user_id = (select auth.uid())
     and a.status in ('queued', 'scheduled')
     and (a.id = any (coalesce(p_audit_ids, '{}')) or (p_batch_id is not null and a.batch_id = p_batch_id));
  get diagnostics v_count = row_count;
  return v_count;
end
$$;

revoke all on function private.prepare_outbox_row() from public, anon, authenticated;
revoke all on function private.claim_outbox(text, integer, integer) from public, anon, authenticated;
revoke all on function private.start_outbox_send(uuid, text, integer) from public, anon, authenticated;
revoke all on function private.postpone_outbox_send(uuid, text, integer) from public, anon, authenticated;
revoke all on function private.sweep_outbox() from public, anon, authenticated;
revoke all on function private.record_outbox_attempt(uuid, jsonb) from public, anon, authenticated;
revoke all on function private.cancel_outbox_messages(uuid[], uuid) from public, anon, authenticated;
-- As the row's owner (the worker sets the owner's claims, as withUser does):
grant execute on function private.record_outbox_attempt(uuid, jsonb) to authenticated;
grant execute on function private.cancel_outbox_messages(uuid[], uuid) to authenticated;
-- claim/start/postpone/sweep: only the worker's own connection (postgres), never a user.
