// An attachment given by URL, fetched once when the send (or upload) is accepted. The URL is a
// way into our own network unless checked like an SMTP host: every hop (the URL and each
// redirect) is resolved once, checked by the egress policy and reached only at the address
// that was checked (egress/pinned_https.ts). HTTPS only, at most MAX_REDIRECTS redirects, the
// whole fetch within one deadline, the body cut off as soon as it passes the size limit.
import { ApiError } from "../http.ts";
import { destination, pinnedRequest, ResponseTooLarge } from "../egress/pinned_https.ts";
import { ATTACHMENT_URL, type EgressPolicy, resolveHttpsUrl, type Resolver } from "../smtp/egress.ts";

/** Redirects followed before the fetch is refused. */
export const MAX_REDIRECTS = 5;

/** A file fetched from a URL: its bytes, and what the server said about it. */
export interface FetchedFile {
  content: Uint8Array;
  /** The server's Content-Type, without parameters (lower case), if any. */
  contentType?: string;
  /** The name from Content-Disposition, else the last segment of the final URL's path. */
  filename?: string;
  /** The URL the file came from, after redirects. */
  finalUrl: string;
}

export interface UrlFetchOptions {
  policy: EgressPolicy;
  maxBytes: number;
  timeoutMs: number;
  /** Extra CA certificates (PEM) to trust besides the system's. */
  caCerts?: string;
  /** The resolver (the system's, cached, by default; a scripted one in tests). */
  resolve?: Resolver;
}

function failed(url: string, why: string, extra: Record<string, unknown> = {}): ApiError {
  return new ApiError(422, "attachment_url_failed", `Could not fetch ${url}: ${why}`, { url, ...extra });
}

/**
 * GET an HTTPS URL for an attachment, following redirects only where the egress policy allows.
 *
 * @throws ApiError 400 `attachment_url_invalid`, 422 `attachment_url_forbidden` (the URL or a
 *   redirect goes to a private, loopback or otherwise internal address), 422
 *   `attachment_url_port_not_allowed`, 502 `attachment_url_not_found` (the name does not
 *   resolve), 413 `attachment_too_large` (read no further than the limit), 422
 *   `attachment_url_failed` (not 2xx, too many redirects, TLS, timeout, connection).
 * @example
 * ```ts
 * const file = await fetchAttachmentUrl("https://example.com/report.pdf", { policy, maxBytes: 7 << 20, timeoutMs: 15_000 });
 * ```
 */
export async function fetchAttachmentUrl(input: string, options: UrlFetchOptions): Promise<FetchedFile> {
  const signal = AbortSignal.timeout(options.timeoutMs);
  let url = input;
  for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
    const endpoint = await resolveHttpsUrl(options.policy, ATTACHMENT_URL, url, {
      resolve: options.resolve,
      timeoutMs: options.timeoutMs,
    });
    let response: Response;
    try {
      response = await pinnedRequest(endpoint, {
        method: "GET",
        headers: { accept: "*/*", "user-agent": "mailroom-attachments" },
        signal,
      }, { maxResponseBytes: options.maxBytes, caCerts: options.caCerts });
    } catch (error) {
      if (error instanceof ResponseTooLarge) {
        throw new ApiError(
          413,
          "attachment_too_large",
          `The file at ${url} is larger than ${options.maxBytes} bytes`,
          { limit_bytes: options.maxBytes, url },
        );
      }
      if (signal.aborted) throw failed(url, `no complete answer within ${options.timeoutMs} ms`);
      throw failed(url, (error as Error).message.replace(`${destination(endpoint)}: `, ""));
    }
    if (response.status >= 300 && response.status < 400 && response.status !== 304) {
      const location = response.headers.get("location");
      if (!location) throw failed(url, `a ${response.status} redirect without a Location`);
      try {
        url = new URL(location, endpoint.url).href;
      } catch {
        throw failed(url, "a redirect to something that is not a URL");
      }
      continue;
    }
    if (response.status < 200 || response.status > 299) {
      throw failed(url, `the server answered ${response.status}`, { status: response.status });
    }
    const content = new Uint8Array(await response.arrayBuffer());
    const type = response.headers.get("content-type")?.split(";")[0].trim().toLowerCase();
    const filename = dispositionName(response.headers.get("content-disposition")) ?? lastSegment(endpoint.url);
    return {
      content,
      ...(type ? { contentType: type } : {}),
      ...(filename ? { filename } : {}),
      finalUrl: endpoint.url.href,
    };
  }
  throw failed(input, `more than ${MAX_REDIRECTS} redirects`);
}

/** The file name a Content-Disposition gives (`filename*=UTF-8''...` first), if any. */
function dispositionName(header: string | null): string | undefined {
  if (!header) return undefined;
  const extended = /filename\*\s*=\s*(?:utf-8|UTF-8)''([^;]+)/.exec(header);
  if (extended) {
    try {
      return decodeURIComponent(extended[1].trim());
    } catch {
      // Not percent-encoded properly: the plain form, if any.
    }
  }
  const plain = /filename\s*=\s*(?:"([^"]*)"|([^;\s]+))/.exec(header);
  const name = plain?.[1] ?? plain?.[2];
  return name ? name.trim() : undefined;
}

function lastSegment(url: URL): string | undefined {
  const segment = url.pathname.split("/").pop();
  if (!segment) return undefined;
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}
