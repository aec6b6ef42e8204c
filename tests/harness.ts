// A throwaway stack for integration tests: a private Postgres cluster with the platform
// bootstrap and our migrations, the functions gateway on a random port, local JWT keys
// and a CA for the test SMTP servers. Everything is real; nothing is mocked.
import postgres from "postgres";
import { bootstrapPlatform, type Cluster, freePort, pushMigrations, startCluster } from "../local/postgres.ts";
import { generateSigningKey, jwks, type MintOptions, mintToken, type SigningKey } from "../local/jwt.ts";
import { type Gateway, startGateway } from "../local/gateway.ts";
import type { FunctionProcess } from "../local/function_processes.ts";
import { ensureUser } from "../local/users.ts";
import { generateCertificates } from "../local/certs.ts";
import { type SmtpCatcher, startSmtpCatcher } from "../local/smtp_catcher.ts";

/** A signed-in test user. */
export interface TestUser {
  id: string;
  email: string;
  token: string;
}

/** Fields of a config created directly in SQL (until the smtp-configs function exists). */
export interface ConfigFields {
  name?: string;
  host?: string;
  port: number;
  security?: "tls" | "starttls" | "none";
  username?: string | null;
  password?: string;
  from_email?: string;
  from_name?: string | null;
  is_default?: boolean;
  is_active?: boolean;
  suppress_hard_bounces?: boolean;
}

/** The running stack and helpers to drive it. */
export interface TestStack {
  /** Plays the role of SUPABASE_URL: functions at <url>/functions/v1/<name>. */
  url: string;
  /** A `postgres` connection (BYPASSRLS, not a superuser, as on Supabase) for assertions behind RLS's back. */
  sql: postgres.Sql;
  /** The database URL the functions use (SUPABASE_DB_URL). */
  dbUrl: string;
  /** Run the outbox worker once, as the scheduler would (POST process-outbox with the secret key). */
  drainOutbox(): Promise<Record<string, number>>;
  /** The function processes (with `isolation: "process"`). */
  processes: FunctionProcess[];
  /** The environment the functions run with (to start more of them, as the bench's scale-out does). */
  functionEnv: Record<string, string>;
  anonKey: string;
  certs: { caCert: string; cert: string; key: string };
  signingKey: SigningKey;
  createUser(email?: string): Promise<TestUser>;
  mint(options: Omit<MintOptions, "issuer"> & { issuer?: string }): Promise<string>;
  createConfig(user: TestUser, fields: ConfigFields): Promise<string>;
  /** Run `fn` as `user` straight against the database, as a Data API (PostgREST) request would: RLS applies. */
  asDataApi<T>(user: { id: string }, fn: (tx: postgres.Sql) => Promise<T>): Promise<T>;
  invoke(
    name: string,
    init: { token?: string; body?: unknown; method?: string; headers?: Record<string, string> },
  ): Promise<Response>;
  close(): Promise<void>;
}

let stackCount = 0;

/** The secret API key test stacks accept for server-to-server calls (process-outbox). */
export const TEST_SECRET_KEY = "sb_secret_local_test_only_0123456789";

/**
 * Start a stack; `env` overrides the functions' environment.
 *
 * `caTrust`: how the functions trust the stack's CA (its SMTP peers' certificates): through
 * MAILROOM_SMTP_CA_CERTS (`env`, the default), or (`runtime`, with `isolation: "process"`) the
 * way a deployment trusts a public CA, in the runtime's own store (DENO_CERT): Deno parses the
 * whole root store on every TLS connection that names extra CAs, a cost (16-22 ms of CPU per
 * connection here) that a deployment without a private CA never pays, so the benches use it.
 */
export async function startTestStack(
  env: Record<string, string> = {},
  options: { isolation?: "inline" | "process"; caTrust?: "env" | "runtime" } = {},
): Promise<TestStack> {
  const dir = await Deno.makeTempDir({ prefix: "mailroom-test-" });
  let cluster: Cluster | undefined;
  let gateway: Gateway | undefined;
  let sql: postgres.Sql | undefined;
  try {
    cluster = await startCluster({ dir, port: freePort(), fast: true });
    await bootstrapPlatform(cluster.adminUrl);
    await pushMigrations(cluster.url);
    sql = postgres(cluster.url, { max: 4, onnotice: () => {} });
    const signingKey = await generateSigningKey();
    const certs = await generateCertificates();
    const port = freePort();
    const url = `http://127.0.0.1:${port}`;
    const runtimeTrust = options.caTrust === "runtime";
    if (runtimeTrust && options.isolation !== "process") throw new Error("caTrust: runtime needs isolation: process");
    if (runtimeTrust) await Deno.writeTextFile(`${dir}/ca.pem`, certs.caCert);
    const functionEnv: Record<string, string> = {
      SUPABASE_URL: url,
      SUPABASE_DB_URL: cluster.url,
      ...(runtimeTrust ? { DENO_CERT: `${dir}/ca.pem` } : { MAILROOM_SMTP_CA_CERTS: certs.caCert }),
      MAILROOM_SMTP_CONNECT_TIMEOUT_MS: "1500",
      MAILROOM_SMTP_GREETING_TIMEOUT_MS: "1500",
      MAILROOM_SMTP_SOCKET_TIMEOUT_MS: "3000",
      // The test SMTP servers listen on loopback, on random ports: exempt them explicitly.
      MAILROOM_EGRESS_ALLOWLIST: "localhost",
      SUPABASE_SECRET_KEYS: JSON.stringify({ default: TEST_SECRET_KEY }),
      // Tests drain in one call and expect it all done; the platform's CPU budget has a test of its own.
      MAILROOM_OUTBOX_CPU_BUDGET_MS: "60000",
      ...env,
    };
    gateway = await startGateway({ port, isolation: options.isolation, jwks: jwks(signingKey), env: functionEnv });
    const issuer = `${url}/auth/v1`;
    const anonKey = await mintToken(signingKey, { issuer, role: "anon", expiresIn: "10y" });
    const db = sql;
    const stack: TestStack = {
      url,
      sql: db,
      dbUrl: env.SUPABASE_DB_URL ?? cluster.url,
      processes: gateway.processes,
      functionEnv,
      async drainOutbox() {
        const res = await fetch(`${url}/functions/v1/process-outbox`, {
          method: "POST",
          headers: { apikey: TEST_SECRET_KEY },
        });
        const report = await res.json();
        if (res.status !== 200) throw new Error(`process-outbox answered ${res.status}: ${JSON.stringify(report)}`);
        return report;
      },
      anonKey,
      certs,
      signingKey,
      async createUser(email) {
        const address = email ?? `user${++stackCount}-${crypto.randomUUID().slice(0, 8)}@example.com`;
        const id = await ensureUser(db, address);
        return { id, email: address, token: await mintToken(signingKey, { issuer, sub: id, email: address }) };
      },
      mint: (options) => mintToken(signingKey, { issuer, ...options }),
      async asDataApi(user, fn) {
        const claims = JSON.stringify({ sub: user.id, role: "authenticated" });
        return await db.begin(async (tx) => {
          await tx`select set_config('request.jwt.claims', ${claims}, true), set_config('role', 'authenticated', true)`;
          return await fn(tx as unknown as postgres.Sql);
        }) as Awaited<ReturnType<typeof fn>>;
      },
      createConfig(user, fields) {
        return stack.asDataApi(user, async (tx) => {
          const [row] = await tx<{ id: string }[]>`
            insert into public.user_smtp_configs
              (name, host, port, security, username, from_email, from_name, is_default, is_active,
               suppress_hard_bounces)
            values (${fields.name ?? "default"}, ${fields.host ?? "localhost"}, ${fields.port},
                    ${fields.security ?? "tls"}, ${fields.username === undefined ? "mailer" : fields.username},
                    ${fields.from_email ?? user.email}, ${fields.from_name ?? null},
                    ${fields.is_default ?? true}, ${fields.is_active ?? true}, ${fields.suppress_hard_bounces ?? true})
            returning id`;
          if (fields.password !== undefined) {
            await tx`select private.set_smtp_config_password(${row.id}::uuid, ${fields.password})`;
          }
          return row.id;
        });
      },
      invoke(name, init) {
        const headers: Record<string, string> = { apikey: anonKey, ...init.headers };
        if (init.token) headers.authorization = `Bearer ${init.token}`;
        if (init.body !== undefined) headers["content-type"] = "application/json";
        return fetch(`${url}/functions/v1/${name}`, {
          method: init.method ?? "POST",
          headers,
          body: init.body === undefined ? undefined : JSON.stringify(init.body),
        });
      },
      async close() {
        await gateway?.close();
        await db.end({ timeout: 2 });
        await cluster?.stop();
        await Deno.remove(dir, { recursive: true }).catch(() => {});
      },
    };
    return stack;
  } catch (error) {
    await gateway?.close().catch(() => {});
    await sql?.end({ timeout: 1 }).catch(() => {});
    await cluster?.stop().catch(() => {});
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw error;
  }
}

/**
 * A signed-in user whose default config sends to a fresh TLS catcher (AUTH mailer/pw).
 * Close the catcher yourself.
 */
export async function userWithCatcher(
  stack: TestStack,
  configName = "catcher",
): Promise<{ user: TestUser; smtp: SmtpCatcher }> {
  const smtp = await startSmtpCatcher({
    mode: "tls",
    tls: { key: stack.certs.key, cert: stack.certs.cert },
    users: { mailer: "pw" },
  });
  const user = await stack.createUser();
  await stack.createConfig(user, { name: configName, port: smtp.port, password: "pw" });
  return { user, smtp };
}

/** Read a JSON response body, failing clearly when it is not JSON. */
export async function body<T = Record<string, unknown>>(res: Response): Promise<T> {
  const text = await res.text();
  try {
    return JSON.parse(text) as T;
  } catch {
    throw new Error(`expected JSON, got ${res.status}: ${text.slice(0, 200)}`);
  }
}

/** The API's error body. */
export interface ErrorBody {
  error: { code: string; message: string; details?: Record<string, unknown> };
}

/** The error code of a response, asserting its status. */
export async function errorCode(res: Response, status: number): Promise<string> {
  const parsed = await body<ErrorBody>(res);
  if (res.status !== status) {
    throw new Error(`expected ${status}, got ${res.status}: ${JSON.stringify(parsed)}`);
  }
  return parsed.error.code;
}

/** Collect everything logged (the functions run in this process) while `fn` runs. */
export async function captureLogs<T>(fn: () => Promise<T>): Promise<{ result: T; logs: string }> {
  const lines: string[] = [];
  const original = { log: console.log, error: console.error, warn: console.warn, info: console.info };
  const capture = (...args: unknown[]) => lines.push(args.map(String).join(" "));
  Object.assign(console, { log: capture, error: capture, warn: capture, info: capture });
  try {
    return { result: await fn(), logs: lines.join("\n") };
  } finally {
    Object.assign(console, original);
  }
}
