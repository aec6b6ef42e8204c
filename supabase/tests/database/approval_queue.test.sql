-- The approval queue (issue 29): what waits is decided in the database, for every path into
-- the outbox; only the owner's first-party session decides (with aal2 where asked); an agent's
-- immediate send cannot skip the queue; nobody writes a decision through the Data API.
begin;
create extension if not exists pgtap with schema extensions;
set local search_path = public, extensions;

select plan(19);

insert into auth.users (id, email) values
  ('aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'alice@example.test'),
  ('bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb', 'bob@example.test');
insert into public.user_smtp_configs (id, user_id, name, host, port, from_email)
values ('a1a1a1a1-0000-4000-8000-000000000001', 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'main', 'smtp.example.test',
        465, 'alice@example.test');

set local role authenticated;
set local request.jwt.claims to '{"sub":"aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa","role":"authenticated"}';
select lives_ok($$select private.set_sending_guardrails(null, null, '{}', null, 'agents', 24, true, null)$$,
  'the owner asks for approval of agents'' sends, with MFA to decide');

-- Her agent.
set local request.jwt.claims to
  '{"sub":"aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa","role":"authenticated","client_id":"agent-app"}';
insert into public.email_audit_log (id, config_id, from_email, to_addresses, status, payload)
values ('c0c0c0c0-0000-4000-8000-000000000001', 'a1a1a1a1-0000-4000-8000-000000000001', 'x@example.test',
        array['r@example.test'], 'queued', '{"kind":"request","request":{"to":"r@example.test","text":"hi"}}');
select is((select status from public.email_audit_log where id = 'c0c0c0c0-0000-4000-8000-000000000001'),
  'pending_approval', 'an agent''s queued row waits, even inserted straight through the Data API');
select is((select client_id from public.email_audit_log where id = 'c0c0c0c0-0000-4000-8000-000000000001'),
  'agent-app', 'the row says which OAuth client made it, from its token');
select ok((select approval_expires_at between now() + interval '23 hours' and now() + interval '25 hours'
             from public.email_audit_log where id = 'c0c0c0c0-0000-4000-8000-000000000001'),
  'it waits as long as the guardrails say (24 hours)');
select throws_like(
  $$insert into public.email_audit_log (config_id, from_email, to_addresses, status)
    values ('a1a1a1a1-0000-4000-8000-000000000001', 'x@example.test', array['r@example.test'], 'sending')$$,
  '%approval_required%', 'an agent''s immediate send cannot skip the queue');
select throws_like(
  $$select private.decide_approvals(array['c0c0c0c0-0000-4000-8000-000000000001'::uuid], null, true, null)$$,
  '%first_party_session_required%', 'an agent cannot approve');
select throws_like(
  $$select private.set_sending_guardrails(null, null, '{}', null, 'off', 24, true, null)$$,
  '%first_party_session_required%', 'nor turn approval off');
select throws_like(
  $$select private.set_sending_guardrails(null, null, '{}', null, 'agents', 24, false, null)$$,
  '%first_party_session_required%', 'nor drop MFA');
select throws_like(
  $$update public.email_audit_log set status = 'queued' where id = 'c0c0c0c0-0000-4000-8000-000000000001'$$,
  '%permission denied%', 'nor release it through the Data API');

-- Alice herself, first with one factor, then with two.
set local request.jwt.claims to '{"sub":"aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa","role":"authenticated","aal":"aal1"}';
select throws_like(
  $$select private.decide_approvals(array['c0c0c0c0-0000-4000-8000-000000000001'::uuid], null, true, null)$$,
  '%mfa_required%', 'one factor is not enough when the guardrails ask for two');
set local request.jwt.claims to '{"sub":"aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa","role":"authenticated","aal":"aal2"}';
select is(
  (select array_agg(id) from private.decide_approvals(array['c0c0c0c0-0000-4000-8000-000000000001'::uuid], null,
                                                       true, null) id),
  array['c0c0c0c0-0000-4000-8000-000000000001'::uuid], 'the owner approves');
select is((select status from public.email_audit_log where id = 'c0c0c0c0-0000-4000-8000-000000000001'),
  'queued', 'approved, it is queued mail');
select is(
  (select count(*)::integer from private.decide_approvals(array['c0c0c0c0-0000-4000-8000-000000000001'::uuid], null,
                                                           false, null)),
  0, 'a decided send is not decided again');

-- Agents' daily cap: the owner sets one; her agent has made one message (the held one).
set local request.jwt.claims to '{"sub":"aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa","role":"authenticated","aal":"aal2"}';
select lives_ok($$select private.set_sending_guardrails(null, null, '{}', null, 'agents', 24, true, 2)$$,
  'the owner allows agents two messages a day');
select is(private.agent_budget_refusal('a1a1a1a1-0000-4000-8000-000000000001', 5), null,
  'the owner''s own sends are not an agent''s');
set local request.jwt.claims to
  '{"sub":"aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa","role":"authenticated","client_id":"agent-app"}';
select is(private.agent_budget_refusal('a1a1a1a1-0000-4000-8000-000000000001', 1), null, 'one more fits');
select is(private.agent_budget_refusal('a1a1a1a1-0000-4000-8000-000000000001', 2) ->> 'code',
  'agent_daily_cap_reached', 'two more do not');
select throws_like($$select private.set_sending_guardrails(null, null, '{}', null, 'agents', 24, true, 20)$$,
  '%first_party_session_required%', 'an agent cannot raise its allowance');

-- Bob cannot decide on Alice's sends.
set local request.jwt.claims to '{"sub":"bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb","role":"authenticated","aal":"aal2"}';
select is(
  (select count(*)::integer from private.decide_approvals(array['c0c0c0c0-0000-4000-8000-000000000001'::uuid], null,
                                                           false, null)),
  0, 'another user decides nothing');

select * from finish();
rollback;
