-- Email templates: per-user templates with variables, rendered logic-less (Mustache)
-- by the sending paths. Users manage their own rows directly through the Data API
-- (supabase-js) or the SDK; starter templates (user_id null, from seed.sql) are
-- readable by every signed-in user and writable by nobody through the API.

create table public.email_templates (
  id uuid primary key default gen_random_uuid(),
  user_id uuid default auth.uid() references auth.users (id) on delete cascade,
  name text not null,
  description text,
  subject text,
  html text,
  text text,
  variables jsonb,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint email_templates_name_length check (char_length(name) between 1 and 64),
  constraint email_templates_has_body check (html is not null or text is not null),
  constraint email_templates_subject_length check (char_length(subject) <= 998),
  constraint email_templates_html_size check (octet_length(html) <= 2097152),
  constraint email_templates_text_size check (octet_length(text) <= 2097152),
  constraint email_templates_description_length check (char_length(description) <= 1000),
  constraint email_templates_variables_shape check (
    variables is null or jsonb_typeof(variables) in ('array', 'object')
  )
);

comment on table public.email_templates is
  'Templates for send-email/send-bulk: Mustache, HTML escaped by default. user_id null = starter template.';

create unique index email_templates_name_per_user on public.email_templates (user_id, name) where user_id is not null;
create unique index email_templates_starter_name on public.email_templates (name) where user_id is null;

create trigger email_templates_set_updated_at
  before update on public.email_templates
  for each row execute function private.set_updated_at();

alter table public.email_templates enable row level security;

revoke all on public.email_templates from anon, authenticated;
grant select, delete on public.email_templates to authenticated;
grant insert (name, description, subject, html, text, variables),
      update (name, description, subject, html, text, variables)
  on public.email_templates to authenticated;

create policy "signed-in users can read own and starter templates"
  on public.email_templates for select to authenticated
  using (user_id = (select auth.uid()) or user_id is null);

create policy "owner can create own templates"
  on public.email_templates for insert to authenticated
  with check (user_id = (select auth.uid()));

create policy "owner can update own templates"
  on public.email_templates for update to authenticated
  using (user_id = (select auth.uid()))
  with check (user_id = (select auth.uid()));

create policy "owner can delete own templates"
  on public.email_templates for delete to authenticated
  using (user_id = (select auth.uid()));

-- The audit row names the template a send used.
alter table public.email_audit_log add column template_id uuid references public.email_templates (id) on delete set null;
grant insert (template_id) on public.email_audit_log to authenticated;

-- As with config_id: the foreign key alone would accept (and reveal) other users' template ids.
alter policy "owner can record own sends in flight" on public.email_audit_log
  with check (
    user_id = (select auth.uid())
    and status in ('scheduled', 'queued', 'sending')
    and completed_at is null
    and message_id is null
    and (
      config_id is null
      or exists (
        select 1 from public.user_smtp_configs c
         where c.id = config_id and c.user_id = (select auth.uid())
      )
    )
    and (
      template_id is null
      or exists (
        select 1 from public.email_templates t
         where t.id = template_id and (t.user_id = (select auth.uid()) or t.user_id is null)
      )
    )
  );
