// A web-standard handler (Request -> Response) served over node:http, because Deno.serve
// cannot time out idle or slow connections and node:http can: the local gateway closes
// connections the way the platform's front does instead of holding them forever.
import http from "node:http";
import { Readable } from "node:stream";

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
    body: hasBody ? Readable.toWeb(req) as ReadableStream<Uint8Array> : null,
    duplex: "half",
  };
  return new Request(`http://${req.headers.host ?? hostname}${req.url ?? "/"}`, init);
}
