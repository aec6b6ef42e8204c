// The benchmark in smoke mode (small counts), so it cannot rot: it runs end to end and
// reports every case. Speed is not asserted here; `deno task bench` is where it is measured.
import assert from "node:assert/strict";
import { ROOT } from "../local/postgres.ts";

Deno.test({
  name: "deno task bench runs in smoke mode and reports every case",
  sanitizeResources: false,
  fn: async () => {
    const json = await Deno.makeTempFile({ suffix: ".json" });
    try {
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", "bench/functions.ts", "--requests", "20", "--analytics-rows", "10000", "--json", json],
        cwd: ROOT,
        env: { DENO_NO_PACKAGE_JSON: "1", NO_COLOR: "1" },
        stdout: "piped",
        stderr: "piped",
      }).output();
      const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
      assert.ok(out.success, text.slice(-2000));
      const report = JSON.parse(await Deno.readTextFile(json));
      const names = report.rows.map((r: { function: string }) => r.function.split(" ")[0]);
      for (const fn of ["smtp-configs", "send-email", "send-bulk", "process-outbox", "email-analytics", "mcp"]) {
        assert.ok(names.includes(fn), `${fn} is measured`);
      }
      assert.ok(report.rows.every((r: { failed: number }) => r.failed === 0), "no request failed");
      assert.equal(report.smtp.length, 3, "the drain is compared with nodemailer pooled and per connection");
      assert.ok(report.configs.direct_rps > 0 && report.configs.function_rps > 0);
      assert.deepEqual(report.sendEmail.runs.map((r: { clients: number }) => r.clients), [1, 4, 16, 64]);
      for (const run of report.sendEmail.runs) {
        for (const path of ["send_email", "seed_style", "nodemailer_new_connection", "nodemailer_pooled"]) {
          assert.ok(run[path].rate > 0 && run[path].p50 > 0, `${path} at ${run.clients} clients is measured`);
        }
      }
      assert.ok(report.sendEmail.cpu.send_email.function_ms > 0, "CPU per send is measured");
      // Servers far away: smoke mode measures RTT 0 and 20 only, with a few sends per path.
      assert.deepEqual(report.latency.rtts, [0, 20]);
      assert.deepEqual(report.latency.runs.map((r: { rtt_ms: number }) => r.rtt_ms), [0, 20]);
      for (const run of report.latency.runs) {
        for (const path of ["nodemailer_new_connection", "nodemailer_pooled", "send_email"]) {
          const p = run[path];
          assert.ok(
            p.p50 > 0 && p.p99 >= p.p50 && p.cold_ms > 0,
            `${path} at RTT ${run.rtt_ms} ms: ${JSON.stringify(p)}`,
          );
          assert.ok(p.cold_round_trips > 0 && p.warm_round_trips > 0, `${path}: round trips are counted`);
        }
        assert.ok(run.send_email_vs_pooled > 0, "send-email is compared with pooled nodemailer");
        assert.equal(run.drain.messages, 3, "the outbox drain sent what send-bulk queued");
        assert.ok(run.drain.round_trips_per_message > 0);
      }
      for (const path of ["nodemailer_new_connection", "nodemailer_pooled", "send_email"]) {
        assert.ok(path in report.latency.derived_round_trips, `${path}: round trips derived from latency`);
      }
      // The drain where servers are far away (smoke: RTT 20 only, a few messages per case).
      const cases = report.drain.runs.map((r: { case: string }) => r.case);
      for (const name of ["20 users' configs", "one config", "scale-out: 1 worker", "scale-out: 2 workers"]) {
        assert.ok(cases.includes(name), `drain case ${name} is measured`);
      }
      for (const run of report.drain.runs) {
        assert.ok(run.messages > 0 && run.messages_per_s > 0 && run.ideal_per_s > 0, JSON.stringify(run));
        // Measured, less Postgres's idle rate (so 0 where a smoke run is shorter than /proc's 10 ms ticks show).
        assert.ok(run.postgres_ms_per_message >= 0 && run.worker_ms_per_message > 0, JSON.stringify(run));
      }
      assert.equal(report.drain.budgets.kept, true, "budgets that bind are kept exactly");
      assert.ok(report.drain.fairness.queued > 0 && report.drain.fairness.sent_while_waiting >= 0);
      assert.equal(report.bulkAccept.recipients, 200);
      assert.ok(report.bulkAccept.median_ms > 0);
      assert.equal(report.analytics.rows.length, 4, "analytics: summary, SQL, page, seed's approach");
      // Memory under large bodies: every load reported; the worker stays inside what the Edge
      // Runtime allows a worker (used heap + external, 256 MB) and no function process died.
      assert.equal(report.memory.length, 4, "send-bulk at two concurrencies, send-email, process-outbox");
      const worker = report.memory.at(-1);
      assert.ok(worker.worker_peak_memory_mib > 0 && worker.worker_peak_memory_mib < 256, JSON.stringify(worker));
      assert.ok(report.memory.every((r: { peak_rss_mb: number }) => r.peak_rss_mb > 0), "peak RSS is reported");
    } finally {
      await Deno.remove(json);
    }
  },
});
