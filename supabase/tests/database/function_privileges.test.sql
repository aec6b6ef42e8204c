-- The `private` schema and its security definer functions: reachable by authenticated
-- (the functions check ownership themselves), not by anon, not by PUBLIC.
begin;
create extension if not exists pgtap with schema extensions;
set local search_path = public, extensions;

select plan(23);

insert into auth.users (id, email) values
  ('aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'alice@example.test');

insert into public.user_smtp_configs (id, user_id, name, host, port, username, from_email)
values
  ('a1a1a1a1-0000-4000-8000-000000000001', 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa',
   'work', 'smtp.work.example', 465, 'alice', 'alice@work.example');

insert into public.email_audit_log (id, user_id, from_email, status)
values
  ('a0000000-0000-4000-8000-0000000000e1', 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa',
   'alice@work.example', 'sending');

-- Catalog -----------------------------------------------------------------------------------
select schema_privs_are(
  'private', 'anon', array[]::name[],
  'anon cannot use the private schema'
);

select schema_privs_are(
  'private', 'authenticated', array['USAGE'],
  'authenticated can use, but not create in, the private schema'
);

select function_privs_are(
  'private', 'smtp_config_credentials', array['uuid'], 'anon', array[]::name[],
  'anon cannot execute private.smtp_config_credentials'
);

select function_privs_are(
  'private', 'set_smtp_config_password', array['uuid', 'text'], 'anon', array[]::name[],
  'anon cannot execute private.set_smtp_config_password'
);

select function_privs_are(
  'private', 'record_email_outcome',
  array['uuid', 'jsonb'],
  'anon', array[]::name[],
  'anon cannot execute private.record_email_outcome'
);

select function_privs_are(
  'private', 'smtp_config_credentials', array['uuid'], 'authenticated', array['EXECUTE'],
  'authenticated can execute private.smtp_config_credentials'
);

select function_privs_are(
  'private', 'set_smtp_config_password', array['uuid', 'text'], 'authenticated', array['EXECUTE'],
  'authenticated can execute private.set_smtp_config_password'
);

select function_privs_are(
  'private', 'record_email_outcome',
  array['uuid', 'jsonb'],
  'authenticated', array['EXECUTE'],
  'authenticated can execute private.record_email_outcome'
);

select function_privs_are(
  'private', 'delete_smtp_config_secrets', array[]::name[], 'authenticated', array[]::name[],
  'authenticated cannot execute the secret-deleting trigger function'
);

select is_empty(
  $$select p.oid::regprocedure
      from pg_catalog.pg_proc p
     where p.pronamespace = 'private'::regnamespace
       and p.prosecdef
       and pg_catalog.has_function_privilege('public', p.oid, 'execute')$$,
  'no security definer function in private is executable by PUBLIC'
);

select is_empty(
  $$select p.oid::regprocedure
      from pg_catalog.pg_proc p
     where p.pronamespace = 'private'::regnamespace
       and p.prosecdef
       and not coalesce('search_path=""' = any(p.proconfig), false)$$,
  'every security definer function in private pins search_path to empty'
);

-- anon ----------------------------------------------------------------------------------------
set local role anon;
set local request.jwt.claims to '{"role":"anon"}';

select throws_ok(
  $$select * from private.smtp_config_credentials('a1a1a1a1-0000-4000-8000-000000000001')$$,
  '42501', 'permission denied for schema private',
  'anon cannot call private.smtp_config_credentials'
);

select throws_ok(
  $$select private.set_smtp_config_password('a1a1a1a1-0000-4000-8000-000000000001', 'anon')$$,
  '42501', 'permission denied for schema private',
  'anon cannot call private.set_smtp_config_password'
);

select throws_ok(
  $$select private.record_email_outcome('a0000000-0000-4000-8000-0000000000e1', '{"status": "sent"}')$$,
  '42501', 'permission denied for schema private',
  'anon cannot call private.record_email_outcome'
);

-- A forged subject in anon's claims does not help: the role is what is checked first.
set local request.jwt.claims to '{"sub":"aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa","role":"anon"}';

select throws_ok(
  $$select * from private.smtp_config_credentials('a1a1a1a1-0000-4000-8000-000000000001')$$,
  '42501', 'permission denied for schema private',
  'anon with the owner''s sub in its claims still cannot read credentials'
);

select throws_ok(
  $$select private.record_email_outcome('a0000000-0000-4000-8000-0000000000e1', '{"status": "sent"}')$$,
  '42501', 'permission denied for schema private',
  'anon with the owner''s sub in its claims still cannot record outcomes'
);

-- authenticated without a subject (e.g. a malformed token) gets nothing -------------------------
set local role authenticated;
set local request.jwt.claims to '{"role":"authenticated"}';

select is_empty(
  $$select * from private.smtp_config_credentials('a1a1a1a1-0000-4000-8000-000000000001')$$,
  'authenticated without a sub gets no credentials'
);

select throws_ok(
  $$select private.set_smtp_config_password('a1a1a1a1-0000-4000-8000-000000000001', 'nobody')$$,
  'P0002', 'smtp config not found',
  'authenticated without a sub cannot set a password'
);

select throws_ok(
  $$select private.record_email_outcome('a0000000-0000-4000-8000-0000000000e1', '{"status": "sent"}')$$,
  'P0002', 'no in-flight audit row a0000000-0000-4000-8000-0000000000e1 for this user',
  'authenticated without a sub cannot record an outcome'
);

-- The owner, for contrast ---------------------------------------------------------------------
set local request.jwt.claims to '{"sub":"aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa","role":"authenticated"}';

select lives_ok(
  $$select private.set_smtp_config_password('a1a1a1a1-0000-4000-8000-000000000001', 'owner secret')$$,
  'the owner can call private.set_smtp_config_password'
);

select results_eq(
  $$select username, password from private.smtp_config_credentials('a1a1a1a1-0000-4000-8000-000000000001')$$,
  $$values ('alice'::text, 'owner secret'::text)$$,
  'the owner can call private.smtp_config_credentials'
);

select lives_ok(
  $$select private.record_email_outcome('a0000000-0000-4000-8000-0000000000e1', '{"status": "sent", "message_id": "<m1@work.example>"}')$$,
  'the owner can call private.record_email_outcome'
);

select throws_ok(
  $$select private.record_email_outcome('a0000000-0000-4000-8000-0000000000e1', '{"status": "bounced"}')$$,
  '22023', 'outcome status must be sent, deferred, failed or unknown',
  'record_email_outcome validates the status before looking for the row'
);

select * from finish();
rollback;
