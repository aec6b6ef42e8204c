// Local stand-in for signing up: a row in auth.users shaped the way GoTrue writes one, so
// that a `supabase start` database (DATABASE_URL) keeps working with GoTrue and Studio:
// GoTrue scans the token columns into Go strings, so they hold '' rather than NULL, and it
// expects the instance id, aud, role, provider metadata and timestamps it sets itself.
import type postgres from "postgres";

/** GoTrue's single-tenant instance id. */
const INSTANCE_ID = "00000000-0000-0000-0000-000000000000";

/** Create the user with this email unless it exists; returns its id. */
export async function ensureUser(sql: postgres.Sql, email: string): Promise<string> {
  const [row] = await sql<{ id: string }[]>`
    with existing as (select id from auth.users where email = ${email}),
    created as (
      insert into auth.users (
        instance_id, id, aud, role, email, encrypted_password, email_confirmed_at,
        confirmation_token, recovery_token, email_change_token_new, email_change,
        email_change_token_current, email_change_confirm_status, phone_change, phone_change_token,
        reauthentication_token, raw_app_meta_data, raw_user_meta_data, is_sso_user, is_anonymous,
        created_at, updated_at
      )
      select ${INSTANCE_ID}::uuid, gen_random_uuid(), 'authenticated', 'authenticated', ${email}, '', now(),
             '', '', '', '',
             '', 0, '', '',
             '', '{"provider": "email", "providers": ["email"]}'::jsonb, '{}'::jsonb, false, false,
             now(), now()
       where not exists (select 1 from existing)
      returning id
    )
    select id from existing union all select id from created`;
  return row.id;
}
