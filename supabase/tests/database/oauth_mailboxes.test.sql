-- OAuth mailboxes: the grant's secrets in Vault, reachable only through owner-checked functions;
-- the shape of an OAuth config; secrets dropped when the issuer or client changes and when the
-- config is deleted; a rotated refresh token stored only over the one the refresh presented.
begin;
create extension if not exists pgtap with schema extensions;
set local search_path = public, extensions;

select plan(32);

insert into auth.users (id, email) values
  ('aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'alice@example.test'),
  ('bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb', 'bob@example.test');

-- The fixtures' ids are fixed (the migration role inserts them); the Data API's own insert is below.
insert into public.user_smtp_configs
  (id, user_id, name, host, port, from_email, auth_type, transport, oauth_provider, oauth_client_id, oauth_tenant)
values ('a1a1a1a1-0000-4000-8000-000000000001', 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'm365', 'graph.microsoft.com',
        443, 'alice@contoso.test', 'oauth2', 'graph', 'microsoft', 'client-a', 'contoso.onmicrosoft.com');
insert into public.user_smtp_configs
  (id, user_id, name, host, port, from_email, auth_type, transport, oauth_provider, oauth_client_id)
values ('a2a2a2a2-0000-4000-8000-000000000002', 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'gsmtp', 'smtp.gmail.com',
        465, 'alice@gmail.test', 'oauth2', 'smtp', 'google', 'client-g');

set local role authenticated;
set local request.jwt.claims to '{"sub":"aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa","role":"authenticated"}';

select lives_ok(
  $$insert into public.user_smtp_configs (name, host, port, from_email, auth_type, transport, oauth_provider, oauth_client_id)
    values ('gmail', 'gmail.googleapis.com', 443, 'alice@gmail.test', 'oauth2', 'gmail_api', 'google', 'client-g')$$,
  'owner creates a Gmail API config through the Data API''s privileges'
);
select is(
  (select count(*)::int from public.user_smtp_configs where auth_type = 'oauth2'),
  3,
  'and sees her three OAuth configs'
);
select throws_ok(
  $$insert into public.user_smtp_configs (name, host, port, from_email, auth_type, transport, oauth_provider, oauth_client_id)
    values ('bad1', 'gmail.googleapis.com', 443, 'alice@x.test', 'oauth2', 'graph', 'google', 'c')$$,
  '23514', null, 'Graph is for Microsoft mailboxes only'
);
select throws_ok(
  $$insert into public.user_smtp_configs (name, host, port, from_email, transport)
    values ('bad2', 'smtp.x.test', 465, 'alice@x.test', 'gmail_api')$$,
  '23514', null, 'a password config cannot use an HTTPS transport'
);
select throws_ok(
  $$insert into public.user_smtp_configs (name, host, port, from_email, auth_type, oauth_provider, oauth_client_id, oauth_token_url)
    values ('bad3', 'smtp.x.test', 465, 'alice@x.test', 'oauth2', 'custom', 'c', 'http://169.254.169.254/token')$$,
  '23514', null, 'a custom provider''s token endpoint is https, never plain http (see oauth_custom_provider.test.sql)'
);
select throws_ok(
  $$insert into public.user_smtp_configs (name, host, port, from_email, auth_type, oauth_provider, oauth_client_id, oauth_token_url)
    values ('bad4', 'smtp.x.test', 465, 'alice@x.test', 'oauth2', 'google', 'c', 'https://evil.test/token')$$,
  '23514', null, 'only a custom provider names its token endpoint'
);
select throws_ok(
  $$update public.user_smtp_configs set oauth_refresh_token_secret_id = gen_random_uuid()
     where id = 'a1a1a1a1-0000-4000-8000-000000000001'$$,
  '42501', null, 'the secret ids are not writable through the Data API'
);

-- Secrets through the owner-checked functions --------------------------------------------------
select lives_ok(
  $$select private.set_smtp_config_oauth('a1a1a1a1-0000-4000-8000-000000000001', 'rt-alice-1', 'cs-alice')$$,
  'owner stores the grant'
);
select results_eq(
  $$select provider, client_id, tenant, transport, refresh_token, client_secret, access_token
      from private.smtp_config_oauth_credentials('a1a1a1a1-0000-4000-8000-000000000001')$$,
  $$values ('microsoft'::text, 'client-a'::text, 'contoso.onmicrosoft.com'::text, 'graph'::text, 'rt-alice-1'::text,
            'cs-alice'::text, null::text)$$,
  'owner reads the grant back, with no access token yet'
);
select throws_ok(
  $$select private.set_smtp_config_password('a1a1a1a1-0000-4000-8000-000000000001', 'pw')$$,
  '23514', null, 'an OAuth config holds no password'
);
select lives_ok($$select private.lock_oauth_refresh('a1a1a1a1-0000-4000-8000-000000000001')$$, 'owner takes the refresh lock');
select is(
  private.store_oauth_tokens('a1a1a1a1-0000-4000-8000-000000000001', 'at-1', now() + interval '1 hour', 'rt-alice-1', 'rt-alice-2'),
  true,
  'a refresh stores its access token and the rotated refresh token'
);
select results_eq(
  $$select refresh_token, access_token from private.smtp_config_oauth_credentials('a1a1a1a1-0000-4000-8000-000000000001')$$,
  $$values ('rt-alice-2'::text, 'at-1'::text)$$,
  'the rotated refresh token replaced the old one; the access token is shared'
);
select is(
  private.store_oauth_tokens('a1a1a1a1-0000-4000-8000-000000000001', 'at-stale', now() + interval '1 hour', 'rt-alice-1', 'rt-alice-3'),
  false,
  'a slow refresh that presented a rotated-away token stores nothing'
);
select results_eq(
  $$select refresh_token, access_token from private.smtp_config_oauth_credentials('a1a1a1a1-0000-4000-8000-000000000001')$$,
  $$values ('rt-alice-2'::text, 'at-1'::text)$$,
  'so the newer grant stays'
);
select is(
  (select count(*)::int from public.user_smtp_configs where id = 'a1a1a1a1-0000-4000-8000-000000000001'
      and oauth_access_token_expires_at > now()),
  1,
  'the owner sees when the access token expires, never the token'
);

-- Bob can neither read nor write Alice's grant --------------------------------------------------
set local request.jwt.claims to '{"sub":"bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb","role":"authenticated"}';
select is_empty(
  $$select * from private.smtp_config_oauth_credentials('a1a1a1a1-0000-4000-8000-000000000001')$$,
  'another user reads nothing'
);
select throws_ok(
  $$select private.set_smtp_config_oauth('a1a1a1a1-0000-4000-8000-000000000001', 'rt-bob')$$,
  'P0002', null, 'another user cannot replace the grant'
);
select throws_ok(
  $$select private.store_oauth_tokens('a1a1a1a1-0000-4000-8000-000000000001', 'at-bob', now() + interval '1 hour', 'rt-alice-2')$$,
  'P0002', null, 'another user cannot plant an access token'
);
select throws_ok(
  $$select private.lock_oauth_refresh('a1a1a1a1-0000-4000-8000-000000000001')$$,
  'P0002', null, 'another user cannot hold the refresh lock'
);
select is(
  private.forget_oauth_access_token('a1a1a1a1-0000-4000-8000-000000000001', 'at-1'),
  false,
  'another user cannot make Alice''s workers drop their token'
);
select throws_ok($$select * from vault.decrypted_secrets$$, '42501', null, 'Vault is out of reach of the API roles');

-- A changed issuer or client drops the secrets in the same statement ---------------------------
set local request.jwt.claims to '{"sub":"aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa","role":"authenticated"}';
select results_eq(
  $$select access_token from private.smtp_config_oauth_credentials('a1a1a1a1-0000-4000-8000-000000000001')$$,
  $$values ('at-1'::text)$$,
  'so the token stays'
);
select is(
  private.forget_oauth_access_token('a1a1a1a1-0000-4000-8000-000000000001', 'at-other'),
  false,
  'a refusal of another token (a newer one replaced it) keeps the stored one'
);
select is(
  private.forget_oauth_access_token('a1a1a1a1-0000-4000-8000-000000000001', 'at-1'),
  true,
  'the owner forgets the token the provider refused'
);
select lives_ok(
  $$select private.set_smtp_config_oauth('a2a2a2a2-0000-4000-8000-000000000002', 'rt-custom', 'cs-custom')$$,
  'owner stores the Gmail grant'
);
update public.user_smtp_configs set oauth_client_id = 'client-attacker'
 where id = 'a2a2a2a2-0000-4000-8000-000000000002';
select results_eq(
  $$select refresh_token, client_secret from private.smtp_config_oauth_credentials('a2a2a2a2-0000-4000-8000-000000000002')$$,
  $$values (null::text, null::text)$$,
  'another client never receives the old grant'
);
update public.user_smtp_configs set oauth_tenant = 'fabrikam.onmicrosoft.com'
 where id = 'a1a1a1a1-0000-4000-8000-000000000001';
select results_eq(
  $$select refresh_token, access_token from private.smtp_config_oauth_credentials('a1a1a1a1-0000-4000-8000-000000000001')$$,
  $$values (null::text, null::text)$$,
  'a new tenant drops the grant and its access token'
);
update public.user_smtp_configs set from_name = 'Alice' where id = 'a2a2a2a2-0000-4000-8000-000000000002';
select lives_ok(
  $$select private.set_smtp_config_oauth('a2a2a2a2-0000-4000-8000-000000000002', 'rt-custom-2')$$,
  'a grant is stored again'
);
update public.user_smtp_configs set from_name = 'Alice A.' where id = 'a2a2a2a2-0000-4000-8000-000000000002';
select results_eq(
  $$select refresh_token from private.smtp_config_oauth_credentials('a2a2a2a2-0000-4000-8000-000000000002')$$,
  $$values ('rt-custom-2'::text)$$,
  'other changes keep the grant'
);

-- Deleting the config deletes its secrets -------------------------------------------------------
reset role;
create temporary table oauth_secret_ids as
  select unnest(array[oauth_refresh_token_secret_id, oauth_client_secret_secret_id, oauth_access_token_secret_id]) as id
    from public.user_smtp_configs where id = 'a2a2a2a2-0000-4000-8000-000000000002';
set local role authenticated;
delete from public.user_smtp_configs where id = 'a2a2a2a2-0000-4000-8000-000000000002';
reset role;
select is(
  (select count(*)::int from vault.secrets where id in (select id from oauth_secret_ids where id is not null)),
  0,
  'the deleted config''s secrets are gone from Vault'
);
select is(
  (select count(*)::int from oauth_secret_ids where id is not null),
  1,
  'it had one (the refresh token; the client secret was dropped with the old client)'
);

select * from finish();
rollback;
