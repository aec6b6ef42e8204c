// Crash safety with real worker processes: 2,000 queued messages, workers SIGKILLed in the
// middle of their drains, new workers started after their leases ran out. Every message ends
// in exactly one final state and the SMTP server receives each at most once (counted by
// Message-ID); only messages a worker had in flight or had sent without recording yet when it
// died may be `unknown`.
import assert from "node:assert/strict";
import { startTestStack } from "./harness.ts";
import { startScriptedSmtp } from "./scripted_smtp.ts";
import { ROOT } from "../local/postgres.ts";

const MESSAGES = Number(Deno.env.get("CRASH_MESSAGES") ?? 2000);
/** The config's sessions at once (max_connections, the default). */
const SESSIONS = 3;

Deno.test({
  name: "outbox crash safety with SIGKILLed workers",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const stack = await startTestStack({ MAILROOM_ALLOW_PLAINTEXT_SMTP: "true" });
    const smtp = await startScriptedSmtp({ extensions: ["PIPELINING"] });
    const worker = () =>
      new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", `--config=${ROOT}/deno.json`, `${ROOT}/tests/fixtures/outbox_worker.ts`],
        cwd: ROOT,
        env: {
          DENO_NO_PACKAGE_JSON: "1",
          SUPABASE_URL: stack.url,
          SUPABASE_DB_URL: stack.dbUrl,
          MAILROOM_ALLOW_PLAINTEXT_SMTP: "true",
          MAILROOM_EGRESS_ALLOWLIST: "localhost",
        },
        stdout: "null",
        stderr: "null",
      }).spawn();
    const delivered = () => smtp.messages().length;
    const waitUntil = async (what: () => boolean, label: string) => {
      for (let i = 0; !what(); i++) {
        if (i > 6000) throw new Error(`timed out waiting for ${label}`);
        await new Promise((r) => setTimeout(r, 10));
      }
    };
    // "Time passes": what a dead worker leased is released (claimed) or due for the sweep (in flight).
    const leasesRunOut = () =>
      stack.sql`update public.email_audit_log set lease_until = now() - interval '1 second'
                 where lease_until is not null`;
    try {
      const user = await stack.createUser();
      const configId = await stack.createConfig(user, { port: smtp.port, security: "none", username: null });
      await stack.sql`update public.user_smtp_configs
                         set max_per_minute = 10000, max_per_day = 1000000, max_connections = ${SESSIONS}
                       where id = ${configId}`;
      await stack.asDataApi(user, async (tx) => {
        await tx`
          insert into public.email_audit_log (config_id, from_email, to_addresses, status, payload)
          select ${configId}, ${user.email}, array['c' || i || '@example.com'], 'queued',
                 jsonb_build_object('kind', 'request', 'request', jsonb_build_object('to', 'c' || i || '@example.com', 'text', 'x'))
            from generate_series(1, ${MESSAGES}) i`;
      });

      for (const killAt of [Math.round(MESSAGES * 0.15), Math.round(MESSAGES * 0.5)]) {
        const child = worker();
        await waitUntil(() => delivered() >= killAt, `${killAt} deliveries`);
        child.kill("SIGKILL");
        await child.status;
        await leasesRunOut();
      }
      const last = worker();
      // A worker that never finishes (a busy loop) fails the test instead of hanging CI.
      const watchdog = setTimeout(() => last.kill("SIGKILL"), 120_000);
      const status = await last.status;
      clearTimeout(watchdog);
      assert.ok(status.success, "the last worker drained the outbox and exited");

      const rows = await stack.sql<{ status: string; message_id: string }[]>`
        select status, message_id from public.email_audit_log where config_id = ${configId}`;
      assert.equal(rows.length, MESSAGES);
      const byStatus = Object.groupBy(rows, (r) => r.status);
      assert.deepEqual(Object.keys(byStatus).sort().filter((s) => s !== "unknown"), ["sent"], "every message is final");
      // Per killed worker: the messages sent but not yet recorded (the worker records in the
      // background, fewer than MAX_UNRECORDED = 50 behind) and those on the wire, one per
      // session (the config's max_connections, 3).
      const unknown = byStatus.unknown ?? [];
      assert.ok(unknown.length <= 2 * (50 + SESSIONS), `${unknown.length} unknown: at most 53 per killed worker`);

      const received = new Map<string, number>();
      for (const m of smtp.messages()) {
        const id = /^Message-ID: (\S+)/m.exec(m.data)?.[1] ?? "";
        received.set(id, (received.get(id) ?? 0) + 1);
      }
      assert.ok([...received.values()].every((n) => n === 1), "no message was delivered twice");
      const undelivered = unknown.filter((row) => !received.has(row.message_id));
      // Marked `sending` only once a session is in hand, right before its first byte: at most
      // the messages on the wire.
      assert.ok(
        undelivered.length <= 2 * SESSIONS,
        `${undelivered.length} unknown but not sent: at most ${SESSIONS} per killed worker`,
      );
      for (const row of byStatus.sent ?? []) assert.equal(received.get(row.message_id), 1, row.message_id);
    } finally {
      await smtp.close();
      await stack.close();
    }
  },
});
