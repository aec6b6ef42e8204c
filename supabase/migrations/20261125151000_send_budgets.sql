-- Per-config sending limits in O(1) per send, exact over any rolling window, across any
-- number of concurrent senders (send-email now, the outbox workers later).
--
-- Why: the limits were counted over the audit log under a per-config lock, which is exact
-- but grows with the day's volume (100,000 rows in the 24 h window: 26 msg/s instead of 90).
-- Now each config keeps, per window, a ring of the times of its last N sends (N = the
-- limit): send number k goes to slot k mod N, so the slot a new send would overwrite holds
-- the N-th previous send. If that one is younger than the window, N sends already fell
-- inside it: refuse, and it says exactly when the window frees up. One locked counter row
-- and one slot row per window per send, whatever the volume; the counter's row lock
-- serialises concurrent senders of that config only. Exact, unlike GCRA or fixed windows,
-- which either forbid bursts or let up to 2N through a rolling minute.

create table private.send_budgets (
  config_id uuid not null references public.user_smtp_configs (id) on delete cascade,
  per text not null,
  -- The limit the ring was laid out for; a changed limit re-lays it.
  size integer not null,
  -- How many sends the ring has taken; the next goes to slot seq % size.
  seq bigint not null default 0,
  primary key (config_id, per),
  constraint send_budgets_per check (per in ('minute', 'day')),
  constraint send_budgets_size check (size > 0)
);

create table private.send_slots (
  config_id uuid not null,
  per text not null,
  slot integer not null,
  used_at timestamptz not null,
  primary key (config_id, per, slot),
  foreign key (config_id, per) references private.send_budgets (config_id, per) on delete cascade
);

comment on table private.send_budgets is 'Per config and window: the ring of send times that rate limits are checked against.';

alter table private.send_budgets enable row level security;
alter table private.send_slots enable row level security;
revoke all on private.send_budgets, private.send_slots from public, anon, authenticated;

-- Reserve `p_count` sends through a config the caller owns, within its per-minute and
-- per-day limits; raises 429 (SQLSTATE PGRST, with Retry-After) when they do not fit.
create function private.reserve_send_slots(p_config_id uuid, p_count integer default 1)
returns void
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_config record;
  v_window record;
  v_budget private.send_budgets;
  v_newest_overwritten timestamptz;
  v_retry integer;
  v_now timestamptz := clock_timestamp();
begin
  select c.id, c.name, c.max_per_minute, c.max_per_day into v_config
    from public.user_smtp_configs c
   where c.id = p_config_id and c.user_id = (select auth.uid());
  if not found then
    raise exception 'smtp config not found' using errcode = 'P0002';
  end if;
  if p_count is null or p_count < 1 then
    raise exception 'count must be positive' using errcode = '22023';
  end if;

  -- Check every window before writing any, so a refusal leaves no trace.
  for v_window in
    select * from (values ('minute', v_config.max_per_minute, interval '1 minute'),
                          ('day', v_config.max_per_day, interval '24 hours')) w (per, size, span)
  loop
    insert into private.send_budgets (config_id, per, size) values (p_config_id, v_window.per, v_window.size)
    on conflict do nothing;
    select * into v_budget from private.send_budgets b
     where b.config_id = p_config_id and b.per = v_window.per for update;
    if v_budget.size <> v_window.size then
      v_budget := private.relay_send_slots(p_config_id, v_window.per, v_window.size);
    end if;

    if p_count > v_window.size then
      v_retry := extract(epoch from v_window.span)::integer;
    else
      -- The newest of the sends these would overwrite is the (size - count + 1)-th most recent.
      select s.used_at into v_newest_overwritten
        from private.send_slots s
       where s.config_id = p_config_id and s.per = v_window.per
         and s.slot = (v_budget.seq + p_count - 1) % v_window.size;
      v_retry := case
        when v_newest_overwritten is null or v_newest_overwritten + v_window.span <= v_now then null
        else greatest(ceil(extract(epoch from (v_newest_overwritten + v_window.span - v_now))), 1)::integer
      end;
    end if;

    if v_retry is not null then
      raise sqlstate 'PGRST' using
        message = pg_catalog.json_build_object(
          'code', 'rate_limited',
          'message', pg_catalog.format('SMTP config %s allows %s messages per %s; retry in %s s',
                                       pg_catalog.to_json(v_config.name::text), v_window.size, v_window.per, v_retry)
        )::text,
        detail = pg_catalog.json_build_object(
          'status', 429,
          'headers', pg_catalog.json_build_object('Retry-After', v_retry::text),
          'details', pg_catalog.json_build_object('config', v_config.name, 'limit', v_window.size,
                                                  'per', v_window.per, 'retry_after_seconds', v_retry)
        )::text;
    end if;
  end loop;

  for v_window in
    select b.per, b.size, b.seq from private.send_budgets b where b.config_id = p_config_id
  loop
    insert into private.send_slots (config_id, per, slot, used_at)
    select p_config_id, v_window.per, ((v_window.seq + i) % v_window.size)::integer, v_now
      from generate_series(0, p_count - 1) i
    on conflict (config_id, per, slot) do update set used_at = excluded.used_at;
    update private.send_budgets b set seq = b.seq + p_count
     where b.config_id = p_config_id and b.per = v_window.per;
  end loop;
end
$$;

-- Lay a window's ring out again for a new limit, keeping its most recent sends (oldest first).
create function private.relay_send_slots(p_config_id uuid, p_per text, p_size integer)
returns private.send_budgets
language plpgsql
set search_path = ''
as $$
declare
  v_times timestamptz[];
  v_budget private.send_budgets;
begin
  select coalesce(array_agg(recent.used_at order by recent.used_at), '{}') into v_times
    from (select s.used_at from private.send_slots s
           where s.config_id = p_config_id and s.per = p_per
           order by s.used_at desc
           limit p_size) recent;
  delete from private.send_slots s where s.config_id = p_config_id and s.per = p_per;
  insert into private.send_slots (config_id, per, slot, used_at)
  select p_config_id, p_per, (t.ordinality - 1)::integer, t.used_at
    from unnest(v_times) with ordinality as t (used_at, ordinality);
  update private.send_budgets b
     set size = p_size, seq = coalesce(array_length(v_times, 1), 0)
   where b.config_id = p_config_id and b.per = p_per
  returning * into v_budget;
  return v_budget;
end
$$;

revoke all on function private.reserve_send_slots(uuid, integer) from public, anon, authenticated;
revoke all on function private.relay_send_slots(uuid, text, integer) from public, anon, authenticated;
grant execute on function private.reserve_send_slots(uuid, integer) to authenticated;
