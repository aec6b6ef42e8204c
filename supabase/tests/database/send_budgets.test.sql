-- private.reserve_send_slots: exact per-config limits over any rolling window, O(1) per send.
begin;
create extension if not exists pgtap with schema extensions;
set local search_path = public, extensions;

select plan(14);

insert into auth.users (id, email) values
  ('aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'alice@example.test'),
  ('bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb', 'bob@example.test');
insert into public.user_smtp_configs (id, user_id, name, host, port, from_email, max_per_minute, max_per_day)
values ('a1a1a1a1-0000-4000-8000-000000000001', 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'work', 'smtp.work.example',
        465, 'alice@work.example', 3, 5);

select ok(
  (select bool_and(relrowsecurity) from pg_catalog.pg_class
    where oid in ('private.send_budgets'::regclass, 'private.send_slots'::regclass)),
  'row level security is enabled on the budget tables'
);

set local role authenticated;
set local request.jwt.claims to '{"sub":"aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa","role":"authenticated"}';

select lives_ok(
  $$select private.reserve_send_slots('a1a1a1a1-0000-4000-8000-000000000001'),
           private.reserve_send_slots('a1a1a1a1-0000-4000-8000-000000000001', 2)$$,
  'three sends fit a limit of three per minute'
);
select throws_like(
  $$select private.reserve_send_slots('a1a1a1a1-0000-4000-8000-000000000001')$$,
  '%"code" : "rate_limited"%',
  'a fourth within the minute is refused'
);
select throws_ok($$select * from private.send_slots$$, '42501', null, 'users cannot read the ring');

reset role;
-- The oldest send leaves the rolling minute; the refused attempt left no trace.
update private.send_slots set used_at = used_at - interval '61 seconds' where per = 'minute' and slot = 0;
select is((select seq::int from private.send_budgets where per = 'minute'), 3, 'a refusal writes nothing');

set local role authenticated;
select lives_ok(
  $$select private.reserve_send_slots('a1a1a1a1-0000-4000-8000-000000000001')$$,
  'one frees up exactly when the oldest of the last three is a minute old'
);
select throws_like(
  $$select private.reserve_send_slots('a1a1a1a1-0000-4000-8000-000000000001')$$,
  '%"code" : "rate_limited"%',
  'and only one'
);

reset role;
update private.send_slots set used_at = used_at - interval '2 minutes' where per = 'minute';
set local role authenticated;
select throws_like(
  $$select private.reserve_send_slots('a1a1a1a1-0000-4000-8000-000000000001', 2)$$,
  '%allows 5 messages per day%',
  'the day''s limit of five holds when the minute''s does not'
);
select throws_like(
  $$select private.reserve_send_slots('a1a1a1a1-0000-4000-8000-000000000001', 4)$$,
  '%"code" : "rate_limited"%',
  'more at once than the limit never fits'
);

-- A lower limit keeps the most recent sends.
reset role;
update public.user_smtp_configs set max_per_day = 100, max_per_minute = 2 where id = 'a1a1a1a1-0000-4000-8000-000000000001';
update private.send_slots set used_at = now() where per = 'minute' and slot = 0;
set local role authenticated;
select lives_ok(
  $$select private.reserve_send_slots('a1a1a1a1-0000-4000-8000-000000000001')$$,
  'with one send in the last minute, a lowered limit of two allows one more'
);
select throws_like(
  $$select private.reserve_send_slots('a1a1a1a1-0000-4000-8000-000000000001')$$,
  '%allows 2 messages per minute%',
  'and then refuses: the lowered limit counts the sends already made'
);
reset role;
select is((select size from private.send_budgets where per = 'minute'), 2, 'the ring is laid out for the new limit');

set local role authenticated;
set local request.jwt.claims to '{"sub":"bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb","role":"authenticated"}';
select throws_ok(
  $$select private.reserve_send_slots('a1a1a1a1-0000-4000-8000-000000000001')$$,
  'P0002', 'smtp config not found',
  'another user cannot spend the owner''s budget'
);

set local role anon;
set local request.jwt.claims to '{"role":"anon"}';
select throws_ok(
  $$select private.reserve_send_slots('a1a1a1a1-0000-4000-8000-000000000001')$$,
  '42501', null, 'anon cannot reserve'
);

select * from finish();
rollback;
