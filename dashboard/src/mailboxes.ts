/// <reference lib="dom" />
// Mailboxes: the SMTP configs with their state (a paused queue explained, with what to do),
// verify with its step-by-step result and history, limits and guardrails (the account's on the
// list, a mailbox's own on its page) edited in forms whose errors are the API's own.
import { useState } from "preact/hooks";
import type { MailroomClient } from "../../clients/mailroom/src/index.ts";
import type {
  ImapSettings,
  MailboxCheck,
  SmtpConfig,
  Verification,
  VerificationRecord,
} from "../../clients/mailroom/src/types.ts";
import { useLoad } from "./load.ts";
import { ErrorBox, html, When } from "./view.ts";
import { GuardrailsForm } from "./guardrails.ts";

function state(c: SmtpConfig): string {
  if (!c.is_active) return "inactive";
  if (c.needs_attention) return "needs attention";
  if (c.backoff_until && Date.parse(c.backoff_until) > Date.now()) return "backing off";
  return "ready";
}

export function MailboxesPage({ api }: { api: MailroomClient }) {
  const { data, error, loading } = useLoad<SmtpConfig[]>(() => api.configs.list(), []);
  return html`
    <h2>Mailboxes</h2>
    <${ErrorBox} error=${error} />
    ${loading
      ? html`<p class="loading">Loading…</p>`
      : !data?.length
      ? html`<p class="empty">No mailbox yet. Add your SMTP server with <code>POST /functions/v1/smtp-configs</code>
          (a preset fills in Gmail, Microsoft 365 and others); its password goes to Supabase Vault.</p>`
      : html`
        <table>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">From</th>
              <th scope="col">Server</th>
              <th scope="col">State</th>
              <th scope="col">Limits</th>
            </tr>
          </thead>
          <tbody>${data.map((c) =>
            html`
              <tr data-id=${c.id}>
                <td><a href=${`#/mailboxes/${c.id}`}>${c.name}</a>${c.is_default ? " (default)" : ""}</td>
                <td>${c.from_email}</td>
                <td>${c.host}:${c.port} (${c.transport})</td>
                <td>${state(c)}</td>
                <td>${c.limits.per_minute}/min, ${c.limits.per_day}/day</td>
              </tr>
            `
          )}</tbody>
        </table>
      `}
    <h3>Guardrails for every mailbox</h3>
    <p>Who may be mailed, how many at once, and which sends wait for your approval; a mailbox can add its own.</p>
    <${GuardrailsForm} api=${api} />
  `;
}

export function MailboxView({ api, id }: { api: MailroomClient; id: string }) {
  const [version, setVersion] = useState(0);
  const { data: c, error, loading } = useLoad<SmtpConfig>(() => api.configs.get(id), [id, version]);
  const history = useLoad<VerificationRecord[]>(() => api.configs.verifications(id), [id, version]);
  const [verify, setVerify] = useState<{ busy: boolean; result?: Verification; error?: unknown }>({ busy: false });
  const [form, setForm] = useState<Record<string, string>>({});
  const [saving, setSaving] = useState<{ busy: boolean; error?: unknown; saved?: boolean }>({ busy: false });
  if (loading && !c) return html`<p class="loading">Loading…</p>`;
  if (error || !c) return html`<h2>Mailbox</h2><${ErrorBox} error=${error} /><a href="#/mailboxes">Mailboxes</a>`;
  const runVerify = async () => {
    setVerify({ busy: true });
    try {
      setVerify({ busy: false, result: await api.configs.verify(id) });
    } catch (e) {
      setVerify({ busy: false, error: e });
    }
    setVersion((v) => v + 1);
  };
  const field = (name: string, value: number) => form[name] ?? String(value);
  const save = async (e: Event) => {
    e.preventDefault();
    // Only what was changed, and never an emptied field read as 0 (a duplicate window of 0 turns
    // duplicate protection off): an empty field is the API's to refuse, by name.
    const changed = (name: string) => form[name] !== undefined;
    const number = (name: string) => (form[name].trim() === "" ? null : Number(form[name]));
    const limits: Record<string, number | null> = {};
    for (const name of ["per_minute", "per_day", "max_connections"]) if (changed(name)) limits[name] = number(name);
    const change = {
      ...(Object.keys(limits).length ? { limits } : {}),
      ...(changed("duplicate_window_seconds") ? { duplicate_window_seconds: number("duplicate_window_seconds") } : {}),
    };
    if (Object.keys(change).length === 0) return setSaving({ busy: false, saved: true });
    setSaving({ busy: true });
    try {
      await api.configs.update(id, change as Parameters<MailroomClient["configs"]["update"]>[1]);
      setSaving({ busy: false, saved: true });
      setForm({});
      setVersion((v) => v + 1);
    } catch (error) {
      setSaving({ busy: false, error });
    }
  };
  const input = (name: string, label: string, value: number) =>
    html`<label>${label}<input type="number" name=${name} required min="0" value=${field(name, value)}
      onInput=${(e: Event) => setForm((f) => ({ ...f, [name]: (e.target as HTMLInputElement).value }))} /></label>`;
  return html`
    <h2>${c.name}</h2>
    ${c.needs_attention
      ? html`<div class="error" role="alert">Its queue is paused: ${c.needs_attention}. Fix the config (a new password,
          or reconnect the account), then verify it: the queue goes on by itself.</div>`
      : null}
    <dl>
      <dt>From</dt><dd>${c.from_name ? `${c.from_name} <${c.from_email}>` : c.from_email}</dd>
      <dt>Server</dt><dd>${c.host}:${c.port}, ${c.security}, ${c.transport}, ${c.auth_type}</dd>
      <dt>State</dt><dd>${state(c)}${c.is_default ? ", default" : ""}</dd>
      ${c.backoff_reason
        ? html`
          <dt>Server pushed back</dt>
          <dd>${c.backoff_reason}</dd>
        `
        : null}
      <dt>Credentials changed</dt><dd><${When} at=${c.credentials_changed_at} /></dd>
    </dl>
    <div class="actions"><button onClick=${runVerify} disabled=${verify.busy}>Verify now</button></div>
    <${ErrorBox} error=${verify.error} />
    ${verify.result
      ? html`
        <div class="notice" role="status" aria-label="Verification">
          <ol>
            <li>Connected${verify.result.server_banner ? `: ${verify.result.server_banner}` : ""}</li>
            <li>TLS ${verify.result.tls ? "on" : "off"}</li>
            <li>Login ${verify.result.auth ? "accepted" : "not needed"}</li>
            <li>Took ${verify.result.latency_ms} ms</li>
            <li>Deliverability: ${verify.result.deliverability.verdict.replaceAll("_", " ")}</li>
          </ol>
        </div>
      `
      : null}
    <h3>Limits</h3>
    <form class="filters" onSubmit=${save} aria-label="Limits">
      ${input("per_minute", "Per minute", c.limits.per_minute)}
      ${input("per_day", "Per day", c.limits.per_day)}
      ${input("max_connections", "Connections at once", c.limits.max_connections)}
      ${input("duplicate_window_seconds", "Duplicate window (s)", c.duplicate_window_seconds)}
      <button type="submit" disabled=${saving.busy}>Save</button>
    </form>
    <${ErrorBox} error=${saving.error} />
    ${saving.saved ? html`<p class="notice" role="status">Saved.</p>` : null}
    <h3>Bounces and Sent copies (IMAP)</h3>
    <${ImapSection} api=${api} id=${c.id} />
    <h3>Guardrails of this mailbox</h3>
    <p>On top of the account's: both deny lists apply; an empty field is the account's.</p>
    <${GuardrailsForm} api=${api} config=${c.id} />
    <h3>Verification history</h3>
    <${ErrorBox} error=${history.error} />
    ${history.data?.length
      ? html`
        <table>
          <thead>
            <tr>
              <th scope="col">When</th>
              <th scope="col">Result</th>
              <th scope="col">Took</th>
            </tr>
          </thead>
          <tbody>${history.data.map((v) =>
            html`
              <tr>
                <td>
                  <${When} at=${v.created_at} />
                </td>
                <td>${v.ok ? "ok" : v.error_class}</td>
                <td>${v.latency_ms ?? "—"} ms</td>
              </tr>
            `
          )}</tbody>
        </table>
      `
      : history.error
      ? null
      : html`<p class="empty">Not verified yet.</p>`}
    <p><a href="#/mailboxes">Mailboxes</a></p>
  `;
}

/** The config's mailbox over IMAP: where bounces are read and Sent copies go, and a check now. */
function ImapSection({ api, id }: { api: MailroomClient; id: string }) {
  const [version, setVersion] = useState(0);
  const { data: imap, error, loading } = useLoad<ImapSettings>(() => api.configs.imap.get(id), [id, version]);
  const [check, setCheck] = useState<{ busy: boolean; result?: MailboxCheck; error?: unknown }>({ busy: false });
  if (loading && !imap) return html`<p class="loading">Loading…</p>`;
  if ((error as { code?: string } | undefined)?.code === "imap_not_configured") {
    return html`<p class="empty">No IMAP settings: bounces are known only when the server refuses at once, and no
      copy goes to Sent. Set them with <code>PATCH /functions/v1/smtp-configs/${id}/imap</code>.</p>`;
  }
  if (error || !imap) return html`<${ErrorBox} error=${error} />`;
  const runCheck = async () => {
    setCheck({ busy: true });
    try {
      setCheck({ busy: false, result: await api.configs.imap.check(id) });
    } catch (e) {
      setCheck({ busy: false, error: e });
    }
    setVersion((v) => v + 1);
  };
  return html`
    ${imap.last_error ? html`<div class="error" role="alert">${imap.last_error}</div>` : null}
    <dl aria-label="IMAP">
      <dt>Server</dt>
      <dd>${imap.host}:${imap.port}, ${imap.security}, ${imap.use_smtp_login ? "the SMTP login" : imap.username}</dd>
      <dt>Reads bounces</dt>
      <dd>${imap.read_bounces ? "yes" : "no"}</dd>
      <dt>Copies to Sent</dt>
      <dd>${imap.copy_to_sent ? imap.sent_folder ?? "yes" : "no"}</dd>
      <dt>Last read</dt>
      <dd>
        <${When} at=${imap.checked_at} />
      </dd>
      <dt>Next read</dt>
      <dd>${imap.next_check_at ? html`<${When} at=${imap.next_check_at} />` : "stopped until the password changes"}</dd>
    </dl>
    <div class="actions"><button onClick=${runCheck} disabled=${check.busy}>Check the inbox now</button></div>
    <${ErrorBox} error=${check.error} />
    ${check.result
      ? html`
        <p class="notice" role="status"
          aria-label="Inbox check">${check.result.checked} new, ${check.result
            .reports} reports, ${check.result.matched} about your mail, ${check.result.unsubscribed} unsubscribed</p>
      `
      : null}
  `;
}
