// `deno task bench` (servers far away): every SMTP path through bench/latency_proxy.ts at a
// round trip of 0, 20 and 80 ms, side by side in one run, against the scripted peer with
// implicit TLS (as hosted functions use 465), AUTH PLAIN and PIPELINING offered:
//   - nodemailer, a new connection per message (what the seed did);
//   - nodemailer, one pooled connection reused (the floor for a warm send);
//   - POST /send-email, straight to its process (the function's own SMTP pool);
//   - the outbox drain (send-bulk queues, process-outbox sends).
// One client, one message at a time: latency, not throughput. The first send of each path is
// its cold send (a new connection); p50 and p99 are over the warm ones that follow (for the
// new-connection path every send is cold). Round trips are counted at the proxy (one per TCP
// handshake, one per flight of server bytes the client waited for) and derived from latency,
// (p50 at the largest round trip - p50 at 0) / that round trip.
// Alone: deno run -A bench/latency.ts [--sends N] [--smoke] [--json path]
import nodemailer from "nodemailer";
import { startTestStack, type TestStack, type TestUser } from "../tests/harness.ts";
import { startScriptedSmtp } from "../tests/scripted_smtp.ts";
import type { FunctionProcess } from "../local/function_processes.ts";

/** Each send its own email (the same one twice within 10 minutes is refused as duplicate_send). */
const distinct = () => ({ subject: `b ${crypto.randomUUID()}` });
import { type LatencyCounters, type LatencyProxy, roundTrips, startLatencyProxy } from "./latency_proxy.ts";

/** Round trips measured in a full run, and in smoke mode (CI). */
export const RTTS = [0, 20, 80];
export const SMOKE_RTTS = [0, 20];

/** The scripted peer's login (bench/drain.ts uses the same). */
export const SMTP_USER = "mailer";
export const SMTP_PASSWORD = "pw";

/** One path at one round trip. */
export interface PathLatency {
  /** Sends measured (the first is the cold one). */
  sends: number;
  /** The first send, on a new connection, in ms. */
  cold_ms: number;
  /** Percentiles over the sends after the first, in ms. */
  p50: number;
  p99: number;
  /** Round trips the first send cost, counted at the proxy. */
  cold_round_trips: number;
  /** Median round trips of the sends after the first, counted at the proxy. */
  warm_round_trips: number;
}

/** Every path at one round trip. */
export interface LatencyRun {
  rtt_ms: number;
  nodemailer_new_connection: PathLatency;
  nodemailer_pooled: PathLatency;
  send_email: PathLatency;
  /** send-email's p50 over pooled nodemailer's. */
  send_email_vs_pooled: number;
  /** The outbox drain of `messages` queued by one send-bulk. */
  drain: {
    messages: number;
    ms: number;
    messages_per_s: number;
    ms_per_message: number;
    round_trips_per_message: number;
  };
}

/** The whole case. */
export interface LatencyBench {
  rtts: number[];
  runs: LatencyRun[];
  /** How long the whole case took, in seconds (what it adds to a bench run). */
  seconds: number;
  /** Per path, round trips derived from latency between the smallest and largest round trip. */
  derived_round_trips: Record<string, { warm: number; cold: number }>;
}

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];
const median = (values: number[]) => percentile([...values].sort((a, b) => a - b), 0.5);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Send `sends` messages one at a time with `one`, timing each and counting its round trips at
 * the proxy. Between sends the proxy is let go quiet (one round trip and a little), so what a
 * send leaves behind (a QUIT and its reply) is not counted against the next one.
 */
async function measure(proxy: LatencyProxy, sends: number, one: (i: number) => Promise<void>): Promise<PathLatency> {
  const times: number[] = [];
  const trips: number[] = [];
  for (let i = 0; i < sends; i++) {
    const before: LatencyCounters = proxy.counters();
    const started = performance.now();
    await one(i);
    times.push(performance.now() - started);
    await sleep(proxy.rttMs + 5);
    trips.push(roundTrips(before, proxy.counters()));
  }
  const warm = times.slice(1).sort((a, b) => a - b);
  return {
    sends,
    cold_ms: times[0],
    p50: warm.length ? percentile(warm, 0.5) : times[0],
    p99: warm.length ? percentile(warm, 0.99) : times[0],
    cold_round_trips: trips[0],
    warm_round_trips: trips.length > 1 ? median(trips.slice(1)) : trips[0],
  };
}

/** Run the case against `stack` (whose functions run as processes) and print its tables. */
export async function benchLatency(
  stack: TestStack,
  sendEmail: FunctionProcess,
  options: { sends: number; rtts: number[] },
): Promise<LatencyBench> {
  const started = performance.now();
  const smtp = await startScriptedSmtp({
    tls: { key: stack.certs.key, cert: stack.certs.cert },
    extensions: ["PIPELINING", "AUTH PLAIN"],
    users: { [SMTP_USER]: SMTP_PASSWORD },
  });
  const runs: LatencyRun[] = [];
  try {
    for (const rtt of options.rtts) {
      const proxy = await startLatencyProxy({ targetPort: smtp.port, rttMs: rtt });
      try {
        runs.push(await benchOneRtt(stack, sendEmail, proxy, options.sends));
      } finally {
        await proxy.close();
      }
    }
  } finally {
    await smtp.close();
  }
  const result: LatencyBench = {
    rtts: options.rtts,
    runs,
    seconds: (performance.now() - started) / 1000,
    derived_round_trips: derive(runs),
  };
  print(result);
  return result;
}

async function benchOneRtt(
  stack: TestStack,
  sendEmail: FunctionProcess,
  proxy: LatencyProxy,
  sends: number,
): Promise<LatencyRun> {
  const smtpOptions = {
    host: "127.0.0.1",
    port: proxy.port,
    secure: true,
    tls: { ca: stack.certs.caCert, servername: "localhost" },
    auth: { user: SMTP_USER, pass: SMTP_PASSWORD },
    connectionTimeout: 10_000,
    greetingTimeout: 10_000,
    socketTimeout: 10_000,
  };
  const mail = (i: number) => ({ from: "bench@example.com", to: `r${i}@example.com`, subject: "b", text: "x" });

  const fresh = nodemailer.createTransport(smtpOptions);
  const nodemailer_new_connection = await measure(proxy, sends, async (i) => void await fresh.sendMail(mail(i)));
  fresh.close();

  const pool = nodemailer.createTransport({ ...smtpOptions, pool: true, maxConnections: 1, maxMessages: Infinity });
  const nodemailer_pooled = await measure(proxy, sends, async (i) => void await pool.sendMail(mail(i)));
  pool.close();

  // A fresh user and config per round trip: its first send finds no pooled session.
  const sender = async () => (await proxiedSender(stack, proxy)).user;
  const ours = await sender();
  const send_email = await measure(proxy, sends, async (i) => {
    const res = await fetch(`${sendEmail.url}/send-email`, {
      method: "POST",
      headers: { authorization: `Bearer ${ours.token}`, "content-type": "application/json" },
      body: JSON.stringify({ to: `r${i}@example.com`, text: "x", ...distinct() }),
    });
    const text = await res.text();
    if (res.status !== 200) throw new Error(`send-email answered ${res.status}: ${text}`);
  });

  // The drain: one send-bulk queues the messages, then process-outbox runs until nothing is left.
  const bulkUser = await sender();
  const accepted = await stack.invoke("send-bulk", {
    token: bulkUser.token,
    body: { text: "x", recipients: Array.from({ length: sends }, (_, i) => `d${i}@example.com`) },
  });
  const queued = await accepted.json();
  if (accepted.status !== 202) throw new Error(`send-bulk answered ${accepted.status}: ${JSON.stringify(queued)}`);
  const before = proxy.counters();
  const started = performance.now();
  let messages = 0;
  while (true) {
    const report = await stack.drainOutbox();
    messages += report.sent + report.failed + report.unknown;
    if (report.claimed === 0) break;
  }
  const ms = performance.now() - started;
  await sleep(proxy.rttMs + 5);
  const drainTrips = roundTrips(before, proxy.counters());

  return {
    rtt_ms: proxy.rttMs,
    nodemailer_new_connection,
    nodemailer_pooled,
    send_email,
    send_email_vs_pooled: send_email.p50 / nodemailer_pooled.p50,
    drain: {
      messages,
      ms,
      messages_per_s: messages / (ms / 1000),
      ms_per_message: ms / Math.max(1, messages),
      round_trips_per_message: drainTrips / Math.max(1, messages),
    },
  };
}

/** A fresh user whose config reaches the scripted peer through the proxy, budgets far above any run. */
export async function proxiedSender(
  stack: TestStack,
  proxy: LatencyProxy,
): Promise<{ user: TestUser; config: string }> {
  const user = await stack.createUser();
  const config = await stack.createConfig(user, {
    host: "localhost",
    port: proxy.port,
    security: "tls",
    username: SMTP_USER,
    password: SMTP_PASSWORD,
  });
  await stack
    .sql`update public.user_smtp_configs set max_per_minute = 10000, max_per_day = 1000000 where id = ${config}`;
  return { user, config };
}

const PATHS = ["nodemailer_new_connection", "nodemailer_pooled", "send_email"] as const;
const LABELS: Record<(typeof PATHS)[number], string> = {
  nodemailer_new_connection: "nodemailer, a new connection per message",
  nodemailer_pooled: "nodemailer, one pooled connection",
  send_email: "POST /send-email",
};

function derive(runs: LatencyRun[]): LatencyBench["derived_round_trips"] {
  const near = runs[0];
  const far = runs.at(-1)!;
  const span = far.rtt_ms - near.rtt_ms;
  const derived: LatencyBench["derived_round_trips"] = {};
  for (const path of PATHS) {
    derived[path] = span > 0
      ? { warm: (far[path].p50 - near[path].p50) / span, cold: (far[path].cold_ms - near[path].cold_ms) / span }
      : { warm: 0, cold: 0 };
  }
  return derived;
}

function print(bench: LatencyBench): void {
  const ms = (v: number) => v.toFixed(1);
  const sends = bench.runs[0]?.send_email.sends ?? 0;
  console.log(
    `\n### Servers far away: SMTP through a latency proxy (implicit TLS, AUTH, PIPELINING; ${sends} sends per path, one at a time; ${
      bench.seconds.toFixed(1)
    } s)\n`,
  );
  console.log("| path | " + bench.rtts.map((r) => `RTT ${r} ms: p50 / p99 / cold`).join(" | ") + " |");
  console.log("| --- | " + bench.rtts.map(() => "---:").join(" | ") + " |");
  for (const path of PATHS) {
    const cells = bench.runs.map((r) => `${ms(r[path].p50)} / ${ms(r[path].p99)} / ${ms(r[path].cold_ms)}`);
    console.log(`| ${LABELS[path]} | ${cells.join(" | ")} |`);
  }
  console.log(
    `| send-email p50 / pooled nodemailer p50 | ${
      bench.runs.map((r) => `${r.send_email_vs_pooled.toFixed(2)}x`).join(" | ")
    } |`,
  );
  console.log(
    `| send-email p50 - pooled nodemailer p50 (target within 5 ms) | ${
      bench.runs.map((r) => `${ms(r.send_email.p50 - r.nodemailer_pooled.p50)} ms`).join(" | ")
    } |`,
  );
  console.log(
    `| outbox drain: ms per message (messages/s) | ${
      bench.runs.map((r) => `${ms(r.drain.ms_per_message)} (${r.drain.messages_per_s.toFixed(1)})`).join(" | ")
    } |`,
  );

  const far = bench.runs.at(-1)!;
  console.log(`\n### Round trips per send (counted at the proxy at RTT ${far.rtt_ms} ms; derived from latency)\n`);
  console.log("| path | warm: counted | warm: derived | cold: counted | cold: derived |");
  console.log("| --- | ---: | ---: | ---: | ---: |");
  for (const path of PATHS) {
    const d = bench.derived_round_trips[path];
    console.log(
      `| ${LABELS[path]} | ${far[path].warm_round_trips} | ${d.warm.toFixed(1)} | ${far[path].cold_round_trips} | ${
        d.cold.toFixed(1)
      } |`,
    );
  }
  console.log(
    `| outbox drain (per message, up to 3 sessions per config) | ${
      far.drain.round_trips_per_message.toFixed(1)
    } | | | |`,
  );
}

if (import.meta.main) {
  const args = Deno.args;
  const smoke = args.includes("--smoke");
  const sends = Number(args[args.indexOf("--sends") + 1]) || (smoke ? 3 : 50);
  const stack = await startTestStack({ MAILROOM_ALLOW_PLAINTEXT_SMTP: "true" }, {
    isolation: "process",
    // SMTP peers' CA trusted as a public one is (see startTestStack's caTrust).
    caTrust: "runtime",
  });
  try {
    const process = stack.processes.find((p) => p.name === "send-email")!;
    const latency = await benchLatency(stack, process, { sends, rtts: smoke ? SMOKE_RTTS : RTTS });
    const jsonPath = args.includes("--json") ? args[args.indexOf("--json") + 1] : undefined;
    if (jsonPath) await Deno.writeTextFile(jsonPath, JSON.stringify({ latency }, null, 2));
  } finally {
    await stack.close();
  }
}
