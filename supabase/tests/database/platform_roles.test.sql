-- The database role the migrations, tests and functions use is the platform's `postgres`:
-- not a superuser, unable to read Vault's key or to create in `auth`, with the API roles'
-- statement timeouts and Vault's "C" collation in place. Passes on the local stand-in
-- (local/platform.sql) and on a real Supabase database alike.
begin;
create extension if not exists pgtap with schema extensions;
set local search_path = public, extensions;

select plan(9);

select is(current_user::text, 'postgres', 'the tests run as postgres');
select ok(
  not (select rolsuper from pg_catalog.pg_roles where rolname = current_user),
  'postgres is not a superuser'
);
select ok(
  (select rolbypassrls and rolcreaterole from pg_catalog.pg_roles where rolname = current_user),
  'postgres bypasses RLS and may create roles, as on Supabase'
);
select ok(
  to_regclass('vault.root_key') is null or not has_table_privilege('vault.root_key', 'select'),
  'postgres cannot read the Vault key'
);
select ok(not has_schema_privilege('auth', 'create'), 'postgres cannot create objects in auth');
select ok(has_table_privilege('vault.decrypted_secrets', 'select'), 'postgres can read decrypted secrets (for definer functions)');
select is(
  (select c.collname::text
     from pg_catalog.pg_attribute a
     join pg_catalog.pg_collation c on c.oid = a.attcollation
    where a.attrelid = 'vault.decrypted_secrets'::regclass and a.attname = 'decrypted_secret'),
  'C',
  'vault.decrypted_secrets.decrypted_secret has collation "C"'
);
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

select * from finish();
rollback;
