-- email-analytics: what a user's agents sent, computed in Postgres as the user. Every
-- function here is SECURITY INVOKER: it reads public.email_audit_log through the caller's RLS
-- policy ("owner can read own audit rows"), so it can only ever count the caller's rows, also
-- for crafted filters. The email-analytics function calls them inside withUser, exactly as
-- the Data API would (they are in `private`, so PostgREST does not expose them).
--
-- The plan they rely on (1,000,000 rows, 1,000 users, the busiest with 100,000 over a year;
-- `deno task bench` seeds exactly that): the RLS predicate user_id = auth.uid() and the range
-- on created_at make one range scan of email_audit_log_user_created_id (EXPLAIN ANALYZE of the
-- busiest user's 30 days, as that user):
--
--   CTE f
--     ->  Index Scan using email_audit_log_user_created_id on email_audit_log a
--           (actual time=0.047..6.610 rows=8219 loops=1)
--           Index Cond: ((user_id = $0) AND (created_at >= '2026-10-26 ...') AND (created_at < now()))
--           Buffers: shared hit=342
--
-- (after ANALYZE the planner may read the same index as a Bitmap Index Scan), feeding one
-- materialized CTE that every total, series and breakdown reads again: the cost is one pass
-- over the user's rows in the range, whatever the other users hold. The message list walks the
-- same index backwards from its cursor and stops after one page: (user_id, created_at desc,
-- id desc) is the keyset order itself.

-- Newest first per user, with id as the tie-break of the keyset (the old index is its prefix).
create index email_audit_log_user_created_id on public.email_audit_log (user_id, created_at desc, id desc);
drop index public.email_audit_log_user_created;

-- A 400 raised as PostgREST does (SQLSTATE PGRST): withUser turns it into the same ApiError.
create function private.analytics_refuse(p_code text, p_message text)
returns void
language plpgsql
set search_path = ''
as $$
begin
  raise sqlstate 'PGRST' using
    message = pg_catalog.json_build_object('code', p_code, 'message', p_message)::text,
    detail = pg_catalog.json_build_object('status', 400)::text;
end
$$;

-- The range [from, to) a request names, in the caller's time zone: a date (YYYY-MM-DD) is
-- that day's local midnight, a timestamp with an offset is that instant; `to` defaults to now,
-- `from` to 30 days before `to`. At most 366 days.
create function private.analytics_range(p_from text, p_to text, p_tz text)
returns table (range_from timestamptz, range_to timestamptz)
language plpgsql
stable
set search_path = ''
as $$
declare
  v_to timestamptz;
  v_from timestamptz;
begin
  v_to := case
    when p_to is null then now()
    when p_to ~ '^\d{4}-\d{2}-\d{2}$' then p_to::date::timestamp at time zone p_tz
    else p_to::timestamptz
  end;
  v_from := case
    when p_from is null then v_to - interval '30 days'
    when p_from ~ '^\d{4}-\d{2}-\d{2}$' then p_from::date::timestamp at time zone p_tz
    else p_from::timestamptz
  end;
  if v_from >= v_to then
    perform private.analytics_refuse('invalid_range', 'from must be before to');
  end if;
  if v_to - v_from > interval '366 days' then
    perform private.analytics_refuse('range_too_large', 'The range may span at most 366 days');
  end if;
  return query select v_from, v_to;
end
$$;

-- The summary of the caller's sends created in [p_from, p_to) matching the filters:
-- totals per status, success rate, latency percentiles, a zero-filled series in p_tz, and
-- the requested breakdowns (config, recipient_domain, error_code, batch, agent_context.<key>,
-- in the order asked), each its p_top largest entries. json, not jsonb: keys stay in order.
create function private.email_analytics(
  p_from timestamptz,
  p_to timestamptz,
  p_interval text,
  p_tz text,
  p_breakdowns text[],
  p_config uuid default null,
  p_statuses text[] default null,
  p_batch uuid default null,
  p_template uuid default null,
  p_top integer default 25
)
returns json
language plpgsql
set search_path = ''
as $$
declare
  v_result json;
  v_agent_keys boolean := exists (select 1 from unnest(p_breakdowns) b where b like 'agent_context.%');
begin
  if p_interval is null or p_interval not in ('hour', 'day') then
    perform private.analytics_refuse('invalid_interval', 'interval must be hour or day');
  end if;
  -- Buckets, their labels and day arithmetic (23- and 25-hour days) in the caller's zone.
  perform pg_catalog.set_config('TimeZone', p_tz, true);

  with f as materialized (
    -- Only the columns the requested breakdowns read are carried (the others stay null).
    select a.status, a.config_id, a.batch_id, a.error_class, a.created_at,
           case when 'recipient_domain' = any (p_breakdowns) then a.to_addresses end as to_addresses,
           case when v_agent_keys then a.agent_context end as agent_context,
           case when a.status = 'sent' and a.completed_at is not null
                then extract(epoch from (a.completed_at - coalesce(a.scheduled_at, a.created_at))) * 1000
           end as latency_ms
      from public.email_audit_log a
     where a.created_at >= p_from and a.created_at < p_to
       and (p_config is null or a.config_id = p_config)
       and (p_statuses is null or a.status = any (p_statuses))
       and (p_batch is null or a.batch_id = p_batch)
       and (p_template is null or a.template_id = p_template)
  ),
  by_status as (
    select f.status, count(*)::integer as n from f group by f.status
  ),
  -- Each requested breakdown grouped on its own (a false `= any` skips its scan of f).
  counted as (
    select 'config' as breakdown, g.key::text as key, c.name, g.total, g.sent, g.failed, g.unknown
      from (
        select f.config_id as key, count(*)::integer as total,
               (count(*) filter (where f.status = 'sent'))::integer as sent,
               (count(*) filter (where f.status = 'failed'))::integer as failed,
               (count(*) filter (where f.status = 'unknown'))::integer as unknown
          from f where 'config' = any (p_breakdowns) group by f.config_id
      ) g
      left join public.user_smtp_configs c on c.id = g.key
    union all
    -- A message counts once per domain it went to (most have one recipient: no sort for those).
    select 'recipient_domain', d.domain, null, count(*)::integer,
           (count(*) filter (where f.status = 'sent'))::integer,
           (count(*) filter (where f.status = 'failed'))::integer,
           (count(*) filter (where f.status = 'unknown'))::integer
      from f cross join lateral unnest(case cardinality(f.to_addresses)
             when 0 then '{}'::text[]
             when 1 then array[lower(split_part(f.to_addresses[1], '@', 2))]
             else array(select distinct lower(split_part(t, '@', 2)) from unnest(f.to_addresses) t)
           end) d (domain)
     where 'recipient_domain' = any (p_breakdowns)
     group by d.domain
    union all
    select 'error_code', f.error_class, null, count(*)::integer,
           (count(*) filter (where f.status = 'sent'))::integer,
           (count(*) filter (where f.status = 'failed'))::integer,
           (count(*) filter (where f.status = 'unknown'))::integer
      from f where 'error_code' = any (p_breakdowns) and f.error_class is not null
     group by f.error_class
    union all
    select 'batch', f.batch_id::text, null, count(*)::integer,
           (count(*) filter (where f.status = 'sent'))::integer,
           (count(*) filter (where f.status = 'failed'))::integer,
           (count(*) filter (where f.status = 'unknown'))::integer
      from f where 'batch' = any (p_breakdowns) and f.batch_id is not null
     group by f.batch_id
    union all
    select b, f.agent_context ->> substr(b, length('agent_context.') + 1), null, count(*)::integer,
           (count(*) filter (where f.status = 'sent'))::integer,
           (count(*) filter (where f.status = 'failed'))::integer,
           (count(*) filter (where f.status = 'unknown'))::integer
      from unnest(p_breakdowns) b cross join f
     where b like 'agent_context.%'
     group by 1, 2
  ),
  ranked as (
    select c.*, row_number() over (partition by c.breakdown order by c.total desc, c.key nulls last) as rank
      from counted c
  ),
  latency as (
    select count(*) as n, percentile_cont(array[0.5, 0.9, 0.99]) within group (order by f.latency_ms) as p
      from f where f.latency_ms is not null
  )
  select json_build_object(
    'total', (select coalesce(sum(n), 0)::integer from by_status),
    'totals', (
      select json_object_agg(s.status, coalesce(b.n, 0) order by s.ord)
        from unnest(array['sent', 'failed', 'unknown', 'deferred', 'queued', 'scheduled', 'sending', 'cancelled'])
             with ordinality s (status, ord)
        left join by_status b on b.status = s.status
    ),
    'success_rate', (
      select round(sum(n) filter (where status = 'sent')::numeric
                   / nullif(sum(n) filter (where status in ('sent', 'failed', 'unknown', 'deferred')), 0), 4)
        from by_status
    ),
    'latency_ms', (
      select json_build_object('count', l.n, 'p50', round(l.p[1]), 'p90', round(l.p[2]), 'p99', round(l.p[3]))
        from latency l
    ),
    'series', (
      select coalesce(json_agg(json_build_object(
               'start', s.start, 'total', coalesce(c.total, 0), 'sent', coalesce(c.sent, 0),
               'failed', coalesce(c.failed, 0), 'unknown', coalesce(c.unknown, 0)) order by s.start), '[]')
        -- Each bucket counted from the first (not from the one before): after a skipped local
        -- midnight (America/Santiago) the next days still start at their own midnight.
        from (
          select date_trunc(p_interval, p_from) + n * ('1 ' || p_interval)::interval as start
            from generate_series(0, (extract(epoch from (p_to - date_trunc(p_interval, p_from)))
                                     / case p_interval when 'hour' then 3600 else 82800 end)::integer) n
        ) s
        left join (
          select date_trunc(p_interval, f.created_at) as start, count(*)::integer as total,
                 (count(*) filter (where f.status = 'sent'))::integer as sent,
                 (count(*) filter (where f.status = 'failed'))::integer as failed,
                 (count(*) filter (where f.status = 'unknown'))::integer as unknown
            from f group by 1
        ) c on c.start = s.start
       where s.start < p_to
    ),
    'breakdowns', (
      select coalesce(json_object_agg(b.breakdown, coalesce((
               select json_agg(json_build_object('key', c.key, 'name', c.name, 'total', c.total, 'sent', c.sent,
                                                 'failed', c.failed, 'unknown', c.unknown) order by c.rank)
                 from ranked c where c.breakdown = b.breakdown and c.rank <= p_top), '[]')
             order by b.ord), '{}')
        from unnest(p_breakdowns) with ordinality b (breakdown, ord)
    )
  ) into v_result;
  return v_result;
end
$$;

revoke all on function private.analytics_refuse(text, text) from public, anon, authenticated;
revoke all on function private.analytics_range(text, text, text) from public, anon, authenticated;
revoke all on function private.email_analytics(timestamptz, timestamptz, text, text, text[], uuid, text[], uuid, uuid, integer)
  from public, anon, authenticated;
grant execute on function private.analytics_refuse(text, text) to authenticated;
grant execute on function private.analytics_range(text, text, text) to authenticated;
grant execute on function private.email_analytics(timestamptz, timestamptz, text, text, text[], uuid, text[], uuid, uuid, integer)
  to authenticated;
