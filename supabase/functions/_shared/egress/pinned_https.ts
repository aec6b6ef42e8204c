// One HTTPS request to an address the egress policy checked (smtp/egress.ts), and nowhere else:
// node:https given the address as its host does no DNS of its own, so a second answer cannot
// swap in another one; TLS is verified against the URL's host name. No redirect is followed (a
// 3xx comes back as a response, for the caller to check where it points); the answer is capped
// in size and time. Used for custom OAuth token endpoints and attachments given by URL.
import { rootCertificates } from "node:tls";
import { request } from "node:https";
import type { IncomingMessage } from "node:http";
import type { ResolvedEndpoint } from "../smtp/egress.ts";

/** The request: method, headers, body, and the signal that ends it. */
export interface PinnedInit {
  method: string;
  headers?: Record<string, string>;
  body?: string | URLSearchParams | null;
  signal?: AbortSignal | null;
}

/** Limits and trust of a pinned request. */
export interface PinnedOptions {
  /** Largest answer read; a larger one is refused with {@linkcode ResponseTooLarge}. */
  maxResponseBytes: number;
  /** The request's time when `init.signal` is absent (default 10 s). */
  timeoutMs?: number;
  /** Extra CA certificates (PEM) to trust besides the system's. */
  caCerts?: string;
}

/** The answer passed `maxResponseBytes` (declared or while it was read: reading then stopped). */
export class ResponseTooLarge extends Error {
  override name = "ResponseTooLarge";
  constructor(readonly endpoint: ResolvedEndpoint, readonly limitBytes: number) {
    super(`${destination(endpoint)}: the answer is larger than ${limitBytes} bytes`);
  }
}

/** Where a request went, for error messages: the name and the address it was pinned to. */
export function destination(endpoint: ResolvedEndpoint): string {
  const address = endpoint.address.includes(":") ? `[${endpoint.address}]` : endpoint.address;
  return `${endpoint.url.hostname} (${address}:${endpoint.port})`;
}

/** Certificate failures, named by their code (the message may quote the certificate). */
const TLS_CODES = /^(ERR_TLS_|CERT_|UNABLE_TO_|DEPTH_ZERO_|SELF_SIGNED_|ERR_SSL_)/;

/** An error for a request that got no usable answer: where it went and why, never what came back. */
function unreachable(endpoint: ResolvedEndpoint, error: unknown): Error {
  const code = (error as { code?: unknown })?.code;
  const why = typeof code !== "string"
    ? "the connection failed"
    : TLS_CODES.test(code)
    ? `its TLS certificate was refused (${code})`
    : `the connection failed (${code})`;
  return new Error(`${destination(endpoint)}: ${why}`);
}

/**
 * One HTTPS request to the checked address, with the URL's host name as SNI, certificate name
 * and Host header. The whole answer is read (up to the cap) before it is handed back.
 */
export function pinnedRequest(
  endpoint: ResolvedEndpoint,
  init: PinnedInit,
  options: PinnedOptions,
): Promise<Response> {
  const maxBytes = options.maxResponseBytes;
  const body = init.body == null ? undefined : String(init.body);
  const headers: Record<string, string> = { ...init.headers, host: endpoint.url.host };
  if (body !== undefined) headers["content-length"] = String(new TextEncoder().encode(body).byteLength);
  const signal = init.signal ?? AbortSignal.timeout(options.timeoutMs ?? 10_000);

  return new Promise<Response>((resolve, reject) => {
    let settled = false;
    const settle = (outcome: () => void) => {
      if (settled) return;
      settled = true;
      signal.removeEventListener("abort", onAbort);
      outcome();
    };
    const fail = (error: Error) => {
      settle(() => reject(error));
      req.destroy();
    };
    const onAbort = () => fail(signal.reason instanceof Error ? signal.reason : new Error("aborted"));

    const req = request({
      // The checked address, not the name: no lookup happens here, so no other answer is used.
      host: endpoint.address,
      port: endpoint.port,
      // IP-literal URLs have no name to send; their certificate is checked against the address.
      ...(endpoint.servername ? { servername: endpoint.servername } : {}),
      path: `${endpoint.url.pathname}${endpoint.url.search}`,
      method: init.method,
      headers,
      agent: false,
      rejectUnauthorized: true,
      minVersion: "TLSv1.2",
      // Extra CAs add to the system's: `ca` alone would replace them.
      ...(options.caCerts ? { ca: [...rootCertificates, options.caCerts] } : {}),
    }, (res: IncomingMessage) => {
      const declared = Number(res.headers["content-length"]);
      if (Number.isFinite(declared) && declared > maxBytes) {
        return fail(new ResponseTooLarge(endpoint, maxBytes));
      }
      const chunks: Uint8Array[] = [];
      let received = 0;
      res.on("data", (chunk: Uint8Array) => {
        received += chunk.byteLength;
        if (received > maxBytes) {
          return fail(new ResponseTooLarge(endpoint, maxBytes));
        }
        chunks.push(chunk);
      });
      res.on("error", (error) => fail(unreachable(endpoint, error)));
      res.on("end", () => {
        const status = res.statusCode ?? 0;
        if (status < 200 || status > 599) {
          return fail(new Error(`${destination(endpoint)}: answered with status ${status}`));
        }
        const bytes = new Uint8Array(received);
        let offset = 0;
        for (const chunk of chunks) {
          bytes.set(chunk, offset);
          offset += chunk.byteLength;
        }
        const nullBody = status === 204 || status === 205 || status === 304;
        settle(() => resolve(new Response(nullBody ? null : bytes, { status, headers: responseHeaders(res) })));
      });
    });
    if (signal.aborted) return onAbort();
    signal.addEventListener("abort", onAbort, { once: true });
    req.on("error", (error) => fail(unreachable(endpoint, error)));
    req.end(body);
  });
}

/** Node's header object as web Headers; values a Headers object cannot hold are left out. */
function responseHeaders(res: IncomingMessage): Headers {
  const headers = new Headers();
  for (const [name, value] of Object.entries(res.headers)) {
    for (const one of Array.isArray(value) ? value : value === undefined ? [] : [value]) {
      try {
        headers.append(name, one);
      } catch {
        // An invalid header value: not one the refresh reads.
      }
    }
  }
  return headers;
}
