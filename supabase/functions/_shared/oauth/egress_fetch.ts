// How a refresh reaches a custom provider's token endpoint: a URL the user wrote, so a way into
// our own network unless checked like an SMTP host. The URL's host is resolved once and checked
// by the egress policy; the request then goes to that checked address and nowhere else (node:https
// given the address as its host does no DNS of its own, so a second answer cannot swap in another
// one), with TLS verified against the URL's host name. HTTPS only; no redirect is followed (a 3xx
// comes back as a response, which the refresh refuses); the answer is capped in size and time.
import { rootCertificates } from "node:tls";
import { request } from "node:https";
import type { IncomingMessage } from "node:http";
import { ApiError } from "../http.ts";
import { type EgressPolicy, type ResolvedEndpoint, type Resolver, resolveTokenUrl } from "../smtp/egress.ts";
import { OAuthError, type OAuthFailureCode, type TokenFetch } from "./refresh.ts";

/** A token endpoint's answer is a small JSON object; anything bigger is not one. */
export const MAX_TOKEN_RESPONSE_BYTES = 64 * 1024;

export interface EgressFetchOptions {
  /** The deployment's egress policy (the same as for SMTP hosts). */
  policy: EgressPolicy;
  /** The resolver (the system's, cached, by default; a scripted one in tests). */
  resolve?: Resolver;
  /** Extra CA certificates (PEM) to trust besides the system's (MAILROOM_OAUTH_CA_CERTS). */
  caCerts?: string;
  /** Default 64 KiB. */
  maxResponseBytes?: number;
  /** Resolution's timeout, and the request's when the caller gives no signal (default 10 s). */
  timeoutMs?: number;
}

/** Codes of the egress policy's refusals, as a refresh reports them. */
const REFUSALS: Record<string, OAuthFailureCode> = {
  oauth_token_url_invalid: "oauth_token_url_invalid",
  oauth_token_url_forbidden: "oauth_token_url_forbidden",
  oauth_token_url_port_not_allowed: "oauth_token_url_port_not_allowed",
};

/**
 * A `fetch` for a custom provider's token endpoint (oauth4webapi's `customFetch`), checked by the
 * egress policy and pinned to the address it checked.
 *
 * @throws (from the fetch) OAuthError `oauth_token_url_forbidden` (and `_invalid`,
 *   `_port_not_allowed`), not retryable; a retryable `oauth_token_refresh_failed` when the name
 *   does not resolve; an Error saying why the endpoint could not be reached.
 * @example
 * ```ts
 * await refreshAccessToken(request, { fetch: egressCheckedFetch({ policy: ctx.config.egress }), userEndpoint: true });
 * ```
 */
export function egressCheckedFetch(options: EgressFetchOptions): TokenFetch {
  return async (url, init) => {
    let endpoint: ResolvedEndpoint;
    try {
      endpoint = await resolveTokenUrl(options.policy, url, {
        resolve: options.resolve,
        timeoutMs: options.timeoutMs,
      });
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      const refusal = REFUSALS[error.code];
      // A name that does not resolve now may resolve later: tried again, the mailbox not paused.
      if (!refusal) throw new OAuthError("oauth_token_refresh_failed", error.message, true);
      throw new OAuthError(refusal, error.message, false);
    }
    return await pinnedRequest(endpoint, init, options);
  };
}

/** Where a request went, for error messages: the name and the address it was pinned to. */
function destination(endpoint: ResolvedEndpoint): string {
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
function pinnedRequest(
  endpoint: ResolvedEndpoint,
  init: Parameters<TokenFetch>[1],
  options: EgressFetchOptions,
): Promise<Response> {
  const maxBytes = options.maxResponseBytes ?? MAX_TOKEN_RESPONSE_BYTES;
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
        return fail(new Error(`${destination(endpoint)}: the answer is larger than ${maxBytes} bytes`));
      }
      const chunks: Uint8Array[] = [];
      let received = 0;
      res.on("data", (chunk: Uint8Array) => {
        received += chunk.byteLength;
        if (received > maxBytes) {
          return fail(new Error(`${destination(endpoint)}: the answer is larger than ${maxBytes} bytes`));
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
