-- Sender addresses in the one canonical form the API writes (see
-- supabase/functions/_shared/mail/addresses.ts): a dot-atom local part (ASCII atext or
-- UTF-8), an ASCII lower-case host name with at least two labels. The Data API can write
-- from_email too, so the database refuses what the API refuses: no quoted local parts
-- (a second parser may read `"<x@evil>"@example.com` as another mailbox), no domain
-- literals (`a@[127.0.0.1]` reaches internal hosts through a user's relay), no spaces,
-- brackets or control characters.
--
-- Existing rows are lower-cased in the domain where that is all they need; the check is
-- added NOT VALID so that a legacy row the API would now refuse does not block the
-- migration. Sends through such a row fail with `config_invalid_sender` until it is fixed.

update public.user_smtp_configs
   set from_email = split_part(from_email, '@', 1) || '@' || lower(split_part(from_email, '@', 2))
 where from_email ~ '^[^@]+@[^@]+$'
   and split_part(from_email, '@', 2) <> lower(split_part(from_email, '@', 2));

alter table public.user_smtp_configs
  drop constraint user_smtp_configs_from_email_shape,
  add constraint user_smtp_configs_from_email_canonical check (
    char_length(from_email) <= 320
    and from_email ~ (
      '^([A-Za-z0-9!#$%&''*+/=?^_`{|}~-]|[^\x01-\x7f])+(\.([A-Za-z0-9!#$%&''*+/=?^_`{|}~-]|[^\x01-\x7f])+)*'
      -- Host name labels: lower-case LDH, or UTF-8 (U-labels) when the local part is UTF-8.
      || '@(([a-z0-9]|[^\x01-\x7f])(([a-z0-9-]|[^\x01-\x7f])*([a-z0-9]|[^\x01-\x7f]))?\.)+'
      || '([a-z0-9]|[^\x01-\x7f])(([a-z0-9-]|[^\x01-\x7f])*([a-z0-9]|[^\x01-\x7f]))?$'
    )
    and from_email !~ '\.[0-9]+$'
    and from_email !~ '[[:cntrl:][:space:]]'
  ) not valid;
