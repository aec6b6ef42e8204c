/// <reference lib="dom" />
// Webhooks: your endpoints that receive your messages' events, signed per Standard Webhooks.
// Add one (its secret is shown here once), see how its deliveries went, send a test event,
// turn it off and on, rotate its secret, remove it. An agent's token may only look.
import { useState } from "preact/hooks";
import type { MailroomClient } from "../../clients/mailroom/src/index.ts";
import type { Webhook, WebhookDeliveries } from "../../clients/mailroom/src/types.ts";
import { useLoad } from "./load.ts";
import { ErrorBox, html, When } from "./view.ts";

/** A secret to copy now: the API never shows it again. */
function SecretNotice({ secret }: { secret: string }) {
  return html`
    <div class="notice" role="status" aria-label="Signing secret">
      <p>Its signing secret, shown only now: verify each delivery's <code>webhook-signature</code> with it (any
        Standard Webhooks library).</p>
      <p><code data-testid="webhook-secret">${secret}</code></p>
    </div>
  `;
}

export function WebhooksPage({ api }: { api: MailroomClient }) {
  const [version, setVersion] = useState(0);
  const { data, error, loading } = useLoad<Webhook[]>(() => api.webhooks.list(), [version]);
  const [url, setUrl] = useState("");
  const [adding, setAdding] = useState<{ busy: boolean; error?: unknown; secret?: string }>({ busy: false });
  const add = async (e: Event) => {
    e.preventDefault();
    setAdding({ busy: true });
    try {
      const created = await api.webhooks.create({ url: url.trim() });
      setAdding({ busy: false, secret: created.secret });
      setUrl("");
      setVersion((v) => v + 1);
    } catch (error) {
      setAdding({ busy: false, error });
    }
  };
  return html`
    <h2>Webhooks</h2>
    <p>Each change of a message's outcome (sent, bounced, failed, ...) is POSTed to these, signed.</p>
    <${ErrorBox} error=${error} />
    ${loading && !data
      ? html`<p class="loading">Loading…</p>`
      : !data?.length
      ? html`<p class="empty">No webhooks yet.</p>`
      : html`
        <table>
          <thead>
            <tr>
              <th scope="col">URL</th>
              <th scope="col">Events</th>
              <th scope="col">State</th>
              <th scope="col">Last delivered</th>
            </tr>
          </thead>
          <tbody>${data.map((w) =>
            html`
              <tr data-id=${w.id}>
                <td><a href=${`#/webhooks/${w.id}`}>${w.url}</a></td>
                <td>${w.event_types?.join(", ") ?? "all"}</td>
                <td>${w.enabled ? (w.consecutive_failures ? `failing (${w.consecutive_failures})` : "on") : "off"}</td>
                <td>
                  <${When} at=${w.last_success_at} />
                </td>
              </tr>
            `
          )}</tbody>
        </table>
      `}
    <h3>Add a webhook</h3>
    <form class="filters" onSubmit=${add} aria-label="Add a webhook">
      <label>HTTPS URL <input type="url" required placeholder="https://hooks.example.com/mailroom" value=${url}
        onInput=${(e: Event) => setUrl((e.target as HTMLInputElement).value)} /></label>
      <button type="submit" disabled=${adding.busy}>Add</button>
    </form>
    <${ErrorBox} error=${adding.error} />
    ${adding.secret ? html`<${SecretNotice} secret=${adding.secret} />` : null}
  `;
}

export function WebhookView({ api, id }: { api: MailroomClient; id: string }) {
  const [version, setVersion] = useState(0);
  const { data: w, error, loading } = useLoad<Webhook>(() => api.webhooks.get(id), [id, version]);
  const log = useLoad<WebhookDeliveries>(() => api.webhooks.deliveries(id, { limit: 50 }), [id, version]);
  const [action, setAction] = useState<{ busy: boolean; error?: unknown; secret?: string; done?: string }>({
    busy: false,
  });
  if (loading && !w) return html`<p class="loading">Loading…</p>`;
  if (error || !w) return html`<h2>Webhook</h2><${ErrorBox} error=${error} /><a href="#/webhooks">Webhooks</a>`;
  const run = async (label: string, fn: () => Promise<{ secret?: string } | unknown>) => {
    setAction({ busy: true });
    try {
      const result = await fn() as { secret?: string };
      setAction({ busy: false, done: label, secret: result?.secret });
      setVersion((v) => v + 1);
    } catch (error) {
      setAction({ busy: false, error });
    }
  };
  const remove = () =>
    run("Removed", async () => {
      await api.webhooks.delete(id);
      location.hash = "#/webhooks";
    });
  return html`
    <h2>Webhook</h2>
    ${!w.enabled && w.disabled_reason
      ? html`<div class="error" role="alert">Turned off: ${w.disabled_reason}</div>`
      : null}
    <dl>
      <dt>URL</dt>
      <dd>${w.url}</dd>
      <dt>Events</dt>
      <dd>${w.event_types?.join(", ") ?? "all"}</dd>
      <dt>State</dt>
      <dd>${w.enabled ? "on" : "off"}</dd>
      <dt>Failures in a row</dt>
      <dd>${w.consecutive_failures}${w.last_error ? ` (last: ${w.last_error})` : ""}</dd>
      <dt>Last delivered</dt>
      <dd>
        <${When} at=${w.last_success_at} />
      </dd>
    </dl>
    <div class="actions">
      <button onClick=${() => run("A test event is on its way", () => api.webhooks.test(id))} disabled=${action
        .busy}>Send a test event</button>
      <button class="secondary" onClick=${() =>
        run(w.enabled ? "Turned off" : "Turned on", () => api.webhooks.update(id, { enabled: !w.enabled }))}
        disabled=${action.busy}>${w.enabled ? "Turn off" : "Turn on"}</button>
      <button class="secondary" onClick=${() =>
        run("New secret", () => api.webhooks.rotateSecret(id))} disabled=${action
        .busy}>New secret</button>
      <button class="secondary" onClick=${remove} disabled=${action.busy}>Remove</button>
    </div>
    <${ErrorBox} error=${action.error} />
    ${action.done && !action.secret ? html`<p class="notice" role="status">${action.done}.</p>` : null}
    ${action.secret ? html`<${SecretNotice} secret=${action.secret} />` : null}
    <h3>Deliveries</h3>
    <${ErrorBox} error=${log.error} />
    ${log.data?.deliveries.length
      ? html`
        <table aria-label="Deliveries">
          <thead>
            <tr>
              <th scope="col">Event</th>
              <th scope="col">Created</th>
              <th scope="col">Attempts</th>
              <th scope="col">Outcome</th>
            </tr>
          </thead>
          <tbody>${log.data.deliveries.map((d) =>
            html`
              <tr data-id=${d.id}>
                <td>${d.message_id
                  ? html`<a href=${`#/messages/${d.message_id}`}>${d.event_type}</a>`
                  : d.event_type}</td>
                <td>
                  <${When} at=${d.created_at} />
                </td>
                <td>${d.attempts}</td>
                <td>${d.delivered_at
                  ? `delivered (HTTP ${d.last_status})`
                  : d.failed_at
                  ? `given up: ${d.last_error ?? ""}`
                  : d.attempts
                  ? `retrying: ${d.last_error ?? `HTTP ${d.last_status}`}`
                  : "waiting"}</td>
              </tr>
            `
          )}</tbody>
        </table>
      `
      : log.error
      ? null
      : html`<p class="empty">Nothing sent yet.</p>`}
    <p><a href="#/webhooks">Webhooks</a></p>
  `;
}
