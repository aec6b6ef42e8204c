-- Every foreign key has an index its `on delete` check can use (20261206130000), and the batch
-- progress index lists read (20261206130100). The checks that a delete really goes through the
-- index run with sequential scans disabled: on tables this small the planner would scan them
-- anyway, but only an index it can use for the foreign key's query lets it avoid that.
begin;
create extension if not exists pgtap with schema extensions;
set local search_path = public, extensions;

select plan(10);

-- Catalog -----------------------------------------------------------------------------------
-- Supabase's advisor (lint 0001 unindexed_foreign_keys): a foreign key is covered when an index's
-- leading columns are its columns, in order.
select is_empty(
  $$select c.conrelid::regclass::text || ' ' || c.conname
      from pg_catalog.pg_constraint c
     where c.contype = 'f'
       and c.connamespace in ('public'::regnamespace, 'private'::regnamespace)
       and not exists (
         select 1
           from pg_catalog.pg_index i
          where i.indrelid = c.conrelid
            and i.indisvalid
            and (string_to_array(i.indkey::text, ' ')::smallint[])[1:cardinality(c.conkey)] = c.conkey)$$,
  'every foreign key in public and private has an index whose leading columns are its columns'
);

select has_index(
  'public', 'email_audit_log', 'email_audit_log_template', array['template_id'],
  'email_audit_log.template_id is indexed'
);
select has_index(
  'public', 'email_batches', 'email_batches_config', array['config_id'],
  'email_batches.config_id is indexed'
);
select has_index(
  'public', 'email_batches', 'email_batches_template', array['template_id'],
  'email_batches.template_id is indexed'
);
-- Key columns (p_included false) or INCLUDE columns (true) of an index, in order.
create function pg_temp.index_columns(p_index regclass, p_included boolean) returns text[] language sql as $$
  select array_agg(a.attname::text order by k.n)
    from pg_catalog.pg_index i
    cross join lateral unnest(i.indkey::smallint[]) with ordinality k (attnum, n)
    join pg_catalog.pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum
   where i.indexrelid = p_index
     and (k.n > i.indnkeyatts) = p_included
$$;
select is(
  pg_temp.index_columns('public.email_audit_log_batch_progress', false),
  array['batch_id', 'status', 'error_class'],
  'a batch''s progress is one range of email_audit_log_batch_progress (batch_id, status, error_class)'
);
select is(
  pg_temp.index_columns('public.email_audit_log_batch_progress', true),
  array['completed_at', 'user_id'],
  'it also carries completed_at and user_id (the RLS column), so the counts need no heap'
);
select hasnt_index(
  'public', 'email_audit_log', 'email_audit_log_batch',
  'the batch_id index it extends is gone'
);

-- Deletes find their referencing rows through the indexes ---------------------------------
insert into auth.users (id, email) values ('aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'alice@example.test');
insert into public.user_smtp_configs (id, user_id, name, host, port, username, from_email)
values ('a1a1a1a1-0000-4000-8000-000000000001', 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa',
        'work', 'smtp.work.example', 465, 'alice', 'alice@work.example');
insert into public.email_templates (id, user_id, name, text)
values ('e1e1e1e1-0000-4000-8000-000000000001', 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'welcome', 'Hi');
insert into public.email_batches (id, user_id, config_id, template_id, content, total)
values ('b1b1b1b1-0000-4000-8000-000000000001', 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa',
        'a1a1a1a1-0000-4000-8000-000000000001', 'e1e1e1e1-0000-4000-8000-000000000001', '{}', 2);
insert into public.email_audit_log (user_id, config_id, template_id, batch_id, from_email, status)
select 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'a1a1a1a1-0000-4000-8000-000000000001',
       'e1e1e1e1-0000-4000-8000-000000000001', 'b1b1b1b1-0000-4000-8000-000000000001',
       'alice@work.example', 'sent'
  from generate_series(1, 2);

-- Scan counts of this transaction so far, to compare with after the deletes.
create temporary table scans_before as
select c.relname, pg_catalog.pg_stat_get_xact_numscans(c.oid) as n
  from pg_catalog.pg_class c
 where c.relnamespace = 'public'::regnamespace
   and c.relname in ('email_audit_log', 'email_batches', 'email_audit_log_template', 'email_batches_template',
                     'email_batches_config');
create function pg_temp.scans(p_relname text) returns bigint language sql as $$
  select pg_catalog.pg_stat_get_xact_numscans(pg_catalog.to_regclass('public.' || p_relname))
         - (select b.n from scans_before b where b.relname = p_relname)
$$;

set local enable_seqscan = off;
delete from public.email_templates where id = 'e1e1e1e1-0000-4000-8000-000000000001';
delete from public.user_smtp_configs where id = 'a1a1a1a1-0000-4000-8000-000000000001';
reset enable_seqscan;

select ok(
  pg_temp.scans('email_audit_log_template') > 0 and pg_temp.scans('email_batches_template') > 0,
  'deleting a template finds its audit rows and batches through their template_id indexes'
);
select ok(
  pg_temp.scans('email_batches_config') > 0,
  'deleting a config finds its batches through email_batches_config'
);
select is(
  array[pg_temp.scans('email_audit_log'), pg_temp.scans('email_batches')],
  array[0, 0]::bigint[],
  'neither delete scanned email_audit_log or email_batches whole'
);

select finish();
rollback;
