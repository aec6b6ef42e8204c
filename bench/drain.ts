// `deno task bench` (throughput where servers are far away): the outbox drain through
// bench/latency_proxy.ts against the scripted peer (implicit TLS, AUTH PLAIN, PIPELINING),
// with every config's budget set not to bind unless a case says so:
//   - many users: 20 users' configs share the messages; the ideal is the sum over configs of
//     max_connections / (round trips per message x RTT), with 2 round trips per warm
//     pipelined message (the envelope with DATA, then the body and its final dot);
//   - one config: all the messages through one config, ideal max_connections / (2 x RTT);
//   - budgets that bind: each config sends exactly its per-minute budget, the rest waits;
//   - fairness: one user's 10,000 queued messages against another user's single one, queued
//     while the first drain runs: how many of the first user's were sent while it waited;
//   - scale-out: 1, 2 and 4 process-outbox processes draining at once (as pg_cron + pg_net
//     start them on Supabase).
// Postgres CPU per delivered message (every postgres process's CPU, from /proc) is printed
// beside each rate. Alone: deno run -A bench/drain.ts [--smoke] [--messages N] [--rtt ms] [--quick] [--json path]
import { startTestStack, TEST_SECRET_KEY, type TestStack, type TestUser } from "../tests/harness.ts";
import { startScriptedSmtp } from "../tests/scripted_smtp.ts";
import { type FunctionProcess, startFunctionProcess } from "../local/function_processes.ts";
import { type LatencyProxy, roundTrips, startLatencyProxy } from "./latency_proxy.ts";
import { proxiedSender, SMTP_PASSWORD, SMTP_USER } from "./latency.ts";
import { cpuSeconds, postgresCpuSeconds } from "./cpu.ts";
import { DEFAULT_CPU_BUDGET_MS } from "../supabase/functions/_shared/outbox/limits.ts";

/** Round trips a warm pipelined message costs (the envelope with DATA, then the body and dot). */
const ROUND_TRIPS_PER_MESSAGE = 2;

/** One drain measured. */
export interface DrainRun {
  messages: number;
  configs: number;
  workers: number;
  seconds: number;
  messages_per_s: number;
  /** The fastest process-outbox run's own rate (times the workers): a warm instance, without the first run's start. */
  best_run_per_s: number;
  /** The sum over configs of max_connections / (2 x RTT), in messages/s. */
  ideal_per_s: number;
  of_ideal: number;
  /** Round trips counted at the proxy, per message (connections' setup included). */
  round_trips_per_message: number;
  /** CPU of every postgres process, per delivered message, in ms. */
  postgres_ms_per_message: number;
  /** CPU of the worker processes, per delivered message, in ms. */
  worker_ms_per_message: number;
  /** CPU of this process (the scripted peer's TLS and the proxy), per delivered message, in ms. */
  peer_ms_per_message: number;
  /**
   * The most this machine could drain, every core busy with nothing else: its cores over the CPU
   * one message cost (Postgres, worker, peer and proxy), in messages/s. Where it is below the
   * ideal, the ideal cannot be reached here, whatever the worker does.
   */
  cpu_ceiling_per_s: number;
}

/** The whole case. */
export interface DrainBench {
  runs: ({ rtt_ms: number; case: string } & DrainRun)[];
  budgets: { rtt_ms: number; configs: number; per_minute: number; sent_min: number; sent_max: number; kept: boolean };
  fairness: {
    rtt_ms: number;
    queued: number;
    /** The first user's messages sent between the single message's queueing and its sending. */
    sent_while_waiting: number;
    /** From queueing to `sent`, in ms (its claim, a new session and its send). */
    waited_ms: number;
    /** The first user's rows claimed after the single message was queued, before it was. */
    claimed_ahead: number;
    claim_rows: number;
    within_one_claim: boolean;
  };
  seconds: number;
}

interface Sender {
  user: TestUser;
  config: string;
}

/** Run the case against `stack`; `smoke` keeps it to a few seconds (CI). */
export async function benchDrain(
  options: { smoke: boolean; messages?: number; rtts?: number[]; quick?: boolean },
): Promise<DrainBench> {
  // Its own stack, with the timeouts a deployment has (the tests' are short, and 60 TLS
  // sessions opening at once on a loaded machine may take longer than they allow).
  const stack = await startTestStack({
    MAILROOM_SMTP_CONNECT_TIMEOUT_MS: "10000",
    MAILROOM_SMTP_GREETING_TIMEOUT_MS: "10000",
    MAILROOM_SMTP_SOCKET_TIMEOUT_MS: "30000",
    // The platform's budget (the test stacks' is far larger): runs end as they would there.
    MAILROOM_OUTBOX_CPU_BUDGET_MS: String(DEFAULT_CPU_BUDGET_MS),
    // The peer's CA is trusted as a public one is (see startTestStack's caTrust).
  }, { isolation: "process", caTrust: "runtime" });
  try {
    return await benchDrainOn(stack, options);
  } finally {
    await stack.close();
  }
}

async function benchDrainOn(
  stack: TestStack,
  options: { smoke: boolean; messages?: number; rtts?: number[]; quick?: boolean },
): Promise<DrainBench> {
  const started = performance.now();
  const { smoke } = options;
  const smtp = await startScriptedSmtp({
    tls: { key: stack.certs.key, cert: stack.certs.cert },
    extensions: ["PIPELINING", "AUTH PLAIN"],
    users: { [SMTP_USER]: SMTP_PASSWORD },
  });
  const worker = stack.processes.find((p) => p.name === "process-outbox")!;
  const runs: DrainBench["runs"] = [];
  let budgets: DrainBench["budgets"] | undefined;
  let fairness: DrainBench["fairness"] | undefined;
  const total = options.messages ?? (smoke ? 60 : 2_000);
  try {
    for (const rtt of options.rtts ?? (smoke ? [20] : [20, 80])) {
      const proxy = await startLatencyProxy({ targetPort: smtp.port, rttMs: rtt });
      try {
        const senders = (n: number) => Promise.all(Array.from({ length: n }, () => sender(stack, proxy)));
        const many = await senders(20);
        runs.push({ rtt_ms: rtt, case: "20 users' configs", ...await drain(stack, proxy, many, total, [worker]) });
        if (options.quick) continue;
        const one = await senders(1);
        runs.push({ rtt_ms: rtt, case: "one config", ...await drain(stack, proxy, one, total, [worker]) });
        if (rtt === 20) {
          budgets = { rtt_ms: rtt, ...await bindingBudgets(stack, await senders(smoke ? 4 : 20), worker) };
          fairness = { rtt_ms: rtt, ...await fairnessCase(stack, await senders(2), smoke ? 300 : 10_000, worker) };
          // Scale-out: more process-outbox processes, each its own instance with its own sessions.
          const extra = await Promise.all(
            (smoke ? [1] : [1, 2, 3]).map(() => startFunctionProcess("process-outbox", stack.functionEnv)),
          );
          try {
            // Smoke mode (CI) keeps to 1 and 2 workers.
            for (const workers of smoke ? [1, 2] : [1, 2, 4]) {
              const fresh = await senders(20);
              const run = await drain(stack, proxy, fresh, total, [worker, ...extra].slice(0, workers));
              runs.push({ rtt_ms: rtt, case: `scale-out: ${workers} worker${workers > 1 ? "s" : ""}`, ...run });
            }
          } finally {
            await Promise.all(extra.map((p) => p.close()));
          }
        }
      } finally {
        await proxy.close();
      }
    }
  } finally {
    await smtp.close();
  }
  const result: DrainBench = {
    runs,
    budgets: budgets ?? { rtt_ms: 0, configs: 0, per_minute: 0, sent_min: 0, sent_max: 0, kept: false },
    fairness: fairness ??
      {
        rtt_ms: 0,
        queued: 0,
        sent_while_waiting: 0,
        waited_ms: 0,
        claimed_ahead: 0,
        claim_rows: 0,
        within_one_claim: false,
      },
    seconds: (performance.now() - started) / 1000,
  };
  print(result);
  return result;
}

const sender = proxiedSender;

/** Queue `count` messages for a sender with the Data API (as send-bulk's rows are), due now. */
async function queue(stack: TestStack, { user, config }: Sender, count: number, tag: string): Promise<void> {
  if (count <= 0) return;
  await stack.asDataApi(user, (tx) =>
    tx`
      insert into public.email_audit_log (config_id, from_email, to_addresses, status, payload)
      select ${config}::uuid, 'x@example.com', array[${tag} || i || '@example.com'], 'queued',
             jsonb_build_object('kind', 'request', 'request',
               jsonb_build_object('to', ${tag} || i || '@example.com', 'subject', 'b', 'text', 'x'))
        from generate_series(1, ${count}) i`);
}

/** One process-outbox run; its report. */
async function runWorker(worker: FunctionProcess): Promise<Record<string, number>> {
  const res = await fetch(`${worker.url}/process-outbox`, { method: "POST", headers: { apikey: TEST_SECRET_KEY } });
  const report = await res.json();
  if (res.status !== 200) throw new Error(`process-outbox answered ${res.status}: ${JSON.stringify(report)}`);
  return report;
}

/** Run each worker until a run of it finds nothing to claim. */
async function drainWith(workers: FunctionProcess[]): Promise<{ delivered: number; best: number }> {
  let delivered = 0, best = 0;
  await Promise.all(workers.map(async (worker) => {
    while (true) {
      const report = await runWorker(worker);
      const runMessages = report.sent + report.failed + report.unknown;
      if (report.duration_ms > 500) best = Math.max(best, runMessages / (report.duration_ms / 1000));
      delivered += report.sent + report.failed + report.unknown;
      if (report.claimed === 0) return;
    }
  }));
  return { delivered, best: best * workers.length };
}

async function drain(
  stack: TestStack,
  proxy: LatencyProxy,
  senders: Sender[],
  total: number,
  workers: FunctionProcess[],
): Promise<DrainRun> {
  // Postgres's own background work (checkpointer, WAL writer, statistics) over an idle second
  // before anything is queued, taken off the drain's count at the same rate.
  const idle0 = postgresCpuSeconds();
  await new Promise((resolve) => setTimeout(resolve, 1000));
  const idlePerSecond = postgresCpuSeconds() - idle0;
  const each = Math.floor(total / senders.length);
  await Promise.all(senders.map((s, i) => queue(stack, s, each, `m${i}-`)));
  // What autovacuum would do about the new rows, done now rather than during the drain.
  await stack.sql`vacuum analyze public.email_audit_log`.catch(() => {});
  const [{ width }] = await stack.sql<{ width: number }[]>`
    select coalesce(sum(max_connections), 0)::int as width from public.user_smtp_configs
     where id = any (${senders.map((s) => s.config)}::uuid[])`;
  const workersCpu = () => workers.reduce((sum, w) => sum + cpuSeconds(w.pid), 0);
  const trips0 = proxy.counters(), pg0 = postgresCpuSeconds(), w0 = workersCpu(), own0 = cpuSeconds(Deno.pid);
  const t0 = performance.now();
  const { delivered: messages, best } = await drainWith(workers);
  const seconds = (performance.now() - t0) / 1000;
  const pg1 = postgresCpuSeconds(), w1 = workersCpu(), own1 = cpuSeconds(Deno.pid);
  await new Promise((resolve) => setTimeout(resolve, proxy.rttMs + 5));
  const trips = roundTrips(trips0, proxy.counters());
  if (messages !== each * senders.length) {
    const left = await stack.sql`
      select status, count(*)::int as n, min(next_attempt_at - now()) as due_in, count(lease_until)::int as leased,
             min(error_class) as error_class, min(attempts) as attempts
        from public.email_audit_log where config_id = any (${senders.map((s) => s.config)}::uuid[])
       group by status`;
    throw new Error(
      `the drain delivered ${messages} of ${each * senders.length} messages: ${JSON.stringify(left)}`,
    );
  }
  const ideal = width / (ROUND_TRIPS_PER_MESSAGE * proxy.rttMs / 1000);
  const rate = messages / seconds;
  return {
    messages,
    configs: senders.length,
    workers: workers.length,
    seconds,
    messages_per_s: rate,
    best_run_per_s: best,
    ideal_per_s: ideal,
    of_ideal: rate / ideal,
    round_trips_per_message: trips / messages,
    postgres_ms_per_message: (Math.max(0, pg1 - pg0 - idlePerSecond * seconds) * 1000) / messages,
    worker_ms_per_message: ((w1 - w0) * 1000) / messages,
    peer_ms_per_message: ((own1 - own0) * 1000) / messages,
    cpu_ceiling_per_s: (navigator.hardwareConcurrency * 1000 * messages) /
      Math.max(1e-9, (Math.max(0, pg1 - pg0 - idlePerSecond * seconds) + (w1 - w0) + (own1 - own0)) * 1000),
  };
}

/** Budgets that bind: each config may send 10 a minute and has 15 queued; one drain. */
async function bindingBudgets(
  stack: TestStack,
  senders: Sender[],
  worker: FunctionProcess,
): Promise<Omit<DrainBench["budgets"], "rtt_ms">> {
  const perMinute = 10;
  const configs = senders.map((s) => s.config);
  await stack
    .sql`update public.user_smtp_configs set max_per_minute = ${perMinute} where id = any (${configs}::uuid[])`;
  await Promise.all(senders.map((s, i) => queue(stack, s, perMinute + 5, `b${i}-`)));
  await drainWith([worker]);
  const sent = await stack.sql<{ sent: number }[]>`
    select count(*) filter (where a.status = 'sent')::int as sent
      from unnest(${configs}::uuid[]) c (id) left join public.email_audit_log a on a.config_id = c.id
     group by c.id`;
  const counts = sent.map((row) => row.sent);
  const [min, max] = [Math.min(...counts), Math.max(...counts)];
  await stack.sql`update public.email_audit_log set status = 'cancelled'
                   where config_id = any (${configs}::uuid[]) and status in ('queued', 'scheduled')`;
  return {
    configs: senders.length,
    per_minute: perMinute,
    sent_min: min,
    sent_max: max,
    kept: min === max && max === perMinute,
  };
}

/**
 * One user's `queued` messages are draining when another user queues one: how many of the
 * first user's went out between that message's queueing and its sending. The rest of the
 * first user's are cancelled once it went (the case measures the wait, not the backlog).
 */
async function fairnessCase(
  stack: TestStack,
  [big, small]: Sender[],
  queued: number,
  worker: FunctionProcess,
): Promise<Omit<DrainBench["fairness"], "rtt_ms">> {
  await queue(stack, big, queued, "big");
  const draining = drainWith([worker]);
  // Let the first user's drain get going (a few claims), then queue the single message.
  const sentOf = async (config: string) =>
    (await stack.sql<{ n: number }[]>`
      select count(*)::int as n from public.email_audit_log where config_id = ${config} and status = 'sent'`)[0].n;
  while (await sentOf(big.config) < 50) await new Promise((resolve) => setTimeout(resolve, 20));
  const before = await sentOf(big.config);
  const queuedAt = performance.now();
  await queue(stack, small, 1, "small");
  while (await sentOf(small.config) < 1) await new Promise((resolve) => setTimeout(resolve, 5));
  const waitedMs = performance.now() - queuedAt;
  const after = await sentOf(big.config);
  // Claims that passed the single message over: the first user's rows first claimed after it
  // was queued and before it was claimed (a claim stamps first_attempt_at with its own time).
  const [{ passed }] = await stack.sql<{ passed: number }[]>`
    select count(*)::int as passed
      from public.email_audit_log big, public.email_audit_log small
     where big.config_id = ${big.config} and small.config_id = ${small.config}
       and big.first_attempt_at > small.created_at and big.first_attempt_at < small.first_attempt_at`;
  await stack.sql`update public.email_audit_log set status = 'cancelled'
                   where config_id = ${big.config} and status in ('queued', 'scheduled')`;
  await draining;
  const claimRows = 25;
  return {
    queued,
    sent_while_waiting: after - before,
    waited_ms: waitedMs,
    claimed_ahead: passed,
    claim_rows: claimRows,
    within_one_claim: passed <= claimRows,
  };
}

function print(bench: DrainBench): void {
  console.log(
    `\n### The outbox drain, servers far away (implicit TLS, AUTH, PIPELINING; budgets not binding; ${
      bench.seconds.toFixed(1)
    } s)\n`,
  );
  console.log(
    "| RTT | case | messages | workers | messages/s: all runs (fastest run) | ideal/s | of ideal, all (fastest) " +
      "(target 80%) | round trips/message | CPU ms/message: Postgres (target 0.25) / worker / peer and proxy | " +
      `this machine's CPU ceiling/s (${navigator.hardwareConcurrency} cores) |`,
  );
  console.log("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
  for (const r of bench.runs) {
    console.log(
      `| ${r.rtt_ms} ms | ${r.case} | ${r.messages} | ${r.workers} | ${r.messages_per_s.toFixed(1)} (${
        r.best_run_per_s.toFixed(0)
      }) | ${r.ideal_per_s.toFixed(0)} | ${(r.of_ideal * 100).toFixed(0)}% (${
        ((r.best_run_per_s / r.ideal_per_s) * 100).toFixed(0)
      }%) | ${r.round_trips_per_message.toFixed(2)} | ${r.postgres_ms_per_message.toFixed(2)} / ${
        r.worker_ms_per_message.toFixed(2)
      } / ${r.peer_ms_per_message.toFixed(2)} | ${r.cpu_ceiling_per_s.toFixed(0)} |`,
    );
  }
  const b = bench.budgets;
  console.log(
    `\nBudgets that bind (RTT ${b.rtt_ms} ms): ${b.configs} configs at ${b.per_minute} a minute, ${
      b.per_minute + 5
    } queued each: each sent ${b.sent_min}-${b.sent_max} (${b.kept ? "kept exactly" : "NOT kept"}).`,
  );
  const f = bench.fairness;
  console.log(
    `Fairness (RTT ${f.rtt_ms} ms): while one user's ${f.queued} messages drained, another user's single message ` +
      `was sent ${f.waited_ms.toFixed(0)} ms after it was queued (its claim, a new TLS session, its send), while ` +
      `${f.sent_while_waiting} of theirs went out; claims took ${f.claimed_ahead} of their rows ahead of it (one claim ` +
      `is ${f.claim_rows} rows: ${f.within_one_claim ? "within one claim" : "MORE than one claim"}).`,
  );
}

if (import.meta.main) {
  const args = Deno.args;
  const number = (flag: string) => args.includes(flag) ? Number(args[args.indexOf(flag) + 1]) : undefined;
  const drain = await benchDrain({
    smoke: args.includes("--smoke"),
    messages: number("--messages"),
    rtts: number("--rtt") !== undefined ? [number("--rtt")!] : undefined,
    // Only the many-configs case (while tuning).
    quick: args.includes("--quick"),
  });
  const jsonPath = args.includes("--json") ? args[args.indexOf("--json") + 1] : undefined;
  if (jsonPath) await Deno.writeTextFile(jsonPath, JSON.stringify({ drain }, null, 2));
}
