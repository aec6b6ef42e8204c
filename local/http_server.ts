// A web-standard handler (Request -> Response) served over node:http, because Deno.serve
// cannot time out idle or slow connections and node:http can: the local gateway closes
// connections the way the platform's front does instead of holding them forever.
import http from "node:http";

/** Connection timeouts, in milliseconds. */
export interface Timeouts {
  headers: number;
  keepAlive: number;
  idle: number;
}

/** The defaults: what the platform's front roughly does. */
export const TIMEOUTS: Readonly<Timeouts> = {
  /** The request line and headers must arrive within this time (slow-header clients). */
  headers: 10_000,
  /** An idle keep-alive connection is closed after this long without a new request. */
  keepAlive: 5_000,
  /** A connection with no bytes in either direction is closed after this long (the platform's idle timeout). */
  idle: 150_000,
};

/** A running server. */
export interface HttpServer {
  port: number;
  close(): Promise<void>;
}

/** Serve `handler` on `hostname:port` (0 for any free port). */
export async function serveHttp(
  options: { port: number; hostname: string; timeouts?: Partial<Timeouts> },
  handler: (req: Request) => Response | Promise<Response>,
): Promise<HttpServer> {
  const server = http.createServer(async (req, res) => {
    try {
      const response = await handler(toRequest(req, options.hostname));
      res.writeHead(response.status, [...response.headers].flat());
      if (response.body) {
        for await (const chunk of response.body) res.write(chunk);
      }
      res.end();
    } catch {
      if (!res.headersSent) res.writeHead(500, { "content-type": "application/json" });
      res.end(JSON.stringify({ error: { code: "internal_error", message: "Gateway error" } }));
    }
  });
  const timeouts = { ...TIMEOUTS, ...options.timeouts };
  server.headersTimeout = timeouts.headers;
  // Bodies stream (the functions stop reading at their limit), so no total request deadline.
  server.requestTimeout = 0;
  server.keepAliveTimeout = timeouts.keepAlive;
  server.timeout = timeouts.idle;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port, options.hostname, () => resolve());
  });
  const { port } = server.address() as { port: number };
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

function toRequest(req: http.IncomingMessage, hostname: string): Request {
  const headers = new Headers();
  for (const [name, value] of Object.entries(req.headers)) {
    if (value !== undefined) headers.set(name, Array.isArray(value) ? value.join(", ") : value);
  }
  const hasBody = req.method !== "GET" && req.method !== "HEAD";
  const init: RequestInit & { duplex?: "half" } = {
    method: req.method,
    headers,
    body: hasBody ? bodyOf(req) : null,
    duplex: "half",
  };
  return new Request(`http://${req.headers.host ?? hostname}${req.url ?? "/"}`, init);
}

/**
 * A request's body as a web stream, pulled as the handler reads it. Written by hand instead of
 * `Readable.toWeb(req)`: Deno's adapter enqueues into a controller the reader has already
 * cancelled when a chunked body keeps arriving after a function stopped reading it (at its
 * body limit), and that TypeError escapes every handler and ends the process. Here every
 * callback checks whether the stream is still open, so nothing can throw outside the handler,
 * and a cancelled body is read on and dropped (the answer still reaches the client; the
 * connection's idle timeout bounds a client that never stops).
 */
export function bodyOf(req: http.IncomingMessage): ReadableStream<Uint8Array> {
  let open = true;
  const stop = () => {
    open = false;
    req.removeAllListeners("data");
    req.on("data", () => {});
    req.resume();
  };
  return new ReadableStream<Uint8Array>({
    start(controller) {
      req.pause();
      req.on("data", (chunk: Uint8Array | string) => {
        if (!open) return;
        const bytes = typeof chunk === "string" ? new TextEncoder().encode(chunk) : new Uint8Array(chunk);
        controller.enqueue(bytes);
        if ((controller.desiredSize ?? 0) <= 0) req.pause();
      });
      req.on("end", () => {
        if (!open) return;
        open = false;
        controller.close();
      });
      req.on("error", (error) => {
        if (!open) return;
        open = false;
        controller.error(error);
      });
      // Closed before the end: the client went away mid-body.
      req.on("close", () => {
        if (!open) return;
        open = false;
        controller.error(new Error("The client closed the request before its body ended"));
      });
    },
    pull() {
      if (open) req.resume();
    },
    cancel() {
      stop();
    },
  }, { highWaterMark: 256 * 1024, size: (chunk) => chunk.byteLength });
}
