-- Stored attachments: a file uploaded once (POST /attachments, or fetched once from an HTTPS
-- URL at accept time) and referenced by id from any number of messages, so a 10,000-recipient
-- batch carries one PDF, not 10,000 copies in its payloads.
--
-- Why Postgres (bytea) and not Supabase Storage: the bytes must be readable by the worker in the
-- owner's RLS context, in the same transaction that builds the message, on `supabase start`,
-- on hosted projects and on our Docker-free local stack (which has no Storage API); a message
-- is at most 10 MiB, so a file is at most what one message carries (7 MiB by default), which
-- TOAST stores out of line and the claim reads once per group. Storage would add a second
-- service, a second credential and a network hop per send for files this small.
--
-- * Users read their own rows (RLS, including through the Data API); they create and delete
--   them only through the functions (private.store_attachment, private.delete_attachment), which
--   check the per-user quota under a lock, sniff the type, and refuse to delete a file a waiting
--   message still needs.
-- * The same bytes under the same name and type uploaded again (an agent's retry) are the same
--   attachment: its id comes back and its retention starts again.
-- * A file expires `expires_at` (30 days by default, MAILROOM_ATTACHMENT_RETENTION_DAYS); a send
--   that references it holds it at least until that send can no longer go (private.hold_attachments:
--   its send time + 32 days, the longest approval wait plus a day of retries). The worker
--   forgets expired files (private.forget_expired_attachments), except one a waiting message
--   still names (a paused config's mail may wait longer than any hold).
-- * The worker's claim counts what it will hold for a row: a referenced file counts by its
--   base64 size (as the built message carries it), for a message's own references and for a
--   batch's shared ones (email_batches.attachment_bytes), so 200 rows naming a 7 MiB file are
--   never claimed at once.

create table public.attachments (
  id uuid primary key default gen_random_uuid(),
  user_id uuid not null default auth.uid() references auth.users (id) on delete cascade,
  filename text not null,
  content_type text not null,
  size_bytes integer not null,
  sha256 bytea not null,
  content bytea not null,
  -- Where it was fetched from (an attachment given by URL), or null for an upload.
  source_url text,
  created_at timestamptz not null default now(),
  expires_at timestamptz not null default now() + interval '30 days',
  constraint attachments_filename_length check (char_length(filename) between 1 and 255),
  constraint attachments_content_type check (content_type ~ '^[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}$'),
  constraint attachments_size check (size_bytes = octet_length(content) and size_bytes <= 26214400),
  constraint attachments_sha256 check (octet_length(sha256) = 32),
  constraint attachments_source_url check (source_url is null or (source_url like 'https://%' and char_length(source_url) <= 2048))
);

comment on table public.attachments is
  'Files stored once per user and referenced by id from sends ({"id": ...} in attachments); see POST /attachments';
comment on column public.attachments.expires_at is
  'When the worker may delete it: the retention period after upload, extended by sends that reference it';

create index attachments_user_created on public.attachments (user_id, created_at desc, id desc);
create index attachments_expiry on public.attachments (expires_at);
-- An upload repeated (same bytes, name and type) is the attachment already stored.
create unique index attachments_same_file on public.attachments (user_id, sha256, filename, content_type);

alter table public.attachments enable row level security;
revoke all on public.attachments from anon, authenticated;
grant select on public.attachments to authenticated;

create policy "owner can read own attachments"
  on public.attachments for select to authenticated
  using (user_id = (select auth.uid()));

-- Store a file for the caller, within their quota: the sum of their files' sizes, checked under
-- a per-user lock so two uploads at once cannot both pass. Returns the row and whether it is new
-- (false: the same file was stored already; its retention starts again).
create function private.store_attachment(
  p_filename text,
  p_content_type text,
  p_content bytea,
  p_source_url text,
  p_retention_days integer,
  p_quota_bytes bigint
)
returns table (
  id uuid, filename text, content_type text, size_bytes integer, sha256 bytea, source_url text,
  created_at timestamptz, expires_at timestamptz, created boolean
)
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_user uuid := (select auth.uid());
  v_sha256 bytea := pg_catalog.sha256(p_content);
  v_expires timestamptz := now() + make_interval(days => p_retention_days);
  v_used bigint;
begin
  if v_user is null then
    perform private.raise_api_error(401, 'unauthorized', 'Sign in to store attachments');
  end if;
  perform pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended('mailroom.attachments:' || v_user::text, 0));
  return query
    update public.attachments a set expires_at = greatest(a.expires_at, v_expires)
     where a.user_id = v_user and a.sha256 = v_sha256 and a.filename = p_filename and a.content_type = p_content_type
    returning a.id, a.filename, a.content_type, a.size_bytes, a.sha256, a.source_url, a.created_at, a.expires_at, false;
  if found then
    return;
  end if;
  select coalesce(sum(a.size_bytes), 0) into v_used from public.attachments a where a.user_id = v_user;
  if v_used + octet_length(p_content) > p_quota_bytes then
    perform private.raise_api_error(413, 'attachment_storage_full',
      format('Storing this file (%s bytes) would pass your attachment storage limit of %s bytes (%s in use); '
             || 'delete attachments you no longer need (DELETE /attachments/:id)',
             octet_length(p_content), p_quota_bytes, v_used),
      jsonb_build_object('limit_bytes', p_quota_bytes, 'used_bytes', v_used, 'size_bytes', octet_length(p_content)));
  end if;
  return query
    insert into public.attachments as a (user_id, filename, content_type, size_bytes, sha256, content, source_url, expires_at)
    values (v_user, p_filename, p_content_type, octet_length(p_content), v_sha256, p_content, p_source_url, v_expires)
    returning a.id, a.filename, a.content_type, a.size_bytes, a.sha256, a.source_url, a.created_at, a.expires_at, true;
end
$$;

-- How many of a user's messages still waiting to go (queued, scheduled, held for approval, or
-- in flight: a deferred recipient is retried from the same row) reference an attachment, by
-- their own attachments or their batch's shared ones.
create function private.attachment_uses(p_user_id uuid, p_id uuid)
returns integer
language sql
stable
set search_path = ''
as $$
  with ref as (select jsonb_build_array(jsonb_build_object('id', p_id::text)) as v)
  select count(*)::integer
    from public.email_audit_log a
    left join public.email_batches b on b.id = a.batch_id
   cross join ref
   where a.user_id = p_user_id
     and a.status in ('queued', 'scheduled', 'pending_approval', 'sending')
     and (a.payload #> '{request,attachments}' @> ref.v or b.content -> 'attachments' @> ref.v)
$$;

-- Delete one of the caller's attachments, unless a waiting message needs it (409
-- attachment_in_use: cancel those first, or let them go). 404 for anything not the caller's.
create function private.delete_attachment(p_id uuid)
returns void
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_user uuid := (select auth.uid());
  v_uses integer;
begin
  perform pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended('mailroom.attachments:' || v_user::text, 0));
  -- The row lock first: a send holding the file (private.hold_attachments) has committed, or
  -- rolled back, before its messages are counted.
  perform 1 from public.attachments a where a.id = p_id and a.user_id = v_user for update;
  if not found then
    perform private.raise_api_error(404, 'attachment_not_found', format('No attachment %s', p_id), jsonb_build_object('id', p_id));
  end if;
  v_uses := private.attachment_uses(v_user, p_id);
  if v_uses > 0 then
    perform private.raise_api_error(409, 'attachment_in_use',
      format('%s waiting message(s) still attach this file; cancel them, or delete it once they are sent', v_uses),
      jsonb_build_object('id', p_id, 'messages', v_uses));
  end if;
  delete from public.attachments a where a.id = p_id and a.user_id = v_user;
end
$$;

-- A send references the caller's attachments: each must exist (not expired), and is kept at
-- least until p_until. Returns the ones found; the functions answer 404 for the others.
create function private.hold_attachments(p_ids uuid[], p_until timestamptz)
returns table (id uuid, filename text, content_type text, size_bytes integer, sha256 bytea)
language sql
security definer
set search_path = ''
as $$
  update public.attachments a set expires_at = greatest(a.expires_at, p_until)
   where a.id = any (p_ids) and a.user_id = (select auth.uid()) and a.expires_at > now()
  returning a.id, a.filename, a.content_type, a.size_bytes, a.sha256
$$;

-- What the worker holds for a list of attachments as a message carries them: the stored ones a
-- user owns, by their base64 size (inline ones are counted with the payload's text). It runs
-- as the inserting user, so RLS shows it only its own files as well.
create function private.stored_attachment_bytes(p_user_id uuid, p_attachments jsonb)
returns bigint
language sql
stable
set search_path = ''
as $$
  select coalesce(sum((a.size_bytes::bigint + 2) / 3 * 4), 0)
    from public.attachments a
   where a.user_id = p_user_id
     and a.id in (
       select (e ->> 'id')::uuid
         from jsonb_array_elements(case when jsonb_typeof(p_attachments) = 'array' then p_attachments else '[]' end) e
        where jsonb_typeof(e) = 'object'
          and e ->> 'id' ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$')
$$;

-- A batch's shared attachments, sized once when the batch is written.
alter table public.email_batches add column attachment_bytes bigint not null default 0;

create function private.size_batch_attachments()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  new.attachment_bytes := case when new.content ? 'attachments'
    then private.stored_attachment_bytes(new.user_id, new.content -> 'attachments') else 0 end;
  return new;
end
$$;

create trigger email_batches_size_attachments
  before insert on public.email_batches
  for each row execute function private.size_batch_attachments();

-- What the worker holds for a queued row: its payload as it arrives (text, never the compressed
-- or compact stored form), the stored files it names, and for a batch's recipient, the batch's
-- shared content and files.
create function private.outbox_payload_bytes(p_user_id uuid, p_payload jsonb, p_batch_id uuid)
returns integer
language sql
stable
set search_path = ''
as $$
  select (coalesce(octet_length(p_payload::text), 0)
    + coalesce((select b.content_bytes + b.attachment_bytes from public.email_batches b where b.id = p_batch_id), 0)
    + case when p_payload #> '{request,attachments}' is null then 0
           else private.stored_attachment_bytes(p_user_id, p_payload #> '{request,attachments}') end)::integer
$$;

-- Queued rows: as before (20261206180000), and what the worker holds for a row counts the
-- stored attachments it (or its batch) references.
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
    -- What the worker will hold for it (the files it names included).
    new.payload_bytes := private.outbox_payload_bytes(new.user_id, new.payload, new.batch_id);
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

-- A row whose payload changes (private.retry_deferred_recipients queues a send's deferred
-- recipients again with its request) is sized again, files included.
create function private.resize_outbox_payload() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  new.payload_bytes := private.outbox_payload_bytes(new.user_id, new.payload, new.batch_id);
  return new;
end
$$;

create trigger email_audit_log_resize_payload
  before update of payload on public.email_audit_log
  for each row when (new.payload is not null and new.payload is distinct from old.payload)
  execute function private.resize_outbox_payload();

-- The worker: forget expired files, a bounded number at a time. A file a message still waits
-- for (one whose config is paused or backed off may wait past any hold) is kept another day
-- and looked at again then.
create function private.forget_expired_attachments(p_limit integer default 500)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_file record;
  v_count integer := 0;
begin
  for v_file in
    select a.id, a.user_id from public.attachments a
     where a.expires_at <= now()
     order by a.expires_at
     limit p_limit
       for update skip locked
  loop
    if private.attachment_uses(v_file.user_id, v_file.id) > 0 then
      update public.attachments a set expires_at = now() + interval '1 day' where a.id = v_file.id;
    else
      delete from public.attachments a where a.id = v_file.id;
      v_count := v_count + 1;
    end if;
  end loop;
  return v_count;
end
$$;

revoke all on function private.store_attachment(text, text, bytea, text, integer, bigint) from public, anon, authenticated;
revoke all on function private.attachment_uses(uuid, uuid) from public, anon, authenticated;
revoke all on function private.outbox_payload_bytes(uuid, jsonb, uuid) from public, anon, authenticated;
revoke all on function private.resize_outbox_payload() from public, anon, authenticated;
revoke all on function private.delete_attachment(uuid) from public, anon, authenticated;
revoke all on function private.hold_attachments(uuid[], timestamptz) from public, anon, authenticated;
revoke all on function private.stored_attachment_bytes(uuid, jsonb) from public, anon, authenticated;
revoke all on function private.size_batch_attachments() from public, anon, authenticated;
revoke all on function private.prepare_outbox_row() from public, anon, authenticated;
revoke all on function private.forget_expired_attachments(integer) from public, anon, authenticated;

grant execute on function private.store_attachment(text, text, bytea, text, integer, bigint) to authenticated;
grant execute on function private.delete_attachment(uuid) to authenticated;
grant execute on function private.hold_attachments(uuid[], timestamptz) to authenticated;
-- The triggers run as the inserting user.
grant execute on function private.stored_attachment_bytes(uuid, jsonb) to authenticated;
grant execute on function private.outbox_payload_bytes(uuid, jsonb, uuid) to authenticated;
