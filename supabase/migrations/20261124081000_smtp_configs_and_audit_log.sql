-- SMTP configurations (passwords in Supabase Vault) and the send audit log.
--
-- Why this shape:
-- * A config row never holds a password or ciphertext, only the Vault secret id. The
--   secret is written and read only through security definer functions in `private`,
--   a schema the Data API does not expose, and only for the config's owner.
-- * `auth_type` and the `private.smtp_config_credentials` indirection leave room for
--   OAuth (XOAUTH2) configs that own several secrets.
-- * Users may read their audit rows and insert in-flight rows for themselves, but never
--   update or delete them: outcomes are recorded once by `private.record_email_outcome`.

create schema if not exists private;
revoke all on schema private from public;
-- The functions' database connection acts as `authenticated` (exactly like PostgREST),
-- so it needs to reach the few owner-checked functions below. `private` is not in the
-- Data API's exposed schemas, so nothing here is reachable over REST.
grant usage on schema private to authenticated;

create function private.set_updated_at() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  new.updated_at = now();
  return new;
end
$$;

-- user_smtp_configs -------------------------------------------------------------------
create table public.user_smtp_configs (
  id uuid primary key default gen_random_uuid(),
  user_id uuid not null default auth.uid() references auth.users (id) on delete cascade,
  name text not null,
  host text not null,
  port integer not null,
  security text not null default 'tls',
  auth_type text not null default 'password',
  username text,
  password_secret_id uuid,
  from_email text not null,
  from_name text,
  is_default boolean not null default false,
  is_active boolean not null default true,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint user_smtp_configs_name_per_user unique (user_id, name),
  constraint user_smtp_configs_name_length check (char_length(name) between 1 and 64),
  constraint user_smtp_configs_host_shape check (host ~ '^[A-Za-z0-9._:-]{1,253}$'),
  constraint user_smtp_configs_port_range check (port between 1 and 65535),
  constraint user_smtp_configs_security check (security in ('tls', 'starttls', 'none')),
  constraint user_smtp_configs_auth_type check (auth_type in ('password')),
  constraint user_smtp_configs_username_length check (char_length(username) <= 320),
  constraint user_smtp_configs_from_email_shape check (
    char_length(from_email) <= 320 and from_email ~ '^[^@\s<>]+@[^@\s<>]+$'
  ),
  constraint user_smtp_configs_from_name_no_controls check (
    from_name is null or (char_length(from_name) <= 200 and from_name !~ '[\r\n\x01-\x1f\x7f]')
  )
);

comment on table public.user_smtp_configs is
  'SMTP servers a user sends through. The password lives in Vault (password_secret_id).';

create unique index user_smtp_configs_one_default_per_user
  on public.user_smtp_configs (user_id) where is_default;

create trigger user_smtp_configs_set_updated_at
  before update on public.user_smtp_configs
  for each row execute function private.set_updated_at();

alter table public.user_smtp_configs enable row level security;

revoke all on public.user_smtp_configs from anon, authenticated;
grant select, delete on public.user_smtp_configs to authenticated;
-- No grant on user_id, password_secret_id or timestamps: a user cannot point a config at
-- somebody else's secret, nor move a config to another user.
grant insert (name, host, port, security, username, from_email, from_name, is_default, is_active),
      update (name, host, port, security, username, from_email, from_name, is_default, is_active)
  on public.user_smtp_configs to authenticated;

create policy "owner can read own smtp configs"
  on public.user_smtp_configs for select to authenticated
  using (user_id = (select auth.uid()));

create policy "owner can create own smtp configs"
  on public.user_smtp_configs for insert to authenticated
  with check (user_id = (select auth.uid()));

create policy "owner can update own smtp configs"
  on public.user_smtp_configs for update to authenticated
  using (user_id = (select auth.uid()))
  with check (user_id = (select auth.uid()));

create policy "owner can delete own smtp configs"
  on public.user_smtp_configs for delete to authenticated
  using (user_id = (select auth.uid()));

-- Vault secrets follow their config: deleted with it (also on user deletion cascade).
create function private.delete_smtp_config_secrets() returns trigger
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

create trigger user_smtp_configs_delete_secrets
  after delete on public.user_smtp_configs
  for each row execute function private.delete_smtp_config_secrets();

-- Store or rotate the password of a config the caller owns.
create function private.set_smtp_config_password(p_config_id uuid, p_password text)
returns void
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_secret_id uuid;
begin
  if p_password is null or p_password = '' then
    raise exception 'password must not be empty' using errcode = '22023';
  end if;

  select c.password_secret_id into v_secret_id
    from public.user_smtp_configs c
   where c.id = p_config_id and c.user_id = (select auth.uid())
     for update;
  if not found then
    raise exception 'smtp config not found' using errcode = 'P0002';
  end if;

  if v_secret_id is null then
    v_secret_id := vault.create_secret(
      p_password,
      'smtp_config_password_' || p_config_id::text,
      'SMTP password of mailroom config ' || p_config_id::text
    );
    update public.user_smtp_configs set password_secret_id = v_secret_id where id = p_config_id;
  else
    perform vault.update_secret(v_secret_id, p_password);
    update public.user_smtp_configs set updated_at = now() where id = p_config_id;
  end if;
end
$$;

-- Decrypted credentials of a config the caller owns; nothing for anybody else.
create function private.smtp_config_credentials(p_config_id uuid)
returns table (auth_type text, username text, password text)
language sql
stable
security definer
set search_path = ''
as $$
  select c.auth_type, c.username, s.decrypted_secret
    from public.user_smtp_configs c
    left join vault.decrypted_secrets s on s.id = c.password_secret_id
   where c.id = p_config_id
     and c.user_id = (select auth.uid())
$$;

revoke all on function private.set_smtp_config_password(uuid, text) from public, anon, authenticated;
revoke all on function private.smtp_config_credentials(uuid) from public, anon, authenticated;
revoke all on function private.delete_smtp_config_secrets() from public, anon, authenticated;
revoke all on function private.set_updated_at() from public, anon, authenticated;
grant execute on function private.set_smtp_config_password(uuid, text) to authenticated;
grant execute on function private.smtp_config_credentials(uuid) to authenticated;

-- email_audit_log -----------------------------------------------------------------------
create table public.email_audit_log (
  id uuid primary key default gen_random_uuid(),
  user_id uuid not null default auth.uid() references auth.users (id) on delete cascade,
  config_id uuid references public.user_smtp_configs (id) on delete set null,
  from_email text not null,
  to_addresses text[] not null default '{}',
  cc_count integer not null default 0,
  bcc_count integer not null default 0,
  subject text,
  status text not null,
  message_id text,
  accepted text[] not null default '{}',
  rejected text[] not null default '{}',
  error_class text,
  error_message text,
  smtp_response_code integer,
  idempotency_key text,
  agent_context jsonb,
  attempts integer not null default 1,
  created_at timestamptz not null default now(),
  completed_at timestamptz,
  duration_ms integer,
  constraint email_audit_log_status check (
    status in ('scheduled', 'queued', 'sending', 'sent', 'failed', 'unknown')
  ),
  constraint email_audit_log_counts check (cc_count >= 0 and bcc_count >= 0)
);

comment on table public.email_audit_log is
  'One row per send attempt, written in the sender''s RLS context. Users read, never rewrite.';

create index email_audit_log_user_created on public.email_audit_log (user_id, created_at desc);
create index email_audit_log_config on public.email_audit_log (config_id);

alter table public.email_audit_log enable row level security;

revoke all on public.email_audit_log from anon, authenticated;
grant select on public.email_audit_log to authenticated;
-- Timestamps, attempts, outcomes and the owner are not the caller's to choose.
grant insert (id, user_id, config_id, from_email, to_addresses, cc_count, bcc_count, subject, status, idempotency_key,
              agent_context)
  on public.email_audit_log to authenticated;

create policy "owner can read own audit rows"
  on public.email_audit_log for select to authenticated
  using (user_id = (select auth.uid()));

-- Only rows that are still in flight; the outcome is recorded by the function below.
create policy "owner can record own sends in flight"
  on public.email_audit_log for insert to authenticated
  with check (
    user_id = (select auth.uid())
    and status in ('scheduled', 'queued', 'sending')
    and completed_at is null
    and message_id is null
    -- The foreign key alone would accept (and so reveal) other users' config ids.
    and (
      config_id is null
      or exists (
        select 1 from public.user_smtp_configs c
         where c.id = config_id and c.user_id = (select auth.uid())
      )
    )
  );

-- Record the outcome of an in-flight send, once. Finished rows are immutable.
create function private.record_email_outcome(
  p_audit_id uuid,
  p_status text,
  p_message_id text default null,
  p_accepted text[] default '{}',
  p_rejected text[] default '{}',
  p_error_class text default null,
  p_error_message text default null,
  p_smtp_response_code integer default null
) returns void
language plpgsql
security definer
set search_path = ''
as $$
begin
  if p_status is null or p_status not in ('sent', 'failed', 'unknown') then
    raise exception 'outcome status must be sent, failed or unknown' using errcode = '22023';
  end if;

  update public.email_audit_log a
     set status = p_status,
         message_id = p_message_id,
         accepted = coalesce(p_accepted, '{}'),
         rejected = coalesce(p_rejected, '{}'),
         error_class = p_error_class,
         error_message = left(p_error_message, 1000),
         smtp_response_code = p_smtp_response_code,
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

revoke all on function private.record_email_outcome(uuid, text, text, text[], text[], text, text, integer)
  from public, anon, authenticated;
grant execute on function private.record_email_outcome(uuid, text, text, text[], text[], text, text, integer)
  to authenticated;
