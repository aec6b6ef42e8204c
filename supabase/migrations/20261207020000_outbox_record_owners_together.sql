-- The worker records the outcomes of several owners' messages in one statement.
-- private.record_outbox_attempts records one owner's, as that owner (auth.uid()): the worker
-- ran a transaction per owner (begin, the claims, the call, commit), and with many users'
-- mail in flight most recordings carried one or two outcomes. This function takes them per
-- owner and, for each, sets that owner's claims (transaction-local) and calls
-- record_outbox_attempts, so every row is still written with its own owner as auth.uid(),
-- exactly as before: one statement and one transaction for all of them.
-- Only the worker's own role may call it (never `authenticated`: choosing whose claims to
-- wear is the worker's privilege, not a user's).

create or replace function private.record_outbox_attempts_as_owners(p_owners jsonb)
returns table (id uuid, status text)
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_owner jsonb;
  v_sub text;
  v_recorded jsonb;
begin
  if jsonb_typeof(p_owners) is distinct from 'array' then
    raise exception 'record_outbox_attempts_as_owners takes an array of {owner, attempts}' using errcode = '22023';
  end if;
  for v_owner in select * from jsonb_array_elements(p_owners) loop
    -- Each owner's recording stands alone: one that fails (a malformed outcome, a lock timeout)
    -- writes nothing and says `unrecorded` for its rows, and the other owners' are kept.
    begin
      v_sub := (v_owner ->> 'owner')::uuid::text;
      perform set_config('request.jwt.claims', jsonb_build_object('sub', v_sub, 'role', 'authenticated')::text, true),
              set_config('request.jwt.claim.sub', v_sub, true),
              set_config('request.jwt.claim.role', 'authenticated', true);
      select coalesce(jsonb_agg(jsonb_build_array(r.id, r.status)), '[]') into v_recorded
        from private.record_outbox_attempts(coalesce(v_owner -> 'attempts', '[]')) r;
    exception when others then
      raise warning 'could not record outbox attempts of one owner: % (%)', sqlerrm, sqlstate;
      select coalesce(jsonb_agg(jsonb_build_array(e ->> 'id', 'unrecorded')), '[]') into v_recorded
        from jsonb_array_elements(case when jsonb_typeof(v_owner -> 'attempts') = 'array'
                                       then v_owner -> 'attempts' else '[]' end) e
       where e ->> 'id' ~ '^[0-9a-fA-F-]{36}$';
    end;
    return query select (r ->> 0)::uuid, r ->> 1 from jsonb_array_elements(v_recorded) r;
  end loop;
  -- Nobody's claims outlive the recording.
  perform set_config('request.jwt.claims', '', true), set_config('request.jwt.claim.sub', '', true),
          set_config('request.jwt.claim.role', '', true);
end
$$;

revoke all on function private.record_outbox_attempts_as_owners(jsonb) from public, anon, authenticated;
