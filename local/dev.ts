// `deno task dev`: the Docker-free local stack. Postgres (or DATABASE_URL), the platform
// bootstrap, migrations via the Supabase CLI, an SMTP catcher with a web inbox, and the
// functions at the same URLs as `supabase functions serve`. Ctrl-C, SIGTERM or `npm run stop`
// stops it all; a second start while one runs leaves the running one alone: the stack holds a
// lock for its whole life (stack_state.ts).
import postgres from "postgres";
import { bootstrapPlatform, type Cluster, pushMigrations, ROOT, startCluster } from "./postgres.ts";
import { jwks, loadOrCreateSigningKey, mintToken } from "./jwt.ts";
import { DEFAULT_AGENT_CLIENT_ID } from "./token.ts";
import { ensureUser } from "./users.ts";
import { loadOrCreateCertificates } from "./certs.ts";
import { caughtMessage, MessageStore, startSmtpCatcher } from "./smtp_catcher.ts";
import { startOAuthStandin } from "./oauth_standin.ts";
import { dovecotBinary, startDovecot } from "./dovecot.ts";
import { startInbox } from "./inbox.ts";
import { startApiReference } from "./api_reference.ts";
import { buildDashboard, startDashboard } from "./dashboard.ts";
import { formatRequestLine, startGateway } from "./gateway.ts";
import { LOCAL_DIR, LOCAL_PORTS, localApiUrl, type PortName } from "./ports.ts";
import { busyPorts, describeBusyPort } from "./port_owners.ts";
import { isAlive } from "./processes.ts";
import { claimStackState, releaseStackState, type StackState, updateStackState } from "./stack_state.ts";

/** SMTP account the catcher accepts; the demo config stores it in Vault. */
const CATCHER_USER = { username: "mailroom", password: "mailroom-local" };
const DEMO_EMAIL = "demo@mailroom.local";

/** The demo user's IMAP login on the local Dovecot (its mailbox: bounces arrive there, Sent copies go there). */
const IMAP_USER = { name: DEMO_EMAIL, password: "mailroom-local-imap" };

async function ensureDemoConfig(dbUrl: string, userId: string, imapPort: number | null): Promise<void> {
  const sql = postgres(dbUrl, { max: 1, onnotice: () => {} });
  try {
    await sql.begin(async (tx) => {
      const claims = JSON.stringify({ sub: userId, role: "authenticated" });
      await tx`select set_config('request.jwt.claims', ${claims}, true), set_config('role', 'authenticated', true)`;
      let [row] = await tx<{ id: string }[]>`select id from public.user_smtp_configs where name = 'local-inbox'`;
      if (!row) {
        [row] = await tx<{ id: string }[]>`
          insert into public.user_smtp_configs (name, host, port, security, username, from_email, from_name, is_default)
          values ('local-inbox', 'localhost', ${LOCAL_PORTS.smtp}, 'starttls', ${CATCHER_USER.username},
                  ${DEMO_EMAIL}, 'Mailroom Demo', true)
          returning id`;
        await tx`select private.set_smtp_config_password(${row.id}::uuid, ${CATCHER_USER.password})`;
      }
      // Its mailbox on the local Dovecot: Sent copies, and the catcher's bounces to read back.
      if (imapPort === null) return;
      const [imap] = await tx<{ port: number; has_password: boolean }[]>`
        select port, password_secret_id is not null as has_password
          from public.smtp_config_imap where config_id = ${row.id}::uuid`;
      if (imap?.port === imapPort && imap.has_password) return;
      if (imap) {
        // Moved (MAILROOM_IMAP_PORT): the new destination drops the password, given again below.
        await tx`update public.smtp_config_imap set port = ${imapPort} where config_id = ${row.id}::uuid`;
      } else {
        await tx`insert into public.smtp_config_imap (config_id, host, port, security, username)
                 values (${row.id}::uuid, 'localhost', ${imapPort}, 'tls', ${IMAP_USER.name})`;
      }
      await tx`select private.set_imap_password(${row.id}::uuid, ${IMAP_USER.password})`;
    });
  } finally {
    await sql.end();
  }
}

const SCHEDULER_INTERVAL_MS = 2_000;
/** The scheduler's User-Agent: its calls every 2 s stay out of the request log. */
const SCHEDULER_AGENT = "mailroom-local-scheduler";

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

/** Call process-outbox every `intervalMs`, one run at a time; returns its stop. */
function startScheduler(url: string, secretKey: string, intervalMs: number): () => Promise<void> {
  let stopped = false;
  let running: Promise<void> = Promise.resolve();
  const tick = async () => {
    try {
      const res = await fetch(url, { method: "POST", headers: { apikey: secretKey, "user-agent": SCHEDULER_AGENT } });
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

/** What `npm run dev -- --help` prints. */
const USAGE =
  "Usage: npm run dev [-- --quiet]\n  --quiet  no line per request (the banner, worker reports and errors stay)";

/** Set once a signal asked the stack to stop: startup ends at its next step, then everything stops. */
class Stopping extends Error {}

async function main(): Promise<void> {
  const unknown = Deno.args.filter((arg) => arg !== "--quiet");
  if (unknown.length > 0) {
    console.error(`${unknown.includes("--help") ? "" : `Unknown argument: ${unknown[0]}\n`}${USAGE}`);
    Deno.exit(unknown.includes("--help") ? 0 : 2);
  }
  const logRequests = !Deno.args.includes("--quiet");
  const externalDb = Deno.env.get("DATABASE_URL");
  const state: StackState = {
    pid: Deno.pid,
    startedAt: new Date().toISOString(),
    phase: "starting",
    ports: { ...LOCAL_PORTS },
    apiUrl: localApiUrl(),
    clusterDir: externalDb ? undefined : `${LOCAL_DIR}/postgres`,
    functionPids: [],
  };

  // A live stack is left alone: the lock is taken before anything listens, so two starts cannot both run.
  const claim = await claimStackState(state);
  if (!claim.claimed) {
    const running = claim.running;
    console.error(
      `mailroom local stack is already running (${
        running ? `pid ${running.pid}, ${running.apiUrl}, started ${running.startedAt}` : "starting"
      }).\n` +
        "See it with: npm run status   Stop it with: npm run stop",
    );
    Deno.exit(1);
  }
  // Held until the process ends (the OS lets go of it even after kill -9).
  const lock = claim.lock;
  for (const pid of claim.leftovers) console.log(`Stopped function process ${pid} left by a run that was killed.`);

  const busy = busyPorts(portsToCheck(externalDb !== undefined));
  if (busy.length > 0) {
    releaseStackState(lock);
    for (const port of busy) console.error(describeBusyPort(port));
    Deno.exit(1);
  }

  const stops: (() => Promise<void>)[] = [];
  let stopping = false;
  let startup: Promise<void> = Promise.resolve();
  const shutdown = async () => {
    // Once, whichever signal came first and however often it comes.
    if (stopping) return;
    stopping = true;
    console.log("\nStopping mailroom local stack...");
    await startup.catch(() => {});
    for (const stop of stops.reverse()) await stop().catch((e) => console.error(e));
    releaseStackState(lock);
    Deno.exit(0);
  };
  Deno.addSignalListener("SIGINT", shutdown);
  Deno.addSignalListener("SIGTERM", shutdown);

  startup = startStack(state, { externalDb, logRequests }, (stop) => {
    stops.push(stop);
    if (stopping) throw new Stopping();
  });
  try {
    await startup;
  } catch (error) {
    if (error instanceof Stopping) return;
    console.error(error);
    console.error("\nmailroom local stack could not start; stopping what did.");
    for (const stop of stops.reverse()) await stop().catch((e) => console.error(e));
    releaseStackState(lock);
    Deno.exit(1);
  }
}

/** The ports to check before starting: Postgres's only when we start it and it is not already up. */
function portsToCheck(externalDb: boolean): Partial<Record<PortName, number>> {
  const { db, ...others } = LOCAL_PORTS;
  let clusterUp = false;
  try {
    const pid = Number(Deno.readTextFileSync(`${LOCAL_DIR}/postgres/data/postmaster.pid`).split("\n")[0]);
    clusterUp = isAlive(pid);
  } catch {
    // No cluster, or not running.
  }
  return externalDb || clusterUp ? others : { ...others, db };
}

/** Start every service in order; `onStarted` registers each one's stop (and throws once stopping). */
async function startStack(
  state: StackState,
  options: { externalDb?: string; logRequests: boolean },
  onStarted: (stop: () => Promise<void>) => void,
): Promise<void> {
  let dbUrl = options.externalDb;
  let bootstrapped = false;
  if (!dbUrl) {
    const cluster: Cluster = await startCluster({ dir: `${LOCAL_DIR}/postgres`, port: LOCAL_PORTS.db });
    onStarted(cluster.stop);
    bootstrapped = await bootstrapPlatform(cluster.adminUrl);
    dbUrl = cluster.url;
  }
  updateStackState({ ...state, databaseUrl: dbUrl });
  await pushMigrations(dbUrl);

  const certs = await loadOrCreateCertificates(`${LOCAL_DIR}/certs`);
  const store = new MessageStore({ dir: `${LOCAL_DIR}/mail` });
  const users = { [CATCHER_USER.username]: CATCHER_USER.password };
  const tls = { key: certs.key, cert: certs.cert };
  // STAND-IN for Google's and Microsoft's token endpoints, Graph sendMail and the Gmail API (an
  // OAuth mailbox cannot reach them from here without an account): client id `mailroom-local`,
  // any refresh token starting with `local-`; what they send lands in the inbox.
  const oauthStandin = await startOAuthStandin({
    port: LOCAL_PORTS.oauth,
    openClientId: "mailroom-local",
    deliver: (delivery) => store.add(caughtMessage(delivery.delivered, { mailFrom: "", rcptTo: delivery.rcptTo })),
  });
  onStarted(oauthStandin.close);
  // The catchers take XOAUTH2 logins with the stand-in's tokens, as Gmail's SMTP server does;
  // replyByAddress: temp-451@…, perm-550@… and friends answer like real refusals (docs/local-stack.md).
  // The demo user's mailbox (Debian's dovecot-imapd, when installed): mail the catcher accepts for
  // bounce-511@… comes back there as a Postfix-style bounce, for the bounce reader to find.
  const dovecot = dovecotBinary()
    ? await startDovecot({ dir: `${LOCAL_DIR}/dovecot`, port: LOCAL_PORTS.imap, tls, users: [IMAP_USER] })
    : null;
  if (dovecot) onStarted(dovecot.stop);
  const common = {
    tls,
    users,
    store,
    replyByAddress: true,
    acceptAccessToken: (_user: string, token: string) => oauthStandin.acceptsSmtpToken(token),
    onBounce: dovecot
      ? (bounce: { sender: string; report: string }) => dovecot.deliver(bounce.sender, bounce.report)
      : undefined,
  };
  const starttls = await startSmtpCatcher({ port: LOCAL_PORTS.smtp, mode: "starttls", ...common });
  onStarted(starttls.close);
  const implicitTls = await startSmtpCatcher({ port: LOCAL_PORTS.smtps, mode: "tls", ...common });
  onStarted(implicitTls.close);
  const inbox = await startInbox({ port: LOCAL_PORTS.inbox, store });
  onStarted(inbox.close);
  const docs = await startApiReference(LOCAL_PORTS.docs, `${localApiUrl()}/functions/v1/openapi`);
  onStarted(docs.close);

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
      // The catcher is on loopback and on non-SMTP ports: allowed explicitly, never by default. A
      // developer's own entries (a Mailpit on localhost:1025) are added to the catcher's, not put in
      // their place, so the demo config keeps working.
      MAILROOM_EGRESS_ALLOWLIST: [
        `localhost:${LOCAL_PORTS.smtp}`,
        `localhost:${LOCAL_PORTS.smtps}`,
        `localhost:${LOCAL_PORTS.imap}`,
        ...(Deno.env.get("MAILROOM_EGRESS_ALLOWLIST") ?? "").split(",").map((e) => e.trim()).filter(Boolean),
      ].join(","),
      SUPABASE_SECRET_KEYS: JSON.stringify({ default: secretKey }),
      MAILROOM_OAUTH_TOKEN_URL: oauthStandin.tokenUrl,
      MAILROOM_GRAPH_URL: oauthStandin.graphUrl,
      MAILROOM_GMAIL_URL: oauthStandin.gmailUrl,
      // Opening an unsubscribe link shows the dashboard's confirmation page, with its button.
      MAILROOM_UNSUBSCRIBE_PAGE_URL: Deno.env.get("MAILROOM_UNSUBSCRIBE_PAGE_URL") ??
        `http://127.0.0.1:${LOCAL_PORTS.dashboard}/unsubscribe.html`,
      // Webhooks to a receiver serving the stack's own certificate are trusted, besides a developer's CAs.
      MAILROOM_OAUTH_CA_CERTS: [certs.caCert, Deno.env.get("MAILROOM_OAUTH_CA_CERTS") ?? ""].join("\n").trim(),
      // A bounce shows within seconds here (hosted: every 5 minutes).
      MAILROOM_MAILBOX_CHECK_SECONDS: Deno.env.get("MAILROOM_MAILBOX_CHECK_SECONDS") ?? "10",
    },
    onRequest: options.logRequests
      ? (entry) => entry.userAgent !== SCHEDULER_AGENT && console.log(formatRequestLine(entry))
      : undefined,
  });
  onStarted(gateway.close);
  // Kept current: a function process that died is started again under a new pid.
  const writeState = (phase: StackState["phase"]) =>
    updateStackState({ ...state, phase, databaseUrl: dbUrl, functionPids: gateway.processes.map((p) => p.pid) });
  writeState("starting");
  const stateTimer = setInterval(() => writeState("running"), 5_000);
  onStarted(() => Promise.resolve(clearInterval(stateTimer)));
  // The scheduler: what pg_cron + pg_net do on Supabase, a POST to process-outbox every few seconds.
  onStarted(startScheduler(`${apiUrl}/functions/v1/process-outbox`, secretKey, SCHEDULER_INTERVAL_MS));

  const sql = postgres(dbUrl, { max: 1, onnotice: () => {} });
  const userId = await ensureUser(sql, DEMO_EMAIL);
  await sql.end();
  await ensureDemoConfig(dbUrl, userId, dovecot ? dovecot.port : null);
  const issuer = `${apiUrl}/auth/v1`;
  const token = await mintToken(signingKey, { issuer, sub: userId, email: DEMO_EMAIL, expiresIn: "24h" });
  const anonKey = await mintToken(signingKey, { issuer, role: "anon", expiresIn: "10y" });
  // The dashboard, built from dashboard/ for this start; its one-click sign-in is the demo user's.
  await buildDashboard(`${LOCAL_DIR}/dashboard`);
  const dashboard = await startDashboard(LOCAL_PORTS.dashboard, {
    dir: `${LOCAL_DIR}/dashboard`,
    apiUrl,
    anonKey,
    demoToken: () => mintToken(signingKey, { issuer, sub: userId, email: DEMO_EMAIL, expiresIn: "24h" }),
  });
  onStarted(dashboard.close);
  const body = JSON.stringify({ to: "Friend <friend@example.com>", subject: "Hello from mailroom", text: "It works." });
  const templated = JSON.stringify({
    to: "Jane <jane@example.com>",
    template: "welcome",
    data: { name: "Jane", product: "Mailroom", login_url: "https://example.com/login", tips: ["Add a config"] },
  });
  writeState("running");

  console.log(`
mailroom local stack is running${bootstrapped ? " (platform bootstrap applied)" : ""}

  Functions  ${apiUrl}/functions/v1/<name>   (${gateway.processes.map((p) => p.name).join(", ")})
  Outbox     process-outbox runs every ${
    SCHEDULER_INTERVAL_MS / 1000
  } s (secret key in ${LOCAL_DIR}/keys/secret-key.txt)
  JWKS       ${apiUrl}/auth/v1/.well-known/jwks.json
  Database   ${dbUrl}
  SMTP       127.0.0.1:${LOCAL_PORTS.smtp} (STARTTLS), 127.0.0.1:${LOCAL_PORTS.smtps} (TLS), user ${CATCHER_USER.username}
  Dashboard  http://127.0.0.1:${LOCAL_PORTS.dashboard}   (one click signs you in as the demo user)
  Inbox      http://127.0.0.1:${LOCAL_PORTS.inbox}
  IMAP       ${
    dovecot
      ? `127.0.0.1:${dovecot.port} (TLS), user ${IMAP_USER.name}, password ${IMAP_USER.password}: Sent copies; ` +
        "bounce-511@… bounces back here"
      : "not started (install Debian's dovecot-imapd for Sent copies and local bounces)"
  }
  API docs   http://127.0.0.1:${LOCAL_PORTS.docs}   (OpenAPI: ${apiUrl}/functions/v1/openapi)
  Anon key   ${anonKey}

Demo user ${DEMO_EMAIL} (config "local-inbox" is its default), token valid 24 h:
  export TOKEN=${token}
The same user as an agent (an OAuth client's token, client_id ${DEFAULT_AGENT_CLIENT_ID}: sends within the guardrails):
  export AGENT_TOKEN=$(npm run --silent token -- --quiet --agent)

Send a mail, then open the dashboard (what went out, how it ended) and the inbox (the mail itself):
  curl -sS ${apiUrl}/functions/v1/send-email \\
    -H "Authorization: Bearer $TOKEN" \\
    -H 'content-type: application/json' \\
    -d '${body}'

Or render the starter "welcome" template (also: "passwordless-notice", "newsletter"):
  curl -sS ${apiUrl}/functions/v1/send-email -H "Authorization: Bearer $TOKEN" \\
    -H 'content-type: application/json' -d '${templated}'

Ctrl-C (or npm run stop) stops everything; data stays in ${LOCAL_DIR.replace(`${ROOT}/`, "")}/ for the next start. ${
    options.logRequests ? "One line per request follows (--quiet: none)." : ""
  }`);
}

if (import.meta.main) await main();
