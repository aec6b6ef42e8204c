// What a send reports and audits when the SMTP session breaks at different points: before
// DATA nothing can have been delivered (failed, safe to retry); after the server took the
// data but before it confirmed, the outcome is unknown and must never be retried blindly.
import assert from "node:assert/strict";
import { body, captureLogs, type ErrorBody, startTestStack, type TestStack, type TestUser } from "./harness.ts";
import { type Misbehaviour, startScriptedSmtp } from "./scripted_smtp.ts";
import { startSmtpCatcher } from "../local/smtp_catcher.ts";

Deno.test({
  name: "send outcomes when the session breaks",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const stack: TestStack = await startTestStack({
      MAILROOM_ALLOW_PLAINTEXT_SMTP: "true",
      MAILROOM_SMTP_SOCKET_TIMEOUT_MS: "800",
    });
    const user: TestUser = await stack.createUser();

    const sendThrough = async (misbehaviour: Misbehaviour) => {
      const server = await startScriptedSmtp(misbehaviour);
      try {
        await stack.createConfig(user, {
          name: misbehaviour,
          port: server.port,
          security: "none",
          username: null,
          is_default: false,
        });
        const res = await stack.invoke("send-email", {
          token: user.token,
          body: { to: "a@example.com", text: "hello", config: misbehaviour },
        });
        const error = (await body<ErrorBody>(res)).error;
        const [audit] = await stack.sql`
          select status, error_class from public.email_audit_log where id = ${error.details?.id as string}`;
        return { status: res.status, error, audit, received: server.receivedMessage() };
      } finally {
        await server.close();
      }
    };

    try {
      await t.step("a hang-up after the final dot is unknown, not failed", async () => {
        const result = await sendThrough("close-after-dot");
        assert.equal(result.received, true, "the server did get the whole message");
        assert.equal(result.status, 502);
        assert.equal(result.error.code, "smtp_outcome_unknown");
        assert.equal(result.error.details?.status, "unknown");
        assert.deepEqual({ ...result.audit }, { status: "unknown", error_class: "smtp_outcome_unknown" });
      });

      await t.step("silence after the final dot is unknown too", async () => {
        const result = await sendThrough("silent-after-dot");
        assert.equal(result.received, true);
        assert.equal(result.error.code, "smtp_outcome_unknown");
        assert.equal(result.audit.status, "unknown");
      });

      await t.step("silence before DATA is a plain failure", async () => {
        const result = await sendThrough("silent-after-ehlo");
        assert.equal(result.received, false);
        assert.equal(result.error.code, "smtp_timeout");
        assert.deepEqual({ ...result.audit }, { status: "deferred", error_class: "smtp_timeout" });
      });

      await t.step("an unresolvable host is audited and answered with the audit id", async () => {
        await stack.createConfig(user, {
          name: "nowhere",
          host: "smtp.no-such-host.mailroom-tests.example",
          port: 465,
          is_default: false,
          password: "x",
        });
        const res = await stack.invoke("send-email", {
          token: user.token,
          body: { to: "a@example.com", text: "x", config: "nowhere" },
        });
        const error = (await body<ErrorBody>(res)).error;
        assert.equal(res.status, 502);
        assert.equal(error.code, "smtp_host_not_found");
        const [audit] = await stack.sql`select status, error_class from public.email_audit_log where id = ${error
          .details?.id as string}`;
        assert.deepEqual({ ...audit }, { status: "failed", error_class: "smtp_host_not_found" });
      });
    } finally {
      await stack.close();
    }
  },
});

Deno.test({
  name: "a delivered message is reported as sent even when its outcome cannot be recorded",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const stack = await startTestStack({ MAILROOM_ALLOW_PLAINTEXT_SMTP: "true" });
    const catcher = await startSmtpCatcher({ mode: "plain" });
    try {
      const user = await stack.createUser();
      await stack.createConfig(user, { port: catcher.port, security: "none", username: null });
      // Stand-in for a database outage between the send and the outcome: the function is unreachable.
      await stack.sql`revoke execute on function private.record_email_outcome(uuid, jsonb) from authenticated`;
      const { result: res, logs } = await captureLogs(() =>
        stack.invoke("send-email", { token: user.token, body: { to: "a@example.com", text: "x" } })
      );
      const sent = await body<{ id: string; status: string }>(res);
      assert.equal(res.status, 200, JSON.stringify(sent));
      assert.equal(sent.status, "sent");
      assert.equal((await catcher.waitForMessages(1)).length, 1);
      const [audit] = await stack.sql`select status from public.email_audit_log where id = ${sent.id}`;
      assert.equal(audit.status, "sending", "left for the outbox sweep to settle");
      assert.match(logs, new RegExp(`could not record send outcome.*${sent.id}`));
    } finally {
      await catcher.close();
      await stack.close();
    }
  },
});
