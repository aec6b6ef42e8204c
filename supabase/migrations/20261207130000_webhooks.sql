-- Webhooks: a user's own servers learn what happened to their mail without polling. Every change
-- of a message's outcome (queued, sent, deferred, failed, suppressed, bounced, the approval
-- states...) becomes an event, delivered to each of the user's enabled webhooks that wants it, as
-- an HTTPS POST signed per the Standard Webhooks specification (webhook-id, webhook-timestamp,
-- webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">), retried with backoff until
-- the receiver answers 2xx; a webhook that keeps failing is disabled, with the reason shown.
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
  enabled boolean not null default true,
  consecutive_failures integer not null default 0,
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
  constraint webhooks_error_length check (char_length(last_error) <= 500 and char_length(disabled_reason) <= 600)
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
  if (select auth.jwt()) ->> 'client_id' is not null then
    perform private.raise_api_error(403, 'first_party_session_required',
      'Only you, signed in yourself, can add, change or remove webhooks; a token issued to an OAuth client (an '
        || 'agent) may read them',
      jsonb_build_object('client_id', (select auth.jwt()) ->> 'client_id'));
  end if;
  if tg_op = 'INSERT' and (select count(*) from public.webhooks w where w.user_id = new.user_id) >= 10 then
    perform private.raise_api_error(409, 'webhook_limit_reached', 'You have 10 webhooks: remove one first',
      jsonb_build_object('limit', 10));
  end if;
  if tg_op = 'UPDATE' and new.enabled and not old.enabled then
    new.consecutive_failures := 0;
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
  if old.secret_id is not null then
    delete from vault.secrets where id = old.secret_id;
  end if;
  return old;
end
$$;

revoke all on function private.delete_webhook_secret() from public, anon, authenticated;

create trigger webhooks_delete_secret
  after delete on public.webhooks
  for each row execute function private.delete_webhook_secret();

-- Store (or replace) a webhook's signing secret (`whsec_` and base64 of at least 24 bytes), for the
-- caller's own webhook and own session only.
create function private.set_webhook_secret(p_webhook_id uuid, p_secret text)
returns void
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_secret_id uuid;
begin
  if (select auth.jwt()) ->> 'client_id' is not null then
    perform private.raise_api_error(403, 'first_party_session_required',
      'Only you, signed in yourself, can set a webhook''s secret', null);
  end if;
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
  v_secret_id := private.put_config_secret(v_secret_id, p_secret, 'webhook_secret_' || p_webhook_id::text,
                                           'Signing secret of mailroom webhook ' || p_webhook_id::text);
  update public.webhooks set secret_id = v_secret_id where id = p_webhook_id;
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

create index webhook_deliveries_due on public.webhook_deliveries (next_attempt_at)
  where delivered_at is null and failed_at is null;
create index webhook_deliveries_webhook on public.webhook_deliveries (webhook_id, created_at desc);
create index webhook_deliveries_user on public.webhook_deliveries (user_id);

alter table public.webhook_deliveries enable row level security;
revoke all on public.webhook_deliveries from anon, authenticated;
grant select on public.webhook_deliveries to authenticated;

create policy "owner reads own webhook deliveries"
  on public.webhook_deliveries for select to authenticated
  using (user_id = (select auth.uid()));

-- The event of a message's new outcome, for each of the owner's enabled webhooks that wants it.
-- Called by the audit log's triggers only when the owner has an enabled webhook (one indexed
-- lookup otherwise); never at the cost of the change itself.
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
exception when others then
  raise warning 'could not queue the webhook event of message %: % (%)', p_row.id, sqlerrm, sqlstate;
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
  elsif new.status = 'sending' then
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
-- ends). With the endpoint and its signing secret, decrypted here for the sender. Server-side only.
create function private.claim_webhook_deliveries(p_limit integer, p_lease interval default interval '60 seconds')
returns table (
  id uuid, webhook_id uuid, url text, secret text, event_type text, payload jsonb, attempts integer
)
language sql
security definer
set search_path = ''
as $$
  with due as (
    select d.id
      from public.webhook_deliveries d
      join public.webhooks w on w.id = d.webhook_id and w.enabled
     where d.delivered_at is null and d.failed_at is null and d.next_attempt_at <= now()
       and (d.leased_until is null or d.leased_until < now())
     order by d.next_attempt_at
     limit greatest(p_limit, 0)
       for update of d skip locked
  ),
  leased as (
    update public.webhook_deliveries d
       set leased_until = now() + p_lease, attempts = d.attempts + 1
      from due
     where d.id = due.id
    returning d.id, d.webhook_id, d.event_type, d.payload, d.attempts
  )
  select l.id, l.webhook_id, w.url, s.decrypted_secret, l.event_type, l.payload, l.attempts
    from leased l
    join public.webhooks w on w.id = l.webhook_id
    left join vault.decrypted_secrets s on s.id = w.secret_id;
$$;

revoke all on function private.claim_webhook_deliveries(integer, interval) from public, anon, authenticated;

-- How the deliveries went: [{id, ok, status?, error?}]. A success resets its webhook's failures;
-- a failure is retried after 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h (Standard Webhooks' schedule)
-- and given up after the 8th attempt; 20 failures in a row disable the webhook, with why.
-- Server-side only.
create function private.record_webhook_deliveries(p_results jsonb)
returns void
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_result jsonb;
  v_delivery record;
  v_error text;
begin
  for v_result in select r from jsonb_array_elements(p_results) r loop
    update public.webhook_deliveries d
       set leased_until = null,
           last_status = (v_result ->> 'status')::integer,
           last_error = left(v_result ->> 'error', 500),
           delivered_at = case when (v_result ->> 'ok')::boolean then now() end,
           failed_at = case when not (v_result ->> 'ok')::boolean and d.attempts >= 8 then now() end,
           next_attempt_at = case when (v_result ->> 'ok')::boolean then d.next_attempt_at
                                  else now() + (array[interval '5 seconds', interval '5 minutes', interval '30 minutes',
                                                      interval '2 hours', interval '5 hours', interval '10 hours',
                                                      interval '10 hours', interval '10 hours'])[least(d.attempts, 8)]
                             end
     where d.id = (v_result ->> 'id')::uuid and d.delivered_at is null
    returning d.webhook_id, d.attempts into v_delivery;
    continue when not found;
    if (v_result ->> 'ok')::boolean then
      update public.webhooks
         set consecutive_failures = 0, last_success_at = now()
       where id = v_delivery.webhook_id;
    else
      v_error := left(coalesce(v_result ->> 'error', 'HTTP ' || (v_result ->> 'status')), 300);
      update public.webhooks w
         set consecutive_failures = w.consecutive_failures + 1, last_failure_at = now(), last_error = v_error,
             enabled = case when w.consecutive_failures + 1 >= 20 then false else w.enabled end,
             disabled_at = case when w.consecutive_failures + 1 >= 20 then now() else w.disabled_at end,
             disabled_reason = case when w.consecutive_failures + 1 >= 20
                                    then 'disabled after 20 failed deliveries in a row; the last: ' || v_error
                                    else w.disabled_reason end
       where w.id = v_delivery.webhook_id;
    end if;
  end loop;
end
$$;

revoke all on function private.record_webhook_deliveries(jsonb) from public, anon, authenticated;

-- Delivered and given-up events are kept 30 days (the log the owner reads), then forgotten.
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
        where coalesce(delivered_at, failed_at) < now() - interval '30 days'
        limit 10000)
    returning 1
  )
  select count(*)::integer from gone;
$$;

revoke all on function private.forget_old_webhook_deliveries() from public, anon, authenticated;
