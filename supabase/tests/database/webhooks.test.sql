-- Webhooks: owners read theirs (agents too) and only the owner's own session adds, changes or
-- removes one; each outcome change of the owner's messages queues one delivery per enabled
-- webhook that wants it (none for `sending`, none for other users'); deliveries are the owner's to
-- read and nobody's to write; the worker's functions are server-side only.
begin;
create extension if not exists pgtap with schema extensions;
set local search_path = public, extensions;

select plan(12);

insert into auth.users (id, email) values
  ('aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'alice@example.test'),
  ('bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb', 'bob@example.test');

set local role authenticated;
set local request.jwt.claims to
  '{"sub":"aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa","role":"authenticated","client_id":"an-agent"}';
select throws_ok(
  $$insert into public.webhooks (url) values ('https://hooks.attacker.example/x')$$,
  'PGRST', null, 'an agent''s token adds no webhook'
);

set local request.jwt.claims to '{"sub":"aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa","role":"authenticated"}';
reset role;
insert into public.webhooks (id, user_id, url) values
  ('10000000-0000-4000-8000-000000000001', 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'https://hooks.example.test/all');
insert into public.webhooks (id, user_id, url, event_types) values
  ('10000000-0000-4000-8000-000000000002', 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'https://hooks.example.test/failures',
   '{message.failed}');
insert into public.webhooks (id, user_id, url, enabled) values
  ('10000000-0000-4000-8000-000000000003', 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'https://hooks.example.test/off',
   false);
set local role authenticated;
select throws_ok(
  $$insert into public.webhooks (url) values ('http://hooks.example.test/plain')$$,
  '23514', null, 'https only'
);
select lives_ok(
  $$select private.set_webhook_secret('10000000-0000-4000-8000-000000000001',
                                      'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw0aBcDeFgHiJk')$$,
  'the owner stores its secret (in Vault)'
);

set local request.jwt.claims to
  '{"sub":"aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa","role":"authenticated","client_id":"an-agent"}';
select is((select count(*)::int from public.webhooks), 3, 'her agent reads them');
select throws_ok($$update public.webhooks set url = 'https://hooks.attacker.example/x'$$, 'PGRST', null,
  'but changes none');
select throws_ok($$delete from public.webhooks$$, 'PGRST', null, 'nor removes one');

set local request.jwt.claims to '{"sub":"bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb","role":"authenticated"}';
select is((select count(*)::int from public.webhooks), 0, 'bob sees none of hers');

reset role;
insert into public.email_audit_log (id, user_id, from_email, to_addresses, status) values
  ('a0000000-0000-4000-8000-000000000001', 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'a@example.test',
   '{ann@example.test}', 'sending'),
  ('b0000000-0000-4000-8000-000000000001', 'bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb', 'b@example.test',
   '{ann@example.test}', 'queued');
select is((select count(*)::int from public.webhook_deliveries), 0,
  'nothing for a message going out (sending), nor for bob''s (no webhook of his)');
update public.email_audit_log set status = 'sent' where id = 'a0000000-0000-4000-8000-000000000001';
update public.email_audit_log set status = 'failed' where id = 'b0000000-0000-4000-8000-000000000001';
select results_eq(
  $$select webhook_id, event_type, payload -> 'data' ->> 'status' from public.webhook_deliveries$$,
  $$values ('10000000-0000-4000-8000-000000000001'::uuid, 'message.sent'::text, 'sent'::text)$$,
  'her sent message: one delivery, to the enabled webhook that wants it'
);

set local role authenticated;
set local request.jwt.claims to '{"sub":"bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb","role":"authenticated"}';
select is((select count(*)::int from public.webhook_deliveries), 0, 'bob reads none of her deliveries');
select throws_ok($$update public.webhook_deliveries set delivered_at = now()$$, '42501', null,
  'and nobody writes them');
reset role;
select ok(
  not has_function_privilege('authenticated', 'private.claim_webhook_deliveries(integer, interval)', 'execute')
  and not has_function_privilege('authenticated', 'private.record_webhook_deliveries(jsonb)', 'execute'),
  'the worker''s claim and record are not a user''s to call'
);

select * from finish();
rollback;
