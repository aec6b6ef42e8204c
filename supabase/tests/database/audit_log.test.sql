-- public.email_audit_log: users record their own sends in flight and read their own rows,
-- never rewrite them; outcomes go through private.record_email_outcome, once.
begin;
create extension if not exists pgtap with schema extensions;
set local search_path = public, extensions;

select plan(44);

-- Fixtures (as the migration role) ---------------------------------------------------------
insert into auth.users (id, email) values
  ('aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'alice@example.test'),
  ('bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb', 'bob@example.test');

insert into public.user_smtp_configs (id, user_id, name, host, port, from_email)
values
  ('a1a1a1a1-0000-4000-8000-000000000001', 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa',
   'work', 'smtp.work.example', 465, 'alice@work.example'),
  ('b1b1b1b1-0000-4000-8000-000000000001', 'bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb',
   'work', 'smtp.bob.example', 587, 'bob@bob.example');

-- One of Bob's sends, still in flight.
insert into public.email_audit_log (id, user_id, config_id, from_email, to_addresses, subject, status)
values
  ('b0000000-0000-4000-8000-0000000000e1', 'bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb',
   'b1b1b1b1-0000-4000-8000-000000000001', 'bob@bob.example', array['carol@example.test'],
   'Bob''s send', 'sending');

-- Shape -----------------------------------------------------------------------------------
select ok(
  (select relrowsecurity from pg_catalog.pg_class where oid = 'public.email_audit_log'::regclass),
  'row level security is enabled on email_audit_log'
);

select policies_are(
  'public', 'email_audit_log',
  array['owner can read own audit rows', 'owner can record own sends in flight'],
  'email_audit_log has only a read and an insert policy'
);

select table_privs_are(
  'public', 'email_audit_log', 'anon', array[]::name[],
  'anon has no privileges on email_audit_log'
);

select table_privs_are(
  'public', 'email_audit_log', 'authenticated', array['SELECT'],
  'authenticated can select audit rows; inserts are granted per column'
);

select column_privs_are(
  'public', 'email_audit_log', 'status', 'authenticated', array['SELECT', 'INSERT'],
  'authenticated may set the status of a new audit row'
);

select column_privs_are(
  'public', 'email_audit_log', 'completed_at', 'authenticated', array['SELECT'],
  'authenticated may not choose when a send completed'
);

select column_privs_are(
  'public', 'email_audit_log', 'created_at', 'authenticated', array['SELECT'],
  'authenticated may not backdate an audit row'
);

-- Alice records her sends -------------------------------------------------------------------
set local role authenticated;
set local request.jwt.claims to '{"sub":"aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa","role":"authenticated"}';

select lives_ok(
  $$insert into public.email_audit_log (id, config_id, from_email, to_addresses, subject, status)
    values ('a0000000-0000-4000-8000-0000000000e1', 'a1a1a1a1-0000-4000-8000-000000000001',
            'alice@work.example', array['dave@example.test'], 'Quarterly report', 'sending'),
           ('a0000000-0000-4000-8000-0000000000e2', 'a1a1a1a1-0000-4000-8000-000000000001',
            'alice@work.example', array['erin@example.test'], 'Follow-up', 'sending')$$,
  'owner can record own sends in flight'
);

select results_eq(
  $$select user_id, status from public.email_audit_log where id = 'a0000000-0000-4000-8000-0000000000e1'$$,
  $$values ('aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa'::uuid, 'sending')$$,
  'an audit row belongs to the caller (user_id defaults to auth.uid())'
);

select lives_ok(
  $$insert into public.email_audit_log (user_id, from_email, status)
    values ('aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'alice@work.example', 'queued')$$,
  'owner can record a queued send naming themselves explicitly'
);

select throws_ok(
  $$insert into public.email_audit_log (user_id, from_email, status)
    values ('bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb', 'alice@work.example', 'sending')$$,
  '42501', 'new row violates row-level security policy for table "email_audit_log"',
  'owner cannot record a send for another user'
);

select throws_ok(
  $$insert into public.email_audit_log (from_email, status, message_id)
    values ('alice@work.example', 'sent', '<forged@work.example>')$$,
  '42501', 'permission denied for table email_audit_log',
  'owner cannot insert a row that claims the send already succeeded'
);

select throws_ok(
  $$insert into public.email_audit_log (from_email, status)
    values ('alice@work.example', 'failed')$$,
  '42501', 'new row violates row-level security policy for table "email_audit_log"',
  'owner cannot insert a row with a final status'
);

select throws_ok(
  $$insert into public.email_audit_log (from_email, status, completed_at)
    values ('alice@work.example', 'sending', now())$$,
  '42501', 'permission denied for table email_audit_log',
  'owner cannot insert an in-flight row that is already completed'
);

select throws_ok(
  $$insert into public.email_audit_log (from_email, status, message_id)
    values ('alice@work.example', 'sending', '<forged@work.example>')$$,
  '42501', 'permission denied for table email_audit_log',
  'owner cannot insert an in-flight row with a message id'
);

select throws_ok(
  $$update public.email_audit_log set status = 'sent'
     where id = 'a0000000-0000-4000-8000-0000000000e1'$$,
  '42501', 'permission denied for table email_audit_log',
  'owner cannot update own audit rows'
);

select throws_ok(
  $$delete from public.email_audit_log where id = 'a0000000-0000-4000-8000-0000000000e1'$$,
  '42501', 'permission denied for table email_audit_log',
  'owner cannot delete own audit rows'
);

select throws_ok(
  $$select private.record_email_outcome('a0000000-0000-4000-8000-0000000000e1', '{"status": "queued"}')$$,
  '22023', 'outcome status must be sent, deferred, failed or unknown',
  'record_email_outcome rejects a non-terminal status'
);

select throws_ok(
  $$select private.record_email_outcome('a0000000-0000-4000-8000-0000000000e1', '{"status": "sending"}')$$,
  '22023', 'outcome status must be sent, deferred, failed or unknown',
  'record_email_outcome rejects "sending" as an outcome'
);

select throws_ok(
  $$select private.record_email_outcome('b0000000-0000-4000-8000-0000000000e1', '{"status": "failed"}')$$,
  'P0002', 'no in-flight audit row b0000000-0000-4000-8000-0000000000e1 for this user',
  'owner cannot record the outcome of another user''s send'
);

select lives_ok(
  $$select private.record_email_outcome('a0000000-0000-4000-8000-0000000000e1', '{
      "status": "sent", "message_id": "<m1@work.example>", "smtp_response_code": 250,
      "recipients": [
        {"address": "dave@example.test", "status": "accepted", "smtp_code": 250, "enhanced_code": "2.0.0",
         "response": "250 2.0.0 Ok"},
        {"address": "gil@example.test", "status": "deferred", "smtp_code": 450, "enhanced_code": "4.2.0",
         "response": "450 4.2.0 Greylisted"}
      ]}')$$,
  'owner records the outcome of own send'
);

select results_eq(
  $$select status, message_id, accepted, rejected, smtp_response_code,
           completed_at is not null, duration_ms is not null
      from public.email_audit_log where id = 'a0000000-0000-4000-8000-0000000000e1'$$,
  $$values ('sent', '<m1@work.example>', array['dave@example.test'], '{}'::text[], 250, true, true)$$,
  'the outcome is stored on the row'
);

select results_eq(
  $$select deferred, recipients -> 1 ->> 'response', jsonb_array_length(recipients)
      from public.email_audit_log where id = 'a0000000-0000-4000-8000-0000000000e1'$$,
  $$values (array['gil@example.test'], '450 4.2.0 Greylisted', 2)$$,
  'per-recipient outcomes are stored; a deferred recipient is listed as deferred, not rejected'
);

select throws_ok(
  $$select private.record_email_outcome('a0000000-0000-4000-8000-0000000000e2',
      '{"status": "sent", "recipients": [{"address": "x@example.test", "status": "maybe"}]}')$$,
  '22023', 'recipients must be a list of {address, status}',
  'a recipient status outside the model is refused'
);

select throws_ok(
  $$select private.record_email_outcome('a0000000-0000-4000-8000-0000000000e1', '{"status": "failed"}')$$,
  'P0002', 'no in-flight audit row a0000000-0000-4000-8000-0000000000e1 for this user',
  'an outcome is recorded only once'
);

select results_eq(
  $$select status, message_id from public.email_audit_log
     where id = 'a0000000-0000-4000-8000-0000000000e1'$$,
  $$values ('sent', '<m1@work.example>')$$,
  'a finished row is unchanged by a second outcome'
);

select is_empty(
  $$select id from public.email_audit_log where user_id <> 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa'$$,
  'owner sees no other user''s audit rows'
);

select is(
  (select count(*)::int from public.email_audit_log),
  3,
  'owner sees all of their own audit rows'
);

-- Bob ---------------------------------------------------------------------------------------
set local request.jwt.claims to '{"sub":"bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb","role":"authenticated"}';

select results_eq(
  $$select id from public.email_audit_log$$,
  $$values ('b0000000-0000-4000-8000-0000000000e1'::uuid)$$,
  'another user sees only their own audit rows'
);

-- Known migration bug (reported, deliberately left failing): the insert policy checks
-- user_id and status but not config_id, and the foreign key check bypasses RLS, so a
-- user can file audit rows against another user's config (and, via 23503 vs success,
-- probe which config ids exist).
select throws_ok(
  $$insert into public.email_audit_log (config_id, from_email, status)
    values ('a1a1a1a1-0000-4000-8000-000000000001', 'bob@bob.example', 'sending')$$,
  '42501', 'new row violates row-level security policy for table "email_audit_log"',
  'another user cannot record a send through the owner''s config'
);

select throws_ok(
  $$select private.record_email_outcome('a0000000-0000-4000-8000-0000000000e2', '{"status": "failed"}')$$,
  'P0002', 'no in-flight audit row a0000000-0000-4000-8000-0000000000e2 for this user',
  'another user cannot record the outcome of the owner''s in-flight send'
);

-- The owner's row is still in flight, and the owner can still finish it.
set local request.jwt.claims to '{"sub":"aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa","role":"authenticated"}';

select results_eq(
  $$select status, error_class from public.email_audit_log
     where id = 'a0000000-0000-4000-8000-0000000000e2'$$,
  $$values ('sending', null::text)$$,
  'the other user''s attempt left the owner''s row in flight'
);

select lives_ok(
  $$select private.record_email_outcome('a0000000-0000-4000-8000-0000000000e2', '{
      "status": "failed", "message_id": "<m2@work.example>", "error_class": "smtp_recipients_rejected",
      "error_message": "recipient rejected", "smtp_response_code": 550, "retryable": false,
      "recipients": [{"address": "erin@example.test", "status": "rejected", "smtp_code": 550}]}')$$,
  'owner records a failed outcome'
);

select results_eq(
  $$select status, rejected, error_class, error_message, smtp_response_code
      from public.email_audit_log where id = 'a0000000-0000-4000-8000-0000000000e2'$$,
  $$values ('failed', array['erin@example.test'], 'smtp_recipients_rejected', 'recipient rejected', 550)$$,
  'a failed outcome keeps its error class and SMTP response code'
);

-- Bob's row is still in flight after the owner's attempt on it.
set local request.jwt.claims to '{"sub":"bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb","role":"authenticated"}';

select lives_ok(
  $$select private.record_email_outcome('b0000000-0000-4000-8000-0000000000e1', '{"status": "unknown"}')$$,
  'another user records the outcome of their own send'
);

-- Deleting a config keeps its audit trail ------------------------------------------------
set local request.jwt.claims to '{"sub":"aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa","role":"authenticated"}';

select lives_ok(
  $$delete from public.user_smtp_configs where id = 'a1a1a1a1-0000-4000-8000-000000000001'$$,
  'owner can delete a config that has audit rows'
);

select results_eq(
  $$select id, config_id, status from public.email_audit_log
     where id in ('a0000000-0000-4000-8000-0000000000e1', 'a0000000-0000-4000-8000-0000000000e2')
     order by id$$,
  $$values ('a0000000-0000-4000-8000-0000000000e1'::uuid, null::uuid, 'sent'),
           ('a0000000-0000-4000-8000-0000000000e2'::uuid, null::uuid, 'failed')$$,
  'audit rows outlive their config (config_id set to null)'
);

-- anon --------------------------------------------------------------------------------------
set local role anon;
set local request.jwt.claims to '{"role":"anon"}';

select throws_ok(
  $$select id from public.email_audit_log$$,
  '42501', 'permission denied for table email_audit_log',
  'anon cannot read audit rows'
);

select throws_ok(
  $$insert into public.email_audit_log (user_id, from_email, status)
    values ('aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'alice@work.example', 'sending')$$,
  '42501', 'permission denied for table email_audit_log',
  'anon cannot insert audit rows'
);

select throws_ok(
  $$update public.email_audit_log set status = 'sent'$$,
  '42501', 'permission denied for table email_audit_log',
  'anon cannot update audit rows'
);

select throws_ok(
  $$delete from public.email_audit_log$$,
  '42501', 'permission denied for table email_audit_log',
  'anon cannot delete audit rows'
);

-- Final state (as the migration role) ------------------------------------------------------
reset role;

select results_eq(
  $$select status from public.email_audit_log where id = 'b0000000-0000-4000-8000-0000000000e1'$$,
  array['unknown'],
  'each user''s outcome landed on their own row only'
);

delete from auth.users where id = 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa';

select is_empty(
  $$select id from public.email_audit_log where user_id = 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa'$$,
  'deleting the auth user deletes their audit rows'
);

select isnt_empty(
  $$select id from public.email_audit_log where user_id = 'bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb'$$,
  'deleting one user keeps the other user''s audit rows'
);

select * from finish();
rollback;
