// A private PostgreSQL cluster for the local stack and the tests, built from the
// machine's PostgreSQL binaries, plus the two steps that make it look like Supabase:
// the platform bootstrap and `supabase db push`.
import postgres from "postgres";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

/** Repository root (this file lives in <root>/local). */
export const ROOT = fileURLToPath(new URL("..", import.meta.url)).replace(/\/$/, "");

/** A running cluster. */
export interface Cluster {
  /** As `postgres`, a non-superuser as on Supabase (after the bootstrap): migrations, tests, functions. */
  url: string;
  /** As `supabase_admin`, the superuser: only for the platform bootstrap and extensions. */
  adminUrl: string;
  port: number;
  dir: string;
  stop(): Promise<void>;
}

function findBinDir(): string {
  const fromEnv = Deno.env.get("PG_BIN");
  if (fromEnv) return fromEnv;
  const base = "/usr/lib/postgresql";
  if (existsSync(base)) {
    const versions = [...Deno.readDirSync(base)].map((e) => e.name).filter((n) => /^\d+$/.test(n));
    versions.sort((a, b) => Number(b) - Number(a));
    for (const v of versions) {
      if (existsSync(`${base}/${v}/bin/initdb`)) return `${base}/${v}/bin`;
    }
  }
  throw new Error("PostgreSQL binaries not found: install PostgreSQL or set PG_BIN");
}

const isRoot = () => Deno.uid() === 0;

// initdb and pg_ctl refuse to run as root; run them as the `postgres` system user then.
async function runPg(bin: string, args: string[]): Promise<string> {
  const [cmd, cmdArgs] = isRoot() ? ["runuser", ["-u", "postgres", "--", bin, ...args]] : [bin, args];
  const out = await new Deno.Command(cmd, { args: cmdArgs, stdout: "piped", stderr: "piped" }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  if (!out.success) throw new Error(`${bin.split("/").pop()} ${args[0]} failed:\n${text}`);
  return text;
}

async function canConnect(url: string): Promise<boolean> {
  const sql = postgres(url, { max: 1, connect_timeout: 2, onnotice: () => {} });
  try {
    await sql`select 1`;
    return true;
  } catch {
    return false;
  } finally {
    await sql.end({ timeout: 1 });
  }
}

/** A TCP port that was free a moment ago. */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

/**
 * Start (creating on first use) a cluster in `dir` listening on 127.0.0.1:`port`.
 * A cluster already running there is reused.
 */
export async function startCluster(options: { dir: string; port: number; fast?: boolean }): Promise<Cluster> {
  const { dir, port } = options;
  const bin = findBinDir();
  const url = `postgresql://postgres@127.0.0.1:${port}/postgres`;
  const adminUrl = `postgresql://supabase_admin@127.0.0.1:${port}/postgres`;
  const dataDir = `${dir}/data`;
  Deno.mkdirSync(dir, { recursive: true });
  if (isRoot()) await chownToPostgres(dir);

  if (!existsSync(`${dataDir}/PG_VERSION`)) {
    await runPg(`${bin}/initdb`, [
      "-D",
      dataDir,
      "-U",
      "supabase_admin",
      "--auth=trust",
      "-E",
      "UTF8",
      "--locale=C.UTF-8",
      "--no-sync",
    ]);
  }

  const settings = [
    `-p ${port}`,
    "-c listen_addresses=127.0.0.1",
    `-c unix_socket_directories=${dir}`,
    "-c max_connections=100",
    ...(options.fast ? ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"] : []),
    // Extra server settings for profiling, e.g. "-c shared_preload_libraries=pg_stat_statements".
    Deno.env.get("MAILROOM_PG_OPTIONS") ?? "",
  ].join(" ");
  const running = existsSync(`${dataDir}/postmaster.pid`) && (await canConnect(adminUrl) || await canConnect(url));
  if (!running) {
    await runPg(`${bin}/pg_ctl`, [
      "-D",
      dataDir,
      "-l",
      `${dir}/postgres.log`,
      "-o",
      settings,
      "-w",
      "-t",
      "30",
      "start",
    ]);
  }

  await ensureAdmin(url, adminUrl);
  return {
    url,
    adminUrl,
    port,
    dir,
    stop: async () => void await stopCluster(dir),
  };
}

/** Stop the cluster in `dir` if it runs (fast shutdown); true when one was stopped. */
export async function stopCluster(dir: string): Promise<boolean> {
  if (!existsSync(`${dir}/data/postmaster.pid`)) return false;
  return await runPg(`${findBinDir()}/pg_ctl`, ["-D", `${dir}/data`, "-m", "fast", "-w", "stop"])
    .then(() => true, () => false);
}

/**
 * A cluster made by an older version of this stack has `postgres` as its superuser and no
 * `supabase_admin`: add the admin so the stack still starts, and say how to get the
 * platform's roles (a fresh cluster).
 */
async function ensureAdmin(url: string, adminUrl: string): Promise<void> {
  if (await canConnect(adminUrl)) return;
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  try {
    await sql`create role supabase_admin superuser login`;
  } finally {
    await sql.end();
  }
  console.warn(
    "This Postgres cluster predates the platform roles (postgres is its superuser). " +
      "Delete .local/postgres to recreate it with Supabase's roles and privileges.",
  );
}

async function chownToPostgres(dir: string): Promise<void> {
  const out = await new Deno.Command("chown", { args: ["-R", "postgres", dir] }).output();
  if (!out.success) throw new Error(`chown postgres ${dir} failed`);
}

/** True when the database already is a Supabase one (it has the auth schema). */
export async function isSupabaseDatabase(url: string): Promise<boolean> {
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  try {
    const [row] = await sql`select to_regnamespace('auth') is not null as has_auth`;
    return row.has_auth;
  } finally {
    await sql.end();
  }
}

/** Apply local/platform.sql as the superuser (`adminUrl`) unless the database is already a Supabase one. */
export async function bootstrapPlatform(adminUrl: string): Promise<boolean> {
  if (await isSupabaseDatabase(adminUrl)) return false;
  const sql = postgres(adminUrl, { max: 1, onnotice: () => {} });
  try {
    await sql.file(`${ROOT}/local/platform.sql`);
    return true;
  } finally {
    await sql.end();
  }
}

/** Apply supabase/migrations with the real Supabase CLI. */
export async function pushMigrations(url: string): Promise<string> {
  const cli = `${ROOT}/node_modules/.bin/supabase`;
  const out = await new Deno.Command(cli, {
    args: ["db", "push", `--remote=${url}`, "--include-seed", "--yes"],
    cwd: ROOT,
    env: { PGSSLMODE: "disable" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  if (!out.success) throw new Error(`supabase db push failed:\n${text}`);
  return text;
}
