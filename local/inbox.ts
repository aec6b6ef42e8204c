/**
 * A small web inbox over the SMTP catcher's store, so mail sent through the
 * local stack can be read in a browser. Message HTML is untrusted: it is shown
 * only inside a sandboxed iframe, under a CSP that allows no scripts at all.
 *
 * @module
 */

import { serveHttp } from "./http_server.ts";
import { Buffer } from "node:buffer";
import { type AddressObject, type ParsedMail, simpleParser } from "mailparser";
import { type CaughtMessage, type MessageStore, rawBytes } from "./smtp_catcher.ts";

/** Options for {@linkcode startInbox}. */
export interface InboxOptions {
  /** Port to listen on; 0 picks a free one. */
  port: number;
  /** Interface to bind; loopback by default. */
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
 * Every page gets this policy: no scripts, no remote loads (tracking pixels
 * included), styles inline, images only as data: URLs (mailparser inlines
 * cid: images that way).
 */
export const INBOX_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-src 'self'; " +
  "base-uri 'none'; form-action 'none'; frame-ancestors 'self'";

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
  const handler = createInboxHandler(options.store);
  // The same front as the gateway, so idle and slow connections are closed here too.
  const server = await serveHttp({ port: options.port, hostname: options.host ?? "127.0.0.1" }, handler);
  return { port: server.port, close: server.close };
}

/**
 * The inbox as a fetch handler, for mounting elsewhere or testing without a
 * server. Routes: `GET /`, `GET /messages/:id`, `GET /messages/:id/raw`,
 * `GET /api/messages`, `DELETE /api/messages`.
 *
 * @example
 * ```ts
 * const handler = createInboxHandler(store);
 * const response = await handler(new Request("http://inbox/api/messages"));
 * ```
 */
export function createInboxHandler(
  store: MessageStore,
): (request: Request) => Promise<Response> {
  const parsed = new WeakMap<CaughtMessage, Promise<ParsedMail>>();
  // Messages never change once caught, so each is parsed at most once.
  const parse = (message: CaughtMessage) => {
    let result = parsed.get(message);
    if (!result) {
      result = simpleParser(Buffer.from(rawBytes(message)));
      parsed.set(message, result);
    }
    return result;
  };

  return async (request) => {
    const { pathname } = new URL(request.url);
    const method = request.method;

    if (pathname === "/api/messages") {
      if (method === "DELETE") {
        store.clear();
        return new Response(null, { status: 204 });
      }
      if (method !== "GET") return methodNotAllowed("GET, DELETE");
      const summaries = await Promise.all(newestFirst(store).map(async (m) => summarize(m, await parse(m))));
      return Response.json({ messages: summaries }, { headers: BASE_HEADERS });
    }

    if (method !== "GET") return methodNotAllowed("GET");
    if (pathname === "/") {
      const rows = await Promise.all(newestFirst(store).map(async (m) => listRow(m, await parse(m))));
      return html(listPage(rows));
    }

    const match = pathname.match(/^\/messages\/([A-Za-z0-9-]+)(\/raw)?$/);
    const message = match ? store.get(match[1]) : undefined;
    if (!message) return html(page("Not found", "<p>No such message.</p>"), 404);
    if (match?.[2]) {
      return new Response(rawBytes(message), {
        headers: {
          ...BASE_HEADERS,
          "content-type": `text/plain; charset=${message.rawEncoding === "utf8" ? "utf-8" : "iso-8859-1"}`,
        },
      });
    }
    return html(messagePage(message, await parse(message)));
  };
}

const BASE_HEADERS: Record<string, string> = {
  "content-security-policy": INBOX_CSP,
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "cache-control": "no-store",
};

/** What `GET /api/messages` returns per message. */
export interface MessageSummary {
  /** The message id, as in `/messages/:id`. */
  id: string;
  /** When the catcher accepted it, ISO 8601. */
  receivedAt: string;
  /** The SMTP envelope. */
  envelope: CaughtMessage["envelope"];
  /** Who logged in to send it, if anyone. */
  authUser?: string;
  /** Whether it arrived over TLS. */
  secure: boolean;
  /** Size in bytes. */
  size: number;
  /** The decoded Subject header. */
  subject: string;
  /** The From header as text. */
  from: string;
  /** The To header(s) as text. */
  to: string;
}

function summarize(message: CaughtMessage, mail: ParsedMail): MessageSummary {
  return {
    id: message.id,
    receivedAt: message.receivedAt,
    envelope: message.envelope,
    authUser: message.authUser,
    secure: message.secure,
    size: message.size,
    subject: mail.subject ?? "",
    from: addresses(mail.from),
    to: addresses(mail.to),
  };
}

function newestFirst(store: MessageStore): CaughtMessage[] {
  return store.list().reverse();
}

function listRow(message: CaughtMessage, mail: ParsedMail): string {
  const href = `/messages/${message.id}`;
  return `<tr><td>${escapeHtml(message.receivedAt)}</td>` +
    `<td>${escapeHtml(addresses(mail.from) || message.envelope.mailFrom)}</td>` +
    `<td>${escapeHtml(addresses(mail.to) || message.envelope.rcptTo.join(", "))}</td>` +
    `<td><a href="${href}">${escapeHtml(mail.subject || "(no subject)")}</a></td></tr>`;
}

function listPage(rows: string[]): string {
  const body = rows.length === 0 ? "<p>No messages yet.</p>" : `<table>
<thead><tr><th>Received</th><th>From</th><th>To</th><th>Subject</th></tr></thead>
<tbody>${rows.join("\n")}</tbody>
</table>`;
  return page("Inbox", `<h1>Inbox</h1>\n${body}`);
}

function messagePage(message: CaughtMessage, mail: ParsedMail): string {
  const fields: Array<[string, string]> = [
    ["Subject", mail.subject ?? ""],
    ["From", addresses(mail.from)],
    ["To", addresses(mail.to)],
    ["Cc", addresses(mail.cc)],
    ["Date", mail.date?.toISOString() ?? ""],
    ["Received", message.receivedAt],
    ["Envelope from", message.envelope.mailFrom || "<>"],
    ["Envelope to", message.envelope.rcptTo.join(", ")],
    ["Authenticated as", message.authUser ?? "(none)"],
    ["TLS", message.secure ? "yes" : "no"],
    ["Size", `${message.size} bytes`],
  ];
  const summary = fields
    .filter(([, value]) => value !== "")
    .map(([name, value]) => `<tr><th>${escapeHtml(name)}</th><td>${escapeHtml(value)}</td></tr>`)
    .join("\n");
  const headerText = mail.headerLines.map((header) => header.line).join("\n");
  const attachments = mail.attachments.map((a) =>
    `<li>${escapeHtml(a.filename ?? "(unnamed)")} (${escapeHtml(a.contentType)}, ${a.size} bytes)</li>`
  );

  const sections = [
    `<p><a href="/">&larr; Inbox</a> · <a href="/messages/${message.id}/raw">Raw</a></p>`,
    `<h1>${escapeHtml(mail.subject || "(no subject)")}</h1>`,
    `<table>${summary}</table>`,
  ];
  if (mail.html) {
    // sandbox="" gives the message an opaque origin with no scripts, forms,
    // popups or top navigation; srcdoc documents also inherit this page's CSP.
    sections.push(
      `<h2>HTML</h2>\n<iframe sandbox="" srcdoc="${escapeHtml(mail.html)}" title="HTML part"></iframe>`,
    );
  }
  if (mail.text) sections.push(`<h2>Text</h2>\n<pre>${escapeHtml(mail.text)}</pre>`);
  if (attachments.length > 0) {
    sections.push(`<h2>Attachments</h2>\n<ul>${attachments.join("\n")}</ul>`);
  }
  sections.push(`<h2>Headers</h2>\n<pre>${escapeHtml(headerText)}</pre>`);
  return page(mail.subject || "(no subject)", sections.join("\n"));
}

function page(title: string, body: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>${escapeHtml(title)} · mailroom inbox</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem auto; max-width: 70rem; padding: 0 1rem; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; vertical-align: top; padding: .3rem .6rem; border-bottom: 1px solid #ddd; }
pre { background: #f6f6f6; padding: .8rem; overflow: auto; white-space: pre-wrap; }
iframe { width: 100%; height: 32rem; border: 1px solid #ccc; background: #fff; }
</style>
</head>
<body>
${body}
</body>
</html>
`;
}

function html(body: string, status = 200): Response {
  return new Response(body, {
    status,
    headers: { ...BASE_HEADERS, "content-type": "text/html; charset=utf-8" },
  });
}

function methodNotAllowed(allow: string): Response {
  return new Response("Method Not Allowed", {
    status: 405,
    headers: { ...BASE_HEADERS, allow },
  });
}

function addresses(value: AddressObject | AddressObject[] | undefined): string {
  if (!value) return "";
  return (Array.isArray(value) ? value : [value]).map((a) => a.text).join(", ");
}

/** Escapes text for HTML element content and quoted attribute values alike. */
function escapeHtml(text: string): string {
  return text
    .replaceAll("&", "&amp;")
    .replaceAll("<", "&lt;")
    .replaceAll(">", "&gt;")
    .replaceAll('"', "&quot;")
    .replaceAll("'", "&#39;");
}
