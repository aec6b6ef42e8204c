// The local HTTP front (local/http_server.ts): idle and slow connections are closed instead
// of being held forever, and bodies stream to the handler.
import assert from "node:assert/strict";
import { serveHttp } from "../local/http_server.ts";

/** Resolves when the server closes the connection (a read returns end of stream). */
async function closedByServer(conn: Deno.Conn): Promise<string> {
  const buffer = new Uint8Array(4096);
  let text = "";
  while (true) {
    const n = await conn.read(buffer).catch(() => null);
    if (n === null) return text;
    text += new TextDecoder().decode(buffer.subarray(0, n));
  }
}

Deno.test({
  name: "local HTTP front",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async (t) => {
    const server = await serveHttp(
      { port: 0, hostname: "127.0.0.1", timeouts: { headers: 300, keepAlive: 300, idle: 2_000 } },
      async (req) => new Response(`${req.method} ${new URL(req.url).pathname} ${(await req.text()).length}`),
    );
    try {
      await t.step("closes a connection that never sends a request", async () => {
        const conn = await Deno.connect({ port: server.port });
        assert.equal(await closedByServer(conn), "");
        conn.close();
      });

      await t.step("closes a connection whose headers never finish (slowloris)", async () => {
        const conn = await Deno.connect({ port: server.port });
        await conn.write(new TextEncoder().encode("GET / HTTP/1.1\r\nHost: x\r\nX-Slow: 1\r\n"));
        const text = await closedByServer(conn);
        assert.doesNotMatch(text, /^HTTP\/1\.1 200/, "no response to an unfinished request");
        conn.close();
      });

      await t.step("answers a request, then closes the idle keep-alive connection", async () => {
        const conn = await Deno.connect({ port: server.port });
        await conn.write(new TextEncoder().encode("POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"));
        const text = await closedByServer(conn);
        assert.match(text, /^HTTP\/1\.1 200/);
        assert.match(text, /\r\nPOST \/a 3\r\n/);
        conn.close();
      });

      await t.step("streams a chunked body to the handler", async () => {
        const chunks = ["x".repeat(1000), "y".repeat(2000)];
        const stream = new ReadableStream({
          pull(controller) {
            const next = chunks.shift();
            if (next === undefined) controller.close();
            else controller.enqueue(new TextEncoder().encode(next));
          },
        });
        const init: RequestInit & { duplex: "half" } = { method: "PUT", body: stream, duplex: "half" };
        const res = await fetch(`http://127.0.0.1:${server.port}/b`, init);
        assert.equal(await res.text(), "PUT /b 3000");
      });
    } finally {
      await server.close();
    }
  },
});

/** Send `count` chunks of a chunked body over a raw connection, ignoring a closed socket. */
async function sendChunked(port: number, count: number, options: { end: boolean }): Promise<string> {
  const conn = await Deno.connect({ port });
  const encoder = new TextEncoder();
  const chunk = "z".repeat(16 * 1024);
  const reading = closedByServer(conn);
  try {
    await conn.write(
      encoder.encode("POST /limit HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n"),
    );
    for (let i = 0; i < count; i++) {
      await conn.write(encoder.encode(`${chunk.length.toString(16)}\r\n${chunk}\r\n`));
    }
    if (options.end) await conn.write(encoder.encode("0\r\n\r\n"));
  } catch {
    // The server may close the connection while we still write: that is its right.
  }
  if (!options.end) {
    conn.close();
    return "";
  }
  const text = await reading;
  conn.close();
  return text;
}

Deno.test({
  name: "local HTTP front: a body the handler stops reading never throws outside the handler",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async (t) => {
    const seen: string[] = [];
    // Reads past 40 KiB, then cancels without waiting (as readBody does at a function's body
    // limit) and answers 413, through a second Request as the gateway hands it on.
    const server = await serveHttp(
      { port: 0, hostname: "127.0.0.1", timeouts: { headers: 1_000, keepAlive: 300, idle: 2_000 } },
      async (outer) => {
        const init: RequestInit & { duplex: "half" } = { method: "POST", body: outer.body, duplex: "half" };
        const req = new Request(outer.url, init);
        const reader = req.body!.getReader();
        let total = 0;
        try {
          while (total <= 40 * 1024) {
            const { done, value } = await reader.read();
            if (done) break;
            total += value.byteLength;
          }
          reader.cancel().catch(() => {});
          return new Response("too large", { status: 413 });
        } catch (error) {
          seen.push(String(error));
          return new Response("client went away", { status: 400 });
        } finally {
          reader.releaseLock();
        }
      },
    );
    try {
      await t.step("a chunked body that keeps arriving after the cancel (50 times)", async () => {
        for (let i = 0; i < 200; i++) {
          const text = await sendChunked(server.port, 64, { end: true });
          assert.match(text, /^HTTP\/1\.1 413 /, `round ${i}`);
        }
      });

      await t.step("a client that goes away in the middle of its body (50 times)", async () => {
        for (let i = 0; i < 50; i++) await sendChunked(server.port, 3, { end: false });
        // The server still answers afterwards: nothing escaped and ended it.
        const text = await sendChunked(server.port, 4, { end: true });
        assert.match(text, /^HTTP\/1\.1 413 /);
      });
    } finally {
      await server.close();
    }
  },
});
