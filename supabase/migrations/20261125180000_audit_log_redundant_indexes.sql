-- Two indexes of email_audit_log are prefixes of others and cost every row version an entry
-- each (an insert per send, and a new version per outcome, since `status` is in the partial
-- indexes' predicates and so no outcome update is HOT):
--   email_audit_log_user_created (user_id, created_at desc) is the prefix of
--   email_audit_log_user_created_id (user_id, created_at desc, id desc), which the analytics use;
--   email_audit_log_config (config_id) is the prefix of email_audit_log_config_created
--   (config_id, created_at desc), which also serves the config_id foreign key's
--   `on delete set null`.
drop index if exists public.email_audit_log_user_created;
drop index if exists public.email_audit_log_config;
