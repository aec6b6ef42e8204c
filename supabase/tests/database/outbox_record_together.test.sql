-- private.record_outbox_attempts records a message's first, final attempt in one statement
-- for all such rows at once. What it writes must be exactly what the row-by-row path
-- (record_outbox_attempt) writes for the same outcome: each case below is recorded both ways,
-- on two identical rows, and every column the outcome sets is compared.
begin;
create extension if not exists pgtap with schema extensions;
set local search_path = public, extensions;

select plan(9);

insert into auth.users (id, email) values ('aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'alice@example.test');
insert into public.user_smtp_configs (id, user_id, name, host, port, from_email) values
  ('a1a1a1a1-0000-4000-8000-000000000001', 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'work', 'smtp.work.example', 465,
   'alice@work.example');

-- Case n: rows 'a...0n' (recorded together) and 'b...0n' (row by row).
create temporary table cases (n integer, outcome jsonb) on commit drop;
insert into cases values
  (1, '{"status": "sent", "message_id": "<ignored@x>", "smtp_response_code": 250, "smtp_response": "250 2.0.0 queued",
        "recipients": [{"address": "z@example.test", "status": "accepted", "smtp_code": 250},
                       {"address": "b@example.test", "status": "rejected", "smtp_code": 550, "smtp_response": "550 no"}],
        "sent": {"to": ["z@example.test", "b@example.test"], "cc_count": 1, "bcc_count": 2, "subject": "Hi there"}}'),
  (2, '{"status": "failed", "error_class": "smtp_recipients_rejected", "error_message": "All refused",
        "smtp_response_code": 550, "smtp_enhanced_code": "5.1.1", "retryable": false,
        "recipients": [{"address": "r@example.test", "status": "rejected", "smtp_code": 550}]}'),
  (3, '{"status": "unknown", "error_class": "smtp_timeout_after_data", "retryable": false,
        "recipients": [{"address": "u@example.test", "status": "unknown"}]}'),
  (4, '{"status": "failed", "error_class": "invalid_payload", "error_message": "Unknown payload", "retryable": false}');
grant select on cases to authenticated;

insert into public.email_audit_log (id, user_id, config_id, from_email, to_addresses, status, payload)
select (p || '0000000-0000-4000-8000-00000000000' || n)::uuid, 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa',
       'a1a1a1a1-0000-4000-8000-000000000001', 'alice@work.example', array['q@example.test'], 'queued', '{}'
  from cases, unnest(array['a', 'b']) p;
select is((select count(*)::int from private.claim_outbox('w', 10, 60)), 8, 'eight rows claimed');
select is((select count(*)::int from private.start_outbox_sends(array(select id from public.email_audit_log), 'w', 60)),
  8, 'and started');

set local role authenticated;
set local request.jwt.claims to '{"sub":"aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa","role":"authenticated"}';
select is(
  (select array_agg(r.status order by r.id) from private.record_outbox_attempts(
     (select jsonb_agg(jsonb_build_object('id', 'a0000000-0000-4000-8000-00000000000' || n, 'outcome', outcome))
        from cases)) r),
  array['sent', 'failed', 'unknown', 'failed'],
  'recorded together: sent, failed, unknown, failed'
);
select is(
  (select array_agg(private.record_outbox_attempt(('b0000000-0000-4000-8000-00000000000' || n)::uuid, outcome)
                    order by n) from cases),
  array['sent', 'failed', 'unknown', 'failed'],
  'row by row: the same statuses'
);
reset role;

create temporary view recorded as
select left(id::text, 1) as side, substr(id::text, 2) as pair, status, message_id = '<' || id || '@work.example>' as own_message_id, recipients,
       accepted, rejected, deferred, error_class, error_message, smtp_response_code, smtp_enhanced_code,
       smtp_response, retryable, completed_at is not null as completed, lease_until, to_addresses, cc_count,
       bcc_count, subject, duration_ms is not null as timed
  from public.email_audit_log;
select results_eq(
  $$select pair, status, own_message_id, recipients, accepted, rejected, deferred, error_class, error_message,
           smtp_response_code, smtp_enhanced_code, smtp_response, retryable, completed, lease_until, to_addresses,
           cc_count, bcc_count, subject, timed
      from recorded where side = 'a' order by pair$$,
  $$select pair, status, own_message_id, recipients, accepted, rejected, deferred, error_class, error_message,
           smtp_response_code, smtp_enhanced_code, smtp_response, retryable, completed, lease_until, to_addresses,
           cc_count, bcc_count, subject, timed
      from recorded where side = 'b' order by pair$$,
  'every column is what the row-by-row path writes'
);
select is(
  (select recipients from public.email_audit_log where id = 'a0000000-0000-4000-8000-000000000001'),
  '[{"address": "b@example.test", "status": "rejected", "smtp_code": 550, "smtp_response": "550 no"},
    {"address": "z@example.test", "status": "accepted", "smtp_code": 250}]'::jsonb,
  'recipients in address order'
);
select is(
  (select array[subject, cc_count::text, array_to_string(to_addresses, ',')]
     from public.email_audit_log where id = 'a0000000-0000-4000-8000-000000000001'),
  array['Hi there', '1', 'z@example.test,b@example.test'],
  'what was sent'
);

-- The same id twice in one call: the first entry counts, the second is `lost`, as row by row.
reset role;
insert into public.email_audit_log (id, user_id, config_id, from_email, to_addresses, status, payload)
values ('c0000000-0000-4000-8000-000000000001', 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa',
        'a1a1a1a1-0000-4000-8000-000000000001', 'alice@work.example', array['q@example.test'], 'queued', '{}');
select private.claim_outbox('w', 10, 60);
select private.start_outbox_sends(array['c0000000-0000-4000-8000-000000000001']::uuid[], 'w', 60);
set local role authenticated;
select is(
  (select array_agg(r.status) from private.record_outbox_attempts(jsonb_build_array(
     jsonb_build_object('id', 'c0000000-0000-4000-8000-000000000001', 'outcome', (select outcome from cases where n = 1)),
     jsonb_build_object('id', 'c0000000-0000-4000-8000-000000000001', 'outcome', (select outcome from cases where n = 2))
   )) r),
  array['sent', 'lost'],
  'an id given twice: the first entry counts, the second is lost'
);
select is((select status from public.email_audit_log where id = 'c0000000-0000-4000-8000-000000000001'), 'sent',
  'and the row has the first entry''s outcome');
reset role;

select * from finish();
rollback;
