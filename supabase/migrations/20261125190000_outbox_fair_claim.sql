-- A fair outbox claim: round-robin over the users who have something that can be sent now,
-- whatever the size of anyone's queue, and a claim that never comes back short while rows wait.
--
-- Why: the first claim (20261125152000_outbox.sql) looked for fairness only among the oldest
-- p_limit * 20 due rows. A user whose 10,000-message batch was queued first filled that
-- window, so another user's single mail queued a second later waited until the batch was down
-- to its last 500 rows. And two workers claiming at once chose the same rows before locking
-- them with SKIP LOCKED, so the second got few or none (a drain that gets none stops).
--
-- Now:
-- 1. The claim goes round the owners from a random one (a loose scan of an index by owner:
--    one probe finds the next owner with waiting rows and when its earliest one is due).
--    Owners with nothing due now are passed over at that one probe (up to 1,000 per claim);
--    an owner with something due is looked at closely, and counts when it has a row that can
--    be claimed now (not leased, config not paused), up to 4 * p_limit owners.
-- 2. Each owner's oldest claimable rows are dealt out one per owner per turn, in the rotation's
--    order: with N owners waiting, each claim serves a given one with a chance of about
--    p_limit / N, and one owner's bulk drain reads the p_limit rows it claims, not 20x as many.
-- 3. The dealt rows are locked first, checking again that each can still be claimed (a row
--    another worker took, sent or postponed meanwhile is not taken); what is missing is filled
--    with the oldest claimable rows locked as they are found (FOR UPDATE SKIP LOCKED with the
--    LIMIT), so the limit counts only rows this claim holds: concurrent workers each get a
--    full chunk, and a claim comes back short only when fewer rows can be claimed.
-- 4. A paused config's waiting rows wait at next_attempt_at = 'infinity' (rows queued through
--    it meanwhile too) until it is fixed, instead of being walked one by one by every claim;
--    resuming makes them due again (at once, or at their scheduled time).
-- 5. The limit and the lease are checked (null or non-positive values raise 22023).
--
-- Known limit: with more than about 1,000 owners whose mail is all for later, a claim passes
-- over at most 1,000 of them; beyond that fairness rests on the random start, and the top-up
-- serves the oldest rows.

-- Rows still to send, by owner and due time (the rotation and each owner's oldest rows); the
-- existing email_audit_log_due (next_attempt_at) serves the top-up.
create index email_audit_log_due_by_user on public.email_audit_log (user_id, next_attempt_at)
  where status in ('queued', 'scheduled');

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
  v_due timestamptz;
  v_owners uuid[] := '{}'::uuid[];
  v_probes integer := 0;
  v_passed integer := 0;
  v_ids uuid[];
  v_held uuid[];
begin
  if p_worker is null or p_limit is null or p_limit < 1 or p_lease_seconds is null or p_lease_seconds < 1 then
    raise exception 'claim_outbox needs a worker, a positive limit and a positive lease' using errcode = '22023';
  end if;

  -- Owners with a row that can be claimed now, in turn from a random owner and around. One index
  -- probe finds the next owner with waiting rows and when its earliest one is due; only an owner
  -- with something due is looked at closely (one more probe).
  loop
    exit when cardinality(v_owners) >= p_limit or v_probes >= 4 * p_limit or v_passed >= 1000;
    if v_after is not null then
      select a.user_id, a.next_attempt_at into v_owner, v_due from public.email_audit_log a
       where a.status in ('queued', 'scheduled') and a.user_id > v_after
       order by a.user_id, a.next_attempt_at limit 1;
    elsif v_wrapped then
      select a.user_id, a.next_attempt_at into v_owner, v_due from public.email_audit_log a
       where a.status in ('queued', 'scheduled')
       order by a.user_id, a.next_attempt_at limit 1;
    else
      select a.user_id, a.next_attempt_at into v_owner, v_due from public.email_audit_log a
       where a.status in ('queued', 'scheduled') and a.user_id >= v_start
       order by a.user_id, a.next_attempt_at limit 1;
    end if;
    if v_owner is null or (v_wrapped and v_owner >= v_start) then
      -- Past the last owner: on from the first, until where we started.
      exit when v_wrapped;
      v_wrapped := true;
      v_after := null;
      continue;
    end if;
    v_after := v_owner;
    if v_due > now() then
      v_passed := v_passed + 1;
      continue;
    end if;
    v_probes := v_probes + 1;
    if exists (
      select 1 from public.email_audit_log a
       where a.user_id = v_owner
         and a.status in ('queued', 'scheduled')
         and a.next_attempt_at <= now()
         and (a.lease_until is null or a.lease_until < now())
         -- A config paused for attention keeps its queue (its rows normally wait at 'infinity').
         and not exists (
           select 1 from public.user_smtp_configs c where c.id = a.config_id and c.needs_attention is not null
         )
    ) then
      v_owners := v_owners || v_owner;
    end if;
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

  -- Hold what was dealt, checking again that each row can still be claimed (another worker may
  -- have taken, sent or postponed it since it was chosen).
  select coalesce(array_agg(held.id), '{}'::uuid[]) into v_held
    from (
      select a.id from public.email_audit_log a
       where a.id = any (v_ids)
         and a.status in ('queued', 'scheduled')
         and a.next_attempt_at <= now()
         and (a.lease_until is null or a.lease_until < now())
         and not exists (
           select 1 from public.user_smtp_configs c where c.id = a.config_id and c.needs_attention is not null
         )
         for update of a skip locked
    ) held;

  -- Room left (few owners, rows taken by another worker meanwhile): the oldest claimable rows
  -- no one holds, locked as they are found, so the limit counts only rows this claim holds.
  if cardinality(v_held) < p_limit then
    v_held := v_held || array(
      select a.id from public.email_audit_log a
       where a.status in ('queued', 'scheduled')
         and a.next_attempt_at <= now()
         and (a.lease_until is null or a.lease_until < now())
         and not exists (
           select 1 from public.user_smtp_configs c where c.id = a.config_id and c.needs_attention is not null
         )
         and a.id <> all (v_held)
       order by a.next_attempt_at
       limit p_limit - cardinality(v_held)
         for update of a skip locked
    );
  end if;

  return query
  update public.email_audit_log a
     set lease_until = now() + make_interval(secs => p_lease_seconds), leased_by = p_worker
   where a.id = any (v_held)
  returning a.*;
end
$$;

revoke all on function private.claim_outbox(text, integer, integer) from public, anon, authenticated;

-- Paused configs' rows wait out of the claim's reach ------------------------------------------

-- Pause a config's queue, as its owner (the worker acts with the owner's claims): its waiting
-- rows move to 'infinity' until the config is fixed.
create or replace function private.pause_config_queue(p_config_id uuid, p_reason text)
returns void
language sql
security definer
set search_path = ''
as $$
  update public.user_smtp_configs c set needs_attention = left(p_reason, 64)
   where c.id = p_config_id and c.user_id = (select auth.uid());
  update public.email_audit_log a set next_attempt_at = 'infinity'
   where a.config_id = p_config_id
     and a.user_id = (select auth.uid())
     and a.status in ('queued', 'scheduled')
     and exists (select 1 from public.user_smtp_configs c where c.id = p_config_id and c.needs_attention is not null);
$$;

-- The queue resumes when what was wrong can have been fixed (as before), and its rows are due
-- again: at once, or at their scheduled time when that is still ahead.
create or replace function private.resume_paused_config_queue() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if old.needs_attention is not null and new.needs_attention is not distinct from old.needs_attention and (
       new.credentials_changed_at is distinct from old.credentials_changed_at
    or (new.credentials_verified_at is not null and new.credentials_verified_at is distinct from old.credentials_verified_at)
    or new.is_active is distinct from old.is_active
  ) then
    new.needs_attention := null;
  end if;
  if old.needs_attention is not null and new.needs_attention is null then
    update public.email_audit_log a
       set next_attempt_at = greatest(coalesce(a.scheduled_at, now()), now())
     where a.config_id = new.id
       and a.status in ('queued', 'scheduled')
       and a.next_attempt_at = 'infinity';
  end if;
  return new;
end
$$;

-- Rows queued through a paused config wait with the others.
create or replace function private.prepare_outbox_row() returns trigger
language plpgsql
set search_path = ''
as $$
declare
  v_config record;
begin
  if new.status in ('queued', 'scheduled') then
    select c.from_email, c.needs_attention into v_config from public.user_smtp_configs c where c.id = new.config_id;
    -- The sender is the config's, whatever the inserted row says (the Data API can insert too).
    new.from_email := coalesce(v_config.from_email, new.from_email);
    new.attempts := 0;
    new.message_id := '<' || new.id::text || '@' || lower(split_part(new.from_email, '@', 2)) || '>';
    new.status := case when new.scheduled_at > now() then 'scheduled' else 'queued' end;
    new.next_attempt_at := case
      when v_config.needs_attention is not null then 'infinity'
      else greatest(coalesce(new.scheduled_at, now()), now())
    end;
    new.lease_until := null;
    new.leased_by := null;
  end if;
  return new;
end
$$;

-- Rows of configs paused before this migration.
update public.email_audit_log a set next_attempt_at = 'infinity'
  from public.user_smtp_configs c
 where c.id = a.config_id and c.needs_attention is not null and a.status in ('queued', 'scheduled');

revoke all on function private.pause_config_queue(uuid, text) from public, anon, authenticated;
grant execute on function private.pause_config_queue(uuid, text) to authenticated;
revoke all on function private.resume_paused_config_queue() from public, anon, authenticated;
revoke all on function private.prepare_outbox_row() from public, anon, authenticated;
