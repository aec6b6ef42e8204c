-- Deferred recipients of an immediate send are retried (issue 26, item 6).
--
-- Why: send-email with one recipient accepted and another deferred (4xx) answered 200, recorded
-- the message `sent`, and nothing ever tried the deferred recipient again. Now send-email hands
-- such a message to the outbox: the row keeps its id, Message-ID and Date, gets the request as
-- its payload, and goes through private.record_outbox_attempt like a worker's attempt, which
-- keeps the accepted recipients and re-queues only the deferred ones with backoff (or the
-- server's "try again in N s" hint). The caller can opt out (`retry_deferred: false`).

create function private.retry_deferred_recipients(p_audit_id uuid, p_outcome jsonb, p_payload jsonb)
returns timestamptz
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_status text;
  v_next timestamptz;
begin
  update public.email_audit_log a
     set payload = p_payload,
         payload_bytes = octet_length(p_payload::text),
         attempts = 1,
         message_id = coalesce(a.message_id, p_outcome ->> 'message_id'),
         first_attempt_at = coalesce(a.first_attempt_at, a.created_at)
   where a.id = p_audit_id
     and a.user_id = (select auth.uid())
     and a.status = 'sending'
     and a.payload is null;
  if not found then
    raise exception 'no send in flight % for this user', p_audit_id using errcode = 'P0002';
  end if;
  v_status := private.record_outbox_attempt(p_audit_id, p_outcome);
  if v_status <> 'queued' then
    return null;
  end if;
  select a.next_attempt_at into v_next from public.email_audit_log a where a.id = p_audit_id;
  return v_next;
end
$$;

revoke all on function private.retry_deferred_recipients(uuid, jsonb, jsonb) from public, anon, authenticated;
grant execute on function private.retry_deferred_recipients(uuid, jsonb, jsonb) to authenticated;
