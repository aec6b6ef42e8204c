-- Human oversight, part two: sends that wait for the owner's approval.
--
-- A guardrail `approval` (per account and per config; the stricter holds) says which sends
-- wait: `off` (none), `agents` (sends made with an OAuth client's token, one with a `client_id`
-- claim, and sends through the MCP and LangChain tools, which say so in their claims as
-- `mailroom_via`), or `always`. A send that must wait is accepted fully validated and rendered
-- as status `pending_approval`: the trigger that prepares queued rows decides it, so every path
-- into the outbox waits, the Data API's included; an immediate send that must wait is refused
-- in the database, so no path can skip the queue. Approving puts the message into the outbox
-- (it then goes as any queued mail, with the Message-ID it was given at accept); rejecting and
-- expiry end it. Only the owner's first-party session may decide, with MFA (aal2) where the
-- guardrails ask for it; an agent never can.

alter table public.sending_guardrails
  -- The config that mails the owner a notice when a send is held (account scope only).
  add column approval_notify_config_id uuid references public.user_smtp_configs (id) on delete set null,
  add constraint sending_guardrails_notify_scope check (approval_notify_config_id is null or config_id is null),
  add column max_agent_messages_per_day integer,
  add constraint sending_guardrails_agent_cap check (max_agent_messages_per_day between 0 and 1000000),
  add column approval text,
  add column approval_ttl_hours integer,
  add column approval_requires_aal2 boolean,
  add constraint sending_guardrails_approval check (approval in ('off', 'agents', 'always')),
  add constraint sending_guardrails_approval_ttl check (approval_ttl_hours between 1 and 720);

create index sending_guardrails_notify_config on public.sending_guardrails (approval_notify_config_id)
  where approval_notify_config_id is not null;

comment on column public.sending_guardrails.approval is
  'Which sends wait for the owner''s approval: off, agents (OAuth clients'' tokens and the agent tools) or always; '
  'null on a config: the account''s.';

alter table public.email_audit_log
  -- The OAuth client whose token made the send (an agent), from the token itself.
  add column client_id text,
  -- The agent tool the send came through (`mailroom_via`: mcp, langchain), as the functions said.
  add column via text,
  -- A notice to the owner that something waits for them (private.queue_approval_notice): never held itself.
  add column approval_notice boolean not null default false,
  -- What the owner approves, fixed when the send was held: the sender and the template's version
  -- (the worker refuses to send if either changed since), and whether deciding needs MFA.
  add column held_sender jsonb,
  add column held_template_version timestamptz,
  add column approval_requires_aal2 boolean,
  add column approval_reason text,
  add column approval_expires_at timestamptz,
  drop constraint email_audit_log_status,
  add constraint email_audit_log_status check (
    status in ('scheduled', 'queued', 'sending', 'sent', 'deferred', 'failed', 'unknown', 'cancelled',
               'pending_approval', 'rejected', 'expired')
  ),
  add constraint email_audit_log_approval_reason check (approval_reason in ('agents', 'always'));

comment on column public.email_audit_log.client_id is
  'The OAuth client (an agent) whose token made this send, as its token said; null for the owner''s own session.';

create index email_audit_log_pending_approval on public.email_audit_log (user_id, created_at, id)
  where status = 'pending_approval';
create index email_audit_log_approval_expiry on public.email_audit_log (approval_expires_at)
  where status = 'pending_approval';

alter table public.oversight_events
  drop constraint oversight_events_action,
  add constraint oversight_events_action check (
    action in ('guardrails_changed', 'sending_stopped', 'sending_resumed', 'guardrails_removed', 'approved', 'rejected',
               'expired')
  );

-- The guardrails' setter takes the approval settings too. An agent may only tighten: approval
-- off < agents < always, MFA to approve kept once asked for (a shorter or longer wait for a
-- decision changes nothing an agent could use).
drop function private.set_sending_guardrails(uuid, text[], text[], integer);

create function private.set_sending_guardrails(
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
  -- A stricter approval holds what already waits to be sent too, not only what comes next.
  if array_position(array['off', 'agents', 'always'], coalesce(p_approval, 'off'))
     > array_position(array['off', 'agents', 'always'], coalesce(v_old.approval, 'off')) then
    update public.email_audit_log a
       set status = 'pending_approval', approval_reason = p_approval,
           approval_expires_at = now() + private.approval_ttl(v_user, a.config_id),
           held_sender = (select jsonb_build_object('from_email', c.from_email, 'from_name', c.from_name)
                            from public.user_smtp_configs c where c.id = a.config_id),
           held_template_version = (select t.updated_at from public.email_templates t where t.id = a.template_id),
           approval_requires_aal2 = private.approval_needs_mfa(v_user, a.config_id)
     where a.user_id = v_user and a.status in ('queued', 'scheduled') and a.lease_until is null
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

-- Whether deciding on the owner's sends through the config needs MFA (either scope asks).
create function private.approval_needs_mfa(p_user_id uuid, p_config_id uuid)
returns boolean
language sql
stable
security definer
set search_path = ''
as $$
  select exists (
    select 1 from public.sending_guardrails g
     where g.user_id = p_user_id and (g.config_id is null or g.config_id = p_config_id) and g.approval_requires_aal2
  )
$$;

-- Where the owner asked for MFA to decide on sends, loosening anything that guards them needs
-- it too (else a one-factor session would switch MFA off and then approve).
create function private.require_mfa_where_asked(p_config_id uuid, p_what text)
returns void
language plpgsql
stable
set search_path = ''
as $$
begin
  if coalesce(auth.jwt() ->> 'aal', 'aal1') <> 'aal2' and private.approval_needs_mfa(auth.uid(), p_config_id) then
    perform private.raise_api_error(403, 'mfa_required',
      p_what || ' needs a session with multi-factor authentication (aal2), as the guardrails ask; sign in with your '
        || 'second factor and try again');
  end if;
end
$$;

-- Whether a send through the config must wait, and why ('agents' or 'always'), or null.
create function private.approval_required(p_config_id uuid)
returns text
language sql
stable
security definer
set search_path = ''
as $$
  -- The stricter of the account's setting and the config's.
  select case (array['off', 'agents', 'always'])[max(array_position(array['off', 'agents', 'always'], g.approval))]
    when 'always' then 'always'
    when 'agents' then case when auth.jwt() ->> 'client_id' is not null or auth.jwt() ->> 'mailroom_via' is not null
                            then 'agents' end
  end
  from public.sending_guardrails g
  where g.user_id = auth.uid() and (g.config_id is null or g.config_id = p_config_id)
$$;

-- How long a pending send waits for a decision: the config's setting, the account's, or 72 hours.
create function private.approval_ttl(p_user_id uuid, p_config_id uuid)
returns interval
language sql
stable
security definer
set search_path = ''
as $$
  select make_interval(hours => coalesce(
    (select g.approval_ttl_hours from public.sending_guardrails g where g.user_id = p_user_id and g.config_id = p_config_id),
    (select g.approval_ttl_hours from public.sending_guardrails g where g.user_id = p_user_id and g.config_id is null),
    72))
$$;

-- Queued rows: as before (20261206100000), and a send that must wait for approval waits.
create or replace function private.prepare_outbox_row() returns trigger
language plpgsql
set search_path = ''
as $$
declare
  v_config record;
  v_approval text;
  v_refusal jsonb;
begin
  -- Who made the send (an owner's notice is nobody's agent's).
  new.client_id := case when new.approval_notice then null else auth.jwt() ->> 'client_id' end;
  new.via := case when new.approval_notice then null else left(auth.jwt() ->> 'mailroom_via', 40) end;
  -- Nobody inserts a decision: a row said to wait is a queued row like any other, and waits
  -- only if the guardrails say so.
  if new.status = 'pending_approval' then
    new.status := 'queued';
  end if;
  if new.status in ('queued', 'scheduled') then
    if new.config_id is null then
      select c.id into new.config_id from public.user_smtp_configs c
       where c.user_id = new.user_id and c.is_default;
    end if;
    select c.from_email, c.from_name, c.needs_attention into v_config
      from public.user_smtp_configs c where c.id = new.config_id;
    -- The sender is the config's, whatever the inserted row says (the Data API can insert too).
    new.from_email := coalesce(v_config.from_email, new.from_email);
    new.attempts := 0;
    new.lease_losses := 0;
    -- What the worker will hold for it: the payload as it arrives (text, never the compressed
    -- or compact stored form) and, for a batch's recipient, the batch's shared content.
    new.payload_bytes := coalesce(octet_length(new.payload::text), 0)
      + coalesce((select b.content_bytes from public.email_batches b where b.id = new.batch_id), 0);
    new.message_id := '<' || new.id::text || '@' || lower(split_part(new.from_email, '@', 2)) || '>';
    new.status := case when new.scheduled_at > now() then 'scheduled' else 'queued' end;
    new.next_attempt_at := case
      when v_config.needs_attention is not null then 'infinity'
      else greatest(coalesce(new.scheduled_at, now()), now())
    end;
    new.lease_until := null;
    new.leased_by := null;
    -- An agent's insert the functions did not count (the Data API's) is counted here, row by row.
    if not new.approval_notice and (new.client_id is not null or new.via is not null)
       and coalesce(current_setting('mailroom.agent_budget_counted', true), '') <> 'yes' then
      v_refusal := private.agent_budget_refusal(new.config_id, 1, true);
      if v_refusal is not null then
        perform private.raise_api_error((v_refusal ->> 'status')::integer, v_refusal ->> 'code',
                                        v_refusal ->> 'message', v_refusal -> 'details');
      end if;
    end if;
    v_approval := case when new.approval_notice then null else private.approval_required(new.config_id) end;
    if v_approval is not null then
      new.status := 'pending_approval';
      new.approval_reason := v_approval;
      new.approval_expires_at := now() + private.approval_ttl(new.user_id, new.config_id);
      new.held_sender := jsonb_build_object('from_email', v_config.from_email, 'from_name', v_config.from_name);
      new.held_template_version := (select t.updated_at from public.email_templates t where t.id = new.template_id);
      new.approval_requires_aal2 := private.approval_needs_mfa(new.user_id, new.config_id);
    end if;
  elsif new.status = 'sending' then
    -- An immediate send goes only where no approval is needed; the functions queue the others.
    v_approval := private.approval_required(new.config_id);
    if v_approval is not null then
      perform private.raise_api_error(409, 'approval_required',
        'This send must wait for the owner''s approval; queue it (the functions do) instead of sending it now',
        jsonb_build_object('reason', v_approval));
    end if;
  end if;
  return new;
end
$$;

alter policy "owner can record own sends in flight" on public.email_audit_log
  with check (
    user_id = (select auth.uid())
    and status in ('scheduled', 'queued', 'sending', 'pending_approval')
    and completed_at is null
    -- Queued rows carry the Message-ID the trigger fixed; in-flight sends get theirs at the outcome.
    and (message_id is null or status in ('scheduled', 'queued', 'pending_approval'))
    -- Only queued rows carry something for the worker to send.
    and (status in ('scheduled', 'queued', 'pending_approval')
         or (payload is null and batch_id is null and scheduled_at is null))
    and (
      config_id is null
      or exists (
        select 1 from public.user_smtp_configs c
         where c.id = config_id and c.user_id = (select auth.uid())
      )
    )
    and (
      template_id is null
      or exists (
        select 1 from public.email_templates t
         where t.id = template_id and (t.user_id = (select auth.uid()) or t.user_id is null)
      )
    )
    and (
      batch_id is null
      -- A batch takes rows only in the transaction that created it: nobody adds to it later.
      or exists (
        select 1 from public.email_batches b
         where b.id = batch_id and b.user_id = (select auth.uid()) and b.created_at = now()
      )
    )
  );

-- Approval notices ---------------------------------------------------------------------------
-- When the owner asked for them (`approval_notify_config_id` on the account's guardrails), a
-- held send queues one short mail to the owner's own address through that config, linking to
-- the approval page. The link opens the page; approving happens there, in the owner's session,
-- never by following a link. A notice is never held for approval itself (only this function
-- can mark one: the column is not the Data API's to write), but the guardrails and the stop
-- still hold for it like for any mail.
create function private.queue_approval_notice(p_count integer, p_url text)
returns uuid
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_user uuid := auth.uid();
  v_config uuid;
  v_address text;
  v_id uuid;
  v_what text := case when p_count > 1 then p_count || ' emails your agent wrote wait' else 'An email your agent wrote waits' end;
begin
  select g.approval_notify_config_id into v_config from public.sending_guardrails g
   where g.user_id = v_user and g.config_id is null;
  if v_config is null or p_url is null then
    return null;
  end if;
  select u.email into v_address from auth.users u where u.id = v_user;
  if v_address is null then
    return null;
  end if;
  insert into public.email_audit_log (user_id, config_id, from_email, to_addresses, subject, status, payload,
                                      approval_notice)
  values (v_user, v_config, '', array[v_address], v_what || ' for your approval', 'queued',
          jsonb_build_object('kind', 'request', 'request', jsonb_build_object(
            'to', v_address,
            'subject', v_what || ' for your approval',
            'text', v_what || ' for your approval in mailroom. Nothing is sent until you decide.' || chr(10) || chr(10)
              || 'Open it: ' || p_url || chr(10) || chr(10)
              || 'You approve or reject it on that page, signed in to your account.')),
          true)
  returning id into v_id;
  return v_id;
end
$$;

-- Agents' daily cap ---------------------------------------------------------------------------
-- `max_agent_messages_per_day` (account and config; both hold) bounds what agents send in any
-- 24 hours, apart from the config's SMTP limits: messages made with an OAuth client's token or
-- through the agent tools, counted from the audit rows (held, sent or failed alike).

create index email_audit_log_agent_sends on public.email_audit_log (user_id, created_at)
  where client_id is not null or via is not null;

-- Why an agent's `p_messages` more sends through the config would pass its daily cap, or null
-- (the caller is not an agent, or no cap applies). `p_lock`: hold the owner's agent budget
-- until the transaction (which writes the send's rows) ends, so two agents' sends at once
-- count each other: the count after the lock sees what the other committed (a volatile
-- function takes a fresh snapshot for each statement).
create function private.agent_budget_refusal(p_config_id uuid, p_messages integer, p_lock boolean default false)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_user uuid := auth.uid();
  v_account integer;
  v_config integer;
  v_used integer;
  v_limit integer;
  v_scope text;
begin
  if v_user is null or (auth.jwt() ->> 'client_id' is null and auth.jwt() ->> 'mailroom_via' is null) then
    return null;
  end if;
  select g.max_agent_messages_per_day into v_account from public.sending_guardrails g
   where g.user_id = v_user and g.config_id is null;
  select g.max_agent_messages_per_day into v_config from public.sending_guardrails g
   where g.user_id = v_user and g.config_id = p_config_id;
  if v_account is null and v_config is null then
    return null;
  end if;
  if p_lock then
    perform pg_advisory_xact_lock(hashtextextended('mailroom:agent-budget:' || v_user::text, 0));
  end if;
  for v_scope, v_limit in select * from (values ('account', v_account), ('config', v_config)) c where c.column2 is not null
  loop
    select count(*)::integer into v_used from (
      select 1 from public.email_audit_log a
       where a.user_id = v_user and (a.client_id is not null or a.via is not null)
         and a.created_at > now() - interval '24 hours'
         and (v_scope = 'account' or a.config_id = p_config_id)
       limit v_limit + 1) used;
    if v_used + greatest(p_messages, 1) > v_limit then
      return jsonb_build_object(
        'status', 429, 'code', 'agent_daily_cap_reached',
        'message', format('Agents may send %s messages a day through this %s; %s were sent in the last 24 hours, '
                          || 'so %s more cannot go: ask the account owner', v_limit, v_scope, v_used,
                          greatest(p_messages, 1)),
        'details', jsonb_build_object('limit', v_limit, 'used', v_used, 'scope', v_scope,
                                      'retryable', false));
    end if;
  end loop;
  return null;
end
$$;

-- The guardrails' check as the send paths raise it, now with the agents' daily cap:
-- `p_messages` is how many messages this send makes (send-bulk: its batch).
drop function private.check_send_guardrails(uuid, text[], text[]);

create function private.check_send_guardrails(
  p_config_id uuid,
  p_recipients text[],
  p_keys text[] default null,
  p_messages integer default 1
)
returns void
language plpgsql
set search_path = ''
as $$
declare
  v_refusal jsonb := coalesce(
    private.guardrail_refusal(p_config_id, p_recipients, p_keys),
    private.agent_budget_refusal(p_config_id, p_messages, true));
begin
  if v_refusal is not null then
    perform private.raise_api_error((v_refusal ->> 'status')::integer, v_refusal ->> 'code', v_refusal ->> 'message',
                                    coalesce(v_refusal -> 'details', '{}'));
  end if;
  -- This send's messages are counted (under the lock): its rows need not count themselves.
  perform set_config('mailroom.agent_budget_counted', 'yes', true);
end
$$;

-- Lifting a stop needs MFA where the owner asked for it to decide on sends (as 20261206160000 otherwise).
create or replace function private.resume_sending(p_config_id uuid)
returns public.sending_guardrails
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_user uuid := auth.uid();
  v_row public.sending_guardrails;
begin
  if v_user is null then
    perform private.raise_api_error(401, 'unauthorized', 'Sign in first');
  end if;
  perform private.own_config_for_oversight(p_config_id);
  perform private.require_first_party('Lifting the stop');
  perform private.require_mfa_where_asked(p_config_id, 'Lifting the stop');
  update public.sending_guardrails g set stopped_at = null, stop_reason = null, updated_at = now()
   where g.user_id = v_user and g.config_id is not distinct from p_config_id and g.stopped_at is not null
  returning * into v_row;
  if found then
    insert into public.oversight_events (user_id, config_id, action, actor)
    values (v_user, p_config_id, 'sending_resumed', private.oversight_actor());
    -- Mail the stop held back is due now rather than at its next look.
    update public.email_audit_log a set next_attempt_at = greatest(coalesce(a.scheduled_at, now()), now())
     where a.user_id = v_user and a.status in ('queued', 'scheduled') and a.lease_until is null
       and (p_config_id is null or a.config_id = p_config_id)
       and a.next_attempt_at > now() and a.next_attempt_at < 'infinity'
       and a.error_class = 'sending_stopped';
  end if;
  return v_row;
end
$$;

-- Approve or reject the owner's pending sends: the ids given, or every pending message of a
-- batch. Only a first-party session (no client_id), with aal2 where any of the messages'
-- guardrails ask for it. A message no longer pending (decided meanwhile, expired, cancelled)
-- is left as it is: the ids returned are the ones this call decided.
create function private.decide_approvals(p_audit_ids uuid[], p_batch_id uuid, p_approve boolean, p_reason text)
returns setof uuid
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_user uuid := auth.uid();
  v_decided uuid[];
begin
  if v_user is null then
    perform private.raise_api_error(401, 'unauthorized', 'Sign in first');
  end if;
  perform private.require_first_party(case when p_approve then 'Approving a send' else 'Rejecting a send' end);
  if coalesce(auth.jwt() ->> 'aal', 'aal1') <> 'aal2' and exists (
    select 1 from public.email_audit_log a
     where a.user_id = v_user and a.status = 'pending_approval'
       and (a.id = any (p_audit_ids) or (p_batch_id is not null and a.batch_id = p_batch_id))
       and (a.approval_requires_aal2 or private.approval_needs_mfa(v_user, a.config_id))
  ) then
    perform private.raise_api_error(403, 'mfa_required',
      'The guardrails ask for a session with multi-factor authentication (aal2) to decide on sends; sign in with '
        || 'your second factor and try again');
  end if;

  with decided as (
    update public.email_audit_log a
       set status = case
             when not p_approve then 'rejected'
             when a.scheduled_at > now() then 'scheduled'
             else 'queued' end,
           next_attempt_at = case
             when not p_approve then null
             when exists (select 1 from public.user_smtp_configs c where c.id = a.config_id and c.needs_attention is not null)
               then 'infinity'
             else greatest(coalesce(a.scheduled_at, now()), now()) end,
           completed_at = case when p_approve then null else now() end,
           error_class = case when p_approve then a.error_class else 'rejected' end,
           error_message = case when p_approve then a.error_message
                                else left(coalesce('Rejected by the owner: ' || p_reason, 'Rejected by the owner'), 1000) end,
           approval_expires_at = null
     where a.user_id = v_user and a.status = 'pending_approval' and a.approval_expires_at > now()
       and (a.id = any (p_audit_ids) or (p_batch_id is not null and a.batch_id = p_batch_id))
    returning a.id
  )
  select coalesce(array_agg(id), '{}') into v_decided from decided;

  if cardinality(v_decided) > 0 then
    insert into public.oversight_events (user_id, action, actor, details)
    values (v_user, case when p_approve then 'approved' else 'rejected' end, private.oversight_actor(),
            jsonb_strip_nulls(jsonb_build_object(
              'message_ids', to_jsonb(v_decided[1:100]), 'count', cardinality(v_decided), 'batch_id', p_batch_id,
              'reason', p_reason)));
  end if;
  return query select unnest(v_decided);
end
$$;

-- Pending sends past their time end as `expired` (the outbox worker calls this on every run).
create function private.expire_pending_approvals()
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_count integer;
begin
  with expired as (
    update public.email_audit_log a
       set status = 'expired', completed_at = now(), next_attempt_at = null, error_class = 'approval_expired',
           error_message = 'Nobody approved it before ' || to_char(a.approval_expires_at at time zone 'UTC',
                                                                    'YYYY-MM-DD"T"HH24:MI:SS"Z"')
     where a.status = 'pending_approval' and a.approval_expires_at <= now()
    returning a.user_id, a.id
  ), recorded as (
    insert into public.oversight_events (user_id, action, actor, details)
    select e.user_id, 'expired', jsonb_build_object('system', 'expiry'),
           jsonb_build_object('message_ids', to_jsonb((array_agg(e.id))[1:100]), 'count', count(*))
      from expired e group by e.user_id
    returning 1
  )
  select count(*)::integer into v_count from expired;
  return v_count;
end
$$;

-- Cancelling a message or a batch cancels what still waits for approval too.
create or replace function private.cancel_outbox_messages(p_audit_ids uuid[], p_batch_id uuid default null)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_count integer;
begin
  update public.email_audit_log a
     set status = 'cancelled', completed_at = now(), lease_until = null, leased_by = null, approval_expires_at = null
   where a.user_id = (select auth.uid())
     and a.status in ('queued', 'scheduled', 'pending_approval')
     and (a.id = any (coalesce(p_audit_ids, '{}')) or (p_batch_id is not null and a.batch_id = p_batch_id));
  get diagnostics v_count = row_count;
  return v_count;
end
$$;

-- A config's approval settings count among what its deletion removes.
create or replace function private.guard_config_deletion() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_row public.sending_guardrails;
begin
  select * into v_row from public.sending_guardrails g where g.config_id = old.id;
  if found then
    perform private.require_first_party('Deleting a config that has guardrails or a stop');
    perform private.require_mfa_where_asked(old.id, 'Deleting a config that has guardrails');
    insert into public.oversight_events (user_id, config_id, action, actor, details)
    values (old.user_id, old.id, 'guardrails_removed', private.oversight_actor(),
            jsonb_strip_nulls(jsonb_build_object('config', old.name, 'stopped_at', v_row.stopped_at,
              'allow_recipients', v_row.allow_recipients, 'deny_recipients', v_row.deny_recipients,
              'max_recipients_per_request', v_row.max_recipients_per_request, 'approval', v_row.approval,
              'approval_requires_aal2', v_row.approval_requires_aal2,
              'max_agent_messages_per_day', v_row.max_agent_messages_per_day)));
  end if;
  return old;
end
$$;

-- A deleted config's mail that waits for approval ends with it, as its queued mail does
-- (20261125195000): approved later, it would go through whichever config is the default then.
create or replace function private.cancel_queue_of_deleted_config() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  update public.email_audit_log a
     set status = 'cancelled', error_class = 'config_deleted',
         error_message = 'The SMTP config was deleted before this message was sent',
         completed_at = now(), lease_until = null, leased_by = null, approval_expires_at = null
   where a.config_id = old.id
     and a.status in ('queued', 'scheduled', 'pending_approval');
  return old;
end
$$;

revoke all on function private.set_sending_guardrails(uuid, text[], text[], integer, text, integer, boolean, integer, uuid),
  private.approval_required(uuid), private.approval_ttl(uuid, uuid),
  private.decide_approvals(uuid[], uuid, boolean, text), private.expire_pending_approvals(),
  private.agent_budget_refusal(uuid, integer, boolean), private.check_send_guardrails(uuid, text[], text[], integer),
  private.queue_approval_notice(integer, text), private.approval_needs_mfa(uuid, uuid),
  private.require_mfa_where_asked(uuid, text)
  from public, anon, authenticated;
grant execute on function private.set_sending_guardrails(uuid, text[], text[], integer, text, integer, boolean, integer, uuid),
  private.approval_required(uuid), private.approval_ttl(uuid, uuid),
  private.decide_approvals(uuid[], uuid, boolean, text),
  private.agent_budget_refusal(uuid, integer, boolean), private.check_send_guardrails(uuid, text[], text[], integer),
  private.queue_approval_notice(integer, text), private.approval_needs_mfa(uuid, uuid)
  to authenticated;
