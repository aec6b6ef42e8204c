-- The outbox on email_audit_log: users enqueue and cancel their own rows but never move a
-- status; workers (postgres) claim fairly with a lease; outcomes are recorded as the owner;
-- deferred recipients are re-queued with backoff; a dead worker's in-flight row is unknown.
begin;
create extension if not exists pgtap with schema extensions;
set local search_path = public, extensions;

select plan(33);

insert into auth.users (id, email) values
  ('aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'alice@example.test'),
  ('bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb', 'bob@example.test');
insert into public.user_smtp_configs (id, user_id, name, host, port, from_email) values
  ('a1a1a1a1-0000-4000-8000-000000000001', 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'work', 'smtp.work.example', 465,
   'alice@work.example'),
  ('b1b1b1b1-0000-4000-8000-000000000001', 'bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb', 'bob', 'smtp.bob.example', 465,
   'bob@bob.example');

select ok(
  (select relrowsecurity from pg_catalog.pg_class where oid = 'public.email_batches'::regclass),
  'row level security is enabled on email_batches'
);

-- Alice enqueues ------------------------------------------------------------------------------
set local role authenticated;
set local request.jwt.claims to '{"sub":"aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa","role":"authenticated"}';

select lives_ok(
  $$insert into public.email_batches (id, config_id, content, total)
    values ('ba000000-0000-4000-8000-000000000001', 'a1a1a1a1-0000-4000-8000-000000000001', '{"text": "hi"}', 3)$$,
  'owner creates a batch'
);
select lives_ok(
  $$insert into public.email_audit_log (id, config_id, batch_id, from_email, to_addresses, status, payload)
    select ('a0000000-0000-4000-8000-00000000000' || i)::uuid, 'a1a1a1a1-0000-4000-8000-000000000001',
           'ba000000-0000-4000-8000-000000000001', 'alice@Work.example', array['r' || i || '@example.test'],
           'queued', jsonb_build_object('to', 'r' || i || '@example.test')
      from generate_series(1, 3) i$$,
  'owner enqueues three messages'
);
select results_eq(
  $$select status, attempts, message_id from public.email_audit_log where id = 'a0000000-0000-4000-8000-000000000001'$$,
  $$values ('queued'::text, 0, '<a0000000-0000-4000-8000-000000000001@work.example>'::text)$$,
  'a queued row gets its fixed Message-ID from its id and the sender''s domain'
);
select lives_ok(
  $$insert into public.email_audit_log (id, config_id, from_email, status, payload, scheduled_at)
    values ('a0000000-0000-4000-8000-000000000009', 'a1a1a1a1-0000-4000-8000-000000000001', 'alice@work.example',
            'queued', '{}', now() + interval '1 day')$$,
  'owner schedules a message for tomorrow'
);
select is((select status from public.email_audit_log where id = 'a0000000-0000-4000-8000-000000000009'),
  'scheduled', 'a future send is scheduled');
select throws_ok(
  $$insert into public.email_audit_log (config_id, batch_id, from_email, status)
    values ('a1a1a1a1-0000-4000-8000-000000000001', 'ba000000-0000-4000-8000-000000000001', 'alice@work.example', 'sent')$$,
  '42501', null, 'a user cannot insert a finished row'
);
select throws_ok(
  $$insert into public.email_audit_log (config_id, from_email, status, payload)
    values ('a1a1a1a1-0000-4000-8000-000000000001', 'alice@work.example', 'sending', '{"kind": "request"}')$$,
  '42501', null, 'an in-flight row carries no payload (only queued rows are for the worker)'
);
select lives_ok(
  $$insert into public.email_audit_log (id, config_id, from_email, status, payload)
    values ('a0000000-0000-4000-8000-00000000000b', 'a1a1a1a1-0000-4000-8000-000000000001', 'ceo@victim.example',
            'queued', '{}')$$,
  'a queued row claiming another sender ...'
);
select results_eq(
  $$select from_email, message_id from public.email_audit_log where id = 'a0000000-0000-4000-8000-00000000000b'$$,
  $$values ('alice@work.example'::text, '<a0000000-0000-4000-8000-00000000000b@work.example>'::text)$$,
  '... gets the config''s sender and a Message-ID in its domain'
);
select lives_ok(
  $$select private.cancel_outbox_messages(array['a0000000-0000-4000-8000-00000000000b'::uuid])$$,
  'and can be cancelled'
);
select throws_ok(
  $$update public.email_audit_log set status = 'sending' where id = 'a0000000-0000-4000-8000-000000000001'$$,
  '42501', null, 'a user cannot move a status'
);
select throws_ok(
  $$select * from private.claim_outbox('w', 10, 60)$$, '42501', null, 'a user cannot claim'
);

set local request.jwt.claims to '{"sub":"bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb","role":"authenticated"}';
select throws_ok(
  $$insert into public.email_audit_log (config_id, batch_id, from_email, status)
    values ('b1b1b1b1-0000-4000-8000-000000000001', 'ba000000-0000-4000-8000-000000000001', 'bob@bob.example', 'queued')$$,
  '42501', null, 'another user cannot add to the owner''s batch'
);
select is(
  (select private.cancel_outbox_messages(array['a0000000-0000-4000-8000-000000000002'::uuid])), 0,
  'another user cannot cancel the owner''s messages'
);
select lives_ok(
  $$insert into public.email_audit_log (id, config_id, from_email, status, payload)
    values ('b0000000-0000-4000-8000-000000000001', 'b1b1b1b1-0000-4000-8000-000000000001', 'bob@bob.example',
            'queued', '{}')$$,
  'bob enqueues one message'
);

-- A worker ---------------------------------------------------------------------------------------
reset role;
select is(
  (select array_agg(user_id::text order by next_attempt_at) from private.claim_outbox('w1', 2, 60)),
  array['aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb'],
  'two claims go to two users, not both to the one with the bigger queue'
);
select is((select count(*)::int from private.claim_outbox('w2', 10, 60)), 2,
  'another worker gets only what is not leased (and not the scheduled one)');
select ok(private.start_outbox_send('a0000000-0000-4000-8000-000000000001', 'w1', 60), 'w1 starts its row');
select ok(not private.start_outbox_send('a0000000-0000-4000-8000-000000000002', 'w1', 60),
  'w1 cannot start a row another worker leased');

-- The outcome, as the owner: one recipient deferred -> back to the queue with backoff.
set local role authenticated;
set local request.jwt.claims to '{"sub":"aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa","role":"authenticated"}';
select is(
  private.record_outbox_attempt('a0000000-0000-4000-8000-000000000001', '{"status": "deferred",
    "recipients": [{"address": "r1@example.test", "status": "deferred", "smtp_code": 450}],
    "error_class": "smtp_recipients_deferred"}'),
  'queued', 'a deferred attempt goes back to the queue'
);
select ok(
  (select next_attempt_at > now() + interval '40 seconds' from public.email_audit_log
    where id = 'a0000000-0000-4000-8000-000000000001'),
  'with backoff'
);
reset role;
update public.email_audit_log set next_attempt_at = now() - interval '1 second'
 where id = 'a0000000-0000-4000-8000-000000000001';
select is((select count(*)::int from private.claim_outbox('w3', 10, 60)
            where id = 'a0000000-0000-4000-8000-000000000001'), 1, 'and is claimed again when due');
select ok(private.start_outbox_send('a0000000-0000-4000-8000-000000000001', 'w3', 60), 'w3 starts it');
set local role authenticated;
select is(
  private.record_outbox_attempt('a0000000-0000-4000-8000-000000000001', '{"status": "sent",
    "recipients": [{"address": "r1@example.test", "status": "accepted", "smtp_code": 250}]}'),
  'sent', 'the retry delivers: sent'
);

-- A worker that dies with a row in flight.
reset role;
select ok(private.start_outbox_send('a0000000-0000-4000-8000-000000000002', 'w2', 60), 'w2 starts a row');
update public.email_audit_log set lease_until = now() - interval '1 second' where id = 'a0000000-0000-4000-8000-000000000002';
select is(private.sweep_outbox(), 1, 'its expired in-flight row is swept to unknown');

-- A paused config keeps its queue until its credentials change.
insert into public.email_audit_log (id, user_id, config_id, from_email, status, payload)
values ('a0000000-0000-4000-8000-00000000000a', 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa',
        'a1a1a1a1-0000-4000-8000-000000000001', 'alice@work.example', 'queued', '{}');
set local role authenticated;
set local request.jwt.claims to '{"sub":"aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa","role":"authenticated"}';
select lives_ok($$select private.pause_config_queue('a1a1a1a1-0000-4000-8000-000000000001', 'smtp_auth_failed')$$,
  'the owner (the worker, as the owner) pauses a config');
reset role;
select is((select count(*)::int from private.claim_outbox('w4', 10, 60)
            where id = 'a0000000-0000-4000-8000-00000000000a'), 0, 'a paused config''s rows are not claimed');
set local role authenticated;
select lives_ok($$select private.set_smtp_config_password('a1a1a1a1-0000-4000-8000-000000000001', 'fixed')$$,
  'the owner stores a new password');
select is((select needs_attention from public.user_smtp_configs where id = 'a1a1a1a1-0000-4000-8000-000000000001'),
  null, 'which resumes the queue');
set local request.jwt.claims to '{"sub":"bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb","role":"authenticated"}';
select lives_ok($$select private.pause_config_queue('a1a1a1a1-0000-4000-8000-000000000001', 'x')$$,
  'another user''s pause call ...');
reset role;
select is((select needs_attention from public.user_smtp_configs where id = 'a1a1a1a1-0000-4000-8000-000000000001'),
  null, '... changes nothing');

select * from finish();
rollback;
