// Where the drain's CPU goes: 20 users' configs through the latency proxy (RTT 20 ms), drained
// in this process with V8's sampling profiler on (node:inspector), then the functions with the
// most self time, by file. The peer and the proxy run here too and are listed as such.
// deno run -A bench/profile_drain.ts [--messages N] [--configs N]
import { Session } from "node:inspector/promises";
import postgres from "postgres";
import { startTestStack } from "../tests/harness.ts";
import { startScriptedSmtp } from "../tests/scripted_smtp.ts";
import { createContext } from "../supabase/functions/_shared/context.ts";
import { drainOutbox } from "../supabase/functions/_shared/outbox/worker.ts";
import { startLatencyProxy } from "./latency_proxy.ts";
import { postgresCpuByRole } from "./cpu.ts";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}

const args = Deno.args;
const number = (flag: string, fallback: number) =>
  args.includes(flag) ? Number(args[args.indexOf(flag) + 1]) : fallback;
const messages = number("--messages", 2000), configs = number("--configs", 20);
const stack = await startTestStack({}, { isolation: "process" });
const smtp = await startScriptedSmtp({
  tls: { key: stack.certs.key, cert: stack.certs.cert },
  extensions: ["PIPELINING", "AUTH PLAIN"],
  users: { mailer: "pw" },
});
const proxy = await startLatencyProxy({ targetPort: smtp.port, rttMs: 20 });
try {
  for (let i = 0; i < configs; i++) {
    const user = await stack.createUser();
    const config = await stack.createConfig(user, {
      host: "localhost",
      port: proxy.port,
      security: "tls",
      username: "mailer",
      password: "pw",
    });
    await stack
      .sql`update public.user_smtp_configs set max_per_minute = 10000, max_per_day = 1000000 where id = ${config}`;
    await stack.asDataApi(user, (tx) =>
      tx`
      insert into public.email_audit_log (config_id, from_email, to_addresses, status, payload)
      select ${config}::uuid, 'x@example.com', array['p' || i || '@example.com'], 'queued',
             jsonb_build_object('kind', 'request', 'request',
               jsonb_build_object('to', 'p' || i || '@example.com', 'subject', 'b', 'text', 'x'))
        from generate_series(1, ${Math.floor(messages / configs)}) i`);
  }
  // With MAILROOM_PG_OPTIONS="-c shared_preload_libraries=pg_stat_statements": statements per message.
  const admin = postgres(stack.dbUrl.replace(/\/\/[^@]*@/, "//supabase_admin@"), { max: 1, onnotice: () => {} });
  const statements = await admin`create extension if not exists pg_stat_statements`
    .then(() => admin`select pg_stat_statements_reset()`)
    .then(() => true, () => false);
  const ctx = createContext(stack.functionEnv);
  if (Deno.env.get("PROFILE_SQL")) await admin.unsafe(Deno.env.get("PROFILE_SQL")!);
  const session = new Session();
  session.connect();
  await session.post("Profiler.enable");
  await session.post("Profiler.setSamplingInterval", { interval: 200 });
  await session.post("Profiler.start");
  // For a system-wide profiler (perf record -a) started from outside: the drain begins now.
  const marker = Deno.env.get("DRAIN_STARTED_FILE");
  if (marker) await Deno.writeTextFile(marker, String(Date.now()));
  const pg0 = postgresCpuByRole();
  const t0 = performance.now();
  let sent = 0;
  while (true) {
    const report = await drainOutbox(ctx, { workerId: crypto.randomUUID(), budgetMs: 50_000, cpuBudgetMs: 1e9 });
    sent += report.sent;
    if (report.claimed === 0) break;
  }
  const seconds = (performance.now() - t0) / 1000;
  const pg1 = postgresCpuByRole();
  const { profile } = await session.post("Profiler.stop") as unknown as {
    profile: { nodes: ProfileNode[]; samples: number[]; timeDeltas: number[] };
  };
  const self = new Map<number, number>();
  profile.samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)));
  const byFunction = new Map<string, number>();
  const byFile = new Map<string, number>();
  for (const node of profile.nodes) {
    const us = self.get(node.id) ?? 0;
    if (!us) continue;
    const file = node.callFrame.url.replace(/^.*\/(node_modules|\.npm|npm)\//, "npm/").replace(
      /^file:\/\/\/work\/main\//,
      "",
    );
    const name = `${node.callFrame.functionName || "(anonymous)"} ${file}:${node.callFrame.lineNumber + 1}`;
    byFunction.set(name, (byFunction.get(name) ?? 0) + us);
    const group = file.startsWith("npm/") ? file.split("/").slice(0, 4).join("/") : file || node.callFrame.functionName;
    byFile.set(group, (byFile.get(group) ?? 0) + us);
  }
  const total = [...self.values()].reduce((a, b) => a + b, 0);
  const top = (map: Map<string, number>, n: number) =>
    [...map.entries()].sort((a, b) => b[1] - a[1]).slice(0, n)
      .map(([k, us]) => `${(us / 1000 / sent).toFixed(3)} ms/msg  ${((us / total) * 100).toFixed(1)}%  ${k}`);
  console.log(`${sent} messages in ${seconds.toFixed(1)} s (${(sent / seconds).toFixed(0)}/s)`);
  console.log("\nPostgres CPU by process (ms per message; processes that exited meanwhile are not counted):");
  for (const [role, cpu] of [...pg1.entries()].sort((a, b) => b[1] - a[1])) {
    const ms = ((cpu - (pg0.get(role) ?? 0)) * 1000) / sent;
    if (ms >= 0.005) console.log(`${ms.toFixed(3)} ms/msg  ${role}`);
  }
  console.log("\nby file:\n" + top(byFile, 25).join("\n"));
  console.log("\nby function:\n" + top(byFunction, 40).join("\n"));
  // Who calls the heaviest native functions (the five nearest JavaScript callers).
  const parent = new Map<number, ProfileNode>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node);
  const stacks = new Map<string, number>();
  for (const node of profile.nodes) {
    const us = self.get(node.id) ?? 0;
    if (!us || node.callFrame.url) continue;
    const chain: string[] = [node.callFrame.functionName];
    for (let p = parent.get(node.id); p && chain.length < 16; p = parent.get(p.id)) {
      chain.push(
        `${p.callFrame.functionName || "(anonymous)"}@${p.callFrame.url.split("/").slice(-2).join("/")}:${
          p.callFrame.lineNumber + 1
        }`,
      );
    }
    const key = chain.join(" < ");
    stacks.set(key, (stacks.get(key) ?? 0) + us);
  }
  console.log("\nnative, by caller:\n" + top(stacks, 15).join("\n"));
  if (statements) {
    const rows = await admin<{ calls: number; ms: number; query: string }[]>`
      select calls::int, total_exec_time::float as ms, left(regexp_replace(query, '\\s+', ' ', 'g'), 110) as query
        from pg_stat_statements where query not like '%pg_stat_statements%' order by calls desc limit 25`;
    const calls = rows.reduce((sum, row) => sum + row.calls, 0);
    console.log(`\nstatements: ${(calls / sent).toFixed(2)} per message (top 25)`);
    for (const row of rows) {
      console.log(`${(row.calls / sent).toFixed(3)}/msg  ${(row.ms / sent).toFixed(3)} ms/msg  ${row.query}`);
    }
    // The statements the worker sent itself (nested ones are inside these), by time.
    const top = await admin<{ calls: number; ms: number; query: string }[]>`
      select calls::int, total_exec_time::float as ms, left(regexp_replace(query, '\\s+', ' ', 'g'), 110) as query
        from pg_stat_statements where toplevel and query not like '%pg_stat_statements%'
       order by total_exec_time desc limit 15`;
    console.log(`\ntop-level statements by time:`);
    for (const row of top) {
      console.log(`${(row.calls / sent).toFixed(3)}/msg  ${(row.ms / sent).toFixed(3)} ms/msg  ${row.query}`);
    }
  }
  await admin.end();
  await ctx.sql.end();
} finally {
  await proxy.close();
  await smtp.close();
  await stack.close();
}
