-- Recipients' consent: a per-user suppression list that every send path honours.
--
-- `public.suppressions`: addresses (lower case) a user's mail must never go to again, with why
-- (`unsubscribed`, `hard_bounce`, `complaint`, `manual`), where it came from and when. The owner
-- reads, adds and removes them (RLS); an agent (a token with `client_id`) may add but never
-- remove one: an agent must not be able to mail someone who asked not to be mailed.
--
-- Sends: a message's recipients on the list are skipped (the others still get it) and listed in
-- the audit row's new `suppressed` column; a message whose every recipient is on it ends with
-- the new status `suppressed`, nothing sent. The functions check the list when they build a
-- message (send-email at once, and the outbox worker for queued, scheduled, bulk and approved
-- mail, so an address suppressed after it was queued is skipped too).
--
-- Hard bounces: a permanent refusal at RCPT that says the mailbox does not exist (enhanced
-- codes 5.1.1, 5.1.2, 5.1.10, or a 550 without one whose text says so; never a policy refusal
-- such as 5.7.x) suppresses the address as `hard_bounce`, per config (`suppress_hard_bounces`,
-- on by default), by a trigger on the audit row's outcome: every path that records one.

create table public.suppressions (
  user_id uuid not null default auth.uid() references auth.users (id) on delete cascade,
  address text not null,
  reason text not null default 'manual',
  source text,
  audit_id uuid references public.email_audit_log (id) on delete set null,
  created_at timestamptz not null default now(),
  primary key (user_id, address),
  constraint suppressions_address check (
    address = lower(address) and length(address) between 3 and 320 and address ~ '^.+@[^@\s]+$'
  ),
  constraint suppressions_reason check (reason in ('unsubscribed', 'hard_bounce', 'complaint', 'manual')),
  constraint suppressions_source_length check (length(source) <= 500)
);

comment on table public.suppressions is
  'Addresses this user''s mail never goes to again (unsubscribed, hard bounce, complaint, manual). Every send path skips them.';

create index suppressions_audit on public.suppressions (audit_id) where audit_id is not null;

alter table public.suppressions enable row level security;

revoke all on public.suppressions from anon, authenticated;
grant select, delete on public.suppressions to authenticated;
grant insert (address, reason, source) on public.suppressions to authenticated;

create policy "owner reads own suppressions"
  on public.suppressions for select to authenticated
  using (user_id = (select auth.uid()));

create policy "owner and agents add suppressions"
  on public.suppressions for insert to authenticated
  with check (user_id = (select auth.uid()));

-- Lifting one is the owner's own session only: never an OAuth client (an agent).
create policy "owner removes own suppressions"
  on public.suppressions for delete to authenticated
  using (user_id = (select auth.uid()) and ((select auth.jwt()) ->> 'client_id') is null);

-- The audit row: who was skipped, and the final status of a message nobody could be sent.
alter table public.email_audit_log
  add column suppressed text[] not null default '{}',
  drop constraint email_audit_log_status,
  add constraint email_audit_log_status check (
    status in ('scheduled', 'queued', 'sending', 'sent', 'deferred', 'failed', 'unknown', 'cancelled',
               'pending_approval', 'rejected', 'expired', 'suppressed')
  );

comment on column public.email_audit_log.suppressed is
  'Recipients skipped because they are on the owner''s suppression list (public.suppressions).';

grant insert (suppressed) on public.email_audit_log to authenticated;

alter table public.user_smtp_configs
  add column suppress_hard_bounces boolean not null default true;

-- Turning it off loosens a protection: the owner's own session only, never an agent's token.
create function private.guard_suppress_hard_bounces()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if new.suppress_hard_bounces is distinct from old.suppress_hard_bounces and not new.suppress_hard_bounces
     and (select auth.jwt()) ->> 'client_id' is not null then
    perform private.raise_api_error(403, 'first_party_session_required',
      'Only you, signed in yourself, can stop hard bounces from joining the suppression list');
  end if;
  return new;
end
$$;

revoke all on function private.guard_suppress_hard_bounces() from public, anon, authenticated;

create trigger user_smtp_configs_guard_suppress_hard_bounces
  before update of suppress_hard_bounces on public.user_smtp_configs
  for each row execute function private.guard_suppress_hard_bounces();

comment on column public.user_smtp_configs.suppress_hard_bounces is
  'A recipient refused at RCPT because the mailbox does not exist (5.1.1, 5.1.2, 5.1.10) is added to the suppression list.';

grant insert (suppress_hard_bounces), update (suppress_hard_bounces) on public.user_smtp_configs to authenticated;

-- Which of `p_addresses` the caller has suppressed, spelled as given (the list is matched in lower
-- case, by Postgres alone, so that no second notion of case can disagree). Invoker: RLS answers.
create function private.suppressed_among(p_addresses text[])
returns text[]
language sql
stable
set search_path = ''
as $$
  select coalesce(array_agg(a.address), '{}')
    from pg_catalog.unnest(p_addresses) a (address)
   where exists (
     select 1 from public.suppressions s
      where s.user_id = (select auth.uid()) and s.address = pg_catalog.lower(a.address)
   )
$$;

revoke all on function private.suppressed_among(text[]) from public, anon, authenticated;
grant execute on function private.suppressed_among(text[]) to authenticated;

-- The outbox worker records, in the transaction that prepares them, which recipients of the
-- caller's rows it claimed (`p_worker`) were skipped as suppressed (`p_marks`: [{id, suppressed:
-- [addresses], done}]); a row with nobody left to send to (`done`) ends here: `suppressed`, or
-- `sent` when an earlier attempt already delivered it to someone (a deferred recipient suppressed
-- meanwhile). Only addresses on the caller's list are recorded, as given; the ids of the rows it ended.
create function private.record_suppressed(p_marks jsonb, p_worker text)
returns setof uuid
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_user uuid := (select auth.uid());
begin
  if v_user is null or p_worker is null or jsonb_typeof(p_marks) is distinct from 'array' then
    return;
  end if;
  return query
  with mark as (
    select (m ->> 'id')::uuid as id, coalesce((m ->> 'done')::boolean, false) as done,
           array(
             select x.address
               from jsonb_array_elements_text(case when jsonb_typeof(m -> 'suppressed') = 'array'
                                                   then m -> 'suppressed' else '[]'::jsonb end) x (address)
              where exists (select 1 from public.suppressions s
                             where s.user_id = v_user and s.address = pg_catalog.lower(x.address))
           ) as suppressed
      from jsonb_array_elements(p_marks) m
     where jsonb_typeof(m) = 'object'
  ),
  marked as (
    update public.email_audit_log a
       set suppressed = m.suppressed,
           status = case when not m.done then a.status
                         when cardinality(a.accepted) > 0 then 'sent'
                         else 'suppressed' end,
           completed_at = case when m.done then now() else a.completed_at end,
           lease_until = case when m.done then null else a.lease_until end,
           next_attempt_at = case when m.done then null else a.next_attempt_at end,
           duration_ms = case when m.done
                              then least(extract(epoch from (clock_timestamp() - a.created_at)) * 1000,
                                         2147483647)::integer
                              else a.duration_ms end
      from mark m
     where a.id = m.id
       and a.user_id = v_user
       -- Claimed by this worker and not started: never a row on the wire.
       and a.leased_by = p_worker
       and a.status in ('queued', 'scheduled')
       and cardinality(m.suppressed) > 0
    returning a.id, m.done
  )
  select x.id from marked x where x.done;
end
$$;

revoke all on function private.record_suppressed(jsonb, text) from public, anon, authenticated;
grant execute on function private.record_suppressed(jsonb, text) to authenticated;

-- send-email with every recipient suppressed: its audit row, final at once (nothing is sent, so
-- no budget, duplicate window or guardrail is spent on it). Only if every address given is on the
-- caller's list and the config is the caller's; the row's id.
create function private.record_suppressed_send(
  p_config_id uuid,
  p_template_id uuid,
  p_from text,
  p_to text[],
  p_cc_count integer,
  p_bcc_count integer,
  p_subject text,
  p_agent_context jsonb,
  p_idempotency_key text,
  p_suppressed text[]
)
returns uuid
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_user uuid := (select auth.uid());
  v_id uuid;
begin
  if v_user is null
     or not exists (select 1 from public.user_smtp_configs c where c.id = p_config_id and c.user_id = v_user)
     or cardinality(p_suppressed) = 0
     or exists (
       select 1 from pg_catalog.unnest(p_suppressed) a (address)
        where not exists (select 1 from public.suppressions s
                           where s.user_id = v_user and s.address = pg_catalog.lower(a.address))
     ) then
    raise exception 'not every recipient is suppressed' using errcode = '22023';
  end if;
  insert into public.email_audit_log
    (user_id, config_id, template_id, from_email, to_addresses, cc_count, bcc_count, subject, status, agent_context,
     idempotency_key, suppressed, completed_at, duration_ms)
  values (v_user, p_config_id, p_template_id, p_from, p_to, p_cc_count, p_bcc_count, left(p_subject, 998), 'suppressed',
          p_agent_context, p_idempotency_key, p_suppressed, now(), 0)
  returning id into v_id;
  return v_id;
end
$$;

revoke all on function private.record_suppressed_send(uuid, uuid, text, text[], integer, integer, text, jsonb, text,
  text[]) from public, anon, authenticated;
grant execute on function private.record_suppressed_send(uuid, uuid, text, text[], integer, integer, text, jsonb,
  text, text[]) to authenticated;

-- Whether a recipient's refusal at RCPT says its mailbox does not exist (a hard bounce), not a
-- policy refusal: enhanced codes 5.1.1 (no such mailbox), 5.1.2 (no such domain), 5.1.10
-- (null MX), or a 550 without an enhanced code whose text says the user is unknown.
create function private.is_hard_bounce(p_recipient jsonb)
returns boolean
language sql
immutable
parallel safe
set search_path = ''
as $$
  select p_recipient ->> 'status' = 'rejected'
     and (
       p_recipient ->> 'enhanced_code' in ('5.1.1', '5.1.2', '5.1.10')
       or (
         coalesce(p_recipient ->> 'enhanced_code', '') = ''
         and p_recipient ->> 'smtp_code' = '550'
         and p_recipient ->> 'response' ~* '(no such (user|mailbox|recipient|address)|user(name)? unknown|unknown (user|recipient|mailbox)|(mailbox|user|recipient|address) (does not exist|not found)|invalid (recipient|mailbox))'
       )
     )
$$;

revoke all on function private.is_hard_bounce(jsonb) from public, anon, authenticated;

-- After an outcome lists refused recipients: the hard bounces among them join the owner's
-- suppression list (unless the config turned that off), once.
create function private.suppress_hard_bounces()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if new.config_id is not null and not exists (
    select 1 from public.user_smtp_configs c where c.id = new.config_id and c.suppress_hard_bounces
  ) then
    return null;
  end if;
  -- Never at the cost of the outcome being recorded (a deadlock between two recorders of one
  -- owner's bounces, a user deleted meanwhile): the bounce is then only logged.
  begin
    insert into public.suppressions (user_id, address, reason, source, audit_id)
    select new.user_id, pg_catalog.lower(r ->> 'address'), 'hard_bounce',
           left(concat_ws(' ', r ->> 'smtp_code', r ->> 'enhanced_code', r ->> 'response'), 500), new.id
      from jsonb_array_elements(new.recipients) r
     where private.is_hard_bounce(r)
       and pg_catalog.lower(r ->> 'address') ~ '^.+@[^@\s]+$'
     order by 2
    on conflict (user_id, address) do nothing;
  exception when others then
    raise warning 'could not suppress the hard bounces of message %: % (%)', new.id, sqlerrm, sqlstate;
  end;
  return null;
end
$$;

revoke all on function private.suppress_hard_bounces() from public, anon, authenticated;

create trigger email_audit_log_suppresses_hard_bounces
  after update of recipients on public.email_audit_log
  for each row when (
    new.recipients is not null and jsonb_typeof(new.recipients) = 'array'
    and cardinality(new.rejected) > 0 and new.rejected is distinct from old.rejected
  )
  execute function private.suppress_hard_bounces();

-- Analytics count `suppressed` as a final status (a day holding it is summarized, a change to
-- it forgets its day) and in the totals; not in the success rate (nothing was tried). The two
-- functions and the trigger are as in 20261206190000 otherwise.

create or replace function private.summarize_email_stats(p_from timestamptz, p_to timestamptz)
returns integer
language plpgsql
security definer
set search_path = ''
-- JIT compiling this query costs seconds and saves nothing at these sizes.
set jit = off
as $$
declare
  v_user uuid := auth.uid();
  v_days timestamptz[];
  v_last timestamptz := least(p_to, pg_catalog.date_trunc('day', now(), 'UTC') - interval '24 hours');
begin
  if v_user is null or p_from is null or v_last is null then
    return 0;
  end if;
  -- The newest days not yet summarized whose rows are all final (a day still waiting on a row is
  -- passed over, not allowed to hold back the days before it).
  with candidates as materialized (
    select d.day
      from pg_catalog.generate_series(
             pg_catalog.date_trunc('day', p_from, 'UTC')
               + case when p_from = pg_catalog.date_trunc('day', p_from, 'UTC') then interval '0' else interval '24 hours' end,
             v_last - interval '24 hours', interval '24 hours') d (day)
     where not exists (select 1 from private.email_stats_days s where s.user_id = v_user and s.day = d.day)
       and not exists (
             select 1 from public.email_audit_log a
              where a.user_id = v_user and a.created_at >= d.day and a.created_at < d.day + interval '24 hours'
                and a.status not in ('sent', 'failed', 'unknown', 'deferred', 'cancelled', 'rejected', 'expired', 'suppressed'))
     -- A week per call, newest first (what most requests read): summarizing stays well within the
     -- statement timeout even for a busy mailbox (about 230,000 rows a week summarize in ~1 s), and
     -- the API calls this in a transaction of its own before the summary (analytics/store.ts), so
     -- each request keeps its progress even when the summary then runs out of time.
     order by d.day desc
     limit 7
  ),
  claimed as (
    insert into private.email_stats_days (user_id, day)
    select v_user, c.day from candidates c order by c.day
    on conflict do nothing
    returning day
  )
  select pg_catalog.array_agg(c.day) into v_days from claimed c;
  if v_days is null then
    return 0;
  end if;

  -- One pass over the claimed days' rows, grouped three ways.
  with f as materialized (
    select pg_catalog.date_trunc('day', a.created_at, 'UTC') as day,
           pg_catalog.date_trunc('hour', a.created_at, 'UTC') as hour,
           a.config_id, a.batch_id, a.status, a.error_class, a.to_addresses,
           case when a.status = 'sent' and a.completed_at is not null
                then (extract(epoch from (a.completed_at - coalesce(a.scheduled_at, a.created_at))) * 1000)::float8
           end as latency_ms
      from pg_catalog.unnest(v_days) d (day)
      join public.email_audit_log a
        on a.user_id = v_user and a.created_at >= d.day and a.created_at < d.day + interval '24 hours'
  ),
  hourly as (
    insert into private.email_stats_hourly (user_id, day, hour, config_id, batch_id, status, error_class, n)
    select v_user, f.day, f.hour, f.config_id, f.batch_id, f.status, f.error_class, count(*)
      from f group by f.day, f.hour, f.config_id, f.batch_id, f.status, f.error_class
  ),
  domains as (
    -- Most messages have one recipient: their domain without an unnest.
    insert into private.email_stats_domains (user_id, day, status, domain, n)
    select v_user, x.day, x.status, x.domain, count(*)
      from (
        select f.day, f.status,
               pg_catalog.lower(pg_catalog.split_part(f.to_addresses[1], '@', 2)) as domain
          from f where pg_catalog.cardinality(f.to_addresses) = 1
        union all
        select f.day, f.status, d.domain
          from f cross join lateral (
                 select distinct pg_catalog.lower(pg_catalog.split_part(t, '@', 2)) as domain
                   from pg_catalog.unnest(f.to_addresses) t) d
         where pg_catalog.cardinality(f.to_addresses) > 1
      ) x
     group by x.day, x.status, x.domain
  )
  insert into private.email_stats_latency (user_id, day, bucket, n)
  select v_user, f.day,
         case when f.latency_ms < 1 then 0
              else 1 + pg_catalog.floor(pg_catalog.ln(f.latency_ms) / pg_catalog.ln(1.02))::integer end,
         count(*)
    from f where f.latency_ms is not null
   group by 2, 3;
  return pg_catalog.cardinality(v_days);
end
$$;

create or replace function private.email_analytics(
  p_from timestamptz,
  p_to timestamptz,
  p_interval text,
  p_tz text,
  p_breakdowns text[],
  p_config uuid default null,
  p_statuses text[] default null,
  p_batch uuid default null,
  p_template uuid default null,
  p_top integer default 25,
  p_rollup boolean default true,
  p_exact_latency_rows integer default 50000
)
returns json
language plpgsql
set search_path = ''
-- The planner's estimates for the day ranges are rough: JIT would compile (seconds) for nothing.
set jit = off
as $$
declare
  v_result json;
  v_agent_keys boolean := exists (select 1 from unnest(p_breakdowns) b where b like 'agent_context.%');
  v_rollup boolean;
begin
  if p_interval is null or p_interval not in ('hour', 'day') then
    perform private.analytics_refuse('invalid_interval', 'interval must be hour or day');
  end if;
  v_rollup := p_rollup and not v_agent_keys and p_config is null and p_batch is null and p_template is null
              and private.analytics_whole_hour_zone(p_from, p_to, p_tz);
  -- Days are summarized before this (analytics/store.ts, in a transaction of their own), never
  -- here: a failure to summarize must not fail a summary, and work done here would be lost with it.
  -- Buckets, their labels and day arithmetic (23- and 25-hour days) in the caller's zone.
  perform pg_catalog.set_config('TimeZone', p_tz, true);

  with covered as materialized (
    -- Summarized days wholly inside the range (none without the rollup).
    select s.day from private.email_stats_days s
     where v_rollup and s.user_id = (select auth.uid())
       and s.day >= p_from and s.day + interval '24 hours' <= p_to
  ),
  uncovered as (
    select u.r from private.analytics_uncovered(p_from, p_to, (select array_agg(c.day) from covered c)) u (r)
  ),
  f as materialized (
    -- The rows of the days not summarized; only the columns the requested breakdowns read.
    select a.status, a.config_id, a.batch_id, a.error_class, a.created_at,
           case when 'recipient_domain' = any (p_breakdowns) then a.to_addresses end as to_addresses,
           case when v_agent_keys then a.agent_context end as agent_context,
           case when a.status = 'sent' and a.completed_at is not null
                then extract(epoch from (a.completed_at - coalesce(a.scheduled_at, a.created_at))) * 1000
           end as latency_ms
      from uncovered u
      join public.email_audit_log a on a.created_at >= lower(u.r) and a.created_at < upper(u.r)
     where (p_config is null or a.config_id = p_config)
       and (p_statuses is null or a.status = any (p_statuses))
       and (p_batch is null or a.batch_id = p_batch)
       and (p_template is null or a.template_id = p_template)
  ),
  -- Rollup keys as the rows now say them: a deleted config or batch reads as null.
  rolled_hours as materialized (
    select h.hour, c.id as config_id, b.id as batch_id, h.status, h.error_class, h.n
      from private.email_stats_hourly h
      join covered d on d.day = h.day
      left join public.user_smtp_configs c on c.id = h.config_id
      left join public.email_batches b on b.id = h.batch_id
     where h.user_id = (select auth.uid())
       and (p_statuses is null or h.status = any (p_statuses))
  ),
  -- Every count below reads these cells: the rows' and the rollup's, at the bucket's grain.
  cells as materialized (
    select f.status, f.config_id, f.batch_id, f.error_class, date_trunc(p_interval, f.created_at) as start,
           count(*)::integer as n
      from f group by 1, 2, 3, 4, 5
    union all
    select r.status, r.config_id, r.batch_id, r.error_class, date_trunc(p_interval, r.hour), sum(r.n)::integer
      from rolled_hours r group by 1, 2, 3, 4, 5
  ),
  by_status as (
    select c.status, sum(c.n)::integer as n from cells c group by c.status
  ),
  domain_cells as (
    select d.domain, f.status, count(*)::integer as n
      from f cross join lateral unnest(case cardinality(f.to_addresses)
             when 0 then '{}'::text[]
             when 1 then array[lower(split_part(f.to_addresses[1], '@', 2))]
             else array(select distinct lower(split_part(t, '@', 2)) from unnest(f.to_addresses) t)
           end) d (domain)
     where 'recipient_domain' = any (p_breakdowns)
     group by 1, 2
    union all
    select r.domain, r.status, sum(r.n)::integer
      from private.email_stats_domains r
      join covered d on d.day = r.day
     where 'recipient_domain' = any (p_breakdowns)
       and r.user_id = (select auth.uid())
       and (p_statuses is null or r.status = any (p_statuses))
     group by 1, 2
  ),
  -- Each requested breakdown grouped on its own (a false `= any` skips its scan).
  counted as (
    select 'config' as breakdown, g.key::text as key, c.name, g.total, g.sent, g.failed, g.unknown
      from (
        select x.config_id as key, sum(x.n)::integer as total,
               coalesce(sum(x.n) filter (where x.status = 'sent'), 0)::integer as sent,
               coalesce(sum(x.n) filter (where x.status = 'failed'), 0)::integer as failed,
               coalesce(sum(x.n) filter (where x.status = 'unknown'), 0)::integer as unknown
          from cells x where 'config' = any (p_breakdowns) group by x.config_id
      ) g
      left join public.user_smtp_configs c on c.id = g.key
    union all
    -- A message counts once per domain it went to (most have one recipient: no sort for those).
    select 'recipient_domain', x.domain, null, sum(x.n)::integer,
           coalesce(sum(x.n) filter (where x.status = 'sent'), 0)::integer,
           coalesce(sum(x.n) filter (where x.status = 'failed'), 0)::integer,
           coalesce(sum(x.n) filter (where x.status = 'unknown'), 0)::integer
      from domain_cells x
     group by x.domain
    union all
    select 'error_code', x.error_class, null, sum(x.n)::integer,
           coalesce(sum(x.n) filter (where x.status = 'sent'), 0)::integer,
           coalesce(sum(x.n) filter (where x.status = 'failed'), 0)::integer,
           coalesce(sum(x.n) filter (where x.status = 'unknown'), 0)::integer
      from cells x where 'error_code' = any (p_breakdowns) and x.error_class is not null
     group by x.error_class
    union all
    select 'batch', x.batch_id::text, null, sum(x.n)::integer,
           coalesce(sum(x.n) filter (where x.status = 'sent'), 0)::integer,
           coalesce(sum(x.n) filter (where x.status = 'failed'), 0)::integer,
           coalesce(sum(x.n) filter (where x.status = 'unknown'), 0)::integer
      from cells x where 'batch' = any (p_breakdowns) and x.batch_id is not null
     group by x.batch_id
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
  -- Exact percentiles when nothing is summarized or the range is small enough to read again.
  exact_latency as materialized (
    select not exists (select 1 from covered)
           or coalesce((select sum(n) from by_status), 0) <= p_exact_latency_rows as exact
  ),
  latency_values as (
    select f.latency_ms from f where f.latency_ms is not null and (select exact from exact_latency)
    union all
    select extract(epoch from (a.completed_at - coalesce(a.scheduled_at, a.created_at))) * 1000
      from covered d
      join public.email_audit_log a on a.created_at >= d.day and a.created_at < d.day + interval '24 hours'
     where (select exact from exact_latency)
       and a.status = 'sent' and a.completed_at is not null
       and (p_config is null or a.config_id = p_config)
       and (p_statuses is null or a.status = any (p_statuses))
       and (p_batch is null or a.batch_id = p_batch)
       and (p_template is null or a.template_id = p_template)
  ),
  latency_exact as (
    select count(*) as n, percentile_cont(array[0.5, 0.9, 0.99]) within group (order by v.latency_ms) as p
      from latency_values v
  ),
  -- Otherwise the histogram: the rows' latencies bucketed as the rollup's are.
  histogram as (
    select x.bucket, sum(x.n) as n, sum(sum(x.n)) over (order by x.bucket) as cum
      from (
        select case when f.latency_ms < 1 then 0 else 1 + floor(ln(f.latency_ms::float8) / ln(1.02))::integer end as bucket,
               count(*) as n
          from f where f.latency_ms is not null and not (select exact from exact_latency)
         group by 1
        union all
        select r.bucket, sum(r.n)
          from private.email_stats_latency r
          join covered d on d.day = r.day
         where not (select exact from exact_latency)
           and r.user_id = (select auth.uid())
           and (p_statuses is null or 'sent' = any (p_statuses))
         group by 1
      ) x
     group by x.bucket
  ),
  -- percentile_cont's interpolation between the order statistics k and k + 1, each read from
  -- the bucket that holds it.
  latency_approx as (
    select t.n, array_agg((
             with k as (select floor(q.p * (t.n - 1)) as k, q.p * (t.n - 1) - floor(q.p * (t.n - 1)) as frac)
             select lo.v + k.frac * (coalesce(hi.v, lo.v) - lo.v)
               from k
               cross join lateral (select private.latency_bucket_value(h.bucket) as v from histogram h
                                    where h.cum > k.k order by h.bucket limit 1) lo
               left join lateral (select private.latency_bucket_value(h.bucket) as v from histogram h
                                   where h.cum > k.k + 1 order by h.bucket limit 1) hi on true
           ) order by q.ord) as p
      from (select coalesce(sum(h.n), 0) as n from histogram h) t
      cross join unnest(array[0.5, 0.9, 0.99]) with ordinality q (p, ord)
     where t.n > 0
     group by t.n
  ),
  latency as (
    select l.n, l.p from latency_exact l where (select exact from exact_latency)
    union all
    select coalesce(a.n, 0), a.p from (select 1) one left join latency_approx a on true
     where not (select exact from exact_latency)
  )
  select json_build_object(
    'total', (select coalesce(sum(n), 0)::integer from by_status),
    'totals', (
      select json_object_agg(s.status, coalesce(b.n, 0) order by s.ord)
        from unnest(array['sent', 'failed', 'unknown', 'deferred', 'queued', 'scheduled', 'sending', 'cancelled',
                           'pending_approval', 'rejected', 'expired', 'suppressed'])
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
          select x.start, sum(x.n)::integer as total,
                 coalesce(sum(x.n) filter (where x.status = 'sent'), 0)::integer as sent,
                 coalesce(sum(x.n) filter (where x.status = 'failed'), 0)::integer as failed,
                 coalesce(sum(x.n) filter (where x.status = 'unknown'), 0)::integer as unknown
            from cells x group by 1
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

drop trigger email_audit_log_final_row_update_forgets_stats on public.email_audit_log;

create trigger email_audit_log_final_row_update_forgets_stats
  after update on public.email_audit_log
  for each row when (
    old.status in ('sent', 'failed', 'unknown', 'deferred', 'cancelled', 'rejected', 'expired', 'suppressed') and (
      new.status is distinct from old.status
      or new.error_class is distinct from old.error_class
      or new.completed_at is distinct from old.completed_at
      or new.scheduled_at is distinct from old.scheduled_at
      or new.created_at is distinct from old.created_at
      or new.user_id is distinct from old.user_id
      or new.to_addresses is distinct from old.to_addresses
      or (new.config_id is distinct from old.config_id and new.config_id is not null)
      or (new.batch_id is distinct from old.batch_id and new.batch_id is not null)
    )
  )
  execute function private.forget_email_stats_of_row();
