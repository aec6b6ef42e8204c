-- What the dashboard's message list and detail need, with 10^6 audit rows behind them.
--
-- Filters: `recipient` (any To address or envelope recipient, case-insensitive), `agent`
-- (agent_context.agent) and `client_id` (the OAuth client that sent), each with an index so a
-- rare value is found without reading a user's whole log.
--
-- Content: a message sent at once (not through the outbox) keeps what it said: its header block,
-- text and HTML parts (each capped), and its attachments by name, type and size (never their
-- bytes). A queued message keeps its request as `payload` already; its content is rebuilt from it.

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

create index email_audit_log_by_agent on public.email_audit_log
  (user_id, (agent_context ->> 'agent'), created_at desc, id desc)
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
    || case when p_agent is null then '' else ' and a.agent_context ->> ''agent'' = $9' end
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

alter table public.email_audit_log
  add column content jsonb,
  add constraint email_audit_log_content_size check (octet_length(content::text) <= 1048576);

comment on column public.email_audit_log.content is
  'For messages sent at once: {headers, text, html, attachments, truncated} as sent (bodies capped, attachments listed, not kept). Queued ones rebuild it from payload.';

grant insert (content) on public.email_audit_log to authenticated;
