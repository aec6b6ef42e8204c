-- Platform bootstrap for the Docker-free local stack, applied by the superuser
-- `supabase_admin` to a fresh cluster.
--
-- It stands in for what the Supabase Postgres image provides and our migrations rely on,
-- with the platform's owners and privileges (supabase/postgres init scripts and migrations,
-- GoTrue's auth schema, supabase_vault 0.3.x), so that what passes here passes there:
-- * `supabase_admin` is the superuser and owns the platform schemas; `postgres` is NOT a
--   superuser (NOSUPERUSER CREATEDB CREATEROLE REPLICATION BYPASSRLS) and is what
--   migrations, seed, tests and the functions use.
-- * `auth` is owned by supabase_admin, `auth.users` by supabase_auth_admin, with the
--   columns GoTrue reads; postgres may use the tables but not create in the schema.
-- * Vault: postgres has only USAGE on the schema, SELECT and DELETE on the secrets and the
--   decrypted view, and EXECUTE on create_secret/update_secret. The encryption key is in a
--   table only the superuser can read. `decrypted_secret` has collation "C", as the real
--   view's `convert_from(..., 'utf8')` does.
-- * The API roles have the platform's statement timeouts (anon 3 s, authenticated 8 s).
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
    create role supabase_auth_admin login noinherit createrole noreplication;
  end if;
end
$$;

alter role postgres nosuperuser createdb createrole login replication bypassrls;
alter role anon inherit;
alter role authenticated inherit;
alter role service_role inherit;
grant anon, authenticated, service_role to authenticator;
-- What lets the functions (and PostgREST's authenticator) act as a signed-in user.
grant anon, authenticated, service_role to postgres;

alter role anon set statement_timeout = '3s';
alter role authenticated set statement_timeout = '8s';

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
grant all on auth.users to postgres;

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

alter function auth.jwt() owner to supabase_auth_admin;
alter function auth.uid() owner to supabase_auth_admin;
alter function auth.role() owner to supabase_auth_admin;
grant execute on function auth.jwt(), auth.uid(), auth.role() to anon, authenticated, service_role, postgres;

-- vault ---------------------------------------------------------------------------
create schema vault;

-- Stands in for the key the real Vault keeps outside the database (pgsodium's server key).
create table vault.root_key (
  id boolean primary key default true check (id),
  key bytea not null
);
insert into vault.root_key (key) values (extensions.gen_random_bytes(32));
revoke all on vault.root_key from public;

create table vault.secrets (
  id uuid primary key default gen_random_uuid(),
  name text unique,
  description text not null default '',
  secret text not null,
  key_id uuid,
  nonce bytea,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);

create function vault._encrypt(plaintext text) returns text
language sql volatile security definer set search_path = ''
as $$
  select encode(extensions.pgp_sym_encrypt(plaintext, encode(k.key, 'hex')), 'base64')
  from vault.root_key k
$$;

create view vault.decrypted_secrets as
  select s.id, s.name, s.description, s.secret,
         extensions.pgp_sym_decrypt(decode(s.secret, 'base64'), encode(k.key, 'hex')) collate "C" as decrypted_secret,
         s.key_id, s.nonce, s.created_at, s.updated_at
  from vault.secrets s
  cross join vault.root_key k;

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
  insert into vault.secrets (secret, name, description, key_id)
  values (vault._encrypt(new_secret), new_name, coalesce(new_description, ''), new_key_id)
  returning id into new_id;
  return new_id;
end
$$;

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
         key_id = coalesce(new_key_id, s.key_id),
         updated_at = now()
   where s.id = secret_id;
end
$$;

-- As on Supabase: the API roles cannot reach Vault at all; postgres only through these.
revoke all on schema vault from public, anon, authenticated;
revoke all on all tables in schema vault from public, anon, authenticated;
revoke all on all functions in schema vault from public, anon, authenticated;
grant usage on schema vault to postgres, service_role;
grant select, delete on vault.secrets, vault.decrypted_secrets to postgres, service_role;
grant execute on function vault.create_secret(text, text, text, uuid),
                         vault.update_secret(uuid, text, text, text, uuid) to postgres, service_role;

commit;
