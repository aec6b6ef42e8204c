-- Events without polling: the audit log is in Supabase Realtime's publication, so a signed-in
-- client subscribes with supabase-js (`postgres_changes` on public.email_audit_log) and receives
-- each change of its own messages' status as it happens. Realtime checks the row against the
-- subscriber's RLS (the select policy "owner can read own audit rows"): a user sees only their
-- own messages, never another user's. Self-hosted projects without the publication skip this.
do $$
begin
  if exists (select 1 from pg_catalog.pg_publication where pubname = 'supabase_realtime')
     and not exists (
       select 1 from pg_catalog.pg_publication_tables
        where pubname = 'supabase_realtime' and schemaname = 'public' and tablename = 'email_audit_log'
     ) then
    alter publication supabase_realtime add table public.email_audit_log;
  end if;
end
$$;
