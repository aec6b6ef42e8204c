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
-- (Cc and Bcc included once it was sent).
create function private.audit_addresses(p_to text[], p_recipients jsonb)
returns text[]
language sql
immutable
parallel safe
set search_path = ''
as $$
  select coalesce(array_agg(distinct lower(address)), '{}')
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

alter table public.email_audit_log
  add column content jsonb,
  add constraint email_audit_log_content_size check (octet_length(content::text) <= 1048576);

comment on column public.email_audit_log.content is
  'For messages sent at once: {headers, text, html, attachments, truncated} as sent (bodies capped, attachments listed, not kept). Queued ones rebuild it from payload.';

grant insert (content) on public.email_audit_log to authenticated;
