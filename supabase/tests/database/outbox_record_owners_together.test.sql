-- private.record_outbox_attempts_as_owners records several owners' outcomes in one statement,
-- each owner's as that owner: an entry can write only its own owner's rows, no claims are left
-- set afterwards, and no user may call it.
begin;
create extension if not exists pgtap with schema extensions;
set local search_path = public, extensions;

select plan(7);

insert into auth.users (id, email) values
  ('aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'alice@example.test'),
  ('bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb', 'bob@example.test');
insert into public.user_smtp_configs (id, user_id, name, host, port, from_email) values
  ('a1a1a1a1-0000-4000-8000-000000000001', 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'work', 'smtp.a.example', 465,
   'alice@a.example'),
  ('b1b1b1b1-0000-4000-8000-000000000001', 'bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb', 'work', 'smtp.b.example', 465,
   'bob@b.example');
insert into public.email_audit_log (id, user_id, config_id, from_email, to_addresses, status, payload) values
  ('a0000000-0000-4000-8000-000000000001', 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa',
   'a1a1a1a1-0000-4000-8000-000000000001', 'alice@a.example', array['q@example.test'], 'queued', '{}'),
  ('b0000000-0000-4000-8000-000000000001', 'bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb',
   'b1b1b1b1-0000-4000-8000-000000000001', 'bob@b.example', array['q@example.test'], 'queued', '{}'),
  ('b0000000-0000-4000-8000-000000000002', 'bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb',
   'b1b1b1b1-0000-4000-8000-000000000001', 'bob@b.example', array['q@example.test'], 'queued', '{}');
select is((select count(*)::int from private.claim_outbox('w', 10, 60)), 3, 'three rows claimed');
select is((select count(*)::int from private.start_outbox_sends(array(select id from public.email_audit_log), 'w', 60)),
  3, 'and started');

-- Alice's entry names one of Bob's rows as well: it is not hers, so it is lost to her entry.
select is(
  (select array_agg(r.id::text || '=' || r.status order by r.id) from private.record_outbox_attempts_as_owners(
     '[{"owner": "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa", "attempts": [
         {"id": "a0000000-0000-4000-8000-000000000001", "outcome": {"status": "sent",
           "recipients": [{"address": "q@example.test", "status": "accepted", "smtp_code": 250}]}},
         {"id": "b0000000-0000-4000-8000-000000000002", "outcome": {"status": "sent",
           "recipients": [{"address": "q@example.test", "status": "accepted", "smtp_code": 250}]}}]},
       {"owner": "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb", "attempts": [
         {"id": "b0000000-0000-4000-8000-000000000001", "outcome": {"status": "failed", "error_class": "x",
           "recipients": [{"address": "q@example.test", "status": "rejected", "smtp_code": 550}]}}]}]'::jsonb) r),
  array['a0000000-0000-4000-8000-000000000001=sent', 'b0000000-0000-4000-8000-000000000001=failed',
        'b0000000-0000-4000-8000-000000000002=lost'],
  'each owner''s rows recorded as that owner; another owner''s row named in an entry is not written'
);
select is(
  (select array_agg(status order by id) from public.email_audit_log),
  array['sent', 'failed', 'sending'],
  'Bob''s second row was still in flight'
);
-- One owner's recording that fails leaves the others' standing: its rows say `unrecorded`.
select is(
  (select array_agg(r.id::text || '=' || r.status order by r.id) from private.record_outbox_attempts_as_owners(
     '[{"owner": "not an owner", "attempts": [{"id": "b0000000-0000-4000-8000-000000000002", "outcome": {}}]},
       {"owner": "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb", "attempts": [
         {"id": "b0000000-0000-4000-8000-000000000002", "outcome": {"status": "sent",
           "recipients": [{"address": "q@example.test", "status": "accepted", "smtp_code": 250}]}}]}]'::jsonb) r),
  array['b0000000-0000-4000-8000-000000000002=unrecorded', 'b0000000-0000-4000-8000-000000000002=sent'],
  'a failed owner''s rows are unrecorded; the next owner''s are recorded'
);
select is(
  coalesce(nullif(current_setting('request.jwt.claims', true), ''), 'none'),
  'none',
  'no owner''s claims are left set'
);

set local role authenticated;
set local request.jwt.claims to '{"sub":"aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa","role":"authenticated"}';
select throws_ok(
  $$select * from private.record_outbox_attempts_as_owners('[]')$$,
  '42501', null, 'a user cannot call it (nor wear another owner''s claims through it)'
);
reset role;

select * from finish();
rollback;
