-- Duplicate-send protection (issue 31): a user's fingerprint is held by the message it came with
-- for the config's window; the same fingerprint again is refused (409 duplicate_send) unless
-- allowed, per user and never across users; messages that never went leave it free; the table
-- is out of everyone's reach but the functions'.
begin;
create extension if not exists pgtap with schema extensions;
set local search_path = public, extensions;

select plan(18);

insert into auth.users (id, email) values
  ('aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'alice@example.test'),
  ('bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb', 'bob@example.test');
insert into public.user_smtp_configs (id, user_id, name, host, port, from_email) values
  ('a1a1a1a1-0000-4000-8000-000000000001', 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'work', 'smtp.a.example', 465,
   'alice@a.example'),
  ('a1a1a1a1-0000-4000-8000-000000000002', 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'off', 'smtp.a.example', 465,
   'alice@a.example'),
  ('b1b1b1b1-0000-4000-8000-000000000001', 'bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb', 'work', 'smtp.b.example', 465,
   'bob@b.example');
update public.user_smtp_configs set duplicate_window_seconds = 0 where name = 'off';

select is((select duplicate_window_seconds from public.user_smtp_configs where name = 'work' limit 1), 600,
  'a config refuses repeats for 10 minutes unless told otherwise');
select throws_ok(
  $$update public.user_smtp_configs set duplicate_window_seconds = 86401 where name = 'off'$$, '23514', null,
  'at most a day');
select ok((select relrowsecurity from pg_class where oid = 'private.send_fingerprints'::regclass),
  'the fingerprints table has RLS on');

set local role authenticated;
-- Bob sent an email (he holds its fingerprint).
set local request.jwt.claims to '{"sub":"bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb","role":"authenticated"}';
insert into public.email_audit_log (config_id, from_email, to_addresses, status, payload, content_fingerprint)
values ('b1b1b1b1-0000-4000-8000-000000000001', 'bob@b.example', array['q@example.test'], 'queued', '{}',
        sha256('bobs'));
set local request.jwt.claims to '{"sub":"aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa","role":"authenticated"}';

select throws_ok($$select * from private.send_fingerprints$$, '42501', null, 'a user cannot read the fingerprints');
select throws_ok($$select private.forget_expired_send_fingerprints()$$, '42501', null,
  'nor call the cleanup');

-- The Data API's insert, with a fingerprint: the first holds it, the second is refused.
insert into public.email_audit_log (id, config_id, from_email, to_addresses, status, payload, content_fingerprint)
values ('a0000000-0000-4000-8000-000000000001', 'a1a1a1a1-0000-4000-8000-000000000001', 'alice@a.example',
        array['q@example.test'], 'queued', '{}', sha256('one'));
select throws_like(
  $$insert into public.email_audit_log (config_id, from_email, to_addresses, status, payload, content_fingerprint)
    values ('a1a1a1a1-0000-4000-8000-000000000001', 'alice@a.example', array['q@example.test'], 'queued', '{}',
            sha256('one'))$$,
  '%duplicate_send%a0000000-0000-4000-8000-000000000001%', 'the same fingerprint again is refused, naming the first');
select is(
  (select count(*)::int from private.duplicate_sends('a1a1a1a1-0000-4000-8000-000000000001',
                                                     array[sha256('one'), sha256('two')])),
  1, 'duplicate_sends finds the one held');
select throws_like(
  $$select private.refuse_duplicate_send('a1a1a1a1-0000-4000-8000-000000000001', sha256('one'))$$,
  '%duplicate_send%', 'refuse_duplicate_send says so before any budget is touched');
select lives_ok(
  $$insert into public.email_audit_log (config_id, from_email, to_addresses, status, payload, content_fingerprint)
    values ('a1a1a1a1-0000-4000-8000-000000000002', 'alice@a.example', array['q@example.test'], 'queued', '{}',
            sha256('one'))$$,
  'through a config whose window is 0 it goes');

-- Allowed: it goes, and records what it repeats; it holds the fingerprint from now on.
select set_config('mailroom.allow_duplicate', 'yes', true);
insert into public.email_audit_log (id, config_id, from_email, to_addresses, status, payload, content_fingerprint)
values ('a0000000-0000-4000-8000-000000000002', 'a1a1a1a1-0000-4000-8000-000000000001', 'alice@a.example',
        array['q@example.test'], 'queued', '{}', sha256('one'));
select set_config('mailroom.allow_duplicate', '', true);
select is((select duplicate_of from public.email_audit_log where id = 'a0000000-0000-4000-8000-000000000002'),
  'a0000000-0000-4000-8000-000000000001'::uuid, 'allow_duplicate records the message it repeats');
select throws_like(
  $$insert into public.email_audit_log (config_id, from_email, to_addresses, status, payload, content_fingerprint)
    values ('a1a1a1a1-0000-4000-8000-000000000001', 'alice@a.example', array['q@example.test'], 'queued', '{}',
            sha256('one'))$$,
  '%a0000000-0000-4000-8000-000000000002%', 'the next repeat names the newest');

-- Cancelled, it no longer holds the fingerprint.
select is((select private.cancel_outbox_messages(array['a0000000-0000-4000-8000-000000000002'::uuid])), 1,
  'the newest is cancelled');
select lives_ok(
  $$insert into public.email_audit_log (config_id, from_email, to_addresses, status, payload, content_fingerprint)
    values ('a1a1a1a1-0000-4000-8000-000000000001', 'alice@a.example', array['q@example.test'], 'queued', '{}',
            sha256('one'))$$,
  'a cancelled message leaves its email free');
select throws_ok(
  $$insert into public.email_audit_log (config_id, from_email, to_addresses, status, payload, content_fingerprint)
    values ('a1a1a1a1-0000-4000-8000-000000000001', 'alice@a.example', array['q@example.test'], 'queued', '{}',
            '\x01')$$,
  '23514', null, 'a fingerprint is 32 bytes');

-- An insert in Bob's name (which RLS refuses) learns nothing of his mail: the check is skipped
-- for a row that is not the caller's, and the policy refuses it.
select throws_ok(
  $$insert into public.email_audit_log (user_id, config_id, from_email, to_addresses, status, payload,
                                        content_fingerprint)
    values ('bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb', 'b1b1b1b1-0000-4000-8000-000000000001', 'bob@b.example',
            array['q@example.test'], 'queued', '{}', sha256('bobs'))$$,
  '42501', null, 'a row in another user''s name is refused by RLS, not answered with their message');

-- Bob's identical email is his own.
set local request.jwt.claims to '{"sub":"bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb","role":"authenticated"}';
select lives_ok(
  $$insert into public.email_audit_log (config_id, from_email, to_addresses, status, payload, content_fingerprint)
    values ('b1b1b1b1-0000-4000-8000-000000000001', 'bob@b.example', array['q@example.test'], 'queued', '{}',
            sha256('one'))$$,
  'another user''s same fingerprint is not a duplicate');
select is(
  (select count(*)::int from private.duplicate_sends('a1a1a1a1-0000-4000-8000-000000000001', array[sha256('one')])),
  0, 'nor does duplicate_sends show him Alice''s');

-- The cleanup forgets what is past its window.
reset role;
update private.send_fingerprints set expires_at = now() - interval '1 second'
 where user_id = 'bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb';
select is(private.forget_expired_send_fingerprints(), 2, 'the cleanup forgets expired fingerprints only');

select * from finish();
rollback;
