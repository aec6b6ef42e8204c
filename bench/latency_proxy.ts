// A TCP proxy that puts a server "far away": each direction is delayed by half the round trip,
// so the TCP handshake, TLS, the SMTP greeting and every command pay real round trips, while
// bytes keep their order and a slow reader still slows the writer (backpressure).
//
// The handshake is modelled too: the client's connect to the proxy completes at once on
// loopback, so the proxy holds the connection as a real one would be held. A connection opened
// at t0 reaches the server at t0 + 1.5 RTT (when the client's ACK would arrive), and what the
// client sends before t0 + RTT (when its connect would have returned) leaves at t0 + RTT.
//
// It also counts flights: a flight is a run of bytes in one direction with none the other way
// in between. Each server flight is something the client waited for, so a connection's round
// trips are its server flights plus one for the TCP handshake.

/** Counters of everything the proxy has carried so far. */
export interface LatencyCounters {
  /** Connections accepted (each one TCP handshake, one round trip). */
  connections: number;
  /** Runs of bytes from the server to the client, each one waited for by the client. */
  serverFlights: number;
  /** Runs of bytes from the client to the server. */
  clientFlights: number;
  /** Bytes carried client to server. */
  bytesUp: number;
  /** Bytes carried server to client. */
  bytesDown: number;
}

/** A running proxy. */
export interface LatencyProxy {
  /** Where clients connect (127.0.0.1). */
  port: number;
  /** The round trip it adds, in milliseconds. */
  rttMs: number;
  /** A snapshot of the counters. */
  counters(): LatencyCounters;
  /** Stop listening and close every connection. */
  close(): Promise<void>;
}

/** Options for {@linkcode startLatencyProxy}. */
export interface LatencyProxyOptions {
  /** The server's port on `targetHost`. */
  targetPort: number;
  /** The server's address (default 127.0.0.1). */
  targetHost?: string;
  /** The round trip to add, in milliseconds; each direction gets half. */
  rttMs: number;
  /** Bytes held in one direction before the proxy stops reading that side (default 256 KiB). */
  highWaterBytes?: number;
}

/**
 * The round trips a run of sends cost, from counters taken before and after it: one per new
 * connection (the TCP handshake) and one per server flight.
 *
 * @example
 * ```ts
 * const before = proxy.counters();
 * await transport.sendMail(message);
 * console.log(roundTrips(before, proxy.counters()));
 * ```
 */
export function roundTrips(before: LatencyCounters, after: LatencyCounters): number {
  return (after.connections - before.connections) + (after.serverFlights - before.serverFlights);
}

/**
 * Start a proxy on a random loopback port that forwards to `targetPort` with `rttMs` added.
 *
 * @example
 * ```ts
 * const proxy = await startLatencyProxy({ targetPort: smtp.port, rttMs: 80 });
 * // connect to proxy.port instead of smtp.port
 * await proxy.close();
 * ```
 */
export function startLatencyProxy(options: LatencyProxyOptions): Promise<LatencyProxy> {
  const half = options.rttMs / 2;
  const highWater = options.highWaterBytes ?? 256 * 1024;
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const open = new Set<Deno.Conn>();
  const sessions = new Set<Promise<void>>();
  const counters: LatencyCounters = { connections: 0, serverFlights: 0, clientFlights: 0, bytesUp: 0, bytesDown: 0 };

  const serve = async (client: Deno.TcpConn) => {
    const t0 = performance.now();
    counters.connections++;
    open.add(client);
    let upstream: Deno.TcpConn | undefined;
    // The direction of the last bytes read on this connection, to count flights.
    let last: "up" | "down" | null = null;
    const saw = (direction: "up" | "down", bytes: number) => {
      if (direction === "up") counters.bytesUp += bytes;
      else counters.bytesDown += bytes;
      if (last === direction) return;
      last = direction;
      if (direction === "up") counters.clientFlights++;
      else counters.serverFlights++;
    };
    const closeBoth = () => {
      for (const conn of [client, upstream]) {
        if (!conn || !open.has(conn)) continue;
        open.delete(conn);
        try {
          conn.close();
        } catch {
          // already closed
        }
      }
    };
    try {
      await sleepUntil(t0 + 3 * half);
      upstream = await Deno.connect({ hostname: options.targetHost ?? "127.0.0.1", port: options.targetPort });
      open.add(upstream);
      if (!open.has(client)) return closeBoth();
      // Nagle would hold small writes back a round trip of its own: the delay is ours to add.
      client.setNoDelay(true);
      upstream.setNoDelay(true);
      const server = upstream;
      await Promise.all([
        pump(client, server, (read) => Math.max(read, t0 + 2 * half) + half, highWater, (n) => saw("up", n)),
        pump(server, client, (read) => read + half, highWater, (n) => saw("down", n)),
      ]);
    } catch {
      // a reset or a refused connect: whatever went wrong, both sides close
    } finally {
      closeBoth();
    }
  };

  (async () => {
    for await (const conn of listener) {
      const session = serve(conn);
      sessions.add(session);
      session.finally(() => sessions.delete(session));
    }
  })().catch(() => {});

  const { port } = listener.addr as Deno.NetAddr;
  return Promise.resolve({
    port,
    rttMs: options.rttMs,
    counters: () => ({ ...counters }),
    close: async () => {
      listener.close();
      for (const conn of open) {
        try {
          conn.close();
        } catch {
          // already closed
        }
      }
      open.clear();
      await Promise.allSettled([...sessions]);
    },
  });
}

/**
 * Carry `from`'s bytes to `to`, each chunk written when `due(readAt)` says. The end of `from`
 * becomes the end of `to` (half-close) at its due time; a failed write ends both directions.
 */
async function pump(
  from: Deno.Conn,
  to: Deno.Conn,
  due: (readAt: number) => number,
  highWater: number,
  onRead: (bytes: number) => void,
): Promise<void> {
  const queue: { at: number; bytes: Uint8Array | null }[] = [];
  let queued = 0;
  let wakeWriter: (() => void) | null = null;
  let wakeReader: (() => void) | null = null;
  let failed = false;

  const reader = async () => {
    while (!failed) {
      while (queued >= highWater && !failed) await new Promise<void>((resolve) => (wakeReader = resolve));
      const buffer = new Uint8Array(64 * 1024);
      let n: number | null;
      try {
        n = await from.read(buffer);
      } catch {
        n = null;
      }
      const at = due(performance.now());
      if (n === null) {
        queue.push({ at, bytes: null });
        wakeWriter?.();
        return;
      }
      onRead(n);
      queue.push({ at, bytes: buffer.subarray(0, n) });
      queued += n;
      wakeWriter?.();
    }
  };

  const writer = async () => {
    while (true) {
      while (queue.length === 0) await new Promise<void>((resolve) => (wakeWriter = resolve));
      wakeWriter = null;
      const item = queue.shift()!;
      await sleepUntil(item.at);
      if (item.bytes === null) {
        try {
          await to.closeWrite();
        } catch {
          // the other side is already gone
        }
        return;
      }
      try {
        await writeAll(to, item.bytes);
      } catch (error) {
        failed = true;
        wakeReader?.();
        throw error;
      }
      queued -= item.bytes.length;
      if (queued < highWater) {
        const wake = wakeReader;
        wakeReader = null;
        wake?.();
      }
    }
  };

  await Promise.all([reader(), writer()]);
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let written = 0;
  while (written < bytes.length) written += await conn.write(bytes.subarray(written));
}

function sleepUntil(at: number): Promise<void> {
  const wait = at - performance.now();
  if (wait <= 0) return Promise.resolve();
  return new Promise((resolve) => setTimeout(resolve, wait));
}
