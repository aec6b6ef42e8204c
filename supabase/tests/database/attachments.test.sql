-- Stored attachments (issue 31): owners read their own files and nobody else's; files are
-- written and deleted only through the private functions, which keep the per-user quota, find
-- the same file again, refuse to delete what a waiting message needs, and size the outbox's
-- rows by the files they name.
begin;
create extension if not exists pgtap with schema extensions;
set local search_path = public, extensions;

select plan(21);

insert into auth.users (id, email) values
  ('aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'alice@example.test'),
  ('bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb', 'bob@example.test');
insert into public.user_smtp_configs (id, user_id, name, host, port, from_email) values
  ('a1a1a1a1-0000-4000-8000-000000000001', 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'work', 'smtp.a.example', 465,
   'alice@a.example');

select ok((select relrowsecurity from pg_class where oid = 'public.attachments'::regclass),
  'the attachments table has RLS on');

set local role authenticated;
set local request.jwt.claims to '{"sub":"aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa","role":"authenticated"}';

create temporary table stored on commit drop as
  select * from private.store_attachment('terms.pdf', 'application/pdf', '\x255044462d312e370a'::bytea, null, 30, 1000);
select ok((select created from stored), 'a first upload is a new file');
select is((select encode(sha256, 'hex') from stored), encode(sha256('\x255044462d312e370a'::bytea), 'hex'),
  'its SHA-256 is computed by Postgres');
select is((select created from private.store_attachment('terms.pdf', 'application/pdf', '\x255044462d312e370a'::bytea,
                                                           null, 30, 1000)), false,
  'the same bytes, name and type again are the same file');
select is((select count(*)::int from public.attachments), 1, 'stored once');
select throws_like(
  $$select * from private.store_attachment('big.bin', 'application/octet-stream', decode(repeat('00', 995), 'hex'),
                                           null, 30, 1000)$$,
  '%attachment_storage_full%', 'the quota counts what the user stores already');
select throws_ok(
  $$insert into public.attachments (filename, content_type, size_bytes, sha256, content)
    values ('x', 'text/plain', 1, sha256('x'), 'x')$$, '42501', null, 'no insert through the Data API');
select throws_ok($$update public.attachments set expires_at = now() + interval '10 years'$$, '42501', null,
  'nor update');
select throws_ok($$delete from public.attachments$$, '42501', null, 'nor delete');
select throws_ok($$select private.forget_expired_attachments()$$, '42501', null, 'nor the cleanup');

-- A queued message naming the file: its row counts the file's base64 size, and the file cannot go.
insert into public.email_audit_log (config_id, from_email, to_addresses, status, payload)
select 'a1a1a1a1-0000-4000-8000-000000000001', 'alice@a.example', array['q@example.test'], 'queued',
       jsonb_build_object('kind', 'request', 'request', jsonb_build_object('attachments',
         jsonb_build_array(jsonb_build_object('id', s.id)))) from stored s;
select ok((select payload_bytes from public.email_audit_log) >= 12, 'the row counts the file it names');
select throws_like($$select private.delete_attachment((select id from stored))$$, '%attachment_in_use%',
  'a file a waiting message needs is not deleted');
select is((select count(*)::int from private.hold_attachments((select array_agg(id) from stored), now() + interval '90 days')), 1,
  'a send holds the caller''s file');

-- Bob sees nothing of Alice's.
set local request.jwt.claims to '{"sub":"bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb","role":"authenticated"}';
select is((select count(*)::int from public.attachments), 0, 'another user reads none of them');
select is((select count(*)::int from private.hold_attachments((select array_agg(id) from stored), now())), 0,
  'nor holds them');
select throws_like($$select private.delete_attachment((select id from stored))$$, '%attachment_not_found%',
  'nor deletes them (a 404, as if there were none)');

-- The worker's side (no user): sizes follow the payload, and expiry spares what a message needs.
reset role;
update public.email_audit_log set payload = jsonb_build_object('kind', 'request', 'request', '{}'::jsonb);
select is((select payload_bytes from public.email_audit_log), (select octet_length(payload::text) from public.email_audit_log),
  'a payload rewritten without the file is sized again');
update public.email_audit_log
   set payload = jsonb_build_object('kind', 'request', 'request', jsonb_build_object('attachments',
         jsonb_build_array(jsonb_build_object('id', (select id from stored)))));
select is((select payload_bytes from public.email_audit_log), (select octet_length(payload::text) + 12 from public.email_audit_log),
  'and with it again (as retry_deferred_recipients rewrites it), the file counts again, as base64 (9 bytes: 12)');
insert into public.attachments (user_id, filename, content_type, size_bytes, sha256, content)
values ('aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'old.txt', 'text/plain', 3, sha256('old'), 'old');
update public.attachments set expires_at = now() - interval '1 minute';
select is(private.forget_expired_attachments(), 1, 'the worker forgets the expired file nobody needs');
select ok((select expires_at > now() from public.attachments where id = (select id from stored)),
  'and keeps (another day) the expired one a queued message still attaches');

set local role anon;
set local request.jwt.claims to '{"role":"anon"}';
select throws_ok($$select * from public.attachments$$, '42501', null, 'anon reads nothing');

select * from finish();
rollback;
