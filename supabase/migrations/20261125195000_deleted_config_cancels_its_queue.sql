-- A deleted config sends nothing more, as the README promises. Its queued and scheduled rows
-- kept waiting with config_id set to null (on delete set null), and the worker then sent them
-- through the user's default config: another server, another sender, mail the user had meant
-- to stop by deleting the config. Now deleting a config cancels what it still had waiting
-- (error_class `config_deleted`); rows already in flight finish and are recorded as usual.

create function private.cancel_queue_of_deleted_config() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  update public.email_audit_log a
     set status = 'cancelled', error_class = 'config_deleted',
         error_message = 'The SMTP config was deleted before this message was sent',
         completed_at = now(), lease_until = null, leased_by = null
   where a.config_id = old.id
     and a.status in ('queued', 'scheduled');
  return old;
end
$$;

create trigger user_smtp_configs_cancel_queue
  before delete on public.user_smtp_configs
  for each row execute function private.cancel_queue_of_deleted_config();

revoke all on function private.cancel_queue_of_deleted_config() from public, anon, authenticated;
