-- A message waiting for deferred recipients says so (issue 26, item 9).
--
-- Why: a partly delivered message (one recipient accepted, one deferred by the server) went
-- back to the queue with its per-recipient outcomes in `recipients` but `accepted: {}`, and
-- with no error when the attempt as a whole had succeeded, so progress showed `queued` and no
-- reason. Now the re-queue writes accepted/rejected/deferred like a final outcome does, and a
-- waiting row carries why it waits: the attempt's error, else `smtp_recipients_deferred` with
-- the first deferred recipient's reply. (private.retry_deferred_recipients goes through here.)

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
  v_first_deferred jsonb;
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
      -- The first deferred recipient's reply says why it waits when the attempt as a whole
      -- succeeded (some recipients accepted) and so carries no error of its own.
      select r into v_first_deferred from jsonb_array_elements(v_recipients) r
       where r ->> 'status' = 'deferred' limit 1;
      update public.email_audit_log a
         set status = 'queued', recipients = v_recipients,
             accepted = coalesce(array(select r ->> 'address' from jsonb_array_elements(v_recipients) r
                                        where r ->> 'status' = 'accepted'), '{}'),
             rejected = coalesce(array(select r ->> 'address' from jsonb_array_elements(v_recipients) r
                                        where r ->> 'status' = 'rejected'), '{}'),
             deferred = coalesce(array(select r ->> 'address' from jsonb_array_elements(v_recipients) r
                                        where r ->> 'status' = 'deferred'), '{}'),
             next_attempt_at = now() + make_interval(secs => v_delay),
             lease_until = null, leased_by = null,
             error_class = coalesce(p_outcome ->> 'error_class', 'smtp_recipients_deferred'),
             error_message = left(coalesce(p_outcome ->> 'error_message',
                                           'The SMTP server temporarily refused some recipients'), 1000),
             smtp_response_code = coalesce(case when p_outcome ->> 'error_class' is not null
                                                then (p_outcome ->> 'smtp_response_code')::integer end,
                                           (v_first_deferred ->> 'smtp_code')::integer),
             smtp_enhanced_code = left(coalesce(case when p_outcome ->> 'error_class' is not null
                                                     then p_outcome ->> 'smtp_enhanced_code' end,
                                                v_first_deferred ->> 'enhanced_code'), 16),
             smtp_response = left(coalesce(case when p_outcome ->> 'error_class' is not null
                                                then p_outcome ->> 'smtp_response' end,
                                           v_first_deferred ->> 'response'), 1000),
             retryable = true
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

revoke all on function private.record_outbox_attempt(uuid, jsonb) from public, anon, authenticated;
grant execute on function private.record_outbox_attempt(uuid, jsonb) to authenticated;
