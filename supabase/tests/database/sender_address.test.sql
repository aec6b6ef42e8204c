-- public.user_smtp_configs.from_email: the database accepts only the canonical sender
-- form the API writes, also when a user writes through the Data API (as authenticated).
begin;
create extension if not exists pgtap with schema extensions;
set local search_path = public, extensions;

select plan(12);

insert into auth.users (id, email) values ('aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'alice@example.test');
insert into public.user_smtp_configs (id, user_id, name, host, port, security, username, from_email)
values ('a1a1a1a1-0000-4000-8000-000000000001', 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa',
        'work', 'smtp.work.example', 465, 'tls', 'alice', 'alice@work.example');

set local role authenticated;
set local request.jwt.claims to '{"sub":"aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa","role":"authenticated"}';

create function pg_temp.set_from(p_from text) returns void language sql as $$
  update public.user_smtp_configs set from_email = p_from where id = 'a1a1a1a1-0000-4000-8000-000000000001'
$$;

select lives_ok($$select pg_temp.set_from('jane.doe+tag@mail.example.com')$$, 'a dot-atom address is accepted');
select lives_ok($$select pg_temp.set_from('o''brien@example.com')$$, 'an apostrophe is atext');
select lives_ok($$select pg_temp.set_from('jörg@bücher.de')$$, 'a UTF-8 address (SMTPUTF8) is accepted');
select throws_ok($$select pg_temp.set_from('"<attacker@evil.example>"@example.com')$$, '23514', null,
  'a quoted local part is refused');
select throws_ok($$select pg_temp.set_from('"john"@example.com')$$, '23514', null,
  'quotes are refused even where they are not needed (the API writes the unquoted form)');
select throws_ok($$select pg_temp.set_from('a@[127.0.0.1]')$$, '23514', null, 'a domain literal is refused');
select throws_ok($$select pg_temp.set_from('a@127.0.0.1')$$, '23514', null, 'a numeric top-level label is refused');
select throws_ok($$select pg_temp.set_from('a b@example.com')$$, '23514', null, 'a space is refused');
select throws_ok($$select pg_temp.set_from('a@Example.COM')$$, '23514', null, 'the domain is stored in lower case');
select throws_ok($$select pg_temp.set_from('a..b@example.com')$$, '23514', null, 'consecutive dots are refused');
select throws_ok($$select pg_temp.set_from('a@localhost')$$, '23514', null, 'a single-label domain is refused');
select throws_ok($$select pg_temp.set_from(E'a\u0007@example.com')$$, '23514', null,
  'a control character is refused');

select * from finish();
rollback;
