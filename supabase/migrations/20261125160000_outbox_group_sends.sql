-- The outbox worker sends a claimed chunk of one user's messages through one config as a
-- group: one statement starts them all, one transaction (as the owner) prepares them, one
-- records their outcomes. The single-row functions stay for the per-message path.
--
-- Trade-off: a worker that dies mid-chunk leaves the chunk's unsent rows `sending`, so the
-- sweep marks them `unknown` (it cannot tell them from rows that went out). The worker keeps
-- chunks small (process-outbox: 25) to bound that, and never resends an unknown row.

-- Start the sends of claimed rows; returns the ids now in flight (cancelled or lost rows are not).
create function private.start_outbox_sends(p_audit_ids uuid[], p_worker text, p_lease_seconds integer)
returns setof uuid
language sql
security definer
set search_path = ''
as $$
  update public.email_audit_log a
     set status = 'sending', attempts = a.attempts + 1,
         lease_until = now() + make_interval(secs => p_lease_seconds)
   where a.id = any (p_audit_ids) and a.leased_by = p_worker and a.status in ('queued', 'scheduled')
  returning a.id;
$$;

-- Put claimed or started rows back without counting an attempt.
create function private.postpone_outbox_sends(p_audit_ids uuid[], p_worker text, p_seconds integer)
returns void
language sql
security definer
set search_path = ''
as $$
  update public.email_audit_log a
     set status = 'queued',
         attempts = case when a.status = 'sending' then greatest(a.attempts - 1, 0) else a.attempts end,
         next_attempt_at = now() + make_interval(secs => greatest(p_seconds, 0)),
         lease_until = null, leased_by = null
   where a.id = any (p_audit_ids) and a.leased_by = p_worker and a.status in ('queued', 'scheduled', 'sending');
$$;

-- Record several attempts as their owner: `p_attempts` is a jsonb array of {id, outcome}
-- (outcome as private.record_outbox_attempt takes it). A row that is no longer in flight for
-- this user (swept meanwhile, or not theirs) is reported `lost` and the others still count.
create function private.record_outbox_attempts(p_attempts jsonb)
returns table (id uuid, status text)
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_attempt jsonb;
begin
  for v_attempt in select * from jsonb_array_elements(p_attempts) loop
    id := (v_attempt ->> 'id')::uuid;
    begin
      status := private.record_outbox_attempt(id, v_attempt -> 'outcome');
    exception when sqlstate 'P0002' then
      status := 'lost';
    end;
    return next;
  end loop;
end
$$;

revoke all on function private.start_outbox_sends(uuid[], text, integer) from public, anon, authenticated;
revoke all on function private.postpone_outbox_sends(uuid[], text, integer) from public, anon, authenticated;
revoke all on function private.record_outbox_attempts(jsonb) from public, anon, authenticated;
-- As the rows' owner (the worker sets the owner's claims, as withUser does):
grant execute on function private.record_outbox_attempts(jsonb) to authenticated;
