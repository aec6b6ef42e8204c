-- OAuth 2.0 mailboxes (Gmail / Google Workspace, Microsoft 365): a config logs in with a
-- password, as before, or with an OAuth grant, and sends over SMTP (SASL XOAUTH2) or over the
-- provider's HTTPS API where SMTP cannot go (Microsoft Graph: Microsoft 365 submits only on 587,
-- which hosted Edge Functions cannot reach; the Gmail API).
--
-- Why the shape:
-- * The grant's secrets (refresh token, client secret) and the current access token live in
--   Vault like passwords: the config row holds only their ids, which no API role may write, and
--   only owner-checked SECURITY DEFINER functions read them, for the sending paths.
-- * The issuer and client (provider, tenant, token URL, client id) and the transport are plain
--   columns the owner may set; changing any of them drops the secrets in the same statement (the
--   trigger below), as a new host drops a password: a refresh token must never reach a token
--   endpoint other than the one that issued it (a user-supplied `custom` token URL is the risk).
-- * One refresh per mailbox, however many workers ask at once: a refresh runs under a
--   transaction-scoped advisory lock on the config, and its result (the access token and its
--   expiry, and a rotated refresh token) is stored before the lock is released, so the others
--   find a fresh token instead of refreshing again. A rotated refresh token replaces the stored
--   one only if the stored one is still the one presented (compare-and-swap), so a slow refresh
--   can never put back a token that was already rotated away.

alter table public.user_smtp_configs
  drop constraint user_smtp_configs_auth_type,
  add constraint user_smtp_configs_auth_type check (auth_type in ('password', 'oauth2')),
  add column transport text not null default 'smtp',
  add column oauth_provider text,
  add column oauth_client_id text,
  add column oauth_tenant text,
  add column oauth_token_url text,
  add column oauth_scopes text[],
  add column oauth_refresh_token_secret_id uuid,
  add column oauth_client_secret_secret_id uuid,
  add column oauth_access_token_secret_id uuid,
  add column oauth_access_token_expires_at timestamptz,
  add constraint user_smtp_configs_transport check (transport in ('smtp', 'graph', 'gmail_api')),
  -- `custom` (a provider naming its own token endpoint) is kept out until the functions check that
  -- endpoint as they check an SMTP server (resolved, no private addresses): a refresh would
  -- otherwise POST from our network to any URL a user wrote through the Data API.
  add constraint user_smtp_configs_oauth_provider check (oauth_provider in ('google', 'microsoft')),
  add constraint user_smtp_configs_oauth_client_id check (char_length(oauth_client_id) between 1 and 512),
  add constraint user_smtp_configs_oauth_tenant check (oauth_tenant ~ '^[A-Za-z0-9.-]{1,255}$'),
  add constraint user_smtp_configs_oauth_token_url check (
    char_length(oauth_token_url) <= 2048 and oauth_token_url ~ '^https://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[^[:space:]#]*)?$'
  ),
  add constraint user_smtp_configs_oauth_scopes check (
    cardinality(oauth_scopes) between 1 and 20 and array_position(oauth_scopes, null) is null
  ),
  -- A password config has no OAuth part; an OAuth config names its issuer and client, and no password.
  add constraint user_smtp_configs_auth_shape check (
    case auth_type
      when 'password' then transport = 'smtp' and oauth_provider is null and oauth_client_id is null
        and oauth_refresh_token_secret_id is null and oauth_client_secret_secret_id is null
        and oauth_access_token_secret_id is null
      else oauth_provider is not null and oauth_client_id is not null and password_secret_id is null
    end
  ),
  -- Only a custom provider names its token endpoint (and its scopes); only Microsoft has tenants.
  add constraint user_smtp_configs_oauth_issuer check (
    (oauth_provider is distinct from 'custom' or oauth_token_url is not null)
    and (oauth_token_url is null or oauth_provider = 'custom')
    and (oauth_tenant is null or oauth_provider = 'microsoft')
  ),
  -- Graph sends for Microsoft mailboxes, the Gmail API for Google ones.
  add constraint user_smtp_configs_https_transport check (
    transport = 'smtp' or (transport = 'graph' and oauth_provider = 'microsoft')
    or (transport = 'gmail_api' and oauth_provider = 'google')
  );

comment on column public.user_smtp_configs.transport is
  'How messages leave: smtp (password or XOAUTH2), graph (Microsoft Graph sendMail) or gmail_api (OAuth only).';
comment on column public.user_smtp_configs.oauth_refresh_token_secret_id is
  'Vault secret holding the OAuth refresh token (set by private functions only).';

-- The owner chooses the issuer, client and transport; the secret ids stay out of reach.
grant insert (auth_type, transport, oauth_provider, oauth_client_id, oauth_tenant, oauth_token_url, oauth_scopes),
      update (auth_type, transport, oauth_provider, oauth_client_id, oauth_tenant, oauth_token_url, oauth_scopes)
  on public.user_smtp_configs to authenticated;

-- Credentials follow their destination: a password its server and account (as before), an OAuth
-- grant its issuer, client and transport. Replaces the function of 20261125130000.
create or replace function private.drop_password_on_destination_change() returns trigger
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
  if (new.auth_type, new.transport, new.oauth_provider, new.oauth_client_id, new.oauth_tenant, new.oauth_token_url,
      new.oauth_scopes)
     is distinct from (old.auth_type, old.transport, old.oauth_provider, old.oauth_client_id, old.oauth_tenant,
                       old.oauth_token_url, old.oauth_scopes) then
    if new.oauth_refresh_token_secret_id is not distinct from old.oauth_refresh_token_secret_id
       and old.oauth_refresh_token_secret_id is not null then
      delete from vault.secrets where id = old.oauth_refresh_token_secret_id;
      new.oauth_refresh_token_secret_id := null;
    end if;
    if new.oauth_client_secret_secret_id is not distinct from old.oauth_client_secret_secret_id
       and old.oauth_client_secret_secret_id is not null then
      delete from vault.secrets where id = old.oauth_client_secret_secret_id;
      new.oauth_client_secret_secret_id := null;
    end if;
    if old.oauth_access_token_secret_id is not null then
      delete from vault.secrets where id = old.oauth_access_token_secret_id;
      new.oauth_access_token_secret_id := null;
      new.oauth_access_token_expires_at := null;
    end if;
  end if;
  if (new.host, new.port, new.security, new.username, new.password_secret_id, new.auth_type, new.transport,
      new.oauth_provider, new.oauth_client_id, new.oauth_tenant, new.oauth_token_url, new.oauth_scopes,
      new.oauth_refresh_token_secret_id, new.oauth_client_secret_secret_id)
     is distinct from (old.host, old.port, old.security, old.username, old.password_secret_id, old.auth_type,
                       old.transport, old.oauth_provider, old.oauth_client_id, old.oauth_tenant, old.oauth_token_url,
                       old.oauth_scopes, old.oauth_refresh_token_secret_id, old.oauth_client_secret_secret_id) then
    -- clock_timestamp(): distinct from an attempt started earlier in the same transaction.
    new.credentials_changed_at := clock_timestamp();
    new.credentials_verified_at := null;
  end if;
  return new;
end
$$;

-- Every secret of a deleted config goes with it. Replaces the function of 20261124081000.
create or replace function private.delete_smtp_config_secrets() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  delete from vault.secrets
   where id in (old.password_secret_id, old.oauth_refresh_token_secret_id, old.oauth_client_secret_secret_id,
                old.oauth_access_token_secret_id);
  return old;
end
$$;

-- A config's Vault secret stored or replaced in place: its id (the one given, or a new one).
-- Called only by the SECURITY DEFINER functions below, which have checked the caller owns the config.
create function private.put_config_secret(p_secret_id uuid, p_value text, p_name text, p_description text)
returns uuid
language plpgsql
set search_path = ''
as $$
begin
  if p_secret_id is null then
    return vault.create_secret(p_value, p_name, p_description);
  end if;
  perform vault.update_secret(p_secret_id, p_value);
  return p_secret_id;
end
$$;

-- Store (or replace) the grant of an OAuth config the caller owns: its refresh token, and its
-- client secret when the app has one (null leaves a stored one as it is). Counted as a
-- credential change, like a password.
create function private.set_smtp_config_oauth(p_config_id uuid, p_refresh_token text, p_client_secret text default null)
returns void
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_user_id uuid := (select auth.uid());
  v_config record;
begin
  if p_refresh_token is null or p_refresh_token = '' or char_length(p_refresh_token) > 4096 then
    raise exception 'refresh_token must be 1 to 4096 characters' using errcode = '22023';
  end if;
  if p_client_secret = '' or char_length(p_client_secret) > 1024 then
    raise exception 'client_secret must be 1 to 1024 characters' using errcode = '22023';
  end if;

  select c.auth_type, c.oauth_refresh_token_secret_id, c.oauth_client_secret_secret_id, c.oauth_access_token_secret_id
    into v_config
    from public.user_smtp_configs c
   where c.id = p_config_id and c.user_id = v_user_id
     for update;
  if not found then
    raise exception 'smtp config not found' using errcode = 'P0002';
  end if;
  if v_config.auth_type <> 'oauth2' then
    raise exception 'the config logs in with a password, not OAuth' using errcode = '22023';
  end if;

  perform private.enforce_credential_limit(v_user_id, 'password_change');
  perform private.record_credential_event(v_user_id, 'password_set', p_config_id);

  update public.user_smtp_configs
     set oauth_refresh_token_secret_id = private.put_config_secret(
           v_config.oauth_refresh_token_secret_id, p_refresh_token,
           'smtp_config_oauth_refresh_' || p_config_id::text, 'OAuth refresh token of mailroom config ' || p_config_id::text),
         oauth_client_secret_secret_id = case when p_client_secret is null then v_config.oauth_client_secret_secret_id
           else private.put_config_secret(
             v_config.oauth_client_secret_secret_id, p_client_secret,
             'smtp_config_oauth_client_' || p_config_id::text, 'OAuth client secret of mailroom config ' || p_config_id::text)
           end
   where id = p_config_id;
  -- A new grant: the access token of the old one is no longer ours to use.
  if v_config.oauth_access_token_secret_id is not null then
    delete from vault.secrets where id = v_config.oauth_access_token_secret_id;
  end if;
  update public.user_smtp_configs
     set oauth_access_token_secret_id = null, oauth_access_token_expires_at = null,
         credentials_changed_at = clock_timestamp(), credentials_verified_at = null
   where id = p_config_id;
end
$$;

-- Serialise refreshes of one config's token across workers and instances, until commit.
create function private.lock_oauth_refresh(p_config_id uuid)
returns void
language plpgsql
security definer
set search_path = ''
as $$
begin
  if not exists (select 1 from public.user_smtp_configs c where c.id = p_config_id and c.user_id = (select auth.uid())) then
    raise exception 'smtp config not found' using errcode = 'P0002';
  end if;
  perform pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended('mailroom.oauth_refresh:' || p_config_id::text, 0));
end
$$;

-- The grant of an OAuth config the caller owns, decrypted, with the current access token while
-- it is still valid: for the sending paths only; nothing for anybody else.
create function private.smtp_config_oauth_credentials(p_config_id uuid)
returns table (
  provider text, client_id text, tenant text, token_url text, scopes text[], transport text,
  refresh_token text, client_secret text, access_token text, access_token_expires_at timestamptz
)
language sql
stable
security definer
set search_path = ''
as $$
  select c.oauth_provider, c.oauth_client_id, c.oauth_tenant, c.oauth_token_url, c.oauth_scopes, c.transport,
         r.decrypted_secret, s.decrypted_secret,
         case when c.oauth_access_token_expires_at > now() then a.decrypted_secret end,
         case when c.oauth_access_token_expires_at > now() then c.oauth_access_token_expires_at end
    from public.user_smtp_configs c
    left join vault.decrypted_secrets r on r.id = c.oauth_refresh_token_secret_id
    left join vault.decrypted_secrets s on s.id = c.oauth_client_secret_secret_id
    left join vault.decrypted_secrets a on a.id = c.oauth_access_token_secret_id
   where c.id = p_config_id
     and c.user_id = (select auth.uid())
     and c.auth_type = 'oauth2'
$$;

-- Keep a refresh's result for the other workers: the access token and its expiry, and a rotated
-- refresh token, which replaces the stored one only if that is still `p_presented` (the one the
-- refresh used). Returns whether the rotation (when there was one) was stored.
create function private.store_oauth_tokens(
  p_config_id uuid,
  p_access_token text,
  p_expires_at timestamptz,
  p_presented text,
  p_rotated text default null
)
returns boolean
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_config record;
  v_current text;
begin
  if p_access_token is null or p_access_token = '' or p_expires_at is null then
    raise exception 'an access token and its expiry are required' using errcode = '22023';
  end if;
  select c.oauth_refresh_token_secret_id, c.oauth_access_token_secret_id into v_config
    from public.user_smtp_configs c
   where c.id = p_config_id and c.user_id = (select auth.uid()) and c.auth_type = 'oauth2'
     for update;
  if not found then
    raise exception 'smtp config not found' using errcode = 'P0002';
  end if;
  select s.decrypted_secret into v_current from vault.decrypted_secrets s where s.id = v_config.oauth_refresh_token_secret_id;
  -- The grant changed while the refresh ran (re-authorised, or rotated by another worker):
  -- this token belongs to a grant that is no longer stored.
  if v_current is distinct from p_presented then
    return false;
  end if;
  update public.user_smtp_configs
     set oauth_access_token_secret_id = private.put_config_secret(
           v_config.oauth_access_token_secret_id, p_access_token,
           'smtp_config_oauth_access_' || p_config_id::text, 'OAuth access token of mailroom config ' || p_config_id::text),
         oauth_access_token_expires_at = p_expires_at
   where id = p_config_id;
  if p_rotated is not null and p_rotated <> p_presented then
    perform vault.update_secret(v_config.oauth_refresh_token_secret_id, p_rotated);
  end if;
  return true;
end
$$;

-- Forget the shared access token after the provider refused it (revoked early), unless a newer
-- one replaced it meanwhile: the next send refreshes instead of trying the refused one again.
create function private.forget_oauth_access_token(p_config_id uuid, p_access_token text)
returns boolean
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_secret_id uuid;
begin
  select c.oauth_access_token_secret_id into v_secret_id
    from public.user_smtp_configs c
   where c.id = p_config_id and c.user_id = (select auth.uid())
     for update;
  if v_secret_id is null
     or not exists (select 1 from vault.decrypted_secrets s where s.id = v_secret_id and s.decrypted_secret = p_access_token) then
    return false;
  end if;
  update public.user_smtp_configs
     set oauth_access_token_secret_id = null, oauth_access_token_expires_at = null
   where id = p_config_id;
  delete from vault.secrets where id = v_secret_id;
  return true;
end
$$;

-- The credential guard (20261125130100) covers OAuth grants too: a refresh with a grant that has
-- not worked yet is a login attempt, counted against the user's failed-login limit when the
-- provider refuses it, so the functions cannot be used to try grants (or client secrets) at a
-- provider's token endpoint over and over. Replaces the function of 20261125130100.
create or replace function private.begin_smtp_authentication(p_config_id uuid)
returns bigint
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_user_id uuid := (select auth.uid());
  v_config record;
  v_attempt_id bigint;
begin
  select c.auth_type, c.username, c.password_secret_id, c.oauth_refresh_token_secret_id,
         c.credentials_verified_at, c.credentials_changed_at
    into v_config
    from public.user_smtp_configs c
   where c.id = p_config_id and c.user_id = v_user_id
     for share;
  if not found then
    raise exception 'smtp config not found' using errcode = 'P0002';
  end if;
  -- No login (or none possible without its secret), or proven credentials: nothing to guess.
  if v_config.credentials_verified_at is not null
     or (v_config.auth_type = 'password' and (v_config.username is null or v_config.password_secret_id is null))
     or (v_config.auth_type = 'oauth2' and v_config.oauth_refresh_token_secret_id is null) then
    return null;
  end if;

  -- Credentials already being tried, or already refused, within the window are no new guess.
  if not exists (
    select 1 from private.credential_events e
     where e.user_id = v_user_id and e.config_id = p_config_id and e.credentials_as_of = v_config.credentials_changed_at
       and e.kind in ('auth_attempt', 'auth_failed') and e.created_at > now() - interval '1 hour'
  ) then
    perform private.enforce_credential_limit(v_user_id, 'auth_failure');
  else
    perform pg_advisory_xact_lock(hashtextextended('mailroom.credential_events:' || v_user_id::text, 0));
  end if;
  perform private.record_credential_event(v_user_id, 'auth_attempt', p_config_id, v_config.credentials_changed_at);
  select max(e.id) into v_attempt_id
    from private.credential_events e
   where e.user_id = v_user_id and e.config_id = p_config_id and e.kind = 'auth_attempt';
  return v_attempt_id;
end
$$;

revoke all on function private.forget_oauth_access_token(uuid, text) from public, anon, authenticated;
grant execute on function private.forget_oauth_access_token(uuid, text) to authenticated;
revoke all on function private.put_config_secret(uuid, text, text, text) from public, anon, authenticated;
revoke all on function private.set_smtp_config_oauth(uuid, text, text) from public, anon, authenticated;
revoke all on function private.lock_oauth_refresh(uuid) from public, anon, authenticated;
revoke all on function private.smtp_config_oauth_credentials(uuid) from public, anon, authenticated;
revoke all on function private.store_oauth_tokens(uuid, text, timestamptz, text, text) from public, anon, authenticated;
grant execute on function private.set_smtp_config_oauth(uuid, text, text) to authenticated;
grant execute on function private.lock_oauth_refresh(uuid) to authenticated;
grant execute on function private.smtp_config_oauth_credentials(uuid) to authenticated;
grant execute on function private.store_oauth_tokens(uuid, text, timestamptz, text, text) to authenticated;
