/**
 * A small web inbox over the SMTP catcher's store, so mail sent through the local stack can
 * be read in a browser, and a JSON API over the same store for scripts and tests. Message HTML
 * is untrusted: it is shown only inside a sandboxed iframe, under a CSP that allows no
 * scripts at all; the list page runs one same-origin script and nothing inline. It answers only
 * to loopback host names, so a page that rebinds its own name to 127.0.0.1 (DNS rebinding)
 * cannot use it as same-origin.
 *
 * @module
 */

import { serveHttp } from "./http_server.ts";
import { type CaughtMessage, type MessageStore, rawBytes } from "./smtp_catcher.ts";
import { addressText, InvalidCursor, MAX_PAGE_SIZE, MessageIndex, parseMessage } from "./inbox_index.ts";
import { listPage, messagePage, page } from "./inbox_pages.ts";

export type { MessagePage, MessageSummary } from "./inbox_index.ts";

/** Options for {@linkcode startInbox}. */
export interface InboxOptions {
  /** Port to listen on; 0 picks a free one. */
  port: number;
  /** Interface to bind; loopback by default. A specific address is also accepted as a Host name. */
  host?: string;
  /** The messages to show. */
  store: MessageStore;
}

/** A running inbox. */
export interface Inbox {
  /** The port it listens on. */
  port: number;
  /** Stops the server. */
  close(): Promise<void>;
}

/**
 * The policy of every page that shows message content: no scripts, no remote loads (tracking
 * pixels included), styles inline, images only as data: URLs (mailparser inlines cid: images
 * that way).
 */
export const INBOX_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-src 'self'; " +
  "base-uri 'none'; form-action 'none'; frame-ancestors 'self'";

/** The list page's policy: the same, plus its one same-origin script and its calls to the JSON API. */
export const INBOX_LIST_CSP = "default-src 'none'; script-src 'self'; connect-src 'self'; " +
  "style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'self'";

/** Attachments are downloaded, never rendered; should a browser render one anyway, it runs sandboxed. */
const ATTACHMENT_CSP = "default-src 'none'; sandbox";

const CLIENT_SCRIPT = new URL("./inbox_client.js", import.meta.url);

/**
 * Serves the inbox at `http://host:port/`.
 *
 * @example
 * ```ts
 * const store = new MessageStore({ dir: ".local/mail" });
 * const inbox = await startInbox({ port: 54324, store });
 * // browse http://127.0.0.1:54324/
 * await inbox.close();
 * ```
 */
export async function startInbox(options: InboxOptions): Promise<Inbox> {
  const handler = createInboxHandler(options.store, { hosts: hostNamesOf(options.host) });
  // The same front as the gateway, so idle and slow connections are closed here too.
  const server = await serveHttp({ port: options.port, hostname: options.host ?? "127.0.0.1" }, handler);
  return { port: server.port, close: server.close };
}

/**
 * The inbox as a fetch handler, for mounting elsewhere or testing without a server.
 *
 * Pages: `GET /`, `GET /messages/:id`, `GET /messages/:id/raw`, `GET /messages/:id/attachments/:n`.
 * JSON API: `GET /api/messages?q=&limit=&cursor=`, `DELETE /api/messages`,
 * `GET /api/messages/:id`, `DELETE /api/messages/:id`, `GET /api/version`. Deleting takes the
 * DELETE method only: a page on another origin cannot send one without a CORS preflight, which
 * this server never grants. A request whose Host is not `127.0.0.1`, `localhost` or `[::1]` (any
 * port), nor one of `hosts`, is refused with 421 `host_not_allowed`: without that, a page whose
 * name an attacker re-points at 127.0.0.1 would be same-origin and need no preflight.
 *
 * @example
 * ```ts
 * const handler = createInboxHandler(store);
 * const response = await handler(new Request("http://127.0.0.1:54324/api/messages?q=invoice"));
 * ```
 */
export function createInboxHandler(
  store: MessageStore,
  options: { hosts?: string[] } = {},
): (request: Request) => Promise<Response> {
  const index = new MessageIndex(store);
  const allowed = new Set([...LOOPBACK_NAMES, ...(options.hosts ?? []).map((h) => h.toLowerCase())]);
  return async (request) => {
    const url = new URL(request.url);
    const host = hostNameOf(request, url);
    if (host === undefined || !allowed.has(host)) {
      return apiError(421, "host_not_allowed", "This inbox answers only at 127.0.0.1, localhost or [::1]");
    }
    if (url.pathname.startsWith("/api/")) return await api(store, index, request, url);
    if (request.method !== "GET") return methodNotAllowed("GET");
    return await pages(store, url.pathname);
  };
}

/** The names a loopback-bound inbox is reached by, as URL hostnames (IPv6 in brackets). */
export const LOOPBACK_NAMES = ["127.0.0.1", "localhost", "[::1]"];

/** The bind address as an accepted Host name, unless it is loopback already or a wildcard. */
function hostNamesOf(bind: string | undefined): string[] {
  if (!bind || bind === "0.0.0.0" || bind === "::") return [];
  return [bind.includes(":") && !bind.startsWith("[") ? `[${bind}]` : bind];
}

/** The request's Host name without its port, lower-cased; undefined when it does not parse. */
export function hostNameOf(request: Request, url: URL): string | undefined {
  const header = request.headers.get("host");
  if (header === null) return url.hostname;
  try {
    const parsed = new URL(`http://${header}/`);
    // Nothing but a name and a port: `127.0.0.1@evil.example` or one with a path is not a Host.
    const nameAndPort = !parsed.username && !parsed.password && parsed.pathname === "/" && !parsed.search &&
      !parsed.hash;
    return nameAndPort ? parsed.hostname : undefined;
  } catch {
    return undefined;
  }
}

async function pages(store: MessageStore, pathname: string): Promise<Response> {
  if (pathname === "/") return html(listPage(), 200, INBOX_LIST_CSP);
  if (pathname === "/inbox.js") {
    return new Response(await Deno.readFile(CLIENT_SCRIPT), {
      headers: { ...BASE_HEADERS, "content-type": "text/javascript; charset=utf-8" },
    });
  }
  const match = pathname.match(/^\/messages\/([A-Za-z0-9-]+)(\/raw|\/attachments\/(\d{1,4}))?$/);
  const message = match ? store.get(match[1]) : undefined;
  if (!match || !message) return html(page("Not found", "<p>No such message.</p>"), 404);
  if (match[2] === "/raw") {
    return new Response(rawBytes(message), {
      headers: {
        ...BASE_HEADERS,
        "content-type": `text/plain; charset=${message.rawEncoding === "utf8" ? "utf-8" : "iso-8859-1"}`,
      },
    });
  }
  const mail = await parseMessage(message);
  if (match[3] === undefined) return html(messagePage(message, mail));
  const attachment = mail.attachments[Number(match[3])];
  if (!attachment) return html(page("Not found", "<p>No such attachment.</p>"), 404);
  return new Response(new Uint8Array(attachment.content), {
    headers: {
      ...BASE_HEADERS,
      "content-security-policy": ATTACHMENT_CSP,
      "content-type": safeContentType(attachment.contentType),
      "content-disposition": contentDisposition(attachment.filename ?? "attachment"),
    },
  });
}

async function api(store: MessageStore, index: MessageIndex, request: Request, url: URL): Promise<Response> {
  const method = request.method;
  if (url.pathname === "/api/version") {
    if (method !== "GET") return apiMethodNotAllowed("GET");
    return json({ version: store.version, total: store.size });
  }
  if (url.pathname === "/api/messages") {
    if (method === "DELETE") {
      store.clear();
      return new Response(null, { status: 204, headers: BASE_HEADERS });
    }
    if (method !== "GET") return apiMethodNotAllowed("GET, DELETE");
    return await listMessages(store, index, url.searchParams);
  }
  const match = url.pathname.match(/^\/api\/messages\/([A-Za-z0-9-]+)$/);
  if (!match) return apiError(404, "route_not_found", `No route ${url.pathname}`);
  const message = store.get(match[1]);
  if (!message) return apiError(404, "message_not_found", `No message ${match[1]}`);
  if (method === "DELETE") {
    store.remove(message.id);
    return new Response(null, { status: 204, headers: BASE_HEADERS });
  }
  if (method !== "GET") return apiMethodNotAllowed("GET, DELETE");
  return json(await messageDetail(message));
}

async function listMessages(store: MessageStore, index: MessageIndex, params: URLSearchParams): Promise<Response> {
  const limitText = params.get("limit");
  const limit = limitText === null ? undefined : Number(limitText);
  if (limit !== undefined && !(Number.isInteger(limit) && limit >= 1 && limit <= MAX_PAGE_SIZE)) {
    return apiError(400, "invalid_limit", `limit must be an integer from 1 to ${MAX_PAGE_SIZE}`);
  }
  // Read before the page is built: a change while it is built shows on the next poll.
  const version = store.version;
  try {
    const result = await index.page({
      q: params.get("q") ?? undefined,
      limit,
      cursor: params.get("cursor") ?? undefined,
    });
    return json({ ...result, version });
  } catch (error) {
    if (error instanceof InvalidCursor) return apiError(400, "invalid_cursor", error.message);
    throw error;
  }
}

/** What `GET /api/messages/:id` returns. */
export interface MessageDetail {
  id: string;
  receivedAt: string;
  envelope: CaughtMessage["envelope"];
  subject: string;
  from: string;
  to: string;
  text: string | null;
  html: string | null;
  attachments: Array<{ filename: string | null; contentType: string; size: number; url: string }>;
}

async function messageDetail(message: CaughtMessage): Promise<MessageDetail> {
  const mail = await parseMessage(message);
  return {
    id: message.id,
    receivedAt: message.receivedAt,
    envelope: message.envelope,
    subject: mail.subject ?? "",
    from: addressText(mail.from),
    to: addressText(mail.to),
    text: mail.text ?? null,
    html: mail.html || null,
    attachments: mail.attachments.map((a, i) => ({
      filename: a.filename ?? null,
      contentType: a.contentType,
      size: a.size,
      url: `/messages/${message.id}/attachments/${i}`,
    })),
  };
}

/**
 * A `Content-Disposition: attachment` header for `filename` (RFC 6266): an ASCII `filename`
 * for old clients and the exact name as UTF-8 in `filename*` (RFC 8187).
 *
 * @example
 * ```ts
 * contentDisposition("résumé.pdf"); // attachment; filename="r_sum_.pdf"; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf
 * ```
 */
export function contentDisposition(filename: string): string {
  const fallback = filename.replace(/[^\x20-\x7e]|["\\]/g, "_");
  const encoded = encodeURIComponent(filename).replace(
    /['()*]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  );
  return `attachment; filename="${fallback}"; filename*=UTF-8''${encoded}`;
}

/** The attachment's declared type when it is a plain `type/subtype`, else octet-stream. */
function safeContentType(type: string): string {
  return /^[a-z0-9!#$&^_.+-]+\/[a-z0-9!#$&^_.+-]+$/i.test(type) ? type.toLowerCase() : "application/octet-stream";
}

const BASE_HEADERS: Record<string, string> = {
  "content-security-policy": INBOX_CSP,
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "cache-control": "no-store",
};

function json(body: unknown, status = 200): Response {
  return Response.json(body, { status, headers: BASE_HEADERS });
}

function apiError(status: number, code: string, message: string, headers: Record<string, string> = {}): Response {
  return Response.json({ error: { code, message } }, { status, headers: { ...BASE_HEADERS, ...headers } });
}

function apiMethodNotAllowed(allow: string): Response {
  return apiError(405, "method_not_allowed", `Use ${allow}`, { allow });
}

function html(body: string, status = 200, csp = INBOX_CSP): Response {
  return new Response(body, {
    status,
    headers: { ...BASE_HEADERS, "content-security-policy": csp, "content-type": "text/html; charset=utf-8" },
  });
}

function methodNotAllowed(allow: string): Response {
  return new Response("Method Not Allowed", {
    status: 405,
    headers: { ...BASE_HEADERS, allow },
  });
}
