// Leases and suspects (found by an adversarial review):
// (a) a lane never renews the leases of the rows waiting behind a slow message: when they run
//     out, the next drain's sweep counts a "worker death" against rows whose worker is alive
//     (with the defaults, 50 s budget + one send of up to 120 s > the 90 s lease);
// (b) a suspect (lease_losses > 0) stays one for ever (nothing resets lease_losses), and a claim
//     that holds one returns *only* that suspect, dropping everyone else's due rows it held;
//     the worker then waits for all its lanes. A user with a slow server and a few due
//     suspects gets every claim of a run to themselves: nobody else's mail goes.
import assert from "node:assert/strict";
import { startTestStack, TEST_SECRET_KEY, type TestStack, type TestUser } from "./harness.ts";
import { startScriptedSmtp } from "./scripted_smtp.ts";
import { createContext } from "../supabase/functions/_shared/context.ts";
import { drainOutbox } from "../supabase/functions/_shared/outbox/worker.ts";

Deno.test({
  name: "a live worker's slow lane keeps its leases, and suspects never take over a claim",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const env = { MAILROOM_ALLOW_PLAINTEXT_SMTP: "true", MAILROOM_OUTBOX_BUDGET_MS: "6000" };
    const stack: TestStack = await startTestStack(env);
    // The attacker's server: slow after the final dot (2.5 s, inside the 3 s socket timeout), then "try later".
    const slow = await startScriptedSmtp({
      extensions: ["PIPELINING"],
      dataReplyDelayMs: 2_500,
      dataReply: "451 4.3.0 Try again later",
    });
    const fast = await startScriptedSmtp({ extensions: ["PIPELINING"] });
    const ctx = createContext({
      SUPABASE_URL: stack.url,
      SUPABASE_DB_URL: stack.dbUrl,
      MAILROOM_EGRESS_ALLOWLIST: "localhost",
      MAILROOM_SMTP_CONNECT_TIMEOUT_MS: "1500",
      MAILROOM_SMTP_GREETING_TIMEOUT_MS: "1500",
      MAILROOM_SMTP_SOCKET_TIMEOUT_MS: "3000",
      SUPABASE_SECRET_KEYS: JSON.stringify({ default: TEST_SECRET_KEY }),
      ...env,
    });
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
      const attacker = await stack.createUser();
      const victim = await stack.createUser();
      const attackerConfig = await stack.createConfig(attacker, { port: slow.port, security: "none", username: null });
      const victimConfig = await stack.createConfig(victim, { port: fast.port, security: "none", username: null });
      const attackerRows = await queue(attacker, attackerConfig, 5);

      await t.step("(a) no worker died, yet its rows are charged with a death", async () => {
        // A worker with a 2 s lease (standing in for 90 s against a 120 s session): its lane
        // sends the first message (2.5 s) while the other four wait, claimed, not renewed.
        const drain = drainOutbox(ctx, { workerId: "alive", budgetMs: 4_000, leaseSeconds: 2 });
        await new Promise((resolve) => setTimeout(resolve, 2_300));
        // Another worker starts meanwhile (every drain begins with the sweep).
        await stack.sql`select private.sweep_outbox()`;
        const report = await drain;
        const rows = await stack.sql<{ lease_losses: number; status: string }[]>`
          select lease_losses, status from public.email_audit_log where id = any (${attackerRows}::uuid[])`;
        const charged = rows.filter((r) => r.lease_losses > 0).length;
        console.log(`worker report ${JSON.stringify(report)}; rows charged with a death: ${charged}`);
        assert.equal(charged, 0, `${charged} rows of a live worker were counted as a worker's death`);
      });

      await t.step("(b) due suspects of one user take every claim: the victim's mail waits a whole run", async () => {
        // Whatever (a) showed, make the attacker's waiting rows suspects and due (lease_losses 1:
        // what (a) does, or one crash, or POST /send-email/:id/retry of a set-aside message).
        await stack.sql`update public.email_audit_log
                           set lease_losses = 1, next_attempt_at = now(), status = 'queued', lease_until = null, leased_by = null
                         where id = any (${attackerRows}::uuid[])`;
        const [mine] = await queue(victim, victimConfig, 1);
        // The claim had room for 25 rows and held the victim's; it returns one suspect.
        const claimed = await stack.sql<{ id: string }[]>`
          select id from private.claim_outbox('probe', 25, 60, 8388608, '{}')`;
        await stack.sql`select private.release_outbox_leases('probe')`;
        console.log(
          `one claim with room for 25 returned ${claimed.length} row(s): victim's included: ${
            claimed.some((r) => r.id === mine)
          }`,
        );
        const report = await stack.drainOutbox();
        console.log(JSON.stringify(report));
        const [row] = await stack.sql<
          { status: string }[]
        >`select status from public.email_audit_log where id = ${mine}`;
        assert.equal(row.status, "sent", "the victim's due message was not sent in a 6 s run");
      });
    } finally {
      await ctx.sql.end({ timeout: 2 });
      ctx.smtpPool?.close();
      await slow.close();
      await fast.close();
      await stack.close();
    }
  },
});
