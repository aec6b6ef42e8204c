// Where the local stack lives: the ports `supabase start` uses for the same services, each one
// movable by an environment variable (to run beside `supabase start`), and its state folder.
import { ROOT } from "./postgres.ts";

/** The stack's services, by the name of their port. */
export type PortName = "api" | "db" | "dashboard" | "inbox" | "docs" | "smtp" | "smtps" | "oauth" | "imap";

/** Default port and the environment variable that moves it, per service. */
export const PORT_SETTINGS: Readonly<Record<PortName, { env: string; default: number; what: string }>> = {
  api: { env: "MAILROOM_API_PORT", default: 54321, what: "functions gateway" },
  db: { env: "MAILROOM_DB_PORT", default: 54322, what: "Postgres" },
  dashboard: { env: "MAILROOM_DASHBOARD_PORT", default: 54323, what: "dashboard" },
  inbox: { env: "MAILROOM_INBOX_PORT", default: 54324, what: "web inbox" },
  smtp: { env: "MAILROOM_SMTP_PORT", default: 54325, what: "SMTP catcher (STARTTLS)" },
  docs: { env: "MAILROOM_DOCS_PORT", default: 54326, what: "API docs" },
  smtps: { env: "MAILROOM_SMTPS_PORT", default: 54465, what: "SMTP catcher (implicit TLS)" },
  oauth: { env: "MAILROOM_OAUTH_PORT", default: 54327, what: "OAuth providers' stand-in" },
  imap: { env: "MAILROOM_IMAP_PORT", default: 54993, what: "IMAP mailbox (Dovecot, implicit TLS)" },
};

/**
 * The ports from the environment (or the defaults).
 *
 * @throws Error naming the variable when one is not a port number.
 */
export function portsFromEnv(env: Record<string, string | undefined> = Deno.env.toObject()): Record<PortName, number> {
  const ports = {} as Record<PortName, number>;
  for (const [name, setting] of Object.entries(PORT_SETTINGS) as [PortName, (typeof PORT_SETTINGS)[PortName]][]) {
    const raw = env[setting.env]?.trim();
    const port = raw ? Number(raw) : setting.default;
    if (!Number.isInteger(port) || port < 1 || port > 65535) {
      throw new Error(`${setting.env} must be a port number (1-65535), got "${raw}"`);
    }
    ports[name] = port;
  }
  return ports;
}

/** Ports of the local stack. */
export const LOCAL_PORTS: Readonly<Record<PortName, number>> = portsFromEnv();

/** Git-ignored folder for the cluster, keys, certificates, caught mail and the stack's state (MAILROOM_LOCAL_DIR). */
export const LOCAL_DIR = Deno.env.get("MAILROOM_LOCAL_DIR")?.replace(/\/+$/, "") || `${ROOT}/.local`;

/** SUPABASE_URL of the local stack. */
export const localApiUrl = (): string => `http://127.0.0.1:${LOCAL_PORTS.api}`;

/** The local database, unless DATABASE_URL points elsewhere. */
export const localDatabaseUrl = (): string =>
  Deno.env.get("DATABASE_URL") ?? `postgresql://postgres@127.0.0.1:${LOCAL_PORTS.db}/postgres`;
