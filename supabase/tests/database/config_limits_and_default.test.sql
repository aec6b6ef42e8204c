-- Per-config limits and private.set_default_smtp_config: as the owner, another user and anon.
begin;
create extension if not exists pgtap with schema extensions;
set local search_path = public, extensions;

select plan(19);

insert into auth.users (id, email) values
  ('aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'alice@example.test'),
  ('bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb', 'bob@example.test');

insert into public.user_smtp_configs (id, user_id, name, host, port, from_email, is_default) values
  ('a1a1a1a1-0000-4000-8000-000000000001', 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'work', 'smtp.work.example', 465,
   'alice@work.example', true),
  ('a1a1a1a1-0000-4000-8000-000000000002', 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'home', 'smtp.home.example', 465,
   'alice@home.example', false),
  ('b1b1b1b1-0000-4000-8000-000000000001', 'bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb', 'bob', 'smtp.bob.example', 465,
   'bob@bob.example', true);

-- Limits -----------------------------------------------------------------------------------
select is(
  (select (max_per_minute, max_per_day)::text from public.user_smtp_configs where name = 'work'),
  '(30,500)',
  'limits default to 30 per minute and 500 per day'
);

select is(
  (select max_connections from public.user_smtp_configs where name = 'work'),
  3::smallint,
  'a config takes 3 SMTP sessions at once by default'
);

set local role authenticated;
set local request.jwt.claims to '{"sub":"aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa","role":"authenticated"}';

select lives_ok(
  $$update public.user_smtp_configs set max_connections = 10 where name = 'home'$$,
  'owner can allow up to 10 sessions at once'
);
select throws_ok(
  $$update public.user_smtp_configs set max_connections = 11 where name = 'home'$$,
  '23514', null, 'more than 10 sessions at once is rejected'
);

select lives_ok(
  $$update public.user_smtp_configs set max_per_minute = 5, max_per_day = 100 where name = 'work'$$,
  'owner can change the limits of own config'
);
select throws_ok(
  $$update public.user_smtp_configs set max_per_minute = 0 where name = 'work'$$,
  '23514', null, 'a limit below 1 is rejected'
);
select throws_ok(
  $$update public.user_smtp_configs set max_per_day = 2000000 where name = 'work'$$,
  '23514', null, 'an absurd daily limit is rejected'
);

-- set_default_smtp_config --------------------------------------------------------------------
select lives_ok(
  $$select private.set_default_smtp_config('a1a1a1a1-0000-4000-8000-000000000002')$$,
  'owner can move the default to another own config'
);
select results_eq(
  $$select name from public.user_smtp_configs where is_default order by name$$,
  $$values ('home')$$,
  'the owner now has exactly one default, the new one'
);
select lives_ok(
  $$select private.set_default_smtp_config('a1a1a1a1-0000-4000-8000-000000000002')$$,
  'making the default the default again is harmless'
);
select throws_ok(
  $$select private.set_default_smtp_config('b1b1b1b1-0000-4000-8000-000000000001')$$,
  'P0002', 'smtp config not found',
  'owner cannot make another user''s config their default'
);
select throws_ok(
  $$update public.user_smtp_configs set is_default = true where name = 'work'$$,
  '23505', null,
  'a second default per user is still refused by the unique index'
);

set local request.jwt.claims to '{"sub":"bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb","role":"authenticated"}';
select throws_ok(
  $$select private.set_default_smtp_config('a1a1a1a1-0000-4000-8000-000000000001')$$,
  'P0002', 'smtp config not found',
  'another user cannot move Alice''s default'
);
select is_empty(
  $$update public.user_smtp_configs set max_per_minute = 1 where name = 'work' returning id$$,
  'another user cannot change Alice''s limits'
);

reset role;
select results_eq(
  $$select name from public.user_smtp_configs where is_default order by name$$,
  $$values ('bob'), ('home')$$,
  'each user keeps their own single default'
);
select is(
  (select max_per_minute from public.user_smtp_configs where name = 'work'),
  5,
  'Alice''s limits are as she set them'
);

set local role anon;
set local request.jwt.claims to '{"role":"anon"}';
select throws_ok(
  $$select private.set_default_smtp_config('a1a1a1a1-0000-4000-8000-000000000001')$$,
  '42501', null, 'anon cannot execute set_default_smtp_config'
);

reset role;
select ok(
  not has_function_privilege('public', 'private.set_default_smtp_config(uuid)', 'execute'),
  'PUBLIC cannot execute set_default_smtp_config'
);
select is(
  (select prosecdef from pg_proc where oid = 'private.set_default_smtp_config(uuid)'::regprocedure),
  false,
  'set_default_smtp_config runs as the caller, under RLS'
);

select * from finish();
rollback;
