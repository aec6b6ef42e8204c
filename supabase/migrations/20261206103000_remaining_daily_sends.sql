-- How many more messages a config may send in the rolling day, for the caller's own config:
-- send-bulk warns at accept when a batch (with what already waits) exceeds it, instead of the
-- batch sitting at `queued` with no end in sight (issue 26, item 9). Reads the config's
-- per-day ring (20261125151000_send_budgets.sql); a config that never sent has its whole limit.

create function private.remaining_daily_sends(p_config_id uuid)
returns integer
language sql
stable
security definer
set search_path = ''
as $$
  select greatest(c.max_per_day - (
           select count(*) from private.send_slots s
            where s.config_id = c.id and s.per = 'day' and s.used_at > now() - interval '24 hours'
         ), 0)::integer
    from public.user_smtp_configs c
   where c.id = p_config_id and c.user_id = (select auth.uid())
$$;

revoke all on function private.remaining_daily_sends(uuid) from public, anon, authenticated;
grant execute on function private.remaining_daily_sends(uuid) to authenticated;
