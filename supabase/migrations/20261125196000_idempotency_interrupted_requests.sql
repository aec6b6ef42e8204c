-- An Idempotency-Key whose request never finished stayed `in_progress` for its whole 24 hours:
-- when a function instance died mid-send (a crash, the platform's wall-clock limit), every
-- retry got a retryable 409 `request_in_progress` for a day, and never learned what happened.
-- A key still in progress 10 minutes after it was taken (far beyond any request's lifetime on
-- the platform) is now reported `interrupted`, with the audit row it started when there is
-- one (id, status, Message-ID): the caller looks that up instead of retrying. The key is not
-- given back: whether the first request sent anything cannot be known for sure (a send-bulk
-- batch may have been queued just before the instance died), so a new send needs a new key.

create or replace function private.begin_idempotent_request(p_key text, p_request_hash text)
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
  elsif v_row.state = 'in_progress' and v_row.created_at < now() - interval '10 minutes' then
    return query
      select 'interrupted'::text, null::integer,
             (select jsonb_build_object('id', a.id, 'status', a.status, 'message_id', a.message_id)
                from public.email_audit_log a
               where a.user_id = v_user_id and a.idempotency_key = p_key
               order by a.created_at desc
               limit 1);
  elsif v_row.state = 'in_progress' then
    return query select 'in_progress'::text, null::integer, null::jsonb;
  else
    return query select 'replay'::text, v_row.response_status, v_row.response_body;
  end if;
end
$$;

revoke all on function private.begin_idempotent_request(text, text) from public, anon, authenticated;
grant execute on function private.begin_idempotent_request(text, text) to authenticated;
