-- public.email_templates: own CRUD, starter templates read-only, nothing across users or
-- for anon; audit rows may only name templates the sender can see.
begin;
create extension if not exists pgtap with schema extensions;
set local search_path = public, extensions;

select plan(24);

insert into auth.users (id, email) values
  ('aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'alice@example.test'),
  ('bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb', 'bob@example.test');

insert into public.email_templates (id, user_id, name, subject, text) values
  ('51515151-0000-4000-8000-000000000001', null, 'starter-test', 'Hi {{name}}', 'Hello {{name}}'),
  ('b2b2b2b2-0000-4000-8000-000000000001', 'bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb', 'bobs', 'Bob', 'Bob only');

insert into public.user_smtp_configs (id, user_id, name, host, port, from_email) values
  ('a1a1a1a1-0000-4000-8000-000000000001', 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'work', 'smtp.work.example', 465,
   'alice@work.example');

select ok(
  (select relrowsecurity from pg_catalog.pg_class where oid = 'public.email_templates'::regclass),
  'row level security is enabled on email_templates'
);
select policies_are('public', 'email_templates', array[
  'signed-in users can read own and starter templates',
  'owner can create own templates',
  'owner can update own templates',
  'owner can delete own templates'
], 'email_templates has read, create, update and delete policies');
select table_privs_are('public', 'email_templates', 'anon', array[]::name[], 'anon has no privileges on templates');

-- Alice -----------------------------------------------------------------------------------
set local role authenticated;
set local request.jwt.claims to '{"sub":"aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa","role":"authenticated"}';

select lives_ok(
  $$insert into public.email_templates (name, subject, html, variables)
    values ('invite', 'Join {{team}}', '<p>{{team}}</p>', '["team"]')$$,
  'owner can create a template'
);
select is(
  (select user_id from public.email_templates where name = 'invite'),
  'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa'::uuid,
  'a new template belongs to its creator'
);
select results_eq(
  $$select name from public.email_templates where user_id is not null or name = 'starter-test' order by name$$,
  $$values ('invite'), ('starter-test')$$,
  'owner sees own and starter templates, not Bob''s'
);
select lives_ok(
  $$update public.email_templates set subject = 'Join {{team}} today' where name = 'invite'$$,
  'owner can update own template'
);
select is_empty(
  $$update public.email_templates set subject = 'hacked' where name = 'starter-test' returning id$$,
  'owner cannot change a starter template'
);
select is_empty(
  $$delete from public.email_templates where name = 'starter-test' returning id$$,
  'owner cannot delete a starter template'
);
select is_empty(
  $$update public.email_templates set subject = 'hacked' where id = 'b2b2b2b2-0000-4000-8000-000000000001' returning id$$,
  'owner cannot change another user''s template'
);
select throws_ok(
  $$insert into public.email_templates (user_id, name, text) values ('bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb', 'planted', 'x')$$,
  '42501', null,
  'owner cannot create a template for another user (user_id is not writable)'
);
select throws_ok(
  $$insert into public.email_templates (name, subject) values ('no-body', 'subject only')$$,
  '23514', null,
  'a template needs an html or a text part'
);
select throws_ok(
  $$insert into public.email_templates (name, text, variables) values ('bad-vars', 'x', '"name"')$$,
  '23514', null,
  'variables must be a list or an object'
);
select throws_ok(
  $$insert into public.email_templates (name, text) values ('invite', 'again')$$,
  '23505', null,
  'template names are unique per user'
);
select lives_ok(
  $$insert into public.email_templates (name, text) values ('starter-test', 'my own copy')$$,
  'owner may shadow a starter template with an own one of the same name'
);

-- Audit rows may name own and starter templates only
select lives_ok(
  $$insert into public.email_audit_log (config_id, template_id, from_email, status)
    values ('a1a1a1a1-0000-4000-8000-000000000001', '51515151-0000-4000-8000-000000000001', 'alice@work.example', 'sending')$$,
  'owner can audit a send that used a starter template'
);
select throws_ok(
  $$insert into public.email_audit_log (config_id, template_id, from_email, status)
    values ('a1a1a1a1-0000-4000-8000-000000000001', 'b2b2b2b2-0000-4000-8000-000000000001', 'alice@work.example', 'sending')$$,
  '42501', 'new row violates row-level security policy for table "email_audit_log"',
  'owner cannot reference another user''s template in an audit row'
);
select lives_ok(
  $$delete from public.email_templates where name = 'invite'$$,
  'owner can delete own template'
);

-- Bob ---------------------------------------------------------------------------------------
set local request.jwt.claims to '{"sub":"bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb","role":"authenticated"}';
select results_eq(
  $$select name from public.email_templates where user_id is not null or name = 'starter-test' order by name$$,
  $$values ('bobs'), ('starter-test')$$,
  'Bob sees his own and the starter templates, none of Alice''s'
);
select is_empty(
  $$delete from public.email_templates where user_id = 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa' returning id$$,
  'Bob cannot delete Alice''s templates'
);

-- anon --------------------------------------------------------------------------------------
set local role anon;
set local request.jwt.claims to '{"role":"anon"}';
select throws_ok($$select * from public.email_templates$$, '42501', null, 'anon cannot read templates');
select throws_ok(
  $$insert into public.email_templates (name, text) values ('x', 'y')$$, '42501', null, 'anon cannot create templates'
);

reset role;
select is(
  (select count(*)::int from public.email_templates where user_id = 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa'),
  1,
  'Alice keeps exactly her shadow copy'
);
select is(
  (select subject from public.email_templates where id = '51515151-0000-4000-8000-000000000001'),
  'Hi {{name}}',
  'the starter template is unchanged'
);

select * from finish();
rollback;
