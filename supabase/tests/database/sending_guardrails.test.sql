-- Guardrails and the stop button (issue 29): owner-only, changed only through the functions,
-- agents (a client_id claim) may tighten but never loosen or lift a stop, also through the
-- Data API's privileges; every change recorded and nobody can rewrite the record.
begin;
create extension if not exists pgtap with schema extensions;
set local search_path = public, extensions;

select plan(22);

insert into auth.users (id, email) values
  ('aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'alice@example.test'),
  ('bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb', 'bob@example.test');
insert into public.user_smtp_configs (id, user_id, name, host, port, from_email)
values ('a1a1a1a1-0000-4000-8000-000000000001', 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'main', 'smtp.example.test',
        465, 'alice@example.test'),
       ('b1b1b1b1-0000-4000-8000-000000000001', 'bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb', 'bobs', 'smtp.example.test',
        465, 'bob@example.test');

-- Alice's own session: matching, through a config's deny list.
set local role authenticated;
set local request.jwt.claims to '{"sub":"aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa","role":"authenticated"}';
select private.set_sending_guardrails('a1a1a1a1-0000-4000-8000-000000000001', null,
                                      array['ana@corp.example', 'dom.example', '*.sub.example'], null);
create temporary table verdicts as
select r.address, private.guardrail_refusal('a1a1a1a1-0000-4000-8000-000000000001', array[r.address],
                                            array[lower(r.address)]) ->> 'code' as code
  from unnest(array['Ana@Corp.Example', 'ana+agent@corp.example', 'x@dom.example', 'x@mail.sub.example',
                    'x@sub.example', 'x@evilsub.example', 'x@otherdom.example']) r (address);
select is((select array_agg(address order by address) from verdicts where code = 'recipient_denied'),
  array['Ana@Corp.Example', 'ana+agent@corp.example', 'x@dom.example', 'x@mail.sub.example'],
  'an address (whatever its case, with or without a +tag), a domain, a subdomain are denied');
select is((select array_agg(address order by address) from verdicts where code is null),
  array['x@evilsub.example', 'x@otherdom.example', 'x@sub.example'],
  'not the domain of a *.pattern itself, nor a domain that merely ends the same');
select throws_ok(
  $$select private.set_sending_guardrails(null, null, array['Not A Pattern'], null)$$, '23514', null,
  'the database keeps only patterns it can match');
select lives_ok($$select private.set_sending_guardrails('a1a1a1a1-0000-4000-8000-000000000001', null, '{}', null)$$,
  'the owner clears the config''s list');

-- An agent of Alice's (an OAuth client's token).
set local request.jwt.claims to
  '{"sub":"aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa","role":"authenticated","client_id":"agent-app"}';

select throws_ok(
  $$insert into public.sending_guardrails (user_id, deny_recipients) values (auth.uid(), '{}')$$,
  '42501', null, 'the Data API cannot write guardrails');
select lives_ok(
  $$select private.set_sending_guardrails(null, null, array['corp.example'], 10)$$, 'an agent may tighten');
select throws_like(
  $$select private.set_sending_guardrails(null, null, '{}', 10)$$, '%first_party_session_required%',
  'an agent may not drop a denied pattern');
select throws_like(
  $$select private.set_sending_guardrails(null, null, array['corp.example'], 20)$$, '%first_party_session_required%',
  'nor raise the cap');
select lives_ok(
  $$select private.set_sending_guardrails('a1a1a1a1-0000-4000-8000-000000000001', null, '{}', 50)$$,
  'a config may have a cap of its own');
select is(
  private.guardrail_refusal('a1a1a1a1-0000-4000-8000-000000000001',
                            array(select 'r' || i || '@example.test' from generate_series(1, 11) i), null) ->> 'code',
  'recipient_cap_exceeded', 'but the account''s lower cap still holds through it');
select lives_ok($$select private.stop_sending(null, 'agent pressed it')$$, 'an agent may press the stop button');
select throws_like($$select private.resume_sending(null)$$, '%first_party_session_required%', 'but not lift it');
select throws_like(
  $$select private.check_send_guardrails('a1a1a1a1-0000-4000-8000-000000000001', '{}')$$, '%sending_stopped%',
  'a stopped account refuses sends');
select throws_like($$update public.oversight_events set action = 'sending_resumed'$$, '%permission denied%',
  'nobody rewrites the record');
select throws_like($$delete from public.oversight_events$$, '%permission denied%', 'nor deletes from it');

-- Alice herself.
set local request.jwt.claims to '{"sub":"aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa","role":"authenticated"}';
select lives_ok($$select private.resume_sending(null)$$, 'the owner lifts the stop');
select throws_like(
  $$select private.check_send_guardrails('a1a1a1a1-0000-4000-8000-000000000001', array['x@corp.example'])$$,
  '%recipient_denied%', 'a denied recipient is refused');
select lives_ok(
  $$select private.check_send_guardrails('a1a1a1a1-0000-4000-8000-000000000001', array['x@other.example'])$$,
  'others are not');
select is(
  (select array_agg(action || ':' || coalesce(actor ->> 'client_id', 'owner') order by id) from public.oversight_events),
  array['guardrails_changed:owner', 'guardrails_changed:owner', 'guardrails_changed:agent-app',
        'guardrails_changed:agent-app', 'sending_stopped:agent-app', 'sending_resumed:owner'],
  'each change recorded with who made it');
select throws_like(
  $$select private.stop_sending('b1b1b1b1-0000-4000-8000-000000000001', null)$$, '%config_not_found%',
  'another user''s config is not found');

-- Bob sees none of it.
set local request.jwt.claims to '{"sub":"bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb","role":"authenticated"}';
select is((select count(*)::integer from public.sending_guardrails), 0, 'another user reads no guardrails');
select is((select count(*)::integer from public.oversight_events), 0, 'nor events');

select * from finish();
rollback;
