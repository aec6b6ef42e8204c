// `deno task dev`: the Docker-free local stack. Postgres (or DATABASE_URL), the platform
// bootstrap, migrations via the Supabase CLI, an SMTP catcher with a web inbox, and the
// functions at the same URLs as `supabase functions serve`. Ctrl-C stops it all.
import postgres from "postgres";
import { bootstrapPlatform, type Cluster, pushMigrations, ROOT, startCluster } from "./postgres.ts";
import { jwks, loadOrCreateSigningKey, mintToken } from "./jwt.ts";
import { startGateway } from "./gateway.ts";
import { ensureUser } from "./users.ts";
import { loadOrCreateCertificates } from "./certs.ts";
import { MessageStore, startSmtpCatcher } from "./smtp_catcher.ts";
import { startInbox } from "./inbox.ts";
import { startApiReference } from "./api_reference.ts";
import { LOCAL_DIR, LOCAL_PORTS, localApiUrl } from "./ports.ts";

/** SMTP account the catcher accepts; the demo config stores it in Vault. */
const CATCHER_USER = { username: "mailroom", password: "mailroom-local" };
const DEMO_EMAIL = "demo@mailroom.local";

async function ensureDemoConfig(dbUrl: string, userId: string): Promise<void> {
  const sql = postgres(dbUrl, { max: 1, onnotice: () => {} });
  try {
    await sql.begin(async (tx) => {
      const claims = JSON.stringify({ sub: userId, role: "authenticated" });
      await tx`select set_config('request.jwt.claims', ${claims}, true), set_config('role', 'authenticated', true)`;
      const existing = await tx`select id from public.user_smtp_configs where name = 'local-inbox'`;
      if (existing.length > 0) return;
      const [row] = await tx<{ id: string }[]>`
        insert into public.user_smtp_configs (name, host, port, security, username, from_email, from_name, is_default)
        values ('local-inbox', 'localhost', ${LOCAL_PORTS.smtp}, 'starttls', ${CATCHER_USER.username},
                ${DEMO_EMAIL}, 'Mailroom Demo', true)
        returning id`;
      await tx`select private.set_smtp_config_password(${row.id}::uuid, ${CATCHER_USER.password})`;
    });
  } finally {
    await sql.end();
  }
}

const SCHEDULER_INTERVAL_MS = 2_000;

/** The local secret API key (`sb_secret_...`), made once and kept in .local. */
function loadOrCreateSecretKey(path: string): string {
  try {
    return Deno.readTextFileSync(path).trim();
  } catch {
    const key = `sb_secret_local_${crypto.getRandomValues(new Uint8Array(24)).toHex()}`;
    Deno.mkdirSync(path.slice(0, path.lastIndexOf("/")), { recursive: true });
    Deno.writeTextFileSync(path, key, { mode: 0o600 });
    return key;
  }
}

/** Where the function processes' pids are kept while the stack runs. */
const PIDS_FILE = `${LOCAL_DIR}/function-pids.json`;

/**
 * Stop function processes a previous run left behind (it was killed with SIGKILL, so it could
 * not stop them): only pids that are still Deno running one of our functions.
 */
function stopLeftoverFunctions(): void {
  let pids: number[];
  try {
    pids = JSON.parse(Deno.readTextFileSync(PIDS_FILE));
  } catch {
    return;
  }
  for (const pid of pids) {
    try {
      const cmdline = Deno.readTextFileSync(`/proc/${pid}/cmdline`);
      if (!cmdline.includes(`${ROOT}/supabase/functions/`)) continue;
      Deno.kill(pid, "SIGTERM");
      console.log(`Stopped function process ${pid} left by a previous run.`);
    } catch {
      // Gone already, or not ours to stop.
    }
  }
  Deno.removeSync(PIDS_FILE);
}

/** Call process-outbox every `intervalMs`, one run at a time; returns its stop. */
function startScheduler(url: string, secretKey: string, intervalMs: number): () => Promise<void> {
  let stopped = false;
  let running: Promise<void> = Promise.resolve();
  const tick = async () => {
    try {
      const res = await fetch(url, { method: "POST", headers: { apikey: secretKey } });
      const report = await res.json();
      if (res.status !== 200) console.error(`process-outbox: ${res.status} ${JSON.stringify(report)}`);
      else if (report.claimed > 0 || report.swept > 0) console.log(`process-outbox: ${JSON.stringify(report)}`);
    } catch (error) {
      console.error(`process-outbox: ${(error as Error).message}`);
    }
  };
  let busy = false;
  const timer = setInterval(() => {
    if (stopped || busy) return;
    busy = true;
    running = tick().finally(() => busy = false);
  }, intervalMs);
  return async () => {
    stopped = true;
    clearInterval(timer);
    await running;
  };
}

async function main(): Promise<void> {
  Deno.mkdirSync(LOCAL_DIR, { recursive: true });
  stopLeftoverFunctions();
  const stops: (() => Promise<void>)[] = [];
  const shutdown = async () => {
    console.log("\nStopping mailroom local stack...");
    for (const stop of stops.reverse()) await stop().catch((e) => console.error(e));
    Deno.exit(0);
  };
  Deno.addSignalListener("SIGINT", shutdown);
  Deno.addSignalListener("SIGTERM", shutdown);

  let dbUrl = Deno.env.get("DATABASE_URL");
  let bootstrapped = false;
  if (!dbUrl) {
    const cluster: Cluster = await startCluster({ dir: `${LOCAL_DIR}/postgres`, port: LOCAL_PORTS.db });
    stops.push(cluster.stop);
    bootstrapped = await bootstrapPlatform(cluster.adminUrl);
    dbUrl = cluster.url;
  }
  await pushMigrations(dbUrl);

  const certs = await loadOrCreateCertificates(`${LOCAL_DIR}/certs`);
  const store = new MessageStore({ dir: `${LOCAL_DIR}/mail` });
  const users = { [CATCHER_USER.username]: CATCHER_USER.password };
  const tls = { key: certs.key, cert: certs.cert };
  // replyByAddress: temp-451@…, perm-550@… and friends answer like real refusals (README).
  const common = { tls, users, store, replyByAddress: true };
  const starttls = await startSmtpCatcher({ port: LOCAL_PORTS.smtp, mode: "starttls", ...common });
  stops.push(starttls.close);
  const implicitTls = await startSmtpCatcher({ port: LOCAL_PORTS.smtps, mode: "tls", ...common });
  stops.push(implicitTls.close);
  const inbox = await startInbox({ port: LOCAL_PORTS.inbox, store });
  stops.push(inbox.close);
  const docs = await startApiReference(LOCAL_PORTS.docs, `${localApiUrl()}/functions/v1/openapi`);
  stops.push(docs.close);

  const signingKey = await loadOrCreateSigningKey(`${LOCAL_DIR}/keys/jwt-signing-key.json`);
  const secretKey = loadOrCreateSecretKey(`${LOCAL_DIR}/keys/secret-key.txt`);
  const apiUrl = localApiUrl();
  const gateway = await startGateway({
    port: LOCAL_PORTS.api,
    // One process per function, from its index.ts and import map, as `supabase functions serve` does.
    isolation: "process",
    jwks: jwks(signingKey),
    env: {
      ...Deno.env.toObject(),
      SUPABASE_URL: apiUrl,
      SUPABASE_DB_URL: dbUrl,
      MAILROOM_SMTP_CA_CERTS: certs.caCert,
      // The catcher is on loopback and on non-SMTP ports: allowed explicitly, never by default.
      MAILROOM_EGRESS_ALLOWLIST: Deno.env.get("MAILROOM_EGRESS_ALLOWLIST") ??
        `localhost:${LOCAL_PORTS.smtp},localhost:${LOCAL_PORTS.smtps}`,
      SUPABASE_SECRET_KEYS: JSON.stringify({ default: secretKey }),
    },
  });
  stops.push(gateway.close);
  // Kept current: a function process that died is started again under a new pid.
  const writePids = () => Deno.writeTextFileSync(PIDS_FILE, JSON.stringify(gateway.processes.map((p) => p.pid)));
  writePids();
  const pidsTimer = setInterval(writePids, 5_000);
  // Stops run in reverse: the timer stops before the file goes.
  stops.push(() => Promise.resolve(Deno.removeSync(PIDS_FILE)));
  stops.push(() => Promise.resolve(clearInterval(pidsTimer)));
  // The scheduler: what pg_cron + pg_net do on Supabase, a POST to process-outbox every few seconds.
  stops.push(startScheduler(`${apiUrl}/functions/v1/process-outbox`, secretKey, SCHEDULER_INTERVAL_MS));

  const sql = postgres(dbUrl, { max: 1, onnotice: () => {} });
  const userId = await ensureUser(sql, DEMO_EMAIL);
  await sql.end();
  await ensureDemoConfig(dbUrl, userId);
  const issuer = `${apiUrl}/auth/v1`;
  const token = await mintToken(signingKey, { issuer, sub: userId, email: DEMO_EMAIL, expiresIn: "24h" });
  const anonKey = await mintToken(signingKey, { issuer, role: "anon", expiresIn: "10y" });
  const body = JSON.stringify({ to: "Friend <friend@example.com>", subject: "Hello from mailroom", text: "It works." });
  const templated = JSON.stringify({
    to: "Jane <jane@example.com>",
    template: "welcome",
    data: { name: "Jane", product: "Mailroom", login_url: "https://example.com/login", tips: ["Add a config"] },
  });

  console.log(`
mailroom local stack is running${bootstrapped ? " (platform bootstrap applied)" : ""}

  Functions  ${apiUrl}/functions/v1/<name>   (${gateway.processes.map((p) => p.name).join(", ")})
  Outbox     process-outbox runs every ${
    SCHEDULER_INTERVAL_MS / 1000
  } s (secret key in ${LOCAL_DIR}/keys/secret-key.txt)
  JWKS       ${apiUrl}/auth/v1/.well-known/jwks.json
  Database   ${dbUrl}
  SMTP       127.0.0.1:${LOCAL_PORTS.smtp} (STARTTLS), 127.0.0.1:${LOCAL_PORTS.smtps} (TLS), user ${CATCHER_USER.username}
  Inbox      http://127.0.0.1:${LOCAL_PORTS.inbox}
  API docs   http://127.0.0.1:${LOCAL_PORTS.docs}   (OpenAPI: ${apiUrl}/functions/v1/openapi)
  Anon key   ${anonKey}

Demo user ${DEMO_EMAIL} (config "local-inbox" is its default), token valid 24 h:
  ${token}

Send a mail, then open the inbox:
  curl -sS ${apiUrl}/functions/v1/send-email \\
    -H "Authorization: Bearer ${token}" \\
    -H 'content-type: application/json' \\
    -d '${body}'

Or render the starter "welcome" template (also: "passwordless-notice", "newsletter"):
  curl -sS ${apiUrl}/functions/v1/send-email -H "Authorization: Bearer ${token}" \\
    -H 'content-type: application/json' -d '${templated}'

Ctrl-C stops everything; data stays in ${LOCAL_DIR.replace(`${ROOT}/`, "")}/ for the next start.`);
}

if (import.meta.main) await main();
