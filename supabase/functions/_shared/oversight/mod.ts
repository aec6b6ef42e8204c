// Human oversight: the guardrails every send passes and the stop button (migration
// 20261206160000_sending_guardrails.sql holds the rules; this is how the functions reach them).
//
// Every send path calls checkSendGuardrails in its own transaction, as the sender: send-email
// (immediate and scheduled), send-bulk at accept, and the outbox worker again before it builds
// each message. The worker's in-flight mark also refuses a stopped config's rows, so a stop
// holds a draining batch between two messages. Loosening a guardrail or lifting a stop needs
// the owner's first-party session: a token with `client_id` (an OAuth client: an agent) gets
// 403 `first_party_session_required`, in the database, whichever way it comes.
import { z } from "zod";
import type { Tx } from "../db.ts";
import { ApiError } from "../http.ts";
import { byRef, findConfig } from "../store/smtp_configs.ts";
import { canonicalAddress, recipientKey } from "../mail/addresses.ts";
import { domainToASCII } from "node:url";

/**
 * A recipient pattern as the database compares it: an address (`ana@example.com`, as
 * {@linkcode recipientKey} writes recipients: lower case, the domain in ASCII), a domain
 * (`example.com`, an IDN as punycode) or its subdomains (`*.example.com`); null when it is none.
 *
 * @example
 * ```ts
 * canonicalPattern("*.Bücher.example"); // "*.xn--bcher-kva.example"
 * ```
 */
export function canonicalPattern(value: string): string | null {
  const text = value.trim();
  if (text.includes("@")) {
    const address = canonicalAddress(text);
    return typeof address === "string" ? recipientKey(address) : null;
  }
  const subdomains = text.startsWith("*.");
  const ascii = domainToASCII(subdomains ? text.slice(2) : text);
  if (!ascii || !/^([a-z0-9_-]+\.)+[a-z0-9_-]+$/.test(ascii)) return null;
  return subdomains ? `*.${ascii}` : ascii;
}

const recipientPattern = z.string().min(1).max(320).transform((value, ctx) => {
  const pattern = canonicalPattern(value);
  if (pattern === null || pattern.length > 320) {
    ctx.addIssue({
      code: "custom",
      message: "must be an address (ana@example.com), a domain (example.com) or its subdomains (*.example.com)",
    });
    return z.NEVER;
  }
  return pattern;
});

/** `PUT /oversight/guardrails`: the whole set for the account, or for one config. */
export const guardrailsRequest = z.strictObject({
  config: z.string().min(1).max(200).optional().describe(
    "A config's name or id; without it, the account's guardrails (which every config inherits)",
  ),
  allow_recipients: z.array(recipientPattern).max(1000).nullable().optional().describe(
    "Only these may be mailed (addresses, domains, *.subdomains); null or absent: no allow list",
  ),
  deny_recipients: z.array(recipientPattern).max(1000).optional().describe(
    "Never mail these (addresses, domains, *.subdomains); the account's and the config's both apply",
  ),
  max_recipients_per_request: z.number().int().min(1).max(100_000).nullable().optional().describe(
    "At most this many recipients (to, cc and bcc) per message, and per send-bulk request",
  ),
  approval: z.enum(["off", "agents", "always"]).nullable().optional().describe(
    "Which sends wait for your approval: off, agents (an OAuth client's token, or the MCP and LangChain tools) or " +
      "always; null or absent on a config: the account's",
  ),
  approval_ttl_hours: z.number().int().min(1).max(720).nullable().optional().describe(
    "How long a send waits for a decision before it expires (default 72)",
  ),
  approval_requires_aal2: z.boolean().nullable().optional().describe(
    "Deciding on sends needs a session with multi-factor authentication (aal2)",
  ),
  approval_notify_config: z.string().min(1).max(200).nullable().optional().describe(
    "Account only: a config (name or id) that mails you a notice, with a link to the approval page, when a send " +
      "waits for you (MAILROOM_APPROVAL_URL must be set); null or absent: no notices",
  ),
  max_agent_messages_per_day: z.number().int().min(0).max(1_000_000).nullable().optional().describe(
    "At most this many messages from agents (OAuth clients' tokens, the agent tools) in any 24 hours; " +
      "apart from the config's SMTP limits",
  ),
});

/** `POST /oversight/stop` and `/oversight/resume`. */
export const stopRequest = z.strictObject({
  config: z.string().min(1).max(200).optional().describe("A config's name or id; without it, the whole account"),
  reason: z.string().max(500).optional().describe("Why (shown to whoever tries to send meanwhile)"),
});

/** One scope's guardrails as the API shows them. */
export interface Guardrails {
  config_id: string | null;
  allow_recipients: string[] | null;
  deny_recipients: string[];
  max_recipients_per_request: number | null;
  approval: "off" | "agents" | "always" | null;
  approval_ttl_hours: number | null;
  approval_requires_aal2: boolean | null;
  max_agent_messages_per_day: number | null;
  approval_notify_config_id: string | null;
  stopped_at: string | null;
  stop_reason: string | null;
  updated_at: string;
}

const COLUMNS = "config_id, allow_recipients, deny_recipients, max_recipients_per_request, approval, " +
  "approval_ttl_hours, approval_requires_aal2, max_agent_messages_per_day, approval_notify_config_id, stopped_at, " +
  "stop_reason, updated_at";

function shown(row: Record<string, unknown>): Guardrails {
  const iso = (value: unknown) => value instanceof Date ? value.toISOString() : value === null ? null : String(value);
  return {
    config_id: (row.config_id as string | null) ?? null,
    allow_recipients: (row.allow_recipients as string[] | null) ?? null,
    deny_recipients: (row.deny_recipients as string[] | null) ?? [],
    max_recipients_per_request: (row.max_recipients_per_request as number | null) ?? null,
    approval: (row.approval as Guardrails["approval"]) ?? null,
    approval_ttl_hours: (row.approval_ttl_hours as number | null) ?? null,
    approval_requires_aal2: (row.approval_requires_aal2 as boolean | null) ?? null,
    max_agent_messages_per_day: (row.max_agent_messages_per_day as number | null) ?? null,
    approval_notify_config_id: (row.approval_notify_config_id as string | null) ?? null,
    stopped_at: iso(row.stopped_at ?? null),
    stop_reason: (row.stop_reason as string | null) ?? null,
    updated_at: iso(row.updated_at) ?? new Date(0).toISOString(),
  };
}

/** The config a request names (404 for anyone else's), or null for the account. */
async function scopeOf(tx: Tx, ref: string | undefined): Promise<string | null> {
  return ref === undefined ? null : (await findConfig(tx, ref)).id;
}

/** The account's guardrails (as they stand, or the defaults: none) and every config's own. */
export async function listGuardrails(tx: Tx): Promise<{ account: Guardrails; configs: Guardrails[] }> {
  const rows = await tx<Record<string, unknown>[]>`
    select ${tx.unsafe(COLUMNS)} from public.sending_guardrails order by config_id nulls first`;
  const account = rows.find((row) => row.config_id === null);
  return {
    account: account ? shown(account) : shown({ config_id: null, deny_recipients: [] }),
    configs: rows.filter((row) => row.config_id !== null).map(shown),
  };
}

/** Replace one scope's guardrails (an agent may only tighten them). */
export async function setGuardrails(tx: Tx, req: z.infer<typeof guardrailsRequest>): Promise<Guardrails> {
  const configId = await scopeOf(tx, req.config);
  if (configId !== null && req.approval_notify_config) {
    throw new ApiError(400, "invalid_request", "approval_notify_config is the account's: set it without config");
  }
  const notifyConfig = req.approval_notify_config ? await scopeOf(tx, req.approval_notify_config) : null;
  const [row] = await tx<Record<string, unknown>[]>`
    select ${tx.unsafe(COLUMNS)} from private.set_sending_guardrails(
      ${configId}::uuid, ${req.allow_recipients ?? null}::text[], ${req.deny_recipients ?? []}::text[],
      ${req.max_recipients_per_request ?? null}::integer, ${req.approval ?? null}::text,
      ${req.approval_ttl_hours ?? null}::integer, ${req.approval_requires_aal2 ?? null}::boolean,
      ${req.max_agent_messages_per_day ?? null}::integer, ${notifyConfig}::uuid)`;
  return shown(row);
}

/** Press the stop button for the account or one config. */
export async function stopSending(tx: Tx, req: z.infer<typeof stopRequest>): Promise<Guardrails> {
  const configId = await scopeOf(tx, req.config);
  const [row] = await tx<Record<string, unknown>[]>`
    select ${tx.unsafe(COLUMNS)} from private.stop_sending(${configId}::uuid, ${req.reason ?? null})`;
  return shown(row);
}

/** Lift a stop (the owner's first-party session only); 409 `not_stopped` when there is none. */
export async function resumeSending(tx: Tx, req: z.infer<typeof stopRequest>): Promise<Guardrails> {
  const configId = await scopeOf(tx, req.config);
  const [row] = await tx<Record<string, unknown>[]>`
    select ${tx.unsafe(COLUMNS)} from private.resume_sending(${configId}::uuid)`;
  // Nothing was stopped: the function's row is all nulls.
  if (!row || row.updated_at === null) {
    throw new ApiError(
      409,
      "not_stopped",
      configId ? "Sending through this config is not stopped" : "Sending is not stopped",
    );
  }
  return shown(row);
}

/** One recorded change: who (user, session, OAuth client) did what, when. */
export interface OversightEvent {
  id: number;
  config_id: string | null;
  action:
    | "guardrails_changed"
    | "sending_stopped"
    | "sending_resumed"
    | "guardrails_removed"
    | "approved"
    | "rejected"
    | "expired";
  actor: { user_id?: string; session_id?: string; client_id?: string; aal?: string };
  details: Record<string, unknown>;
  created_at: string;
}

/** The newest events first, `limit` at a time, before the event id `before` (keyset). */
export async function listEvents(tx: Tx, before: number | undefined, limit: number): Promise<OversightEvent[]> {
  const rows = await tx<(Omit<OversightEvent, "created_at" | "id"> & { id: string; created_at: Date })[]>`
    select id, config_id, action, actor, details, created_at from public.oversight_events
     where ${before === undefined ? tx`true` : tx`id < ${before}`}
     order by id desc limit ${limit}`;
  return rows.map((row) => ({ ...row, id: Number(row.id), created_at: row.created_at.toISOString() }));
}

/**
 * Refuse a send the owner's guardrails do not allow, in the sender's transaction: 409
 * `sending_stopped`, 422 `recipient_denied` (`details.recipients`), 422
 * `recipient_cap_exceeded`. Without recipients only the stop is checked.
 *
 * @example
 * ```ts
 * await checkSendGuardrails(tx, config.id, message.envelope.to);
 * ```
 */
export async function checkSendGuardrails(
  tx: Tx,
  configId: string,
  recipients: string[] = [],
  messages = 1,
): Promise<void> {
  await tx`select private.check_send_guardrails(${configId}::uuid, ${recipients}::text[],
                                                 ${recipients.map(recipientKey)}::text[], ${messages}::integer)`;
}

/**
 * {@linkcode checkSendGuardrails} for one message, as a statement to run inside another (a CTE
 * of the statement that writes its audit row): the refusal fails that statement.
 */
export function sendGuardrailsCheck(tx: Tx, configId: string, recipients: string[]) {
  return tx`select private.check_send_guardrails(${configId}::uuid, ${recipients}::text[],
                                                 ${recipients.map(recipientKey)}::text[], 1)`;
}

/**
 * The guardrails' refusals for several messages through one config, in one statement: each
 * refused message's index (in `recipientLists`) and its error.
 */
export async function guardrailRefusals(
  tx: Tx,
  configId: string,
  recipientLists: string[][],
): Promise<{ at: number; error: ApiError }[]> {
  if (recipientLists.length === 0) return [];
  // Each message's recipients as it names them (for the answer) and as the patterns are written.
  const lists = recipientLists.map((list) => ({ r: list, k: list.map(recipientKey) }));
  const rows = await tx<
    { at: number; refusal: { status: number; code: string; message: string; details?: Record<string, unknown> } }[]
  >`
    select (l.n - 1)::integer as at, private.guardrail_refusal(${configId}::uuid,
             array(select jsonb_array_elements_text(l.v -> 'r')), array(select jsonb_array_elements_text(l.v -> 'k')))
             as refusal
      from jsonb_array_elements(${tx.json(lists as never)}::jsonb) with ordinality as l (v, n)`;
  return rows.filter((row) => row.refusal !== null).map(({ at, refusal }) => ({
    at,
    error: new ApiError(refusal.status, refusal.code, refusal.message, refusal.details),
  }));
}

/** Which tool a request came through, as the MCP endpoint and the LangChain tools say (`x-mailroom-via`). */
const VIA = /^[a-z0-9_-]{1,40}$/;

/**
 * Whether a request is an agent's: a token from an OAuth client, or a call through the agent tools
 * (`x-mailroom-via`, which can only make a request count as an agent's, never the reverse).
 */
export function isAgentRequest(req: Request, claims: object): boolean {
  return typeof (claims as { client_id?: unknown }).client_id === "string" || req.headers.has("x-mailroom-via");
}

/**
 * The caller's claims as the database should see them for a send: with `mailroom_via` when the
 * request says it came through an agent tool (MCP, LangChain). Saying so can only make a send
 * wait for approval (`approval: agents`), never let one skip it, so the header needs no trust.
 */
export function sendingClaims<T extends object>(req: Request, claims: T): T {
  const via = req.headers.get("x-mailroom-via")?.toLowerCase();
  return via && VIA.test(via) ? { ...claims, mailroom_via: via } : claims;
}

/**
 * The stop button for a send through the config it names (by id or name, or the default: 409
 * `sending_stopped`), and why this caller's send must wait for approval (`agents`, `always`) or
 * null: one statement, needing no answer first, so it can follow the statement that reads the
 * config down the connection. Null when there is no such config (the read that found none says so).
 * `approval: false`: the stop button only (mail the owner approved, or that needed no approval).
 * Statements sent after it in the transaction read the answer with {@linkcode sendNotHeld}.
 */
export async function checkStopAndApprovalOf(
  tx: Tx,
  ref: string | undefined,
  options: { approval?: boolean } = {},
): Promise<"agents" | "always" | null> {
  const approval = options.approval === false ? tx`null::text` : tx`private.approval_required(c.id)`;
  // The answer is also kept for the rest of the transaction (`mailroom.send_approval`, '' for
  // none): statements that follow this one down the connection decide by it, not by a
  // setting the owner may have changed in between.
  const [row] = await tx<{ approval: "agents" | "always" | "" }[]>`
    select private.check_send_guardrails(c.id, '{}'),
           set_config('mailroom.send_approval', coalesce(${approval}, ''), true) as approval
      from public.user_smtp_configs c where ${byRef(tx, ref)}`.execute();
  return row?.approval || null;
}

/** A condition true when {@linkcode checkStopAndApprovalOf}, earlier in the transaction, held no approval. */
export function sendNotHeld(tx: Tx) {
  return tx`current_setting('mailroom.send_approval', true) = ''`;
}

/** Why a send through the config must wait for approval now (`agents` or `always`), or null. */
export async function approvalRequired(tx: Tx, configId: string): Promise<"agents" | "always" | null> {
  const [{ approval }] = await tx<{ approval: "agents" | "always" | null }[]>`
    select private.approval_required(${configId}::uuid) as approval`;
  return approval;
}

/** What a held send's answer says, for the caller and for the model reading it. */
export function approvalHold(
  reason: "agents" | "always",
  expiresAt: Date,
  count = 1,
  page: { url?: string } = {},
) {
  const what = count === 1 ? "This email was not sent: it waits" : `These ${count} emails were not sent: they wait`;
  const where = page.url ? `at ${page.url}` : "in mailroom (GET /functions/v1/oversight/approvals)";
  return {
    reason,
    expires_at: expiresAt.toISOString(),
    ...(page.url ? { url: page.url } : {}),
    message:
      `${what} for the account owner's approval (${
        reason === "agents" ? "sends by agents need it" : "every send needs it"
      }) until ${expiresAt.toISOString()}. Tell the user it is waiting for their approval ${where}; do not send it ` +
      "again, and do not try to approve it yourself.",
  };
}

/** A send waiting for the owner's approval, as the approval queue lists it. */
export interface PendingApproval {
  id: string;
  batch_id: string | null;
  config_id: string | null;
  from_email: string;
  to: string[];
  cc_count: number;
  bcc_count: number;
  subject: string | null;
  message_id: string;
  scheduled_at: string | null;
  reason: "agents" | "always";
  client_id: string | null;
  agent_context: Record<string, unknown> | null;
  created_at: string;
  expires_at: string;
}

const PENDING_COLUMNS =
  "id, batch_id, config_id, from_email, to_addresses, cc_count, bcc_count, subject, message_id, " +
  "scheduled_at, approval_reason, client_id, agent_context, created_at, approval_expires_at";

function pendingOf(row: Record<string, unknown>): PendingApproval {
  const iso = (value: unknown) => value instanceof Date ? value.toISOString() : null;
  return {
    id: row.id as string,
    batch_id: (row.batch_id as string | null) ?? null,
    config_id: (row.config_id as string | null) ?? null,
    from_email: row.from_email as string,
    to: row.to_addresses as string[],
    cc_count: row.cc_count as number,
    bcc_count: row.bcc_count as number,
    subject: (row.subject as string | null) ?? null,
    message_id: row.message_id as string,
    scheduled_at: iso(row.scheduled_at),
    reason: row.approval_reason as PendingApproval["reason"],
    client_id: (row.client_id as string | null) ?? null,
    agent_context: (row.agent_context as Record<string, unknown> | null) ?? null,
    created_at: iso(row.created_at)!,
    expires_at: iso(row.approval_expires_at)!,
  };
}

/** The owner's pending sends, oldest first, `limit` at a time after the send `after` (keyset). */
export async function listPending(
  tx: Tx,
  after: string | undefined,
  limit: number,
): Promise<{ approvals: PendingApproval[]; next_after: string | null }> {
  const rows = await tx<Record<string, unknown>[]>`
    select ${tx.unsafe(PENDING_COLUMNS)} from public.email_audit_log a
     where a.status = 'pending_approval' and a.approval_expires_at > now()
       and ${
    after === undefined
      ? tx`true`
      : tx`(a.created_at, a.id) > (select p.created_at, p.id from public.email_audit_log p where p.id = ${after}::uuid)`
  }
     order by a.created_at, a.id limit ${limit}`;
  const approvals = rows.map(pendingOf);
  return { approvals, next_after: approvals.length === limit ? approvals.at(-1)!.id : null };
}

/** One of the owner's sends with what the approval queue knows of it (any status), or 404. */
export async function findHeld(tx: Tx, id: string): Promise<PendingApproval & { status: string; payload: unknown }> {
  const [row] = await tx<Record<string, unknown>[]>`
    select ${tx.unsafe(PENDING_COLUMNS)}, status, payload from public.email_audit_log where id = ${id}::uuid`;
  if (!row) throw new ApiError(404, "message_not_found", "No message with that id");
  return { ...pendingOf(row), status: row.status as string, payload: row.payload };
}

/**
 * Approve (into the outbox, as queued mail) or reject the owner's pending sends: `ids`, or a
 * whole batch's. The owner's first-party session only (403 `first_party_session_required`,
 * 403 `mfa_required` where the guardrails ask for aal2); a send decided meanwhile (or expired,
 * or cancelled) is not decided again: with nothing left to decide, 409 `not_pending`.
 */
export async function decide(
  tx: Tx,
  target: { ids: string[] } | { batchId: string },
  approve: boolean,
  reason: string | undefined,
): Promise<{ decided: string[]; status: "approved" | "rejected" }> {
  const ids = "ids" in target ? target.ids : [];
  const batchId = "batchId" in target ? target.batchId : null;
  const rows = await tx<{ id: string }[]>`
    select id from private.decide_approvals(${ids}::uuid[], ${batchId}::uuid, ${approve}, ${reason ?? null}) as id`;
  if (rows.length === 0) {
    const [now] = "ids" in target
      ? await tx<{ status: string }[]>`select status from public.email_audit_log where id = ${ids[0]}::uuid`
      : [];
    if ("ids" in target && !now) throw new ApiError(404, "message_not_found", "No message with that id");
    throw new ApiError(
      409,
      "not_pending",
      now
        ? `The message is ${now.status}, not waiting for approval: it was decided, expired or cancelled already`
        : "Nothing in the batch waits for approval",
      now ? { status: now.status } : undefined,
    );
  }
  return { decided: rows.map((row) => row.id), status: approve ? "approved" : "rejected" };
}

/** `POST /oversight/approvals/.../reject`'s body (approve takes none). */
export const decisionRequest = z.strictObject({
  reason: z.string().min(1).max(500).optional().describe("Why (kept with the message and in the record)"),
});

/** What a send would meet, as a dry run reports it (nothing is queued or sent). */
export type DryRunVerdict =
  | { outcome: "would_send" }
  | { outcome: "would_wait_for_approval"; approval: { reason: "agents" | "always" } }
  | { outcome: "would_be_refused"; refusal: { status: number; code: string; message: string; details?: unknown } };

/** The owner's guardrails for a send through the config to `recipients`, without raising. */
export async function guardrailVerdict(
  tx: Tx,
  configId: string,
  recipients: string[],
  messages = 1,
): Promise<DryRunVerdict> {
  const [row] = await tx<{
    refusal: { status: number; code: string; message: string; details?: unknown } | null;
    approval: "agents" | "always" | null;
  }[]>`
    select coalesce(
             private.guardrail_refusal(${configId}::uuid, ${recipients}::text[], ${
    recipients.map(recipientKey)
  }::text[]),
             private.agent_budget_refusal(${configId}::uuid, ${messages}::integer)) as refusal,
           private.approval_required(${configId}::uuid) as approval`;
  if (row.refusal) return { outcome: "would_be_refused", refusal: row.refusal };
  if (row.approval) return { outcome: "would_wait_for_approval", approval: { reason: row.approval } };
  return { outcome: "would_send" };
}

/**
 * Mail the owner a notice of a held send (or batch) with a link to the approval page, when
 * they asked for notices and the deployment has a page (MAILROOM_APPROVAL_URL). It goes through
 * the outbox like any mail, never held itself.
 */
export async function queueApprovalNotice(
  tx: Tx,
  approvalUrl: string | undefined,
  held: { id?: string; batchId?: string; count: number },
): Promise<void> {
  if (!approvalUrl) return;
  const url = held.batchId ? `${approvalUrl}/batch/${held.batchId}` : `${approvalUrl}/${held.id}`;
  await tx`select private.queue_approval_notice(${held.count}::integer, ${url})`;
}
