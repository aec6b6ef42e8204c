// `deno task token [--quiet] [--agent [client_id]] [email]`: create a local user (if needed) and
// print a JWT for it, signed with the local stack's key. Needs the stack's database (deno task dev).
// With `--quiet` stdout carries the token alone and nothing else is printed (for `TOKEN=$(...)`).
// With `--agent` the token is the one Supabase Auth's OAuth 2.1 server issues to an OAuth client
// (`client_id`, default `local-agent`): to mailroom an agent, which may send within the owner's
// guardrails but never loosen them or lift a stop. Without it, the user's own (first-party) session.
import postgres from "postgres";
import { loadOrCreateSigningKey, mintToken } from "./jwt.ts";
import { ensureUser } from "./users.ts";
import { LOCAL_DIR, localApiUrl, localDatabaseUrl } from "./ports.ts";
import { runningStack } from "./stack_state.ts";
import { canonicalAddress } from "../supabase/functions/_shared/mail/addresses.ts";

/** The OAuth client `--agent` names when it is given no client id. */
export const DEFAULT_AGENT_CLIENT_ID = "local-agent";

const USAGE = "Usage: npm run token -- [--quiet] [--agent [client_id]] [email]";

/** What `npm run token` was asked for. */
export interface TokenRequest {
  email: string;
  quiet: boolean;
  /** The OAuth client's id for an agent's token; absent for the user's own session. */
  clientId?: string;
}

const isEmail = (value: string) => typeof canonicalAddress(value) === "string";
/** Printable ASCII without spaces, as OAuth client ids are (Supabase's are UUIDs). */
const CLIENT_ID = /^[\x21-\x7e]{1,200}$/;

/**
 * Read the command line: `--agent` takes the next argument as its client id unless that is an
 * email address or an option (`--agent=<id>` works too).
 *
 * @example
 * ```ts
 * parseTokenArgs(["--agent", "me@example.com"]); // { email: "me@example.com", quiet: false, clientId: "local-agent" }
 * ```
 */
export function parseTokenArgs(args: string[]): TokenRequest | { error: string } {
  let email: string | undefined;
  let quiet = false;
  let clientId: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--quiet" || arg === "-q") {
      quiet = true;
    } else if (arg === "--agent" || arg.startsWith("--agent=")) {
      const next = args[i + 1];
      if (arg !== "--agent") clientId = arg.slice("--agent=".length);
      else if (next !== undefined && !next.startsWith("-") && !isEmail(next)) clientId = args[++i];
      else clientId = DEFAULT_AGENT_CLIENT_ID;
      if (!CLIENT_ID.test(clientId)) {
        return { error: `Not an OAuth client id: ${JSON.stringify(clientId)} (1 to 200 printable characters)` };
      }
    } else if (arg.startsWith("-")) {
      return { error: `Unknown option ${JSON.stringify(arg)}` };
    } else if (email !== undefined) {
      return { error: `One email address at most (got ${JSON.stringify(email)} and ${JSON.stringify(arg)})` };
    } else if (!isEmail(arg)) {
      // What GoTrue would refuse at sign-up, refused here too (the user's address is their sender identity).
      return { error: `Not an email address: ${JSON.stringify(arg)}` };
    } else {
      email = arg;
    }
  }
  return { email: email ?? "demo@mailroom.local", quiet, ...(clientId === undefined ? {} : { clientId }) };
}

async function main(): Promise<void> {
  const request = parseTokenArgs(Deno.args);
  if ("error" in request) {
    console.error(`${request.error}. ${USAGE}`);
    Deno.exit(2);
  }
  const { email, quiet, clientId } = request;
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
  const token = await mintToken(key, { issuer: `${apiUrl}/auth/v1`, sub: userId, email, expiresIn: "24h", clientId });
  console.log(token);
  if (!quiet && Deno.stdout.isTerminal()) {
    // On stderr, so that even without --quiet a captured stdout is the token alone.
    const agent = clientId === undefined ? "" : ` --agent ${clientId}`;
    console.error(
      (clientId === undefined
        ? `\nA token for ${email} (their own session), valid 24 h.`
        : `\nA token for ${email} as the OAuth client ${clientId} (an agent: it may send within the guardrails, ` +
          "never loosen them or lift a stop), valid 24 h.") +
        ` To keep it in a variable: TOKEN=$(npm run --silent token -- --quiet${agent} ${email})`,
    );
  }
}

if (import.meta.main) await main();
