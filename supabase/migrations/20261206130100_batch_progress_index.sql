-- GET /send-bulk (the caller's batches with their counts) cost 1.4-1.8 s of database time for
-- a user with 230,000 audit rows in a few hundred batches. Each batch's counts read its audit
-- rows through email_audit_log_batch (batch_id) and then the heap, for the status, the
-- completion time and the error class; and because the RLS predicate user_id = auth.uid() is a
-- parameter the planner cannot see, it estimated the user's rows at 1/n_distinct of the table
-- and AND-ed in a bitmap of *all* the user's rows, once per batch. Reproduced with 1,030,000 rows
-- (the user's 230,100 in 300 batches of 767, sent ten batches at a time; 800,000 of 1,000
-- other users), as that user, one page of 50:
--
--   before: Bitmap Index Scan on email_audit_log_user_created_id (actual rows=230109 loops=51)
--           Bitmap Index Scan on email_audit_log_user_created_id (actual rows=230109 loops=50)
--           about 280,000 buffers; 2,345 ms (pgbench, mean of 7)
--   after:  Index Only Scan using email_audit_log_batch_progress (actual rows=767 loops=50)
--             Index Cond: (batch_id = b.id)  Filter: (user_id = $2)  Heap Fetches: 0
--           529 buffers; 19-26 ms
--
-- The index carries everything a batch's progress reads (status, error_class, completed_at)
-- and the RLS column (user_id), so the counts come from an index-only scan, grouped in index
-- order without a sort. It replaces email_audit_log_batch, its prefix, which served the
-- batch_id foreign key and cancel_outbox_messages; this one serves both as well. Its cost on
-- writes is the wider entry only: every outcome update already makes a new index entry
-- (status is in partial index predicates, so no such update is HOT).
--
-- The list also reads at most 50 batches and at most 100,000 of their messages per page (the
-- function, supabase/functions/_shared/outbox/batches.ts), so one request's work is bounded
-- whatever a user holds.

create index email_audit_log_batch_progress on public.email_audit_log (batch_id, status, error_class)
  include (completed_at, user_id)
  where batch_id is not null;
drop index public.email_audit_log_batch;
