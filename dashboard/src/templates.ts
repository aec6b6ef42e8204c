/// <reference lib="dom" />
// Templates: the user's own and the starter ones; edit one (the API checks it as a send would),
// and preview it with sample data exactly as a send renders it (POST /templates/:ref/preview).
import { useState } from "preact/hooks";
import type { MailroomClient } from "../../clients/mailroom/src/index.ts";
import type { Template, TemplatePreview } from "../../clients/mailroom/src/types.ts";
import { useLoad } from "./load.ts";
import { ErrorBox, html, Preview } from "./view.ts";

export function TemplatesPage({ api }: { api: MailroomClient }) {
  const { data, error, loading } = useLoad<Template[]>(() => api.templates.list(), []);
  return html`
    <h2>Templates</h2>
    <${ErrorBox} error=${error} />
    ${loading
      ? html`<p class="loading">Loading…</p>`
      : !data?.length
      ? html`<p class="empty">No templates. Create one with <code>POST /functions/v1/templates</code>.</p>`
      : html`
        <table>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Subject</th>
              <th scope="col">Variables</th>
              <th scope="col">Kind</th>
            </tr>
          </thead>
          <tbody>${data.map((t) =>
            html`
              <tr data-id=${t.id}>
                <td><a href=${`#/templates/${t.id}`}>${t.name}</a></td>
                <td>${t.subject ?? ""}</td>
                <td>${(t.required_variables ?? []).join(", ")}</td>
                <td>${t.starter ? "starter (read-only)" : "yours"}</td>
              </tr>
            `
          )}</tbody>
        </table>
      `}
  `;
}

export function TemplateView({ api, id }: { api: MailroomClient; id: string }) {
  const [version, setVersion] = useState(0);
  const { data: t, error, loading } = useLoad<Template>(() => api.templates.get(id), [id, version]);
  const [edit, setEdit] = useState<Record<string, string>>({});
  const [saving, setSaving] = useState<{ busy: boolean; error?: unknown; saved?: boolean }>({ busy: false });
  const [sample, setSample] = useState("{}");
  const [preview, setPreview] = useState<{ result?: TemplatePreview; error?: unknown }>({});
  if (loading && !t) return html`<p class="loading">Loading…</p>`;
  if (error || !t) return html`<h2>Template</h2><${ErrorBox} error=${error} /><a href="#/templates">Templates</a>`;
  const value = (name: "subject" | "html" | "text") => edit[name] ?? t[name] ?? "";
  const save = async (e: Event) => {
    e.preventDefault();
    setSaving({ busy: true });
    try {
      await api.templates.update(t.id, {
        subject: value("subject") || null,
        html: value("html") || null,
        text: value("text") || null,
      });
      setSaving({ busy: false, saved: true });
      setEdit({});
      setVersion((v) => v + 1);
    } catch (error) {
      setSaving({ busy: false, error });
    }
  };
  const runPreview = async () => {
    try {
      const data = JSON.parse(sample || "{}");
      setPreview({ result: await api.templates.preview(t.id, data) });
    } catch (error) {
      setPreview({
        error: error instanceof SyntaxError ? new Error(`Sample data is not JSON: ${error.message}`) : error,
      });
    }
  };
  const area = (name: "subject" | "html" | "text", label: string, rows: number) =>
    html`<label>${label}<textarea name=${name} rows=${rows} readonly=${t.starter}
      onInput=${(e: Event) => setEdit((x) => ({ ...x, [name]: (e.target as HTMLTextAreaElement).value }))}
      value=${value(name)}></textarea></label>`;
  return html`
    <h2>${t.name}</h2>
    ${t.description ? html`<p>${t.description}</p>` : null}
    ${t.starter
      ? html`<p class="notice">A starter template: shared and read-only. Create your own to change it.</p>`
      : null}
    <form class="editor" onSubmit=${save} aria-label="Template">
      ${area("subject", "Subject", 1)}
      ${area("html", "HTML", 10)}
      ${area("text", "Text", 6)}
      ${t.starter ? null : html`<button type="submit" disabled=${saving.busy}>Save</button>`}
    </form>
    <${ErrorBox} error=${saving.error} />
    ${saving.saved ? html`<p class="notice" role="status">Saved.</p>` : null}
    <h3>Preview</h3>
    <label>Sample data (JSON; needs ${(t.required_variables ?? []).join(", ") || "nothing"})
      <textarea rows="4" value=${sample} onInput=${(e: Event) =>
        setSample((e.target as HTMLTextAreaElement).value)}></textarea>
    </label>
    <div class="actions"><button type="button" onClick=${runPreview} disabled=${Object.keys(edit).length > 0}>
      Preview</button>${Object.keys(edit).length > 0
        ? html`<span>Save first: the preview renders the saved template.</span>`
        : null}</div>
    <${ErrorBox} error=${preview.error} />
    ${preview.result
      ? html`
        <dl>
          <dt>Subject</dt>
          <dd data-testid="preview-subject">${preview.result.subject ?? ""}</dd>
        </dl>
                ${preview.result.text ? html`<pre>${preview.result.text}</pre>` : null}
                ${preview.result.html
                  ? html`<${Preview} body=${preview.result.html} title="Template preview" />`
                  : null}
      `
      : null}
    <p><a href="#/templates">Templates</a></p>
  `;
}
