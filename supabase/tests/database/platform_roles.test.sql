-- The database role the migrations, tests and functions use is the platform's `postgres`:
-- not a superuser, unable to read Vault's key or to create in `auth`, unable to alter the
-- roles supautils reserves, the only role that reaches Vault, with the platform's
-- memberships, search_path and grant options, the API roles' timeouts and Vault's "C"
-- collation in place. Passes on the local stand-in (local/platform.sql) and on a real
-- Supabase database alike: it asserts only what is true on both.
begin;
create extension if not exists pgtap with schema extensions;
set local search_path = public, extensions;

select plan(31);

-- Who postgres is ------------------------------------------------------------------
select is(current_user::text, 'postgres', 'the tests run as postgres');
select ok(
  not (select rolsuper from pg_catalog.pg_roles where rolname = current_user),
  'postgres is not a superuser'
);
select ok(
  (select rolbypassrls and rolcreaterole from pg_catalog.pg_roles where rolname = current_user),
  'postgres bypasses RLS and may create roles, as on Supabase'
);
select ok(pg_has_role('postgres', 'pg_read_all_data', 'member'), 'postgres is a member of pg_read_all_data');
select ok(pg_has_role('postgres', 'pg_monitor', 'member'), 'postgres is a member of pg_monitor');
select ok(pg_has_role('postgres', 'pg_signal_backend', 'member'), 'postgres is a member of pg_signal_backend');
-- Stored as "$user", public, extensions (the platform's own spelling of "$user" varies).
select ok(
  exists (
    select 1
      from pg_catalog.pg_db_role_setting s, unnest(s.setconfig) as c(setting)
     where s.setrole = 'postgres'::regrole and s.setdatabase = 0
       and c.setting like 'search_path=%public, extensions'
  ),
  'postgres has search_path "$user", public, extensions'
);
select ok(not has_schema_privilege('auth', 'create'), 'postgres cannot create objects in auth');
-- The key is never reachable: no table on Supabase, a file only superuser-owned functions read here.
select throws_ok(
  $$select pg_catalog.pg_read_file('vault_root_key')$$,
  '42501', null,
  'postgres cannot read server files, where the local Vault key is'
);

-- Roles supautils reserves: postgres may create roles but not alter these -------------
select throws_ok($$alter role anon nologin$$, '42501', null, 'postgres cannot alter anon');
select throws_ok($$alter role authenticated login$$, '42501', null, 'postgres cannot alter authenticated');
select throws_ok($$alter role service_role connection limit 1$$, '42501', null, 'postgres cannot alter service_role');
select throws_ok($$alter role authenticator password 'guessed'$$, '42501', null, 'postgres cannot alter authenticator');
select throws_ok(
  $$alter role supabase_auth_admin nologin$$,
  '42501', null,
  'postgres cannot alter supabase_auth_admin'
);

-- Settings of the API roles ----------------------------------------------------------
select ok(
  (select 'statement_timeout=3s' = any (s.setconfig)
     from pg_catalog.pg_db_role_setting s where s.setrole = 'anon'::regrole and s.setdatabase = 0),
  'anon has a 3 s statement timeout'
);
select ok(
  (select 'statement_timeout=8s' = any (s.setconfig)
     from pg_catalog.pg_db_role_setting s where s.setrole = 'authenticated'::regrole and s.setdatabase = 0),
  'authenticated has an 8 s statement timeout'
);
select ok(
  (select 'statement_timeout=8s' = any (s.setconfig) and 'lock_timeout=8s' = any (s.setconfig)
     from pg_catalog.pg_db_role_setting s where s.setrole = 'authenticator'::regrole and s.setdatabase = 0),
  'authenticator has 8 s statement and lock timeouts'
);

-- auth --------------------------------------------------------------------------------
select ok(
  (select relrowsecurity from pg_catalog.pg_class where oid = 'auth.users'::regclass),
  'auth.users has row level security enabled'
);
select ok(
  has_table_privilege('auth.users', 'select with grant option'),
  'postgres may read auth.users and grant reading it'
);
set local request.jwt.claims = '{"sub": "00000000-0000-0000-0000-00000000a11c", "email": "alice@example.com"}';
select is(auth.email(), 'alice@example.com', 'auth.email() reads the email claim');
reset request.jwt.claims;

-- Vault: only postgres reaches it, with grant option -----------------------------------
select ok(has_schema_privilege('vault', 'usage with grant option'), 'postgres may use vault, with grant option');
select ok(
  has_table_privilege('vault.decrypted_secrets', 'select with grant option'),
  'postgres can read decrypted secrets (for definer functions), with grant option'
);
select ok(
  has_table_privilege('vault.secrets', 'delete with grant option'),
  'postgres can delete secrets, with grant option'
);
select ok(
  has_function_privilege('vault.create_secret(text, text, text, uuid)', 'execute with grant option')
    and has_function_privilege('vault.update_secret(uuid, text, text, text, uuid)', 'execute with grant option'),
  'postgres can call create_secret and update_secret, with grant option'
);
select is(
  (select c.collname::text
     from pg_catalog.pg_attribute a
     join pg_catalog.pg_collation c on c.oid = a.attcollation
    where a.attrelid = 'vault.decrypted_secrets'::regclass and a.attname = 'decrypted_secret'),
  'C',
  'vault.decrypted_secrets.decrypted_secret has collation "C"'
);
select throws_ok(
  $$select vault.create_secret('s3cret', 'platform_roles_null_description', null)$$,
  '23502', null,
  'vault.create_secret refuses a NULL description'
);
select isnt(
  vault.create_secret('s3cret', 'platform_roles_default_description'),
  null,
  'vault.create_secret without a description stores one'
);
select is(
  (select description from vault.decrypted_secrets where name = 'platform_roles_default_description'),
  '',
  'the description defaults to the empty string'
);

set local role service_role;
select throws_ok(
  $$select decrypted_secret from vault.decrypted_secrets$$,
  '42501', null,
  'service_role cannot read vault.decrypted_secrets'
);
select throws_ok(
  $$select vault.create_secret('planted')$$,
  '42501', null,
  'service_role cannot create vault secrets'
);
select throws_ok(
  $$delete from vault.secrets$$,
  '42501', null,
  'service_role cannot delete vault secrets'
);
reset role;

select * from finish();
rollback;
