/// <reference lib="dom" />
// The pieces every page uses: htm bound to preact, an error shown with its code, status badges,
// times, and the sandboxed preview of an agent's HTML.
import { h } from "preact";
import htmModule from "htm";
import { MailroomError } from "../../clients/mailroom/src/index.ts";

// htm ships CommonJS with an `export default` declaration; Deno types the default import as the module.
type Htm = {
  bind<R>(h: typeof import("preact").h): (strings: TemplateStringsArray, ...values: unknown[]) => R;
};

/** JSX-like templates without a build step of their own; every interpolated string is escaped. */
export const html = (htmModule as unknown as Htm).bind<ReturnType<typeof h>>(h);

/** An API error with its stable code, or any other failure, as the page shows it. */
export function ErrorBox({ error }: { error: unknown }) {
  if (!error) return null;
  if (error instanceof MailroomError) {
    return html`<div class="error" role="alert"><code>${error.code}</code>: ${error.message}</div>`;
  }
  return html`<div class="error" role="alert">${(error as Error)?.message ?? String(error)}</div>`;
}

export function Status({ status }: { status: string }) {
  return html`<span class=${`status status-${status}`}>${status.replaceAll("_", " ")}</span>`;
}

/** A timestamp in the reader's own time zone. */
export function When({ at }: { at: string | null }) {
  if (!at) return html`<span>—</span>`;
  return html`<time datetime=${at}>${new Date(at).toLocaleString()}</time>`;
}

/**
 * An agent's HTML, shown as a document of its own: `sandbox` without allow-scripts runs no
 * script, and the page's own policy plus the one written into the document load nothing from
 * the network (no tracking pixel fires when the owner looks).
 */
export function Preview({ body, title }: { body: string; title: string }) {
  const policy = "default-src 'none'; style-src 'unsafe-inline'; img-src data:";
  const document =
    `<!doctype html><meta charset="utf-8"><meta http-equiv="Content-Security-Policy" content="${policy}">` +
    body;
  return html`<iframe class="preview" sandbox="" referrerpolicy="no-referrer" title=${title} srcdoc=${document}></iframe>`;
}
