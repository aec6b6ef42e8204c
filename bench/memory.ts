// `deno task bench` (memory case): large bodies, concurrently, against functions started as the
// platform starts them (their own processes, the whole V8 heap limited to 256 MB), on a fresh stack so each
// process's peak resident memory (VmHWM) is this case's alone. The loads are the ones the second
// review measured: concurrent ~14 MB send-bulk requests, concurrent send-email requests with the
// largest attachment allowed (7 MiB, ~9.4 MB as JSON), and 25 such scheduled messages coming due
// together for process-outbox. Reported per load: the
// answers (a request past an instance's body budget gets 503 server_busy), the peak RSS, and for
// the worker its own count of heap + external memory (what the Edge Runtime holds against 256 MB).
import { Buffer } from "node:buffer";
import { startTestStack } from "../tests/harness.ts";
import { startScriptedSmtp } from "../tests/scripted_smtp.ts";

const MiB = 1024 * 1024;

/** One load's result. */
export interface MemoryRow {
  load: string;
  answers: Record<string, number>;
  peak_rss_mb: number | null;
  /** How often the function's process died and was started again during the load. */
  restarts: number;
  /** process-outbox only: its own peak of used heap + external memory. */
  worker_peak_memory_mib?: number;
}

/** Run the loads; `smoke` makes them small enough for CI. */
export async function benchMemory(smoke: boolean): Promise<MemoryRow[]> {
  const stack = await startTestStack({ MAILROOM_ALLOW_PLAINTEXT_SMTP: "true" }, { isolation: "process" });
  const smtp = await startScriptedSmtp({ extensions: ["PIPELINING"] });
  const scale = smoke ? 0.1 : 1;
  const rows: MemoryRow[] = [];
  try {
    const user = await stack.createUser();
    const config = await stack.createConfig(user, { port: smtp.port, security: "none", username: null });
    await stack.sql`update public.user_smtp_configs set max_per_minute = 10000, max_per_day = 1000000
                     where id = ${config}`;
    const processOf = (name: string) => stack.processes.find((p) => p.name === name)!;
    const peakMb = (name: string) => {
      const peak = processOf(name).peakRssBytes();
      return peak === null ? null : Math.round(peak / MiB);
    };
    const tally = async (responses: Promise<Response>[]) => {
      const answers: Record<string, number> = {};
      for (const res of await Promise.all(responses)) {
        const key = res.ok ? String(res.status) : `${res.status} ${(await res.json()).error?.code}`;
        if (res.ok) await res.body?.cancel();
        answers[key] = (answers[key] ?? 0) + 1;
      }
      return answers;
    };
    const attachment = (mib: number) =>
      Buffer.from(new Uint8Array(Math.round(mib * MiB)).map((_, i) => i % 251)).toString("base64");

    // send-bulk: 10,000 messages of ~1.4 KB each (about 14 MB), 1, 4 and 8 requests at once.
    const text = "d".repeat(Math.round(1_400 * scale));
    const bulkBody = {
      messages: Array.from(
        { length: smoke ? 1_000 : 10_000 },
        (_, i) => ({ to: `m${i}@example.com`, subject: "Hi", text }),
      ),
      scheduled_at: new Date(Date.now() + 86_400_000).toISOString(),
      // The same batch again and at once: each queued in full, as distinct batches would be.
      allow_duplicate: true,
    };
    for (const concurrent of smoke ? [1, 2] : [1, 4, 8]) {
      const answers = await tally(
        Array.from({ length: concurrent }, () => stack.invoke("send-bulk", { token: user.token, body: bulkBody })),
      );
      rows.push({
        load: `send-bulk, ${concurrent} x ${(JSON.stringify(bulkBody).length / MiB).toFixed(1)} MB at once`,
        answers,
        peak_rss_mb: peakMb("send-bulk"),
        restarts: processOf("send-bulk").restarts,
      });
    }

    // send-email: 12 at once, each ~9.4 MB (a 7 MiB attachment, base64: the largest one allowed).
    const big = attachment(7 * scale);
    const answers = await tally(Array.from({ length: smoke ? 3 : 12 }, (_, i) =>
      stack.invoke("send-email", {
        token: user.token,
        body: { to: `e${i}@example.com`, text: "big", attachments: [{ filename: "big.bin", content: big }] },
      })));
    rows.push({
      load: `send-email, ${smoke ? 3 : 12} x ${((big.length + 200) / MiB).toFixed(1)} MB at once`,
      answers,
      peak_rss_mb: peakMb("send-email"),
      restarts: processOf("send-email").restarts,
    });

    // process-outbox: 25 scheduled messages with a 7 MiB attachment come due together.
    const nine = attachment(7 * scale);
    const count = smoke ? 5 : 25;
    for (let i = 0; i < count; i++) {
      const res = await stack.invoke("send-email", {
        token: user.token,
        body: {
          to: `s${i}@example.com`,
          text: "due",
          scheduled_at: new Date(Date.now() + 3_600_000).toISOString(),
          attachments: [{ filename: "nine.bin", content: nine }],
        },
      });
      await res.body?.cancel();
    }
    // Only these: the bulk batches above stay scheduled for tomorrow.
    await stack
      .sql`update public.email_audit_log set next_attempt_at = now() where batch_id is null and status = 'scheduled'`;
    let worker = 0;
    const drained: Record<string, number> = {};
    for (let run = 0; run < 10; run++) {
      const report = await stack.drainOutbox();
      worker = Math.max(worker, Number(report.peak_memory_mib ?? 0));
      drained.sent = (drained.sent ?? 0) + Number(report.sent);
      if (Number(report.claimed) === 0) break;
    }
    rows.push({
      load: `process-outbox, ${count} due messages of ${((nine.length + 200) / MiB).toFixed(1)} MB`,
      answers: drained,
      peak_rss_mb: peakMb("process-outbox"),
      restarts: processOf("process-outbox").restarts,
      worker_peak_memory_mib: worker,
    });
  } finally {
    await smtp.close();
    await stack.close();
  }

  console.log("\n### Memory under large bodies (fresh processes; peak RSS is each process's high-water mark)\n");
  console.log("| load | answers | peak RSS | worker's heap + external |");
  console.log("| --- | --- | ---: | ---: |");
  for (const r of rows) {
    const answers = Object.entries(r.answers).map(([k, v]) => `${v} x ${k}`).join(", ");
    console.log(
      `| ${r.load} | ${answers} | ${r.peak_rss_mb} MB | ${
        r.worker_peak_memory_mib === undefined ? "" : `${r.worker_peak_memory_mib} MiB`
      } |`,
    );
  }
  return rows;
}
