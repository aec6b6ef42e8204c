// The tools agents get, defined once: name, description written for a model, input schema
// (built from the zod schemas the functions validate with), annotations, and the function
// call each tool stands for. The MCP endpoint runs these calls in-process through the
// functions' own handlers, so a tool validates, limits, audits and fails exactly like the
// HTTP API; other clients can make the same calls over HTTP.
import { z } from "zod";
import type { CallSpec } from "./calls.ts";
import { inputJsonSchema } from "../json_schema.ts";
import { sendBulkRequest, sendEmailRequest } from "../schemas.ts";
import { AUDIT_STATUSES, DEFAULT_BREAKDOWNS, MAX_PAGE_SIZE } from "../analytics/params.ts";

/** MCP tool annotations (hints for clients deciding what needs the user's approval). */
export interface ToolAnnotations {
  readOnlyHint?: boolean;
  destructiveHint?: boolean;
  idempotentHint?: boolean;
  openWorldHint?: boolean;
}

/** A tool: what a model sees, and the call it makes. */
export interface AgentTool {
  name: string;
  title: string;
  description: string;
  input: z.ZodObject;
  annotations: ToolAnnotations;
  /** Does the tool send mail (its calls get `agent_context.via`, `tool` and `client`)? */
  sends: boolean;
  /** The function call(s) it makes (see calls.ts). */
  calls: CallSpec[];
  /** A short text for the model about a successful result. */
  summarize(result: Record<string, unknown>): string;
}

const idempotencyKey = z.string().min(1).max(255).regex(/^[\x21-\x7e]+$/).optional().describe(
  "Any unique string (e.g. a UUID) for this send. Retrying with the same key and arguments returns the first " +
    "result instead of sending again; reuse it whenever you retry after a timeout or an unclear answer.",
);
const uuid = (what: string) => z.string().uuid().describe(what);

const READ: ToolAnnotations = {
  readOnlyHint: true,
  destructiveHint: false,
  idempotentHint: true,
  openWorldHint: false,
};
const SEND: ToolAnnotations = {
  readOnlyHint: false,
  destructiveHint: true,
  idempotentHint: false,
  openWorldHint: true,
};

const list = (values: unknown) => Array.isArray(values) ? values.join(",") : undefined;

const OUTCOMES = "A result of `sent` means the SMTP server accepted the message for at least one recipient " +
  "(`rejected` and `deferred` list the others); `queued` or `scheduled` means it waits in the outbox and goes out " +
  "later (follow it by id); `unknown` means the connection ended after the message was handed over, so it may " +
  "have been delivered: do not resend it without asking the user. `suppressed` lists recipients skipped because " +
  "they unsubscribed, bounced or were suppressed by the user: they never get mail from this account, whoever " +
  "sends it; do not try another way to reach them (a result `suppressed` means nobody was left: nothing was sent).";

const GUARDRAILS = "The account owner's guardrails may refuse a send (`recipient_denied`, " +
  "`recipient_cap_exceeded`, `sending_stopped`, `agent_daily_cap_reached`): only the owner can change them, so " +
  "never repeat a refused call or work around it; the refusal's text says what to do instead. A send may also be " +
  "held for the owner's approval (`pending_approval`): it is not sent, do not send it again. `dry_run: true` " +
  "checks and renders without sending.";

/** What a dry run found, for the model: nothing was sent either way. */
function dryRunSummary(r: Record<string, unknown>): string {
  const refusal = r.refusal as { code?: string; message?: string } | undefined;
  return r.outcome === "would_be_refused"
    ? `Dry run, nothing sent: this would be refused (${refusal?.code}): ${refusal?.message}`
    : r.outcome === "would_wait_for_approval"
    ? "Dry run, nothing sent: this would wait for the account owner's approval."
    : "Dry run, nothing sent: this would be sent.";
}

/** What send_bulk_email left out: invalid entries, and repeats of emails already sent (never to be sent again). */
function skippedSummary(skipped: { code?: string }[] | undefined): string {
  if (!skipped?.length) return "";
  const repeats = skipped.filter((s) => s.code === "duplicate_send").length;
  const invalid = skipped.length - repeats;
  return [
    invalid > 0 ? `; skipped ${invalid} invalid entries` : "",
    repeats > 0
      ? `; left out ${repeats} entries that repeat an email already sent or queued (duplicate_send: do not send ` +
        "them again unless the user asks)"
      : "",
  ].join("");
}

/** Every tool, in the order clients list them. */
export const AGENT_TOOLS: AgentTool[] = [
  {
    name: "send_email",
    title: "Send an email",
    description: "Send one email now (or at `scheduled_at`, up to 30 days ahead) through the user's own SMTP " +
      "server, from the address of their SMTP config (the default one unless `config` names another). Give " +
      "`subject` with `text` and/or `html`, or a `template` name with its `data` (list_email_templates shows them " +
      "and the variables each needs). Recipients are addresses or `Name <address>`, at most 1,000 in total. " +
      OUTCOMES + " Errors come back as text starting with a stable code, e.g. `template_data_missing`. " +
      "The same email (same recipients, subject, body, attachments) sent again within the config's duplicate window " +
      "(default 10 minutes) is refused as `duplicate_send`: it already went. Attach files as " +
      '`{"id": "..."}` (store_attachment), `{"url": "https://..."}` or `{filename, content}` in base64. ' + GUARDRAILS,
    input: z.strictObject({ ...sendEmailRequest.shape, idempotency_key: idempotencyKey }),
    annotations: SEND,
    sends: true,
    calls: [{ fn: "send-email", method: "POST", body: true }],
    summarize: (r) =>
      r.dry_run
        ? dryRunSummary(r)
        : r.status === "pending_approval"
        ? `Held for approval (id ${r.id}). ${(r.approval as { message?: string })?.message ?? ""}`
        : r.status === "suppressed"
        ? `Not sent (id ${r.id}): every recipient is on the user's suppression list (${list(r.suppressed)}). ` +
          "They unsubscribed, bounced or were suppressed: do not try to reach them another way."
        : r.status === "sent"
        ? `Sent (id ${r.id}, Message-ID ${r.message_id}). Accepted: ${list(r.accepted) || "none"}.` +
          ((r.rejected as string[])?.length ? ` Rejected: ${list(r.rejected)}.` : "") +
          ((r.deferred as string[])?.length ? ` Deferred: ${list(r.deferred)}.` : "") +
          ((r.suppressed as string[])?.length ? ` Skipped as suppressed: ${list(r.suppressed)}.` : "")
        : `${String(r.status)[0].toUpperCase()}${String(r.status).slice(1)} for ${r.scheduled_at} (id ${r.id}).`,
  },
  {
    name: "send_bulk_email",
    title: "Send an email to many recipients",
    description: "Queue up to 10,000 personalised emails in one call: `recipients` (each an address or " +
      "{email, name?, data?}, its data merged over the shared `data`) with shared content (`template` + `data`, or " +
      "`subject` + `text`/`html`), or `messages` (complete send_email bodies). Everything is checked first; bad " +
      "entries are listed by index (or skipped with `skip_invalid: true`). The messages are `queued` (or " +
      "`scheduled` with `scheduled_at`) and go out in the background within the SMTP config's limits: follow " +
      "them with get_batch_status, stop them with cancel. " + GUARDRAILS,
    input: z.strictObject({ ...sendBulkRequest.shape, idempotency_key: idempotencyKey }),
    annotations: SEND,
    sends: true,
    calls: [{ fn: "send-bulk", method: "POST", body: true }],
    summarize: (r) =>
      r.dry_run
        ? `${dryRunSummary(r)} ${r.count} message(s) would be queued.`
        : (Number(r.pending_approval) > 0
          ? `Held ${r.pending_approval} message(s) for approval as batch ${r.batch_id}. ` +
            ((r.approval as { message?: string })?.message ?? "")
          : `Queued ${r.queued} message(s) as batch ${r.batch_id}` +
            (r.scheduled_at ? `, to start at ${r.scheduled_at}` : "") +
            skippedSummary(r.skipped as { code?: string }[] | undefined) +
            ((r.suppressed as string[])?.length
              ? `. ${(r.suppressed as string[]).length} recipient(s) are on the suppression list and will be ` +
                `skipped: ${list(r.suppressed)}`
              : "") +
            ". Use get_batch_status to follow it."),
  },
  {
    name: "get_batch_status",
    title: "Follow a bulk send",
    description: "Progress of a batch from send_bulk_email: messages per status (queued, sending, sent, failed, " +
      "unknown, cancelled, ...), first and last send time, rate per minute and the most frequent errors.",
    input: z.strictObject({ batch_id: uuid("The batch_id send_bulk_email returned") }),
    annotations: READ,
    sends: false,
    calls: [{ fn: "send-bulk", method: "GET", path: "/{batch_id}" }],
    summarize: (r) => `Batch ${r.batch_id}: ${r.total} messages, ${JSON.stringify(r.counts)}.`,
  },
  {
    name: "cancel",
    title: "Cancel a scheduled or queued send",
    description: "Cancel what has not started: one scheduled or queued message (`id`, from send_email) or every " +
      "message of a batch that has not started (`batch_id`). A message already being sent or finished cannot be " +
      "cancelled (`not_cancellable`).",
    input: z.strictObject({
      id: uuid("The id of a scheduled or queued message").optional(),
      batch_id: uuid("The batch_id of a bulk send").optional(),
    }),
    annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false },
    sends: false,
    calls: [
      { fn: "send-bulk", method: "POST", path: "/{batch_id}/cancel", when: "batch_id" },
      { fn: "send-email", method: "POST", path: "/{id}/cancel", when: "id" },
    ],
    summarize: (r) =>
      r.batch_id ? `Cancelled ${r.cancelled} message(s) of batch ${r.batch_id}.` : `Cancelled message ${r.id}.`,
  },
  {
    name: "list_smtp_configs",
    title: "List SMTP configs",
    description: "The user's SMTP configurations (the servers mail goes out through): name, sender address, " +
      "whether it is the default, active, and `needs_attention` when its credentials were refused. Passwords are " +
      "never shown.",
    input: z.strictObject({}),
    annotations: READ,
    sends: false,
    calls: [{ fn: "smtp-configs", method: "GET" }],
    summarize: (r) =>
      ((r.configs as Record<string, unknown>[]) ?? []).map((c) =>
        `${c.name} <${c.from_email}>${c.is_default ? " (default)" : ""}${c.is_active ? "" : " (inactive)"}` +
        (c.needs_attention ? ` needs attention: ${c.needs_attention}` : "")
      ).join("; ") || "No SMTP configs yet.",
  },
  {
    name: "verify_smtp_config",
    title: "Check an SMTP config",
    description: "Connect to a config's SMTP server, negotiate TLS and log in, then quit; nothing is sent. Use it " +
      "when sends fail with connection or authentication errors. Limited to 10 per minute.",
    input: z.strictObject({ config: z.string().min(1).max(64).describe("The config's name or id") }),
    annotations: { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: true },
    sends: false,
    calls: [{ fn: "smtp-configs", method: "POST", path: "/{config}/verify" }],
    summarize: (r) => `The server answered: TLS ${r.tls ? "on" : "off"}, login ${r.auth ? "accepted" : "not needed"}.`,
  },
  {
    name: "store_attachment",
    title: "Store an attachment",
    description: 'Store a file once and get its id, to attach it to any number of emails as `{"id": "..."}` ' +
      "in send_email or send_bulk_email `attachments` (one upload for a whole batch). Give `url` (an https file, " +
      "fetched once; only public hosts) or `filename` with `content` in base64. The file's real type is checked " +
      "against its name and `content_type`: a mismatch is refused (`attachment_type_mismatch`). Storing the same " +
      "file again returns the same id. Files are kept 30 days, longer while a waiting email needs them.",
    input: z.strictObject({
      url: z.string().max(2048).optional().describe("An https URL of the file (instead of content)"),
      filename: z.string().optional().describe("Its name (required with content; else taken from the URL)"),
      content: z.string().optional().describe("The bytes in standard base64 (instead of url)"),
      content_type: z.string().optional().describe("Its media type, e.g. application/pdf (else detected)"),
    }),
    annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: true, openWorldHint: true },
    sends: false,
    calls: [{ fn: "attachments", method: "POST", body: true }],
    summarize: (r) =>
      `Stored ${r.filename} (${r.content_type}, ${r.size_bytes} bytes) as attachment ${r.id}: attach it with ` +
      `{"id": "${r.id}"} in attachments.`,
  },
  {
    name: "list_attachments",
    title: "List stored attachments",
    description: "The user's stored attachments, newest first: id, name, type, size and when each expires. Attach " +
      'one by its id (`{"id": "..."}` in attachments) instead of sending its bytes again.',
    input: z.strictObject({
      limit: z.number().int().min(1).max(200).optional(),
      cursor: z.string().optional().describe("next_cursor of the previous page"),
    }),
    annotations: READ,
    sends: false,
    calls: [{ fn: "attachments", method: "GET", query: ["limit", "cursor"] }],
    summarize: (r) =>
      ((r.attachments as Record<string, unknown>[]) ?? []).map((a) =>
          `${a.id} ${a.filename} (${a.content_type}, ${a.size_bytes} bytes, expires ${a.expires_at})`
        ).join("\n") + (r.next_cursor ? `\nMore: cursor ${r.next_cursor}` : "") || "No stored attachments.",
  },
  {
    name: "suppress_recipient",
    title: "Stop mailing an address",
    description: "Put addresses on the user's suppression list when someone asks not to be emailed again (or an " +
      "address is wrong): no send from this account reaches them afterwards, whoever sends it. Only the user can " +
      "take an address off the list.",
    input: z.strictObject({
      addresses: z.array(z.string().min(3).max(320)).min(1).max(1000).describe("The addresses to stop mailing"),
      reason: z.enum(["unsubscribed", "complaint", "manual"]).optional().describe(
        "unsubscribed (they asked), complaint, or manual (default)",
      ),
      source: z.string().max(500).optional().describe("Why, for the user's records (e.g. 'replied STOP')"),
    }),
    annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: true, openWorldHint: false },
    sends: false,
    calls: [{ fn: "suppressions", method: "POST", body: true }],
    summarize: (r) =>
      `Suppressed: ${((r.suppressions as { address: string }[]) ?? []).map((s) => s.address).join(", ")} ` +
      `(${r.added} new). No mail from this account goes to them.`,
  },
  {
    name: "list_email_templates",
    title: "List email templates",
    description: "The templates send_email and send_bulk_email can use (the user's own and shared starter ones), " +
      "with the variables each declares; pass a template's name as `template` and its variables in `data`.",
    input: z.strictObject({}),
    annotations: READ,
    sends: false,
    calls: [{ fn: "templates", method: "GET" }],
    summarize: (r) =>
      ((r.templates as Record<string, unknown>[]) ?? []).map((t) =>
        `${t.name}${t.starter ? " (starter)" : ""}${t.description ? `: ${t.description}` : ""}`
      ).join("; ") || "No templates.",
  },
  {
    name: "get_email_analytics",
    title: "Email analytics",
    description: "What was sent over a period: totals per status, success rate, delivery latency, a series per " +
      "hour or day, and breakdowns (by config, recipient domain, error code, batch, or agent_context.<key>). " +
      "Defaults to the last 30 days in UTC.",
    input: z.strictObject({
      from: z.string().optional().describe("Start: a date (2026-11-01) or a timestamp with a zone"),
      to: z.string().optional().describe("End (exclusive); now when omitted"),
      tz: z.string().optional().describe("IANA time zone for dates and buckets, e.g. Europe/Paris"),
      interval: z.enum(["hour", "day"]).optional(),
      group_by: z.array(z.string()).max(8).optional().describe(
        `Breakdowns: ${DEFAULT_BREAKDOWNS.join(", ")} or agent_context.<key>`,
      ),
      config: z.string().optional().describe("Only this SMTP config (name or id)"),
      status: z.array(z.enum(AUDIT_STATUSES)).optional(),
      batch_id: z.string().uuid().optional(),
      template: z.string().optional().describe("Only sends of this template (name or id)"),
    }),
    annotations: READ,
    sends: false,
    calls: [{
      fn: "email-analytics",
      method: "GET",
      query: ["from", "to", "tz", "interval", "group_by", "config", "status", "batch_id", "template"],
    }],
    summarize: (r) =>
      `${r.total} sends from ${(r.range as Record<string, string>)?.from} to ${
        (r.range as Record<string, string>)?.to
      }: ${JSON.stringify(r.totals)}; success rate ${r.success_rate ?? "n/a"}.`,
  },
  {
    name: "list_sent_messages",
    title: "List sent messages",
    description: "The user's sent, failed, queued and scheduled messages, newest first, with recipients, subject, " +
      "status, error code and message id. Pass `cursor` from the previous page to read further.",
    input: z.strictObject({
      from: z.string().optional(),
      to: z.string().optional(),
      status: z.array(z.enum(AUDIT_STATUSES)).optional(),
      config: z.string().optional(),
      batch_id: z.string().uuid().optional(),
      template: z.string().optional(),
      limit: z.number().int().min(1).max(MAX_PAGE_SIZE).optional(),
      cursor: z.string().optional().describe("next_cursor of the previous page"),
    }),
    annotations: READ,
    sends: false,
    calls: [{
      fn: "email-analytics",
      method: "GET",
      path: "/messages",
      query: ["from", "to", "status", "config", "batch_id", "template", "limit", "cursor"],
    }],
    summarize: (r) =>
      ((r.messages as Record<string, unknown>[]) ?? []).map((m) =>
          `${m.created_at} ${m.status} to ${list(m.to)}: ${m.subject ?? "(no subject)"}` +
          (m.error_code ? ` [${m.error_code}]` : "")
        ).join("\n") + (r.next_cursor ? `\nMore: cursor ${r.next_cursor}` : "") || "No messages.",
  },
];

/** A tool's input as JSON Schema (what the functions accept, from the same zod schemas). */
export function toolInputJsonSchema(tool: AgentTool): Record<string, unknown> {
  return inputJsonSchema(tool.input);
}
