/// <reference lib="dom" />
// The pages: Messages (the audit log, filtered, a page at a time), one message, Approvals (what
// waits for the owner), one held message with its preview and the decision.
import { useState } from "preact/hooks";
import { useLoad, usePages } from "./load.ts";
import type { MailroomClient } from "../../clients/mailroom/src/index.ts";
import type {
  ApprovalDetail,
  ApprovalList,
  AuditStatus,
  GuardrailsList,
  Message,
  MessageContent,
} from "../../clients/mailroom/src/types.ts";
import { ErrorBox, html, MoreButton, Preview, Status, When } from "./view.ts";

const STATUSES = [
  "sent",
  "failed",
  "deferred",
  "unknown",
  "queued",
  "scheduled",
  "sending",
  "pending_approval",
  "rejected",
  "expired",
  "cancelled",
  "suppressed",
];

export function MessagesPage({ api, batch }: { api: MailroomClient; batch?: string }) {
  const [status, setStatus] = useState("");
  const [batchId, setBatchId] = useState(batch ?? "");
  const [config, setConfig] = useState("");
  const [from, setFrom] = useState("");
  const [recipient, setRecipient] = useState("");
  const [agent, setAgent] = useState("");
  const [version, setVersion] = useState(0);
  // The API lists 30 days unless told: a year back (its longest range), or from the date picked,
  // in the reader's own time zone.
  const filters = {
    status: status ? [status as AuditStatus] : undefined,
    config: config || undefined,
    from: from || new Date(Date.now() - 365 * 86_400_000).toISOString(),
    tz: Intl.DateTimeFormat().resolvedOptions().timeZone,
    batch_id: batchId || undefined,
    recipient: recipient || undefined,
    agent: agent || undefined,
  };
  const list = usePages(
    () => api.analytics.messages({ ...filters, limit: 50 }),
    (last) =>
      last.next_cursor ? () => api.analytics.messages({ ...filters, limit: 50, cursor: last.next_cursor! }) : null,
    [status, config, from, batchId, recipient, agent, version],
  );
  const rows = list.pages.flatMap((p) => p.messages);
  return html`
    <h2>Messages</h2>
    <form class="filters" role="search" onSubmit=${(e: Event) => e.preventDefault()}>
      <label>Status
        <select value=${status} onChange=${(e: Event) => setStatus((e.target as HTMLSelectElement).value)}>
          <option value="">any</option>
          ${STATUSES.map((s) => html`<option value=${s}>${s.replaceAll("_", " ")}</option>`)}
        </select>
      </label>
      <label>Config (name or id)
        <input value=${config} onChange=${(e: Event) => setConfig((e.target as HTMLInputElement).value.trim())} />
      </label>
      <label>Since (date)
        <input type="date" value=${from} onChange=${(e: Event) => setFrom((e.target as HTMLInputElement).value)} />
      </label>
      <label>Recipient
        <input type="email" value=${recipient} onChange=${(e: Event) =>
          setRecipient((e.target as HTMLInputElement).value.trim())} />
      </label>
      <label>Agent
        <input value=${agent} onChange=${(e: Event) => setAgent((e.target as HTMLInputElement).value.trim())} />
      </label>
      <label>Batch id
        <input value=${batchId} size="36" onChange=${(e: Event) =>
          setBatchId((e.target as HTMLInputElement).value.trim())} />
      </label>
      <button type="button" class="secondary" onClick=${() => setVersion((v) => v + 1)}>Refresh</button>
    </form>
    <${ErrorBox} error=${list.error} />
    ${list.loading
      ? html`<p class="loading">Loading…</p>`
      : rows.length === 0 && !list.error
      ? html`<p class="empty">No messages yet. Send one with <code>POST /functions/v1/send-email</code>, or let an
          agent use the <code>send_email</code> tool; it shows up here.</p>`
      : html`
        <table>
          <caption class="loading">Newest first</caption>
          <thead>
            <tr>
              <th scope="col">When</th>
              <th scope="col">Status</th>
              <th scope="col">To</th>
              <th scope="col">Subject</th>
              <th scope="col">Config</th>
              <th scope="col">Agent</th>
              <th scope="col">Error</th>
            </tr>
          </thead>
          <tbody>${rows.map((m) =>
            html`
              <tr data-id=${m.id}>
                <td><a href=${`#/messages/${m.id}`}><${When} at=${m.created_at} /></a></td>
                <td>
                  <${Status} status=${m.status} />
                </td>
                <td>${m.to.join(", ")}${m.cc_count + m.bcc_count > 0 ? ` +${m.cc_count + m.bcc_count}` : ""}</td>
                <td>${m.subject ?? "(no subject)"}</td>
                <td>${m.config?.name ?? "—"}</td>
                <td>${agentOf(m)}</td>
                <td>${m.error_code ?? ""}</td>
              </tr>
            `
          )}</tbody>
        </table>
        <${MoreButton} list=${list} label="Older messages" />
      `}
  `;
}

/** Who sent it: the agent's own name (agent_context.agent), else its OAuth client, else the tools it came through. */
function agentOf(m: Message): string {
  const named = m.agent_context?.agent;
  return typeof named === "string" ? named : m.client_id ?? (m.via ? `via ${m.via}` : "—");
}

/** What a message said: its attachments, text, sandboxed HTML and headers. */
function MessageContentView({ api, id }: { api: MailroomClient; id: string }) {
  const { data: c, error, loading } = useLoad<MessageContent>(() => api.analytics.content(id), [id]);
  if (loading) return html`<p class="loading">Loading its content…</p>`;
  if ((error as { code?: string } | undefined)?.code === "content_not_kept") {
    return html`<p class="empty">Its content was not kept: it was sent before messages kept what they said.</p>`;
  }
  if (error || !c) return html`<${ErrorBox} error=${error} />`;
  return html`
    ${c.source === "request"
      ? html`<p class="notice">Rebuilt from the queued request${
        c.html || c.text ? " (a template renders as it is now)" : ""
      }.</p>`
      : null}
    ${c.truncated ? html`<p class="notice">A part was longer than 200,000 characters and is cut.</p>` : null}
    ${c.attachments.length
      ? html`
        <h3>Attachments</h3>
        <ul>${c.attachments.map((f) =>
          html`<li>${f.filename} (${f.content_type ?? "type unknown"}, ${f.size_bytes.toLocaleString()} bytes)</li>`
        )}</ul>
      `
      : null}
    ${c.text !== null
      ? html`
        <h3>Text</h3>
        <pre>${c.text}</pre>
      `
      : null}
    ${c.html !== null
      ? html`
        <h3>HTML (scripts and remote content blocked)</h3>
        <${Preview} body=${c.html} title="HTML of the message" />
      `
      : null}
    <details>
      <summary>Headers (${c.headers.length})</summary>
      <table>
        <tbody>${c.headers.map((h) =>
          html`
            <tr>
              <th scope="row">${h.name}</th>
              <td><code>${h.value}</code></td>
            </tr>
          `
        )}</tbody>
      </table>
    </details>
  `;
}

export function MessagePageView({ api, id }: { api: MailroomClient; id: string }) {
  const { data: m, error, loading } = useLoad<Message>(() => api.analytics.message(id), [id]);
  if (loading) return html`<p class="loading">Loading…</p>`;
  if (error || !m) return html`<h2>Message</h2><${ErrorBox} error=${error} /><a href="#/messages">All messages</a>`;
  return html`
    <h2>${m.subject ?? "(no subject)"}</h2>
    <dl>
      <dt>Status</dt><dd><${Status} status=${m.status} /></dd>
      <dt>From</dt><dd>${m.from}</dd>
      <dt>To</dt><dd>${m.to.join(", ")}</dd>
      <dt>Created</dt><dd><${When} at=${m.created_at} /></dd>
      <dt>Completed</dt><dd><${When} at=${m.completed_at} /></dd>
      <dt>Message-ID</dt><dd>${m.message_id ?? "—"}</dd>
      <dt>Config</dt><dd>${m.config?.name ?? "—"}</dd>
      <dt>Attempts</dt><dd>${m.attempts}</dd>
      <dt>Agent</dt><dd>${agentOf(m)}${m.client_id && agentOf(m) !== m.client_id
        ? ` (OAuth client ${m.client_id})`
        : ""}</dd>
      ${m.batch_id
        ? html`
          <dt>Batch</dt>
          <dd><a href=${`#/batches/${m.batch_id}`}>${m.batch_id}</a></dd>
        `
        : null}
      ${m.duplicate_of
        ? html`
          <dt>Repeats</dt>
          <dd><a href=${`#/messages/${m.duplicate_of}`}>${m.duplicate_of}</a></dd>
        `
        : null}
      ${m.suppressed.length
        ? html`
          <dt>Skipped</dt>
          <dd>${m.suppressed.join(", ")} (on your suppression list: not sent to)</dd>
        `
        : null}
      ${m.bounced.length
        ? html`
          <dt>Bounced</dt>
          <dd>${m.bounced.join(", ")} (accepted, then returned: a bounce report in your mailbox)</dd>
        `
        : null}
      ${m.sent_copy
        ? html`
          <dt>Sent folder</dt>
          <dd>${m.sent_copy.status === "copied"
            ? `copied to ${m.sent_copy.folder ?? "Sent"}`
            : `not copied: ${m.sent_copy.error ?? "unknown reason"}`}</dd>
        `
        : null}
      ${m.error_code
        ? html`
          <dt>Error</dt>
          <dd><code>${m.error_code}</code>: ${m.error_message ?? ""}</dd>
        `
        : null}
    </dl>
    ${m.recipients?.length
      ? html`
        <h3>Recipients</h3>
        <table>
          <thead>
            <tr>
              <th scope="col">Address</th>
              <th scope="col">Outcome</th>
              <th scope="col">Code</th>
              <th scope="col">Server's reply</th>
            </tr>
          </thead>
          <tbody>${m.recipients.map((r) =>
            html`
              <tr>
                <td>${r.address}</td>
                <td>
                  <${Status} status=${r.status} />
                </td>
                <td>${r.smtp_code ?? ""} ${r.enhanced_code ?? ""}</td>
                <td>${r.response ?? ""}</td>
              </tr>
            `
          )}</tbody>
        </table>
      `
      : null}
    ${m.agent_context
      ? html`
        <h3>Agent context</h3>
        <pre>${JSON.stringify(m.agent_context, null, 2)}</pre>
      `
      : null}
    <${MessageContentView} api=${api} id=${id} />
    <p><a href="#/messages">All messages</a></p>
  `;
}

/** The account's stop button: stops every send now (an agent may press it too); only you lift it. */
function StopButton({ api }: { api: MailroomClient }) {
  const [version, setVersion] = useState(0);
  const guardrails = useLoad<GuardrailsList>(() => api.oversight.guardrails(), [version]);
  const [action, setAction] = useState<{ busy: boolean; error?: unknown }>({ busy: false });
  const stopped = guardrails.data?.account.stopped_at ?? null;
  const press = async () => {
    setAction({ busy: true });
    try {
      if (stopped) await api.oversight.resume();
      else await api.oversight.stop({ reason: "Stopped from the dashboard" });
      setAction({ busy: false });
      setVersion((v) => v + 1);
    } catch (error) {
      setAction({ busy: false, error });
    }
  };
  if (!guardrails.data) return html`<${ErrorBox} error=${guardrails.error} />`;
  return html`<div class="actions">
    ${
    stopped
      ? html`
        <p class="error" role="status">All sending is stopped (since <${When} at=${stopped} />): nothing goes out,
                  approved or not, until you resume.</p>
        <button onClick=${press} disabled=${action.busy}>Resume sending</button>
      `
      : html`<button class="danger" onClick=${press} disabled=${action.busy}>Stop all sending</button>`
  }
    <${ErrorBox} error=${action.error} />
  </div>`;
}

export function ApprovalsPage({ api }: { api: MailroomClient }) {
  const [version, setVersion] = useState(0);
  const list = usePages<ApprovalList>(
    () => api.oversight.approvals({ limit: 100 }),
    (last) => last.next_after ? () => api.oversight.approvals({ limit: 100, after: last.next_after! }) : null,
    [version],
  );
  const { error, loading } = list;
  const approvals = list.pages.flatMap((p) => p.approvals);
  const soon = Date.now() + 3_600_000;
  return html`
    <h2>Approvals</h2>
    <${StopButton} api=${api} />
    <div class="actions"><button class="secondary" onClick=${() => setVersion((v) => v + 1)}>Refresh</button></div>
    <${ErrorBox} error=${error} />
    ${loading
      ? html`<p class="loading">Loading…</p>`
      : !approvals.length
      ? html`<p class="empty">Nothing waits for your approval. Sends wait here when your guardrails ask for it
          (<code>approval: "agents"</code> holds what agents send).</p>`
      : html`
        <table>
          <thead>
            <tr>
              <th scope="col">Held since</th>
              <th scope="col">To</th>
              <th scope="col">Subject</th>
              <th scope="col">Why</th>
              <th scope="col">Agent</th>
              <th scope="col">Expires</th>
            </tr>
          </thead>
          <tbody>${approvals.map((a) =>
            html`
              <tr data-id=${a.id}>
                <td><a href=${`#/approvals/${a.id}`}><${When} at=${a.created_at} /></a></td>
                <td>${a.to.join(", ")}</td>
                <td>${a.subject ?? "(no subject)"}</td>
                <td>${a.reason}</td>
                <td>${a.client_id ?? "—"}</td>
                <td>
                  <${When} at=${a.expires_at} />${Date.parse(a.expires_at) < soon
                    ? html`
                      <strong>(expires soon)</strong>
                    `
                    : null}
                </td>
              </tr>
            `
          )}</tbody>
        </table>
        <${MoreButton} list=${list} label="More waiting sends" />
      `}
  `;
}

export function ApprovalView({ api, id }: { api: MailroomClient; id: string }) {
  const [version, setVersion] = useState(0);
  const { data: a, error, loading } = useLoad<ApprovalDetail>(() => api.oversight.approval(id), [id, version]);
  const [reason, setReason] = useState("");
  const [decision, setDecision] = useState<{ busy: boolean; error?: unknown; done?: string }>({ busy: false });
  const decide = async (approve: boolean, wholeBatch = false) => {
    setDecision({ busy: true });
    try {
      const result = wholeBatch
        ? await api.oversight.decideBatch(a!.batch_id!, approve, approve ? undefined : reason || undefined)
        : approve
        ? await api.oversight.approve(id)
        : await api.oversight.reject(id, reason || undefined);
      setDecision({ busy: false, done: result.status });
      setVersion((v) => v + 1);
    } catch (error) {
      setDecision({ busy: false, error });
    }
  };
  if (loading && !a) return html`<p class="loading">Loading…</p>`;
  if (error || !a) return html`<h2>Held message</h2><${ErrorBox} error=${error} /><a href="#/approvals">Approvals</a>`;
  const c = a.content;
  return html`
    <h2>${c?.subject ?? a.subject ?? "(no subject)"}</h2>
    <dl>
      <dt>Status</dt><dd><${Status} status=${a.status} /></dd>
      <dt>From</dt><dd>${a.from_email}</dd>
      <dt>To</dt><dd>${(c?.to ?? a.to).join(", ")}</dd>
      ${c?.cc.length
        ? html`
          <dt>Cc</dt>
          <dd>${c.cc.join(", ")}</dd>
        `
        : null}
      ${c?.bcc.length
        ? html`
          <dt>Bcc</dt>
          <dd>${c.bcc.join(", ")}</dd>
        `
        : null}
      <dt>Held because</dt><dd>${a.reason === "agents" ? "an agent sent it" : "every send waits"}</dd>
      <dt>Agent</dt><dd>${a.client_id ?? "—"}</dd>
      <dt>Expires</dt><dd><${When} at=${a.expires_at} /></dd>
      ${c?.attachments.length
        ? html`
          <dt>Attachments</dt>
          <dd>${c.attachments.map((f) =>
            html`<div>${f.filename} (${f.content_type ?? "?"}, ${f.size_bytes} bytes)</div>`
          )}</dd>
        `
        : null}
    </dl>
    ${a.status === "pending_approval"
      ? html`
        <div class="actions">
          <button onClick=${() => decide(true)} disabled=${decision.busy}>Approve and send</button>
          <label>Reason (optional)
                    <input value=${reason} maxlength="500" onInput=${(e: Event) =>
                      setReason((e.target as HTMLInputElement).value)} />
                  </label>
          <button class="danger" onClick=${() => decide(false)} disabled=${decision.busy}>Reject</button>
        </div>
        ${a.batch_id
          ? html`
            <div class="actions">
              <button class="secondary" onClick=${() => decide(true, true)} disabled=${decision.busy}>
                            Approve its whole batch</button>
              <button class="secondary" onClick=${() => decide(false, true)} disabled=${decision.busy}>
                            Reject its whole batch</button>
            </div>
          `
          : null}
      `
      : html`<p class="notice" role="status">Decided: ${decision.done ?? a.status}</p>`}
    <${ErrorBox} error=${decision.error} />
    ${c?.text
      ? html`
        <h3>Text</h3>
        <pre>${c.text}</pre>
      `
      : null}
    ${c?.html
      ? html`
        <h3>HTML (scripts and remote content blocked)</h3>
        <${Preview} body=${c.html} title="HTML preview" />
      `
      : null}
    <p><a href="#/approvals">Approvals</a></p>
  `;
}
