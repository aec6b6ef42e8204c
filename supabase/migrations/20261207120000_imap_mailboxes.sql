-- The sender's own mailbox over IMAP: bounces read back, and a copy of each sent message in Sent.
--
-- With the user's own submission server, most bounces are not refusals at RCPT: the server
-- accepts every outside recipient, and the bounce arrives minutes later as a delivery status
-- notification (RFC 3464) in the sender's mailbox; complaints arrive as ARF reports (RFC 5965).
--
-- `public.smtp_config_imap`: a config's IMAP settings (one row per config; the owner reads them,
-- the functions change them in the owner's RLS context). The password is in Vault, like the SMTP
-- one, or `use_smtp_login` sends the config's own SMTP username and password. A new host, port,
-- security or username drops a stored password and `use_smtp_login` unless the same change sets
-- them again (as for SMTP: nobody can point saved credentials at a server of their choosing).
--
-- The outbox worker reads each mailbox's new mail every few minutes (private.claim_mailbox_checks),
-- as its owner: recognised reports are matched to the owner's messages by Message-ID and
-- recipient (private.record_mailbox_reports), the recipient is marked `bounced` on the audit row
-- with the remote server's diagnostic, and hard bounces and complaints join the suppression list.
-- The user's other mail is left as it is (the mailbox is opened read-only unless the user asked
-- for reports to be moved to a folder).
--
-- Sent copies: after a successful send, the exact message is appended to the mailbox's Sent
-- folder; the audit row's `sent_copy` says whether it worked (a failure never changes `sent`).

create table public.smtp_config_imap (
  config_id uuid primary key references public.user_smtp_configs (id) on delete cascade,
  user_id uuid not null default auth.uid() references auth.users (id) on delete cascade,
  host text not null,
  port integer not null default 993,
  security text not null default 'tls',
  username text,
  password_secret_id uuid,
  use_smtp_login boolean not null default false,
  read_bounces boolean not null default true,
  copy_to_sent boolean not null default true,
  sent_folder text,
  processed_folder text,
  -- Where reading stopped: the inbox's UIDVALIDITY and the last UID looked at.
  uid_validity bigint,
  last_uid bigint,
  next_check_at timestamptz not null default now(),
  checked_at timestamptz,
  last_error text,
  last_error_code text,
  last_error_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint smtp_config_imap_port check (port between 1 and 65535),
  constraint smtp_config_imap_security check (security in ('tls', 'starttls', 'none')),
  constraint smtp_config_imap_host_length check (char_length(host) between 1 and 253),
  constraint smtp_config_imap_username_length check (char_length(username) between 1 and 320),
  constraint smtp_config_imap_folders check (
    char_length(sent_folder) between 1 and 200 and char_length(processed_folder) between 1 and 200
  ),
  constraint smtp_config_imap_error_length check (char_length(last_error) <= 500 and char_length(last_error_code) <= 64)
);

comment on table public.smtp_config_imap is
  'IMAP settings of an SMTP config: bounces read back from its inbox, sent mail copied to Sent. Password in Vault.';

create index smtp_config_imap_user on public.smtp_config_imap (user_id);
create index smtp_config_imap_due on public.smtp_config_imap (next_check_at) where read_bounces;

create trigger smtp_config_imap_set_updated_at
  before update on public.smtp_config_imap
  for each row execute function private.set_updated_at();

alter table public.smtp_config_imap enable row level security;

revoke all on public.smtp_config_imap from anon, authenticated;
grant select, delete on public.smtp_config_imap to authenticated;
grant insert (config_id, host, port, security, username, use_smtp_login, read_bounces, copy_to_sent, sent_folder,
              processed_folder),
      update (host, port, security, username, use_smtp_login, read_bounces, copy_to_sent, sent_folder, processed_folder)
  on public.smtp_config_imap to authenticated;

create policy "owner reads own imap settings"
  on public.smtp_config_imap for select to authenticated
  using (user_id = (select auth.uid()));

-- Only for a config of one's own.
create policy "owner adds imap settings to own configs"
  on public.smtp_config_imap for insert to authenticated
  with check (
    user_id = (select auth.uid())
    and exists (select 1 from public.user_smtp_configs c where c.id = config_id and c.user_id = (select auth.uid()))
  );

create policy "owner changes own imap settings"
  on public.smtp_config_imap for update to authenticated
  using (user_id = (select auth.uid()))
  with check (user_id = (select auth.uid()));

create policy "owner removes own imap settings"
  on public.smtp_config_imap for delete to authenticated
  using (user_id = (select auth.uid()));

-- 403 `first_party_session_required` with `p_message` for a token issued to an OAuth client (an
-- agent, `client_id`): what only the account owner's own session may do. (Webhooks use it too.)
create function private.require_owner_session(p_message text)
returns void
language plpgsql
stable
set search_path = ''
as $$
begin
  if (select auth.jwt()) ->> 'client_id' is not null then
    perform private.raise_api_error(403, 'first_party_session_required', p_message,
      jsonb_build_object('client_id', (select auth.jwt()) ->> 'client_id'));
  end if;
end
$$;

revoke all on function private.require_owner_session(text) from public, anon, authenticated;

-- Where sent mail is copied and whose inbox is read is the owner's choice alone: an agent (a
-- token with `client_id`) pointing the settings at a server of its own would receive a copy of
-- everything sent. Reading them, and checking the inbox, stay open to agents.
create function private.guard_imap_settings() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform private.require_owner_session(
    'Only you, signed in yourself, can change where your mailbox is read and sent mail is copied; a token issued '
      || 'to an OAuth client (an agent) may read these settings and check the inbox');
  return case when tg_op = 'DELETE' then old else new end;
end
$$;

revoke all on function private.guard_imap_settings() from public, anon, authenticated;

create trigger smtp_config_imap_guard
  before insert or delete or update of host, port, security, username, password_secret_id, use_smtp_login,
    read_bounces, copy_to_sent, sent_folder, processed_folder
  on public.smtp_config_imap
  for each row execute function private.guard_imap_settings();

-- Credentials stay with their destination; a new inbox starts reading afresh.
create function private.imap_credentials_stay_with_destination() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if (new.host, new.port, new.security, new.username) is distinct from (old.host, old.port, old.security, old.username)
  then
    if new.password_secret_id is not distinct from old.password_secret_id and old.password_secret_id is not null then
      delete from vault.secrets where id = old.password_secret_id;
      new.password_secret_id := null;
    end if;
    if new.use_smtp_login and old.use_smtp_login then
      new.use_smtp_login := false;
    end if;
    new.uid_validity := null;
    new.last_uid := null;
    new.last_error := null;
    new.last_error_code := null;
    new.last_error_at := null;
    new.next_check_at := now();
  end if;
  return new;
end
$$;

create trigger smtp_config_imap_credentials_stay_with_destination
  before update on public.smtp_config_imap
  for each row execute function private.imap_credentials_stay_with_destination();

create function private.delete_imap_secret() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if old.password_secret_id is not null then
    delete from vault.secrets where id = old.password_secret_id;
  end if;
  return old;
end
$$;

create trigger smtp_config_imap_delete_secret
  after delete on public.smtp_config_imap
  for each row execute function private.delete_imap_secret();

revoke all on function private.imap_credentials_stay_with_destination() from public, anon, authenticated;
revoke all on function private.delete_imap_secret() from public, anon, authenticated;

-- Store (or replace) the IMAP password of a config the caller owns; counted as a credential change.
create function private.set_imap_password(p_config_id uuid, p_password text)
returns void
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_user_id uuid := (select auth.uid());
  v_secret_id uuid;
begin
  if p_password is null or p_password = '' or char_length(p_password) > 1024 then
    raise exception 'password must be 1 to 1024 characters' using errcode = '22023';
  end if;
  select i.password_secret_id into v_secret_id
    from public.smtp_config_imap i
   where i.config_id = p_config_id and i.user_id = v_user_id
     for update;
  if not found then
    raise exception 'imap settings not found' using errcode = 'P0002';
  end if;
  perform private.enforce_credential_limit(v_user_id, 'password_change');
  perform private.record_credential_event(v_user_id, 'password_set', p_config_id);
  v_secret_id := private.put_config_secret(v_secret_id, p_password, 'imap_password_' || p_config_id::text,
                                           'IMAP password of mailroom config ' || p_config_id::text);
  update public.smtp_config_imap
     set password_secret_id = v_secret_id, use_smtp_login = false, last_error = null, last_error_code = null,
         next_check_at = now()
   where config_id = p_config_id;
end
$$;

-- The domain a mail host belongs to, for telling whether two hosts are the same provider's
-- (smtp.fastmail.com and imap.fastmail.com: fastmail.com; a country's second level such as
-- example.co.uk kept whole). An address or a one-label name is its own domain.
create function private.mail_domain(p_host text)
returns text
language sql
immutable
parallel safe
set search_path = ''
as $$
  select case
           when n <= 2 or h ~ '^[0-9.]+$' or position(':' in h) > 0 then h
           when l[n - 1] in ('co', 'com', 'net', 'org', 'gov', 'edu', 'ac', 'ne', 'or', 'go', 'gob', 'nic')
                or (length(l[n]) = 2 and length(l[n - 1]) <= 2)
             then array_to_string(l[n - 2:n], '.')
           else array_to_string(l[n - 1:n], '.')
         end
    from (select lower(rtrim(p_host, '.')) as h) x,
         lateral (select string_to_array(x.h, '.') as l) y,
         lateral (select coalesce(array_length(y.l, 1), 0) as n) z
$$;

-- Whether the SMTP login may be sent to this IMAP host: only within the SMTP server's own domain,
-- so that nobody holding the user's token can have it sent to a server of their choosing.
create function private.same_mail_domain(p_imap_host text, p_smtp_host text)
returns boolean
language sql
immutable
parallel safe
set search_path = ''
as $$
  select private.mail_domain(p_imap_host) = private.mail_domain(p_smtp_host)
$$;

revoke all on function private.mail_domain(text) from public, anon, authenticated;
revoke all on function private.same_mail_domain(text, text) from public, anon, authenticated;
grant execute on function private.mail_domain(text) to authenticated;
grant execute on function private.same_mail_domain(text, text) to authenticated;

-- Where to log in and with what, for the caller's own config only: decrypted here, never stored
-- elsewhere. `use_smtp_login` gives the SMTP username and password (a password config's only),
-- and only to an IMAP server in the SMTP server's domain.
create function private.imap_login(p_config_id uuid)
returns table (
  host text, port integer, security text, username text, password text, sent_folder text, processed_folder text,
  uid_validity bigint, last_uid bigint, created_at timestamptz, checked_at timestamptz, last_error_code text
)
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  return query
  select i.host, i.port, i.security,
         case when i.use_smtp_login then c.username else i.username end,
         case when i.use_smtp_login then sp.decrypted_secret else ip.decrypted_secret end,
         i.sent_folder, i.processed_folder, i.uid_validity, i.last_uid, i.created_at, i.checked_at, i.last_error_code
    from public.smtp_config_imap i
    join public.user_smtp_configs c on c.id = i.config_id
    left join vault.decrypted_secrets ip on ip.id = i.password_secret_id
    left join vault.decrypted_secrets sp on sp.id = c.password_secret_id and c.auth_type = 'password'
                                        and private.same_mail_domain(i.host, c.host)
   where i.config_id = p_config_id
     and i.user_id = (select auth.uid());
end
$$;

revoke all on function private.set_imap_password(uuid, text) from public, anon, authenticated;
revoke all on function private.imap_login(uuid) from public, anon, authenticated;
grant execute on function private.set_imap_password(uuid, text) to authenticated;
grant execute on function private.imap_login(uuid) to authenticated;

-- The audit row: delivery reports read back from the mailbox, who bounced, and the Sent copy.
alter table public.email_audit_log
  add column bounced text[] not null default '{}',
  add column reports jsonb,
  add column sent_copy jsonb,
  add constraint email_audit_log_reports_shape check (
    reports is null or (jsonb_typeof(reports) = 'array' and jsonb_array_length(reports) <= 1000)
  );

comment on column public.email_audit_log.bounced is
  'Recipients the submission server accepted whose mail came back later (a delivery status notification).';
comment on column public.email_audit_log.reports is
  'Reports read from the sender''s mailbox: [{address, kind: bounce|delay|complaint, status, diagnostic, remote_mta, reported_at}].';
comment on column public.email_audit_log.sent_copy is
  'The copy in the mailbox''s Sent folder: {status: copied|failed, folder?, error?, at}.';

-- Bounce reports arrive keyed by Message-ID: looked up within the owner's messages.
create index email_audit_log_user_message_id on public.email_audit_log (user_id, message_id)
  where message_id is not null;

-- Record reports read from a config's inbox, as its owner, and move its cursor. Each report:
-- {message_id, address, kind: bounce|delay|complaint, status, diagnostic, remote_mta, reported_at}.
-- Only the caller's own messages that were sent to that recipient are touched; a report that
-- names nothing of theirs changes nothing. Hard bounces (status 5.1.1, 5.1.2 or 5.1.10: the
-- mailbox or domain does not exist; never a policy refusal such as 5.7.1) join the suppression
-- list per the config's suppress_hard_bounces, complaints always. Returns the positions (from 1)
-- of the reports that name a message of the caller's (recorded now or before).
create function private.record_mailbox_reports(
  p_config_id uuid,
  p_reports jsonb,
  p_uid_validity bigint,
  p_last_uid bigint
)
returns integer[]
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_user uuid := (select auth.uid());
  v_suppress boolean;
  v_report jsonb;
  v_address text;
  v_kind text;
  v_row record;
  v_position integer;
  v_matched integer[] := '{}'::integer[];
begin
  select c.suppress_hard_bounces into v_suppress
    from public.smtp_config_imap i join public.user_smtp_configs c on c.id = i.config_id
   where i.config_id = p_config_id and i.user_id = v_user;
  if not found then
    raise exception 'imap settings not found' using errcode = 'P0002';
  end if;
  for v_report, v_position in
    select r, n::integer from jsonb_array_elements(coalesce(p_reports, '[]'::jsonb)) with ordinality x (r, n) limit 1000
  loop
    v_address := pg_catalog.lower(v_report ->> 'address');
    v_kind := v_report ->> 'kind';
    continue when v_address is null or v_kind not in ('bounce', 'delay', 'complaint')
                  or coalesce(v_report ->> 'message_id', '') = '';
    -- The caller's own message with that Message-ID whose server accepted that recipient (To, Cc
    -- or Bcc; by the address the report gives, or the one first given when an alias expanded it).
    select a.id, a.recipients, a.bounced, a.reports, r.address into v_row
      from public.email_audit_log a
      cross join lateral (
        select pg_catalog.lower(x ->> 'address') as address
          from jsonb_array_elements(a.recipients) x
         where pg_catalog.lower(x ->> 'address') in (v_address, pg_catalog.lower(v_report ->> 'original_address'))
           and x ->> 'status' in ('accepted', 'bounced')
         limit 1
      ) r
     where a.user_id = v_user
       and a.message_id = v_report ->> 'message_id'
       and a.status in ('sent', 'deferred', 'unknown', 'queued', 'sending')
     order by a.created_at desc
     limit 1
       for update of a;
    continue when not found;
    v_address := v_row.address;
    v_matched := v_matched || v_position;
    -- The same report read twice (a mailbox whose UIDs were reset) is recorded once.
    continue when exists (
      select 1 from jsonb_array_elements(coalesce(v_row.reports, '[]'::jsonb)) x
       where x ->> 'address' = v_address and x ->> 'kind' = v_kind
         and x ->> 'status' is not distinct from v_report ->> 'status'
    ) or jsonb_array_length(coalesce(v_row.reports, '[]'::jsonb)) >= 100;
    update public.email_audit_log a
       set reports = coalesce(a.reports, '[]'::jsonb) || jsonb_build_array(jsonb_strip_nulls(jsonb_build_object(
             'address', v_address, 'kind', v_kind,
             'status', left(v_report ->> 'status', 16),
             'diagnostic', left(v_report ->> 'diagnostic', 1000),
             'remote_mta', left(v_report ->> 'remote_mta', 255),
             'reported_at', coalesce(v_report ->> 'reported_at', pg_catalog.to_char(now() at time zone 'UTC',
                                                                                    'YYYY-MM-DD"T"HH24:MI:SS"Z"'))))),
           bounced = case when v_kind = 'bounce' and not v_address = any (a.bounced)
                          then a.bounced || v_address else a.bounced end,
           recipients = case when v_kind <> 'bounce' then a.recipients else (
             select jsonb_agg(case when pg_catalog.lower(r ->> 'address') = v_address and r ->> 'status' = 'accepted'
                                   then r || jsonb_build_object(
                                          'status', 'bounced',
                                          -- The remote server's code, not the submission server's 250.
                                          'smtp_code', (substring(v_report ->> 'diagnostic' from '^([2-5][0-9][0-9])\M'))::integer,
                                          'enhanced_code', left(v_report ->> 'status', 16),
                                          'response', left(v_report ->> 'diagnostic', 1000))
                                   else r end order by n)
               from jsonb_array_elements(a.recipients) with ordinality x (r, n))
           end
     where a.id = v_row.id;
    if v_kind = 'complaint'
       or (v_kind = 'bounce' and v_suppress and v_report ->> 'status' in ('5.1.1', '5.1.2', '5.1.10')) then
      insert into public.suppressions (user_id, address, reason, source, audit_id)
      values (v_user, v_address, case v_kind when 'complaint' then 'complaint' else 'hard_bounce' end,
              left(concat_ws(' ', case v_kind when 'complaint' then 'complaint report' else 'bounce report' end,
                             v_report ->> 'status', v_report ->> 'diagnostic'), 500),
              v_row.id)
      on conflict (user_id, address) do nothing;
    end if;
  end loop;
  -- The cursor only moves forward (a check run by hand beside the worker's never moves it back);
  -- a successful check lifts a pause a refused login put on the scheduled ones.
  update public.smtp_config_imap
     set uid_validity = coalesce(p_uid_validity, uid_validity),
         last_uid = case when p_uid_validity is distinct from uid_validity then p_last_uid
                         else greatest(last_uid, p_last_uid) end,
         checked_at = now(), last_error = null, last_error_code = null, last_error_at = null,
         next_check_at = case when next_check_at = 'infinity' then now() else next_check_at end
   where config_id = p_config_id;
  return v_matched;
end
$$;

-- A check or a Sent copy that failed (the server down, the login refused): shown on the settings.
-- The next scheduled check waits longer; after a refused login there is none until the
-- credentials change or a check by hand succeeds (a wrong password retried every few minutes
-- gets accounts locked).
create function private.record_mailbox_error(p_config_id uuid, p_error text, p_code text)
returns void
language sql
security definer
set search_path = ''
as $$
  update public.smtp_config_imap
     set last_error = left(p_error, 500), last_error_code = left(p_code, 64), last_error_at = now(),
         next_check_at = case when p_code = 'imap_auth_failed' then 'infinity'::timestamptz
                              else greatest(next_check_at, now() + interval '15 minutes') end
   where config_id = p_config_id and user_id = (select auth.uid());
$$;

-- Whether a message's Sent copy was made, for the caller's own message.
create function private.record_sent_copies(p_copies jsonb)
returns void
language sql
security definer
set search_path = ''
as $$
  update public.email_audit_log a
     set sent_copy = jsonb_strip_nulls(jsonb_build_object(
           'status', c ->> 'status', 'folder', left(c ->> 'folder', 200), 'error', left(c ->> 'error', 500),
           'at', pg_catalog.to_char(now() at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')))
    from jsonb_array_elements(p_copies) c
   where a.id = (c ->> 'id')::uuid
     and a.user_id = (select auth.uid())
     and c ->> 'status' in ('copied', 'failed');
$$;

revoke all on function private.record_mailbox_reports(uuid, jsonb, bigint, bigint) from public, anon, authenticated;
revoke all on function private.record_mailbox_error(uuid, text, text) from public, anon, authenticated;
revoke all on function private.record_sent_copies(jsonb) from public, anon, authenticated;
grant execute on function private.record_mailbox_reports(uuid, jsonb, bigint, bigint) to authenticated;
grant execute on function private.record_mailbox_error(uuid, text, text) to authenticated;
grant execute on function private.record_sent_copies(jsonb) to authenticated;

-- The worker's share of mailboxes due for a check, each taken for `p_every` (so concurrent
-- workers never read the same one): active configs reading bounces only. Server-side only.
create function private.claim_mailbox_checks(p_limit integer, p_every interval default interval '5 minutes')
returns table (config_id uuid, user_id uuid)
language sql
security definer
set search_path = ''
as $$
  with due as (
    select i.config_id
      from public.smtp_config_imap i
      join public.user_smtp_configs c on c.id = i.config_id and c.is_active
     where i.read_bounces and i.next_check_at <= now()
     order by i.next_check_at
     limit greatest(p_limit, 0)
       for update of i skip locked
  )
  update public.smtp_config_imap i
     set next_check_at = now() + p_every
    from due
   where i.config_id = due.config_id
  returning i.config_id, i.user_id;
$$;

revoke all on function private.claim_mailbox_checks(integer, interval) from public, anon, authenticated;
