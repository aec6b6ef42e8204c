-- Per-user limits over private.credential_events: config creation (trigger, so the Data
-- API is limited too), password changes, verifications and failed SMTP logins with
-- unproven credentials. Deleting a config resets none of them. As the owner, another user
-- and anon; the events and limits themselves are out of every API role's reach.
begin;
create extension if not exists pgtap with schema extensions;
set local search_path = public, extensions;

select plan(62);

insert into auth.users (id, email) values
  ('aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'alice@example.test'),
  ('bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb', 'bob@example.test');

insert into public.user_smtp_configs (id, user_id, name, host, port, username, from_email) values
  ('a1a1a1a1-0000-4000-8000-000000000001', 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'work', 'smtp.work.example', 465,
   'alice', 'alice@work.example'),
  ('b1b1b1b1-0000-4000-8000-000000000001', 'bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb', 'bob', 'smtp.bob.example', 465,
   'bob', 'bob@bob.example');

-- Shape -----------------------------------------------------------------------------------------
select ok(
  (select bool_and(relrowsecurity) from pg_catalog.pg_class
    where oid in ('private.credential_events'::regclass, 'private.credential_limits'::regclass)),
  'row level security is enabled on the events and the limits'
);
select table_privs_are('private', 'credential_events', 'authenticated', array[]::name[],
  'authenticated has no privileges on credential events');
select table_privs_are('private', 'credential_events', 'anon', array[]::name[],
  'anon has no privileges on credential events');
select table_privs_are('private', 'credential_limits', 'authenticated', array[]::name[],
  'authenticated has no privileges on the limits');
select results_eq(
  $$select name, max_events, per, error_code from private.credential_limits order by name$$,
  $$values ('auth_failure', 5, interval '1 hour', 'auth_attempts_exceeded'),
           ('config_creation', 20, interval '1 hour', 'config_creation_limited'),
           ('password_change', 20, interval '1 hour', 'password_change_limited'),
           ('verification', 10, interval '1 minute', 'rate_limited')$$,
  'the documented limits'
);
select function_privs_are('private', 'begin_smtp_authentication', array['uuid'], 'authenticated', array['EXECUTE'],
  'authenticated can execute begin_smtp_authentication');
select function_privs_are('private', 'settle_smtp_authentication', array['uuid', 'text', 'bigint'], 'authenticated',
  array['EXECUTE'], 'authenticated can execute settle_smtp_authentication');
select function_privs_are('private', 'begin_smtp_verification', array['uuid', 'integer'], 'authenticated',
  array['EXECUTE'], 'authenticated can execute begin_smtp_verification');
select function_privs_are('private', 'enforce_credential_limit', array['uuid', 'text', 'integer'], 'authenticated',
  array[]::name[], 'authenticated cannot execute the limit check itself');
select function_privs_are('private', 'record_credential_event', array['uuid', 'text', 'uuid', 'timestamptz'],
  'authenticated', array[]::name[], 'authenticated cannot record events itself');
select function_privs_are('private', 'begin_smtp_authentication', array['uuid'], 'anon', array[]::name[],
  'anon cannot execute begin_smtp_authentication');

-- Config creation -------------------------------------------------------------------------------
update private.credential_limits set max_events = 3 where name = 'config_creation';

set local role authenticated;
set local request.jwt.claims to '{"sub":"aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa","role":"authenticated"}';

select throws_ok($$select * from private.credential_events$$, '42501', null,
  'owner cannot read the event record');
select throws_ok($$delete from private.credential_events$$, '42501', null,
  'owner cannot erase the event record');
select throws_ok($$update private.credential_limits set max_events = 1000000$$, '42501', null,
  'owner cannot raise a limit');
select throws_ok(
  $$select private.enforce_credential_limit('aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'config_creation')$$,
  '42501', null, 'owner cannot call the limit check directly'
);

select lives_ok(
  $$insert into public.user_smtp_configs (name, host, port, from_email)
    values ('second', 'smtp.mail.example', 465, 'alice@mail.example'),
           ('third', 'smtp.mail.example', 465, 'alice@mail.example')$$,
  'owner creates configs up to the limit (the fixture counted as one)'
);
select throws_ok(
  $$insert into public.user_smtp_configs (name, host, port, from_email)
    values ('fourth', 'smtp.mail.example', 465, 'alice@mail.example')$$,
  'PGRST', null,
  'one more config is refused in the database (the Data API gets 429)'
);
select throws_like(
  $$insert into public.user_smtp_configs (name, host, port, from_email)
    values ('fourth', 'smtp.mail.example', 465, 'alice@mail.example')$$,
  '%"code" : "config_creation_limited"%',
  'the refusal names config_creation_limited'
);
select lives_ok(
  $$delete from public.user_smtp_configs where id = (select id from public.user_smtp_configs where name = 'third')$$,
  'owner deletes a config'
);
select throws_ok(
  $$insert into public.user_smtp_configs (name, host, port, from_email)
    values ('fourth', 'smtp.mail.example', 465, 'alice@mail.example')$$,
  'PGRST', null,
  'deleting a config does not give its creation back'
);

set local request.jwt.claims to '{"sub":"bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb","role":"authenticated"}';
select lives_ok(
  $$insert into public.user_smtp_configs (name, host, port, from_email)
    values ('bob-2', 'smtp.bob.example', 465, 'bob@bob.example')$$,
  'another user''s creations are counted apart'
);

reset role;
select is(
  (select count(*)::int from private.credential_events
    where user_id = 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa' and kind = 'config_created'),
  3,
  'the creation of the deleted config is still on record'
);
update private.credential_limits set max_events = 20 where name = 'config_creation';

-- Password changes ------------------------------------------------------------------------------
update private.credential_limits set max_events = 2 where name = 'password_change';

set local role authenticated;
set local request.jwt.claims to '{"sub":"aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa","role":"authenticated"}';

select lives_ok(
  $$select private.set_smtp_config_password('a1a1a1a1-0000-4000-8000-000000000001', 'guess 1')$$,
  'owner stores a password'
);
select lives_ok(
  $$select private.set_smtp_config_password((select id from public.user_smtp_configs where name = 'second'), 'guess 2')$$,
  'owner stores a password for another config'
);
select throws_like(
  $$select private.set_smtp_config_password('a1a1a1a1-0000-4000-8000-000000000001', 'guess 3')$$,
  '%"code" : "password_change_limited"%',
  'a third password within the hour is refused with password_change_limited'
);
select results_eq(
  $$select password from private.smtp_config_credentials('a1a1a1a1-0000-4000-8000-000000000001')$$,
  array['guess 1'],
  'the refused password was not stored'
);

set local request.jwt.claims to '{"sub":"bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb","role":"authenticated"}';
select lives_ok(
  $$select private.set_smtp_config_password('b1b1b1b1-0000-4000-8000-000000000001', 'bob secret')$$,
  'another user''s password changes are counted apart'
);

reset role;
update private.credential_limits set max_events = 20 where name = 'password_change';

-- Verifications ---------------------------------------------------------------------------------
update private.credential_limits set max_events = 2 where name = 'verification';

set local role authenticated;
set local request.jwt.claims to '{"sub":"aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa","role":"authenticated"}';

select lives_ok(
  $$select private.begin_smtp_verification('a1a1a1a1-0000-4000-8000-000000000001'),
           private.begin_smtp_verification((select id from public.user_smtp_configs where name = 'second'))$$,
  'owner starts verifications up to the limit'
);
select throws_like(
  $$select private.begin_smtp_verification('a1a1a1a1-0000-4000-8000-000000000001')$$,
  '%"code" : "rate_limited"%',
  'one more verification within the minute is refused'
);
select lives_ok(
  $$delete from public.user_smtp_configs where id = (select id from public.user_smtp_configs where name = 'second')$$,
  'owner deletes a verified config (its history goes with it)'
);
select lives_ok(
  $$insert into public.user_smtp_configs (name, host, port, from_email)
    values ('recreated', 'smtp.mail.example', 465, 'alice@mail.example')$$,
  'and creates a new one'
);
select throws_ok(
  $$select private.begin_smtp_verification((select id from public.user_smtp_configs where name = 'recreated'))$$,
  'PGRST', null,
  'delete and recreate does not reset the verification limit'
);

set local request.jwt.claims to '{"sub":"bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb","role":"authenticated"}';
select lives_ok(
  $$select private.begin_smtp_verification('b1b1b1b1-0000-4000-8000-000000000001', 1)$$,
  'another user verifies'
);
select throws_ok(
  $$select private.begin_smtp_verification('b1b1b1b1-0000-4000-8000-000000000001', 1)$$,
  'PGRST', null,
  'a deployment may set a lower verification limit'
);

reset role;
update private.credential_limits set max_events = 100 where name = 'verification';

-- SMTP logins -----------------------------------------------------------------------------------
-- Alice: a1 has a password (unproven), a5 gets one and is proven first.
insert into public.user_smtp_configs (id, user_id, name, host, port, username, from_email) values
  ('a5a5a5a5-0000-4000-8000-000000000005', 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'proven', 'smtp.mail.example',
   465, 'alice', 'alice@mail.example'),
  ('a6a6a6a6-0000-4000-8000-000000000006', 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'no-login', 'smtp.mail.example',
   465, null, 'alice@mail.example');

set local role authenticated;
set local request.jwt.claims to '{"sub":"aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa","role":"authenticated"}';

select lives_ok(
  $$select private.set_smtp_config_password('a5a5a5a5-0000-4000-8000-000000000005', 'right'),
           private.settle_smtp_authentication('a5a5a5a5-0000-4000-8000-000000000005', 'succeeded',
             private.begin_smtp_authentication('a5a5a5a5-0000-4000-8000-000000000005'))$$,
  'owner logs in successfully through a new config'
);
select ok(
  (select credentials_verified_at is not null from public.user_smtp_configs
    where id = 'a5a5a5a5-0000-4000-8000-000000000005'),
  'a successful login proves the credentials'
);

-- Guessing: each new password tried through a1 is one guess; the same one tried again is not.
select lives_ok(
  $$select private.settle_smtp_authentication('a1a1a1a1-0000-4000-8000-000000000001', 'failed',
             private.begin_smtp_authentication('a1a1a1a1-0000-4000-8000-000000000001')),
           private.settle_smtp_authentication('a1a1a1a1-0000-4000-8000-000000000001', 'failed',
             private.begin_smtp_authentication('a1a1a1a1-0000-4000-8000-000000000001')),
           private.begin_smtp_authentication('a1a1a1a1-0000-4000-8000-000000000001')$$,
  'the same wrong password fails twice and is tried once more: still one guess'
);
select lives_ok(
  $$select private.set_smtp_config_password('a1a1a1a1-0000-4000-8000-000000000001', 'guess 2'),
           private.settle_smtp_authentication('a1a1a1a1-0000-4000-8000-000000000001', 'failed',
             private.begin_smtp_authentication('a1a1a1a1-0000-4000-8000-000000000001')),
           private.set_smtp_config_password('a1a1a1a1-0000-4000-8000-000000000001', 'guess 3'),
           private.settle_smtp_authentication('a1a1a1a1-0000-4000-8000-000000000001', 'failed',
             private.begin_smtp_authentication('a1a1a1a1-0000-4000-8000-000000000001')),
           private.set_smtp_config_password('a1a1a1a1-0000-4000-8000-000000000001', 'guess 4'),
           private.settle_smtp_authentication('a1a1a1a1-0000-4000-8000-000000000001', 'failed',
             private.begin_smtp_authentication('a1a1a1a1-0000-4000-8000-000000000001')),
           private.set_smtp_config_password('a1a1a1a1-0000-4000-8000-000000000001', 'guess 5'),
           set_config('mailroom_test.pending', private.begin_smtp_authentication('a1a1a1a1-0000-4000-8000-000000000001')::text, true)$$,
  'four more passwords: three fail, one is still in flight: five guesses counted'
);
select lives_ok(
  $$select private.begin_smtp_authentication('a1a1a1a1-0000-4000-8000-000000000001')$$,
  'a parallel login with the in-flight credentials is the same guess'
);
select lives_ok(
  $$select private.set_smtp_config_password('a1a1a1a1-0000-4000-8000-000000000001', 'guess 6')$$,
  'owner stores a sixth password'
);
select throws_like(
  $$select private.begin_smtp_authentication('a1a1a1a1-0000-4000-8000-000000000001')$$,
  '%"code" : "auth_attempts_exceeded"%',
  'after five failed or in-flight guesses, a new one is refused'
);
select lives_ok(
  $$select private.begin_smtp_authentication('a5a5a5a5-0000-4000-8000-000000000005')$$,
  'proven credentials keep working'
);
select lives_ok(
  $$select private.begin_smtp_authentication('a6a6a6a6-0000-4000-8000-000000000006')$$,
  'a config that does not log in is not limited'
);
select lives_ok(
  $$select private.settle_smtp_authentication('a1a1a1a1-0000-4000-8000-000000000001', 'unanswered',
             current_setting('mailroom_test.pending')::bigint)$$,
  'the in-flight guess ends before the server judged it'
);
select throws_like(
  $$select private.begin_smtp_authentication('a1a1a1a1-0000-4000-8000-000000000001')$$,
  '%"code" : "auth_attempts_exceeded"%',
  'its parallel twin is still in flight: still refused'
);

-- Recreating the config does not help.
select lives_ok(
  $$delete from public.user_smtp_configs where id = 'a1a1a1a1-0000-4000-8000-000000000001';
    insert into public.user_smtp_configs (name, host, port, username, from_email)
    values ('again', 'smtp.work.example', 465, 'alice', 'alice@work.example');
    select private.set_smtp_config_password((select id from public.user_smtp_configs where name = 'again'), 'guess 7')$$,
  'owner deletes the config and recreates it with another guess'
);
select throws_ok(
  $$select private.begin_smtp_authentication((select id from public.user_smtp_configs where name = 'again'))$$,
  'PGRST', null,
  'the recreated config is still refused'
);

-- A failure makes proven credentials unproven; a password change does too.
select lives_ok(
  $$select private.settle_smtp_authentication('a5a5a5a5-0000-4000-8000-000000000005', 'failed')$$,
  'a proven config''s login fails (the password changed at the provider)'
);
select lives_ok(
  $$select private.begin_smtp_authentication('a5a5a5a5-0000-4000-8000-000000000005')$$,
  'trying the same (now unproven) credentials again is no new guess'
);
select throws_ok(
  $$select private.set_smtp_config_password('a5a5a5a5-0000-4000-8000-000000000005', 'another'),
           private.begin_smtp_authentication('a5a5a5a5-0000-4000-8000-000000000005')$$,
  'PGRST', null,
  'a new password through it is a new guess, limited like any other'
);

-- Bob ---------------------------------------------------------------------------------------------
reset role;
select set_config('mailroom_test.again', (select id::text from public.user_smtp_configs where name = 'again'), true);
set local role authenticated;
set local request.jwt.claims to '{"sub":"bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb","role":"authenticated"}';

select throws_ok(
  $$select private.begin_smtp_authentication(current_setting('mailroom_test.again')::uuid)$$,
  'P0002', 'smtp config not found',
  'another user cannot start a login through the owner''s config'
);
select lives_ok(
  $$select private.settle_smtp_authentication(current_setting('mailroom_test.again')::uuid, 'succeeded',
             current_setting('mailroom_test.pending')::bigint)$$,
  'another user settling the owner''s config and attempt ids is harmless'
);
select lives_ok(
  $$select set_config('mailroom_test.bob', private.begin_smtp_authentication('b1b1b1b1-0000-4000-8000-000000000001')::text, true)$$,
  'another user''s logins are counted apart'
);
select lives_ok(
  $$select private.set_smtp_config_password('b1b1b1b1-0000-4000-8000-000000000001', 'bob changed it'),
           private.settle_smtp_authentication('b1b1b1b1-0000-4000-8000-000000000001', 'succeeded',
             current_setting('mailroom_test.bob')::bigint)$$,
  'a login succeeds after the password changed under it'
);

reset role;
select results_eq(
  $$select name, credentials_verified_at is not null from public.user_smtp_configs
     where id in (current_setting('mailroom_test.again')::uuid, 'b1b1b1b1-0000-4000-8000-000000000001') order by name$$,
  $$values ('again', false), ('bob', false)$$,
  'a success proves only the credentials it was made with, and only for their owner'
);
select is(
  (select count(distinct credentials_as_of)::int from private.credential_events
    where user_id = 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa' and config_id = 'a1a1a1a1-0000-4000-8000-000000000001'
      and kind in ('auth_attempt', 'auth_failed')),
  5,
  'the deleted config''s failed and in-flight guesses stay on record'
);

-- A session settles its own attempt: a success made with older credentials proves nothing newer.
update private.credential_limits set max_events = 100 where name in ('auth_failure', 'password_change');
insert into public.user_smtp_configs (id, user_id, name, host, port, username, from_email) values
  ('a7a7a7a7-0000-4000-8000-000000000007', 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'paired', 'smtp.mail.example',
   465, 'alice', 'alice@mail.example');
set local role authenticated;
set local request.jwt.claims to '{"sub":"aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa","role":"authenticated"}';
select lives_ok(
  $$select private.set_smtp_config_password('a7a7a7a7-0000-4000-8000-000000000007', 'first'),
           set_config('mailroom_test.first', private.begin_smtp_authentication('a7a7a7a7-0000-4000-8000-000000000007')::text, true),
           private.set_smtp_config_password('a7a7a7a7-0000-4000-8000-000000000007', 'second'),
           set_config('mailroom_test.second', private.begin_smtp_authentication('a7a7a7a7-0000-4000-8000-000000000007')::text, true)$$,
  'two sessions start, with the first and then the second password'
);
select lives_ok(
  $$select private.settle_smtp_authentication('a7a7a7a7-0000-4000-8000-000000000007', 'succeeded',
                                               current_setting('mailroom_test.second')::bigint)$$,
  'the second session succeeds and settles its own attempt'
);
select ok(
  (select credentials_verified_at is not null from public.user_smtp_configs
    where id = 'a7a7a7a7-0000-4000-8000-000000000007'),
  'the current credentials are proven by their own session, although an older attempt was still pending'
);
reset role;
select results_eq(
  $$select kind from private.credential_events where id = current_setting('mailroom_test.first')::bigint$$,
  array['auth_attempt'],
  'the first session''s attempt is still its own to settle'
);

-- anon ------------------------------------------------------------------------------------------
set local role anon;
set local request.jwt.claims to '{"role":"anon"}';
select throws_ok(
  $$select private.settle_smtp_authentication(current_setting('mailroom_test.again')::uuid, 'failed')$$,
  '42501', null, 'anon cannot settle logins'
);
select throws_ok($$select * from private.credential_events$$, '42501', null, 'anon cannot read the event record');

select * from finish();
rollback;
