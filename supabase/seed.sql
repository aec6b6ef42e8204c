-- Starter templates (user_id null: readable by every signed-in user, editable by none
-- through the API). Copy one into your own templates to change it. Idempotent:
-- `supabase db push --include-seed` (the local stack) re-applies it when it changes.

insert into public.email_templates (user_id, name, description, subject, html, text, variables)
values
(
  null,
  'welcome',
  'Onboarding: greet a new user and give them their login link.',
  'Welcome to {{product}}, {{name}}!',
  '<!doctype html><html><body style="font-family:system-ui,sans-serif;line-height:1.5">
<h1>Welcome, {{name}}!</h1>
<p>Your {{product}} account is ready.</p>
<p><a href="{{login_url}}" style="background:#3ecf8e;color:#fff;padding:.6em 1.2em;border-radius:6px;text-decoration:none">Sign in</a></p>
{{#tips.length}}<h2>Three things to try</h2><ul>{{#tips}}<li>{{.}}</li>{{/tips}}</ul>{{/tips.length}}
<p>— The {{product}} team</p>
</body></html>',
  'Welcome, {{name}}!

Your {{product}} account is ready. Sign in: {{login_url}}
{{#tips}}
- {{.}}
{{/tips}}

— The {{product}} team',
  '{"required": ["name", "product", "login_url"], "properties": {"name": {"type": "string"}, "product": {"type": "string"}, "login_url": {"type": "string"}, "tips": {"type": "array"}}}'
),
(
  null,
  'passwordless-notice',
  'Password-less sign-in: a one-time link and where the request came from.',
  'Your sign-in link for {{product}}',
  '<!doctype html><html><body style="font-family:system-ui,sans-serif;line-height:1.5">
<p>Hi {{name}},</p>
<p>Use this link to sign in to {{product}}. It expires in {{expires_in}}.</p>
<p><a href="{{link}}">Sign in to {{product}}</a></p>
<p style="color:#666">Requested from {{requested_from}}. If this was not you, ignore this email: nothing changes until the link is used.</p>
</body></html>',
  'Hi {{name}},

Use this link to sign in to {{product}}. It expires in {{expires_in}}.

{{link}}

Requested from {{requested_from}}. If this was not you, ignore this email: nothing changes until the link is used.',
  '["name", "product", "link", "expires_in", "requested_from"]'
),
(
  null,
  'newsletter',
  'A simple newsletter: headline, intro and a list of articles.',
  '{{headline}}',
  '<!doctype html><html><body style="font-family:system-ui,sans-serif;line-height:1.5;max-width:40em;margin:auto">
<h1>{{headline}}</h1>
<p>{{intro}}</p>
{{#articles}}
<h2><a href="{{url}}">{{title}}</a></h2>
<p>{{summary}}</p>
{{/articles}}
<hr><p style="color:#666;font-size:.9em">You receive this because you subscribed to {{list_name}}.</p>
</body></html>',
  null,
  '{"required": ["headline", "intro", "articles", "list_name"]}'
)
on conflict (name) where user_id is null do update
  set description = excluded.description, subject = excluded.subject, html = excluded.html,
      text = excluded.text, variables = excluded.variables;
