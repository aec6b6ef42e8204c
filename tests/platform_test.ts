// The local stack's database behaves like Supabase's: the functions and tests connect as a
// non-superuser `postgres`, and users are auth.users rows GoTrue can read.
import assert from "node:assert/strict";
import postgres from "postgres";
import { startTestStack } from "./harness.ts";

/** Matches a Postgres error whose SQLSTATE is one of `codes`. */
function sqlState(...codes: string[]): (e: { code?: string }) => boolean {
  return (e) => codes.includes(e.code ?? "");
}

Deno.test({
  name: "platform stand-in",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const stack = await startTestStack();
    try {
      await t.step(
        "the functions' database role is postgres, not a superuser, and cannot read the Vault key",
        async () => {
          const sql = postgres(stack.dbUrl, { max: 1, onnotice: () => {} });
          try {
            const [me] = await sql`select current_user as name, rolsuper from pg_roles where rolname = current_user`;
            assert.deepEqual({ ...me }, { name: "postgres", rolsuper: false });
            // On Supabase there is no key table at all (42P01); a stand-in that kept one must refuse it (42501).
            await assert.rejects(sql`select key from vault.root_key`, sqlState("42P01", "42501"));
            // Here the key is a file in the data directory; on Supabase postgres cannot read server files either.
            await assert.rejects(sql`select pg_read_file('vault_root_key')`, sqlState("42501"));
            await assert.rejects(sql`create table auth.sneaky (id int)`, sqlState("42501"));
          } finally {
            await sql.end();
          }
        },
      );

      await t.step(
        "refuses what the platform refuses: reserved roles, Vault for service_role, a NULL description",
        async () => {
          const sql = postgres(stack.dbUrl, { max: 1, onnotice: () => {} });
          try {
            await assert.rejects(sql`alter role anon login`, sqlState("42501"));
            await assert.rejects(sql`alter role authenticator connection limit 1`, sqlState("42501"));
            await assert.rejects(
              sql.begin(async (tx) => {
                await tx`set local role service_role`;
                await tx`select decrypted_secret from vault.decrypted_secrets`;
              }),
              sqlState("42501"),
            );
            await assert.rejects(sql`select vault.create_secret('s3cret', null, null)`, sqlState("23502"));
            const [row] = await sql`select vault.create_secret('s3cret') is not null as created`;
            assert.equal(row.created, true);
          } finally {
            await sql.end();
          }
        },
      );

      await t.step("users are rows GoTrue can read: strings where it scans strings, its instance id", async () => {
        const user = await stack.createUser();
        const [row] = await stack.sql`
          select instance_id, aud, role, confirmation_token, recovery_token, email_change_token_new, email_change,
                 email_change_token_current, phone_change, phone_change_token, reauthentication_token,
                 raw_app_meta_data ->> 'provider' as provider, created_at is not null as created,
                 email_confirmed_at is not null as confirmed
            from auth.users where id = ${user.id}`;
        assert.deepEqual({ ...row }, {
          instance_id: "00000000-0000-0000-0000-000000000000",
          aud: "authenticated",
          role: "authenticated",
          confirmation_token: "",
          recovery_token: "",
          email_change_token_new: "",
          email_change: "",
          email_change_token_current: "",
          phone_change: "",
          phone_change_token: "",
          reauthentication_token: "",
          provider: "email",
          created: true,
          confirmed: true,
        });
      });
    } finally {
      await stack.close();
    }
  },
});
