-- Credential guessing and probing limited in the database, per user, over a record that
-- deleting a config cannot reset.
--
-- Why: verify opens a real SMTP login with whatever the config holds, and so does every
-- send. Counted over public.smtp_config_verifications (rows deleted with their config),
-- the verify limit was reset by deleting and recreating the config, and sends through a
-- config with a new password were an unlimited password oracle. Now:
-- * private.credential_events: one row per security-relevant event, per user, with the
--   config id but no foreign key to it, so deleting a config keeps its events. Not
--   exposed; written only by the security definer functions and triggers below.
-- * private.credential_limits: the limits, one row each (operators may tune them with an
--   UPDATE; no API role can read or change them):
--     config_creation  20 configs created per user per hour      429 config_creation_limited
--     password_change  20 passwords stored per user per hour      429 password_change_limited
--     verification     10 verifications per user per minute       429 rate_limited (as before)
--     auth_failure      5 failed SMTP logins per user per hour     429 auth_attempts_exceeded
--   The first is enforced by a trigger on public.user_smtp_configs (the Data API can
--   insert too), the second in private.set_smtp_config_password (the only way to store a
--   password), the last two by the functions the edge functions call before any SMTP I/O.
-- * A login through credentials that have never authenticated since they last changed
--   ("unproven": credentials_verified_at is null) first reserves an `auth_attempt`;
--   unsettled and failed attempts count against auth_failure, so concurrent guesses
--   cannot all slip under the limit; attempts with the same credentials of the same config
--   count once, in flight or failed (one guess, however often it is tried). A success proves the credentials it was made with
--   (credentials_verified_at), and proven credentials keep working whatever the count:
--   a user's working configs are not locked out by guesses made through others. A
--   failure makes credentials unproven again.
-- * Limits are raised as SQLSTATE 'PGRST' with the status and Retry-After in the detail,
--   PostgREST's convention for a custom response: the Data API answers 429 with
--   Retry-After, and the edge functions map the same error to their ApiError.

create table private.credential_events (
  id bigint generated always as identity primary key,
  user_id uuid not null references auth.users (id) on delete cascade,
  kind text not null,
  -- No foreign key: the events of a deleted config keep counting.
  config_id uuid,
  -- For auth attempts: the config's credentials_changed_at when the attempt started, so
  -- that a success proves only the credentials it was made with.
  credentials_as_of timestamptz,
  created_at timestamptz not null default now(),
  constraint credential_events_kind check (
    kind in ('config_created', 'password_set', 'verification',
             'auth_attempt', 'auth_succeeded', 'auth_failed', 'auth_unanswered')
  )
);

comment on table private.credential_events is
  'Per-user security events (config creation, password changes, verifications, SMTP logins) that limits count.';

create index credential_events_user_kind_created on private.credential_events (user_id, kind, created_at);
create index credential_events_pending_attempts on private.credential_events (config_id, created_at)
  where kind = 'auth_attempt';

alter table private.credential_events enable row level security;
revoke all on private.credential_events from public, anon, authenticated;
-- No policies: only the security definer functions below read or write it.

create table private.credential_limits (
  name text primary key,
  -- Event kinds that count against this limit.
  counts text[] not null,
  max_events integer not null,
  per interval not null,
  -- The API's error code when the limit is reached (status 429).
  error_code text not null,
  -- What is counted, for the error message: "At most 20 <what> per hour".
  what text not null,
  constraint credential_limits_max_events check (max_events > 0),
  constraint credential_limits_per check (per > interval '0' and per <= interval '1 day')
);

comment on table private.credential_limits is
  'Per-user limits counted over private.credential_events; tune with UPDATE (no migration needed).';

insert into private.credential_limits (name, counts, max_events, per, error_code, what) values
  ('config_creation', '{config_created}', 20, interval '1 hour', 'config_creation_limited', 'SMTP configs created'),
  ('password_change', '{password_set}', 20, interval '1 hour', 'password_change_limited', 'SMTP passwords stored'),
  ('verification', '{verification}', 10, interval '1 minute', 'rate_limited', 'SMTP config verifications'),
  ('auth_failure', '{auth_attempt,auth_failed}', 5, interval '1 hour', 'auth_attempts_exceeded',
   'failed SMTP logins with unproven credentials');

alter table private.credential_limits enable row level security;
revoke all on private.credential_limits from public, anon, authenticated;

-- Refuse with 429 when `p_user_id` has reached limit `p_limit` (or the lower `p_max`).
-- Takes the user's event lock, held to the end of the transaction, so that the event the
-- caller records next is counted by any concurrent check.
create function private.enforce_credential_limit(p_user_id uuid, p_limit text, p_max integer default null)
returns void
language plpgsql
set search_path = ''
as $$
declare
  v_limit private.credential_limits;
  v_max integer;
  v_count integer;
  v_frees_at timestamptz;
  v_retry integer;
  v_per text;
begin
  select * into strict v_limit from private.credential_limits l where l.name = p_limit;
  v_max := least(v_limit.max_events, coalesce(p_max, v_limit.max_events));

  perform pg_advisory_xact_lock(hashtextextended('mailroom.credential_events:' || p_user_id::text, 0));
  -- A login is a guess of one set of credentials: logins with the same credentials of the
  -- same config (parallel sends, an agent retrying) count once, in flight or failed.
  select count(distinct case
           when e.kind in ('auth_attempt', 'auth_failed')
             then e.config_id::text || '/' || coalesce(e.credentials_as_of::text, '')
           else e.id::text
         end)::integer into v_count
    from private.credential_events e
   where e.user_id = p_user_id and e.kind = any (v_limit.counts) and e.created_at > now() - v_limit.per;
  if v_count < v_max then
    return;
  end if;

  -- The event whose expiry brings the count back under the limit.
  select e.created_at into v_frees_at
    from private.credential_events e
   where e.user_id = p_user_id and e.kind = any (v_limit.counts) and e.created_at > now() - v_limit.per
   order by e.created_at
  offset v_count - v_max
   limit 1;
  -- clock_timestamp(), not now(): this transaction may have waited on the lock.
  v_retry := least(
    greatest(ceil(extract(epoch from (v_frees_at + v_limit.per - clock_timestamp()))), 1),
    extract(epoch from v_limit.per)
  )::integer;
  v_per := case v_limit.per
    when interval '1 minute' then 'minute'
    when interval '1 hour' then 'hour'
    when interval '1 day' then 'day'
    else v_limit.per::text
  end;

  raise sqlstate 'PGRST' using
    message = pg_catalog.json_build_object(
      'code', v_limit.error_code,
      'message', pg_catalog.format('At most %s %s per %s; retry in %s s', v_max, v_limit.what, v_per, v_retry)
    )::text,
    detail = pg_catalog.json_build_object(
      'status', 429,
      'headers', pg_catalog.json_build_object('Retry-After', v_retry::text),
      -- Not read by PostgREST; the edge functions return it as the error's details.
      'details', pg_catalog.json_build_object('limit', v_max, 'per', v_per, 'retry_after_seconds', v_retry)
    )::text;
end
$$;

-- Record one event; events older than a day past the longest window go at the same time.
create function private.record_credential_event(
  p_user_id uuid,
  p_kind text,
  p_config_id uuid,
  p_credentials_as_of timestamptz default null
) returns void
language plpgsql
set search_path = ''
as $$
begin
  delete from private.credential_events e
   where e.user_id = p_user_id
     and e.created_at < now() - interval '1 day' - (select max(l.per) from private.credential_limits l);
  insert into private.credential_events (user_id, kind, config_id, credentials_as_of)
  values (p_user_id, p_kind, p_config_id, p_credentials_as_of);
end
$$;

-- Config creation: every insert, through the API or the Data API. ---------------------------
create function private.limit_smtp_config_creation() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform private.enforce_credential_limit(new.user_id, 'config_creation');
  perform private.record_credential_event(new.user_id, 'config_created', new.id);
  return new;
end
$$;

create trigger user_smtp_configs_limit_creation
  before insert on public.user_smtp_configs
  for each row execute function private.limit_smtp_config_creation();

-- Password changes: the only way a password gets stored. -------------------------------------
create or replace function private.set_smtp_config_password(p_config_id uuid, p_password text)
returns void
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_user_id uuid := (select auth.uid());
  v_secret_id uuid;
begin
  if p_password is null or p_password = '' then
    raise exception 'password must not be empty' using errcode = '22023';
  end if;

  select c.password_secret_id into v_secret_id
    from public.user_smtp_configs c
   where c.id = p_config_id and c.user_id = v_user_id
     for update;
  if not found then
    raise exception 'smtp config not found' using errcode = 'P0002';
  end if;

  perform private.enforce_credential_limit(v_user_id, 'password_change');
  perform private.record_credential_event(v_user_id, 'password_set', p_config_id);

  if v_secret_id is null then
    v_secret_id := vault.create_secret(
      p_password,
      'smtp_config_password_' || p_config_id::text,
      'SMTP password of mailroom config ' || p_config_id::text
    );
    -- The new secret id makes the credentials unproven (trigger).
    update public.user_smtp_configs set password_secret_id = v_secret_id where id = p_config_id;
  else
    perform vault.update_secret(v_secret_id, p_password);
    update public.user_smtp_configs
       set credentials_changed_at = clock_timestamp(), credentials_verified_at = null
     where id = p_config_id;
  end if;
end
$$;

-- Verification: the per-user limit over events, then the pending history row. --------------
create function private.begin_smtp_verification(p_config_id uuid, p_max_per_minute integer default null)
returns uuid
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_user_id uuid := (select auth.uid());
  v_verification_id uuid;
begin
  perform 1 from public.user_smtp_configs c where c.id = p_config_id and c.user_id = v_user_id;
  if not found then
    raise exception 'smtp config not found' using errcode = 'P0002';
  end if;

  perform private.enforce_credential_limit(v_user_id, 'verification', p_max_per_minute);
  perform private.record_credential_event(v_user_id, 'verification', p_config_id);

  insert into public.smtp_config_verifications (user_id, config_id, ok, error_class)
  values (v_user_id, p_config_id, false, 'pending')
  returning id into v_verification_id;
  return v_verification_id;
end
$$;

-- Verifications are started only through the function above now.
drop policy "owner can start verifications of own configs" on public.smtp_config_verifications;
revoke insert on public.smtp_config_verifications from authenticated;

-- SMTP logins: before the session, and its outcome. ------------------------------------------
-- Call in the transaction that loads the credentials, before loading them: the config row
-- stays share-locked until commit, so the credentials cannot change in between. Returns the
-- reserved attempt's id, to settle exactly that attempt later (null: nothing was reserved).
create function private.begin_smtp_authentication(p_config_id uuid)
returns bigint
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_user_id uuid := (select auth.uid());
  v_username text;
  v_secret_id uuid;
  v_verified_at timestamptz;
  v_changed_at timestamptz;
  v_attempt_id bigint;
begin
  select c.username, c.password_secret_id, c.credentials_verified_at, c.credentials_changed_at
    into v_username, v_secret_id, v_verified_at, v_changed_at
    from public.user_smtp_configs c
   where c.id = p_config_id and c.user_id = v_user_id
     for share;
  if not found then
    raise exception 'smtp config not found' using errcode = 'P0002';
  end if;
  -- No login (or none possible without a password), or proven credentials: nothing to guess.
  if v_username is null or v_secret_id is null or v_verified_at is not null then
    return null;
  end if;

  -- Credentials already being tried, or already refused, within the window are no new guess.
  if not exists (
    select 1 from private.credential_events e
     where e.user_id = v_user_id and e.config_id = p_config_id and e.credentials_as_of = v_changed_at
       and e.kind in ('auth_attempt', 'auth_failed') and e.created_at > now() - interval '1 hour'
  ) then
    perform private.enforce_credential_limit(v_user_id, 'auth_failure');
  else
    perform pg_advisory_xact_lock(hashtextextended('mailroom.credential_events:' || v_user_id::text, 0));
  end if;
  perform private.record_credential_event(v_user_id, 'auth_attempt', p_config_id, v_changed_at);
  select max(e.id) into v_attempt_id
    from private.credential_events e
   where e.user_id = v_user_id and e.config_id = p_config_id and e.kind = 'auth_attempt';
  return v_attempt_id;
end
$$;

-- Settle the login attempt `p_attempt_id` (what begin_smtp_authentication returned) through
-- a config: `succeeded` proves the credentials that attempt was made with (unless they
-- changed since), `failed` counts (without an attempt, e.g. for proven credentials, as a
-- failure of the current credentials, which become unproven), `unanswered` (the session
-- ended before the server judged the login) frees the attempt. Only the session's own
-- attempt is ever settled.
create function private.settle_smtp_authentication(p_config_id uuid, p_outcome text, p_attempt_id bigint default null)
returns void
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_user_id uuid := (select auth.uid());
  v_attempt_id bigint;
  v_as_of timestamptz;
begin
  if p_outcome is null or p_outcome not in ('succeeded', 'failed', 'unanswered') then
    raise exception 'outcome must be succeeded, failed or unanswered' using errcode = '22023';
  end if;
  if v_user_id is null then
    raise exception 'smtp config not found' using errcode = 'P0002';
  end if;

  -- Events, not the config: a config deleted while its session ran still gets its attempt settled.
  select e.id, e.credentials_as_of into v_attempt_id, v_as_of
    from private.credential_events e
   where e.id = p_attempt_id and e.config_id = p_config_id and e.user_id = v_user_id and e.kind = 'auth_attempt'
     for update;

  if v_attempt_id is not null then
    update private.credential_events set kind = 'auth_' || p_outcome where id = v_attempt_id;
  elsif p_outcome = 'failed' then
    perform private.record_credential_event(v_user_id, 'auth_failed', p_config_id,
      (select c.credentials_changed_at from public.user_smtp_configs c
        where c.id = p_config_id and c.user_id = v_user_id));
  end if;

  if p_outcome = 'succeeded' and v_attempt_id is not null then
    update public.user_smtp_configs c
       set credentials_verified_at = now()
     where c.id = p_config_id and c.user_id = v_user_id and c.credentials_changed_at = v_as_of;
  elsif p_outcome = 'failed' then
    update public.user_smtp_configs c
       set credentials_verified_at = null
     where c.id = p_config_id and c.user_id = v_user_id and c.credentials_verified_at is not null;
  end if;
end
$$;

revoke all on function private.enforce_credential_limit(uuid, text, integer) from public, anon, authenticated;
revoke all on function private.record_credential_event(uuid, text, uuid, timestamptz) from public, anon, authenticated;
revoke all on function private.limit_smtp_config_creation() from public, anon, authenticated;
revoke all on function private.set_smtp_config_password(uuid, text) from public, anon, authenticated;
revoke all on function private.begin_smtp_verification(uuid, integer) from public, anon, authenticated;
revoke all on function private.begin_smtp_authentication(uuid) from public, anon, authenticated;
revoke all on function private.settle_smtp_authentication(uuid, text, bigint) from public, anon, authenticated;
grant execute on function private.set_smtp_config_password(uuid, text) to authenticated;
grant execute on function private.begin_smtp_verification(uuid, integer) to authenticated;
grant execute on function private.begin_smtp_authentication(uuid) to authenticated;
grant execute on function private.settle_smtp_authentication(uuid, text, bigint) to authenticated;
