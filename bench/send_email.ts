// `deno task bench` (send-email case): latency and throughput of POST /send-email at 1, 4, 16
// and 64 concurrent clients, side by side in the same run with
//   - nodemailer straight to the same SMTP peer, a new connection per message and pooled
//     (`maxConnections` = the clients): the floor for latency, the ceiling for throughput;
//   - a seed-style send, an Edge Function of its own (bench/seed_function.ts): verify the JWT,
//     select the config as the user, read the decrypted password, a new SMTP connection per
//     message, the audit row inserted afterwards (what send-email did before it had a design);
// and the CPU each send costs the send-email process and Postgres.
// Requests go straight to the send-email process: the platform's gateway is not ours to
// measure, and our local gateway would run inside this (the client's) process.
import { cpuSeconds, postgresCpuSeconds } from "./cpu.ts";
import nodemailer from "nodemailer";
import type { TestStack } from "../tests/harness.ts";

/** Each send its own email (the same one twice within 10 minutes is refused as duplicate_send). */
const distinct = () => ({ subject: `b ${crypto.randomUUID()}` });
import type { FunctionProcess } from "../local/function_processes.ts";

export const CLIENTS = [1, 4, 16, 64];

export interface Distribution {
  rate: number;
  p50: number;
  p90: number;
  p99: number;
}

export interface SendEmailBench {
  /** Per client count: each path's rate and latency percentiles. */
  runs: {
    clients: number;
    sends: number;
    send_email: Distribution;
    seed_style: Distribution;
    nodemailer_new_connection: Distribution;
    nodemailer_pooled: Distribution;
  }[];
  /** CPU milliseconds per send at 16 clients. */
  cpu: {
    send_email: { function_ms: number; postgres_ms: number };
    seed_style: { function_ms: number; postgres_ms: number };
  };
}

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];

export async function run(count: number, clients: number, one: (i: number) => Promise<void>): Promise<Distribution> {
  const times: number[] = [];
  let next = 0;
  const started = performance.now();
  await Promise.all(Array.from({ length: clients }, async () => {
    for (let i = next++; i < count; i = next++) {
      const t = performance.now();
      await one(i);
      times.push(performance.now() - t);
    }
  }));
  const seconds = (performance.now() - started) / 1000;
  times.sort((a, b) => a - b);
  return {
    rate: count / seconds,
    p50: percentile(times, 0.5),
    p90: percentile(times, 0.9),
    p99: percentile(times, 0.99),
  };
}

/** Start bench/seed_function.ts as a process of its own, as a function runs. */
async function startSeedFunction(
  env: Record<string, string>,
): Promise<{ url: string; pid: number; close(): Promise<void> }> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL("./seed_function.ts", import.meta.url).pathname],
    env: { ...env, DENO_NO_PACKAGE_JSON: "1", NO_COLOR: "1", DENO_SERVE_ADDRESS: "tcp:127.0.0.1:0" },
    stdout: "inherit",
    stderr: "piped",
  }).spawn();
  // Deno.serve says where it listens on stderr.
  const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  const listening = /Listening on \S+:(\d+)/;
  while (!listening.test(seen)) {
    const { value, done } = await reader.read();
    if (done) throw new Error("the seed-style function exited before it listened");
    seen += value;
  }
  const port = Number(listening.exec(seen)![1]);
  return {
    url: `http://127.0.0.1:${port}/`,
    pid: child.pid,
    close: async () => {
      child.kill("SIGTERM");
      await reader.cancel().catch(() => {});
      await child.status;
    },
  };
}

/** Run both case groups and print their tables. */
export async function benchSendEmail(
  stack: TestStack,
  process: FunctionProcess,
  smtpPort: number,
  requests: number,
): Promise<SendEmailBench> {
  const smtpOptions = {
    host: "127.0.0.1",
    port: smtpPort,
    secure: false,
    ignoreTLS: true,
    connectionTimeout: 10_000,
    greetingTimeout: 10_000,
    socketTimeout: 10_000,
  };
  const mail = (i: number) => ({ from: "bench@example.com", to: `r${i}@example.com`, subject: "b", text: "x" });

  // A fresh user and config per run, so no run spends another's per-minute budget.
  const sender = async () => {
    const user = await stack.createUser();
    const configId = await stack.createConfig(user, { port: smtpPort, security: "none", username: null });
    await stack
      .sql`update public.user_smtp_configs set max_per_minute = 10000, max_per_day = 1000000 where id = ${configId}`;
    return { user, configId };
  };

  const sendEmail = async (token: string, i: number) => {
    const res = await fetch(`${process.url}/send-email`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify({ to: `r${i}@example.com`, text: "x", ...distinct() }),
    });
    await res.body?.cancel();
    if (res.status !== 200) throw new Error(`send-email answered ${res.status}`);
  };

  const seedFunction = await startSeedFunction({ SUPABASE_URL: stack.url, SUPABASE_DB_URL: stack.dbUrl });
  const seedStyle = async (token: string, i: number) => {
    const res = await fetch(seedFunction.url, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify({ to: `r${i}@example.com`, subject: "b", text: "x" }),
    });
    const text = await res.text();
    if (res.status !== 200) throw new Error(`the seed-style function answered ${res.status}: ${text}`);
  };

  const runs: SendEmailBench["runs"] = [];
  let cpu: SendEmailBench["cpu"] | undefined;
  for (const clients of CLIENTS) {
    const sends = clients === 1 ? Math.max(20, Math.min(requests, 300)) : Math.max(clients * 4, requests);
    const ours = await sender();
    const fn0 = cpuSeconds(process.pid), pg0 = postgresCpuSeconds();
    const send_email = await run(sends, clients, (i) => sendEmail(ours.user.token, i));
    const fn1 = cpuSeconds(process.pid), pg1 = postgresCpuSeconds();
    const seed = await sender();
    const own0 = cpuSeconds(seedFunction.pid), pg2 = postgresCpuSeconds();
    const seed_style = await run(sends, clients, (i) => seedStyle(seed.user.token, i));
    const own1 = cpuSeconds(seedFunction.pid), pg3 = postgresCpuSeconds();
    if (clients === 16) {
      const perSend = (seconds: number) => (seconds * 1000) / sends;
      cpu = {
        send_email: { function_ms: perSend(fn1 - fn0), postgres_ms: perSend(pg1 - pg0) },
        seed_style: { function_ms: perSend(own1 - own0), postgres_ms: perSend(pg3 - pg2) },
      };
    }
    const fresh = nodemailer.createTransport(smtpOptions);
    const nodemailer_new_connection = await run(sends, clients, async (i) => void await fresh.sendMail(mail(i)));
    fresh.close();
    const pool = nodemailer.createTransport({
      ...smtpOptions,
      pool: true,
      maxConnections: clients,
      maxMessages: Infinity,
    });
    const nodemailer_pooled = await run(sends, clients, async (i) => void await pool.sendMail(mail(i)));
    pool.close();
    runs.push({ clients, sends, send_email, seed_style, nodemailer_new_connection, nodemailer_pooled });
  }

  const ms = (v: number) => v.toFixed(1);
  console.log("\n### send-email latency against nodemailer straight to the same peer (ms)\n");
  console.log("| clients | path | p50 | p90 | p99 |");
  console.log("| ---: | --- | ---: | ---: | ---: |");
  for (const r of runs.filter((r) => r.clients === 1 || r.clients === 16)) {
    const rows: [string, Distribution][] = [
      ["POST /send-email", r.send_email],
      ["nodemailer, a new connection per message", r.nodemailer_new_connection],
      ["nodemailer, pooled", r.nodemailer_pooled],
    ];
    for (const [path, d] of rows) {
      console.log(`| ${r.clients} | ${path} | ${ms(d.p50)} | ${ms(d.p90)} | ${ms(d.p99)} |`);
    }
    console.log(
      `| ${r.clients} | overhead over a new connection (target < 5 ms at p50) | ${
        ms(r.send_email.p50 - r.nodemailer_new_connection.p50)
      } | ${ms(r.send_email.p90 - r.nodemailer_new_connection.p90)} | ${
        ms(r.send_email.p99 - r.nodemailer_new_connection.p99)
      } |`,
    );
  }

  console.log("\n### send-email throughput (messages/s) against the seed-style send and the pooled ceiling\n");
  console.log("| clients | sends | POST /send-email | seed-style | vs seed-style | nodemailer pooled | of ceiling |");
  console.log("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
  for (const r of runs) {
    console.log(
      `| ${r.clients} | ${r.sends} | ${Math.round(r.send_email.rate)} | ${Math.round(r.seed_style.rate)} | ${
        (r.send_email.rate / r.seed_style.rate).toFixed(2)
      }x | ${Math.round(r.nodemailer_pooled.rate)} | ${
        Math.round((r.send_email.rate / r.nodemailer_pooled.rate) * 100)
      }% |`,
    );
  }
  if (cpu) {
    console.log("\n### CPU per send at 16 clients (ms)\n");
    console.log("| path | sending process | Postgres | total |");
    console.log("| --- | ---: | ---: | ---: |");
    const { send_email: s, seed_style: b } = cpu;
    console.log(
      `| POST /send-email | ${ms(s.function_ms)} | ${ms(s.postgres_ms)} | ${ms(s.function_ms + s.postgres_ms)} |`,
    );
    console.log(
      `| seed-style function | ${ms(b.function_ms)} | ${ms(b.postgres_ms)} | ${ms(b.function_ms + b.postgres_ms)} |`,
    );
  }
  await seedFunction.close();
  return {
    runs,
    cpu: cpu ?? { send_email: { function_ms: 0, postgres_ms: 0 }, seed_style: { function_ms: 0, postgres_ms: 0 } },
  };
}
