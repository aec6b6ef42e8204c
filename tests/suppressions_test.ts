// The suppression list against a real stack and a scripted SMTP server: managed through the
// API (an agent adds, only the owner removes), honoured by every send path (nothing reaches the
// server for a suppressed address, the others still get their mail), and fed by hard bounces at
// RCPT (5.1.1 suppresses, a 5.7.1 policy refusal does not).
import assert from "node:assert/strict";
import { errorCode, startTestStack } from "./harness.ts";
import { startScriptedSmtp } from "./scripted_smtp.ts";

const rcptTo = (line: string) => /^RCPT TO:<([^>]+)>/i.exec(line)?.[1];

Deno.test({
  name: "suppressions",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const stack = await startTestStack({ MAILROOM_ALLOW_PLAINTEXT_SMTP: "true" });
    const smtp = await startScriptedSmtp({
      rcpt: (address) =>
        address.startsWith("gone")
          ? "550 5.1.1 <" + address + ">: Recipient address rejected: User unknown in virtual mailbox table"
          : address.startsWith("policy")
          ? "550 5.7.1 <" + address + ">: Relay access denied"
          : "250 2.1.5 ok",
    });
    // Every address the client named at RCPT, across everything sent so far.
    const attempted = () => smtp.transcript().map(rcptTo).filter((a): a is string => a !== undefined);
    try {
      const owner = await stack.createUser();
      const other = await stack.createUser();
      const agent = await stack.mint({ sub: owner.id, email: owner.email, clientId: "some-agent" });
      await stack.createConfig(owner, { name: "main", port: smtp.port, security: "none", username: null });
      const call = (path: string, init: { token?: string; method?: string; body?: unknown } = {}) =>
        stack.invoke(path, { token: owner.token, ...init });
      const send = async (body: Record<string, unknown>, token = owner.token) => {
        const res = await call("send-email", { token, body: { subject: "Hi", text: "Hello", ...body } });
        assert.ok(res.status < 300, await res.clone().text());
        return await res.json();
      };

      await t.step("managed through the API: add, list, get; an agent adds but never removes", async () => {
        const added = await call("suppressions", {
          body: { addresses: ["Ann@Example.com", "bob@example.com"], reason: "unsubscribed", source: "import" },
        });
        assert.equal(added.status, 201);
        assert.equal((await added.json()).added, 2);
        const again = await call("suppressions", { token: agent, body: { address: "ann@example.com" } });
        assert.equal(again.status, 200, "already listed: nothing new");
        assert.equal((await again.json()).suppressions[0].reason, "unsubscribed", "kept as it was");
        const byAgent = await call("suppressions", { token: agent, body: { address: "carl@example.com" } });
        assert.equal(byAgent.status, 201);
        const list = await (await call("suppressions", { method: "GET" })).json();
        assert.deepEqual(list.suppressions.map((s: { address: string }) => s.address), [
          "ann@example.com",
          "bob@example.com",
          "carl@example.com",
        ]);
        const one = await (await call("suppressions/ANN%40example.com", { method: "GET" })).json();
        assert.deepEqual([one.address, one.reason, one.source], ["ann@example.com", "unsubscribed", "import"]);
        assert.equal(
          await errorCode(await call("suppressions/carl%40example.com", { token: agent, method: "DELETE" }), 403),
          "first_party_session_required",
        );
        assert.equal(
          await errorCode(
            await stack.invoke("suppressions/carl%40example.com", {
              token: owner.token,
              method: "DELETE",
              headers: { "x-mailroom-via": "mcp" },
            }),
            403,
          ),
          "first_party_session_required",
          "through the agent tools either",
        );
        assert.equal((await call("suppressions/carl%40example.com", { method: "DELETE" })).status, 200);
        assert.equal(
          await errorCode(await call("suppressions/carl%40example.com", { method: "GET" }), 404),
          "suppression_not_found",
        );
        // Another user sees none of it.
        assert.equal(
          await errorCode(await call("suppressions/ann%40example.com", { token: other.token, method: "GET" }), 404),
          "suppression_not_found",
        );
        assert.equal(
          await errorCode(await call("suppressions", { body: { address: "not-an-address" } }), 400),
          "invalid_address",
        );
        assert.equal(
          await errorCode(await call("suppressions", { body: { address: "a@b.example", reason: "whatever" } }), 400),
          "invalid_request",
        );
        const [{ n }] = await stack.sql<{ n: number }[]>`
          select count(*)::integer as n from public.suppressions where user_id = ${owner.id}`;
        assert.equal(n, 2, "ann and bob");
      });

      await t.step(
        "send-email skips a suppressed recipient; the others get it, the server never hears of it",
        async () => {
          const before = attempted().length;
          const result = await send({ to: ["ann@example.com", "dora@example.com"], cc: "BOB@example.com" });
          assert.deepEqual([result.status, result.accepted, result.suppressed], [
            "sent",
            ["dora@example.com"],
            ["ann@example.com", "BOB@example.com"],
          ]);
          assert.deepEqual(attempted().slice(before), ["dora@example.com"]);
          const received = smtp.messages().at(-1)!.data;
          assert.ok(!/ann@example\.com|bob@example\.com/i.test(received.split("\r\n\r\n")[0]), "not in the headers");
          const row = await (await call(`email-analytics/messages/${result.id}`, { method: "GET" })).json();
          assert.deepEqual([row.status, row.suppressed], ["sent", ["ann@example.com", "BOB@example.com"]]);
        },
      );

      await t.step("a dry run names the recipients a real send would skip", async () => {
        const dry = await send({ to: ["ann@example.com", "dora@example.com"], dry_run: true });
        assert.deepEqual([dry.outcome, dry.message.suppressed], ["would_send", ["ann@example.com"]]);
      });

      await t.step("a send whose every recipient is suppressed ends `suppressed`, nothing sent", async () => {
        const messages = smtp.messages().length;
        const result = await send({ to: "ann@example.com" }, agent);
        assert.deepEqual([result.status, result.suppressed, result.accepted], ["suppressed", ["ann@example.com"], []]);
        assert.equal(smtp.messages().length, messages);
        const row = await (await call(`email-analytics/messages/${result.id}`, { method: "GET" })).json();
        assert.equal(row.status, "suppressed");
        const summary = await (await call("email-analytics", { method: "GET" })).json();
        assert.equal(summary.totals.suppressed, 1);
      });

      await t.step(
        "send-bulk: listed recipients are reported at once and end `suppressed` when their turn comes",
        async () => {
          const before = attempted().length;
          const res = await call("send-bulk", {
            body: {
              subject: "News",
              text: "x",
              recipients: ["ann@example.com", "erin@example.com", "fred@example.com"],
            },
          });
          assert.equal(res.status, 202, await res.clone().text());
          const accepted = await res.json();
          assert.deepEqual(accepted.suppressed, ["ann@example.com"]);
          // Fred unsubscribes after the batch was queued: the worker looks again when it sends.
          await call("suppressions", { body: { address: "fred@example.com", reason: "unsubscribed" } });
          const report = await stack.drainOutbox();
          assert.deepEqual([report.sent, report.suppressed], [1, 2], JSON.stringify(report));
          assert.deepEqual(attempted().slice(before), ["erin@example.com"]);
          const batch = await (await call(`send-bulk/${accepted.batch_id}`, { method: "GET" })).json();
          assert.deepEqual([batch.counts.sent, batch.counts.suppressed, batch.counts.queued], [1, 2, 0]);
          // Messages mode: a listed Cc or Bcc is reported at once too.
          const messages = await call("send-bulk", {
            body: {
              messages: [{ to: "erin@example.com", cc: "Ann@example.com", bcc: "fred@example.com", text: "x" }],
            },
          });
          assert.equal(messages.status, 202, await messages.clone().text());
          assert.deepEqual((await messages.json()).suppressed, ["Ann@example.com", "fred@example.com"]);
          await stack.drainOutbox();
        },
      );

      await t.step("a 550 5.1.1 at RCPT suppresses the address as a hard bounce; a 550 5.7.1 does not", async () => {
        const result = await send({ to: ["gone@example.com", "policy@example.com", "glen@example.com"] });
        assert.deepEqual(result.rejected, ["gone@example.com", "policy@example.com"]);
        const gone = await (await call("suppressions/gone%40example.com", { method: "GET" })).json();
        assert.equal(gone.reason, "hard_bounce");
        assert.equal(gone.message_id, result.id);
        assert.match(gone.source, /550 5\.1\.1/);
        assert.equal(
          await errorCode(await call("suppressions/policy%40example.com", { method: "GET" }), 404),
          "suppression_not_found",
        );
        // The next send skips it.
        const next = await send({ to: ["gone@example.com", "glen@example.com"] });
        assert.deepEqual(next.suppressed, ["gone@example.com"]);
      });

      await t.step("a config can keep hard bounces off the list; an agent cannot turn that on", async () => {
        assert.equal(
          await errorCode(
            await call("smtp-configs/main", { token: agent, method: "PATCH", body: { suppress_hard_bounces: false } }),
            403,
          ),
          "first_party_session_required",
        );
        const off = await call("smtp-configs/main", { method: "PATCH", body: { suppress_hard_bounces: false } });
        assert.equal((await off.json()).suppress_hard_bounces, false);
        const res = await call("send-email", { body: { to: "gone-too@example.com", subject: "x", text: "y" } });
        assert.equal(res.status, 502, "refused by the server: the send fails, nothing suppressed");
        assert.equal(
          await errorCode(await call("suppressions/gone-too%40example.com", { method: "GET" }), 404),
          "suppression_not_found",
        );
      });
    } finally {
      await smtp.close();
      await stack.close();
    }
  },
});
