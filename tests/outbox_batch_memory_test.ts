// Found by an adversarial review: the worker's "bytes in hand" bound counts payload_bytes only. A recipients-mode
// batch row's payload is `{kind: "recipient", to}` (tens of bytes); what it is built from is the
// batch's shared content (up to 4 MiB), and each prepared row holds its own raw MIME message
// until its whole group is sent. Two ordinary send-bulk requests (no Data API) with a 3.9 MB
// text to 25 recipients each put ~200 MB of prepared messages in one worker.
import assert from "node:assert/strict";
import { body, startTestStack, type TestStack } from "./harness.ts";
import { startScriptedSmtp } from "./scripted_smtp.ts";
import { FUNCTION_MEMORY_MB } from "../local/function_processes.ts";

Deno.test({
  name: "batch content counts in the claim's byte bound: two 3.9 MB newsletters stay inside a worker's 256 MB",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const stack: TestStack = await startTestStack({ MAILROOM_ALLOW_PLAINTEXT_SMTP: "true" }, { isolation: "process" });
    // A server 300 ms away from the final dot (a far server, a large message): lanes hold their rows a while.
    const servers = await Promise.all(
      [0, 1].map(() => startScriptedSmtp({ extensions: ["PIPELINING"], dataReplyDelayMs: 300 })),
    );
    try {
      // 3.9 MB of text (UTF-8), under send-bulk's 4 MiB shared-content limit: a newsletter in
      // Greek, so the message goes base64 (4/3 of the text) like any non-Latin newsletter.
      const line = "Το τριμηνιαίο ενημερωτικό δελτίο, με όλα όσα ζητήσατε και ακόμη περισσότερα.\n";
      const text = line.repeat(Math.floor(3_900_000 / new TextEncoder().encode(line).length));
      for (const [i, smtp] of servers.entries()) {
        const user = await stack.createUser();
        await stack.createConfig(user, { name: `c${i}`, port: smtp.port, security: "none", username: null });
        const res = await stack.invoke("send-bulk", {
          token: user.token,
          body: {
            recipients: Array.from({ length: 25 }, (_, j) => `u${i}-${j}@example.com`),
            subject: "newsletter",
            text,
            scheduled_at: new Date(Date.now() + 3_600_000).toISOString(),
          },
        });
        assert.equal(res.status, 202, JSON.stringify(await body(res)));
      }
      await stack
        .sql`update public.email_audit_log set next_attempt_at = now(), scheduled_at = now(), status = 'queued'`;
      const [{ claimable }] = await stack.sql<{ claimable: number }[]>`
        select sum(payload_bytes)::int as claimable from public.email_audit_log where status = 'queued'`;
      console.log(`payload_bytes of all 50 rows together: ${claimable}`);

      const report = await stack.drainOutbox();
      console.log(JSON.stringify(report));
      assert.equal(report.sent, 50);
      // The same bound the existing huge-payload test asserts: heap + external, as the Edge Runtime counts.
      assert.ok(
        report.peak_memory_mib < FUNCTION_MEMORY_MB,
        `the worker held ${report.peak_memory_mib} MiB (limit ${FUNCTION_MEMORY_MB}) while the claim bound saw ${claimable} bytes`,
      );
    } finally {
      await Promise.all(servers.map((s) => s.close()));
      await stack.close();
    }
  },
});
