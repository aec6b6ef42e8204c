-- What the dashboard's message list and detail need, with 10^6 audit rows behind them.
--
-- Filters: `recipient` (any To address or envelope recipient, case-insensitive), `agent`
-- (agent_context.agent) and `client_id` (the OAuth client that sent), each with an index so a
-- rare value is found without reading a user's whole log.
--
-- Content: a message sent at once (not through the outbox) keeps what it said for 30 days: its
-- header block, text and HTML parts (capped), and its attachments by name, type and size (never
-- their bytes). A queued message keeps its request as `payload` already; its content is rebuilt
-- from it.

-- Every address a row names, lower-cased: its To addresses and the recipients of its outcome
-- (Cc and Bcc included once it was sent). Repeats are left in: a GIN index keeps each key once.
create function private.audit_addresses(p_to text[], p_recipients jsonb)
returns text[]
language sql
immutable
parallel safe
set search_path = ''
as $$
  select coalesce(array_agg(lower(address)), '{}')
    from (
      select unnest(p_to) as address
      union all
      select r ->> 'address' from jsonb_array_elements(coalesce(p_recipients, '[]'::jsonb)) r
    ) named
   where address is not null
$$;

revoke all on function private.audit_addresses(text[], jsonb) from public, anon, authenticated;
grant execute on function private.audit_addresses(text[], jsonb) to authenticated;

create index email_audit_log_addresses on public.email_audit_log
  using gin (private.audit_addresses(to_addresses, recipients));

-- The filter takes at most 200 characters; an agent_context.agent may be longer (up to the
-- context's 8 KiB), more than a btree entry holds: the index keeps its first 200.
create index email_audit_log_by_agent on public.email_audit_log
  (user_id, (left(agent_context ->> 'agent', 200)), created_at desc, id desc)
  where agent_context ->> 'agent' is not null;

create index email_audit_log_by_client on public.email_audit_log (user_id, client_id, created_at desc, id desc)
  where client_id is not null;

-- A page of the caller's message ids with a recipient or agent filter, newest first. Under row
-- level security a query's own conditions may use an index only when their operators are
-- leakproof, and `@>` and `->>` are not: through RLS these two filters would read a user's whole
-- log to find a rare value. This runs as its owner, limited to the caller's rows by its first
-- condition, with only the filters given (dynamic SQL planned with their values), so the planner
-- picks the index for a rare value and the time-ordered walk for a common one. The caller then
-- reads the rows by id, under RLS.
create function private.filtered_message_ids(
  p_from timestamptz,
  p_to timestamptz,
  p_config_id uuid,
  p_statuses text[],
  p_batch_id uuid,
  p_template_id uuid,
  p_recipient text,
  p_agent text,
  p_client_id text,
  p_after_at timestamptz,
  p_after_id uuid,
  p_limit integer
)
returns setof uuid
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  v_user uuid := (select auth.uid());
begin
  if v_user is null then
    return;
  end if;
  return query execute
    'select a.id from public.email_audit_log a
      where a.user_id = $1 and a.created_at >= $2 and a.created_at < $3'
    || case when p_config_id is null then '' else ' and a.config_id = $4' end
    || case when p_statuses is null then '' else ' and a.status = any ($5)' end
    || case when p_batch_id is null then '' else ' and a.batch_id = $6' end
    || case when p_template_id is null then '' else ' and a.template_id = $7' end
    || case when p_recipient is null then ''
            else ' and private.audit_addresses(a.to_addresses, a.recipients) @> array[pg_catalog.lower($8)]' end
    || case when p_agent is null then ''
            else ' and left(a.agent_context ->> ''agent'', 200) = $9 and a.agent_context ->> ''agent'' = $9' end
    || case when p_client_id is null then '' else ' and a.client_id = $10' end
    || case when p_after_at is null then '' else ' and (a.created_at, a.id) < ($11, $12)' end
    || ' order by a.created_at desc, a.id desc limit $13'
    using v_user, p_from, p_to, p_config_id, p_statuses, p_batch_id, p_template_id, p_recipient, p_agent,
          p_client_id, p_after_at, p_after_id, least(greatest(p_limit, 1), 201);
end
$$;

revoke all on function private.filtered_message_ids(timestamptz, timestamptz, uuid, text[], uuid, uuid, text, text,
  text, timestamptz, uuid, integer) from public, anon, authenticated;
grant execute on function private.filtered_message_ids(timestamptz, timestamptz, uuid, text[], uuid, uuid, text,
  text, text, timestamptz, uuid, integer) to authenticated;

-- What a message sent at once said, in a table of its own: an agent (a token with `client_id`)
-- reads the content of its own sends only, never what the owner or another agent sent
-- (password resets, sign-in links), through the functions or the Data API alike. Kept 30 days
-- (private.forget_old_message_contents, run by the outbox worker), then only the audit row stays.
create table public.message_contents (
  audit_id uuid primary key references public.email_audit_log (id) on delete cascade,
  user_id uuid not null default auth.uid() references auth.users (id) on delete cascade,
  client_id text default (auth.jwt() ->> 'client_id'),
  content jsonb not null,
  created_at timestamptz not null default now(),
  constraint message_contents_size check (octet_length(content::text) <= 1048576)
);

comment on table public.message_contents is
  'For messages sent at once: {cc, bcc, headers, text, html, attachments, truncated} as sent (bodies capped, attachments listed, not kept); 30 days.';

create index message_contents_user on public.message_contents (user_id);
create index message_contents_created on public.message_contents (created_at);

alter table public.message_contents enable row level security;

revoke all on public.message_contents from anon, authenticated;
grant select on public.message_contents to authenticated;
grant insert (audit_id, content) on public.message_contents to authenticated;

create policy "owner reads contents, an agent those of its own sends"
  on public.message_contents for select to authenticated
  using (
    user_id = (select auth.uid())
    and (((select auth.jwt()) ->> 'client_id') is null or client_id = ((select auth.jwt()) ->> 'client_id'))
  );

-- Written by the statement that writes the audit row (a CTE), whose row no subquery here can see
-- yet: the foreign key checks the row exists, and readers join on both the id and the owner, so
-- a row naming another user's message is never shown to anyone.
create policy "owner records the content of its own messages"
  on public.message_contents for insert to authenticated
  with check (
    user_id = (select auth.uid())
    and client_id is not distinct from ((select auth.jwt()) ->> 'client_id')
  );

-- Contents older than 30 days, a bounded slice at a time; how many were forgotten.
create function private.forget_old_message_contents()
returns integer
language sql
security definer
set search_path = ''
as $$
  with old as (
    select m.audit_id from public.message_contents m
     where m.created_at < now() - interval '30 days'
     order by m.created_at
     limit 5000
  ),
  gone as (
    delete from public.message_contents m using old where m.audit_id = old.audit_id returning 1
  )
  select count(*)::integer from gone
$$;

revoke all on function private.forget_old_message_contents() from public, anon, authenticated;
