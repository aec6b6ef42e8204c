-- A stored password never follows its config to another server or account: an UPDATE of
-- host, port, security or username (through any path) deletes the Vault secret unless the
-- secret is replaced in the same statement; other changes keep it; every credential change
-- makes the credentials unproven. As the owner, another user and anon.
begin;
create extension if not exists pgtap with schema extensions;
set local search_path = public, extensions;

select plan(36);

insert into auth.users (id, email) values
  ('aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'alice@example.test'),
  ('bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb', 'bob@example.test');

insert into public.user_smtp_configs (id, user_id, name, host, port, security, username, from_email) values
  ('a1a1a1a1-0000-4000-8000-000000000001', 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'work', 'smtp.work.example', 465,
   'tls', 'alice', 'alice@work.example'),
  ('b1b1b1b1-0000-4000-8000-000000000001', 'bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb', 'bob', 'smtp.bob.example', 465,
   'tls', 'bob', 'bob@bob.example');

-- Shape ---------------------------------------------------------------------------------------
select has_trigger(
  'public', 'user_smtp_configs', 'user_smtp_configs_drop_password_on_destination_change',
  'a trigger guards the password on every update'
);
select function_privs_are(
  'private', 'drop_password_on_destination_change', array[]::name[], 'authenticated', array[]::name[],
  'authenticated cannot execute the trigger function'
);
select column_privs_are(
  'public', 'user_smtp_configs', 'credentials_verified_at', 'authenticated', array['SELECT'],
  'authenticated may read, never set, when credentials were proven'
);
select column_privs_are(
  'public', 'user_smtp_configs', 'credentials_changed_at', 'authenticated', array['SELECT'],
  'authenticated may read, never set, when credentials changed'
);

-- Changes that keep the password ---------------------------------------------------------------
set local role authenticated;
set local request.jwt.claims to '{"sub":"aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa","role":"authenticated"}';

select lives_ok(
  $$select private.set_smtp_config_password('a1a1a1a1-0000-4000-8000-000000000001', 'first password')$$,
  'owner stores a password'
);

reset role;
-- Pretend a login succeeded, and remember the secret id.
update public.user_smtp_configs set credentials_verified_at = now() where id = 'a1a1a1a1-0000-4000-8000-000000000001';
select set_config('mailroom_test.secret_1',
  (select password_secret_id::text from public.user_smtp_configs where id = 'a1a1a1a1-0000-4000-8000-000000000001'),
  true);

set local role authenticated;
set local request.jwt.claims to '{"sub":"aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa","role":"authenticated"}';

select lives_ok(
  $$update public.user_smtp_configs
       set name = 'office', from_name = 'Alice', max_per_minute = 5, is_active = false, is_default = true
     where id = 'a1a1a1a1-0000-4000-8000-000000000001'$$,
  'owner changes name, sender, limits and flags'
);
select results_eq(
  $$select password, (select credentials_verified_at is not null from public.user_smtp_configs
                       where id = 'a1a1a1a1-0000-4000-8000-000000000001')
      from private.smtp_config_credentials('a1a1a1a1-0000-4000-8000-000000000001')$$,
  $$values ('first password'::text, true)$$,
  'changes that leave the destination and username alone keep the password and its proof'
);
select lives_ok(
  $$update public.user_smtp_configs
       set host = 'smtp.work.example', port = 465, security = 'tls', username = 'alice'
     where id = 'a1a1a1a1-0000-4000-8000-000000000001'$$,
  'owner writes the same destination again'
);
select results_eq(
  $$select password from private.smtp_config_credentials('a1a1a1a1-0000-4000-8000-000000000001')$$,
  array['first password'],
  'writing unchanged values keeps the password'
);

-- Bob cannot move Alice's config ------------------------------------------------------------------
set local request.jwt.claims to '{"sub":"bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb","role":"authenticated"}';
select is_empty(
  $$update public.user_smtp_configs set host = 'smtp.evil.example'
     where id = 'a1a1a1a1-0000-4000-8000-000000000001' returning id$$,
  'another user''s update of the host affects no rows'
);

reset role;
select isnt_empty(
  $$select id from vault.secrets where id = current_setting('mailroom_test.secret_1')::uuid$$,
  'the owner''s secret survives another user''s attempt'
);

-- A new host drops it -------------------------------------------------------------------------
set local role authenticated;
set local request.jwt.claims to '{"sub":"aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa","role":"authenticated"}';

select lives_ok(
  $$update public.user_smtp_configs set host = 'smtp.attacker.example'
     where id = 'a1a1a1a1-0000-4000-8000-000000000001'$$,
  'owner moves the config to another host (as through the Data API)'
);
select results_eq(
  $$select username, password from private.smtp_config_credentials('a1a1a1a1-0000-4000-8000-000000000001')$$,
  $$values ('alice'::text, null::text)$$,
  'the moved config has no password to send to the new host'
);
select results_eq(
  $$select password_secret_id is null, credentials_verified_at is null, credentials_changed_at >= now()
      from public.user_smtp_configs where id = 'a1a1a1a1-0000-4000-8000-000000000001'$$,
  $$values (true, true, true)$$,
  'the secret id is cleared and the credentials are unproven, changed now'
);

reset role;
select is_empty(
  $$select id from vault.secrets where id = current_setting('mailroom_test.secret_1')::uuid$$,
  'the Vault secret itself is deleted'
);

-- Port, security and username drop it too -------------------------------------------------------
set local role authenticated;
set local request.jwt.claims to '{"sub":"aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa","role":"authenticated"}';

select lives_ok(
  $$select private.set_smtp_config_password('a1a1a1a1-0000-4000-8000-000000000001', 'second password')$$,
  'owner stores a password for the new host'
);
select lives_ok(
  $$update public.user_smtp_configs set port = 2525 where id = 'a1a1a1a1-0000-4000-8000-000000000001'$$,
  'owner changes the port'
);
select results_eq(
  $$select password from private.smtp_config_credentials('a1a1a1a1-0000-4000-8000-000000000001')$$,
  array[null::text],
  'a new port drops the password'
);

select lives_ok(
  $$select private.set_smtp_config_password('a1a1a1a1-0000-4000-8000-000000000001', 'third password')$$,
  'owner stores a password again'
);
select lives_ok(
  $$update public.user_smtp_configs set security = 'starttls' where id = 'a1a1a1a1-0000-4000-8000-000000000001'$$,
  'owner changes the security'
);
select results_eq(
  $$select password from private.smtp_config_credentials('a1a1a1a1-0000-4000-8000-000000000001')$$,
  array[null::text],
  'a new security mode drops the password'
);

select lives_ok(
  $$select private.set_smtp_config_password('a1a1a1a1-0000-4000-8000-000000000001', 'fourth password')$$,
  'owner stores a password once more'
);
select lives_ok(
  $$update public.user_smtp_configs set username = 'ceo' where id = 'a1a1a1a1-0000-4000-8000-000000000001'$$,
  'owner changes the username'
);
select results_eq(
  $$select username, password from private.smtp_config_credentials('a1a1a1a1-0000-4000-8000-000000000001')$$,
  $$values ('ceo'::text, null::text)$$,
  'a new username drops the password: it belonged to another account'
);

select lives_ok(
  $$select private.set_smtp_config_password('a1a1a1a1-0000-4000-8000-000000000001', 'fifth password')$$,
  'owner stores a password for the new account'
);
select lives_ok(
  $$update public.user_smtp_configs set username = null where id = 'a1a1a1a1-0000-4000-8000-000000000001'$$,
  'owner removes the username'
);
select results_eq(
  $$select password from private.smtp_config_credentials('a1a1a1a1-0000-4000-8000-000000000001')$$,
  array[null::text],
  'removing the username drops the password'
);

-- A destination and a password in one request: the password is stored after the move -------------
select lives_ok(
  $$update public.user_smtp_configs set host = 'smtp.new.example', username = 'alice'
     where id = 'a1a1a1a1-0000-4000-8000-000000000001'$$,
  'owner moves the config again'
);
select lives_ok(
  $$select private.set_smtp_config_password('a1a1a1a1-0000-4000-8000-000000000001', 'new host password')$$,
  'and then stores the password for the new host'
);
select results_eq(
  $$select password from private.smtp_config_credentials('a1a1a1a1-0000-4000-8000-000000000001')$$,
  array['new host password'],
  'the password given for the new destination survives'
);

-- The owner cannot forge proof or point at a secret ----------------------------------------------
select throws_ok(
  $$update public.user_smtp_configs set credentials_verified_at = now()
     where id = 'a1a1a1a1-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table user_smtp_configs',
  'owner cannot mark credentials as proven'
);
select throws_ok(
  $$update public.user_smtp_configs set credentials_changed_at = now() - interval '1 year'
     where id = 'a1a1a1a1-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table user_smtp_configs',
  'owner cannot backdate a credential change'
);
select throws_ok(
  $$update public.user_smtp_configs set host = 'smtp.x.example', password_secret_id = gen_random_uuid()
     where id = 'a1a1a1a1-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table user_smtp_configs',
  'owner cannot keep a secret by naming a secret id in the same update'
);

-- anon ------------------------------------------------------------------------------------------
set local role anon;
set local request.jwt.claims to '{"role":"anon"}';
select throws_ok(
  $$update public.user_smtp_configs set host = 'smtp.anon.example'$$,
  '42501', 'permission denied for table user_smtp_configs',
  'anon cannot move configs'
);

-- Deleting still removes the current secret; Bob's is untouched ---------------------------------
reset role;
select set_config('mailroom_test.secret_2',
  (select password_secret_id::text from public.user_smtp_configs where id = 'a1a1a1a1-0000-4000-8000-000000000001'),
  true);
delete from public.user_smtp_configs where id = 'a1a1a1a1-0000-4000-8000-000000000001';
select is_empty(
  $$select id from vault.secrets where id = current_setting('mailroom_test.secret_2')::uuid$$,
  'deleting the moved config deletes its new secret'
);
select is(
  (select count(*)::int from vault.secrets where name like 'smtp_config_password_a1a1a1a1%'),
  0,
  'no secret of the config is left behind after all the moves'
);

select * from finish();
rollback;
