-- SMTP passwords in Vault: private.set_smtp_config_password and
-- private.smtp_config_credentials, for the owner and for another user; Vault itself is
-- out of reach of the API roles; secrets follow their config on rotation and deletion.
begin;
create extension if not exists pgtap with schema extensions;
set local search_path = public, extensions;

select plan(34);

-- Fixtures (as the migration role) ---------------------------------------------------------
insert into auth.users (id, email) values
  ('aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'alice@example.test'),
  ('bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb', 'bob@example.test');

insert into public.user_smtp_configs (id, user_id, name, host, port, username, from_email)
values
  ('a1a1a1a1-0000-4000-8000-000000000001', 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa',
   'work', 'smtp.work.example', 465, 'alice', 'alice@work.example'),
  ('a2a2a2a2-0000-4000-8000-000000000002', 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa',
   'personal', 'smtp.mail.example', 587, 'alice.p', 'alice@mail.example'),
  ('b1b1b1b1-0000-4000-8000-000000000001', 'bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb',
   'work', 'smtp.bob.example', 587, 'bob', 'bob@bob.example');

-- Alice stores passwords for her configs ---------------------------------------------------
set local role authenticated;
set local request.jwt.claims to '{"sub":"aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa","role":"authenticated"}';

select lives_ok(
  $$select private.set_smtp_config_password('a1a1a1a1-0000-4000-8000-000000000001', 'correct horse battery staple')$$,
  'owner can store the password of own config'
);

select lives_ok(
  $$select private.set_smtp_config_password('a2a2a2a2-0000-4000-8000-000000000002', 'personal secret one')$$,
  'owner can store the password of another own config'
);

select results_eq(
  $$select auth_type, username, password
      from private.smtp_config_credentials('a1a1a1a1-0000-4000-8000-000000000001')$$,
  $$values ('password', 'alice', 'correct horse battery staple')$$,
  'owner reads back the decrypted credentials of own config'
);

select throws_ok(
  $$select private.set_smtp_config_password('a1a1a1a1-0000-4000-8000-000000000001', '')$$,
  '22023', 'password must not be empty',
  'rejects an empty password'
);

select throws_ok(
  $$select private.set_smtp_config_password('a1a1a1a1-0000-4000-8000-000000000001', null)$$,
  '22023', 'password must not be empty',
  'rejects a null password'
);

select throws_ok(
  $$select private.set_smtp_config_password('b1b1b1b1-0000-4000-8000-000000000001', 'hijacked')$$,
  'P0002', 'smtp config not found',
  'owner cannot set the password of another user''s config'
);

select throws_ok(
  $$select private.set_smtp_config_password('00000000-0000-4000-8000-000000000000', 'whatever')$$,
  'P0002', 'smtp config not found',
  'setting the password of a config that does not exist raises P0002'
);

select is_empty(
  $$select * from private.smtp_config_credentials('b1b1b1b1-0000-4000-8000-000000000001')$$,
  'owner gets no credentials for another user''s config'
);

select throws_ok(
  $$select id from vault.secrets$$,
  '42501', null,
  'authenticated cannot read vault.secrets'
);

select throws_ok(
  $$select decrypted_secret from vault.decrypted_secrets$$,
  '42501', null,
  'authenticated cannot read vault.decrypted_secrets'
);

select throws_ok(
  $$select vault.create_secret('planted')$$,
  '42501', null,
  'authenticated cannot create vault secrets directly'
);

select throws_ok(
  $$select private.delete_smtp_config_secrets()$$,
  '42501', null,
  'authenticated cannot call the secret-deleting trigger function'
);

-- What is stored (as the migration role) -------------------------------------------------
reset role;

select isnt(
  (select password_secret_id from public.user_smtp_configs where id = 'a1a1a1a1-0000-4000-8000-000000000001'),
  null,
  'the config row references a vault secret'
);

select is_empty(
  $$select c.id from public.user_smtp_configs c
     where c::text like '%correct horse battery staple%'$$,
  'no config row holds the plaintext password'
);

select results_eq(
  $$select count(*)::int from vault.secrets s
      join public.user_smtp_configs c on c.password_secret_id = s.id
     where c.id = 'a1a1a1a1-0000-4000-8000-000000000001'
       and s.secret <> 'correct horse battery staple'
       and position('correct horse battery staple' in s.secret) = 0$$,
  $$values (1)$$,
  'the vault secret exists and vault.secrets.secret is not the plaintext'
);

select results_eq(
  -- The real Vault's decrypted_secret has collation "C": compare it in the default collation.
  $$select s.decrypted_secret collate "default" from vault.decrypted_secrets s
      join public.user_smtp_configs c on c.password_secret_id = s.id
     where c.id = 'a1a1a1a1-0000-4000-8000-000000000001'$$,
  array['correct horse battery staple'],
  'the vault secret decrypts to the password'
);

-- Remember the secret ids and the ciphertext for the rotation and deletion checks.
do $$
begin
  perform set_config('mailroom_test.a1_secret_id',
    (select password_secret_id::text from public.user_smtp_configs
      where id = 'a1a1a1a1-0000-4000-8000-000000000001'), true);
  perform set_config('mailroom_test.a2_secret_id',
    (select password_secret_id::text from public.user_smtp_configs
      where id = 'a2a2a2a2-0000-4000-8000-000000000002'), true);
  perform set_config('mailroom_test.a1_ciphertext',
    (select secret from vault.secrets
      where id = current_setting('mailroom_test.a1_secret_id')::uuid), true);
end
$$;

-- Bob ---------------------------------------------------------------------------------------
set local role authenticated;
set local request.jwt.claims to '{"sub":"bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb","role":"authenticated"}';

select is_empty(
  $$select * from private.smtp_config_credentials('a1a1a1a1-0000-4000-8000-000000000001')$$,
  'another user gets zero rows of credentials for the owner''s config'
);

select throws_ok(
  $$select private.set_smtp_config_password('a1a1a1a1-0000-4000-8000-000000000001', 'hijacked')$$,
  'P0002', 'smtp config not found',
  'another user cannot set the owner''s password'
);

select lives_ok(
  $$select private.set_smtp_config_password('b1b1b1b1-0000-4000-8000-000000000001', 'bob secret')$$,
  'another user can store the password of their own config'
);

select results_eq(
  $$select password from private.smtp_config_credentials('b1b1b1b1-0000-4000-8000-000000000001')$$,
  array['bob secret'],
  'another user reads back their own password'
);

-- Alice rotates her password ---------------------------------------------------------------
set local request.jwt.claims to '{"sub":"aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa","role":"authenticated"}';

select results_eq(
  $$select password from private.smtp_config_credentials('a1a1a1a1-0000-4000-8000-000000000001')$$,
  array['correct horse battery staple'],
  'the owner''s password is unchanged by the other user''s attempt'
);

select lives_ok(
  $$select private.set_smtp_config_password('a1a1a1a1-0000-4000-8000-000000000001', 'rotated password 2')$$,
  'owner can rotate own password'
);

select results_eq(
  $$select password from private.smtp_config_credentials('a1a1a1a1-0000-4000-8000-000000000001')$$,
  array['rotated password 2'],
  'after rotation the owner reads the new password'
);

reset role;

select is(
  (select password_secret_id::text from public.user_smtp_configs
    where id = 'a1a1a1a1-0000-4000-8000-000000000001'),
  current_setting('mailroom_test.a1_secret_id'),
  'rotation keeps the same vault secret id'
);

select isnt(
  (select secret from vault.secrets where id = current_setting('mailroom_test.a1_secret_id')::uuid),
  current_setting('mailroom_test.a1_ciphertext'),
  'rotation replaces the stored ciphertext'
);

select is(
  (select count(*)::int from vault.secrets
    where name = 'smtp_config_password_a1a1a1a1-0000-4000-8000-000000000001'),
  1,
  'rotation does not leave a second secret behind'
);

-- Deletion ----------------------------------------------------------------------------------
set local role authenticated;
set local request.jwt.claims to '{"sub":"aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa","role":"authenticated"}';

select lives_ok(
  $$delete from public.user_smtp_configs where id = 'a1a1a1a1-0000-4000-8000-000000000001'$$,
  'owner can delete a config that has a password'
);

reset role;

select is_empty(
  $$select id from vault.secrets where id = current_setting('mailroom_test.a1_secret_id')::uuid$$,
  'deleting a config deletes its vault secret'
);

select isnt_empty(
  $$select id from vault.secrets where id = current_setting('mailroom_test.a2_secret_id')::uuid$$,
  'deleting one config keeps the secrets of the owner''s other configs'
);

delete from auth.users where id = 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa';

select is_empty(
  $$select id from public.user_smtp_configs where user_id = 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa'$$,
  'deleting the auth user deletes their configs'
);

select is_empty(
  $$select id from vault.secrets where id = current_setting('mailroom_test.a2_secret_id')::uuid$$,
  'deleting the auth user deletes their configs'' vault secrets'
);

select isnt_empty(
  $$select s.id from vault.secrets s
      join public.user_smtp_configs c on c.password_secret_id = s.id
     where c.id = 'b1b1b1b1-0000-4000-8000-000000000001'$$,
  'deleting one user keeps the other user''s config and secret'
);

-- anon --------------------------------------------------------------------------------------
set local role anon;
set local request.jwt.claims to '{"role":"anon"}';

select throws_ok(
  $$select id from vault.secrets$$,
  '42501', null,
  'anon cannot read vault.secrets'
);

select throws_ok(
  $$select decrypted_secret from vault.decrypted_secrets$$,
  '42501', null,
  'anon cannot read vault.decrypted_secrets'
);

select * from finish();
rollback;
