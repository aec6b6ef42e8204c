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
