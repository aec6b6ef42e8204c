-- A custom OAuth provider (its own token endpoint and scopes): allowed for XOAUTH2 over SMTP, with
-- an https token URL it must name and only it may; never with an HTTPS transport or a tenant; its
-- grant read only through the owner-checked function, and dropped when the token URL or the
-- scopes change, so a refresh token never reaches an endpoint other than the one it was given for.
begin;
create extension if not exists pgtap with schema extensions;
set local search_path = public, extensions;

select plan(18);

insert into auth.users (id, email) values
  ('aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'alice@example.test'),
  ('bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb', 'bob@example.test');

-- The fixture's id is fixed (the migration role inserts it); the Data API's own inserts are below.
insert into public.user_smtp_configs
  (id, user_id, name, host, port, from_email, auth_type, transport, oauth_provider, oauth_client_id, oauth_token_url,
   oauth_scopes)
values ('c1c1c1c1-0000-4000-8000-000000000001', 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'idp', 'smtp.idp.test', 465,
        'alice@idp.test', 'oauth2', 'smtp', 'custom', 'client-c', 'https://idp.example.com/oauth2/token',
        array['mail.send', 'offline_access']);

set local role authenticated;
set local request.jwt.claims to '{"sub":"aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa","role":"authenticated"}';

-- Shape: what a custom provider may and may not be ---------------------------------------------
select lives_ok(
  $$insert into public.user_smtp_configs
      (name, host, port, from_email, auth_type, transport, oauth_provider, oauth_client_id, oauth_token_url, oauth_scopes)
    values ('idp-2', 'smtp.idp.test', 465, 'alice@idp.test', 'oauth2', 'smtp', 'custom', 'client-c',
            'https://idp.example.com/oauth2/token', array['mail.send'])$$,
  'owner creates a custom-provider config (XOAUTH2 over SMTP) through the Data API''s privileges'
);
select lives_ok(
  $$insert into public.user_smtp_configs
      (name, host, port, from_email, auth_type, oauth_provider, oauth_client_id, oauth_token_url)
    values ('idp-noscope', 'smtp.idp.test', 465, 'alice@idp.test', 'oauth2', 'custom', 'client-c',
            'https://idp.example.com:8443/token')$$,
  'scopes may be left to the grant'
);
select throws_ok(
  $$insert into public.user_smtp_configs (name, host, port, from_email, auth_type, oauth_provider, oauth_client_id)
    values ('bad-nourl', 'smtp.idp.test', 465, 'alice@idp.test', 'oauth2', 'custom', 'c')$$,
  '23514', null, 'a custom provider must name its token endpoint'
);
select throws_ok(
  $$insert into public.user_smtp_configs (name, host, port, from_email, auth_type, oauth_provider, oauth_client_id, oauth_token_url)
    values ('bad-http', 'smtp.idp.test', 465, 'alice@idp.test', 'oauth2', 'custom', 'c', 'http://idp.example.com/token')$$,
  '23514', null, 'its token endpoint is https'
);
select throws_ok(
  $$insert into public.user_smtp_configs (name, host, port, from_email, auth_type, oauth_provider, oauth_client_id, oauth_token_url)
    values ('bad-userinfo', 'smtp.idp.test', 465, 'alice@idp.test', 'oauth2', 'custom', 'c', 'https://u:p@idp.example.com/token')$$,
  '23514', null, 'and carries no credentials'
);
select throws_ok(
  $$insert into public.user_smtp_configs
      (name, host, port, from_email, auth_type, transport, oauth_provider, oauth_client_id, oauth_token_url)
    values ('bad-graph', 'graph.microsoft.com', 443, 'alice@idp.test', 'oauth2', 'graph', 'custom', 'c',
            'https://idp.example.com/token')$$,
  '23514', null, 'a custom provider cannot send through Microsoft Graph'
);
select throws_ok(
  $$insert into public.user_smtp_configs
      (name, host, port, from_email, auth_type, transport, oauth_provider, oauth_client_id, oauth_token_url)
    values ('bad-gmail', 'gmail.googleapis.com', 443, 'alice@idp.test', 'oauth2', 'gmail_api', 'custom', 'c',
            'https://idp.example.com/token')$$,
  '23514', null, 'nor through the Gmail API'
);
select throws_ok(
  $$insert into public.user_smtp_configs
      (name, host, port, from_email, auth_type, oauth_provider, oauth_client_id, oauth_token_url, oauth_tenant)
    values ('bad-tenant', 'smtp.idp.test', 465, 'alice@idp.test', 'oauth2', 'custom', 'c', 'https://idp.example.com/token',
            'contoso.onmicrosoft.com')$$,
  '23514', null, 'a tenant is Microsoft''s only'
);
select throws_ok(
  $$insert into public.user_smtp_configs (name, host, port, from_email, auth_type, oauth_provider, oauth_client_id, oauth_token_url)
    values ('bad-provider', 'smtp.idp.test', 465, 'alice@idp.test', 'oauth2', 'keycloak', 'c', 'https://idp.example.com/token')$$,
  '23514', null, 'providers are google, microsoft and custom, nothing else'
);
select throws_ok(
  $$update public.user_smtp_configs set oauth_provider = 'google' where id = 'c1c1c1c1-0000-4000-8000-000000000001'$$,
  '23514', null, 'google never takes the custom provider''s token endpoint'
);

-- The grant: only through the owner-checked function ------------------------------------------
select lives_ok(
  $$select private.set_smtp_config_oauth('c1c1c1c1-0000-4000-8000-000000000001', 'rt-custom-1', 'cs-custom')$$,
  'owner stores the custom grant'
);
select results_eq(
  $$select provider, token_url, scopes, transport, refresh_token, client_secret
      from private.smtp_config_oauth_credentials('c1c1c1c1-0000-4000-8000-000000000001')$$,
  $$values ('custom'::text, 'https://idp.example.com/oauth2/token'::text, array['mail.send', 'offline_access']::text[],
            'smtp'::text, 'rt-custom-1'::text, 'cs-custom'::text)$$,
  'the sending path reads the endpoint, the scopes and the grant'
);

set local request.jwt.claims to '{"sub":"bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb","role":"authenticated"}';
select is_empty(
  $$select * from private.smtp_config_oauth_credentials('c1c1c1c1-0000-4000-8000-000000000001')$$,
  'another user reads nothing of it'
);
select is_empty(
  $$update public.user_smtp_configs set oauth_token_url = 'https://evil.example.com/token'
     where id = 'c1c1c1c1-0000-4000-8000-000000000001' returning id$$,
  'nor can point it at another endpoint'
);

-- A new endpoint or new scopes: the grant is dropped in the same statement ---------------------
set local request.jwt.claims to '{"sub":"aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa","role":"authenticated"}';
select results_eq(
  $$select refresh_token from private.smtp_config_oauth_credentials('c1c1c1c1-0000-4000-8000-000000000001')$$,
  $$values ('rt-custom-1'::text)$$,
  'the owner''s grant is still there'
);
update public.user_smtp_configs set oauth_token_url = 'https://other-idp.example.com/token'
 where id = 'c1c1c1c1-0000-4000-8000-000000000001';
select results_eq(
  $$select token_url, refresh_token, client_secret
      from private.smtp_config_oauth_credentials('c1c1c1c1-0000-4000-8000-000000000001')$$,
  $$values ('https://other-idp.example.com/token'::text, null::text, null::text)$$,
  'a new token endpoint never receives the old grant (refresh token and client secret dropped)'
);
select lives_ok(
  $$select private.set_smtp_config_oauth('c1c1c1c1-0000-4000-8000-000000000001', 'rt-custom-2')$$,
  'the mailbox is connected again for the new endpoint'
);
update public.user_smtp_configs set oauth_scopes = array['mail.send', 'mail.read']
 where id = 'c1c1c1c1-0000-4000-8000-000000000001';
select results_eq(
  $$select refresh_token from private.smtp_config_oauth_credentials('c1c1c1c1-0000-4000-8000-000000000001')$$,
  $$values (null::text)$$,
  'new scopes drop the grant too'
);

select * from finish();
rollback;
