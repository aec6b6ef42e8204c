// Found by an adversarial review: admission charges a body's *declared* length for as long as the request
// lasts, and nothing bounds how slowly the body may arrive. One signed-in user opens two
// requests declaring 15 MiB and 9 MiB, sends a few bytes and keeps the sockets open (the
// platform's idle timeout is 150 s; one byte now and then resets it): every other user's
// request with a body, however small, waits 2 s and gets 503 server_busy, for as long as the
// attacker likes. Nothing of the 24 MiB is in memory.
import assert from "node:assert/strict";
import { body, type ErrorBody, startTestStack } from "./harness.ts";
import { startScriptedSmtp } from "./scripted_smtp.ts";

const MiB = 1024 * 1024;

Deno.test({
  name: "one user's slow uploads cannot hold the whole body budget: another user's send goes",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const stack = await startTestStack({ MAILROOM_ALLOW_PLAINTEXT_SMTP: "true" });
    const smtp = await startScriptedSmtp({ extensions: ["PIPELINING"] });
    try {
      const victim = await stack.createUser();
      await stack.createConfig(victim, { port: smtp.port, security: "none", username: null });
      const port = Number(new URL(stack.url).port);
      for (const full of [false, true]) {
        const variant = full ? "all but the last bytes sent, then a stall" : "a few bytes sent, then a stall";
        await t.step(`${variant}: another user's send goes; the attacker's second body gets 503`, async () => {
          const attacker = await stack.createUser();
          const sockets: Deno.Conn[] = [];
          try {
            for (const declared of [15 * MiB, 9 * MiB]) {
              const conn = await Deno.connect({ hostname: "127.0.0.1", port });
              sockets.push(conn);
              const head = `POST /functions/v1/send-email HTTP/1.1\r\nhost: 127.0.0.1\r\n` +
                `authorization: Bearer ${attacker.token}\r\ncontent-type: application/json\r\n` +
                `content-length: ${declared}\r\n\r\n{"to": "`;
              await conn.write(new TextEncoder().encode(head));
              if (full) {
                const chunk = new TextEncoder().encode("a".repeat(MiB));
                for (let i = 0; i < declared / MiB - 1; i++) await conn.write(chunk).catch(() => 0);
              }
            }
            await new Promise((resolve) => setTimeout(resolve, 1_000));
            const res = await stack.invoke("send-email", {
              token: victim.token,
              body: { to: "someone@example.com", subject: `hi ${crypto.randomUUID()}`, text: "a 60-byte body" },
            });
            const answer = await body<ErrorBody>(res);
            assert.equal(
              res.status,
              200,
              `another user's tiny send was refused: ${res.status} ${JSON.stringify(answer)}`,
            );
            // One of the attacker's two bodies (whichever the server took second) was refused at
            // once: one caller holds at most half the budget. The other is still being waited for.
            const answers = await Promise.all(sockets.map(async (conn) => {
              const buffer = new Uint8Array(2048);
              const timeout = new Promise<null>((resolve) => setTimeout(() => resolve(null), 2_000));
              const n = await Promise.race([conn.read(buffer).catch(() => null), timeout]);
              return n ? new TextDecoder().decode(buffer.subarray(0, n)) : "";
            }));
            const refused = answers.filter((a) => /^HTTP\/1\.1 503 [\s\S]*server_busy/.test(a));
            assert.equal(refused.length, 1, JSON.stringify(answers.map((a) => a.slice(0, 40))));
          } finally {
            for (const conn of sockets) conn.close();
          }
        });
      }
    } finally {
      await smtp.close();
      await stack.close();
    }
  },
});
