-- One-click unsubscribe (RFC 8058): the public `unsubscribe` function, having checked the link's
-- signature (which names the user, the address and the topic), puts the address on that user's
-- suppression list. No JWT is involved (a mail provider posts the link), so this is the only
-- writer that is not the user: it runs as the functions' database role, never for a client.
create function private.unsubscribe_recipient(p_user uuid, p_address text, p_topic text)
returns boolean
language sql
security definer
set search_path = ''
as $$
  with added as (
    insert into public.suppressions (user_id, address, reason, source)
    select u.id, pg_catalog.lower(p_address), 'unsubscribed',
           left('one-click unsubscribe' || coalesce(' (' || p_topic || ')', ''), 500)
      from auth.users u
     where u.id = p_user
    on conflict (user_id, address) do update
      set reason = 'unsubscribed', source = excluded.source
      where public.suppressions.reason = 'manual'
    returning 1
  )
  select exists (select 1 from added)
$$;

revoke all on function private.unsubscribe_recipient(uuid, text, text) from public, anon, authenticated;

comment on function private.unsubscribe_recipient(uuid, text, text) is
  'One-click unsubscribe: the unsubscribe function calls this after checking the link''s signature.';
