-- The suppression list: owners read, add and remove their own; an agent (a token with
-- client_id) adds but never removes; hard bounces at RCPT join it through the outcome's trigger,
-- policy refusals do not; private.record_suppressed records only listed addresses, on the
-- caller's own unsent rows.
begin;
create extension if not exists pgtap with schema extensions;
set local search_path = public, extensions;

select plan(11);

insert into auth.users (id, email) values
  ('aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'alice@example.test'),
  ('bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb', 'bob@example.test');
insert into public.suppressions (user_id, address, reason) values
  ('aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'ann@example.test', 'unsubscribed'),
  ('bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb', 'bea@example.test', 'manual');
insert into public.suppressions (user_id, address, reason) values
  ('bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb', 'ann@example.test', 'manual');
insert into public.email_audit_log (id, user_id, from_email, to_addresses, status) values
  ('a0000000-0000-4000-8000-000000000001', 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'a@example.test',
   '{ann@example.test}', 'queued'),
  ('a0000000-0000-4000-8000-000000000003', 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'a@example.test',
   '{ann@example.test}', 'queued'),
  ('b0000000-0000-4000-8000-000000000001', 'bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb', 'b@example.test',
   '{ann@example.test}', 'queued');
-- Claimed as the outbox claims them.
update public.email_audit_log set leased_by = case when id = 'a0000000-0000-4000-8000-000000000003' then 'worker-2'
                                                   else 'worker-1' end,
                                  lease_until = now() + interval '1 minute';

select throws_ok(
  $$insert into public.suppressions (user_id, address) values ('aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'Ann@Example.test')$$,
  '23514', null, 'addresses are kept in lower case'
);

set local role authenticated;
set local request.jwt.claims to
  '{"sub":"aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa","role":"authenticated","client_id":"an-agent"}';
select is((select count(*)::int from public.suppressions), 1, 'alice''s agent reads her list, not bob''s two');
select lives_ok($$insert into public.suppressions (address) values ('cat@example.test')$$, 'an agent may add');
delete from public.suppressions where address = 'ann@example.test';
select is((select count(*)::int from public.suppressions where address = 'ann@example.test'), 1,
  'an agent removes nothing');
select is(private.suppressed_among(array['ANN@example.test', 'bea@example.test', 'nobody@example.test']),
  array['ANN@example.test'], 'suppressed_among answers from the caller''s list only, spelled as asked');

set local request.jwt.claims to '{"sub":"aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa","role":"authenticated"}';
select results_eq(
  $$select private.record_suppressed('[{"id":"a0000000-0000-4000-8000-000000000001","suppressed":["Ann@example.test","nobody@example.test"],"done":true},
                                       {"id":"a0000000-0000-4000-8000-000000000003","suppressed":["ann@example.test"],"done":true},
                                       {"id":"b0000000-0000-4000-8000-000000000001","suppressed":["ann@example.test"],"done":true}]',
                                     'worker-1')$$,
  $$values ('a0000000-0000-4000-8000-000000000001'::uuid)$$,
  'record_suppressed ends the caller''s own row claimed by this worker, never another worker''s or user''s'
);
reset role;
select results_eq(
  $$select status, suppressed from public.email_audit_log order by id$$,
  $$values ('suppressed', array['Ann@example.test']), ('queued', '{}'::text[]), ('queued', '{}'::text[])$$,
  'only listed addresses are recorded; the other worker''s row and bob''s (whose list names ann too) are untouched'
);

set local role authenticated;
delete from public.suppressions where address = 'cat@example.test';
select is((select count(*)::int from public.suppressions where address = 'cat@example.test'), 0,
  'the owner''s own session removes one');

-- Hard bounces: the outcome's trigger.
reset role;
insert into public.email_audit_log (id, user_id, from_email, to_addresses, status) values
  ('a0000000-0000-4000-8000-000000000002', 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'a@example.test',
   '{gone@example.test}', 'sending');
update public.email_audit_log
   set status = 'failed', rejected = '{gone@example.test,policy@example.test,plain@example.test,full@example.test}',
       recipients = '[{"address":"gone@example.test","status":"rejected","smtp_code":550,"enhanced_code":"5.1.1","response":"550 5.1.1 User unknown"},
                      {"address":"policy@example.test","status":"rejected","smtp_code":550,"enhanced_code":"5.7.1","response":"550 5.7.1 Relay access denied"},
                      {"address":"plain@example.test","status":"rejected","smtp_code":550,"enhanced_code":null,"response":"550 No such user here"},
                      {"address":"full@example.test","status":"rejected","smtp_code":552,"enhanced_code":"5.2.2","response":"552 Mailbox full"}]'
 where id = 'a0000000-0000-4000-8000-000000000002';
select results_eq(
  $$select address, reason, audit_id from public.suppressions where reason = 'hard_bounce' order by address$$,
  $$values ('gone@example.test', 'hard_bounce', 'a0000000-0000-4000-8000-000000000002'::uuid),
           ('plain@example.test', 'hard_bounce', 'a0000000-0000-4000-8000-000000000002'::uuid)$$,
  '5.1.1 and a plain 550 "no such user" suppress; 5.7.1 and a full mailbox do not'
);
select ok(private.is_hard_bounce('{"status":"rejected","smtp_code":550,"enhanced_code":"5.1.10","response":"null MX"}'),
  '5.1.10 (null MX) is a hard bounce');
select ok(not has_function_privilege('anon', 'private.suppressed_among(text[])', 'execute'), 'anon cannot ask');

select * from finish();
rollback;
