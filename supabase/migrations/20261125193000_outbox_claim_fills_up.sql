-- The fair claim (20261125190000_outbox_fair_claim.sql), corrected after review:
--
-- 1. It could come back empty while rows were waiting. It took the first 2 * p_limit owners
--    with a due row from its random start before looking at whether their rows could be
--    claimed; when those were paused configs, rows leased by other workers, or (past its 1,000
--    probes) owners whose mail is all for later, the claim returned nothing and the worker,
--    taking that for an empty outbox, stopped. Now an owner counts only when it has a row that
--    can be claimed now, at most 4 * p_limit owners are looked at, and whatever the owners
--    found leave free is filled with the oldest claimable rows, as the first claim did. A claim
--    therefore comes back short only when fewer rows than asked can be claimed.
-- 2. Within a turn it preferred older rows, so with more than p_limit owners holding a backlog,
--    a newcomer's single row (the newest of its turn) still waited for every backlog. Now a
--    turn is dealt in the rotation's order, which starts at a random owner on every claim: with
--    N owners waiting, each claim serves a given one with a chance of about p_limit / N.

-- The oldest claimable rows, for the top-up.
create index email_audit_log_due on public.email_audit_log (next_attempt_at)
  where status in ('queued', 'scheduled');

drop function private.outbox_due_owners(integer, integer);

create or replace function private.claim_outbox(p_worker text, p_limit integer, p_lease_seconds integer)
returns setof public.email_audit_log
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_start uuid := gen_random_uuid();
  v_after uuid := null;
  v_wrapped boolean := false;
  v_owner uuid;
  v_owners uuid[] := '{}'::uuid[];
  v_probes integer := 0;
  v_ids uuid[];
begin
  -- Owners with a row that can be claimed now, in turn from a random owner and around: one
  -- index probe finds the next owner with queued or scheduled rows, one more tells whether
  -- any of them can be claimed now.
  loop
    exit when cardinality(v_owners) >= p_limit or v_probes >= 4 * p_limit;
    if v_after is not null then
      select a.user_id into v_owner from public.email_audit_log a
       where a.status in ('queued', 'scheduled') and a.user_id > v_after
       order by a.user_id limit 1;
    elsif v_wrapped then
      select a.user_id into v_owner from public.email_audit_log a
       where a.status in ('queued', 'scheduled')
       order by a.user_id limit 1;
    else
      select a.user_id into v_owner from public.email_audit_log a
       where a.status in ('queued', 'scheduled') and a.user_id >= v_start
       order by a.user_id limit 1;
    end if;
    if v_owner is null or (v_wrapped and v_owner >= v_start) then
      -- Past the last owner: on from the first, until where we started.
      exit when v_wrapped;
      v_wrapped := true;
      v_after := null;
      continue;
    end if;
    v_probes := v_probes + 1;
    if exists (
      select 1 from public.email_audit_log a
       where a.user_id = v_owner
         and a.status in ('queued', 'scheduled')
         and a.next_attempt_at <= now()
         and (a.lease_until is null or a.lease_until < now())
         -- A config paused for attention (its credentials were refused) keeps its queue.
         and not exists (
           select 1 from public.user_smtp_configs c where c.id = a.config_id and c.needs_attention is not null
         )
    ) then
      v_owners := v_owners || v_owner;
    end if;
    v_after := v_owner;
  end loop;

  -- Each owner's oldest claimable rows, dealt out one per owner per turn, in the rotation's order.
  select coalesce(array_agg(dealt.id), '{}'::uuid[]) into v_ids
    from (
      select c.id
        from unnest(v_owners) with ordinality as o (user_id, position)
       cross join lateral (
         select d.id, row_number() over (order by d.next_attempt_at) as turn
           from (
             select a.id, a.next_attempt_at
               from public.email_audit_log a
              where a.user_id = o.user_id
                and a.status in ('queued', 'scheduled')
                and a.next_attempt_at <= now()
                and (a.lease_until is null or a.lease_until < now())
                and not exists (
                  select 1 from public.user_smtp_configs c where c.id = a.config_id and c.needs_attention is not null
                )
              order by a.next_attempt_at
              limit p_limit
           ) d
       ) c
       order by c.turn, o.position
       limit p_limit
    ) dealt;

  -- Room left (few owners, or many that have nothing to claim now): the oldest claimable rows.
  if cardinality(v_ids) < p_limit then
    v_ids := v_ids || array(
      select a.id from public.email_audit_log a
       where a.status in ('queued', 'scheduled')
         and a.next_attempt_at <= now()
         and (a.lease_until is null or a.lease_until < now())
         and not exists (
           select 1 from public.user_smtp_configs c where c.id = a.config_id and c.needs_attention is not null
         )
         and a.id <> all (v_ids)
       order by a.next_attempt_at
       limit p_limit - cardinality(v_ids)
    );
  end if;

  return query
  with locked as (
    select a.id from public.email_audit_log a
     where a.id = any (v_ids)
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

revoke all on function private.claim_outbox(text, integer, integer) from public, anon, authenticated;
