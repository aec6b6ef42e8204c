// Request bodies end to end: size counted while reading (with or without Content-Length),
// JSON nesting, lone surrogates and agent_context bounded, for every function that reads JSON.
import assert from "node:assert/strict";
import { body, type ErrorBody, errorCode, startTestStack, type TestStack, userWithCatcher } from "./harness.ts";
import { MAX_BODY_BYTES } from "../supabase/functions/send-email/handler.ts";
import { MAX_JSON_DEPTH } from "../supabase/functions/_shared/http.ts";
import { MAX_AGENT_CONTEXT_BYTES, MAX_AGENT_CONTEXT_DEPTH } from "../supabase/functions/_shared/schemas.ts";
import { startScriptedSmtp } from "./scripted_smtp.ts";
import { Buffer } from "node:buffer";

const MiB = 1024 * 1024;

/** A body of `total` bytes that is produced only as the reader pulls it; `pulled` counts what was taken. */
function countingStream(total: number): { stream: ReadableStream<Uint8Array>; pulled: () => number } {
  const chunk = new Uint8Array(64 * 1024).fill(0x20);
  let pulled = 0;
  const stream = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (pulled >= total) return controller.close();
      pulled += chunk.byteLength;
      controller.enqueue(chunk);
    },
  });
  return { stream, pulled: () => pulled };
}

/** `[[[...]]]` nested `depth` deep. */
const nested = (depth: number) => "[".repeat(depth) + "]".repeat(depth);

Deno.test({
  name: "request body limits",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const stack: TestStack = await startTestStack();
    const { user, smtp } = await userWithCatcher(stack);

    const post = (fn: string, raw: BodyInit, init: RequestInit = {}) =>
      fetch(`${stack.url}/functions/v1/${fn}`, {
        method: "POST",
        headers: { authorization: `Bearer ${user.token}`, apikey: stack.anonKey, "content-type": "application/json" },
        body: raw,
        ...init,
      });
    const send = (payload: Record<string, unknown>) =>
      stack.invoke("send-email", { token: user.token, body: { to: "jane@example.com", text: "hi", ...payload } });

    try {
      await t.step("stops reading a chunked body at the limit and answers 413, for every function", async () => {
        const cases: [string, number][] = [["send-email", MAX_BODY_BYTES], ["smtp-configs", 64 * 1024]];
        for (const [fn, limit] of cases) {
          const total = 64 * MiB;
          const { stream, pulled } = countingStream(total);
          const abort = new AbortController();
          // No Content-Length: a stream body is sent chunked.
          const res = await post(fn, stream, { signal: abort.signal });
          assert.equal(await errorCode(res, 413), "payload_too_large", fn);
          // The server answered while most of the body was still unread (socket buffers hold a few MiB).
          assert.ok(pulled() > limit, `${fn}: read up to the limit`);
          assert.ok(pulled() < total / 2, `${fn}: pulled ${pulled()} of ${total} bytes before the answer`);
          abort.abort();
        }
      });

      await t.step("answers 413 from Content-Length alone, without waiting for the body", async () => {
        // A raw request that declares more than the limit and sends two bytes: were the server to
        // read the declared body, it would wait for ever instead of answering.
        const conn = await Deno.connect({ hostname: "127.0.0.1", port: Number(new URL(stack.url).port) });
        try {
          const head = [
            "POST /functions/v1/send-email HTTP/1.1",
            `host: ${new URL(stack.url).host}`,
            `authorization: Bearer ${user.token}`,
            "content-type: application/json",
            `content-length: ${MAX_BODY_BYTES + 1}`,
            "",
            "{}",
          ].join("\r\n");
          await conn.write(new TextEncoder().encode(head));
          const buffer = new Uint8Array(4096);
          const read = await conn.read(buffer);
          const answer = new TextDecoder().decode(buffer.subarray(0, read ?? 0));
          assert.match(answer, /^HTTP\/1\.1 413 /);
          assert.match(answer, /payload_too_large/);
        } finally {
          conn.close();
        }
      });

      await t.step("refuses JSON nested deeper than the limit with 400 json_too_deep, for every function", async () => {
        const depths = {
          "send-email": [MAX_JSON_DEPTH + 1, 5_000, 1_000_000],
          "smtp-configs": [MAX_JSON_DEPTH + 1, 5_000],
        };
        for (const [fn, list] of Object.entries(depths)) {
          for (const depth of list) {
            const res = await post(fn, `{"to": "jane@example.com", "text": "x", "deep": ${nested(depth - 1)}}`);
            const parsed = await body<ErrorBody>(res);
            assert.equal(res.status, 400, `${fn} ${depth}: ${JSON.stringify(parsed)}`);
            assert.equal(parsed.error.code, "json_too_deep");
            assert.deepEqual(parsed.error.details, { limit: MAX_JSON_DEPTH });
          }
        }
        // At the limit the body parses and the schema has its say (no such field).
        const res = await post(
          "send-email",
          `{"to": "jane@example.com", "text": "x", "deep": ${nested(MAX_JSON_DEPTH - 1)}}`,
        );
        assert.equal(await errorCode(res, 400), "invalid_request");
      });

      await t.step("does not count brackets inside strings", async () => {
        smtp.clear();
        const text = "[{".repeat(5_000) + '\\"]}' + "\\\\[";
        const res = await post("send-email", `{"to": "jane@example.com", "subject": "brackets", "text": "${text}"}`);
        assert.equal(res.status, 200, JSON.stringify(await body(res)));
        assert.equal((await smtp.waitForMessages(1)).length, 1);
      });

      await t.step("refuses lone UTF-16 surrogates in values and keys with 400 invalid_json", async () => {
        const bodies: [string, string][] = [
          ['{"to": "jane@example.com", "text": "a\\ud800b"}', "text"],
          ['{"to": "jane@example.com", "text": "x", "subject": "\\udfff"}', "subject"],
          ['{"to": "jane@example.com", "text": "x", "agent_context": {"k\\udc00": 1}}', "agent_context.k\ufffd"],
          ['{"to": ["jane@example.com", "a\\ud83d@example.com"], "text": "x"}', "to.1"],
        ];
        for (const [raw, path] of bodies) {
          for (const fn of ["send-email", "smtp-configs"]) {
            const res = await post(fn, raw);
            const parsed = await body<ErrorBody>(res);
            assert.equal(res.status, 400, `${fn} ${raw}: ${JSON.stringify(parsed)}`);
            assert.equal(parsed.error.code, "invalid_json");
            assert.equal(parsed.error.details?.path, path);
            assert.match(parsed.error.message, /surrogate/);
          }
        }
        smtp.clear();
        const pair = await post("send-email", '{"to": "jane@example.com", "subject": "\\ud83d\\ude00", "text": "ok"}');
        assert.equal(pair.status, 200, "a surrogate pair is a valid character");
        await pair.body?.cancel();
        assert.equal((await smtp.waitForMessages(1)).length, 1);
      });

      await t.step("refuses bodies that are not UTF-8 with 400 invalid_json", async () => {
        const bytes = new TextEncoder().encode('{"to": "jane@example.com", "text": "x"}');
        const broken = new Uint8Array([...bytes.slice(0, -2), 0xff, 0xfe, ...bytes.slice(-2)]);
        assert.equal(await errorCode(await post("send-email", broken), 400), "invalid_json");
      });

      await t.step("bounds agent_context in size and depth with 413 agent_context_too_large", async () => {
        let deep: Record<string, unknown> = { leaf: 1 };
        for (let i = 1; i < MAX_AGENT_CONTEXT_DEPTH + 1; i++) deep = { d: deep };
        const tooLarge = [{ note: "x".repeat(MAX_AGENT_CONTEXT_BYTES) }, deep, { list: [[[[[[1]]]]]] }];
        for (const agent_context of tooLarge) {
          smtp.clear();
          const res = await send({ agent_context });
          const parsed = await body<ErrorBody>(res);
          assert.equal(res.status, 413, JSON.stringify(parsed));
          assert.equal(parsed.error.code, "agent_context_too_large");
          assert.deepEqual(parsed.error.details, {
            limit_bytes: MAX_AGENT_CONTEXT_BYTES,
            limit_depth: MAX_AGENT_CONTEXT_DEPTH,
          });
          assert.equal(smtp.messages().length, 0);
        }

        // Right at both limits it is sent and stored as given.
        let atDepth: Record<string, unknown> = { leaf: 1 };
        for (let i = 1; i < MAX_AGENT_CONTEXT_DEPTH; i++) atDepth = { d: atDepth };
        const agent_context = { ...atDepth, note: "" };
        agent_context.note = "x".repeat(MAX_AGENT_CONTEXT_BYTES - JSON.stringify(agent_context).length);
        assert.equal(JSON.stringify(agent_context).length, MAX_AGENT_CONTEXT_BYTES);
        smtp.clear();
        const res = await send({ agent_context });
        const sent = await body<{ id: string }>(res);
        assert.equal(res.status, 200, JSON.stringify(sent));
        const [audit] = await stack.sql`select agent_context from public.email_audit_log where id = ${sent.id}`;
        assert.deepEqual(audit.agent_context, agent_context);
      });
    } finally {
      await smtp.close();
      await stack.close();
    }
  },
});

Deno.test({
  name: "a body that trickles in is cut off with 408 body_timeout instead of holding its share",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const stack = await startTestStack();
    try {
      const user = await stack.createUser();
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: Number(new URL(stack.url).port) });
      try {
        // 1,000 bytes declared (5 s of grace at least), 20 sent, then nothing.
        const head = `POST /functions/v1/send-email HTTP/1.1\r\nhost: 127.0.0.1\r\n` +
          `authorization: Bearer ${user.token}\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n` +
          `{"to": "a@example.com`;
        await conn.write(new TextEncoder().encode(head));
        const buffer = new Uint8Array(4096);
        const n = await conn.read(buffer);
        const answer = new TextDecoder().decode(buffer.subarray(0, n ?? 0));
        assert.match(answer, /^HTTP\/1\.1 408 /);
        assert.match(answer, /body_timeout/);
      } finally {
        conn.close();
      }
    } finally {
      await stack.close();
    }
  },
});

Deno.test({
  name: "admission by bytes: concurrent large bodies beyond an instance's budget wait, then get 503 server_busy",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    // A 12 MiB budget, and a server whose final reply takes 5 s: the first large send holds its
    // share for longer than the others may wait (2 s).
    const stack = await startTestStack({
      MAILROOM_ALLOW_PLAINTEXT_SMTP: "true",
      MAILROOM_BODY_BUDGET_BYTES: String(12 * MiB),
      MAILROOM_SMTP_SOCKET_TIMEOUT_MS: "10000",
    });
    const smtp = await startScriptedSmtp({ extensions: ["PIPELINING"], dataReplyDelayMs: 5_000 });
    try {
      const user = await stack.createUser();
      await stack.createConfig(user, { port: smtp.port, security: "none", username: null });
      const content = Buffer.from(new Uint8Array(6 * MiB).fill(7)).toString("base64");
      const large = (i: number) =>
        stack.invoke("send-email", {
          token: user.token,
          body: { to: `big${i}@example.com`, text: "big", attachments: [{ filename: `${i}.bin`, content }] },
        });
      const first = large(0);
      // The others arrive while the first is held.
      await new Promise((resolve) => setTimeout(resolve, 300));
      const others = await Promise.all([large(1), large(2)]);
      for (const res of others) {
        assert.equal(res.status, 503);
        assert.equal(res.headers.get("retry-after"), "2");
        assert.equal((await body<ErrorBody>(res)).error.code, "server_busy");
      }
      const firstAnswer = await first;
      assert.equal(firstAnswer.status, 200, await firstAnswer.clone().text());
      // Nothing was queued or sent for the refused ones.
      assert.equal(smtp.messages().length, 1);
      const [{ n }] = await stack.sql`select count(*)::int as n from public.email_audit_log where user_id = ${user.id}`;
      assert.equal(n, 1);
      // Room again: the next one goes.
      const again = await large(3);
      assert.equal(again.status, 200, await again.text());
    } finally {
      await smtp.close();
      await stack.close();
    }
  },
});
