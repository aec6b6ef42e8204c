/// <reference lib="dom" />
// Overview: what went out over a range, from GET /email-analytics (computed in Postgres): totals,
// success rate, latency percentiles, sent/failed/unknown per hour or day as a chart (SVG, with
// the same numbers in a table beside it), and breakdowns by config, recipient domain, error
// code and agent.
import { useState } from "preact/hooks";
import type { MailroomClient } from "../../clients/mailroom/src/index.ts";
import type { AnalyticsSummary } from "../../clients/mailroom/src/types.ts";
import { useLoad } from "./load.ts";
import { ErrorBox, html } from "./view.ts";

const RANGES: Record<string, { label: string; days: number; interval: "hour" | "day" }> = {
  "24h": { label: "Last 24 hours", days: 1, interval: "hour" },
  "7d": { label: "Last 7 days", days: 7, interval: "day" },
  "30d": { label: "Last 30 days", days: 30, interval: "day" },
};
const BREAKDOWNS = ["config", "recipient_domain", "error_code", "agent_context.agent"];
const BREAKDOWN_TITLES: Record<string, string> = {
  config: "By config",
  recipient_domain: "By recipient domain",
  error_code: "By error code",
  "agent_context.agent": "By agent",
};

type Bucket = AnalyticsSummary["series"][number];

/** Stacked bars: sent, failed, unknown per bucket. Decorative for screen readers: the table has the numbers. */
function Chart({ series, interval, timeZone }: { series: Bucket[]; interval: "hour" | "day"; timeZone: string }) {
  const width = 720;
  const height = 180;
  const max = Math.max(1, ...series.map((b) => b.total));
  const step = width / Math.max(1, series.length);
  const bar = Math.max(1, step * 0.7);
  const y = (n: number) => (n / max) * (height - 20);
  const label = (start: string) =>
    interval === "hour"
      ? new Date(start).toLocaleTimeString([], { hour: "2-digit", timeZone })
      : new Date(start).toLocaleDateString([], { month: "short", day: "numeric", timeZone });
  return html`
    <svg class="chart" viewBox=${`0 0 ${width} ${height + 20}`} role="img"
      aria-label=${`Sent, failed and unknown per ${interval}; the numbers are in the table below`}>
        ${series.map((b, i) => {
          const x = i * step + (step - bar) / 2;
          const sent = y(b.sent);
          const failed = y(b.failed);
          const unknown = y(b.unknown);
          return html`<g>
        <rect class="bar-sent" x=${x} y=${height - sent} width=${bar} height=${sent} />
        <rect class="bar-failed" x=${x} y=${height - sent - failed} width=${bar} height=${failed} />
        <rect class="bar-unknown" x=${x} y=${height - sent - failed - unknown} width=${bar} height=${unknown} />
        ${
            series.length <= 31
              ? html`<text x=${x + bar / 2} y=${height + 14} text-anchor="middle">${label(b.start)}</text>`
              : null
          }
      </g>`;
        })}
      </svg>
  `;
}

function percent(rate: number | null): string {
  return rate === null ? "—" : `${(rate * 100).toFixed(1)} %`;
}

function ms(value: number | null): string {
  return value === null ? "—" : value < 1000 ? `${Math.round(value)} ms` : `${(value / 1000).toFixed(1)} s`;
}

export function OverviewPage({ api }: { api: MailroomClient }) {
  const [range, setRange] = useState("7d");
  const [tz, setTz] = useState(Intl.DateTimeFormat().resolvedOptions().timeZone);
  const { data: s, error, loading } = useLoad<AnalyticsSummary>(() => {
    const { days, interval } = RANGES[range];
    const from = new Date(Date.now() - days * 86_400_000).toISOString();
    return api.analytics.summary({ from, tz, interval, group_by: BREAKDOWNS });
  }, [range, tz]);
  return html`
    <h2>Overview</h2>
    <form class="filters" onSubmit=${(e: Event) => e.preventDefault()}>
      <label>Range
        <select value=${range} onChange=${(e: Event) => setRange((e.target as HTMLSelectElement).value)}>
          ${Object.entries(RANGES).map(([key, r]) => html`<option value=${key}>${r.label}</option>`)}
        </select>
      </label>
      <label>Time zone
        <input list="zones" value=${tz} onChange=${(e: Event) => setTz((e.target as HTMLInputElement).value.trim())} />
        <datalist id="zones">${Intl.supportedValuesOf("timeZone").map((z) => html`<option value=${z} />`)}</datalist>
      </label>
    </form>
    <${ErrorBox} error=${error} />
    ${loading && !s
      ? html`<p class="loading">Loading…</p>`
      : !s
      ? null
      : s.total === 0
      ? html`<p class="empty">Nothing sent in this range yet. Send a mail with <code>POST /functions/v1/send-email</code>
          (or give an agent the MCP server) and it is counted here.</p>`
      : html`
        <dl class="totals" data-testid="totals">
          <dt>Messages</dt>
          <dd data-total="total">${s.total}</dd>
          <dt>Sent</dt>
          <dd data-total="sent">${s.totals.sent ?? 0}</dd>
          <dt>Failed</dt>
          <dd data-total="failed">${s.totals.failed ?? 0}</dd>
          <dt>Success rate</dt>
          <dd>${percent(s.success_rate)}</dd>
          <dt>Latency p50 / p90 / p99</dt>
          <dd>${ms(s.latency_ms.p50)} / ${ms(s.latency_ms.p90)} / ${ms(s.latency_ms.p99)}</dd>
        </dl>
        <${Chart} series=${s.series} interval=${s.range.interval} timeZone=${s.range.tz} />
        <p class="legend"><span class="key-sent">■ sent</span> <span class="key-failed">■ failed</span>
          <span class="key-unknown">■ unknown</span></p>
        <table data-testid="series">
          <caption>Per ${s.range.interval}</caption>
          <thead>
            <tr>
              <th scope="col">From</th>
              <th scope="col">Total</th>
              <th scope="col">Sent</th>
              <th scope="col">Failed</th>
              <th scope="col">Unknown</th>
            </tr>
          </thead>
          <tbody>${s.series.filter((b) => b.total > 0).map((b) =>
            html`
              <tr>
                <td>${new Date(b.start).toLocaleString([], { timeZone: s.range.tz })}</td>
                <td>${b.total}</td>
                <td>${b.sent}</td>
                <td>${b.failed}</td>
                <td>${b.unknown}</td>
              </tr>
            `
          )}</tbody>
        </table>
        ${BREAKDOWNS.filter((k) => s.breakdowns[k]?.length).map((k) =>
          html`
            <table>
              <caption>${BREAKDOWN_TITLES[k]}</caption>
              <thead>
                <tr>
                  <th scope="col">${k === "agent_context.agent" ? "Agent" : "Key"}</th>
                  <th scope="col">Total</th>
                  <th scope="col">Sent</th>
                  <th scope="col">Failed</th>
                </tr>
              </thead>
              <tbody>${s.breakdowns[k].map((row) =>
                html`
                  <tr>
                    <td>${row.name ?? row.key ?? "(none)"}</td>
                    <td>${row.total}</td>
                    <td>${row.sent}</td>
                    <td>${row.failed}</td>
                  </tr>
                `
              )}</tbody>
            </table>
          `
        )}
      `}
  `;
}
