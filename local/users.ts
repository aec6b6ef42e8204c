// Local stand-in for signing up: a row in auth.users, found again by email.
import type postgres from "postgres";

/** Create the user with this email unless it exists; returns its id. */
export async function ensureUser(sql: postgres.Sql, email: string): Promise<string> {
  const [row] = await sql<{ id: string }[]>`
    with existing as (select id from auth.users where email = ${email}),
    created as (
      insert into auth.users (id, email, aud, role)
      select gen_random_uuid(), ${email}, 'authenticated', 'authenticated'
      where not exists (select 1 from existing)
      returning id
    )
    select id from existing union all select id from created`;
  return row.id;
}
