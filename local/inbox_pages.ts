/**
 * The inbox's HTML: the list page (a shell the same-origin script `/inbox.js` fills from the
 * JSON API) and one message's page (rendered here, no script). Everything that came in a
 * message is escaped; its HTML part is shown only inside a sandboxed iframe.
 *
 * @module
 */

import type { ParsedMail } from "mailparser";
import type { CaughtMessage } from "./smtp_catcher.ts";
import { addressText } from "./inbox_index.ts";

/** The list page: controls and an empty table that `/inbox.js` fills and keeps current. */
export function listPage(): string {
  return page(
    "Inbox",
    `<header>
<h1>Inbox</h1>
<input id="search" type="search" placeholder="Search subject, address, text" aria-label="Search" autocomplete="off">
<button id="delete-all" type="button">Delete all</button>
</header>
<p id="status" role="status">Loading…</p>
<table id="messages" hidden>
<thead><tr><th>Received</th><th>From</th><th>To</th><th>Subject</th><th></th></tr></thead>
<tbody></tbody>
</table>
<nav><button id="newer" type="button" disabled>&larr; Newer</button>
<button id="older" type="button" disabled>Older &rarr;</button></nav>
<script src="/inbox.js" defer></script>`,
  );
}

/** One message: its fields, HTML part (sandboxed), text, attachments (download links) and headers. */
export function messagePage(message: CaughtMessage, mail: ParsedMail): string {
  const fields: Array<[string, string]> = [
    ["Subject", mail.subject ?? ""],
    ["From", addressText(mail.from)],
    ["To", addressText(mail.to)],
    ["Cc", addressText(mail.cc)],
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
  const attachments = mail.attachments.map((a, i) =>
    `<li><a href="/messages/${message.id}/attachments/${i}" download>${escapeHtml(a.filename ?? "(unnamed)")}</a> ` +
    `(${escapeHtml(a.contentType)}, ${a.size} bytes)</li>`
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
    sections.push(`<h2>Attachments</h2>\n<ul id="attachments">${attachments.join("\n")}</ul>`);
  }
  sections.push(`<h2>Headers</h2>\n<pre>${escapeHtml(headerText)}</pre>`);
  return page(mail.subject || "(no subject)", sections.join("\n"));
}

/** A complete document around `body`. */
export function page(title: string, body: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>${escapeHtml(title)} · mailroom inbox</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem auto; max-width: 70rem; padding: 0 1rem; }
header { display: flex; gap: .8rem; align-items: center; }
header h1 { margin: 0 auto 0 0; }
#search { width: 22rem; padding: .3rem .5rem; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; vertical-align: top; padding: .3rem .6rem; border-bottom: 1px solid #ddd; }
td.when { white-space: nowrap; color: #555; }
nav { display: flex; justify-content: space-between; margin-top: .8rem; }
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

/** Escapes text for HTML element content and quoted attribute values alike. */
export function escapeHtml(text: string): string {
  return text
    .replaceAll("&", "&amp;")
    .replaceAll("<", "&lt;")
    .replaceAll(">", "&gt;")
    .replaceAll('"', "&quot;")
    .replaceAll("'", "&#39;");
}
