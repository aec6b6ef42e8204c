-- public.smtp_config_verifications: owners start verifications of their own configs as
-- pending through private.begin_smtp_verification (which counts them, see
-- credential_limits.test.sql) and read them; outcomes are settled once by
-- private.record_verification_outcome. Nobody writes the table directly.
begin;
create extension if not exists pgtap with schema extensions;
set local search_path = public, extensions;

select plan(18);

insert into auth.users (id, email) values
  ('aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'alice@example.test'),
  ('bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb', 'bob@example.test');
insert into public.user_smtp_configs (id, user_id, name, host, port, from_email) values
  ('a1a1a1a1-0000-4000-8000-000000000001', 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'work', 'smtp.work.example', 465,
   'alice@work.example'),
  ('b1b1b1b1-0000-4000-8000-000000000001', 'bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb', 'bob', 'smtp.bob.example', 465,
   'bob@bob.example');

select policies_are('public', 'smtp_config_verifications', array[
  'owner can read own verifications'
], 'verifications can only be read through the Data API');
select table_privs_are('public', 'smtp_config_verifications', 'anon', array[]::name[], 'anon has no privileges');

set local role authenticated;
set local request.jwt.claims to '{"sub":"aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa","role":"authenticated"}';

select lives_ok(
  $$select private.begin_smtp_verification('a1a1a1a1-0000-4000-8000-000000000001')$$,
  'owner can start a verification of own config'
);
select results_eq(
  $$select user_id, ok, error_class from public.smtp_config_verifications$$,
  $$values ('aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa'::uuid, false, 'pending'::text)$$,
  'a started verification is pending and belongs to the caller'
);
select throws_ok(
  $$insert into public.smtp_config_verifications (config_id, ok, error_class)
    values ('a1a1a1a1-0000-4000-8000-000000000001', true, null)$$,
  '42501', null, 'owner cannot record a successful verification directly'
);
select throws_ok(
  $$insert into public.smtp_config_verifications (config_id, ok, error_class)
    values ('a1a1a1a1-0000-4000-8000-000000000001', false, 'pending')$$,
  '42501', null, 'owner cannot insert a pending verification around the limit'
);
select throws_ok(
  $$select private.begin_smtp_verification('b1b1b1b1-0000-4000-8000-000000000001')$$,
  'P0002', 'smtp config not found', 'owner cannot start a verification of another user''s config'
);
select throws_ok(
  $$update public.smtp_config_verifications set ok = true, error_class = null$$,
  '42501', null, 'owner cannot rewrite verifications'
);
select throws_ok(
  $$delete from public.smtp_config_verifications$$,
  '42501', null, 'owner cannot delete verifications'
);
select lives_ok(
  $$select private.record_verification_outcome(
      (select id from public.smtp_config_verifications limit 1), true, null, 120, '220 smtp.work.example ESMTP')$$,
  'owner settles own pending verification'
);
select results_eq(
  $$select ok, error_class, latency_ms from public.smtp_config_verifications$$,
  $$values (true, null::text, 120)$$,
  'the outcome is stored'
);
select throws_ok(
  $$select private.record_verification_outcome(
      (select id from public.smtp_config_verifications limit 1), false, 'smtp_auth_failed', 1, null)$$,
  'P0002', null, 'a settled verification cannot be changed'
);
select throws_ok(
  $$select private.record_verification_outcome(gen_random_uuid(), false, 'pending', 1, null)$$,
  '22023', null, 'pending is not an outcome'
);

set local request.jwt.claims to '{"sub":"bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb","role":"authenticated"}';
select is_empty($$select id from public.smtp_config_verifications$$, 'Bob sees none of Alice''s verifications');

reset role;
insert into public.smtp_config_verifications (id, user_id, config_id, ok, error_class)
values ('c0c0c0c0-0000-4000-8000-000000000001', 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa',
        'a1a1a1a1-0000-4000-8000-000000000001', false, 'pending');
set local role authenticated;
set local request.jwt.claims to '{"sub":"bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb","role":"authenticated"}';
select throws_ok(
  $$select private.record_verification_outcome('c0c0c0c0-0000-4000-8000-000000000001', true, null, 1, null)$$,
  'P0002', null, 'Bob cannot settle Alice''s verification'
);

set local role anon;
set local request.jwt.claims to '{"role":"anon"}';
select throws_ok($$select * from public.smtp_config_verifications$$, '42501', null, 'anon cannot read verifications');
select throws_ok(
  $$select private.begin_smtp_verification('a1a1a1a1-0000-4000-8000-000000000001')$$,
  '42501', null, 'anon cannot start verifications'
);
select throws_ok(
  $$select private.record_verification_outcome('c0c0c0c0-0000-4000-8000-000000000001', true, null, 1, null)$$,
  '42501', null, 'anon cannot settle verifications'
);

select * from finish();
rollback;
