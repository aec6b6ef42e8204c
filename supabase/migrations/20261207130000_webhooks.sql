-- Webhooks: a user's own servers learn what happened to their mail without polling. Every change
-- of a message's outcome (queued, sent, deferred, failed, suppressed, bounced, the approval
-- states...) becomes an event, delivered to each of the user's enabled webhooks that wants it, as
-- an HTTPS POST signed per the Standard Webhooks specification (webhook-id, webhook-timestamp,
-- webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">), retried with backoff until
-- the receiver answers 2xx; a webhook that has failed for five days straight (and at least 20
-- times in a row) is disabled, with the reason shown.
--
-- `public.webhooks`: the endpoints (RLS: the owner reads them; only the owner's own session, never
-- an agent's token, adds, changes or removes one: an agent must not be able to have a user's
-- mail events sent to a server of its own). The signing secret is in Vault.
-- `public.webhook_deliveries`: one row per event per webhook, the delivery log the owner reads;
-- written only by the database (the trigger below) and the outbox worker (which sends them).

create table public.webhooks (
  id uuid primary key default gen_random_uuid(),
  user_id uuid not null default auth.uid() references auth.users (id) on delete cascade,
  url text not null,
  description text,
  event_types text[],
  secret_id uuid,
  -- After a rotation the old secret signs too, for a day: receivers move to the new one meanwhile.
  previous_secret_id uuid,
  previous_secret_expires_at timestamptz,
  enabled boolean not null default true,
  consecutive_failures integer not null default 0,
  failing_since timestamptz,
  disabled_reason text,
  disabled_at timestamptz,
  last_success_at timestamptz,
  last_failure_at timestamptz,
  last_error text,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint webhooks_url check (url ~ '^https://' and char_length(url) <= 2048),
  constraint webhooks_description_length check (char_length(description) <= 200),
  constraint webhooks_event_types check (
    event_types is null or (cardinality(event_types) between 1 and 20 and event_types <@ array[
      'message.queued', 'message.scheduled', 'message.sent', 'message.deferred', 'message.failed',
      'message.unknown', 'message.suppressed', 'message.cancelled', 'message.bounced', 'message.complained',
      'message.pending_approval', 'message.rejected', 'message.expired'
    ])
  ),
  constraint webhooks_error_length check (char_length(last_error) <= 500 and char_length(disabled_reason) <= 700)
);

comment on table public.webhooks is
  'HTTPS endpoints that receive this user''s message events, signed per Standard Webhooks. Secret in Vault.';

create index webhooks_user_enabled on public.webhooks (user_id) where enabled;

create trigger webhooks_set_updated_at
  before update on public.webhooks
  for each row execute function private.set_updated_at();

alter table public.webhooks enable row level security;

revoke all on public.webhooks from anon, authenticated;
grant select, delete on public.webhooks to authenticated;
grant insert (url, description, event_types, enabled), update (url, description, event_types, enabled)
  on public.webhooks to authenticated;

create policy "owner reads own webhooks"
  on public.webhooks for select to authenticated
  using (user_id = (select auth.uid()));

create policy "owner adds webhooks"
  on public.webhooks for insert to authenticated
  with check (user_id = (select auth.uid()));

create policy "owner changes own webhooks"
  on public.webhooks for update to authenticated
  using (user_id = (select auth.uid()))
  with check (user_id = (select auth.uid()));

create policy "owner removes own webhooks"
  on public.webhooks for delete to authenticated
  using (user_id = (select auth.uid()));

-- The owner's own session only; at most 10 per user; turning one back on starts it afresh.
create function private.guard_webhooks() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform private.require_owner_session(
    'Only you, signed in yourself, can add, change or remove webhooks; a token issued to an OAuth client (an '
      || 'agent) may read them');
  if tg_op = 'INSERT' and (select count(*) from public.webhooks w where w.user_id = new.user_id) >= 10 then
    perform private.raise_api_error(409, 'webhook_limit_reached', 'You have 10 webhooks: remove one first',
      jsonb_build_object('limit', 10));
  end if;
  if tg_op = 'UPDATE' and new.enabled and not old.enabled then
    new.consecutive_failures := 0;
    new.failing_since := null;
    new.disabled_reason := null;
    new.disabled_at := null;
  end if;
  return case when tg_op = 'DELETE' then old else new end;
end
$$;

revoke all on function private.guard_webhooks() from public, anon, authenticated;

create trigger webhooks_guard
  before insert or delete or update of url, description, event_types, enabled on public.webhooks
  for each row execute function private.guard_webhooks();

create function private.delete_webhook_secret() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  delete from vault.secrets where id in (old.secret_id, old.previous_secret_id);
  return old;
end
$$;

revoke all on function private.delete_webhook_secret() from public, anon, authenticated;

create trigger webhooks_delete_secret
  after delete on public.webhooks
  for each row execute function private.delete_webhook_secret();

-- Store a webhook's signing secret (`whsec_` and base64 of at least 24 bytes), for the caller's own
-- webhook and own session only. A secret it replaces keeps signing beside it for 24 hours.
create function private.set_webhook_secret(p_webhook_id uuid, p_secret text)
returns void
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_secret_id uuid;
begin
  perform private.require_owner_session('Only you, signed in yourself, can set a webhook''s secret');
  if p_secret is null or p_secret !~ '^whsec_[A-Za-z0-9+/]{32,88}={0,2}$' then
    raise exception 'secret must be whsec_ and base64' using errcode = '22023';
  end if;
  select w.secret_id into v_secret_id
    from public.webhooks w
   where w.id = p_webhook_id and w.user_id = (select auth.uid())
     for update;
  if not found then
    raise exception 'webhook not found' using errcode = 'P0002';
  end if;
  delete from vault.secrets
   where id = (select w.previous_secret_id from public.webhooks w where w.id = p_webhook_id);
  update public.webhooks
     set secret_id = vault.create_secret(p_secret, 'webhook_secret_' || gen_random_uuid()::text,
                                         'Signing secret of mailroom webhook ' || p_webhook_id::text),
         previous_secret_id = v_secret_id,
         previous_secret_expires_at = case when v_secret_id is not null then now() + interval '24 hours' end
   where id = p_webhook_id;
end
$$;

revoke all on function private.set_webhook_secret(uuid, text) from public, anon, authenticated;
grant execute on function private.set_webhook_secret(uuid, text) to authenticated;

create table public.webhook_deliveries (
  id uuid primary key default gen_random_uuid(),
  webhook_id uuid not null references public.webhooks (id) on delete cascade,
  user_id uuid not null references auth.users (id) on delete cascade,
  audit_id uuid,
  event_type text not null,
  payload jsonb not null,
  created_at timestamptz not null default now(),
  attempts integer not null default 0,
  next_attempt_at timestamptz not null default now(),
  leased_until timestamptz,
  delivered_at timestamptz,
  failed_at timestamptz,
  last_status integer,
  last_error text,
  constraint webhook_deliveries_error_length check (char_length(last_error) <= 500)
);

comment on table public.webhook_deliveries is
  'One event for one webhook, and how its delivery went (attempts, answer, when it arrived or was given up).';

create index webhook_deliveries_pending on public.webhook_deliveries (webhook_id, next_attempt_at)
  where delivered_at is null and failed_at is null;
create index webhook_deliveries_webhook on public.webhook_deliveries (webhook_id, created_at desc);
create index webhook_deliveries_user on public.webhook_deliveries (user_id);
create index webhook_deliveries_created on public.webhook_deliveries (created_at);

alter table public.webhook_deliveries enable row level security;
revoke all on public.webhook_deliveries from anon, authenticated;
grant select on public.webhook_deliveries to authenticated;

create policy "owner reads own webhook deliveries"
  on public.webhook_deliveries for select to authenticated
  using (user_id = (select auth.uid()));

-- The event of a message's new outcome, for each of the owner's enabled webhooks that wants it.
-- Called by the audit log's triggers only when the owner has an enabled webhook (one indexed
-- lookup otherwise). No exception block: that would be a subtransaction per row (a bulk insert of
-- 10,000 rows would overflow every other session's snapshot); this insert has nothing to fail on.
create function private.queue_message_event(p_row public.email_audit_log, p_type text)
returns void
language plpgsql
security definer
set search_path = ''
as $$
begin
  insert into public.webhook_deliveries (webhook_id, user_id, audit_id, event_type, payload)
  select w.id, p_row.user_id, p_row.id, p_type, jsonb_build_object(
           'type', p_type,
           'timestamp', pg_catalog.to_char(clock_timestamp() at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
           'data', jsonb_strip_nulls(jsonb_build_object(
             'id', p_row.id, 'status', p_row.status, 'message_id', p_row.message_id, 'from', p_row.from_email,
             'to', p_row.to_addresses, 'subject', p_row.subject, 'recipients', p_row.recipients,
             'suppressed', p_row.suppressed, 'bounced', p_row.bounced,
             'reports', case when p_type in ('message.bounced', 'message.complained') then p_row.reports end,
             'error_code', p_row.error_class, 'error_message', p_row.error_message,
             'config_id', p_row.config_id, 'batch_id', p_row.batch_id, 'client_id', p_row.client_id,
             'agent_context', p_row.agent_context)))
    from public.webhooks w
   where w.user_id = p_row.user_id and w.enabled
     and (w.event_types is null or p_type = any (w.event_types));
end
$$;

revoke all on function private.queue_message_event(public.email_audit_log, text) from public, anon, authenticated;

create function private.message_events() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_type text;
begin
  if not exists (select 1 from public.webhooks w where w.user_id = new.user_id and w.enabled) then
    return null;
  end if;
  if tg_op = 'UPDATE' and new.status = old.status then
    -- The outcome stayed, a report came back: a bounce, or a complaint.
    if new.bounced is distinct from old.bounced then
      v_type := 'message.bounced';
    elsif new.reports is distinct from old.reports
          and new.reports @> '[{"kind": "complaint"}]' and not coalesce(old.reports @> '[{"kind": "complaint"}]', false)
    then
      v_type := 'message.complained';
    else
      return null;
    end if;
  elsif new.status = 'sending' or (tg_op = 'UPDATE' and old.status = 'sending' and new.status = 'queued') then
    -- Going out, or back in the queue untried (postponed, a lease given back): not a new outcome.
    return null;
  else
    v_type := 'message.' || new.status;
  end if;
  perform private.queue_message_event(new, v_type);
  return null;
end
$$;

revoke all on function private.message_events() from public, anon, authenticated;

create trigger email_audit_log_message_events_insert
  after insert on public.email_audit_log
  for each row when (new.status <> 'sending')
  execute function private.message_events();

create trigger email_audit_log_message_events_update
  after update of status, bounced, reports on public.email_audit_log
  for each row when (
    new.status is distinct from old.status or new.bounced is distinct from old.bounced
    or new.reports is distinct from old.reports
  )
  execute function private.message_events();

-- A test event for one of the caller's webhooks, now (POST /webhooks/:id/test).
create function private.queue_webhook_test(p_webhook_id uuid)
returns uuid
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_id uuid;
begin
  -- One waiting at a time: a test already queued is tried again now (after its receiver was
  -- fixed, say) rather than queued twice.
  update public.webhook_deliveries d
     set next_attempt_at = now()
    from public.webhooks w
   where w.id = d.webhook_id and w.user_id = (select auth.uid())
     and d.webhook_id = p_webhook_id and d.event_type = 'webhook.test'
     and d.delivered_at is null and d.failed_at is null
  returning d.id into v_id;
  if found then
    return v_id;
  end if;
  insert into public.webhook_deliveries (webhook_id, user_id, event_type, payload)
  select w.id, w.user_id, 'webhook.test', jsonb_build_object(
           'type', 'webhook.test',
           'timestamp', pg_catalog.to_char(clock_timestamp() at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
           'data', jsonb_build_object('webhook_id', w.id))
    from public.webhooks w
   where w.id = p_webhook_id and w.user_id = (select auth.uid())
  returning id into v_id;
  return v_id;
end
$$;

revoke all on function private.queue_webhook_test(uuid) from public, anon, authenticated;
grant execute on function private.queue_webhook_test(uuid) to authenticated;

-- The worker's share of due deliveries of enabled webhooks, each leased for `p_lease` (a worker
-- that dies holding one leaves it to be sent again, with the same webhook-id, once the lease
-- ends): at most 8 per webhook, oldest first, so one user's backlog never holds up another's.
-- With the endpoint and its signing secret, decrypted here for the sender. Server-side only.
create function private.claim_webhook_deliveries(p_limit integer, p_lease interval default interval '120 seconds')
returns table (
  id uuid, webhook_id uuid, url text, secret text, previous_secret text, event_type text, payload jsonb,
  attempts integer, created_at timestamptz
)
language sql
security definer
set search_path = ''
as $$
  with picked as (
    select p.id, p.next_attempt_at
      from public.webhooks w
      cross join lateral (
        select d.id, d.next_attempt_at
          from public.webhook_deliveries d
         where d.webhook_id = w.id and d.delivered_at is null and d.failed_at is null
           and d.next_attempt_at <= now() and (d.leased_until is null or d.leased_until < now())
         order by d.next_attempt_at
         limit 8
      ) p
     where w.enabled
  ),
  due as (
    select d.id
      from public.webhook_deliveries d
      join picked p on p.id = d.id
     order by p.next_attempt_at
     limit greatest(p_limit, 0)
       for update of d skip locked
  ),
  leased as (
    update public.webhook_deliveries d
       set leased_until = now() + p_lease, attempts = d.attempts + 1
      from due
     where d.id = due.id
    returning d.id, d.webhook_id, d.event_type, d.payload, d.attempts, d.created_at
  )
  select l.id, l.webhook_id, w.url, s.decrypted_secret, p.decrypted_secret, l.event_type, l.payload, l.attempts,
         l.created_at
    from leased l
    join public.webhooks w on w.id = l.webhook_id
    left join vault.decrypted_secrets s on s.id = w.secret_id
    left join vault.decrypted_secrets p on p.id = w.previous_secret_id and w.previous_secret_expires_at > now()
   order by l.created_at, l.id;
$$;

revoke all on function private.claim_webhook_deliveries(integer, interval) from public, anon, authenticated;

-- How the deliveries went: [{id, ok, status?, error?, skipped?}]. A delivery not tried (the
-- worker ran out of time) goes back as it was. A success resets its webhook's failures; a failure
-- is retried after 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h (Standard Webhooks' schedule) and
-- given up after the 8th attempt. A webhook failing for five days straight (and 20 times in a row
-- at least) is disabled, with why: a burst of failures while a receiver redeploys is not enough.
-- Webhooks are updated once each, in id order (two workers recording never deadlock). Server-side.
create function private.record_webhook_deliveries(p_results jsonb)
returns void
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_hook record;
begin
  with r as (
    select (x ->> 'id')::uuid as id, coalesce((x ->> 'ok')::boolean, false) as ok,
           coalesce((x ->> 'skipped')::boolean, false) as skipped,
           (x ->> 'status')::integer as status, left(x ->> 'error', 500) as error
      from jsonb_array_elements(p_results) x
  ),
  done as (
    update public.webhook_deliveries d
       set leased_until = null,
           attempts = case when r.skipped then d.attempts - 1 else d.attempts end,
           last_status = case when r.skipped then d.last_status else r.status end,
           last_error = case when r.skipped then d.last_error when r.ok then null else r.error end,
           delivered_at = case when r.ok then now() end,
           failed_at = case when not r.ok and not r.skipped and d.attempts >= 8 then now() end,
           next_attempt_at = case when r.ok or r.skipped then d.next_attempt_at
                                  else now() + (array[interval '5 seconds', interval '5 minutes', interval '30 minutes',
                                                      interval '2 hours', interval '5 hours', interval '10 hours',
                                                      interval '10 hours', interval '10 hours'])[least(d.attempts, 8)]
                             end
      from r
     where d.id = r.id and d.delivered_at is null
    returning d.webhook_id, r.ok, r.skipped, r.status, r.error
  )
  select coalesce(jsonb_agg(jsonb_build_object('webhook_id', webhook_id, 'ok', ok, 'skipped', skipped,
                                               'error', coalesce(error, 'HTTP ' || status))), '[]'::jsonb)
    into p_results
    from done;
  for v_hook in
    select (x ->> 'webhook_id')::uuid as id,
           bool_or((x ->> 'ok')::boolean) as any_ok,
           count(*) filter (where not (x ->> 'ok')::boolean and not (x ->> 'skipped')::boolean)::integer as failures,
           (array_agg(x ->> 'error') filter (where not (x ->> 'ok')::boolean and not (x ->> 'skipped')::boolean))[1]
             as error
      from jsonb_array_elements(p_results) x
     group by 1
     order by 1
  loop
    if v_hook.any_ok then
      update public.webhooks
         set consecutive_failures = 0, failing_since = null, last_success_at = now()
       where id = v_hook.id;
    elsif v_hook.failures > 0 then
      update public.webhooks w
         set consecutive_failures = w.consecutive_failures + v_hook.failures,
             failing_since = coalesce(w.failing_since, now()),
             last_failure_at = now(), last_error = left(v_hook.error, 300),
             enabled = w.enabled and not (w.consecutive_failures + v_hook.failures >= 20
                                           and coalesce(w.failing_since, now()) < now() - interval '5 days'),
             disabled_at = case when w.consecutive_failures + v_hook.failures >= 20
                                     and coalesce(w.failing_since, now()) < now() - interval '5 days'
                                then now() else w.disabled_at end,
             disabled_reason = case when w.consecutive_failures + v_hook.failures >= 20
                                         and coalesce(w.failing_since, now()) < now() - interval '5 days'
                                    then 'disabled after failing for 5 days (' || (w.consecutive_failures + v_hook.failures)
                                         || ' failed deliveries in a row); the last: ' || left(v_hook.error, 300)
                                    else w.disabled_reason end
       where w.id = v_hook.id;
    end if;
  end loop;
end
$$;

revoke all on function private.record_webhook_deliveries(jsonb) from public, anon, authenticated;

-- Events are kept 30 days (the log the owner reads; a disabled webhook's waiting ones too), then
-- forgotten: by their creation time, which is indexed.
create function private.forget_old_webhook_deliveries()
returns integer
language sql
security definer
set search_path = ''
as $$
  with gone as (
    delete from public.webhook_deliveries
     where id in (
       select id from public.webhook_deliveries
        where created_at < now() - interval '30 days'
        order by created_at
        limit 10000
          for update skip locked)
    returning 1
  )
  select count(*)::integer from gone;
$$;

revoke all on function private.forget_old_webhook_deliveries() from public, anon, authenticated;
