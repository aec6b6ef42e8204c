// Found by an adversarial review: "A claim holding a suspect row is sent before anything else is claimed, so
// should it kill this worker too, no other row is charged with it" (worker.ts runLanes). But a
// suspect is usually claimed by a *later* claim of the run, while earlier claims' rows still wait
// in other lanes; runLanes awaits the lanes only after the suspect is claimed. When the suspect
// kills the worker, every innocent row those lanes held loses its lease and the sweep charges
// it (lease_losses 1: it becomes a suspect itself, sent one claim at a time from then on).
import assert from "node:assert/strict";
import { startTestStack, type TestStack, type TestUser } from "./harness.ts";
import { type ScriptOptions, startScriptedSmtp } from "./scripted_smtp.ts";

Deno.test({
  name: "a suspect is claimed only with empty hands: its death charges no other row",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const stack: TestStack = await startTestStack({ MAILROOM_ALLOW_PLAINTEXT_SMTP: "true" }, { isolation: "process" });
    const servers: { close(): Promise<void> }[] = [];
    const withServer = async (user: TestUser, script: ScriptOptions) => {
      const smtp = await startScriptedSmtp({ extensions: ["PIPELINING"], ...script });
      servers.push(smtp);
      return await stack.createConfig(user, { name: "c", port: smtp.port, security: "none", username: null });
    };
    const queue = (user: TestUser, config: string, count: number) =>
      stack.asDataApi(user, async (tx) =>
        (await tx<{ id: string }[]>`
          insert into public.email_audit_log (config_id, from_email, to_addresses, status, payload)
          select ${config}::uuid, 'x@example.com', array['r' || i || '@example.com'], 'queued',
                 jsonb_build_object('kind', 'request', 'request',
                   jsonb_build_object('to', 'r' || i || '@example.com', 'subject', 'n' || i, 'text', 'hi'))
            from generate_series(1, ${count}) i
          returning id`).map((r) => r.id));
    try {
      const quick = await stack.createUser();
      const innocent = await stack.createUser();
      const attacker = await stack.createUser();
      const quickRows = await queue(quick, await withServer(quick, { dataReplyDelayMs: 1_500 }), 1);
      const innocentRows = await queue(innocent, await withServer(innocent, { dataReplyDelayMs: 1_500 }), 6);
      const [poison] = await queue(attacker, await withServer(attacker, { dataReplyDelayMs: 5_000 }), 1);
      // The poison row already killed one worker (lease_losses 1), and comes due a second later.
      await stack.sql`update public.email_audit_log set lease_losses = 1, next_attempt_at = now() + interval '1 second'
                       where id = ${poison}`;

      const worker = stack.processes.find((p) => p.name === "process-outbox")!;
      const drain = stack.drainOutbox().catch((error) => String(error));
      // Wait until the run claims the suspect (its second claim, after the quick lane moved).
      let heldWithIt: { id: string; status: string }[] = [];
      for (let i = 0; i < 100; i++) {
        const [row] = await stack.sql<{ leased_by: string | null }[]>`
          select leased_by from public.email_audit_log where id = ${poison}`;
        if (row.leased_by) {
          heldWithIt = await stack.sql<{ id: string; status: string }[]>`
            select id, status from public.email_audit_log
             where leased_by = ${row.leased_by} and id <> ${poison} and status = 'queued'`;
          break;
        }
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      // The suspect kills the worker (as it did its last one).
      Deno.kill(worker.pid, "SIGKILL");
      await drain;
      await worker.ready();
      await stack.sql`update public.email_audit_log set lease_until = now() - interval '1 second'
                       where lease_until is not null`;
      await stack.sql`select private.sweep_outbox()`;
      const charged = await stack.sql<{ id: string; lease_losses: number }[]>`
        select id, lease_losses from public.email_audit_log
         where id = any (${[...quickRows, ...innocentRows]}::uuid[]) and lease_losses > 0`;
      console.log(
        `queued rows held by the worker with the suspect: ${heldWithIt.length}; ` +
          `innocent rows charged with its death: ${charged.length}`,
      );
      assert.equal(heldWithIt.length, 0, "the suspect was not alone in the worker's hands");
      assert.equal(charged.length, 0, "innocent rows were charged with the suspect's crash");
    } finally {
      await Promise.all(servers.map((s) => s.close()));
      await stack.close();
    }
  },
});
