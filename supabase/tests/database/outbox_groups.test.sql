-- The outbox's group operations: a worker starts and postpones several claimed rows in one
-- statement (users cannot), and records several outcomes as the owner in one call, where a row
-- that is not the caller's, or not in flight, is reported `lost` and changes nothing.
begin;
create extension if not exists pgtap with schema extensions;
set local search_path = public, extensions;

select plan(11);

insert into auth.users (id, email) values
  ('aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'alice@example.test'),
  ('bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb', 'bob@example.test');
insert into public.user_smtp_configs (id, user_id, name, host, port, from_email) values
  ('a1a1a1a1-0000-4000-8000-000000000001', 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'work', 'smtp.work.example', 465,
   'alice@work.example'),
  ('b1b1b1b1-0000-4000-8000-000000000001', 'bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb', 'bob', 'smtp.bob.example', 465,
   'bob@bob.example');
insert into public.email_audit_log (id, user_id, config_id, from_email, to_addresses, status, payload)
select ('a0000000-0000-4000-8000-00000000000' || i)::uuid, 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa',
       'a1a1a1a1-0000-4000-8000-000000000001', 'alice@work.example', array['r' || i || '@example.test'], 'queued', '{}'
  from generate_series(1, 3) i;
insert into public.email_audit_log (id, user_id, config_id, from_email, to_addresses, status, payload)
values ('b0000000-0000-4000-8000-000000000001', 'bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb',
        'b1b1b1b1-0000-4000-8000-000000000001', 'bob@bob.example', array['b@example.test'], 'queued', '{}');

select is((select count(*)::int from private.claim_outbox('w', 10, 60)), 4, 'a worker claims all four');

-- Users cannot start or postpone, also not their own rows.
set local role authenticated;
set local request.jwt.claims to '{"sub":"aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa","role":"authenticated"}';
select throws_ok(
  $$select private.start_outbox_sends(array['a0000000-0000-4000-8000-000000000001']::uuid[], 'w', 60)$$,
  '42501', null, 'a user cannot start sends'
);
select throws_ok(
  $$select private.postpone_outbox_sends(array['a0000000-0000-4000-8000-000000000001']::uuid[], 'w', 0)$$,
  '42501', null, 'a user cannot postpone sends'
);
reset role;

select is(
  (select count(*)::int from private.start_outbox_sends(
     array['a0000000-0000-4000-8000-000000000001', 'a0000000-0000-4000-8000-000000000002',
           'b0000000-0000-4000-8000-000000000001']::uuid[], 'other-worker', 60)),
  0, 'a worker cannot start rows another worker leased'
);
select is(
  (select array_agg(id::text order by id) from private.start_outbox_sends(
     array['a0000000-0000-4000-8000-000000000001', 'a0000000-0000-4000-8000-000000000002',
           'b0000000-0000-4000-8000-000000000001']::uuid[], 'w', 60) as id),
  array['a0000000-0000-4000-8000-000000000001', 'a0000000-0000-4000-8000-000000000002',
        'b0000000-0000-4000-8000-000000000001'],
  'its own claimed rows start together'
);

-- Alice records three outcomes at once: hers, Bob's in-flight row, and her row never started.
set local role authenticated;
select is(
  (select array_agg(status order by id) from private.record_outbox_attempts(jsonb_build_array(
     jsonb_build_object('id', 'a0000000-0000-4000-8000-000000000001', 'outcome', '{"status": "sent",
       "recipients": [{"address": "r1@example.test", "status": "accepted", "smtp_code": 250}]}'::jsonb),
     jsonb_build_object('id', 'a0000000-0000-4000-8000-000000000002', 'outcome', '{"status": "failed",
       "error_class": "smtp_recipients_rejected",
       "recipients": [{"address": "r2@example.test", "status": "rejected", "smtp_code": 550}]}'::jsonb),
     jsonb_build_object('id', 'a0000000-0000-4000-8000-000000000003', 'outcome', '{"status": "sent"}'::jsonb),
     jsonb_build_object('id', 'b0000000-0000-4000-8000-000000000001', 'outcome', '{"status": "sent"}'::jsonb)))),
  array['sent', 'failed', 'lost', 'lost'],
  'the owner records her in-flight rows; a row not started and another user''s row are lost'
);
reset role;
select is((select status from public.email_audit_log where id = 'b0000000-0000-4000-8000-000000000001'), 'sending',
  'bob''s row is untouched');
select is((select status from public.email_audit_log where id = 'a0000000-0000-4000-8000-000000000003'), 'queued',
  'the row never started is untouched');
select is((select error_class from public.email_audit_log where id = 'a0000000-0000-4000-8000-000000000002'),
  'smtp_recipients_rejected', 'the failure is recorded with its class');

-- Postponing puts started rows back without counting the attempt, and claimed rows back as they were.
select lives_ok(
  $$select private.postpone_outbox_sends(array['b0000000-0000-4000-8000-000000000001',
                                               'a0000000-0000-4000-8000-000000000003']::uuid[], 'w', 0)$$,
  'the worker postpones a started and a claimed row'
);
select is(
  (select array_agg(status || '/' || attempts || '/' || coalesce(leased_by, '-') order by id)
     from public.email_audit_log
    where id in ('a0000000-0000-4000-8000-000000000003', 'b0000000-0000-4000-8000-000000000001')),
  array['queued/0/-', 'queued/0/-'],
  'both are queued again, unleased, with no attempt counted'
);

select * from finish();
rollback;
