-- Human oversight, part one: guardrails every send passes, and a stop button.
--
-- Guardrails are kept per account (config_id null) and per config, and both hold for a send
-- through the config: both deny lists, both allow lists (a recipient must pass each that is
-- set), the lower recipient cap, a stop on either. A config's guardrails can so only add to
-- the account's, never relax them. Every send path checks them in its own transaction
-- through private.check_send_guardrails (send-email, scheduled sends, send-bulk at accept, and
-- the outbox worker again before it builds each message), and the worker's in-flight mark
-- refuses a stopped config's rows, so a draining batch stops between two messages.
--
-- Only the owner's first-party session may loosen them or lift a stop: a token with a
-- `client_id` claim comes from an OAuth client (an agent) and may only tighten. The table has
-- no write grants: changes go through the functions below, which record who made them in
-- public.oversight_events (owner-readable, written by nobody else).

-- A recipient pattern: an address (`ana@example.com`), a domain (`example.com`), or every
-- subdomain of a domain (`*.example.com`, not the domain itself). Lower case, the domain in
-- ASCII (an IDN as punycode: the functions write patterns as mail/addresses.ts does addresses).
create function private.recipient_pattern_valid(p_pattern text)
returns boolean
language sql
immutable
set search_path = ''
as $$
  select p_pattern is not null
     and char_length(p_pattern) <= 320
     and p_pattern = lower(p_pattern)
     and (p_pattern ~ '^[^@[:space:][:cntrl:]]+@([a-z0-9_-]+\.)*[a-z0-9_-]+$'
          or p_pattern ~ '^(\*\.)?([a-z0-9_-]+\.)+[a-z0-9_-]+$')
$$;

create function private.recipient_patterns_valid(p_patterns text[])
returns boolean
language sql
immutable
set search_path = ''
as $$
  select p_patterns is null
      or (cardinality(p_patterns) <= 1000
          and not exists (select 1 from unnest(p_patterns) p where not private.recipient_pattern_valid(p)))
$$;

create table public.sending_guardrails (
  id uuid primary key default gen_random_uuid(),
  user_id uuid not null default auth.uid() references auth.users (id) on delete cascade,
  -- null: the account's own guardrails, which every config inherits.
  config_id uuid references public.user_smtp_configs (id) on delete cascade,
  -- null: no allow list (every recipient not denied may be mailed).
  allow_recipients text[],
  deny_recipients text[] not null default '{}',
  -- null: no cap of its own.
  max_recipients_per_request integer,
  stopped_at timestamptz,
  stop_reason text,
  updated_at timestamptz not null default now(),
  constraint sending_guardrails_scope unique nulls not distinct (user_id, config_id),
  constraint sending_guardrails_allow check (private.recipient_patterns_valid(allow_recipients)),
  constraint sending_guardrails_deny check (private.recipient_patterns_valid(deny_recipients)),
  constraint sending_guardrails_cap check (max_recipients_per_request between 1 and 100000),
  constraint sending_guardrails_stop_reason check (char_length(stop_reason) <= 500)
);

comment on table public.sending_guardrails is
  'What the owner allows every send to do (per account: config_id null; per config), and the stop button. '
  'Changed only through the oversight function: agents (tokens with client_id) may tighten, never loosen.';

create index sending_guardrails_config on public.sending_guardrails (config_id) where config_id is not null;

alter table public.sending_guardrails enable row level security;
revoke all on public.sending_guardrails from anon, authenticated;
grant select on public.sending_guardrails to authenticated;

create policy "owner can read own guardrails"
  on public.sending_guardrails for select to authenticated
  using (user_id = (select auth.uid()));

-- Who did what to the owner's oversight settings, and when.
create table public.oversight_events (
  id bigint generated always as identity primary key,
  user_id uuid not null references auth.users (id) on delete cascade,
  -- Kept as it was when the config is deleted (no foreign key): the record is never rewritten.
  config_id uuid,
  action text not null,
  -- The session that acted: subject, session id, OAuth client (an agent) and assurance level.
  actor jsonb not null,
  details jsonb not null default '{}',
  created_at timestamptz not null default now(),
  constraint oversight_events_action check (
    action in ('guardrails_changed', 'sending_stopped', 'sending_resumed', 'guardrails_removed')
  )
);

comment on table public.oversight_events is
  'Every guardrail change, stop and resume, with the session that made it. Readable by the owner, written by nobody '
  'through the Data API.';

create index oversight_events_user_created on public.oversight_events (user_id, created_at desc, id desc);

alter table public.oversight_events enable row level security;
revoke all on public.oversight_events from anon, authenticated;
grant select on public.oversight_events to authenticated;

create policy "owner can read own oversight events"
  on public.oversight_events for select to authenticated
  using (user_id = (select auth.uid()));

-- The calling session as an oversight event records it.
create function private.oversight_actor()
returns jsonb
language sql
stable
set search_path = ''
as $$
  select jsonb_strip_nulls(jsonb_build_object(
    'user_id', auth.uid(),
    'session_id', auth.jwt() ->> 'session_id',
    'client_id', auth.jwt() ->> 'client_id',
    'aal', auth.jwt() ->> 'aal'
  ))
$$;

-- A PostgREST-style error (see send_budgets): the functions turn it into the HTTP answer.
create function private.raise_api_error(p_status integer, p_code text, p_message text, p_details jsonb default '{}')
returns void
language plpgsql
set search_path = ''
as $$
begin
  raise sqlstate 'PGRST' using
    message = pg_catalog.json_build_object('code', p_code, 'message', p_message)::text,
    detail = pg_catalog.json_build_object('status', p_status, 'details', p_details)::text;
end
$$;

-- The caller's own config, or a 404 that reveals nothing about other users' configs.
create function private.own_config_for_oversight(p_config_id uuid)
returns void
language plpgsql
stable
set search_path = ''
as $$
begin
  if p_config_id is not null and not exists (
    select 1 from public.user_smtp_configs c where c.id = p_config_id and c.user_id = auth.uid()
  ) then
    perform private.raise_api_error(404, 'config_not_found', 'No SMTP config with that id');
  end if;
end
$$;

-- Only a first-party session (no client_id) may loosen: an agent gets 403.
create function private.require_first_party(p_what text)
returns void
language plpgsql
stable
set search_path = ''
as $$
begin
  if auth.jwt() ->> 'client_id' is not null then
    perform private.raise_api_error(
      403, 'first_party_session_required',
      p_what || ' needs the account owner''s own session; a token issued to an OAuth client (an agent, client_id '
        || (auth.jwt() ->> 'client_id') || ') may only tighten guardrails',
      jsonb_build_object('client_id', auth.jwt() ->> 'client_id'));
  end if;
end
$$;

-- Replace the guardrails of the account (p_config_id null) or of one config. An agent may
-- only tighten.
create function private.set_sending_guardrails(
  p_config_id uuid,
  p_allow_recipients text[],
  p_deny_recipients text[],
  p_max_recipients_per_request integer
)
returns public.sending_guardrails
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_user uuid := auth.uid();
  v_old public.sending_guardrails;
  v_new public.sending_guardrails;
  v_allow text[] := (select array_agg(distinct p order by p) from unnest(p_allow_recipients) p);
  v_deny text[] := coalesce((select array_agg(distinct p order by p) from unnest(p_deny_recipients) p), '{}');
begin
  if v_user is null then
    perform private.raise_api_error(401, 'unauthorized', 'Sign in first');
  end if;
  perform private.own_config_for_oversight(p_config_id);
  if p_allow_recipients is not null and v_allow is null then
    v_allow := '{}';
  end if;
  select * into v_old from public.sending_guardrails g
   where g.user_id = v_user and g.config_id is not distinct from p_config_id for update;
  -- The account's guardrails and a config's both hold (see private.guardrail_refusal), so
  -- each scope is compared with what it had: keep every denied pattern, add no allowed one
  -- (nor drop the allow list), keep or lower the cap.
  if not (v_deny @> coalesce(v_old.deny_recipients, '{}'))
     or (v_old.allow_recipients is not null and (v_allow is null or not (v_old.allow_recipients @> v_allow)))
     or (v_old.max_recipients_per_request is not null
         and (p_max_recipients_per_request is null or p_max_recipients_per_request > v_old.max_recipients_per_request)) then
    perform private.require_first_party('Loosening guardrails');
  end if;
  insert into public.sending_guardrails as g
    (user_id, config_id, allow_recipients, deny_recipients, max_recipients_per_request)
  values (v_user, p_config_id, v_allow, v_deny, p_max_recipients_per_request)
  on conflict (user_id, config_id) do update
    set allow_recipients = excluded.allow_recipients,
        deny_recipients = excluded.deny_recipients,
        max_recipients_per_request = excluded.max_recipients_per_request,
        updated_at = now()
  returning * into v_new;
  insert into public.oversight_events (user_id, config_id, action, actor, details)
  values (v_user, p_config_id, 'guardrails_changed', private.oversight_actor(), jsonb_build_object(
    'before', case when v_old.user_id is null then null else jsonb_build_object(
      'allow_recipients', v_old.allow_recipients, 'deny_recipients', v_old.deny_recipients,
      'max_recipients_per_request', v_old.max_recipients_per_request) end,
    'after', jsonb_build_object(
      'allow_recipients', v_new.allow_recipients, 'deny_recipients', v_new.deny_recipients,
      'max_recipients_per_request', v_new.max_recipients_per_request)));
  return v_new;
end
$$;

-- Press the stop button for the account (p_config_id null) or one config: nothing leaves
-- until it is lifted; queued and scheduled mail waits. Anyone signed in as the owner may press it.
create function private.stop_sending(p_config_id uuid, p_reason text)
returns public.sending_guardrails
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_user uuid := auth.uid();
  v_row public.sending_guardrails;
begin
  if v_user is null then
    perform private.raise_api_error(401, 'unauthorized', 'Sign in first');
  end if;
  perform private.own_config_for_oversight(p_config_id);
  insert into public.sending_guardrails as g (user_id, config_id, stopped_at, stop_reason)
  values (v_user, p_config_id, now(), left(p_reason, 500))
  on conflict (user_id, config_id) do update
    set stopped_at = coalesce(g.stopped_at, now()), stop_reason = coalesce(excluded.stop_reason, g.stop_reason),
        updated_at = now()
  returning * into v_row;
  insert into public.oversight_events (user_id, config_id, action, actor, details)
  values (v_user, p_config_id, 'sending_stopped', private.oversight_actor(),
          jsonb_strip_nulls(jsonb_build_object('reason', v_row.stop_reason)));
  return v_row;
end
$$;

-- Lift a stop: only the owner's first-party session.
create function private.resume_sending(p_config_id uuid)
returns public.sending_guardrails
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_user uuid := auth.uid();
  v_row public.sending_guardrails;
begin
  if v_user is null then
    perform private.raise_api_error(401, 'unauthorized', 'Sign in first');
  end if;
  perform private.own_config_for_oversight(p_config_id);
  perform private.require_first_party('Lifting the stop');
  update public.sending_guardrails g set stopped_at = null, stop_reason = null, updated_at = now()
   where g.user_id = v_user and g.config_id is not distinct from p_config_id and g.stopped_at is not null
  returning * into v_row;
  if found then
    insert into public.oversight_events (user_id, config_id, action, actor)
    values (v_user, p_config_id, 'sending_resumed', private.oversight_actor());
    -- Mail the stop held back is due now rather than at its next look.
    update public.email_audit_log a set next_attempt_at = greatest(coalesce(a.scheduled_at, now()), now())
     where a.user_id = v_user and a.status in ('queued', 'scheduled') and a.lease_until is null
       and (p_config_id is null or a.config_id = p_config_id)
       and a.next_attempt_at > now() and a.next_attempt_at < 'infinity'
       and a.error_class = 'sending_stopped';
  end if;
  return v_row;
end
$$;

-- Deleting a config ends its own guardrails and stop: recorded, and never by an agent (which
-- could otherwise lift a stop or drop a deny list by deleting the config and making it again).
create function private.guard_config_deletion() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_row public.sending_guardrails;
begin
  select * into v_row from public.sending_guardrails g where g.config_id = old.id;
  if found and (v_row.stopped_at is not null or v_row.deny_recipients <> '{}' or v_row.allow_recipients is not null
                or v_row.max_recipients_per_request is not null) then
    perform private.require_first_party('Deleting a config that has guardrails or a stop');
    insert into public.oversight_events (user_id, config_id, action, actor, details)
    values (old.user_id, old.id, 'guardrails_removed', private.oversight_actor(),
            jsonb_strip_nulls(jsonb_build_object('config', old.name, 'stopped_at', v_row.stopped_at,
              'allow_recipients', v_row.allow_recipients, 'deny_recipients', v_row.deny_recipients,
              'max_recipients_per_request', v_row.max_recipients_per_request)));
  end if;
  return old;
end
$$;

create trigger user_smtp_configs_guard_deletion
  before delete on public.user_smtp_configs
  for each row execute function private.guard_config_deletion();

-- Whether the account or the config is stopped (the worker's in-flight mark asks too).
create function private.sending_stopped(p_user_id uuid, p_config_id uuid)
returns boolean
language sql
stable
set search_path = ''
as $$
  select exists (
    select 1 from public.sending_guardrails g
     where g.user_id = p_user_id and (g.config_id is null or g.config_id = p_config_id) and g.stopped_at is not null
  )
$$;

-- Why the owner's guardrails refuse a send (null when they allow it), as an API error
-- {status, code, message, details}: a stop (409 sending_stopped), a denied recipient or one
-- outside an allow list (422 recipient_denied, naming them), more recipients than a cap (422
-- recipient_cap_exceeded). The account's guardrails and the config's both hold: both deny
-- lists, both allow lists (a recipient must pass each that is set), the lower cap. With no
-- recipients given, only the stop is checked.
--
-- p_keys are the recipients as the patterns are written (lower case, the domain in ASCII:
-- the functions pass mail/addresses.ts recipientKey), p_recipients as the message names them.
-- Matching is by set (each recipient's address, the address without a +tag, its domain and
-- `*.` and each parent domain, joined against the patterns), so 10,000 recipients against
-- 1,000 patterns cost one hash join, not ten million comparisons.
create function private.guardrail_refusal(p_config_id uuid, p_recipients text[], p_keys text[] default null)
returns jsonb
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  v_user uuid := auth.uid();
  v_account public.sending_guardrails;
  v_config public.sending_guardrails;
  v_stop public.sending_guardrails;
  v_cap integer;
  v_denied text[];
begin
  if v_user is null then
    return jsonb_build_object('status', 401, 'code', 'unauthorized', 'message', 'Sign in first');
  end if;
  select * into v_account from public.sending_guardrails g where g.user_id = v_user and g.config_id is null;
  if p_config_id is not null then
    select * into v_config from public.sending_guardrails g where g.user_id = v_user and g.config_id = p_config_id;
  end if;
  v_stop := case when v_account.stopped_at is not null then v_account else v_config end;
  if v_stop.stopped_at is not null then
    return jsonb_build_object(
      'status', 409, 'code', 'sending_stopped',
      'message', case when v_stop.config_id is null then 'Sending is stopped for this account'
                      else 'Sending is stopped for this config' end
        || coalesce(' (' || v_stop.stop_reason || ')', '')
        || '; nothing leaves until the account owner lifts the stop, in their own session',
      'details', jsonb_strip_nulls(jsonb_build_object(
        'scope', case when v_stop.config_id is null then 'account' else 'config' end,
        'config_id', v_stop.config_id, 'stopped_at', v_stop.stopped_at, 'reason', v_stop.stop_reason)));
  end if;
  if cardinality(p_recipients) is null or cardinality(p_recipients) = 0 then
    return null;
  end if;
  v_cap := least(v_config.max_recipients_per_request, v_account.max_recipients_per_request);
  if cardinality(p_recipients) > v_cap then
    return jsonb_build_object(
      'status', 422, 'code', 'recipient_cap_exceeded',
      'message', format('The guardrails allow at most %s recipients per request; this one has %s',
                        v_cap, cardinality(p_recipients)),
      'details', jsonb_build_object('limit', v_cap, 'count', cardinality(p_recipients)));
  end if;
  if coalesce(cardinality(v_account.deny_recipients), 0) + coalesce(cardinality(v_config.deny_recipients), 0) = 0
     and v_account.allow_recipients is null and v_config.allow_recipients is null then
    return null;
  end if;

  with recipients as (
    select u.n, u.recipient, lower(coalesce(p_keys[u.n], u.recipient)) as address
      from unnest(p_recipients) with ordinality as u (recipient, n)
  ), parts as (
    select r.n, r.address, split_part(r.address, '@', -1) as domain,
           left(r.address, length(r.address) - length(split_part(r.address, '@', -1)) - 1) as local
      from recipients r
  ), keys as (
    select p.n, p.address as key from parts p
    union all
    select p.n, regexp_replace(p.local, '\+.*$', '') || '@' || p.domain from parts p where p.local like '%+%'
    union all
    select p.n, p.domain from parts p
    union all
    -- *.corp.example matches mail.corp.example and a.b.corp.example, not corp.example itself.
    select p.n, '*.' || array_to_string(labels[i:], '.')
      from parts p, lateral string_to_array(p.domain, '.') labels, generate_subscripts(labels, 1) i
     where i > 1
  ), denied as (
    select distinct k.n from keys k
      join (select unnest(v_account.deny_recipients) union select unnest(v_config.deny_recipients)) d (pattern)
        on d.pattern = k.key
  ), allowed_by_account as (
    select distinct k.n from keys k join unnest(v_account.allow_recipients) a (pattern) on a.pattern = k.key
  ), allowed_by_config as (
    select distinct k.n from keys k join unnest(v_config.allow_recipients) a (pattern) on a.pattern = k.key
  )
  select array_agg(r.recipient order by r.n) into v_denied
    from recipients r
   where r.n in (select n from denied)
      or (v_account.allow_recipients is not null and r.n not in (select n from allowed_by_account))
      or (v_config.allow_recipients is not null and r.n not in (select n from allowed_by_config));

  if v_denied is not null then
    return jsonb_build_object(
      'status', 422, 'code', 'recipient_denied',
      'message', format('The guardrails do not allow mail to %s%s', array_to_string(v_denied[1:5], ', '),
                        case when cardinality(v_denied) > 5 then format(' and %s more', cardinality(v_denied) - 5)
                             else '' end)
        || '; nothing was sent or queued',
      'details', jsonb_build_object('recipients', to_jsonb(v_denied[1:100]), 'count', cardinality(v_denied)));
  end if;
  return null;
end
$$;

-- The same, raised as the HTTP answer (send-email, scheduled sends, send-bulk at accept).
create function private.check_send_guardrails(p_config_id uuid, p_recipients text[], p_keys text[] default null)
returns void
language plpgsql
stable
set search_path = ''
as $$
declare
  v_refusal jsonb := private.guardrail_refusal(p_config_id, p_recipients, p_keys);
begin
  if v_refusal is not null then
    perform private.raise_api_error((v_refusal ->> 'status')::integer, v_refusal ->> 'code', v_refusal ->> 'message',
                                    coalesce(v_refusal -> 'details', '{}'));
  end if;
end
$$;

-- The in-flight mark refuses a stopped account's or config's rows: the worker puts them back.
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
   where a.id = p_audit_id and a.leased_by = p_worker and a.status in ('queued', 'scheduled')
     and not private.sending_stopped(a.user_id, a.config_id);
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
     and not private.sending_stopped(a.user_id, a.config_id)
  returning a.id;
$$;

revoke all on function private.recipient_pattern_valid(text), private.recipient_patterns_valid(text[]),
  private.oversight_actor(), private.raise_api_error(integer, text, text, jsonb),
  private.own_config_for_oversight(uuid), private.require_first_party(text),
  private.set_sending_guardrails(uuid, text[], text[], integer), private.stop_sending(uuid, text),
  private.resume_sending(uuid), private.sending_stopped(uuid, uuid), private.check_send_guardrails(uuid, text[], text[]),
  private.guardrail_refusal(uuid, text[], text[]), private.guard_config_deletion()
  from public, anon, authenticated;
-- What a user's session calls; the rest runs inside them.
grant execute on function private.set_sending_guardrails(uuid, text[], text[], integer),
  private.stop_sending(uuid, text), private.resume_sending(uuid), private.check_send_guardrails(uuid, text[], text[]),
  private.guardrail_refusal(uuid, text[], text[]), private.raise_api_error(integer, text, text, jsonb)
  to authenticated;
