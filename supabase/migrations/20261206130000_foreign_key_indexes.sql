-- Three foreign keys had no index on their referencing side (Supabase's database advisor,
-- lint 0001 unindexed_foreign_keys): email_audit_log.template_id, email_batches.config_id and
-- email_batches.template_id. Each is `on delete set null`, so deleting a template or a config ran
--   UPDATE ONLY public.email_audit_log SET template_id = NULL WHERE $1 = template_id
-- as a sequential scan of the whole audit log (every user's rows), holding the template's row
-- lock meanwhile. With 1,030,000 audit rows, deleting a template three of them used
-- (auto_explain with log_nested_statements shows the foreign key's own query):
--
--   before: Seq Scan on email_audit_log (actual time=997.955..997.957 rows=3)
--             Filter: ('...e2'::uuid = template_id)  Rows Removed by Filter: 1030097
--           the delete: 1,009 ms
--   after:  Index Scan using email_audit_log_template on email_audit_log (actual time=0.006..0.007 rows=3)
--             Index Cond: (template_id = '...e2'::uuid)
--           the delete: 6.7 ms
--
-- Partial indexes (`where ... is not null`): most sends use no template, and only rows that
-- reference something need finding. The foreign key's query can use them because `=` is strict,
-- so `template_id = $1` implies `template_id is not null`. The advisor counts a partial index as
-- covering (it compares the leading columns), and a pgTAP test checks every foreign key has one.
-- email_audit_log.config_id is covered by email_audit_log_config_created, batch_id by the batch
-- index (20261206130100), user_id by email_audit_log_user_created_id.

create index email_audit_log_template on public.email_audit_log (template_id) where template_id is not null;
create index email_batches_config on public.email_batches (config_id) where config_id is not null;
create index email_batches_template on public.email_batches (template_id) where template_id is not null;
