/// <reference lib="dom" />
// Batches (send-bulk): each batch's progress, a batch's counts updating while the worker drains
// it (polled every 2 s while anything is left to send), and cancel.
import { useEffect, useState } from "preact/hooks";
import type { MailroomClient } from "../../clients/mailroom/src/index.ts";
import type { BatchList, BatchStatus } from "../../clients/mailroom/src/types.ts";
import { usePages } from "./load.ts";
import { ErrorBox, html, MoreButton, When } from "./view.ts";

const POLL_MS = 2_000;

/** Messages of a batch still on their way (not in a final state). */
export function left(b: BatchStatus): number {
  const c = b.counts;
  return c.queued + c.scheduled + c.sending + c.deferred + c.pending_approval;
}

function done(b: BatchStatus): number {
  return b.total - left(b);
}

export function BatchesPage({ api }: { api: MailroomClient }) {
  const list = usePages<BatchList>(
    () => api.bulk.list({ limit: 50 }),
    (last) => last.next_before ? () => api.bulk.list({ limit: 50, before: last.next_before! }) : null,
    [],
  );
  const { error, loading } = list;
  const batches = list.pages.flatMap((p) => p.batches);
  return html`
    <h2>Batches</h2>
    <${ErrorBox} error=${error} />
    ${loading
      ? html`<p class="loading">Loading…</p>`
      : !batches.length
      ? html`<p class="empty">No batches yet. <code>POST /functions/v1/send-bulk</code> (or the
          <code>send_bulk_email</code> tool) queues up to 10,000 messages; their progress shows here.</p>`
      : html`
        <table>
          <thead>
            <tr>
              <th scope="col">Created</th>
              <th scope="col">Messages</th>
              <th scope="col">Sent</th>
              <th scope="col">Failed</th>
              <th scope="col">Left</th>
            </tr>
          </thead>
          <tbody>${batches.map((b) =>
            html`
              <tr data-id=${b.batch_id}>
                <td><a href=${`#/batches/${b.batch_id}`}><${When} at=${b.created_at} /></a></td>
                <td>${b.total}</td>
                <td>${b.counts.sent}</td>
                <td>${b.counts.failed}</td>
                <td>${left(b)}</td>
              </tr>
            `
          )}</tbody>
        </table>
        <${MoreButton} list=${list} label="Older batches" />
      `}
  `;
}

export function BatchView({ api, id }: { api: MailroomClient; id: string }) {
  const [batch, setBatch] = useState<BatchStatus | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [cancel, setCancel] = useState<{ busy: boolean; error?: unknown; cancelled?: number }>({ busy: false });
  useEffect(() => {
    let live = true;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const poll = async () => {
      try {
        const status = await api.bulk.status(id);
        if (!live) return;
        setBatch(status);
        setError(null);
        if (left(status) > 0) timer = setTimeout(poll, POLL_MS);
      } catch (e) {
        if (!live) return;
        setError(e);
        // A refusal (gone, not yours, signed out) will not change by asking again; an outage may.
        const status = (e as { status?: number }).status ?? 0;
        if (status === 0 || status >= 500 || status === 429) timer = setTimeout(poll, POLL_MS * 2);
      }
    };
    poll();
    return () => {
      live = false;
      clearTimeout(timer);
    };
  }, [id, cancel.cancelled]);
  const doCancel = async () => {
    setCancel({ busy: true });
    try {
      const { cancelled } = await api.bulk.cancel(id);
      setCancel({ busy: false, cancelled });
    } catch (e) {
      setCancel({ busy: false, error: e });
    }
  };
  if (!batch) {
    return html`<h2>Batch</h2><${ErrorBox} error=${error} />${error ? null : html`<p class="loading">Loading…</p>`}`;
  }
  const c = batch.counts;
  return html`
    <h2>Batch of ${batch.total}</h2>
    <label>Progress: <span data-testid="progress">${done(batch)} of ${batch.total}</span> done
      <progress class="progress" max=${batch.total} value=${done(batch)}></progress></label>
    <${ErrorBox} error=${error} />
    <dl>
      <dt>Created</dt><dd><${When} at=${batch.created_at} /></dd>
      ${batch.scheduled_at
        ? html`
          <dt>Scheduled</dt>
          <dd>
            <${When} at=${batch.scheduled_at} />
          </dd>
        `
        : null}
      <dt>Sent</dt><dd data-count="sent">${c.sent}</dd>
      <dt>Failed</dt><dd>${c.failed}</dd>
      <dt>Waiting</dt><dd>${c.queued + c.scheduled + c.deferred} (sending now: ${c.sending})</dd>
      <dt>Held for approval</dt><dd>${c.pending_approval}</dd>
      <dt>Cancelled</dt><dd>${c.cancelled}</dd>
      ${batch.rate_per_minute !== null
        ? html`
          <dt>Rate</dt>
          <dd>${batch.rate_per_minute} per minute</dd>
        `
        : null}
      ${batch.top_errors.length
        ? html`
          <dt>Top errors</dt>
          <dd>${batch.top_errors.map((e) => html`<div><code>${e.error_class}</code> × ${e.count}</div>`)}</dd>
        `
        : null}
      ${batch.waiting?.length
        ? html`
          <dt>Why it waits</dt>
          <dd>${batch.waiting.map((w) =>
            html`<div>${w.count} × ${w.reason.replaceAll("_", " ")}${w.detail ? `: ${w.detail}` : ""}</div>`
          )}</dd>
        `
        : null}
    </dl>
    ${left(batch) > 0
      ? html`<div class="actions"><button class="danger" onClick=${doCancel} disabled=${cancel.busy}>
          Cancel what has not gone</button></div>`
      : html`<p class="notice" role="status">Done: nothing is left to send.</p>`}
    ${cancel.cancelled !== undefined ? html`<p class="notice" role="status">Cancelled ${cancel.cancelled}.</p>` : null}
    <${ErrorBox} error=${cancel.error} />
    <p><a href=${`#/messages?batch_id=${id}`}>Its messages</a> · <a href="#/batches">All batches</a></p>
  `;
}
