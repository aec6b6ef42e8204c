-- A `custom` OAuth provider: any OAuth 2.0 issuer, named by its own token endpoint (and the scopes
-- to ask for), for XOAUTH2 over SMTP. 20261206150000 kept it out of the table until the functions
-- checked that endpoint as they check an SMTP server; they now do, at every refresh (not only when
-- the API creates the config, so a URL written through the Data API gets the same treatment): the
-- host is resolved once and refused when it is, or resolves to, a non-public address; the request
-- goes to the checked address with TLS verified against the name; HTTPS only, on 443 unless the
-- deployment allows another port; no redirect is followed; the answer is capped in size and time
-- (supabase/functions/_shared/oauth/egress_fetch.ts).
--
-- What 20261206150000 already holds for it, unchanged: a custom provider must name its token
-- endpoint (an https URL) and only it may; scopes are 1 to 20 non-null entries; it cannot use the
-- HTTPS transports (graph is Microsoft's, gmail_api Google's); and a changed token URL or scopes
-- drops the stored grant in the same statement, so a refresh token never reaches an endpoint other
-- than the one it was given for.

alter table public.user_smtp_configs
  drop constraint user_smtp_configs_oauth_provider,
  add constraint user_smtp_configs_oauth_provider check (oauth_provider in ('google', 'microsoft', 'custom'));
