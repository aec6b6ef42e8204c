// Idempotency-Key on send-email: a retry with the same key and body replays the first
// response and sends nothing more; another body is refused; a concurrent duplicate waits
// its turn (409); a request refused before sending gives its key back.
import assert from "node:assert/strict";
import { body, type ErrorBody, startTestStack, userWithCatcher } from "./harness.ts";
import { startScriptedSmtp } from "./scripted_smtp.ts";

Deno.test({
  name: "send-email with an Idempotency-Key",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const stack = await startTestStack({ MAILROOM_ALLOW_PLAINTEXT_SMTP: "true" });
    const { user, smtp } = await userWithCatcher(stack);
    const send = (key: string | undefined, payload: Record<string, unknown>, who = user) =>
      stack.invoke("send-email", {
        token: who.token,
        body: payload,
        headers: key === undefined ? {} : { "idempotency-key": key },
      });
    try {
      await t.step("the same key and body replay the first response; one message is sent", async () => {
        const payload = { to: "a@example.com", subject: "once", text: "only once" };
        const first = await send("order-42-receipt", payload);
        const firstBody = await body(first);
        assert.equal(first.status, 200, JSON.stringify(firstBody));
        const again = await send("order-42-receipt", payload);
        assert.equal(again.status, 200);
        assert.equal(again.headers.get("idempotent-replayed"), "true");
        assert.deepEqual(await body(again), firstBody);
        assert.equal((await smtp.waitForMessages(1)).length, 1);
        await new Promise((r) => setTimeout(r, 200));
        assert.equal(smtp.messages().length, 1, "the replay sent nothing");
        const [audit] = await stack.sql`select idempotency_key from public.email_audit_log where id = ${
          (firstBody as { id: string }).id
        }`;
        assert.equal(audit.idempotency_key, "order-42-receipt");
      });

      await t.step("the same body with its fields in another order replays", async () => {
        const again = await send("order-42-receipt", { text: "only once", subject: "once", to: "a@example.com" });
        assert.equal(again.status, 200);
        assert.equal(again.headers.get("idempotent-replayed"), "true");
      });

      await t.step("the same key with another body is 422 idempotency_key_reused", async () => {
        const res = await send("order-42-receipt", { to: "a@example.com", subject: "changed", text: "x" });
        assert.equal(res.status, 422);
        assert.equal((await body<ErrorBody>(res)).error.code, "idempotency_key_reused");
      });

      await t.step("keys are per user", async () => {
        const { user: other, smtp: otherSmtp } = await userWithCatcher(stack);
        try {
          const res = await send("order-42-receipt", { to: "b@example.com", subject: "mine", text: "x" }, other);
          assert.equal(res.status, 200);
          assert.equal(res.headers.get("idempotent-replayed"), null);
        } finally {
          await otherSmtp.close();
        }
      });

      await t.step("a duplicate while the first is still sending gets 409; exactly one send", async () => {
        const slow = await startScriptedSmtp({ dataReplyDelayMs: 1000 });
        try {
          await stack.createConfig(user, {
            name: "slow",
            port: slow.port,
            security: "none",
            username: null,
            is_default: false,
          });
          const payload = { to: "c@example.com", subject: "race", text: "x", config: "slow" };
          const first = send("race-1", payload);
          // Wait (with a deadline) until the first request is in the middle of its SMTP session.
          for (let i = 0; slow.transcript().every((line) => line !== "DATA"); i++) {
            if (i > 500) throw new Error("the first request never reached DATA");
            await new Promise((r) => setTimeout(r, 10));
          }
          const duplicate = await send("race-1", payload);
          assert.equal(duplicate.status, 409);
          assert.equal((await body<ErrorBody>(duplicate)).error.code, "request_in_progress");
          assert.equal(duplicate.headers.get("retry-after"), "1");
          assert.equal((await first).status, 200);
          assert.equal(slow.messages().length, 1, "exactly one message went out");
          const replay = await send("race-1", payload);
          assert.equal(replay.headers.get("idempotent-replayed"), "true");
        } finally {
          await slow.close();
        }
      });

      await t.step("a request refused before sending gives its key back", async () => {
        const payload = { to: "d@example.com", text: "x", config: "not-yet" };
        const refused = await send("fix-and-retry", payload);
        assert.equal(refused.status, 404);
        await stack.createConfig(user, { name: "not-yet", port: smtp.port, password: "pw", is_default: false });
        const retried = await send("fix-and-retry", payload);
        assert.equal(retried.status, 200, JSON.stringify(await body(retried)));
        assert.equal(retried.headers.get("idempotent-replayed"), null);
      });

      await t.step("a send that failed at the SMTP server is replayed too (its audit row exists)", async () => {
        const refusing = await startScriptedSmtp({ rcpt: () => "550 5.1.1 no such user" });
        try {
          await stack.createConfig(user, {
            name: "refusing",
            port: refusing.port,
            security: "none",
            username: null,
            is_default: false,
          });
          const payload = { to: "e@example.com", text: "x", config: "refusing" };
          const first = await send("refused-once", payload);
          assert.equal(first.status, 502);
          const firstBody = await body<ErrorBody>(first);
          const again = await send("refused-once", payload);
          assert.equal(again.status, 502);
          assert.equal(again.headers.get("idempotent-replayed"), "true");
          assert.deepEqual(await body(again), firstBody);
          assert.equal(refusing.transcript().filter((l) => l.startsWith("MAIL FROM")).length, 1);
        } finally {
          await refusing.close();
        }
      });

      await t.step(
        "a key whose request was interrupted (its instance died) says so instead of 409 for 24 h",
        async () => {
          // As if the function instance had died after sending, before storing the response.
          const interrupt = (key: string) =>
            stack.sql`update private.idempotency_keys
                       set state = 'in_progress', response_status = null, response_body = null,
                           created_at = now() - interval '11 minutes'
                     where key = ${key}`;
          const payload = { to: "a@example.com", subject: "crash", text: "x" };
          const first = await send("crash-1", payload);
          const { id } = await body<{ id: string }>(first);
          await interrupt("crash-1");
          const retry = await send("crash-1", payload);
          const answer = await body<ErrorBody & { error: { details: Record<string, unknown> } }>(retry);
          assert.equal(retry.status, 409);
          assert.equal(answer.error.code, "request_interrupted");
          assert.equal(answer.error.details.retryable, false);
          assert.equal(answer.error.details.id, id, "names the audit row the first request started");
          assert.equal(answer.error.details.status, "sent");
          const sent = smtp.messages().filter((m) => /^Subject: crash\r?$/m.test(m.raw)).length;
          assert.equal(sent, 1, "the retry sent nothing");

          const bulkBody = { text: "x", recipients: ["b1@example.com"] };
          const bulk = await stack.invoke("send-bulk", {
            token: user.token,
            body: bulkBody,
            headers: { "idempotency-key": "crash-2" },
          });
          assert.equal(bulk.status, 202, await bulk.text());
          await interrupt("crash-2");
          const bulkRetry = await stack.invoke("send-bulk", {
            token: user.token,
            body: bulkBody,
            headers: { "idempotency-key": "crash-2" },
          });
          assert.equal(bulkRetry.status, 409);
          assert.equal((await body<ErrorBody>(bulkRetry)).error.code, "request_interrupted");
          // (Another email: the same one again within 10 minutes would be a duplicate_send.)
          const stillInProgress = await send("crash-3", { ...payload, text: "y" });
          assert.equal(stillInProgress.status, 200, "a fresh key is unaffected");
        },
      );

      await t.step("an expired key (24 h) runs again; a malformed key is 400", async () => {
        await stack.sql`update private.idempotency_keys set expires_at = now() - interval '1 minute'
                         where key = 'order-42-receipt'`;
        // A day later, the email's duplicate window (10 minutes) is long past too.
        await stack.sql`update private.send_fingerprints set expires_at = now() - interval '1 minute'`;
        const res = await send("order-42-receipt", { to: "a@example.com", subject: "once", text: "only once" });
        assert.equal(res.status, 200);
        assert.equal(res.headers.get("idempotent-replayed"), null);
        const bad = await send("has space", { to: "a@example.com", text: "x" });
        assert.equal(bad.status, 400);
        assert.equal((await body<ErrorBody>(bad)).error.code, "invalid_idempotency_key");
      });
    } finally {
      await smtp.close();
      await stack.close();
    }
  },
});
