// Found by an adversarial review: payload_bytes is pg_column_size(payload), jsonb's stored size. jsonb keeps a
// number like 1e131071 in a few bytes and renders it as 131,072 digits: a Data API row of 2 KB
// "payload_bytes" is 13 MB of JSON text on the wire to the worker. The claim's byte bound sees
// 25 such rows as 60 KB.
import assert from "node:assert/strict";
import { startTestStack, type TestStack } from "./harness.ts";
import { startScriptedSmtp } from "./scripted_smtp.ts";
import { FUNCTION_MEMORY_MB } from "../local/function_processes.ts";

Deno.test({
  name: "payload size counts the JSON text the worker receives (jsonb numbers cannot hide 500-fold)",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const stack: TestStack = await startTestStack({ MAILROOM_ALLOW_PLAINTEXT_SMTP: "true" }, { isolation: "process" });
    const smtp = await startScriptedSmtp({ extensions: ["PIPELINING"] });
    try {
      const attacker = await stack.createUser();
      const config = await stack.createConfig(attacker, { port: smtp.port, security: "none", username: null });
      // What PostgREST would insert from a JSON body: the numbers are written 1e131071.
      await stack.asDataApi(
        attacker,
        (tx) =>
          tx`insert into public.email_audit_log (config_id, from_email, to_addresses, status, payload)
           select ${config}::uuid, 'x@example.com', array['r@example.com'], 'queued',
                  jsonb_build_object('kind', 'request', 'request', jsonb_build_object(
                    'to', 'r' || n || '@example.com', 'text', 'hi',
                    'agent_context', (select jsonb_object_agg('k' || i, '1e131071'::jsonb) from generate_series(1, 100) i)))
             from generate_series(1, 25) n`,
      );
      const [sizes] = await stack.sql<{ claimed_as: number; on_the_wire: number }[]>`
        select sum(payload_bytes)::bigint::int as claimed_as, sum(octet_length(payload::text))::bigint as on_the_wire
          from public.email_audit_log where user_id = ${attacker.id}`;
      console.log(JSON.stringify(sizes));
      const worker = stack.processes.find((p) => p.name === "process-outbox")!;
      const started = Date.now();
      const report = await stack.drainOutbox().catch((e) => ({ error: String(e) }));
      console.log(
        JSON.stringify(report),
        `restarts ${worker.restarts}`,
        `${Date.now() - started} ms`,
        `peak RSS ${Math.round((worker.peakRssBytes() ?? 0) / 1048576)} MB`,
      );
      assert.equal(worker.restarts, 0);
      assert.ok((report as { peak_memory_mib: number }).peak_memory_mib < FUNCTION_MEMORY_MB);
      assert.ok(
        Number(sizes.claimed_as) >= Number(sizes.on_the_wire),
        `the claim bound counts ${sizes.claimed_as} bytes for ${sizes.on_the_wire} bytes of payload text`,
      );
    } finally {
      await smtp.close();
      await stack.close();
    }
  },
});
