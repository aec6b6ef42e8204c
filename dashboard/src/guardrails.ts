/// <reference lib="dom" />
// Guardrails edited in a form: the account's (every mailbox inherits them) or one mailbox's own.
// `PUT /oversight/guardrails` replaces a scope's guardrails, so the form sends all of them; what
// it refuses is the API's own error, shown with its code.
import { useState } from "preact/hooks";
import type { MailroomClient } from "../../clients/mailroom/src/index.ts";
import type { Guardrails, GuardrailsList, GuardrailsRequest } from "../../clients/mailroom/src/types.ts";
import { useLoad } from "./load.ts";
import { ErrorBox, html } from "./view.ts";

type Fields = Record<string, string>;

function fieldsOf(g: Guardrails | undefined): Fields {
  const text = (value: number | null | undefined) => value === null || value === undefined ? "" : String(value);
  return {
    approval: g?.approval ?? "",
    // No allow list (anyone) is not an empty one (nobody): the form says which.
    allow_mode: g?.allow_recipients ? "listed" : "anyone",
    allow_recipients: (g?.allow_recipients ?? []).join("\n"),
    deny_recipients: (g?.deny_recipients ?? []).join("\n"),
    max_recipients_per_request: text(g?.max_recipients_per_request),
    approval_ttl_hours: text(g?.approval_ttl_hours),
    max_agent_messages_per_day: text(g?.max_agent_messages_per_day),
    approval_requires_aal2: g?.approval_requires_aal2 ? "yes" : "",
  };
}

/**
 * The request the form's fields make: PUT replaces a scope's guardrails, so what the form does not
 * show (the account's approval notices) is sent back as it was. A number left empty is "no limit".
 */
function requestOf(f: Fields, current: Guardrails | undefined, config: string | undefined): GuardrailsRequest {
  const lines = (value: string) => value.split(/[\n,]/).map((l) => l.trim()).filter((l) => l !== "");
  const number = (value: string) => (value.trim() === "" ? null : Number(value));
  return {
    ...(config ? { config } : { approval_notify_config: current?.approval_notify_config_id ?? null }),
    approval: (f.approval || (config ? null : "off")) as GuardrailsRequest["approval"],
    allow_recipients: f.allow_mode === "listed" ? lines(f.allow_recipients) : null,
    deny_recipients: lines(f.deny_recipients),
    max_recipients_per_request: number(f.max_recipients_per_request),
    approval_ttl_hours: number(f.approval_ttl_hours),
    max_agent_messages_per_day: number(f.max_agent_messages_per_day),
    // Unticked on a mailbox: as the account says.
    approval_requires_aal2: f.approval_requires_aal2 === "yes" ? true : config ? null : false,
  };
}

/** The account's guardrails, or with `config` (its id) that mailbox's own. */
export function GuardrailsForm({ api, config }: { api: MailroomClient; config?: string }) {
  const [version, setVersion] = useState(0);
  const list = useLoad<GuardrailsList>(() => api.oversight.guardrails(), [version]);
  const [edits, setEdits] = useState<Fields>({});
  const [saving, setSaving] = useState<{ busy: boolean; error?: unknown; saved?: boolean }>({ busy: false });
  if (!list.data) return html`<${ErrorBox} error=${list.error} />`;
  const current = config ? list.data.configs.find((g) => g.config_id === config) : list.data.account;
  const fields = { ...fieldsOf(current), ...edits };
  const set = (name: string) => (e: Event) => {
    const target = e.target as HTMLInputElement;
    setEdits((f) => ({ ...f, [name]: target.type === "checkbox" ? (target.checked ? "yes" : "") : target.value }));
  };
  const save = async (e: Event) => {
    e.preventDefault();
    setSaving({ busy: true });
    try {
      await api.oversight.setGuardrails(requestOf(fields, current, config));
      setSaving({ busy: false, saved: true });
      setEdits({});
      setVersion((v) => v + 1);
    } catch (error) {
      setSaving({ busy: false, error });
    }
  };
  const numberField = (name: string, label: string) =>
    html`<label>${label}<input type="number" min="0" name=${name} value=${fields[name]} onInput=${set(name)}
      placeholder=${config ? "the account's" : "no limit"} /></label>`;
  const listField = (name: string, label: string) =>
    html`<label>${label}<textarea name=${name} rows="3" value=${fields[name]} onInput=${set(name)}
      placeholder="ada@example.com, example.org, *.example.net"></textarea></label>`;
  return html`
    <form class="filters" onSubmit=${save} aria-label=${config ? "This mailbox's guardrails" : "Account guardrails"}>
      <label>Approval
        <select name="approval" value=${fields.approval} onChange=${set("approval")}>
          ${config ? html`<option value="">as the account says</option>` : null}
          <option value="off">off: nothing waits</option>
          <option value="agents">agents: what agents send waits for you</option>
          <option value="always">always: every send waits for you</option>
        </select>
      </label>
      <label>Who may be mailed
        <select name="allow_mode" value=${fields.allow_mode} onChange=${set("allow_mode")}>
          <option value="anyone">anyone not denied</option>
          <option value="listed">only the recipients listed (none listed: nobody)</option>
        </select>
      </label>
      ${fields.allow_mode === "listed" ? listField("allow_recipients", "Only these recipients (one per line)") : null}
      ${listField("deny_recipients", "Never these recipients")}
      ${numberField("max_recipients_per_request", "Most recipients per request")}
      ${numberField("max_agent_messages_per_day", "Most messages from agents per day")}
      ${numberField("approval_ttl_hours", "Hours a send waits for a decision")}
      <label><input type="checkbox" name="approval_requires_aal2" checked=${fields.approval_requires_aal2 === "yes"}
        onChange=${set("approval_requires_aal2")} /> Deciding needs multi-factor sign-in</label>
      <button type="submit" disabled=${saving.busy}>Save guardrails</button>
    </form>
    <${ErrorBox} error=${saving.error} />
    ${saving.saved ? html`<p class="notice" role="status">Guardrails saved.</p>` : null}
  `;
}
