-- public.user_smtp_configs: RLS, column privileges and constraints, as the owner, as
-- another user and as anon. Everything runs in one transaction and is rolled back.
begin;
create extension if not exists pgtap with schema extensions;
set local search_path = public, extensions;

select plan(46);

-- Fixtures (as the migration role, which bypasses RLS) ----------------------------------
-- Alice: aaaaaaaa-…, Bob: bbbbbbbb-…
insert into auth.users (id, email) values
  ('aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'alice@example.test'),
  ('bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb', 'bob@example.test');

-- Timestamps in the past so that the update trigger is observable inside this
-- transaction (now() is the transaction start time).
insert into public.user_smtp_configs
  (id, user_id, name, host, port, security, username, from_email, from_name,
   created_at, updated_at)
values
  ('a1a1a1a1-0000-4000-8000-000000000001', 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa',
   'work', 'smtp.work.example', 465, 'tls', 'alice', 'alice@work.example', 'Alice',
   '2000-01-01 00:00:00+00', '2000-01-01 00:00:00+00');

-- Shape -----------------------------------------------------------------------------------
select ok(
  (select relrowsecurity from pg_catalog.pg_class where oid = 'public.user_smtp_configs'::regclass),
  'row level security is enabled on user_smtp_configs'
);

select policies_are(
  'public', 'user_smtp_configs',
  array[
    'owner can read own smtp configs',
    'owner can create own smtp configs',
    'owner can update own smtp configs',
    'owner can delete own smtp configs'
  ],
  'user_smtp_configs has exactly the four owner policies'
);

select table_privs_are(
  'public', 'user_smtp_configs', 'anon', array[]::name[],
  'anon has no table privileges on user_smtp_configs'
);

select table_privs_are(
  'public', 'user_smtp_configs', 'authenticated', array['SELECT', 'DELETE'],
  'authenticated has only SELECT and DELETE at table level (insert/update are per column)'
);

-- Alice, the owner ---------------------------------------------------------------------
set local role authenticated;
set local request.jwt.claims to '{"sub":"aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa","role":"authenticated"}';

select lives_ok(
  $$insert into public.user_smtp_configs (name, host, port, security, username, from_email, from_name, is_default)
    values ('personal', 'smtp.mail.example', 587, 'starttls', 'alice', 'alice@mail.example', 'Alice', true)$$,
  'owner can create a config'
);

select results_eq(
  $$select user_id from public.user_smtp_configs where name = 'personal'$$,
  $$values ('aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa'::uuid)$$,
  'a new config belongs to the caller (user_id defaults to auth.uid())'
);

select results_eq(
  $$select name from public.user_smtp_configs order by name$$,
  array['personal', 'work'],
  'owner sees exactly their own configs'
);

select results_eq(
  $$with u as (
      update public.user_smtp_configs set port = 2525, security = 'none'
       where id = 'a1a1a1a1-0000-4000-8000-000000000001'
      returning port, security
    )
    select port, security from u$$,
  $$values (2525, 'none')$$,
  'owner can update own config'
);

select is(
  (select updated_at from public.user_smtp_configs where id = 'a1a1a1a1-0000-4000-8000-000000000001'),
  now(),
  'updating a config sets updated_at to the time of the update'
);

select is(
  (select created_at from public.user_smtp_configs where id = 'a1a1a1a1-0000-4000-8000-000000000001'),
  '2000-01-01 00:00:00+00'::timestamptz,
  'updating a config leaves created_at alone'
);

select throws_ok(
  $$insert into public.user_smtp_configs (user_id, name, host, port, from_email)
    values ('aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'explicit-owner', 'smtp.mail.example', 587, 'alice@mail.example')$$,
  '42501', 'permission denied for table user_smtp_configs',
  'owner cannot set user_id on insert, not even to themselves (column not granted)'
);

select throws_ok(
  $$insert into public.user_smtp_configs (name, host, port, from_email, password_secret_id)
    values ('with-secret', 'smtp.mail.example', 587, 'alice@mail.example', gen_random_uuid())$$,
  '42501', 'permission denied for table user_smtp_configs',
  'owner cannot write password_secret_id on insert'
);

select throws_ok(
  $$update public.user_smtp_configs set password_secret_id = gen_random_uuid()
     where id = 'a1a1a1a1-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table user_smtp_configs',
  'owner cannot point a config at another secret (password_secret_id not updatable)'
);

select throws_ok(
  $$update public.user_smtp_configs set user_id = 'bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb'
     where id = 'a1a1a1a1-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table user_smtp_configs',
  'owner cannot move a config to another user (user_id not updatable)'
);

select throws_ok(
  $$update public.user_smtp_configs set updated_at = '1999-01-01'
     where id = 'a1a1a1a1-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table user_smtp_configs',
  'owner cannot write the timestamps'
);

select throws_ok(
  $$insert into public.user_smtp_configs (name, host, port, from_email, is_default)
    values ('second-default', 'smtp.mail.example', 587, 'alice@mail.example', true)$$,
  '23505', 'duplicate key value violates unique constraint "user_smtp_configs_one_default_per_user"',
  'a user cannot create a second default config'
);

select throws_ok(
  $$update public.user_smtp_configs set is_default = true
     where id = 'a1a1a1a1-0000-4000-8000-000000000001'$$,
  '23505', 'duplicate key value violates unique constraint "user_smtp_configs_one_default_per_user"',
  'a user cannot mark a second config as default'
);

select lives_ok(
  $$insert into public.user_smtp_configs (name, host, port, from_email, is_default)
    values ('not-default', 'smtp.mail.example', 587, 'alice@mail.example', false)$$,
  'a user can have several non-default configs'
);

select throws_ok(
  $$insert into public.user_smtp_configs (name, host, port, from_email)
    values ('work', 'smtp.other.example', 587, 'alice@other.example')$$,
  '23505', 'duplicate key value violates unique constraint "user_smtp_configs_name_per_user"',
  'config names are unique per user'
);

select throws_ok(
  $$insert into public.user_smtp_configs (name, host, port, from_email)
    values ('port-zero', 'smtp.mail.example', 0, 'alice@mail.example')$$,
  '23514', 'new row for relation "user_smtp_configs" violates check constraint "user_smtp_configs_port_range"',
  'rejects port 0'
);

select throws_ok(
  $$insert into public.user_smtp_configs (name, host, port, from_email)
    values ('port-too-big', 'smtp.mail.example', 65536, 'alice@mail.example')$$,
  '23514', 'new row for relation "user_smtp_configs" violates check constraint "user_smtp_configs_port_range"',
  'rejects port 65536'
);

select lives_ok(
  $$insert into public.user_smtp_configs (name, host, port, from_email)
    values ('port-1', 'smtp.mail.example', 1, 'alice@mail.example'),
           ('port-65535', 'smtp.mail.example', 65535, 'alice@mail.example')$$,
  'accepts ports 1 and 65535'
);

select throws_ok(
  $$insert into public.user_smtp_configs (name, host, port, security, from_email)
    values ('ssl', 'smtp.mail.example', 465, 'ssl', 'alice@mail.example')$$,
  '23514', 'new row for relation "user_smtp_configs" violates check constraint "user_smtp_configs_security"',
  'rejects a security mode other than tls, starttls or none'
);

select throws_ok(
  $$update public.user_smtp_configs set security = 'TLS'
     where id = 'a1a1a1a1-0000-4000-8000-000000000001'$$,
  '23514', 'new row for relation "user_smtp_configs" violates check constraint "user_smtp_configs_security"',
  'security values are case sensitive, also on update'
);

select throws_ok(
  $$insert into public.user_smtp_configs (name, host, port, from_email, from_name)
    values ('crlf-name', 'smtp.mail.example', 587, 'alice@mail.example', E'Alice\r\nBcc: victim@example.test')$$,
  '23514', 'new row for relation "user_smtp_configs" violates check constraint "user_smtp_configs_from_name_no_controls"',
  'rejects a from_name with CR LF (header injection)'
);

select throws_ok(
  $$insert into public.user_smtp_configs (name, host, port, from_email, from_name)
    values ('lf-name', 'smtp.mail.example', 587, 'alice@mail.example', E'Alice\nBcc: victim@example.test')$$,
  '23514', 'new row for relation "user_smtp_configs" violates check constraint "user_smtp_configs_from_name_no_controls"',
  'rejects a from_name with a bare LF'
);

select throws_ok(
  $$update public.user_smtp_configs set from_name = E'Alice\rX'
     where id = 'a1a1a1a1-0000-4000-8000-000000000001'$$,
  '23514', 'new row for relation "user_smtp_configs" violates check constraint "user_smtp_configs_from_name_no_controls"',
  'rejects a from_name with a bare CR on update'
);

select lives_ok(
  $$insert into public.user_smtp_configs (name, host, port, from_email, from_name)
    values ('unicode-name', 'smtp.mail.example', 587, 'alice@mail.example', 'Zoë Müller-Łukasz, Ops')$$,
  'accepts a from_name with non-ASCII letters and punctuation'
);

select throws_ok(
  $$insert into public.user_smtp_configs (name, host, port, from_email)
    values ('crlf-email', 'smtp.mail.example', 587, E'alice@mail.example\r\nBcc: victim@example.test')$$,
  '23514', 'new row for relation "user_smtp_configs" violates check constraint "user_smtp_configs_from_email_canonical"',
  'rejects a from_email with CR LF'
);

select throws_ok(
  $$insert into public.user_smtp_configs (name, host, port, from_email)
    values ('bad-host', E'smtp.mail.example\r\nMAIL FROM', 587, 'alice@mail.example')$$,
  '23514', 'new row for relation "user_smtp_configs" violates check constraint "user_smtp_configs_host_shape"',
  'rejects a host with whitespace or control characters'
);

-- Bob, another user ----------------------------------------------------------------------
set local request.jwt.claims to '{"sub":"bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb","role":"authenticated"}';

select is_empty(
  $$select id from public.user_smtp_configs$$,
  'another user sees none of the owner''s configs'
);

select is_empty(
  $$select id from public.user_smtp_configs where id = 'a1a1a1a1-0000-4000-8000-000000000001'$$,
  'another user cannot read the owner''s config even by id'
);

select is_empty(
  $$with u as (
      update public.user_smtp_configs set host = 'evil.example'
       where id = 'a1a1a1a1-0000-4000-8000-000000000001'
      returning id
    )
    select id from u$$,
  'another user''s update of the owner''s config affects no rows'
);

select is_empty(
  $$with d as (
      delete from public.user_smtp_configs
       where user_id = 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa'
      returning id
    )
    select id from d$$,
  'another user''s delete of the owner''s configs affects no rows'
);

select throws_ok(
  $$insert into public.user_smtp_configs (user_id, name, host, port, from_email)
    values ('aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'planted', 'evil.example', 25, 'bob@evil.example')$$,
  '42501', 'permission denied for table user_smtp_configs',
  'another user cannot create a config for the owner (user_id not insertable)'
);

select lives_ok(
  $$insert into public.user_smtp_configs (name, host, port, from_email, is_default)
    values ('work', 'smtp.bob.example', 587, 'bob@bob.example', true)$$,
  'two users can each have a default config, and reuse each other''s config names'
);

select results_eq(
  $$select user_id, name, is_default from public.user_smtp_configs$$,
  $$values ('bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb'::uuid, 'work', true)$$,
  'another user sees only their own config'
);

-- Back to the migration role: the owner's rows are untouched by Bob.
reset role;

select results_eq(
  $$select host, port from public.user_smtp_configs where id = 'a1a1a1a1-0000-4000-8000-000000000001'$$,
  $$values ('smtp.work.example', 2525)$$,
  'the owner''s config survived another user''s update attempt'
);

select is(
  (select count(*)::int from public.user_smtp_configs where user_id = 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa'),
  6,
  'the owner still has all their configs after another user''s delete attempt'
);

-- anon ----------------------------------------------------------------------------------
set local role anon;
set local request.jwt.claims to '{"role":"anon"}';

select throws_ok(
  $$select id from public.user_smtp_configs$$,
  '42501', 'permission denied for table user_smtp_configs',
  'anon cannot read configs'
);

select throws_ok(
  $$insert into public.user_smtp_configs (name, host, port, from_email)
    values ('anon', 'smtp.mail.example', 587, 'anon@mail.example')$$,
  '42501', 'permission denied for table user_smtp_configs',
  'anon cannot create configs'
);

select throws_ok(
  $$update public.user_smtp_configs set port = 25$$,
  '42501', 'permission denied for table user_smtp_configs',
  'anon cannot update configs'
);

select throws_ok(
  $$delete from public.user_smtp_configs$$,
  '42501', 'permission denied for table user_smtp_configs',
  'anon cannot delete configs'
);

-- Alice deletes her own config ---------------------------------------------------------------
set local role authenticated;
set local request.jwt.claims to '{"sub":"aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa","role":"authenticated"}';

select results_eq(
  $$with d as (
      delete from public.user_smtp_configs
       where id = 'a1a1a1a1-0000-4000-8000-000000000001'
      returning id
    )
    select id from d$$,
  $$values ('a1a1a1a1-0000-4000-8000-000000000001'::uuid)$$,
  'owner can delete own config'
);

select is_empty(
  $$select id from public.user_smtp_configs where id = 'a1a1a1a1-0000-4000-8000-000000000001'$$,
  'a deleted config is gone'
);

reset role;

select results_eq(
  $$select name from public.user_smtp_configs
     where user_id = 'bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb'$$,
  array['work'],
  'deleting the owner''s config left the other user''s config of the same name alone'
);

select * from finish();
rollback;
