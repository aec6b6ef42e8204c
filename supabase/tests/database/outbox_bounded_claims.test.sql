-- One user's rows cannot stop the outbox for everyone: claims are bounded by payload bytes,
-- a row whose worker died holding it is claimed alone and set aside at the second death (the
-- owner retries or cancels it), servers that push back back their config off, a worker's busy
-- configs are passed over, and a queued row always records the config it goes through.
begin;
create extension if not exists pgtap with schema extensions;
set local search_path = public, extensions;

select plan(27);

insert into auth.users (id, email) values
  ('aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'alice@example.test'),
  ('bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb', 'bob@example.test');
insert into public.user_smtp_configs (id, user_id, name, host, port, from_email, is_default) values
  ('a1a1a1a1-0000-4000-8000-000000000001', 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'work', 'smtp.work.example', 465,
   'alice@work.example', true),
  ('a1a1a1a1-0000-4000-8000-000000000002', 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'home', 'smtp.home.example', 465,
   'alice@home.example', false),
  ('b1b1b1b1-0000-4000-8000-000000000001', 'bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb', 'bob', 'smtp.bob.example', 465,
   'bob@bob.example', true);

-- Bytes ---------------------------------------------------------------------------------------
-- Alice's three 1 MB rows through "work", due a minute ago.
insert into public.email_audit_log (id, user_id, config_id, from_email, to_addresses, status, payload)
select ('a0000000-0000-4000-8000-00000000000' || i)::uuid, 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa',
       'a1a1a1a1-0000-4000-8000-000000000001', 'alice@work.example', array['r@example.test'], 'queued',
       jsonb_build_object('kind', 'request', 'request', jsonb_build_object('text', repeat(md5(i::text), 32768)))
  from generate_series(1, 3) i;
update public.email_audit_log set next_attempt_at = now() - interval '1 minute'
 where user_id = 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa';

select ok(
  (select bool_and(payload_bytes > 1000000) from public.email_audit_log where user_id = 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa'),
  'a queued row carries its payload''s size'
);
select is(
  (select count(*)::int from private.claim_outbox('w1', 25, 60, 1500000)), 2,
  'a claim keeps its first row and, besides it, what fits its byte bound: two 1 MB rows of three under 1.5 MB'
);
select is(
  (select count(*)::int from private.claim_outbox('w2', 25, 60, 100)), 1,
  'the first row is taken even when it alone is over the bound (it goes, alone)'
);
select is(
  (select count(*)::int from private.claim_outbox('w3', 25, 60)), 0,
  'nothing is left for a third worker'
);
select throws_ok(
  $$ select private.claim_outbox('w4', 25, 60, 0) $$, '22023', null, 'a byte bound must be positive'
);

-- A worker that ends its run gives back what it did not start --------------------------------
select is(private.release_outbox_leases('w1'), 2, 'release_outbox_leases frees the rows the worker still holds');
select private.release_outbox_leases('w2');
select private.release_outbox_leases('w3');
select ok(
  (select bool_and(lease_until is null and leased_by is null and first_attempt_at is null and lease_losses = 0)
     from public.email_audit_log where user_id = 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa'),
  'released rows are as before their claim (no Date kept, no loss counted)'
);

-- Suspects and set-aside rows -----------------------------------------------------------------
-- w1 claims everything and dies: its leases run out.
select is((select count(*)::int from private.claim_outbox('w1', 25, 60)), 3, 'w1 claims all three');
update public.email_audit_log set lease_until = now() - interval '1 second' where leased_by = 'w1';
select is(
  (select count(*)::int from private.claim_outbox('w5', 25, 60)), 0,
  'a lease that ran out is not claimed before the sweep has counted it'
);
select private.sweep_outbox();
select is(
  (select array_agg(lease_losses::int order by id) from public.email_audit_log where user_id = 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa'),
  array[1, 1, 1], 'the sweep counts one loss for each row the dead worker held, and frees them'
);
-- Bob's row comes in meanwhile.
insert into public.email_audit_log (id, user_id, config_id, from_email, to_addresses, status, payload)
values ('b0000000-0000-4000-8000-000000000001', 'bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb',
        'b1b1b1b1-0000-4000-8000-000000000001', 'bob@bob.example', array['b@example.test'], 'queued', '{}');
select is(
  (select count(*)::int from private.claim_outbox('w6', 25, 60) where user_id = 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa'),
  1, 'a suspect is claimed alone'
);
select is(
  (select count(*)::int from public.email_audit_log where leased_by = 'w6'), 1,
  'and nothing else with it, not even another user''s row'
);
-- w6 dies too: that row is set aside at its second loss.
update public.email_audit_log set lease_until = now() - interval '1 second' where leased_by = 'w6';
select private.sweep_outbox();
select ok(
  (select status = 'queued' and error_class = 'worker_crashed' and next_attempt_at = 'infinity' and not retryable
     from public.email_audit_log where lease_losses = 2),
  'a row lost twice is set aside for its owner: queued, worker_crashed, not due'
);
select is(
  (select count(*)::int from public.email_audit_log where error_class = 'worker_crashed'), 1,
  'only that row: the others it was claimed with once are not charged with its second loss'
);
select is(
  (select array_agg(lease_losses::int) from private.claim_outbox('w7', 25, 60, 100000000)),
  array[1],
  'the next claim is one of the other suspects, alone; the set-aside row is not claimed'
);
select private.release_outbox_leases('w7');

-- The owner retries or cancels it; nobody else can.
set local role authenticated;
set local request.jwt.claims to '{"sub":"bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb","role":"authenticated"}';
select is(
  (select count(*)::int from private.retry_set_aside_messages(
     array(select id from public.email_audit_log where error_class = 'worker_crashed'))),
  0, 'another user cannot retry it (nor see it)'
);
set local request.jwt.claims to '{"sub":"aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa","role":"authenticated"}';
select is(
  (select count(*)::int from private.retry_set_aside_messages(
     array(select id from public.email_audit_log where error_class = 'worker_crashed'))),
  1, 'its owner retries it'
);
reset role;
select ok(
  (select bool_and(lease_losses = 1 and error_class is null and next_attempt_at <= now())
     from public.email_audit_log where user_id = 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa'),
  'a retried row is due again, still a suspect (claimed alone)'
);
select throws_ok(
  $$ set local role authenticated; select private.release_outbox_leases('w1') $$, '42501', null,
  'users cannot release workers'' leases'
);
reset role;

-- Backoff and busy configs --------------------------------------------------------------------
update public.email_audit_log set lease_losses = 0 where user_id = 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa';
select is(
  (select count(*)::int from private.claim_outbox('w8', 25, 60, 100000000, array['a1a1a1a1-0000-4000-8000-000000000001'::uuid])),
  1, 'a config the worker names busy is passed over (only Bob''s row is claimed)'
);
select private.release_outbox_leases('w8');
set local role authenticated;
set local request.jwt.claims to '{"sub":"bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb","role":"authenticated"}';
select is(private.back_off_config('a1a1a1a1-0000-4000-8000-000000000001', 60, 'not mine'), null::timestamptz,
  'a user cannot back off another user''s config');
set local request.jwt.claims to '{"sub":"aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa","role":"authenticated"}';
select ok(private.back_off_config('a1a1a1a1-0000-4000-8000-000000000001', 60, 'smtp_service_unavailable: 421 busy') > now(),
  'the owner (the worker acting as the owner) backs a config off');
reset role;
select is(
  (select count(*)::int from private.claim_outbox('w9', 25, 60, 100000000)), 1,
  'a backed-off config''s rows wait (only Bob''s row is claimed)'
);
select private.release_outbox_leases('w9');

-- A queued row records the config it goes through ----------------------------------------------
set local role authenticated;
set local request.jwt.claims to '{"sub":"aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa","role":"authenticated"}';
insert into public.email_audit_log (id, from_email, to_addresses, status, payload)
values ('a0000000-0000-4000-8000-0000000000f1', 'ceo@bank.example', array['decoy@example.test'], 'queued',
        '{"kind":"request","request":{"to":"x@example.test","text":"hi"}}');
reset role;
select is(
  (select array[config_id::text, from_email, message_id] from public.email_audit_log
    where id = 'a0000000-0000-4000-8000-0000000000f1'),
  array['a1a1a1a1-0000-4000-8000-000000000001', 'alice@work.example',
        '<a0000000-0000-4000-8000-0000000000f1@work.example>'],
  'a row inserted without a config gets the owner''s default: its sender and Message-ID domain, not the inserted ones'
);

-- Payloads agree with the API -----------------------------------------------------------------
set local role authenticated;
set local request.jwt.claims to '{"sub":"aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa","role":"authenticated"}';
select throws_ok(
  $$ insert into public.email_audit_log (from_email, to_addresses, status, payload)
     values ('x@work.example', array['x@example.test'], 'queued',
             jsonb_build_object('kind', 'request', 'request', jsonb_build_object('text', repeat('x', 15728640)))) $$,
  '23514', null, 'a payload over 15 MiB (send-email''s body limit) is refused'
);
reset role;

-- The Date a message is built with --------------------------------------------------------------
select is(
  (select count(*)::int from private.claim_outbox('w10', 1, 60) where first_attempt_at is not null), 1,
  'a claim stamps the Date of the first attempt'
);
select private.start_outbox_sends(array(select id from public.email_audit_log where leased_by = 'w10'), 'w10', 60);
select private.postpone_outbox_sends(array(select id from public.email_audit_log where leased_by = 'w10'), 'w10', 0);
select is(
  (select count(*)::int from public.email_audit_log where first_attempt_at is not null), 0,
  'a row put back before any attempt counted loses it (its Date is set when it is first really sent)'
);

select * from finish();
rollback;
