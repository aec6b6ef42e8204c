// Side-by-side cases of `deno task bench` (each measured in the same run as its comparison):
// GET /smtp-configs against the same RLS transaction issued straight to Postgres, and
// send-email's latency against nodemailer sending straight to the same SMTP peer.
import nodemailer from "nodemailer";
import type { TestStack, TestUser } from "../tests/harness.ts";
import { listConfigs } from "../supabase/functions/_shared/store/smtp_configs.ts";
import { withUser } from "../supabase/functions/_shared/db.ts";

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];

async function rate(count: number, concurrency: number, one: () => Promise<unknown>): Promise<number> {
  let next = 0;
  const started = performance.now();
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next++ < count) await one();
  }));
  return count / ((performance.now() - started) / 1000);
}

async function latencies(
  count: number,
  one: () => Promise<unknown>,
): Promise<{ p50: number; p90: number; p99: number }> {
  const times: number[] = [];
  for (let i = 0; i < count; i++) {
    const started = performance.now();
    await one();
    times.push(performance.now() - started);
  }
  times.sort((a, b) => a - b);
  return { p50: percentile(times, 0.5), p90: percentile(times, 0.9), p99: percentile(times, 0.99) };
}

export interface SideBySide {
  configs: { function_rps: number; direct_rps: number; ratio: number };
  sendLatency: {
    function: { p50: number; p90: number; p99: number };
    nodemailer_new_connection: { p50: number; p90: number; p99: number };
    overhead_p50_ms: number;
  };
}

/** Run both cases and print their tables. */
export async function benchSideBySide(stack: TestStack, user: TestUser, smtpPort: number, requests: number) {
  // 1. GET /smtp-configs vs the same transaction (claims, role, the list query) straight to Postgres.
  const concurrency = 8;
  const viaFunction = await rate(requests, concurrency, async () => {
    const res = await stack.invoke("smtp-configs", { token: user.token, method: "GET" });
    await res.body?.cancel();
  });
  const claims = { sub: user.id, role: "authenticated" as const };
  const direct = await rate(requests, concurrency, () => withUser(stack.sql, claims, listConfigs));
  console.log(
    `\n### GET /smtp-configs against its own RLS transaction straight to Postgres (${requests}, 8 concurrent)\n`,
  );
  console.log("| path | req/s | ratio |");
  console.log("| --- | ---: | ---: |");
  console.log(`| direct: withUser + the list query, from this process | ${Math.round(direct)} | 1.00 |`);
  console.log(
    `| GET /smtp-configs through the gateway and the function | ${Math.round(viaFunction)} | ${
      (viaFunction / direct).toFixed(2)
    } |`,
  );

  // 2. send-email latency, one client, against nodemailer with a new connection per message.
  const sends = Math.max(50, Math.min(requests, 300));
  const fn = await latencies(sends, async () => {
    const res = await stack.invoke("send-email", {
      token: user.token,
      body: { to: "latency@example.com", subject: "b", text: "x" },
    });
    await res.body?.cancel();
  });
  const transport = nodemailer.createTransport({
    host: "127.0.0.1",
    port: smtpPort,
    secure: false,
    ignoreTLS: true,
    connectionTimeout: 10_000,
    greetingTimeout: 10_000,
    socketTimeout: 10_000,
  });
  const nm = await latencies(
    sends,
    () => transport.sendMail({ from: "bench@example.com", to: "latency@example.com", subject: "b", text: "x" }),
  );
  transport.close();
  const ms = (v: number) => v.toFixed(1);
  console.log(`\n### send-email latency, one client (${sends} sends each, same SMTP peer)\n`);
  console.log("| path | p50 ms | p90 ms | p99 ms |");
  console.log("| --- | ---: | ---: | ---: |");
  console.log(`| nodemailer, a new connection per message | ${ms(nm.p50)} | ${ms(nm.p90)} | ${ms(nm.p99)} |`);
  console.log(`| POST /send-email | ${ms(fn.p50)} | ${ms(fn.p90)} | ${ms(fn.p99)} |`);
  console.log(`\nOverhead at p50: ${ms(fn.p50 - nm.p50)} ms (issue 20's target: under 5 ms).`);
  return {
    configs: { function_rps: viaFunction, direct_rps: direct, ratio: viaFunction / direct },
    sendLatency: { function: fn, nodemailer_new_connection: nm, overhead_p50_ms: fn.p50 - nm.p50 },
  } satisfies SideBySide;
}
