-- Platform bootstrap for the Docker-free local stack, applied by the superuser
-- `supabase_admin` to a fresh cluster.
--
-- It stands in for what the Supabase Postgres image provides and our migrations rely on,
-- with the platform's owners and privileges (supabase/postgres init scripts and migrations,
-- supautils' settings, GoTrue's auth schema, supabase_vault 0.3.x), so that what passes
-- here passes there, and what the platform refuses is refused here too:
-- * `supabase_admin` is the superuser and owns the platform schemas; `postgres` is NOT a
--   superuser (NOSUPERUSER CREATEDB CREATEROLE REPLICATION BYPASSRLS), is a member of
--   pg_read_all_data, pg_monitor and pg_signal_backend, has search_path
--   "$user", public, extensions, and is what migrations, seed, tests and the functions use.
-- * supautils' reserved roles (anon, authenticated, service_role, authenticator,
--   supabase_auth_admin) cannot be altered by `postgres`. PG15 has one lever for that
--   without supautils: CREATEROLE cannot alter a REPLICATION role. So they carry
--   REPLICATION here, and the replication-slot functions, which check that attribute and
--   are otherwise open to PUBLIC, are executable by `postgres` only, as the attribute
--   allows on the platform. Renaming, dropping and granting membership in them (e.g.
--   `grant authenticator to ...`) cannot be refused on PG15: docs/local-stack.md lists it.
-- * `auth` is owned by supabase_admin, `auth.users` by supabase_auth_admin, with the
--   columns GoTrue reads and RLS enabled; postgres may use the tables (SELECT with grant
--   option, as GoTrue grants it) but not create in the schema. auth.uid(), auth.role(),
--   auth.email() and auth.jwt() read the request's claims as GoTrue's versions do.
-- * Vault: only postgres reaches it (not service_role, not the API roles): USAGE on the
--   schema, SELECT and DELETE on the secrets and the decrypted view, EXECUTE on
--   create_secret, update_secret and the decrypting function, each with grant option.
--   `create_secret` with a NULL description fails (23502) as the real one does.
--   The encryption key is a file in the data directory that only superuser-owned
--   functions read, so not even pg_read_all_data reaches it (the real key is outside the
--   database). `decrypted_secret` has collation "C", as the real view's
--   `convert_from(..., 'utf8')` does.
-- * The API roles have the platform's statement timeouts (anon 3 s, authenticated 8 s);
--   authenticator has statement_timeout and lock_timeout 8 s.
--
-- It is applied ONLY to a database that is not already a Supabase one (no `auth`
-- schema). On `supabase start` and on hosted Supabase the real platform is used,
-- including the real `supabase_vault` extension. Migrations never create any of this.

begin;

-- Roles ---------------------------------------------------------------------------
do $$
begin
  if not exists (select 1 from pg_roles where rolname = 'postgres') then
    create role postgres login;
  end if;
  if not exists (select 1 from pg_roles where rolname = 'anon') then
    create role anon nologin noinherit;
  end if;
  if not exists (select 1 from pg_roles where rolname = 'authenticated') then
    create role authenticated nologin noinherit;
  end if;
  if not exists (select 1 from pg_roles where rolname = 'service_role') then
    create role service_role nologin noinherit bypassrls;
  end if;
  if not exists (select 1 from pg_roles where rolname = 'authenticator') then
    create role authenticator login noinherit;
  end if;
  if not exists (select 1 from pg_roles where rolname = 'supabase_auth_admin') then
    create role supabase_auth_admin login noinherit nocreaterole;
  end if;
end
$$;

alter role postgres nosuperuser createdb createrole login replication bypassrls;
alter role anon inherit;
alter role authenticated inherit;
alter role service_role inherit;
alter role supabase_auth_admin nocreaterole;
grant anon, authenticated, service_role to authenticator;
-- What lets the functions (and PostgREST's authenticator) act as a signed-in user.
grant anon, authenticated, service_role to postgres;
grant pg_read_all_data, pg_monitor, pg_signal_backend to postgres;

alter role postgres set search_path = "$user", public, extensions;
alter role supabase_auth_admin set search_path = auth;
alter role anon set statement_timeout = '3s';
alter role authenticated set statement_timeout = '8s';
alter role authenticator set statement_timeout = '8s';
alter role authenticator set lock_timeout = '8s';

-- supautils' reserved roles: `postgres` may not alter them (see the header). Their settings
-- stay changeable (ALTER ROLE ... SET), as supautils allows for the API roles.
alter role anon replication;
alter role authenticated replication;
alter role service_role replication;
alter role authenticator replication;
alter role supabase_auth_admin replication;
-- The attribute would open the replication-slot functions to them; keep those to the roles
-- that hold REPLICATION on the platform (postgres; the superuser needs no grant).
do $$
declare
  fn regprocedure;
begin
  for fn in
    select p.oid::regprocedure from pg_catalog.pg_proc p
     where p.pronamespace = 'pg_catalog'::regnamespace
       and p.proname in (
         'pg_create_physical_replication_slot', 'pg_create_logical_replication_slot',
         'pg_drop_replication_slot', 'pg_replication_slot_advance',
         'pg_copy_physical_replication_slot', 'pg_copy_logical_replication_slot',
         'pg_logical_slot_get_changes', 'pg_logical_slot_peek_changes',
         'pg_logical_slot_get_binary_changes', 'pg_logical_slot_peek_binary_changes')
  loop
    execute format('revoke execute on function %s from public', fn);
    execute format('grant execute on function %s to postgres', fn);
  end loop;
end
$$;

grant all on database postgres to postgres;

-- Schemas -------------------------------------------------------------------------
create schema if not exists extensions;
grant all on schema extensions to postgres;
grant usage on schema extensions to anon, authenticated, service_role;
create extension if not exists pgcrypto with schema extensions;
create extension if not exists "uuid-ossp" with schema extensions;
-- On Supabase, postgres may create these (supautils); here the superuser installs them ahead.
do $$
begin
  if exists (select 1 from pg_available_extensions where name = 'pgtap') then
    create extension if not exists pgtap with schema extensions;
  end if;
end
$$;

-- Supabase grants the API roles broad default privileges in `public`; migrations are
-- expected to narrow them (revoke, then grant what is needed).
grant all on schema public to postgres;
grant usage on schema public to anon, authenticated, service_role;
alter default privileges for role postgres in schema public grant all on tables to anon, authenticated, service_role;
alter default privileges for role postgres in schema public grant all on functions to anon, authenticated, service_role;
alter default privileges for role postgres in schema public grant all on sequences to anon, authenticated, service_role;

-- auth ----------------------------------------------------------------------------
create schema auth authorization supabase_admin;
grant usage on schema auth to anon, authenticated, service_role, postgres;
grant all on schema auth to supabase_auth_admin;

-- The columns GoTrue reads, with its types: GoTrue scans the token columns into Go
-- strings, so rows must carry '' there, never NULL (local/users.ts inserts them so).
create table auth.users (
  instance_id uuid,
  id uuid primary key,
  aud varchar(255),
  role varchar(255),
  email varchar(255),
  encrypted_password varchar(255),
  email_confirmed_at timestamptz,
  invited_at timestamptz,
  confirmation_token varchar(255),
  confirmation_sent_at timestamptz,
  recovery_token varchar(255),
  recovery_sent_at timestamptz,
  email_change_token_new varchar(255),
  email_change varchar(255),
  email_change_sent_at timestamptz,
  last_sign_in_at timestamptz,
  raw_app_meta_data jsonb,
  raw_user_meta_data jsonb,
  is_super_admin boolean,
  created_at timestamptz,
  updated_at timestamptz,
  phone text unique default null,
  phone_confirmed_at timestamptz,
  phone_change text default '',
  phone_change_token varchar(255) default '',
  phone_change_sent_at timestamptz,
  email_change_token_current varchar(255) default '',
  email_change_confirm_status smallint default 0,
  banned_until timestamptz,
  reauthentication_token varchar(255) default '',
  reauthentication_sent_at timestamptz,
  is_sso_user boolean not null default false,
  deleted_at timestamptz,
  is_anonymous boolean not null default false
);
create unique index users_email_partial_key on auth.users (email) where is_sso_user = false;
alter table auth.users owner to supabase_auth_admin;
alter table auth.users enable row level security;
grant all on auth.users to postgres;
grant select on auth.users to postgres with grant option;

create function auth.jwt() returns jsonb
language sql stable
as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim', true), ''),
    nullif(current_setting('request.jwt.claims', true), '')
  )::jsonb
$$;

create function auth.uid() returns uuid
language sql stable
as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim.sub', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
  )::uuid
$$;

create function auth.role() returns text
language sql stable
as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim.role', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role')
  )::text
$$;

create function auth.email() returns text
language sql stable
as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim.email', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'email')
  )::text
$$;

alter function auth.jwt() owner to supabase_auth_admin;
alter function auth.uid() owner to supabase_auth_admin;
alter function auth.role() owner to supabase_auth_admin;
alter function auth.email() owner to supabase_auth_admin;
grant execute on function auth.jwt(), auth.uid(), auth.role(), auth.email()
  to anon, authenticated, service_role, postgres;

-- vault ---------------------------------------------------------------------------
create schema vault;

-- Stands in for the key the real Vault keeps outside the database: a file in the data
-- directory, written once here and read only by the superuser-owned functions below.
do $$
begin
  execute format(
    'copy (select encode(extensions.gen_random_bytes(32), %L)) to %L',
    'hex',
    current_setting('data_directory') || '/vault_root_key'
  );
end
$$;

-- These run on every decrypted read, so they are PL/pgSQL (planned once per connection; a
-- `language sql` function with SET is planned on every call), and the key is derived without
-- iterations (s2k-mode=1: the key is 32 random bytes, not a password to stretch). The real
-- Vault decrypts with libsodium in microseconds; pgcrypto's default (65,536 hash rounds) took
-- 0.3 ms per secret, a cost the bench would otherwise charge to every send.
create function vault._root_key() returns text
language plpgsql stable security definer set search_path = ''
as $$
begin
  return pg_catalog.btrim(pg_catalog.pg_read_file('vault_root_key'), E'\n');
end
$$;

create table vault.secrets (
  id uuid primary key default gen_random_uuid(),
  name text,
  description text not null default '',
  secret text not null,
  key_id uuid,
  nonce bytea,
  created_at timestamptz not null default current_timestamp,
  updated_at timestamptz not null default current_timestamp
);
create unique index secrets_name_idx on vault.secrets (name) where name is not null;

create function vault._encrypt(plaintext text) returns text
language plpgsql volatile security definer set search_path = ''
as $$
begin
  return encode(extensions.pgp_sym_encrypt(plaintext, vault._root_key(), 's2k-mode=1, cipher-algo=aes256'), 'base64');
end
$$;

-- What the real view calls to decrypt (vault._crypto_aead_det_decrypt); postgres may call it.
create function vault._decrypt(ciphertext text) returns text
language plpgsql stable security definer set search_path = ''
as $$
begin
  return extensions.pgp_sym_decrypt(decode(ciphertext, 'base64'), vault._root_key());
end
$$;

create view vault.decrypted_secrets as
  select s.id, s.name, s.description, s.secret,
         vault._decrypt(s.secret) collate "C" as decrypted_secret,
         s.key_id, s.nonce, s.created_at, s.updated_at
  from vault.secrets s;

-- As the real one: the description is inserted as given, so NULL violates NOT NULL.
create function vault.create_secret(
  new_secret text,
  new_name text default null,
  new_description text default '',
  new_key_id uuid default null
) returns uuid
language plpgsql volatile security definer set search_path = ''
as $$
declare
  new_id uuid;
begin
  insert into vault.secrets (secret, name, description)
  values (vault._encrypt(new_secret), new_name, new_description)
  returning id into new_id;
  return new_id;
end
$$;

-- As the real one: NULL leaves a field as it is; the key id is accepted and unused.
create function vault.update_secret(
  secret_id uuid,
  new_secret text default null,
  new_name text default null,
  new_description text default null,
  new_key_id uuid default null
) returns void
language plpgsql volatile security definer set search_path = ''
as $$
begin
  update vault.secrets s
     set secret = coalesce(vault._encrypt(new_secret), s.secret),
         name = coalesce(new_name, s.name),
         description = coalesce(new_description, s.description),
         updated_at = now()
   where s.id = secret_id;
end
$$;

-- As on Supabase: only postgres reaches Vault (service_role and the API roles do not), with
-- grant option, so a project may pass access on explicitly.
revoke all on schema vault from public;
revoke all on all tables in schema vault from public;
revoke all on all functions in schema vault from public;
grant usage on schema vault to postgres with grant option;
grant select, delete on vault.secrets, vault.decrypted_secrets to postgres with grant option;
grant execute on function vault.create_secret(text, text, text, uuid),
                         vault.update_secret(uuid, text, text, text, uuid),
                         vault._decrypt(text) to postgres with grant option;

-- Realtime's publication, empty and owned by postgres, as every Supabase project has it (the
-- local stack runs no Realtime server; migrations add tables to it as on Supabase).
do $$
begin
  if not exists (select 1 from pg_publication where pubname = 'supabase_realtime') then
    create publication supabase_realtime;
    alter publication supabase_realtime owner to postgres;
  end if;
end
$$;

commit;
