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
  if (error instanceof MailroomError && error.status === 401) {
    const again = () => {
      sessionStorage.clear();
      location.reload();
    };
    return html`<div class="error" role="alert"><code>${error.code}</code>: your session has ended.
      <button type="button" onClick=${again}>Sign in again</button></div>`;
  }
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

/** Elements that load, navigate or run: dropped from a preview whatever the sandbox would do with them. */
const ACTIVE = "script, link, base, meta, iframe, frame, frameset, object, embed, portal";
/** Attributes that navigate when clicked or submitted (a sandboxed frame may still navigate itself). */
const NAVIGATING = ["href", "ping", "action", "formaction", "target", "xlink:href"];

/**
 * The agent's HTML made inert: parsed by DOMParser (which runs and loads nothing), without the
 * elements above and without links, under a policy that loads nothing from the network.
 */
export function inertDocument(body: string): string {
  const doc = new DOMParser().parseFromString(body, "text/html");
  for (const element of doc.querySelectorAll(ACTIVE)) element.remove();
  for (const element of doc.querySelectorAll("*")) {
    for (const name of NAVIGATING) element.removeAttribute(name);
  }
  const policy = doc.createElement("meta");
  policy.httpEquiv = "Content-Security-Policy";
  policy.content = "default-src 'none'; style-src 'unsafe-inline'; img-src data:";
  doc.head.prepend(policy);
  const charset = doc.createElement("meta");
  charset.setAttribute("charset", "utf-8");
  doc.head.prepend(charset);
  return `<!doctype html>${doc.documentElement.outerHTML}`;
}

/**
 * An agent's HTML, shown as a document of its own: `sandbox` without allow-scripts runs no
 * script, the document is made inert first (no links, nothing that loads), and its policy and the
 * page's own load nothing from the network (no tracking pixel fires when the owner looks).
 */
export function Preview({ body, title }: { body: string; title: string }) {
  return html`<iframe class="preview" sandbox="" referrerpolicy="no-referrer" title=${title} srcdoc=${
    inertDocument(body)
  }></iframe>`;
}

/** "Older messages" and the like: the next page of a list read with usePages, and its error. */
export function MoreButton(
  { list, label }: {
    list: { hasMore: boolean; loadMore: () => void; moreLoading: boolean; moreError?: unknown };
    label: string;
  },
) {
  return html`
    <${ErrorBox} error=${list.moreError} />
    ${list.hasMore
      ? html`<div class="actions"><button onClick=${list.loadMore} disabled=${list.moreLoading}>${label}</button></div>`
      : null}
  `;
}
