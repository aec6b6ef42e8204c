-- SMTP outcomes as mail servers mean them: the audit row keeps what the server said to each
-- recipient (accepted, rejected, deferred, unknown with code, enhanced code and reply), the
-- message's status (a temporary refusal is `deferred`, not `failed`), whether a retry can
-- succeed, and the Message-ID for every outcome, `unknown` included (the one value that
-- lets the user check whether it arrived before resending).
--
-- The outcome is one jsonb document, recorded once by private.record_email_outcome; the
-- accepted/rejected/deferred arrays are derived from it so queries on them keep working.

alter table public.email_audit_log
  add column recipients jsonb,
  add column deferred text[] not null default '{}',
  add column smtp_enhanced_code text,
  add column smtp_response text,
  add column retryable boolean,
  drop constraint email_audit_log_status,
  add constraint email_audit_log_status check (
    status in ('scheduled', 'queued', 'sending', 'sent', 'deferred', 'failed', 'unknown')
  ),
  add constraint email_audit_log_recipients_shape check (
    recipients is null or (jsonb_typeof(recipients) = 'array' and jsonb_array_length(recipients) <= 1000)
  ),
  add constraint email_audit_log_smtp_response_length check (char_length(smtp_response) <= 1000);

comment on column public.email_audit_log.recipients is
  'Per recipient: {address, status: accepted|rejected|deferred|unknown, smtp_code, enhanced_code, response}.';

drop function private.record_email_outcome(uuid, text, text, text[], text[], text, text, integer);

-- Record the outcome of an in-flight send, once. Finished rows are immutable.
-- p_outcome: {status, message_id?, recipients?: [...], error_class?, error_message?,
--             smtp_response_code?, smtp_enhanced_code?, smtp_response?, retryable?}
create function private.record_email_outcome(p_audit_id uuid, p_outcome jsonb)
returns void
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_status text := p_outcome ->> 'status';
  v_recipients jsonb := p_outcome -> 'recipients';
begin
  if v_status is null or v_status not in ('sent', 'deferred', 'failed', 'unknown') then
    raise exception 'outcome status must be sent, deferred, failed or unknown' using errcode = '22023';
  end if;
  if v_recipients is not null and (
    jsonb_typeof(v_recipients) <> 'array'
    or exists (
      select 1 from jsonb_array_elements(v_recipients) r
       where jsonb_typeof(r) <> 'object'
          or (r ->> 'address') is null
          or (r ->> 'status') not in ('accepted', 'rejected', 'deferred', 'unknown')
    )
  ) then
    raise exception 'recipients must be a list of {address, status}' using errcode = '22023';
  end if;

  update public.email_audit_log a
     set status = v_status,
         message_id = left(p_outcome ->> 'message_id', 998),
         recipients = v_recipients,
         accepted = coalesce(array(
           select r ->> 'address' from jsonb_array_elements(v_recipients) r where r ->> 'status' = 'accepted'
         ), '{}'),
         rejected = coalesce(array(
           select r ->> 'address' from jsonb_array_elements(v_recipients) r where r ->> 'status' = 'rejected'
         ), '{}'),
         deferred = coalesce(array(
           select r ->> 'address' from jsonb_array_elements(v_recipients) r where r ->> 'status' = 'deferred'
         ), '{}'),
         error_class = p_outcome ->> 'error_class',
         error_message = left(p_outcome ->> 'error_message', 1000),
         smtp_response_code = (p_outcome ->> 'smtp_response_code')::integer,
         smtp_enhanced_code = left(p_outcome ->> 'smtp_enhanced_code', 16),
         smtp_response = left(p_outcome ->> 'smtp_response', 1000),
         retryable = (p_outcome ->> 'retryable')::boolean,
         completed_at = now(),
         duration_ms = least(extract(epoch from (clock_timestamp() - a.created_at)) * 1000, 2147483647)::integer
   where a.id = p_audit_id
     and a.user_id = (select auth.uid())
     and a.status = 'sending';
  if not found then
    raise exception 'no in-flight audit row % for this user', p_audit_id using errcode = 'P0002';
  end if;
end
$$;

revoke all on function private.record_email_outcome(uuid, jsonb) from public, anon, authenticated;
grant execute on function private.record_email_outcome(uuid, jsonb) to authenticated;
