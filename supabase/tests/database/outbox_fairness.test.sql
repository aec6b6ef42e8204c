-- The claim is fair whatever the size of anyone's queue: a user whose 1,000 messages were
-- queued first does not hold back another user's single mail queued after them, nor do 30
-- users' backlogs; owners whose rows are all scheduled for later, leased or paused get nothing
-- and never make a claim come back short.
begin;
create extension if not exists pgtap with schema extensions;
set local search_path = public, extensions;

select plan(14);

insert into auth.users (id, email) values
  ('aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'alice@example.test'),
  ('bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb', 'bob@example.test'),
  ('cccccccc-cccc-4ccc-8ccc-cccccccccccc', 'carol@example.test'),
  ('dddddddd-dddd-4ddd-8ddd-dddddddddddd', 'dave@example.test');
insert into public.user_smtp_configs (id, user_id, name, host, port, from_email) values
  ('a1a1a1a1-0000-4000-8000-000000000001', 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'work', 'smtp.work.example', 465,
   'alice@work.example'),
  ('b1b1b1b1-0000-4000-8000-000000000001', 'bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb', 'bob', 'smtp.bob.example', 465,
   'bob@bob.example'),
  ('c1c1c1c1-0000-4000-8000-000000000001', 'cccccccc-cccc-4ccc-8ccc-cccccccccccc', 'carol', 'smtp.carol.example', 465,
   'carol@carol.example'),
  ('d1d1d1d1-0000-4000-8000-000000000001', 'dddddddd-dddd-4ddd-8ddd-dddddddddddd', 'dave', 'smtp.dave.example', 465,
   'dave@dave.example');

-- Alice's 1,000 messages, due a minute ago; Bob's one, due now.
insert into public.email_audit_log (user_id, config_id, from_email, to_addresses, status, payload)
select 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'a1a1a1a1-0000-4000-8000-000000000001', 'alice@work.example',
       array['r' || i || '@example.test'], 'queued', '{}'
  from generate_series(1, 1000) i;
update public.email_audit_log set next_attempt_at = now() - interval '1 minute'
 where user_id = 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa';
insert into public.email_audit_log (id, user_id, config_id, from_email, to_addresses, status, payload)
values ('b0000000-0000-4000-8000-000000000001', 'bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb',
        'b1b1b1b1-0000-4000-8000-000000000001', 'bob@bob.example', array['b@example.test'], 'queued', '{}');
-- Carol's mail is for tomorrow; Dave's config is paused.
insert into public.email_audit_log (user_id, config_id, from_email, to_addresses, status, payload, scheduled_at)
values ('cccccccc-cccc-4ccc-8ccc-cccccccccccc', 'c1c1c1c1-0000-4000-8000-000000000001', 'carol@carol.example',
        array['c@example.test'], 'scheduled', '{}', now() + interval '1 day');
insert into public.email_audit_log (user_id, config_id, from_email, to_addresses, status, payload)
values ('dddddddd-dddd-4ddd-8ddd-dddddddddddd', 'd1d1d1d1-0000-4000-8000-000000000001', 'dave@dave.example',
        array['d@example.test'], 'queued', '{}');
update public.user_smtp_configs set needs_attention = 'smtp_auth_failed'
 where id = 'd1d1d1d1-0000-4000-8000-000000000001';

select is(
  (select array_agg(distinct user_id::text) from private.claim_outbox('w1', 2, 60)),
  array['aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb'],
  'a claim of two serves Alice and Bob: her 1,000 older messages do not hold his back'
);
select is(
  (select count(*)::int from private.claim_outbox('w2', 25, 60)), 25,
  'the next claim fills up with Alice''s messages (Bob''s is leased, Carol''s not due, Dave''s paused)'
);
select is(
  (select count(*)::int from public.email_audit_log where leased_by = 'w2' and user_id <> 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa'),
  0, 'nobody else''s'
);
select is(
  (select count(*)::int from public.email_audit_log where leased_by = 'w2'
     and next_attempt_at > (select min(next_attempt_at) from public.email_audit_log
                             where user_id = 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa' and leased_by is null)),
  0, 'Alice''s oldest messages first'
);

-- Many owners waiting: a claim of 20 among 41 owners with a row each serves 20 of them.
insert into auth.users (id, email)
select ('e0000000-0000-4000-8000-' || lpad(i::text, 12, '0'))::uuid, 'e' || i || '@example.test'
  from generate_series(1, 40) i;
insert into public.user_smtp_configs (id, user_id, name, host, port, from_email)
select ('e1000000-0000-4000-8000-' || lpad(i::text, 12, '0'))::uuid,
       ('e0000000-0000-4000-8000-' || lpad(i::text, 12, '0'))::uuid, 'e', 'smtp.e.example', 465, 'e@e.example'
  from generate_series(1, 40) i;
insert into public.email_audit_log (user_id, config_id, from_email, to_addresses, status, payload)
select ('e0000000-0000-4000-8000-' || lpad(i::text, 12, '0'))::uuid,
       ('e1000000-0000-4000-8000-' || lpad(i::text, 12, '0'))::uuid, 'e@e.example', array['x@example.test'],
       'queued', '{}'
  from generate_series(1, 40) i, generate_series(1, 3) j;
select is(
  (select count(distinct user_id)::int from private.claim_outbox('w3', 20, 60)), 20,
  'a claim of 20 among 41 owners with claimable rows serves 20 of them, one message each'
);

-- What cannot be claimed never makes a claim come back short: 150 paused owners and 300 owners
-- whose mail is all for tomorrow, around one owner with 100 claimable messages.
delete from public.email_audit_log;
insert into auth.users (id, email)
select ('f0000000-0000-4000-8000-' || lpad(i::text, 12, '0'))::uuid, 'f' || i || '@example.test'
  from generate_series(1, 450) i;
insert into public.user_smtp_configs (id, user_id, name, host, port, from_email, needs_attention)
select ('f1000000-0000-4000-8000-' || lpad(i::text, 12, '0'))::uuid,
       ('f0000000-0000-4000-8000-' || lpad(i::text, 12, '0'))::uuid, 'f', 'smtp.f.example', 465, 'f@f.example',
       case when i <= 150 then 'smtp_auth_failed' end
  from generate_series(1, 450) i;
insert into public.email_audit_log (user_id, config_id, from_email, to_addresses, status, payload, scheduled_at)
select ('f0000000-0000-4000-8000-' || lpad(i::text, 12, '0'))::uuid,
       ('f1000000-0000-4000-8000-' || lpad(i::text, 12, '0'))::uuid, 'f@f.example', array['x@example.test'],
       'queued', '{}', case when i > 150 then now() + interval '1 day' end
  from generate_series(1, 450) i;
insert into public.email_audit_log (user_id, config_id, from_email, to_addresses, status, payload)
select 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'a1a1a1a1-0000-4000-8000-000000000001', 'alice@work.example',
       array['r' || i || '@example.test'], 'queued', '{}'
  from generate_series(1, 100) i;
select is(
  (select array[count(*)::int, count(*) filter (where user_id = 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa')::int]
     from generate_series(1, 4) g, lateral private.claim_outbox('w4-' || g, 25, 60)),
  array[100, 100],
  'four claims of 25 take all 100 of Alice''s messages, whichever owners each claim starts at'
);

-- A newcomer among 30 owners with a backlog: every claim starts at a random owner and deals a
-- turn in that order, so the newcomer's one message does not wait for the backlogs (with the
-- old tie-break by age it waited for 30 x 40 older messages: 48 claims of 25).
delete from public.email_audit_log;
insert into public.email_audit_log (user_id, config_id, from_email, to_addresses, status, payload)
select ('e0000000-0000-4000-8000-' || lpad(i::text, 12, '0'))::uuid,
       ('e1000000-0000-4000-8000-' || lpad(i::text, 12, '0'))::uuid, 'e@e.example', array['x@example.test'],
       'queued', '{}'
  from generate_series(1, 30) i, generate_series(1, 40) j;
update public.email_audit_log set next_attempt_at = now() - interval '1 minute';
insert into public.email_audit_log (id, user_id, config_id, from_email, to_addresses, status, payload)
values ('b0000000-0000-4000-8000-000000000002', 'bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb',
        'b1b1b1b1-0000-4000-8000-000000000001', 'bob@bob.example', array['b@example.test'], 'queued', '{}');
-- Ten claims: the chance that a fair rotation skips Bob in all ten is (6/31)^10, about 1 in 10^7.
select ok(
  (select count(*) from generate_series(1, 10) g, lateral private.claim_outbox('w5-' || g, 25, 60) c
    where c.id = 'b0000000-0000-4000-8000-000000000002') = 1,
  'the newcomer''s message is claimed within the first ten claims of 25, once'
);

-- Owners with nothing due now are passed over cheaply and do not crowd out a newcomer: 900
-- owners with mail for tomorrow, Alice's 1,000 older messages, and Bob's one.
delete from public.email_audit_log;
insert into auth.users (id, email)
select ('90000000-0000-4000-8000-' || lpad(i::text, 12, '0'))::uuid, 'g' || i || '@example.test'
  from generate_series(1, 900) i;
insert into public.user_smtp_configs (id, user_id, name, host, port, from_email)
select ('91000000-0000-4000-8000-' || lpad(i::text, 12, '0'))::uuid,
       ('90000000-0000-4000-8000-' || lpad(i::text, 12, '0'))::uuid, 'g', 'smtp.g.example', 465, 'g@g.example'
  from generate_series(1, 900) i;
insert into public.email_audit_log (user_id, config_id, from_email, to_addresses, status, payload, scheduled_at)
select ('90000000-0000-4000-8000-' || lpad(i::text, 12, '0'))::uuid,
       ('91000000-0000-4000-8000-' || lpad(i::text, 12, '0'))::uuid, 'g@g.example', array['x@example.test'],
       'queued', '{}', now() + interval '1 day'
  from generate_series(1, 900) i;
insert into public.email_audit_log (user_id, config_id, from_email, to_addresses, status, payload)
select 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'a1a1a1a1-0000-4000-8000-000000000001', 'alice@work.example',
       array['r' || i || '@example.test'], 'queued', '{}'
  from generate_series(1, 1000) i;
update public.email_audit_log set next_attempt_at = now() - interval '1 minute'
 where user_id = 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa';
insert into public.email_audit_log (id, user_id, config_id, from_email, to_addresses, status, payload)
values ('b0000000-0000-4000-8000-000000000003', 'bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb',
        'b1b1b1b1-0000-4000-8000-000000000001', 'bob@bob.example', array['b@example.test'], 'queued', '{}');
select is(
  (select count(*)::int from private.claim_outbox('w6', 25, 60) where id = 'b0000000-0000-4000-8000-000000000003'), 1,
  'among 900 owners with mail for tomorrow, the first claim finds the newcomer'
);

-- A paused config's waiting rows are out of the claim's reach until it is fixed.
delete from public.email_audit_log;
insert into public.email_audit_log (user_id, config_id, from_email, to_addresses, status, payload)
select 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'a1a1a1a1-0000-4000-8000-000000000001', 'alice@work.example',
       array['p' || i || '@example.test'], 'queued', '{}'
  from generate_series(1, 3) i;
insert into public.email_audit_log (user_id, config_id, from_email, to_addresses, status, payload, scheduled_at)
values ('aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'a1a1a1a1-0000-4000-8000-000000000001', 'alice@work.example',
        array['later@example.test'], 'queued', '{}', now() + interval '2 days');
set local role authenticated;
set local request.jwt.claims to '{"sub":"aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa","role":"authenticated"}';
select private.pause_config_queue('a1a1a1a1-0000-4000-8000-000000000001', 'smtp_auth_failed');
insert into public.email_audit_log (config_id, from_email, to_addresses, status, payload)
values ('a1a1a1a1-0000-4000-8000-000000000001', 'alice@work.example', array['new@example.test'], 'queued', '{}');
reset role;
select is(
  (select count(*)::int from public.email_audit_log
    where config_id = 'a1a1a1a1-0000-4000-8000-000000000001' and next_attempt_at = 'infinity'),
  5, 'pausing moves the config''s waiting rows out of reach, and rows queued meanwhile start there'
);
select is((select count(*)::int from private.claim_outbox('w7', 25, 60)), 0, 'nothing of them is claimed');
set local role authenticated;
select private.set_smtp_config_password('a1a1a1a1-0000-4000-8000-000000000001', 'fixed');
reset role;
select is(
  (select array[count(*) filter (where next_attempt_at <= now()), count(*) filter (where next_attempt_at > now() + interval '1 day')]::int[]
     from public.email_audit_log where config_id = 'a1a1a1a1-0000-4000-8000-000000000001'),
  array[4, 1], 'a new password resumes the queue: due at once, the scheduled one at its time'
);
select is((select count(*)::int from private.claim_outbox('w8', 25, 60)), 4, 'and they are claimed again');

select throws_ok($$select * from private.claim_outbox('w', null, 60)$$, '22023', null, 'a claim needs a limit');
select throws_ok($$select * from private.claim_outbox('w', 25, 0)$$, '22023', null, 'and a positive lease');

select * from finish();
rollback;
