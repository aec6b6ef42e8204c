// `deno task token [--quiet] [email]`: create a local user (if needed) and print a JWT for it,
// signed with the local stack's key. Needs the stack's database (deno task dev). With
// `--quiet` stdout carries the token alone and nothing else is printed (for `TOKEN=$(...)`).
import postgres from "postgres";
import { loadOrCreateSigningKey, mintToken } from "./jwt.ts";
import { ensureUser } from "./users.ts";
import { LOCAL_DIR, localApiUrl, localDatabaseUrl } from "./ports.ts";
import { runningStack } from "./stack_state.ts";
import { canonicalAddress } from "../supabase/functions/_shared/mail/addresses.ts";

async function main(): Promise<void> {
  const quiet = Deno.args.includes("--quiet") || Deno.args.includes("-q");
  const email = Deno.args.find((arg) => arg !== "--quiet" && arg !== "-q") ?? "demo@mailroom.local";
  // What GoTrue would refuse at sign-up, refused here too (the user's address is their sender identity).
  if (typeof canonicalAddress(email) !== "string") {
    console.error(`Not an email address: ${JSON.stringify(email)}. Usage: npm run token -- [--quiet] [email]`);
    Deno.exit(2);
  }
  // The running stack's database and issuer (it may run on DATABASE_URL or other ports), else the defaults.
  const stack = await runningStack();
  const dbUrl = Deno.env.get("DATABASE_URL") ?? stack?.databaseUrl ?? localDatabaseUrl();
  const apiUrl = stack?.apiUrl ?? localApiUrl();
  const sql = postgres(dbUrl, { max: 1, connect_timeout: 3, onnotice: () => {} });
  let userId: string;
  try {
    userId = await ensureUser(sql, email);
  } catch (error) {
    console.error(`Cannot reach the local database (${(error as Error).message}). Start it with: npm run dev`);
    Deno.exit(1);
  } finally {
    await sql.end({ timeout: 1 });
  }
  const key = await loadOrCreateSigningKey(`${LOCAL_DIR}/keys/jwt-signing-key.json`);
  const token = await mintToken(key, { issuer: `${apiUrl}/auth/v1`, sub: userId, email, expiresIn: "24h" });
  console.log(token);
  if (!quiet && Deno.stdout.isTerminal()) {
    // On stderr, so that even without --quiet a captured stdout is the token alone.
    console.error(
      `\nA token for ${email}, valid 24 h. To keep it in a variable: ` +
        `TOKEN=$(npm run --silent token -- --quiet ${email})`,
    );
  }
}

if (import.meta.main) await main();
