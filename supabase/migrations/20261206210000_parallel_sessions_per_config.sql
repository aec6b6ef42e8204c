-- The outbox worker now sends each config's mail over up to max_connections sessions at once
-- (it sent one message at a time per config before), so the setting decides a config's drain
-- rate as well as what one function instance holds open.
--
-- New configs take 3 sessions (what Microsoft 365 allows a mailbox; Gmail allows about 15),
-- and no config takes more than 10: beyond that a single mailbox is better served by a
-- provider's HTTPS API, and most servers refuse more from one client. Existing configs keep
-- their setting (it may have been chosen), brought down to 10 where it was higher.

update public.user_smtp_configs set max_connections = 10 where max_connections > 10;

alter table public.user_smtp_configs
  alter column max_connections set default 3,
  drop constraint user_smtp_configs_max_connections,
  add constraint user_smtp_configs_max_connections check (max_connections between 1 and 10);

comment on column public.user_smtp_configs.max_connections is
  'SMTP sessions to this server one function instance or outbox worker holds at once (1-10, default 3): the outbox '
  'sends a config''s mail over this many sessions in parallel';
