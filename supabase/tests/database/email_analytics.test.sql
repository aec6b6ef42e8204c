-- email-analytics' SQL runs as the caller: private.email_analytics and the range helper are
-- SECURITY INVOKER, so RLS on email_audit_log decides what they count; anon cannot call them.
begin;
create extension if not exists pgtap with schema extensions;
set local search_path = public, extensions;

select plan(8);

insert into auth.users (id, email) values
  ('aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'alice@example.test'),
  ('bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb', 'bob@example.test');
insert into public.email_audit_log (user_id, from_email, to_addresses, status, created_at) values
  ('aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'a@example.test', '{x@alpha.test}', 'sent', '2026-06-01T12:00:00Z'),
  ('aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'a@example.test', '{x@alpha.test}', 'failed', '2026-06-01T13:00:00Z'),
  ('bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb', 'b@example.test', '{x@bob.test}', 'sent', '2026-06-01T12:00:00Z'),
  ('bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb', 'b@example.test', '{x@bob.test}', 'sent', '2026-06-01T12:30:00Z'),
  ('bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb', 'b@example.test', '{x@bob.test}', 'sent', '2026-06-01T12:40:00Z');

select is(
  (select prosecdef from pg_catalog.pg_proc where oid = 'private.email_analytics'::regproc),
  false, 'email_analytics is security invoker'
);

set local role authenticated;
set local request.jwt.claims to '{"sub":"aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa","role":"authenticated"}';
select is(
  (private.email_analytics('2026-06-01', '2026-06-02', 'day', 'UTC', '{recipient_domain}') ->> 'total')::int,
  2, 'alice counts her two rows, not bob''s three'
);
select is(
  (private.email_analytics('2026-06-01', '2026-06-02', 'day', 'UTC', '{recipient_domain}')
     -> 'breakdowns' -> 'recipient_domain' -> 0 ->> 'key'),
  'alpha.test', 'her breakdowns hold only her domains'
);
select is(
  (select json_array_length(private.email_analytics('2026-06-01', '2026-06-02', 'day', 'UTC', '{recipient_domain}')
     -> 'breakdowns' -> 'recipient_domain')),
  1, 'and nothing of bob''s'
);
select throws_ok(
  $$select private.email_analytics('2026-06-01', '2026-06-02', 'week', 'UTC', '{}')$$,
  'PGRST', null, 'an unknown interval is refused'
);
select throws_ok(
  $$select * from private.analytics_range('2026-06-02', '2026-06-01', 'UTC')$$,
  'PGRST', null, 'from after to is refused'
);

set local request.jwt.claims to '{"sub":"bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb","role":"authenticated"}';
select is(
  (private.email_analytics('2026-06-01', '2026-06-02', 'day', 'UTC', '{}') -> 'totals' ->> 'sent')::int,
  3, 'bob counts his own three'
);

set local role anon;
select throws_ok(
  $$select private.email_analytics('2026-06-01', '2026-06-02', 'day', 'UTC', '{}')$$,
  '42501', null, 'anon cannot call it'
);

select * from finish();
rollback;
