// Where the local stack lives: the ports `supabase start` uses for the same services.
import { ROOT } from "./postgres.ts";

/** Ports of the local stack. */
export const LOCAL_PORTS = {
  api: 54321,
  db: 54322,
  inbox: 54324,
  docs: 54326,
  smtp: 54325,
  smtps: 54465,
} as const;

/** Git-ignored folder for the cluster, keys, certificates and caught mail. */
export const LOCAL_DIR = `${ROOT}/.local`;

/** SUPABASE_URL of the local stack. */
export const localApiUrl = (): string => `http://127.0.0.1:${LOCAL_PORTS.api}`;

/** The local database, unless DATABASE_URL points elsewhere. */
export const localDatabaseUrl = (): string =>
  Deno.env.get("DATABASE_URL") ?? `postgresql://postgres@127.0.0.1:${LOCAL_PORTS.db}/postgres`;
