-- A config's IMAP settings: owners read and change their own (never another user's, never through
-- an agent's token); the password lives in Vault and leaves it only for the owner; a new server
-- drops it; bounce reports touch only the caller's own messages; the worker's claim is server-side.
begin;
create extension if not exists pgtap with schema extensions;
set local search_path = public, extensions;

select plan(15);

insert into auth.users (id, email) values
  ('aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'alice@example.test'),
  ('bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb', 'bob@example.test');
insert into public.user_smtp_configs (id, user_id, name, host, port, security, username, from_email) values
  ('c0000000-0000-4000-8000-00000000000a', 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'main', 'smtp.example.com', 465,
   'tls', 'alice', 'alice@example.test'),
  ('c0000000-0000-4000-8000-00000000000b', 'bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb', 'main', 'smtp.example.com', 465,
   'tls', 'bob', 'bob@example.test');
insert into public.email_audit_log (id, user_id, config_id, from_email, to_addresses, status, message_id, recipients)
values
  ('a0000000-0000-4000-8000-000000000001', 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa',
   'c0000000-0000-4000-8000-00000000000a', 'alice@example.test', '{gone@example.net}', 'sent', '<m1@example.test>',
   '[{"address":"gone@example.net","status":"accepted"}]'),
  ('b0000000-0000-4000-8000-000000000001', 'bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb',
   'c0000000-0000-4000-8000-00000000000b', 'bob@example.test', '{gone@example.net}', 'sent', '<m2@example.test>',
   '[{"address":"gone@example.net","status":"accepted"}]');

set local role authenticated;
set local request.jwt.claims to '{"sub":"aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa","role":"authenticated"}';
select lives_ok(
  $$insert into public.smtp_config_imap (config_id, host, username)
    values ('c0000000-0000-4000-8000-00000000000a', 'imap.example.com', 'alice')$$,
  'the owner adds IMAP settings to her config'
);
select throws_ok(
  $$insert into public.smtp_config_imap (config_id, host, username)
    values ('c0000000-0000-4000-8000-00000000000b', 'imap.example.com', 'mallory')$$,
  '42501', null, 'not to someone else''s config'
);
select lives_ok($$select private.set_imap_password('c0000000-0000-4000-8000-00000000000a', 'imap-secret')$$,
  'her IMAP password goes to Vault');
select results_eq(
  $$select username, password from private.imap_login('c0000000-0000-4000-8000-00000000000a')$$,
  $$values ('alice'::text, 'imap-secret'::text)$$,
  'and comes back decrypted for her alone'
);
select is((select count(*)::int from public.smtp_config_imap where password_secret_id is not null), 1,
  'the row holds a secret id, not the password');

set local request.jwt.claims to
  '{"sub":"aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa","role":"authenticated","client_id":"an-agent"}';
select is((select count(*)::int from public.smtp_config_imap), 1, 'her agent reads the settings');
select throws_ok(
  $$update public.smtp_config_imap set host = 'imap.attacker.example'$$,
  'PGRST', null, 'but never points them elsewhere'
);
select throws_ok($$delete from public.smtp_config_imap$$, 'PGRST', null, 'nor removes them');

set local request.jwt.claims to '{"sub":"bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb","role":"authenticated"}';
select is((select count(*)::int from public.smtp_config_imap), 0, 'bob sees none of it');
select is((select count(*)::int from private.imap_login('c0000000-0000-4000-8000-00000000000a')), 0,
  'nor her password');
select throws_ok(
  $$select private.record_mailbox_reports('c0000000-0000-4000-8000-00000000000a',
    '[{"message_id":"<m1@example.test>","address":"gone@example.net","kind":"bounce","status":"5.1.1"}]', 1, 5)$$,
  'P0002', null, 'nor records reports through her mailbox'
);

set local request.jwt.claims to '{"sub":"aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa","role":"authenticated"}';
select is(
  private.record_mailbox_reports('c0000000-0000-4000-8000-00000000000a',
    '[{"message_id":"<m2@example.test>","address":"gone@example.net","kind":"bounce","status":"5.1.1"},
      {"message_id":"<m1@example.test>","address":"gone@example.net","kind":"bounce","status":"5.1.1"}]', 1, 5),
  array[2], 'a report matches only her own message (bob''s Message-ID names nothing of hers)'
);
update public.smtp_config_imap set host = 'imap2.example.com';
reset role;
select results_eq(
  $$select password_secret_id is null, use_smtp_login, last_uid from public.smtp_config_imap$$,
  $$values (true, false, null::bigint)$$,
  'a new server drops the stored password and starts reading afresh'
);
select results_eq(
  $$select private.mail_domain(h) from unnest(array['smtp.fastmail.com', 'imap.example.co.uk', 'localhost',
    '192.0.2.1', 'IMAP.Gmail.com.']) h$$,
  $$values ('fastmail.com'), ('example.co.uk'), ('localhost'), ('192.0.2.1'), ('gmail.com')$$,
  'a mail host''s domain: the SMTP login may go to imap.fastmail.com for smtp.fastmail.com, not elsewhere'
);
select ok(
  not has_function_privilege('authenticated', 'private.claim_mailbox_checks(integer, interval)', 'execute'),
  'the worker''s claim is not a user''s to call'
);

select * from finish();
rollback;
