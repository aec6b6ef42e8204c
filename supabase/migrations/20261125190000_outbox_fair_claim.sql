-- A fair claim: round-robin over the users who have something due, whatever the size of
-- anyone's queue.
--
-- Why: the first claim looked for fairness only among the oldest p_limit * 20 due rows. A
-- user whose 10,000-message batch was queued first filled that window, so another user's
-- single mail queued a second later waited until the batch was down to its last 500 rows.
-- Now the claim first finds the owners with something due, one index probe each (a loose
-- scan of an index by owner, starting at a random owner so that no one is always last when
-- more owners are waiting than a claim can serve), then takes each owner's oldest due rows
-- and deals them out: everyone's first row, then everyone's second, and so on.
--
-- It also reads less: one owner's bulk drain looks at the p_limit rows it claims instead of
-- p_limit * 20. When many owners wait, it looks at 2 * p_limit of them (an owner whose due
-- rows are all leased by another worker or paused still counts as waiting, and gets nothing),
-- up to p_limit rows each.
--
-- Known limit, as before: rows of a config paused for attention are skipped row by row, so a
-- paused config with a long queue costs every claim a scan of that owner's due rows.

-- Replaces email_audit_log_due (next_attempt_at): the same rows, by owner first.
create index email_audit_log_due_by_user on public.email_audit_log (user_id, next_attempt_at)
  where status in ('queued', 'scheduled');
drop index public.email_audit_log_due;

-- The owners a claim serves: up to p_owners of those with a row due, starting at a random
-- owner and wrapping around; at most p_probes owners looked at (owners whose rows are all
-- scheduled for later count towards that, not towards p_owners).
create function private.outbox_due_owners(p_owners integer, p_probes integer default 1000)
returns uuid[]
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_start uuid := gen_random_uuid();
  v_after uuid := null;
  v_owner uuid;
  v_due timestamptz;
  v_owners uuid[] := '{}'::uuid[];
  v_wrapped boolean := false;
  v_probes integer := 0;
begin
  loop
    -- The next owner with a queued or scheduled row, and their earliest due time (one index probe).
    if v_after is null then
      select a.user_id, a.next_attempt_at into v_owner, v_due
        from public.email_audit_log a
       where a.status in ('queued', 'scheduled') and a.user_id >= v_start
       order by a.user_id, a.next_attempt_at
       limit 1;
    else
      select a.user_id, a.next_attempt_at into v_owner, v_due
        from public.email_audit_log a
       where a.status in ('queued', 'scheduled') and a.user_id > v_after
       order by a.user_id, a.next_attempt_at
       limit 1;
    end if;
    if v_owner is null or (v_wrapped and v_owner >= v_start) then
      exit when v_wrapped;
      -- Past the last owner: on from the first, up to where we started.
      v_wrapped := true;
      select a.user_id, a.next_attempt_at into v_owner, v_due
        from public.email_audit_log a
       where a.status in ('queued', 'scheduled')
       order by a.user_id, a.next_attempt_at
       limit 1;
      exit when v_owner is null or v_owner >= v_start;
    end if;
    if v_due <= now() then
      v_owners := v_owners || v_owner;
    end if;
    v_probes := v_probes + 1;
    exit when cardinality(v_owners) >= p_owners or v_probes >= p_probes;
    v_after := v_owner;
    v_owner := null;
  end loop;
  return v_owners;
end
$$;

-- Claim up to p_limit due rows for a worker: each owner's oldest due rows, dealt out one per
-- owner per turn. Claimed rows stay queued/scheduled under a lease until the worker starts each.
create or replace function private.claim_outbox(p_worker text, p_limit integer, p_lease_seconds integer)
returns setof public.email_audit_log
language plpgsql
security definer
set search_path = ''
as $$
begin
  return query
  with candidates as (
    select c.id, c.next_attempt_at, c.turn
      from unnest(private.outbox_due_owners(2 * p_limit)) as o (user_id)
     cross join lateral (
       select d.id, d.next_attempt_at, row_number() over (order by d.next_attempt_at) as turn
         from (
           select a.id, a.next_attempt_at
             from public.email_audit_log a
            where a.user_id = o.user_id
              and a.status in ('queued', 'scheduled')
              and a.next_attempt_at <= now()
              and (a.lease_until is null or a.lease_until < now())
              -- A config paused for attention (its credentials were refused) keeps its queue.
              and not exists (
                select 1 from public.user_smtp_configs c where c.id = a.config_id and c.needs_attention is not null
              )
            order by a.next_attempt_at
            limit p_limit
         ) d
     ) c
  ),
  fair as (
    select candidates.id from candidates order by candidates.turn, candidates.next_attempt_at limit p_limit
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

revoke all on function private.outbox_due_owners(integer, integer) from public, anon, authenticated;
revoke all on function private.claim_outbox(text, integer, integer) from public, anon, authenticated;
