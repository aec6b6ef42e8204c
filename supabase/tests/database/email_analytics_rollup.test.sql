-- The email-analytics rollup: private.email_analytics with the rollup equals the same summary
-- from the rows, for random data, after rows change status behind the app's back and after a
-- config is deleted; days with a row still in flight are not summarized; each user reads only
-- their own rollup, anon none of it.
begin;
create extension if not exists pgtap with schema extensions;
set local search_path = public, extensions;

select plan(11);

insert into auth.users (id, email) values
  ('aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'alice@example.test'),
  ('bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb', 'bob@example.test');
insert into public.user_smtp_configs (id, user_id, name, host, port, from_email) values
  ('a1a1a1a1-0000-4000-8000-000000000001', 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'one', 'smtp.one.example', 465,
   'a@one.example'),
  ('a1a1a1a1-0000-4000-8000-000000000002', 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'two', 'smtp.two.example', 465,
   'a@two.example');

-- 2,000 random final rows of alice's over 20 days ending 3 days ago, one queued row 10 days ago,
-- and bob's rows in the same days.
select setseed(0.26);
insert into public.email_audit_log
  (user_id, config_id, from_email, to_addresses, status, error_class, created_at, completed_at)
select 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa',
       (array['a1a1a1a1-0000-4000-8000-000000000001', 'a1a1a1a1-0000-4000-8000-000000000002', null]::uuid[])
         [1 + (random() * 2.99)::int],
       'a@one.example', array['x@d' || (random() * 5)::int || '.example'],
       s.status, case when s.status = 'failed' then 'e' || (random() * 2)::int end,
       s.created, case when s.status = 'sent' then s.created + make_interval(secs => random() * 20) end
  from (select now() - interval '3 days' - make_interval(secs => random() * 20 * 86400) as created,
               (array['sent', 'sent', 'failed', 'unknown', 'cancelled'])[1 + (random() * 4)::int] as status
          from generate_series(1, 2000)) s;
insert into public.email_audit_log (user_id, from_email, status, created_at)
values ('aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'a@one.example', 'queued', now() - interval '10 days');
insert into public.email_audit_log (user_id, from_email, status, created_at)
select 'bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb', 'b@example.test', 'sent', now() - make_interval(secs => i * 600)
  from generate_series(1, 500) i;

create temporary table answers (label text, rolled json, raw json) on commit drop;
grant all on answers to authenticated;

set local role authenticated;
set local request.jwt.claims to '{"sub":"aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa","role":"authenticated"}';

-- A week of days per call (the API calls it before each summary): four calls cover the range.
do $$
begin
  for i in 1..4 loop
    perform private.summarize_email_stats(now() - interval '25 days', now());
  end loop;
end
$$;

insert into answers
select 'first',
       private.email_analytics(now() - interval '25 days', now(), 'day', 'Europe/Paris',
                               '{config,recipient_domain,error_code,batch}'),
       private.email_analytics(now() - interval '25 days', now(), 'day', 'Europe/Paris',
                               '{config,recipient_domain,error_code,batch}', p_rollup => false);
select is((select rolled::text from answers where label = 'first'), (select raw::text from answers where label = 'first'),
          'the rollup''s summary equals the rows''');
select cmp_ok((select count(*)::int from private.email_stats_days), '>=', 19, 'settled days were summarized');
select is(
  (select count(*)::int from private.email_stats_days
    where day = date_trunc('day', now() - interval '10 days', 'UTC')),
  0, 'a day with a row still queued is not summarized'
);
select is((select count(distinct user_id)::int from private.email_stats_days), 1, 'alice reads only her own days');

select is(
  (private.email_analytics(now() - interval '25 days', now(), 'hour', 'UTC', '{error_code}',
                           p_statuses => '{sent,failed}'))::text,
  (private.email_analytics(now() - interval '25 days', now(), 'hour', 'UTC', '{error_code}',
                           p_statuses => '{sent,failed}', p_rollup => false))::text,
  'hourly buckets and a status filter agree too'
);

-- Behind the app's back (as the table owner): a final row changes, another is deleted.
reset role;
update public.email_audit_log set status = 'failed', error_class = 'e9', completed_at = null
 where id = (select id from public.email_audit_log
              where user_id = 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa' and status = 'sent' limit 1);
delete from public.email_audit_log
 where id = (select id from public.email_audit_log
              where user_id = 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa' and status = 'unknown' limit 1);
set local role authenticated;
select is(
  (private.email_analytics(now() - interval '25 days', now(), 'day', 'UTC', '{error_code,config}'))::text,
  (private.email_analytics(now() - interval '25 days', now(), 'day', 'UTC', '{error_code,config}',
                           p_rollup => false))::text,
  'a summarized row that changed or went is counted as it is now'
);

delete from public.user_smtp_configs where id = 'a1a1a1a1-0000-4000-8000-000000000002';
select is(
  (private.email_analytics(now() - interval '25 days', now(), 'day', 'UTC', '{config}'))::text,
  (private.email_analytics(now() - interval '25 days', now(), 'day', 'UTC', '{config}', p_rollup => false))::text,
  'a deleted config''s rows count under null, from the rollup as from the rows'
);

select throws_ok(
  $$insert into private.email_stats_days (user_id, day) values ('aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', '2026-01-01')$$,
  '42501', null, 'authenticated cannot write the rollup'
);

set local request.jwt.claims to '{"sub":"bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb","role":"authenticated"}';
select is((select count(*)::int from private.email_stats_hourly), 0, 'bob reads none of alice''s rollup');
select is(
  (private.email_analytics(now() - interval '25 days', now(), 'day', 'UTC', '{}') ->> 'total')::int,
  500, 'bob counts his own 500 rows'
);

set local role anon;
select throws_ok($$select count(*) from private.email_stats_hourly$$, '42501', null, 'anon cannot read the rollup');

select * from finish();
rollback;
