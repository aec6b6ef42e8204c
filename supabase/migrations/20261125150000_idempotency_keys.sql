-- Idempotency keys for sends: a client (an agent retrying after a timeout) sends the same
-- `Idempotency-Key` and gets the first response again instead of a second email.
--
-- Why this shape:
-- * Per user, kept 24 h, keyed (user_id, key). The request is fingerprinted (sha256 of its
--   JSON): the same key with another body is refused, as Stripe and Resend do.
-- * A key is taken (`in_progress`) in its own committed transaction before anything is sent,
--   so a concurrent request with the same key sees it and is refused (409) instead of
--   sending twice. The response is stored once the send is audited (200 or 502); a request
--   refused before any send (validation, limits) releases its key so a retry runs afresh.
-- * Not exposed: only the owner-checked functions below touch the table.

create table private.idempotency_keys (
  user_id uuid not null references auth.users (id) on delete cascade,
  key text not null,
  request_hash text not null,
  state text not null default 'in_progress',
  response_status integer,
  response_body jsonb,
  created_at timestamptz not null default now(),
  expires_at timestamptz not null default now() + interval '24 hours',
  primary key (user_id, key),
  constraint idempotency_keys_key_shape check (key ~ '^[\x21-\x7e]{1,255}$'),
  constraint idempotency_keys_state check (state in ('in_progress', 'done')),
  constraint idempotency_keys_done check (state = 'in_progress' or response_status is not null)
);

comment on table private.idempotency_keys is
  'Idempotency-Key of send requests per user (24 h): fingerprint, state and the first response.';

create index idempotency_keys_expiry on private.idempotency_keys (expires_at);

alter table private.idempotency_keys enable row level security;
revoke all on private.idempotency_keys from public, anon, authenticated;

-- Take a key for a request, or say why not. Returns the state the caller acts on:
-- 'new' (go ahead), 'replay' (with the stored response), 'in_progress' (409) or 'mismatch'
-- (the key was used with another request: 422).
create function private.begin_idempotent_request(p_key text, p_request_hash text)
returns table (outcome text, response_status integer, response_body jsonb)
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_user_id uuid := (select auth.uid());
  v_row private.idempotency_keys;
begin
  if v_user_id is null then
    raise exception 'not signed in' using errcode = '42501';
  end if;
  delete from private.idempotency_keys k where k.user_id = v_user_id and k.expires_at < now();

  insert into private.idempotency_keys (user_id, key, request_hash)
  values (v_user_id, p_key, p_request_hash)
  on conflict on constraint idempotency_keys_pkey do nothing;
  if found then
    return query select 'new'::text, null::integer, null::jsonb;
    return;
  end if;

  select * into v_row from private.idempotency_keys k where k.user_id = v_user_id and k.key = p_key;
  if v_row.request_hash <> p_request_hash then
    return query select 'mismatch'::text, null::integer, null::jsonb;
  elsif v_row.state = 'in_progress' then
    return query select 'in_progress'::text, null::integer, null::jsonb;
  else
    return query select 'replay'::text, v_row.response_status, v_row.response_body;
  end if;
end
$$;

-- Store the response of a request that was sent (and audited); it is replayed from now on.
create function private.finish_idempotent_request(p_key text, p_status integer, p_body jsonb)
returns void
language sql
security definer
set search_path = ''
as $$
  update private.idempotency_keys k
     set state = 'done', response_status = p_status, response_body = p_body
   where k.user_id = (select auth.uid()) and k.key = p_key and k.state = 'in_progress'
$$;

-- Give a key back: the request was refused before anything was sent, so a retry runs afresh.
create function private.release_idempotent_request(p_key text)
returns void
language sql
security definer
set search_path = ''
as $$
  delete from private.idempotency_keys k
   where k.user_id = (select auth.uid()) and k.key = p_key and k.state = 'in_progress'
$$;

revoke all on function private.begin_idempotent_request(text, text) from public, anon, authenticated;
revoke all on function private.finish_idempotent_request(text, integer, jsonb) from public, anon, authenticated;
revoke all on function private.release_idempotent_request(text) from public, anon, authenticated;
grant execute on function private.begin_idempotent_request(text, text) to authenticated;
grant execute on function private.finish_idempotent_request(text, integer, jsonb) to authenticated;
grant execute on function private.release_idempotent_request(text) to authenticated;
