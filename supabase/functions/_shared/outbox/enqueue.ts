// Accepting a bulk send (send-bulk): validate every entry before anything is queued, then write
// the batch and one queued audit row per message in one transaction as the user, with one
// statement for all the rows. Nothing is sent here and no password is read: the worker
// (outbox/worker.ts) sends the rows and validates each payload again at send time.
//
// Validation goes from cheap to dear and stops at the first bound passed: counts first (entries,
// and in messages mode the recipients of all messages together), then each entry on its own,
// then the template rendered for it (render_at_accept.ts), so that what could never be sent is
// refused here rather than failing row by row in the worker.
//
// What a row carries (the worker's contract):
// - recipients mode: payload `{kind: "recipient", to: {email, name?}, data?}`; the shared content
//   is the batch's `content` `{subject?, text?, html?, template?, data?, headers?, from_name?,
//   reply_to?}`, and a recipient's template data is `{...content.data, ...payload.data}`.
// - messages mode: payload `{kind: "request", request}`, a send-email body that validates again
//   (addresses written as `{email, name?}`), without scheduled_at; the batch's `content` is `{}`.
import type { UserClaims } from "../auth.ts";
import type { AppContext } from "../context.ts";
import { type Tx, withUser } from "../db.ts";
import { ApiError } from "../http.ts";
import { type Address, countRecipients, dedupeRecipients, recipientKey } from "../mail/addresses.ts";
import { checkAttachments, checkContent, type CompositionLimits, sanitizeHeaders } from "../mail/compose.ts";
import {
  attachmentDigests,
  checkAttachmentTypes,
  type HeldAttachment,
  holdSendAttachments,
  resolveAttachmentReferences,
  storedSizes,
} from "../attachments/mod.ts";
import { MAX_DATA_DEPTH, missingVariables, requiredVariables } from "../mail/templates.ts";
import { checkBatchContent, messageRenderer, RenderBudget, stoppedEarly } from "./render_at_accept.ts";
import {
  bodyIssues,
  type BulkRecipient,
  bulkRecipient,
  issuesSummary,
  parseBody,
  type SendBulkRequest,
  type SendEmailRequest,
  sendEmailRequest,
} from "../schemas.ts";
import { checkServerStatically } from "../smtp/egress.ts";
import { findUsableConfig, type SmtpConfig } from "../store/smtp_configs.ts";
import {
  approvalHold,
  checkSendGuardrails,
  type DryRunVerdict,
  guardrailVerdict,
  queueApprovalNotice,
} from "../oversight/mod.ts";
import { type DryRunMessage, dryRunOf } from "../send.ts";
import { findTemplate, type StoredTemplate } from "../store/templates.ts";
import {
  allowDuplicates,
  contentDigest,
  contentFingerprint,
  duplicateSendRefusal,
  type EarlierSend,
  earlierSends,
  hex,
  requestContent,
  type SendContent,
} from "../duplicates/mod.ts";
import { type BulkLimits, MAX_BATCH_CONTENT_BYTES, MAX_ENTRY_DATA_BYTES, MAX_LISTED_ERRORS } from "./limits.ts";
export { type BulkLimits, loadBulkLimits } from "./limits.ts";

/** Why an entry was refused or skipped. */
export interface EntryError {
  index: number;
  reason: string;
  /** `duplicate_send`: the same email as a recent message (`duplicate_of`) or an earlier entry. */
  code?: "duplicate_send";
  duplicate_of?: EarlierSend | { entry: number };
}

/** The 202 of `POST /send-bulk`. */
export interface BulkAccepted {
  batch_id: string;
  queued: number;
  /** Messages held for the owner's approval, and why (see _shared/oversight). */
  pending_approval?: number;
  approval?: ReturnType<typeof approvalHold>;
  scheduled_at?: string;
  skipped?: EntryError[];
  /** Accepted, but: e.g. `exceeds_daily_budget`. */
  warnings?: { code: string; message: string }[];
}

/** One audit row to insert; shared columns are statement parameters. */
interface OutboxRow {
  to: string[];
  payload: Record<string, unknown>;
  subject?: string;
  template_id?: string;
  cc_count?: number;
  bcc_count?: number;
  agent_context?: Record<string, unknown>;
  /** Its content fingerprint, in hex (see _shared/duplicates). */
  fingerprint?: string;
}

/** A planned row with its entry's index and what its fingerprint is made of (not stored). */
interface PlannedRow extends OutboxRow {
  entry: number;
  content: Omit<SendContent, "configId">;
}

/** What the batch row keeps. */
interface BatchPlan {
  content: Record<string, unknown>;
  templateId: string | null;
  subject: string | null;
  rows: PlannedRow[];
}

/** Where planning records why entries were refused: all of them, and how many failed to render. */
interface EntryErrors {
  list: EntryError[];
  renderFailures: number;
}

/**
 * Refuse a bulk request over its bounds before any entry is looked at: at most
 * `limits.maxEntries` recipients, or messages, and in messages mode at most as many
 * recipients in all messages together (to, cc and bcc entries as given). Counting costs one
 * look at each entry, so a request of 10,000 messages with 50 recipients each is refused in a
 * few milliseconds rather than after its 500,000 addresses are parsed.
 *
 * @throws ApiError 422 `too_many_recipients` with `details.limit`, `details.count` and
 *   `details.bound`: `recipients`, `messages` or `message_recipients`.
 * @example
 * ```ts
 * checkBulkBounds({ messages: [{ to: ["a@example.com", "b@example.com"], text: "x" }] }, { maxEntries: 1 });
 * // throws too_many_recipients, bound "message_recipients"
 * ```
 */
export function checkBulkBounds(req: Pick<SendBulkRequest, "recipients" | "messages">, limits: BulkLimits): void {
  const entries = req.recipients ?? req.messages ?? [];
  const bound = req.recipients ? "recipients" : "messages";
  if (entries.length > limits.maxEntries) {
    throw new ApiError(422, "too_many_recipients", `At most ${limits.maxEntries} ${bound} per request`, {
      limit: limits.maxEntries,
      count: entries.length,
      bound,
    });
  }
  if (!req.messages) return;
  let count = 0;
  for (const message of req.messages) {
    if (message === null || typeof message !== "object") continue;
    const { to, cc, bcc } = message as Record<string, unknown>;
    for (const field of [to, cc, bcc]) count += Array.isArray(field) ? field.length : field === undefined ? 0 : 1;
  }
  if (count > limits.maxEntries) {
    throw new ApiError(
      422,
      "too_many_recipients",
      `At most ${limits.maxEntries} recipients per request; these messages have ${count} (to, cc and bcc together)`,
      { limit: limits.maxEntries, count, bound: "message_recipients" },
    );
  }
}

/**
 * Validate a bulk request as the user and queue its messages. The template is rendered at
 * accept (see render_at_accept.ts): with the shared data for the batch, and with each entry's
 * own data, within `ACCEPT_RENDER_STEPS`.
 *
 * @throws ApiError 422 `too_many_recipients` (see {@linkcode checkBulkBounds}), 404
 *   `config_not_found` / `template_not_found`, 409 `config_inactive`, 422 `config_incomplete`,
 *   the send-email content errors for shared content (400 header errors, 422 `subject_too_long`,
 *   413 `html_too_large`, 422 `html_too_complex`, 422 `template_empty`), the template's errors
 *   with the shared data (422 `template_invalid`, `template_too_complex`,
 *   `template_output_too_large`, `template_data_invalid`, `template_data_unsafe_url`,
 *   `template_data_unsafe_context`), 413 `content_too_large`, and 422 `invalid_recipients`
 *   (`details.errors: [{index, reason}]`, at most {@linkcode MAX_LISTED_ERRORS}, and
 *   `details.invalid_count`) when an entry is invalid and `skip_invalid` is not set, when no
 *   entry is valid, or when rendering stopped at the budget after some entry failed to render.
 *   A reason from rendering starts with the render's code (`template_too_complex: ...`).
 * @example
 * ```ts
 * await enqueueBulk(ctx, claims, { recipients: ["a@example.com"], text: "Hi" }, { maxEntries: 10_000 });
 * // { batch_id: "…", queued: 1 }
 * ```
 */
export async function enqueueBulk(
  ctx: AppContext,
  claims: UserClaims,
  req: SendBulkRequest,
  limits: BulkLimits,
  options: { request?: Request } = {},
): Promise<BulkAccepted | BulkDryRun> {
  checkBulkBounds(req, limits);
  const entries = req.recipients ?? req.messages ?? [];
  const errors: EntryErrors = { list: [], renderFailures: 0 };
  const budget = new RenderBudget();
  // Files given by URL are fetched once each and stored; the batch names them by id.
  const attachmentLists = [req.attachments, ...(req.messages ?? []).map(attachmentsOf)];
  await resolveAttachmentReferences(ctx, claims, attachmentLists, { request: options.request, loads: req.dry_run });

  return await withUser(ctx.sql, claims, async (tx) => {
    const config = await usableConfig(ctx, tx, req.config);
    // The stored files the batch names, kept until it can no longer go.
    const files = await holdSendAttachments(
      tx,
      attachmentLists,
      req.scheduled_at ? new Date(req.scheduled_at) : undefined,
    );
    const plan = req.recipients
      ? await planRecipients(ctx.config.limits, tx, req, req.recipients, errors, budget, files)
      : await planMessages(ctx.config.limits, tx, req.messages ?? [], errors, budget, files, req.unsubscribe);
    errors.list.sort((a, b) => a.index - b.index);
    const stopped = budget.stoppedAt !== undefined && errors.renderFailures > 0;
    if (plan.rows.length === 0 || (errors.list.length > 0 && (!req.skip_invalid || stopped))) {
      throw invalidRecipients(errors.list, entries.length, plan.rows.length === 0, stopped ? budget : undefined);
    }
    // The same email as a recent message, or as an earlier entry, is left out (and reported)
    // unless the caller wants repeats; the rest go.
    // (A config whose duplicate window is 0 checks nothing, not even within the request.)
    for (const row of plan.rows) row.fingerprint = hex(contentFingerprint({ configId: config.id, ...row.content }));
    if (!req.allow_duplicate && config.duplicate_window_seconds > 0) {
      const repeats = await leaveOutDuplicates(tx, config.id, plan);
      errors.list = [...errors.list, ...repeats].sort((a, b) => a.index - b.index);
      if (plan.rows.length === 0) {
        if (req.dry_run) return everyEntryRepeatsDryRun(errors.list, repeats);
        throw everyEntryRepeats(repeats);
      }
    }
    if (req.dry_run) return await dryRunBulk(ctx, tx, config, plan, errors.list);
    // The owner's guardrails, for every recipient of the request at once: a stop, a denied
    // recipient or one too many refuses the whole batch before anything is queued.
    await checkSendGuardrails(tx, config.id, plan.rows.flatMap(addressesOf), plan.rows.length);

    const [batch] = await tx<{ id: string; scheduled_at: Date | null }[]>`
      insert into public.email_batches (config_id, template_id, content, agent_context, total, scheduled_at)
      values (${config.id}::uuid, ${plan.templateId}::uuid, ${tx.json(plan.content as never)},
              ${req.agent_context ? tx.json(req.agent_context as never) : null}::jsonb, ${plan.rows.length},
              ${req.scheduled_at ?? null}::timestamptz)
      returning id, scheduled_at`;
    allowDuplicates(tx, req.allow_duplicate);
    const inserted = await insertRows(tx, batch.id, config, plan, req);
    // Their fingerprints held for the config's window (or a 409, should a repeat have slipped in meanwhile).
    await tx`select private.claim_batch_fingerprints(${batch.id}::uuid)`;
    // The outbox's trigger held the rows for the owner's approval when the guardrails say so.
    const [held] = await tx<{ n: number; reason: "agents" | "always" | null; expires_at: Date | null }[]>`
      select count(*)::integer as n, min(approval_reason) as reason, min(approval_expires_at) as expires_at
        from public.email_audit_log where batch_id = ${batch.id}::uuid and status = 'pending_approval'`;
    if (held.n > 0) await queueApprovalNotice(tx, ctx.config.approvalUrl, { batchId: batch.id, count: held.n });
    // Recipients (To, Cc and Bcc) already on the suppression list: the worker skips them (it looks
    // again when it sends).
    const everyone = [...new Set(plan.rows.flatMap((row) => row.content.recipients))];
    const [{ suppressed }] = await tx<{ suppressed: string[] }[]>`
      select private.suppressed_among(${everyone}::text[]) as suppressed`;
    const warning = held.n > 0 ? null : await dailyBudgetWarning(tx, config, batch.scheduled_at);
    return {
      batch_id: batch.id,
      queued: inserted - held.n,
      ...(held.n > 0
        ? {
          pending_approval: held.n,
          approval: approvalHold(held.reason ?? "always", held.expires_at!, held.n, {
            url: ctx.config.approvalUrl && `${ctx.config.approvalUrl}/batch/${batch.id}`,
          }),
        }
        : {}),
      ...(batch.scheduled_at ? { scheduled_at: batch.scheduled_at.toISOString() } : {}),
      ...(suppressed.length > 0 ? { suppressed } : {}),
      ...(errors.list.length > 0 ? { skipped: errors.list } : {}),
      ...(warning ? { warnings: [warning] } : {}),
    };
  });
}

/** Messages a bulk dry run renders in full; the rest are counted. */
const DRY_RUN_SAMPLES = 3;

/** `dry_run: true` on send-bulk: checked and rendered as at accept, nothing queued. */
export interface BulkDryRun {
  dry_run: true;
  outcome: DryRunVerdict["outcome"];
  approval?: { reason: "agents" | "always" };
  refusal?: { status: number; code: string; message: string; details?: unknown };
  /** Messages that would be queued. */
  count: number;
  /** The first few, built as they would be sent. */
  samples: DryRunMessage[];
  skipped?: EntryError[];
}

async function dryRunBulk(
  ctx: AppContext,
  tx: Tx,
  config: SmtpConfig,
  plan: BatchPlan,
  skipped: EntryError[],
): Promise<BulkDryRun> {
  const verdict = await guardrailVerdict(tx, config.id, plan.rows.flatMap(addressesOf), plan.rows.length);
  const samples: DryRunMessage[] = [];
  for (const row of plan.rows.slice(0, DRY_RUN_SAMPLES)) {
    samples.push(await dryRunOf(ctx, tx, config, parseBody(sendEmailRequest, sampleRequest(plan, row))));
  }
  return {
    dry_run: true,
    ...verdict,
    count: plan.rows.length,
    samples,
    ...(skipped.length > 0 ? { skipped } : {}),
  };
}

/** The send-email request a planned row stands for (as the worker reads it from the outbox). */
function sampleRequest(plan: BatchPlan, row: OutboxRow): unknown {
  const payload = row.payload as { kind?: string; request?: object; to?: unknown; data?: Record<string, unknown> };
  if (payload.kind === "request") return payload.request;
  const content = plan.content;
  const merged = content.template !== undefined
    ? { data: { ...(content.data as Record<string, unknown> ?? {}), ...(payload.data ?? {}) } }
    : {};
  return { ...content, ...merged, to: [payload.to] };
}

/**
 * A warning when what waits for the config in the coming day (this batch included) exceeds
 * what its per-day limit still allows: the rest is sent as the budget frees up, not lost, and
 * the batch's progress says `rate_limited` meanwhile. Not for a batch scheduled a day or more ahead.
 */
async function dailyBudgetWarning(
  tx: Tx,
  config: SmtpConfig,
  scheduledAt: Date | null,
): Promise<{ code: string; message: string } | null> {
  if (scheduledAt && scheduledAt.getTime() > Date.now() + 86_400_000) return null;
  const [{ remaining }] = await tx<{ remaining: number }[]>`
    select private.remaining_daily_sends(${config.id}::uuid) as remaining`;
  // Counted only as far as it matters (one more than the budget allows).
  const [{ waiting }] = await tx<{ waiting: number }[]>`
    select count(*)::integer as waiting from (
      select 1 from public.email_audit_log a
       where a.config_id = ${config.id}::uuid and a.status in ('queued', 'scheduled')
         and a.next_attempt_at < now() + interval '24 hours'
       limit ${remaining + 1}) w`;
  if (waiting <= remaining) return null;
  return {
    code: "exceeds_daily_budget",
    message: `SMTP config ${JSON.stringify(config.name)} may send ${remaining} more of its ${config.limits.per_day} ` +
      "messages per day now, and more than that waits for it: the rest goes out as the budget frees up " +
      "(raise limits.per_day on the config to send faster)",
  };
}

/** Every recipient of a planned row: its To, and the Cc and Bcc a full message carries in its request. */
function addressesOf(row: OutboxRow): string[] {
  const request = row.payload.request as { cc?: { email: string }[]; bcc?: { email: string }[] } | undefined;
  return [...row.to, ...(request?.cc ?? []).map((a) => a.email), ...(request?.bcc ?? []).map((a) => a.email)];
}

/** The config the request names (or the default), usable and at a destination the deployment allows. */
async function usableConfig(ctx: AppContext, tx: Tx, ref: string | undefined): Promise<SmtpConfig> {
  const config = await findUsableConfig(tx, ref);
  // A destination the deployment refuses would fail every message: refuse the batch now.
  if (config.transport === "smtp") checkServerStatically(ctx.config.egress, config);
  return config;
}

/**
 * Rows go in slices of about {@linkcode INSERT_SLICE_CHARS} of JSON, each one statement whose
 * entries travel as one jsonb array: a 14 MB batch is never held as one more 14 MB string (and
 * its wire copy) on top of the request it came from.
 */
async function insertRows(tx: Tx, batchId: string, config: SmtpConfig, plan: BatchPlan, req: SendBulkRequest) {
  let inserted = 0;
  let slice: string[] = [];
  let chars = 0;
  const flush = async () => {
    inserted += await insertSlice(tx, batchId, config, plan, req, `[${slice.join(",")}]`);
    slice = [];
    chars = 0;
  };
  for (const { entry: _entry, content: _content, ...row } of plan.rows) {
    const text = JSON.stringify(row);
    slice.push(text);
    chars += text.length;
    if (chars >= INSERT_SLICE_CHARS) await flush();
  }
  if (slice.length > 0) await flush();
  return inserted;
}

/** About a MiB of rows per insert statement. */
const INSERT_SLICE_CHARS = 1024 * 1024;

async function insertSlice(
  tx: Tx,
  batchId: string,
  config: SmtpConfig,
  plan: BatchPlan,
  req: SendBulkRequest,
  rowsJson: string,
): Promise<number> {
  const result = await tx`
    insert into public.email_audit_log
      (batch_id, config_id, template_id, from_email, to_addresses, cc_count, bcc_count, subject, status,
       scheduled_at, agent_context, payload, content_fingerprint)
    select ${batchId}::uuid, ${config.id}::uuid,
           coalesce((r.m ->> 'template_id')::uuid, ${plan.templateId}::uuid),
           ${config.from_email},
           array(select jsonb_array_elements_text(r.m -> 'to')),
           coalesce((r.m ->> 'cc_count')::integer, 0), coalesce((r.m ->> 'bcc_count')::integer, 0),
           coalesce(r.m ->> 'subject', ${plan.subject}), 'queued',
           ${req.scheduled_at ?? null}::timestamptz,
           coalesce(r.m -> 'agent_context', ${req.agent_context ? tx.json(req.agent_context as never) : null}::jsonb),
           r.m -> 'payload', decode(r.m ->> 'fingerprint', 'hex')
      from jsonb_array_elements(${rowsJson}::text::jsonb) with ordinality as r (m, n)
     order by r.n`;
  return result.count;
}

function invalidRecipients(errors: EntryError[], total: number, noneValid: boolean, stopped?: RenderBudget): ApiError {
  const listed = errors.slice(0, MAX_LISTED_ERRORS);
  const first = listed[0] ? `; entry ${listed[0].index}: ${listed[0].reason}` : "";
  const message = noneValid
    ? `None of the ${total} entries can be queued${first}`
    : stopped
    ? `${errors.length} of ${total} entries are invalid${first}; ${
      stoppedEarly(stopped)
    }: fix them or send fewer per batch`
    : `${errors.length} of ${total} entries are invalid${first}; fix them or set skip_invalid: true`;
  return new ApiError(422, "invalid_recipients", message, { errors: listed, invalid_count: errors.length });
}

// Recipients mode ------------------------------------------------------------------------------

async function planRecipients(
  limits: CompositionLimits,
  tx: Tx,
  req: SendBulkRequest,
  entries: unknown[],
  errors: EntryErrors,
  budget: RenderBudget,
  held: Map<string, HeldAttachment>,
): Promise<BatchPlan> {
  const headers = sanitizeHeaders(req.headers);
  // The sizes first: cheap, and they need no template.
  checkContent(req, limits, { checkShape: false });
  checkAttachments(req.attachments, {
    maxCount: limits.maxAttachments,
    maxTotalBytes: limits.maxAttachmentBytes,
  }, storedSizes(held));
  await checkAttachmentTypes(req.attachments, held);
  const attachments = attachmentDigests(req.attachments, held);
  const template = req.template === undefined ? undefined : await findTemplate(tx, req.template);
  if (template) checkTemplateHasBody(template, req);
  const renders = checkBatchContent(template, req, limits, budget);
  const content = sharedContent(req, headers);
  const contentBytes = utf8Length(JSON.stringify(content));
  if (contentBytes > MAX_BATCH_CONTENT_BYTES) {
    throw new ApiError(
      413,
      "content_too_large",
      `The shared content is ${contentBytes} bytes as JSON; the limit is ${MAX_BATCH_CONTENT_BYTES}`,
      { limit_bytes: MAX_BATCH_CONTENT_BYTES },
    );
  }

  const required = template ? requiredVariables(template) : [];
  // What every recipient's message says alike, digested once (see _shared/duplicates).
  const shared = contentDigest(requestContent(req, template).content);
  const seen = new Map<string, { index: number; data: string }>();
  const rows: PlannedRow[] = [];
  for (const [index, entry] of entries.entries()) {
    const parsed = bulkRecipient.safeParse(entry);
    if (!parsed.success) {
      errors.list.push({ index, reason: issuesText(parsed.error) });
      continue;
    }
    const recipient = parsed.data;
    const reason = recipientProblem(recipient, index, seen, required, req.data);
    if (reason !== null) {
      errors.list.push({ index, reason });
      continue;
    }
    const renderReason = renders(index, recipient.data);
    if (renderReason !== null) {
      errors.list.push({ index, reason: renderReason });
      errors.renderFailures++;
      continue;
    }
    rows.push({
      to: [recipient.to.address],
      payload: {
        kind: "recipient",
        to: recipientInput(recipient.to),
        ...(recipient.data === undefined ? {} : { data: recipient.data }),
      },
      entry: index,
      content: {
        recipients: [recipient.to.address],
        content: shared,
        data: template ? { ...req.data, ...recipient.data } : undefined,
        attachments,
      },
    });
  }
  return { content, templateId: template?.id ?? null, subject: req.subject ?? null, rows };
}

/**
 * Why a parsed recipient cannot be queued, or null: its data too large or deep, its address
 * already in the batch with other data (`seen` remembers the first index and data of each; the
 * same address with the same data is the same email, which the duplicate check leaves out), or
 * template data missing.
 */
function recipientProblem(
  recipient: BulkRecipient,
  index: number,
  seen: Map<string, { index: number; data: string }>,
  required: string[],
  sharedData: Record<string, unknown> | undefined,
): string | null {
  const dataProblem = recipient.data === undefined ? null : entryDataProblem(recipient.data);
  if (dataProblem) return dataProblem;
  const key = recipientKey(recipient.to.address);
  const first = seen.get(key);
  const data = JSON.stringify(recipient.data ?? null);
  if (first !== undefined && first.data !== data) return `duplicate of entry ${first.index}`;
  if (first === undefined) seen.set(key, { index, data });
  if (required.length === 0) return null;
  const missing = missingVariables(required, { ...sharedData, ...recipient.data });
  return missing.length > 0 ? `template data is missing ${missing.join(", ")}` : null;
}

/** The shared fields exactly as validated, addresses spelled as the API takes them. */
function sharedContent(req: SendBulkRequest, headers: Record<string, string>): Record<string, unknown> {
  const content: Record<string, unknown> = {
    subject: req.subject,
    text: req.text,
    html: req.html,
    template: req.template,
    data: req.data,
    headers: req.headers === undefined ? undefined : headers,
    from_name: req.from_name,
    reply_to: req.reply_to?.map(recipientInput),
    attachments: req.attachments,
    // Bulk mail offers one-click unsubscribe unless asked not to (one message per recipient).
    unsubscribe: req.unsubscribe ?? true,
  };
  for (const key of Object.keys(content)) if (content[key] === undefined) delete content[key];
  return content;
}

function checkTemplateHasBody(template: StoredTemplate, content: { text?: string; html?: string }): void {
  if (template.text === null && template.html === null && content.text === undefined && content.html === undefined) {
    throw new ApiError(422, "template_empty", "The template has neither an HTML nor a text part");
  }
}

/** Why a recipient's data cannot be stored, or null: it must fit the template renderer's limits. */
function entryDataProblem(data: Record<string, unknown>): string | null {
  const json = JSON.stringify(data);
  // UTF-16 length <= UTF-8 length <= 3 x UTF-16 length: most entries need no encoding.
  if (json.length * 3 > MAX_ENTRY_DATA_BYTES && utf8Length(json) > MAX_ENTRY_DATA_BYTES) {
    return `data exceeds ${MAX_ENTRY_DATA_BYTES} bytes as JSON`;
  }
  if (depthOf(data) > MAX_DATA_DEPTH) return `data is nested deeper than ${MAX_DATA_DEPTH}`;
  return null;
}

// readJson bounds the depth of the whole body, so this recursion is bounded too.
function depthOf(value: unknown): number {
  if (value === null || typeof value !== "object") return 0;
  let deepest = 0;
  for (const inner of Object.values(value)) deepest = Math.max(deepest, depthOf(inner));
  return 1 + deepest;
}

// Messages mode --------------------------------------------------------------------------------

/**
 * A bulk message's one-click unsubscribe: its own setting, else the batch's (on by default) for a
 * message to one recipient (a link names one).
 */
function withBulkUnsubscribe(request: SendEmailRequest, batch: SendBulkRequest["unsubscribe"]): SendEmailRequest {
  if (request.unsubscribe !== undefined) return request;
  return countRecipients(request) === 1 && batch !== false ? { ...request, unsubscribe: batch ?? true } : request;
}

async function planMessages(
  limits: CompositionLimits,
  tx: Tx,
  entries: unknown[],
  errors: EntryErrors,
  budget: RenderBudget,
  held: Map<string, HeldAttachment>,
  unsubscribe: SendBulkRequest["unsubscribe"],
): Promise<BatchPlan> {
  const valid: { index: number; request: SendEmailRequest; recipients: Recipients }[] = [];
  const sizes = storedSizes(held);
  for (const [index, entry] of entries.entries()) {
    const checked = checkMessage(limits, entry, sizes);
    if ("reason" in checked) {
      errors.list.push({ index, reason: checked.reason });
      continue;
    }
    // A program among its files is refused unless it is called one (inline bytes sniffed).
    const refusal = await checkAttachmentTypes(checked.request.attachments, held).then(() => null, entryRefusal);
    if (refusal) errors.list.push({ index, reason: refusal });
    else valid.push({ index, ...checked });
  }
  const render = messageRenderer(limits, budget);

  // Each template is looked up once; a missing one invalidates the messages that name it.
  const templates = new Map<string, StoredTemplate | null>();
  for (const ref of new Set(valid.flatMap(({ request }) => request.template ?? []))) {
    templates.set(ref, await findTemplate(tx, ref).catch(notFoundAsNull));
  }

  const rows: PlannedRow[] = [];
  for (const { index, request, recipients } of valid) {
    const template = request.template === undefined ? undefined : templates.get(request.template);
    if (template === null) {
      errors.list.push({ index, reason: `template ${JSON.stringify(request.template)} not found` });
      continue;
    }
    if (template) {
      if (
        template.text === null && template.html === null && request.text === undefined && request.html === undefined
      ) {
        errors.list.push({ index, reason: "the template has neither an HTML nor a text part" });
        continue;
      }
      const missing = missingVariables(requiredVariables(template), request.data ?? {});
      if (missing.length > 0) {
        errors.list.push({ index, reason: `template data is missing ${missing.join(", ")}` });
        continue;
      }
      const reason = render(index, request, template);
      if (reason !== null) {
        errors.list.push({ index, reason });
        errors.renderFailures++;
        continue;
      }
    }
    rows.push({
      to: recipients.to.map((a) => a.address),
      cc_count: recipients.cc.length,
      bcc_count: recipients.bcc.length,
      ...(request.subject === undefined ? {} : { subject: request.subject }),
      ...(template ? { template_id: template.id } : {}),
      ...(request.agent_context ? { agent_context: request.agent_context } : {}),
      payload: { kind: "request", request: storedRequest(withBulkUnsubscribe(request, unsubscribe)) },
      entry: index,
      content: {
        recipients: [...recipients.to, ...recipients.cc, ...recipients.bcc].map((a) => a.address),
        ...requestContent(request, template, attachmentDigests(request.attachments, held)),
      },
    });
  }
  return { content: {}, templateId: null, subject: null, rows };
}

type Recipients = { to: Address[]; cc: Address[]; bcc: Address[] };

/** One message validated as send-email validates it, minus what needs the database. */
function checkMessage(
  limits: CompositionLimits,
  entry: unknown,
  storedSizes: ReadonlyMap<string, number>,
): { request: SendEmailRequest; recipients: Recipients } | { reason: string } {
  try {
    const parsed = sendEmailRequest.safeParse(entry);
    if (!parsed.success) return { reason: issuesText(parsed.error) };
    const request = parsed.data;
    if (request.scheduled_at !== undefined) return { reason: "scheduled_at applies to the whole batch; set it there" };
    if (request.config !== undefined) return { reason: "config applies to the whole batch; set it there" };
    if (request.dry_run !== undefined) return { reason: "dry_run applies to the whole batch; set it there" };
    if (request.allow_duplicate !== undefined) {
      return { reason: "allow_duplicate applies to the whole batch; set it there" };
    }
    sanitizeHeaders(request.headers);
    // A templated message's text part may come from its template: its shape is checked once rendered.
    checkContent(request, limits, { checkShape: request.template === undefined });
    const recipients = dedupeRecipients({ to: request.to, cc: request.cc, bcc: request.bcc });
    if (countRecipients(recipients) > limits.maxRecipients) {
      return { reason: `at most ${limits.maxRecipients} recipients per message` };
    }
    checkAttachments(request.attachments, {
      maxCount: limits.maxAttachments,
      maxTotalBytes: limits.maxAttachmentBytes,
    }, storedSizes);
    return { request, recipients };
  } catch (error) {
    // The content checks (and an oversized agent_context) throw ApiErrors: per entry, a reason
    // that starts with the code, as a render's does.
    if (error instanceof ApiError) return { reason: `${error.code}: ${error.message}` };
    throw error;
  }
}

/** An entry's refusal as its reason, starting with the code (as checkMessage's do). */
function entryRefusal(error: unknown): string {
  if (error instanceof ApiError) return `${error.code}: ${error.message}`;
  throw error;
}

/** A messages-mode entry's attachments, as given (validated later). */
function attachmentsOf(entry: unknown): unknown {
  return entry !== null && typeof entry === "object" ? (entry as { attachments?: unknown }).attachments : undefined;
}

/** The request as send-email takes it again: addresses as `{email, name?}`, no scheduled_at. */
function storedRequest(request: SendEmailRequest): Record<string, unknown> {
  const { scheduled_at: _scheduled, to, cc, bcc, reply_to, ...rest } = request;
  return {
    ...rest,
    to: to.map(recipientInput),
    ...(cc === undefined ? {} : { cc: cc.map(recipientInput) }),
    ...(bcc === undefined ? {} : { bcc: bcc.map(recipientInput) }),
    ...(reply_to === undefined ? {} : { reply_to: reply_to.map(recipientInput) }),
  };
}

function notFoundAsNull(error: unknown): null {
  if (error instanceof ApiError && error.code === "template_not_found") return null;
  throw error;
}

/**
 * Leave out of the plan the entries that repeat a recent message through the config (within
 * its duplicate window) or an earlier entry of this batch: each is reported by index with
 * `duplicate_send` and what it repeats.
 */
async function leaveOutDuplicates(tx: Tx, configId: string, plan: BatchPlan): Promise<EntryError[]> {
  const repeats: EntryError[] = [];
  const first = new Map<string, number>();
  const kept: PlannedRow[] = [];
  for (const row of plan.rows) {
    const earlier = first.get(row.fingerprint!);
    if (earlier === undefined) {
      first.set(row.fingerprint!, row.entry);
      kept.push(row);
      continue;
    }
    repeats.push({
      index: row.entry,
      code: "duplicate_send",
      reason: `duplicate_send: the same email as entry ${earlier}`,
      duplicate_of: { entry: earlier },
    });
  }
  const recent = await earlierSends(tx, configId, kept.map((row) => row.fingerprint!));
  plan.rows = kept.filter((row) => {
    const repeat = recent.get(row.fingerprint!);
    if (!repeat) return true;
    repeats.push({
      index: row.entry,
      code: "duplicate_send",
      reason: `duplicate_send: ${duplicateSendRefusal(repeat).message}`,
      duplicate_of: repeat.earlier,
    });
    return false;
  });
  return repeats;
}

/** 409 `duplicate_send` for a batch every entry of which repeats something. */
function everyEntryRepeats(repeats: EntryError[]): ApiError {
  const recent = repeats.find((r) => r.duplicate_of && "id" in r.duplicate_of);
  return new ApiError(
    409,
    "duplicate_send",
    `Every entry repeats an email sent or queued within the config's duplicate window${
      recent ? ` (entry ${recent.index}: message ${(recent.duplicate_of as EarlierSend).id})` : ""
    }; nothing was queued. Send with allow_duplicate: true only if they should really go again`,
    { entries: repeats.slice(0, MAX_LISTED_ERRORS) },
  );
}

/** A dry run of a batch every entry of which repeats something: it would be refused, as the send would. */
function everyEntryRepeatsDryRun(skipped: EntryError[], repeats: EntryError[]): BulkDryRun {
  const refusal = everyEntryRepeats(repeats);
  return {
    dry_run: true,
    outcome: "would_be_refused",
    refusal: { status: refusal.status, code: refusal.code, message: refusal.message, details: refusal.details },
    count: 0,
    samples: [],
    skipped,
  };
}

// Shared helpers -------------------------------------------------------------------------------

/** An address in the API's input spelling, which parses back to the same address. */
function recipientInput(address: Address): { email: string; name?: string } {
  return address.name ? { email: address.address, name: address.name } : { email: address.address };
}

/** A zod failure as one line: the first few issues with their paths. */
function issuesText(error: { issues: Parameters<typeof bodyIssues>[0] }): string {
  return issuesSummary(bodyIssues(error.issues, 3));
}

const encoder = new TextEncoder();

function utf8Length(text: string): number {
  return encoder.encode(text).length;
}
