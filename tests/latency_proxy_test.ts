// The bench's latency proxy over real sockets: what it adds is at least the round trip asked
// for, bytes arrive intact and in order, a close on either side reaches the other, and the
// round trips it counts are the ones a client waited for. Only lower bounds on time.
import assert from "node:assert/strict";
import { roundTrips, startLatencyProxy } from "../bench/latency_proxy.ts";

/** A loopback server; `onConn` handles each connection. */
function listen(onConn: (conn: Deno.Conn) => Promise<void>) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const handlers: Promise<void>[] = [];
  (async () => {
    for await (const conn of listener) handlers.push(onConn(conn).catch(() => {}));
  })().catch(() => {});
  return {
    port: (listener.addr as Deno.NetAddr).port,
    close: async () => {
      listener.close();
      await Promise.all(handlers);
    },
  };
}

/** Echo every byte back until the client ends, then close. */
const echo = async (conn: Deno.Conn) => {
  const buffer = new Uint8Array(16 * 1024);
  try {
    for (let n = await conn.read(buffer); n !== null; n = await conn.read(buffer)) {
      let written = 0;
      while (written < n) written += await conn.write(buffer.subarray(written, n));
    }
  } finally {
    conn.close();
  }
};

async function readExactly(conn: Deno.Conn, length: number): Promise<Uint8Array> {
  const out = new Uint8Array(length);
  let filled = 0;
  while (filled < length) {
    const n = await conn.read(out.subarray(filled));
    if (n === null) throw new Error(`the connection ended after ${filled} of ${length} bytes`);
    filled += n;
  }
  return out;
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let written = 0;
  while (written < bytes.length) written += await conn.write(bytes.subarray(written));
}

Deno.test("latency proxy", async (t) => {
  await t.step("an echo through it takes at least the round trip, the first one the handshake too", async () => {
    const server = listen(echo);
    const proxy = await startLatencyProxy({ targetPort: server.port, rttMs: 60 });
    try {
      const started = performance.now();
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: proxy.port });
      await writeAll(conn, new TextEncoder().encode("ping"));
      assert.equal(new TextDecoder().decode(await readExactly(conn, 4)), "ping");
      const first = performance.now() - started;
      // TCP handshake (one round trip) then the echo (another).
      assert.ok(first >= 2 * 60 - 2, `first echo after ${first.toFixed(1)} ms`);
      const again = performance.now();
      await writeAll(conn, new TextEncoder().encode("pong"));
      assert.equal(new TextDecoder().decode(await readExactly(conn, 4)), "pong");
      const second = performance.now() - again;
      assert.ok(second >= 60 - 2, `second echo after ${second.toFixed(1)} ms`);
      conn.close();
    } finally {
      await proxy.close();
      await server.close();
    }
  });

  await t.step("carries a megabyte intact and in order, through a small buffer", async () => {
    const server = listen(echo);
    const proxy = await startLatencyProxy({ targetPort: server.port, rttMs: 10, highWaterBytes: 8 * 1024 });
    try {
      const payload = new Uint8Array(1024 * 1024);
      for (let offset = 0; offset < payload.length; offset += 65536) {
        crypto.getRandomValues(payload.subarray(offset, offset + 65536));
      }
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: proxy.port });
      const [, received] = await Promise.all([
        (async () => {
          for (let offset = 0; offset < payload.length; offset += 1000) {
            await writeAll(conn, payload.subarray(offset, offset + 1000));
          }
        })(),
        readExactly(conn, payload.length),
      ]);
      assert.deepEqual(received, payload);
      conn.close();
    } finally {
      await proxy.close();
      await server.close();
    }
  });

  await t.step("a client that closes closes the server's side", async () => {
    let serverSawEnd!: () => void;
    const ended = new Promise<void>((resolve) => (serverSawEnd = resolve));
    const server = listen(async (conn) => {
      const buffer = new Uint8Array(1024);
      while (await conn.read(buffer) !== null) { /* drain */ }
      serverSawEnd();
      conn.close();
    });
    const proxy = await startLatencyProxy({ targetPort: server.port, rttMs: 20 });
    try {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: proxy.port });
      await writeAll(conn, new TextEncoder().encode("bye"));
      conn.close();
      await ended;
    } finally {
      await proxy.close();
      await server.close();
    }
  });

  await t.step("a server that closes closes the client's side", async () => {
    const server = listen(async (conn) => {
      await writeAll(conn, new TextEncoder().encode("421 closing\r\n"));
      conn.close();
    });
    const proxy = await startLatencyProxy({ targetPort: server.port, rttMs: 20 });
    try {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: proxy.port });
      assert.equal(new TextDecoder().decode(await readExactly(conn, 13)), "421 closing\r\n");
      assert.equal(await conn.read(new Uint8Array(16)), null, "the client reads the end");
      conn.close();
    } finally {
      await proxy.close();
      await server.close();
    }
  });

  await t.step("counts the handshake and each reply waited for as round trips", async () => {
    const server = listen(echo);
    const proxy = await startLatencyProxy({ targetPort: server.port, rttMs: 4 });
    try {
      const before = proxy.counters();
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: proxy.port });
      for (const word of ["one", "two", "six"]) {
        await writeAll(conn, new TextEncoder().encode(word));
        await readExactly(conn, 3);
      }
      const after = proxy.counters();
      assert.equal(roundTrips(before, after), 4, JSON.stringify(after));
      assert.equal(after.bytesUp, 9);
      assert.equal(after.bytesDown, 9);
      conn.close();
    } finally {
      await proxy.close();
      await server.close();
    }
  });
});
