-- The message list's recipient and agent filters run in private.filtered_message_ids, a
-- SECURITY DEFINER function (RLS would keep their operators off the indexes): it must answer
-- with the caller's own rows only, nothing for a caller without a user, and anon cannot call it.
begin;
create extension if not exists pgtap with schema extensions;
set local search_path = public, extensions;

select plan(10);

insert into auth.users (id, email) values
  ('aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'alice@example.test'),
  ('bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb', 'bob@example.test');
insert into public.email_audit_log (id, user_id, from_email, to_addresses, status, agent_context, recipients, created_at)
values
  ('a0000000-0000-4000-8000-000000000001', 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'a@example.test',
   '{Ada@Shared.test}', 'sent', '{"agent":"writer"}', '[{"address":"hidden@shared.test","status":"accepted"}]',
   '2026-06-01T12:00:00Z'),
  ('a0000000-0000-4000-8000-000000000002', 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'a@example.test',
   '{other@alpha.test}', 'failed', '{"agent":"writer"}', null, '2026-06-01T13:00:00Z'),
  ('b0000000-0000-4000-8000-000000000001', 'bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb', 'b@example.test',
   '{ada@shared.test}', 'sent', '{"agent":"writer"}', null, '2026-06-01T12:30:00Z');

set local role authenticated;
set local request.jwt.claims to '{"sub":"aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa","role":"authenticated"}';
select results_eq(
  $$select private.filtered_message_ids('2026-06-01', '2026-06-02', null, null, null, null, 'ADA@shared.test', null,
      null, null, null, 50)$$,
  $$values ('a0000000-0000-4000-8000-000000000001'::uuid)$$,
  'a recipient, any case, finds her row and not bob''s to the same address'
);
select results_eq(
  $$select private.filtered_message_ids('2026-06-01', '2026-06-02', null, null, null, null, 'hidden@shared.test',
      null, null, null, null, 50)$$,
  $$values ('a0000000-0000-4000-8000-000000000001'::uuid)$$,
  'an envelope recipient of its outcome (Bcc) is found too'
);
select results_eq(
  $$select private.filtered_message_ids('2026-06-01', '2026-06-02', null, null, null, null, null, 'writer', null,
      null, null, 50)$$,
  $$values ('a0000000-0000-4000-8000-000000000002'::uuid), ('a0000000-0000-4000-8000-000000000001'::uuid)$$,
  'an agent: her rows newest first, none of bob''s'
);
select results_eq(
  $$select private.filtered_message_ids('2026-06-01', '2026-06-02', null, '{sent}', null, null, null, 'writer', null,
      '2026-06-01T13:00:00Z', 'a0000000-0000-4000-8000-000000000002', 50)$$,
  $$values ('a0000000-0000-4000-8000-000000000001'::uuid)$$,
  'status and the cursor narrow it'
);

set local request.jwt.claims to '{"sub":"bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb","role":"authenticated"}';
select results_eq(
  $$select private.filtered_message_ids('2026-06-01', '2026-06-02', null, null, null, null, 'hidden@shared.test',
      null, null, null, null, 50)$$,
  $$select null::uuid where false$$,
  'bob never finds alice''s rows'
);

set local request.jwt.claims to '{"role":"authenticated"}';
select is(
  (select count(*) from private.filtered_message_ids('2026-06-01', '2026-06-02', null, null, null, null, null,
     'writer', null, null, null, 50))::int,
  0, 'no user, no rows'
);

reset role;
select ok(
  not has_function_privilege('anon',
    'private.filtered_message_ids(timestamptz, timestamptz, uuid, text[], uuid, uuid, text, text, text, timestamptz, uuid, integer)',
    'execute'),
  'anon may not execute it'
);

-- message_contents: the owner reads every one; an agent only those of its own sends.
insert into public.message_contents (audit_id, user_id, client_id, content) values
  ('a0000000-0000-4000-8000-000000000001', 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', null, '{"text":"reset link"}'),
  ('a0000000-0000-4000-8000-000000000002', 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'agent-a', '{"text":"agent a"}');
set local role authenticated;
set local request.jwt.claims to '{"sub":"aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa","role":"authenticated"}';
select is((select count(*)::int from public.message_contents), 2, 'the owner reads every content');
set local request.jwt.claims to
  '{"sub":"aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa","role":"authenticated","client_id":"agent-b"}';
select is((select count(*)::int from public.message_contents), 0, 'another agent reads none');
set local request.jwt.claims to
  '{"sub":"aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa","role":"authenticated","client_id":"agent-a"}';
select results_eq($$select content ->> 'text' from public.message_contents$$, $$values ('agent a')$$,
  'an agent reads the content of its own send only');

select * from finish();
rollback;
