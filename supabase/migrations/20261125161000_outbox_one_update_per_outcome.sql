-- One new version of the audit row per recorded outcome instead of two: record_email_outcome
-- also clears the lease and takes what was actually sent (`sent`: {to, cc_count, bcc_count,
-- subject}) in its one UPDATE, so record_outbox_attempt no longer updates the row again. Every
-- update of this row writes an entry in each of its indexes (status and the lease are in
-- partial indexes, so none is HOT): the outbox worker's cost in Postgres is mostly these.

-- Record the outcome of an in-flight send, once. Finished rows are immutable.
-- p_outcome: {status, message_id?, recipients?: [...], error_class?, error_message?,
--             smtp_response_code?, smtp_enhanced_code?, smtp_response?, retryable?,
--             sent?: {to, cc_count, bcc_count, subject}}
create or replace function private.record_email_outcome(p_audit_id uuid, p_outcome jsonb)
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
         lease_until = null,
         -- What was actually sent, when the caller says (the outbox builds it from the payload).
         to_addresses = case when p_outcome -> 'sent' ? 'to'
                             then array(select jsonb_array_elements_text(p_outcome -> 'sent' -> 'to'))
                             else a.to_addresses end,
         cc_count = coalesce((p_outcome -> 'sent' ->> 'cc_count')::integer, a.cc_count),
         bcc_count = coalesce((p_outcome -> 'sent' ->> 'bcc_count')::integer, a.bcc_count),
         subject = case when p_outcome -> 'sent' ? 'subject' then left(p_outcome -> 'sent' ->> 'subject', 998)
                        else a.subject end,
         duration_ms = least(extract(epoch from (clock_timestamp() - a.created_at)) * 1000, 2147483647)::integer
   where a.id = p_audit_id
     and a.user_id = (select auth.uid())
     and a.status = 'sending';
  if not found then
    raise exception 'no in-flight audit row % for this user', p_audit_id using errcode = 'P0002';
  end if;
end
$$;

-- As before (see 20261125152000_outbox.sql), recording the outcome in one update.
create or replace function private.record_outbox_attempt(p_audit_id uuid, p_outcome jsonb)
returns text
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_row public.email_audit_log;
  v_recipients jsonb;
  v_deferred integer;
  v_status text := p_outcome ->> 'status';
  v_delay double precision;
begin
  select * into v_row from public.email_audit_log a
   where a.id = p_audit_id and a.user_id = (select auth.uid()) and a.status = 'sending'
     for update;
  if not found then
    raise exception 'no in-flight outbox row % for this user', p_audit_id using errcode = 'P0002';
  end if;

  -- Earlier attempts' accepted (and refused) recipients stand; this attempt's results replace the rest.
  select coalesce(jsonb_agg(r order by r ->> 'address'), '[]'::jsonb) into v_recipients
    from (
      select r from jsonb_array_elements(coalesce(v_row.recipients, '[]'::jsonb)) r
       where r ->> 'status' in ('accepted', 'rejected', 'unknown')
         and not exists (select 1 from jsonb_array_elements(coalesce(p_outcome -> 'recipients', '[]')) n
                          where n ->> 'address' = r ->> 'address')
      union all
      select n from jsonb_array_elements(coalesce(p_outcome -> 'recipients', '[]')) n
    ) merged (r);
  select count(*) into v_deferred from jsonb_array_elements(v_recipients) r where r ->> 'status' = 'deferred';

  if v_status = 'deferred' or (v_deferred > 0 and v_status <> 'unknown') then
    if v_row.created_at > now() - interval '24 hours' then
      v_delay := least(60 * power(2, greatest(v_row.attempts - 1, 0)), 3600) * (0.8 + random() * 0.4);
      v_delay := greatest(v_delay, coalesce((p_outcome ->> 'retry_after_seconds')::double precision, 0));
      update public.email_audit_log a
         set status = 'queued', recipients = v_recipients,
             next_attempt_at = now() + make_interval(secs => v_delay),
             lease_until = null, leased_by = null,
             error_class = p_outcome ->> 'error_class', error_message = left(p_outcome ->> 'error_message', 1000),
             smtp_response_code = (p_outcome ->> 'smtp_response_code')::integer,
             smtp_enhanced_code = left(p_outcome ->> 'smtp_enhanced_code', 16),
             smtp_response = left(p_outcome ->> 'smtp_response', 1000), retryable = true
       where a.id = p_audit_id;
      return 'queued';
    end if;
    -- Out of time: what is still deferred has failed.
    p_outcome := jsonb_set(p_outcome, '{error_class}', '"expired"');
    p_outcome := jsonb_set(p_outcome, '{retryable}', 'false');
    v_recipients := (
      select jsonb_agg(case when r ->> 'status' = 'deferred' then jsonb_set(r, '{status}', '"rejected"') else r end)
        from jsonb_array_elements(v_recipients) r
    );
  end if;

  v_status := case
    when exists (select 1 from jsonb_array_elements(v_recipients) r where r ->> 'status' = 'accepted') then 'sent'
    when v_status = 'unknown' then 'unknown'
    else 'failed'
  end;
  perform private.record_email_outcome(p_audit_id,
    p_outcome || jsonb_build_object('status', v_status, 'recipients', v_recipients, 'message_id', v_row.message_id));
  return v_status;
end
$$;

