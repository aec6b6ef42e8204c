-- Platform bootstrap for the Docker-free local stack.
--
-- This file stands in for what the Supabase Postgres image already provides and our
-- migrations rely on: the API roles, the `auth` schema (users table and the
-- auth.uid()/auth.jwt()/auth.role() helpers reading `request.jwt.claims` the way
-- PostgREST sets them), the `extensions` schema, and the Vault API.
--
-- It is applied ONLY to a database that is not already a Supabase one (no `auth`
-- schema). On `supabase start` and on hosted Supabase the real platform is used,
-- including the real `supabase_vault` extension. Migrations never create any of this.
--
-- The Vault here keeps the same API (vault.create_secret, vault.update_secret,
-- vault.secrets, vault.decrypted_secrets) and encrypts with pgcrypto under a root key
-- stored in a table only the superuser can read.

begin;

-- Roles ---------------------------------------------------------------------------
do $$
begin
  if not exists (select 1 from pg_roles where rolname = 'anon') then
    create role anon nologin noinherit;
  end if;
  if not exists (select 1 from pg_roles where rolname = 'authenticated') then
    create role authenticated nologin noinherit;
  end if;
  if not exists (select 1 from pg_roles where rolname = 'service_role') then
    create role service_role nologin noinherit bypassrls;
  end if;
end
$$;

grant anon, authenticated, service_role to current_user;

-- Schemas -------------------------------------------------------------------------
create schema if not exists extensions;
grant usage on schema extensions to anon, authenticated, service_role;
create extension if not exists pgcrypto with schema extensions;

-- Supabase grants the API roles broad default privileges in `public`; migrations are
-- expected to narrow them (revoke, then grant what is needed). Reproduce that here so
-- local tests exercise the same starting point.
grant usage on schema public to anon, authenticated, service_role;
alter default privileges in schema public grant all on tables to anon, authenticated, service_role;
alter default privileges in schema public grant all on functions to anon, authenticated, service_role;
alter default privileges in schema public grant all on sequences to anon, authenticated, service_role;

-- auth ----------------------------------------------------------------------------
create schema auth;
grant usage on schema auth to anon, authenticated, service_role;

create table auth.users (
  id uuid primary key default gen_random_uuid(),
  aud text default 'authenticated',
  role text default 'authenticated',
  email text unique,
  raw_app_meta_data jsonb not null default '{}',
  raw_user_meta_data jsonb not null default '{}',
  is_anonymous boolean not null default false,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);

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

grant execute on function auth.jwt(), auth.uid(), auth.role() to anon, authenticated, service_role;

-- vault ---------------------------------------------------------------------------
create schema vault;

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
         extensions.pgp_sym_decrypt(decode(s.secret, 'base64'), encode(k.key, 'hex')) as decrypted_secret,
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

-- As on Supabase: the API roles cannot reach Vault at all.
revoke all on schema vault from public, anon, authenticated;
revoke all on all tables in schema vault from public, anon, authenticated;
revoke all on all functions in schema vault from public, anon, authenticated;
grant usage on schema vault to service_role;
grant select, delete on vault.secrets, vault.decrypted_secrets to service_role;
grant execute on function vault.create_secret(text, text, text, uuid),
                         vault.update_secret(uuid, text, text, text, uuid) to service_role;

commit;
