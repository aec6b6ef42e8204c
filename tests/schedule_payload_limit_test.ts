// send-email accepts bodies up to 15 MiB (MAX_BODY_BYTES) and the payload
// check allows 15 MiB, but the check measures `payload::text`, jsonb's own rendering, which
// puts a space after every `,` and `:`. A scheduled send whose body is well inside 15 MiB
// can still break the constraint: the caller gets 500 internal_error instead of a 413.
import assert from "node:assert/strict";
import { body, startTestStack } from "./harness.ts";
import { startScriptedSmtp } from "./scripted_smtp.ts";

const MiB = 1024 * 1024;

Deno.test({
  name: "a scheduled send that passes the outbox's payload limit as JSON answers 413, never 500",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const stack = await startTestStack({ MAILROOM_ALLOW_PLAINTEXT_SMTP: "true" });
    const smtp = await startScriptedSmtp({ extensions: ["PIPELINING"] });
    try {
      const user = await stack.createUser();
      await stack.createConfig(user, { port: smtp.port, security: "none", username: null });
      const created = await stack.invoke("templates", {
        token: user.token,
        body: { name: "t", subject: "Hi {{name}}", text: "Hello {{name}}" },
      });
      assert.equal(created.status, 201, await created.text());
      // A body 2,000 bytes under 15 MiB: 9,000 small template values and one long unused one.
      const values = Array.from({ length: 9_000 }, (_, i) => `"k${i}":1`).join(",");
      const head = `{"to":"a@example.com","template":"t","scheduled_at":"${
        new Date(Date.now() + 3_600_000).toISOString()
      }","data":{"name":"x",${values},"pad":"`;
      const tail = `"}}`;
      const text = head + "p".repeat(15 * MiB - 2_000 - head.length - tail.length) + tail;
      const res = await fetch(`${stack.url}/functions/v1/send-email`, {
        method: "POST",
        headers: { authorization: `Bearer ${user.token}`, "content-type": "application/json", apikey: stack.anonKey },
        body: text,
      });
      const answer = await body<{ error: { code: string } }>(res);
      assert.equal(res.status, 413, JSON.stringify(answer));
      assert.equal(answer.error.code, "payload_too_large");
    } finally {
      await smtp.close();
      await stack.close();
    }
  },
});
