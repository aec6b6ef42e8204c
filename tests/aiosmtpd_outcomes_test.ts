// The outcome model against a real third-party SMTP server, aiosmtpd (tests/aiosmtpd_server.py,
// Debian's python3-aiosmtpd): per-recipient refusals, end-of-data refusals, AUTH, SIZE,
// SMTPUTF8 and "452 too many recipients", end to end through send-email.
import assert from "node:assert/strict";
import { body, type ErrorBody, startTestStack, type TestStack } from "./harness.ts";
import { freePort, ROOT } from "../local/postgres.ts";

const PASSWORD = "aiosmtpd-pa55word";

interface Received {
  mail_from: string;
  rcpt_tos: string[];
  data: string;
}

interface Aiosmtpd {
  port: number;
  received: Received[];
  close(): Promise<void>;
}

/** Start aiosmtpd with extra arguments; resolves once it listens. */
async function startAiosmtpd(args: string[] = []): Promise<Aiosmtpd> {
  const port = freePort();
  const child = new Deno.Command("/usr/bin/python3", {
    args: [`${ROOT}/tests/aiosmtpd_server.py`, "--port", String(port), "--password", PASSWORD, ...args],
    stdin: "piped",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const received: Received[] = [];
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let ready: (() => void) | undefined;
  const listening = new Promise<void>((resolve) => ready = resolve);
  const pump = (async () => {
    for (;;) {
      const { done, value } = await lines.read();
      if (done) return;
      buffer += value;
      let newline: number;
      while ((newline = buffer.indexOf("\n")) >= 0) {
        const line = JSON.parse(buffer.slice(0, newline));
        buffer = buffer.slice(newline + 1);
        if ("port" in line) ready!();
        else received.push(line);
      }
    }
  })();
  await listening;
  return {
    port,
    received,
    close: async () => {
      await child.stdin.close();
      await child.status;
      await pump;
    },
  };
}

interface Sent {
  id: string;
  accepted: string[];
  rejected: string[];
  deferred: string[];
  recipients: { address: string; status: string; smtp_code: number | null; enhanced_code: string | null }[];
}

Deno.test({
  name: "SMTP outcomes against aiosmtpd (a real third-party server)",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const stack: TestStack = await startTestStack({ MAILROOM_ALLOW_PLAINTEXT_SMTP: "true" });
    const user = await stack.createUser();
    let configs = 0;
    const sendThrough = async (server: Aiosmtpd, payload: Record<string, unknown>, password = PASSWORD) => {
      const name = `aio${++configs}`;
      await stack.createConfig(user, {
        name,
        port: server.port,
        security: "none",
        username: "agent",
        password,
        is_default: false,
      });
      const res = await stack.invoke("send-email", {
        token: user.token,
        body: { subject: "s", text: "x", config: name, ...payload },
      });
      return { status: res.status, json: await body<Sent & ErrorBody>(res) };
    };

    try {
      const server = await startAiosmtpd();
      try {
        await t.step("mixed recipients: sent, with each recipient's own outcome", async () => {
          const { status, json } = await sendThrough(server, {
            to: ["ok@example.com", "perm-550@example.com", "temp-450@example.com"],
          });
          assert.equal(status, 200, JSON.stringify(json));
          assert.deepEqual([json.accepted, json.rejected, json.deferred], [
            ["ok@example.com"],
            ["perm-550@example.com"],
            ["temp-450@example.com"],
          ]);
          assert.deepEqual(json.recipients.slice(1).map((r) => [r.smtp_code, r.enhanced_code]), [
            [550, "5.1.1"],
            [450, "4.2.0"],
          ]);
          assert.deepEqual(server.received.at(-1)?.rcpt_tos, ["ok@example.com"]);
        });

        await t.step("every recipient temporarily refused: 502 smtp_recipients_deferred, retryable", async () => {
          const { status, json } = await sendThrough(server, { to: ["temp-451@example.com"] });
          assert.equal(status, 502);
          assert.deepEqual([json.error.code, json.error.details?.retryable], ["smtp_recipients_deferred", true]);
        });

        await t.step("refused at end of data: deferred (451) and rejected (554)", async () => {
          const deferred = await sendThrough(server, { to: ["data-451@example.com"] });
          assert.deepEqual([deferred.json.error.code, deferred.json.error.details?.retryable], [
            "smtp_message_deferred",
            true,
          ]);
          const rejected = await sendThrough(server, { to: ["data-554@example.com"] });
          assert.deepEqual([rejected.json.error.code, rejected.json.error.details?.retryable], [
            "smtp_message_rejected",
            false,
          ]);
        });

        await t.step("a wrong password is smtp_auth_failed, and the reply carries no password", async () => {
          const { status, json } = await sendThrough(server, { to: ["ok@example.com"] }, "wrong-password-123");
          assert.equal(status, 502);
          assert.equal(json.error.code, "smtp_auth_failed");
          assert.ok(!JSON.stringify(json).includes("wrong-password-123"));
        });

        await t.step("a UTF-8 address goes through a server that offers SMTPUTF8", async () => {
          const { status, json } = await sendThrough(server, { to: ["jörg@example.com"] });
          assert.equal(status, 200, JSON.stringify(json));
          assert.deepEqual(server.received.at(-1)?.rcpt_tos, ["jörg@example.com"]);
        });
      } finally {
        await server.close();
      }

      await t.step("SIZE: a message over the announced limit is refused before upload", async () => {
        const small = await startAiosmtpd(["--size", "1000"]);
        try {
          const { status, json } = await sendThrough(small, { to: ["ok@example.com"], text: "x".repeat(5000) });
          assert.equal(status, 502);
          assert.equal(json.error.code, "smtp_message_too_large");
          assert.equal(small.received.length, 0);
        } finally {
          await small.close();
        }
      });

      await t.step("no SMTPUTF8: a UTF-8 address is refused before anything is sent", async () => {
        const ascii = await startAiosmtpd(["--no-smtputf8"]);
        try {
          const { status, json } = await sendThrough(ascii, { to: ["jörg@example.com", "ok@example.com"] });
          assert.equal(status, 502);
          assert.equal(json.error.code, "smtp_utf8_unsupported");
          assert.equal(ascii.received.length, 0);
        } finally {
          await ascii.close();
        }
      });

      await t.step("452 too many recipients: the rest go in further transactions, all arrive", async () => {
        const limited = await startAiosmtpd(["--max-rcpt", "2"]);
        try {
          const to = ["a@example.com", "b@example.com", "c@example.com", "d@example.com", "e@example.com"];
          const { status, json } = await sendThrough(limited, { to });
          assert.equal(status, 200, JSON.stringify(json));
          assert.deepEqual(json.accepted, to);
          assert.deepEqual(limited.received.map((m) => m.rcpt_tos), [
            ["a@example.com", "b@example.com"],
            ["c@example.com", "d@example.com"],
            ["e@example.com"],
          ]);
        } finally {
          await limited.close();
        }
      });
    } finally {
      await stack.close();
    }
  },
});
