/// <reference lib="dom" />
// Who is signed in, and how: on a hosted project with supabase-js Auth (email and password, or a
// magic link); on the local stack with one click as the demo user (the local dashboard server
// mints the token) or a pasted token from `npm run token`. The session is the user's own
// (first-party: no client_id), so the pages may approve what agents sent.
import { createClient, type SupabaseClient } from "@supabase/supabase-js";
import { createMailroomClient, type MailroomClient } from "../../clients/mailroom/src/index.ts";

/** What the deployment tells the page (config.json next to index.html). */
export interface DashboardConfig {
  /** The project URL: its functions are at `<supabase_url>/functions/v1`. */
  supabase_url: string;
  /** The project's publishable (anon) key, for supabase-js Auth. */
  anon_key?: string;
  /** The local stack only: POST here for the demo user's token (one-click sign-in). */
  local_sign_in_url?: string;
}

/** A signed-in session: the account and a client for the API. */
export interface Session {
  email: string;
  api: MailroomClient;
  signOut(): Promise<void>;
}

const TOKEN_KEY = "mailroom.token";

/** The claims of a JWT, unverified (the API verifies it; the page only shows whose it is). */
export function tokenClaims(token: string): { email?: string; sub?: string; exp?: number; client_id?: string } {
  try {
    const payload = token.split(".")[1].replaceAll("-", "+").replaceAll("_", "/");
    return JSON.parse(atob(payload.padEnd(Math.ceil(payload.length / 4) * 4, "=")));
  } catch {
    return {};
  }
}

/** A session from a bearer token (pasted, or the local demo user's). */
export function tokenSession(config: DashboardConfig, token: string, onSignOut: () => void): Session {
  sessionStorage.setItem(TOKEN_KEY, token);
  const claims = tokenClaims(token);
  return {
    email: claims.email ?? claims.sub ?? "unknown user",
    api: createMailroomClient({ url: config.supabase_url, accessToken: token }),
    signOut: () => {
      sessionStorage.removeItem(TOKEN_KEY);
      onSignOut();
      return Promise.resolve();
    },
  };
}

/** The token this tab signed in with earlier, if it has not expired. */
export function storedToken(): string | null {
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (!token) return null;
  const { exp } = tokenClaims(token);
  if (exp !== undefined && exp * 1000 < Date.now()) {
    sessionStorage.removeItem(TOKEN_KEY);
    return null;
  }
  return token;
}

/** The local demo user's token, from the local dashboard server. */
export async function localSignIn(config: DashboardConfig): Promise<string> {
  const res = await fetch(config.local_sign_in_url!, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: "{}",
  });
  if (!res.ok) throw new Error(`The local stack refused the demo sign-in (HTTP ${res.status})`);
  const { access_token } = await res.json() as { access_token: string };
  return access_token;
}

let supabase: SupabaseClient | undefined;

/** supabase-js for this project (hosted sign-in), created once. */
export function supabaseClient(config: DashboardConfig): SupabaseClient {
  supabase ??= createClient(config.supabase_url, config.anon_key!, {
    auth: { persistSession: true, autoRefreshToken: true, detectSessionInUrl: true },
  });
  return supabase;
}

/** A session from supabase-js Auth (its tokens refreshed by supabase-js), or null when signed out. */
export async function supabaseSession(config: DashboardConfig, onSignOut: () => void): Promise<Session | null> {
  if (!config.anon_key) return null;
  const client = supabaseClient(config);
  const { data } = await client.auth.getSession();
  if (!data.session) return null;
  return {
    email: data.session.user.email ?? data.session.user.id,
    api: createMailroomClient({ supabase: client }),
    signOut: async () => {
      await client.auth.signOut();
      onSignOut();
    },
  };
}
