-- A stricter approval setting now holds the mail a worker has claimed but not yet started,
-- too. It held only unclaimed rows: a row claimed at that moment stayed queued, its lease was
-- given back at the end of the run, and the next run sent it without the approval the owner
-- had just asked for. The function is as in 20261206180000 but for that.

create or replace function private.set_sending_guardrails(
  p_config_id uuid,
  p_allow_recipients text[],
  p_deny_recipients text[],
  p_max_recipients_per_request integer,
  p_approval text default null,
  p_approval_ttl_hours integer default null,
  p_approval_requires_aal2 boolean default null,
  p_max_agent_messages_per_day integer default null,
  p_approval_notify_config_id uuid default null
)
returns public.sending_guardrails
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_user uuid := auth.uid();
  v_old public.sending_guardrails;
  v_new public.sending_guardrails;
  v_allow text[] := (select array_agg(distinct p order by p) from unnest(p_allow_recipients) p);
  v_deny text[] := coalesce((select array_agg(distinct p order by p) from unnest(p_deny_recipients) p), '{}');
begin
  if v_user is null then
    perform private.raise_api_error(401, 'unauthorized', 'Sign in first');
  end if;
  perform private.own_config_for_oversight(p_config_id);
  perform private.own_config_for_oversight(p_approval_notify_config_id);
  if p_allow_recipients is not null and v_allow is null then
    v_allow := '{}';
  end if;
  select * into v_old from public.sending_guardrails g
   where g.user_id = v_user and g.config_id is not distinct from p_config_id for update;
  -- The account's guardrails and a config's both hold, so each scope is compared with what it
  -- had (an unset approval or MFA setting adds nothing to the other scope's).
  if not (v_deny @> coalesce(v_old.deny_recipients, '{}'))
     or (v_old.allow_recipients is not null and (v_allow is null or not (v_old.allow_recipients @> v_allow)))
     or (v_old.max_recipients_per_request is not null
         and (p_max_recipients_per_request is null or p_max_recipients_per_request > v_old.max_recipients_per_request))
     or array_position(array['off', 'agents', 'always'], coalesce(p_approval, 'off'))
        < array_position(array['off', 'agents', 'always'], coalesce(v_old.approval, 'off'))
     or (coalesce(v_old.approval_requires_aal2, false) and not coalesce(p_approval_requires_aal2, false))
     or (v_old.max_agent_messages_per_day is not null
         and (p_max_agent_messages_per_day is null or p_max_agent_messages_per_day > v_old.max_agent_messages_per_day))
     -- Where the owner's notices go, and how long a held send may wait, are the owner's to say.
     or p_approval_notify_config_id is distinct from v_old.approval_notify_config_id
     or p_approval_ttl_hours is distinct from v_old.approval_ttl_hours then
    perform private.require_first_party('Loosening guardrails');
    perform private.require_mfa_where_asked(p_config_id, 'Loosening guardrails');
  end if;
  insert into public.sending_guardrails as g
    (user_id, config_id, allow_recipients, deny_recipients, max_recipients_per_request, approval, approval_ttl_hours,
     approval_requires_aal2, max_agent_messages_per_day, approval_notify_config_id)
  values (v_user, p_config_id, v_allow, v_deny, p_max_recipients_per_request, p_approval, p_approval_ttl_hours,
          p_approval_requires_aal2, p_max_agent_messages_per_day, p_approval_notify_config_id)
  on conflict (user_id, config_id) do update
    set allow_recipients = excluded.allow_recipients,
        deny_recipients = excluded.deny_recipients,
        max_recipients_per_request = excluded.max_recipients_per_request,
        approval = excluded.approval,
        approval_ttl_hours = excluded.approval_ttl_hours,
        approval_requires_aal2 = excluded.approval_requires_aal2,
        max_agent_messages_per_day = excluded.max_agent_messages_per_day,
        approval_notify_config_id = excluded.approval_notify_config_id,
        updated_at = now()
  returning * into v_new;
  -- A stricter approval holds what already waits to be sent too, not only what comes next:
  -- also what a worker has claimed but not started (its lease is taken back; the worker's
  -- start_outbox_sends then finds the row no longer queued and sends nothing).
  if array_position(array['off', 'agents', 'always'], coalesce(p_approval, 'off'))
     > array_position(array['off', 'agents', 'always'], coalesce(v_old.approval, 'off')) then
    update public.email_audit_log a
       set status = 'pending_approval', approval_reason = p_approval, lease_until = null, leased_by = null,
           first_attempt_at = case when a.lease_until is not null and a.attempts = 0 then null
                                   else a.first_attempt_at end,
           approval_expires_at = now() + private.approval_ttl(v_user, a.config_id),
           held_sender = (select jsonb_build_object('from_email', c.from_email, 'from_name', c.from_name)
                            from public.user_smtp_configs c where c.id = a.config_id),
           held_template_version = (select t.updated_at from public.email_templates t where t.id = a.template_id),
           approval_requires_aal2 = private.approval_needs_mfa(v_user, a.config_id)
     where a.user_id = v_user and a.status in ('queued', 'scheduled')
       and not a.approval_notice
       and (p_config_id is null or a.config_id = p_config_id)
       and (p_approval = 'always' or a.client_id is not null or a.via is not null);
  end if;
  insert into public.oversight_events (user_id, config_id, action, actor, details)
  values (v_user, p_config_id, 'guardrails_changed', private.oversight_actor(), jsonb_build_object(
    'before', case when v_old.user_id is null then null else jsonb_strip_nulls(jsonb_build_object(
      'allow_recipients', v_old.allow_recipients, 'deny_recipients', v_old.deny_recipients,
      'max_recipients_per_request', v_old.max_recipients_per_request, 'approval', v_old.approval,
      'approval_ttl_hours', v_old.approval_ttl_hours, 'approval_requires_aal2', v_old.approval_requires_aal2,
      'max_agent_messages_per_day', v_old.max_agent_messages_per_day)) end,
    'after', jsonb_strip_nulls(jsonb_build_object(
      'allow_recipients', v_new.allow_recipients, 'deny_recipients', v_new.deny_recipients,
      'max_recipients_per_request', v_new.max_recipients_per_request, 'approval', v_new.approval,
      'approval_ttl_hours', v_new.approval_ttl_hours, 'approval_requires_aal2', v_new.approval_requires_aal2,
      'max_agent_messages_per_day', v_new.max_agent_messages_per_day))));
  return v_new;
end
$$;
