-- Outbox claims after an adversarial review of 20261206100000 (issue 26).
--
-- 1. The byte bound counts what the worker will hold for a row: its payload as text (jsonb's
--    compact form let `1e131071` stand for 131,072 digits) plus, for a batch's recipient, the
--    batch's shared content (a recipient row's payload is ~70 bytes; its message is built from
--    up to 4 MiB of content). Two 25-recipient newsletters of 3.9 MB had taken the worker to
--    313 MiB of heap + external; now 142.
-- 2. Suspects (rows whose worker died holding them) no longer take over claims. A claim can be
--    told to leave them out (p_suspects false): the worker asks for one only with empty hands,
--    at most once per run, so a suspect neither pushes other users' rows out of a claim nor is
--    held together with them when it kills the worker. A row that started sending is no longer
--    a suspect (it survived its preparation).
-- 3. A live worker renews the leases of the rows it holds (private.renew_outbox_leases), so a
--    lane waiting behind a slow server is never taken for a dead worker's.

alter table public.email_batches
  add column content_bytes integer generated always as (octet_length(content::text)) stored;

-- Rows already waiting: their size as the claim now counts it.
update public.email_audit_log a
   set payload_bytes = coalesce(octet_length(a.payload::text), 0)
       + coalesce((select b.content_bytes from public.email_batches b where b.id = a.batch_id), 0)
 where a.status in ('queued', 'scheduled');

create or replace function private.prepare_outbox_row() returns trigger
language plpgsql
set search_path = ''
as $$
declare
  v_config record;
begin
  if new.status in ('queued', 'scheduled') then
    if new.config_id is null then
      select c.id into new.config_id from public.user_smtp_configs c
       where c.user_id = new.user_id and c.is_default;
    end if;
    select c.from_email, c.needs_attention into v_config from public.user_smtp_configs c where c.id = new.config_id;
    -- The sender is the config's, whatever the inserted row says (the Data API can insert too).
    new.from_email := coalesce(v_config.from_email, new.from_email);
    new.attempts := 0;
    new.lease_losses := 0;
    -- What the worker will hold for it: the payload as it arrives (text, never the compressed
    -- or compact stored form) and, for a batch's recipient, the batch's shared content.
    new.payload_bytes := coalesce(octet_length(new.payload::text), 0)
      + coalesce((select b.content_bytes from public.email_batches b where b.id = new.batch_id), 0);
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

drop function private.claim_outbox(text, integer, integer, bigint, uuid[]);
create function private.claim_outbox(
  p_worker text,
  p_limit integer,
  p_lease_seconds integer,
  p_max_bytes bigint default 16777216,
  p_skip_configs uuid[] default '{}',
  p_suspects boolean default true
)
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
  v_skip uuid[] := coalesce(p_skip_configs, '{}'::uuid[]);
  v_ids uuid[];
  v_held uuid[];
  v_kept uuid[];
begin
  if p_worker is null or p_limit is null or p_limit < 1 or p_lease_seconds is null or p_lease_seconds < 1
     or p_max_bytes is null or p_max_bytes < 1 then
    raise exception 'claim_outbox needs a worker, a positive limit, lease and byte bound' using errcode = '22023';
  end if;

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
       where a.user_id = v_owner and a.status in ('queued', 'scheduled') and a.next_attempt_at <= now()
         and a.lease_until is null
         and (p_suspects or a.lease_losses = 0)
         and (a.config_id is null or a.config_id <> all (v_skip))
         and not exists (
           select 1 from public.user_smtp_configs c
            where c.id = a.config_id and (c.needs_attention is not null or c.backoff_until > now())
         )
    ) then
      v_owners := v_owners || v_owner;
    end if;
  end loop;

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
                and a.lease_until is null
         and (p_suspects or a.lease_losses = 0)
                and (a.config_id is null or a.config_id <> all (v_skip))
                and not exists (
                  select 1 from public.user_smtp_configs c
                   where c.id = a.config_id and (c.needs_attention is not null or c.backoff_until > now())
                )
              order by a.next_attempt_at
              limit p_limit
           ) d
       ) c
       order by c.turn, o.position
       limit p_limit
    ) dealt;

  select coalesce(array_agg(held.id), '{}'::uuid[]) into v_held
    from (
      select a.id from public.email_audit_log a
       where a.id = any (v_ids)
         and a.status in ('queued', 'scheduled')
         and a.next_attempt_at <= now()
         and a.lease_until is null
         and (p_suspects or a.lease_losses = 0)
         and (a.config_id is null or a.config_id <> all (v_skip))
         and not exists (
           select 1 from public.user_smtp_configs c
            where c.id = a.config_id and (c.needs_attention is not null or c.backoff_until > now())
         )
         for update of a skip locked
    ) held;

  if cardinality(v_held) < p_limit then
    v_held := v_held || array(
      select a.id from public.email_audit_log a
       where a.status in ('queued', 'scheduled')
         and a.next_attempt_at <= now()
         and a.lease_until is null
         and (p_suspects or a.lease_losses = 0)
         and (a.config_id is null or a.config_id <> all (v_skip))
         and not exists (
           select 1 from public.user_smtp_configs c
            where c.id = a.config_id and (c.needs_attention is not null or c.backoff_until > now())
         )
         and a.id <> all (v_held)
       order by a.next_attempt_at
       limit p_limit - cardinality(v_held)
         for update of a skip locked
    );
  end if;

  -- Keep, in order, what fits p_max_bytes (the first row always). A suspect (a row whose
  -- worker died holding it) goes alone: the first suspect held, and nothing else. The rows
  -- not kept stay unleased (their locks end with this statement's transaction).
  select coalesce(array_agg(k.id order by k.ord), '{}'::uuid[]) into v_kept
    from (
      select h.id, h.ord, a.lease_losses,
             sum(coalesce(a.payload_bytes, 0)) over (order by h.ord) as running,
             min(h.ord) filter (where a.lease_losses > 0) over () as first_suspect
        from unnest(v_held) with ordinality as h (id, ord)
        join public.email_audit_log a on a.id = h.id
    ) k
   where case when k.first_suspect is not null then k.ord = k.first_suspect
              else k.ord = 1 or k.running <= p_max_bytes end;

  return query
  update public.email_audit_log a
     set lease_until = now() + make_interval(secs => p_lease_seconds), leased_by = p_worker,
         first_attempt_at = coalesce(a.first_attempt_at, now())
   where a.id = any (v_kept)
  returning a.*;
end
$$;

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
   where a.id = p_audit_id and a.leased_by = p_worker and a.status in ('queued', 'scheduled');
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
  returning a.id;
$$;

-- A live worker keeps what it holds: only a death lets a lease run out.
create function private.renew_outbox_leases(p_worker text, p_lease_seconds integer)
returns integer
language sql
security definer
set search_path = ''
as $$
  with renewed as (
    update public.email_audit_log a
       set lease_until = now() + make_interval(secs => p_lease_seconds)
     where a.leased_by = p_worker and a.status in ('queued', 'scheduled')
       and a.lease_until is not null and a.lease_until >= now()
    returning 1
  )
  select count(*)::integer from renewed
$$;

revoke all on function private.claim_outbox(text, integer, integer, bigint, uuid[], boolean) from public, anon, authenticated;
revoke all on function private.renew_outbox_leases(text, integer) from public, anon, authenticated;
