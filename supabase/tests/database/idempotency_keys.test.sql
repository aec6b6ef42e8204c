-- private.idempotency_keys: per user, fingerprinted, replayed once done; reachable only
-- through the owner-checked functions.
begin;
create extension if not exists pgtap with schema extensions;
set local search_path = public, extensions;

select plan(12);

insert into auth.users (id, email) values
  ('aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'alice@example.test'),
  ('bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb', 'bob@example.test');

select ok(
  (select relrowsecurity from pg_catalog.pg_class where oid = 'private.idempotency_keys'::regclass),
  'row level security is enabled on idempotency_keys'
);

set local role authenticated;
set local request.jwt.claims to '{"sub":"aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa","role":"authenticated"}';

select results_eq($$select outcome from private.begin_idempotent_request('k1', 'hash-1')$$,
  array['new'], 'a new key is taken');
select results_eq($$select outcome from private.begin_idempotent_request('k1', 'hash-1')$$,
  array['in_progress'], 'the same key while in progress');
select results_eq($$select outcome from private.begin_idempotent_request('k1', 'hash-2')$$,
  array['mismatch'], 'the same key with another request');
select lives_ok($$select private.finish_idempotent_request('k1', 200, '{"id": "x"}')$$, 'the response is stored');
select results_eq(
  $$select outcome, response_status, response_body from private.begin_idempotent_request('k1', 'hash-1')$$,
  $$values ('replay'::text, 200, '{"id": "x"}'::jsonb)$$,
  'then replayed'
);
select throws_ok($$select * from private.idempotency_keys$$, '42501', null, 'users cannot read the table');
select throws_ok($$select private.begin_idempotent_request('has space', 'h')$$, '23514', null, 'keys have a shape');

set local request.jwt.claims to '{"sub":"bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb","role":"authenticated"}';
select results_eq($$select outcome from private.begin_idempotent_request('k1', 'hash-9')$$,
  array['new'], 'another user''s keys are their own');
select lives_ok($$select private.release_idempotent_request('k1')$$, 'bob releases his key');

reset role;
select is(
  (select count(*)::int from private.idempotency_keys where key = 'k1'),
  1,
  'bob''s release did not touch alice''s key'
);

set local role anon;
set local request.jwt.claims to '{"role":"anon"}';
select throws_ok($$select private.begin_idempotent_request('k2', 'h')$$, '42501', null, 'anon cannot take keys');

select * from finish();
rollback;
