-- A stored SMTP password never follows its config to another destination or account.
--
-- Why: a password was given for one account (username) on one server (host, port,
-- security). Before this, PATCHing `host` without a password (or an UPDATE through the
-- Data API) kept the Vault secret, and the next verify or send handed it to whatever
-- server the config now named, a server the caller may control. So, on every UPDATE of
-- public.user_smtp_configs, whoever makes it:
-- * host, port, security or username changed and the secret id is not being replaced in
--   the same statement -> the Vault secret is deleted and `password_secret_id` set to
--   null. Sends and verifies through the config then answer 422 `config_incomplete`
--   until a password is stored again (the API stores one given in the same PATCH after
--   the destination, so that new secret survives).
-- * A username change drops the password too: on the same server it would otherwise be
--   tried against another account (password spraying) without counting as a password
--   change.
-- * `credentials_changed_at` / `credentials_verified_at` record when the credentials last
--   changed and when they last authenticated successfully since; any change above, or a
--   new or rotated password, makes them unproven again (see the next migration for what
--   that limits). Neither column is writable by API roles.

alter table public.user_smtp_configs
  add column credentials_changed_at timestamptz not null default now(),
  add column credentials_verified_at timestamptz;

comment on column public.user_smtp_configs.credentials_changed_at is
  'When the destination, username or password last changed (set by triggers and private functions only).';
comment on column public.user_smtp_configs.credentials_verified_at is
  'When these credentials last authenticated successfully; null = unproven (set by private functions only).';

create function private.drop_password_on_destination_change() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if (new.host, new.port, new.security, new.username) is distinct from (old.host, old.port, old.security, old.username)
     and new.password_secret_id is not distinct from old.password_secret_id
     and old.password_secret_id is not null then
    delete from vault.secrets where id = old.password_secret_id;
    new.password_secret_id := null;
  end if;
  if (new.host, new.port, new.security, new.username, new.password_secret_id)
     is distinct from (old.host, old.port, old.security, old.username, old.password_secret_id) then
    -- clock_timestamp(): distinct from an attempt started earlier in the same transaction.
    new.credentials_changed_at := clock_timestamp();
    new.credentials_verified_at := null;
  end if;
  return new;
end
$$;

revoke all on function private.drop_password_on_destination_change() from public, anon, authenticated;

create trigger user_smtp_configs_drop_password_on_destination_change
  before update on public.user_smtp_configs
  for each row execute function private.drop_password_on_destination_change();
