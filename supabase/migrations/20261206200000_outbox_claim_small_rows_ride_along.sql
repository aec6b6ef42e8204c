-- The outbox claim of 20261206100000, with one change in what it keeps of the rows it held:
-- small rows ride along with a large first one instead of waiting behind it (see below).

create or replace function private.claim_outbox(
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
  v_suspect uuid;
  v_id uuid;
  v_bytes bigint;
  v_riding bigint := 0;
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

  -- Keep, in order, what fits: the first row always, and after it each row that still fits in
  -- p_max_bytes of its own, skipping those that do not (20261206100000 stopped at the first that
  -- did not, so one user's 9 MB message in front kept every other user's small one out of the
  -- claim: their mail waited behind each large message in turn). In hand at most: one large
  -- row and p_max_bytes more. A suspect (a row whose worker died holding it) goes alone: the
  -- first suspect held, and nothing else. Rows not kept stay unleased.
  select h.id into v_suspect
    from unnest(v_held) with ordinality as h (id, ord)
    join public.email_audit_log a on a.id = h.id
   where a.lease_losses > 0
   order by h.ord
   limit 1;
  if v_suspect is not null then
    v_kept := array[v_suspect];
  else
    v_kept := '{}'::uuid[];
    for v_id, v_bytes in
      select h.id, coalesce(a.payload_bytes, 0)
        from unnest(v_held) with ordinality as h (id, ord)
        join public.email_audit_log a on a.id = h.id
       order by h.ord
    loop
      if cardinality(v_kept) = 0 then
        v_kept := array[v_id];
      elsif v_bytes <= p_max_bytes - v_riding then
        v_kept := v_kept || v_id;
        v_riding := v_riding + v_bytes;
      end if;
    end loop;
  end if;

  return query
  update public.email_audit_log a
     set lease_until = now() + make_interval(secs => p_lease_seconds), leased_by = p_worker,
         first_attempt_at = coalesce(a.first_attempt_at, now())
   where a.id = any (v_kept)
  returning a.*;
end
$$;
