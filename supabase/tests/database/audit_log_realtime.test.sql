-- The audit log is in Realtime's publication; what a subscriber receives is what RLS lets it
-- select (Realtime checks each change against the subscriber's policies): its own rows only.
begin;
create extension if not exists pgtap with schema extensions;
set local search_path = public, extensions;

select plan(3);

select ok(
  exists (select 1 from pg_publication_tables
           where pubname = 'supabase_realtime' and schemaname = 'public' and tablename = 'email_audit_log'),
  'public.email_audit_log is in the supabase_realtime publication'
);

insert into auth.users (id, email) values
  ('aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'alice@example.test'),
  ('bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb', 'bob@example.test');
insert into public.email_audit_log (id, user_id, from_email, to_addresses, status) values
  ('a0000000-0000-4000-8000-000000000001', 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'a@example.test',
   '{x@example.test}', 'sent'),
  ('b0000000-0000-4000-8000-000000000001', 'bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb', 'b@example.test',
   '{y@example.test}', 'sent');

set local role authenticated;
set local request.jwt.claims to '{"sub":"bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb","role":"authenticated"}';
select results_eq(
  $$select id from public.email_audit_log$$,
  $$values ('b0000000-0000-4000-8000-000000000001'::uuid)$$,
  'a subscriber selects (and so receives) its own rows only'
);
reset role;
select ok(not has_table_privilege('anon', 'public.email_audit_log', 'select'), 'anon can neither select nor receive it');

select * from finish();
rollback;
