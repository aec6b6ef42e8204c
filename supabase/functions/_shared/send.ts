// One email, sent now: resolve the config (and its Vault password) and the template in
// the user's RLS context, build the exact message, reserve capacity and write the
// in-flight audit row in one transaction, talk SMTP, record the outcome.
import { copyToSentLater } from "./mailbox/mod.ts";
import type { UserClaims } from "./auth.ts";
import type { AppContext } from "./context.ts";
import { type Tx, withUser, withUserEndingWith } from "./db.ts";
import { ApiError } from "./http.ts";
import type { SendEmailRequest } from "./schemas.ts";
import {
  deliver,
  type DeliveryReport,
  describeFailure,
  failureDetails,
  NotStarted,
  type SmtpFailure,
  type SmtpServer,
} from "./smtp/smtp.ts";
import type { RecipientOutcome } from "./smtp/outcome.ts";
import { poolKey, type SessionPool } from "./smtp/pool.ts";
import { checkServerStatically, type ResolvedTarget, resolveTarget } from "./smtp/egress.ts";
import { reserveSendCapacity } from "./store/rate_limit.ts";
import {
  approvalHold,
  checkSendGuardrails,
  checkStopAndApprovalOf,
  type DryRunVerdict,
  guardrailRefusals,
  guardrailVerdict,
  queueApprovalNotice,
  sendGuardrailsCheck,
  sendNotHeld,
} from "./oversight/mod.ts";
import {
  byRef,
  type Credentials,
  findUsableConfig,
  incomplete,
  type Login,
  type SmtpConfig,
} from "./store/smtp_configs.ts";
import { decodeAttachments, sanitizeHeaders } from "./mail/compose.ts";
import { buildMessage, type BuiltMessage } from "./mail/message.ts";
import { renderTemplate, templatedSubject } from "./mail/templates.ts";
import { findTemplate, type StoredTemplate } from "./store/templates.ts";
import { oauthTokenSource } from "./store/oauth_tokens.ts";
import { type HttpsTransport, sendOverHttps } from "./transports/mod.ts";
import { OAuthError } from "./oauth/mod.ts";
import { authVerdict, type LoginAttempt, recordAuthResult, releaseAuthAttempt } from "./store/credential_guard.ts";
import {
  attachmentDigests,
  checkAttachmentTypes,
  describeAttachments,
  holdSendAttachments,
  loadAttachmentContents,
  type StoredFile,
  type StoredFileFacts,
} from "./attachments/mod.ts";
import { keptContent } from "./mail/kept_content.ts";
import { unsubscribeHeaders } from "./consent/mod.ts";
import {
  allowDuplicates,
  contentFingerprint,
  duplicateSendRefusal,
  earlierSends,
  fingerprintParameter,
  hex,
  requestContent,
} from "./duplicates/mod.ts";

/** The 200 response of a send: at least one recipient accepted. */
export interface SendResult {
  id: string;
  /** `suppressed`: every recipient is on the owner's suppression list; nothing was sent. */
  status: "sent" | "suppressed";
  message_id: string;
  /** Recipients the server accepted. */
  accepted: string[];
  /** Recipients the server refused permanently (5xx). */
  rejected: string[];
  /** Recipients the server refused for now (4xx): a later retry to them can succeed. */
  deferred: string[];
  /** Recipients whose transaction ended after the final dot without a reply: check before resending. */
  unknown: string[];
  /** Every recipient with the server's code, enhanced code and reply. */
  recipients: RecipientOutcome[];
  /** Recipients skipped because they are on the owner's suppression list (unsubscribed, bounced...). */
  suppressed: string[];
  /** The deferred recipients the outbox will try again, and when (unless `retry_deferred: false`). */
  retry?: { next_attempt_at: string; recipients: string[] };
}

/**
 * The config a send names (id or name) or the default one, which must be usable; its stop
 * button and whether the send waits for approval; and, for a password login that goes now,
 * the credential guard's attempt and the credentials. One round trip: every statement after
 * the first finds the config by the same reference, so none waits for another's answer. The
 * guard's statement goes before the credentials' (it share-locks the config until commit and
 * may refuse: then the credentials' fails unanswered, and no password leaves Postgres), and
 * neither runs for a send the stop button or an approval holds. A config without a login
 * takes no lock.
 *
 * @throws ApiError as {@linkcode findUsableConfig} (first), 409 `sending_stopped`, 429 from
 *   the guard; 409 `concurrent_update` when the server or login changed since the config was read.
 */
async function openConfig(
  tx: Tx,
  ref: string | undefined,
  options: { approval?: boolean } = {},
): Promise<{
  config: SmtpConfig & Credentials & { login: LoginAttempt; owner?: UserClaims };
  approval: "agents" | "always" | null;
}> {
  // Each statement is sent when its call is made, so they run in this order.
  const finding = findUsableConfig(tx, ref);
  const oversight = checkStopAndApprovalOf(tx, ref, options);
  // Decided once, by the statement before: the owner may change the setting meanwhile.
  const logsInNow = tx`c.auth_type = 'password' and c.username <> '' and c.password_secret_id is not null
                       and c.is_active and ${sendNotHeld(tx)}`;
  const guard = tx<{ id: string; attempt: string | null }[]>`
    select c.id, private.begin_smtp_authentication(c.id)::text as attempt
      from public.user_smtp_configs c where ${byRef(tx, ref)} and ${logsInNow}`.execute();
  const credentials = tx<(Login & { id: string })[]>`
    select c.id, k.username, k.password, c.host, c.port, c.security
      from public.user_smtp_configs c, private.smtp_config_credentials(c.id) k
     where ${byRef(tx, ref)} and ${logsInNow}`.execute();
  // The first refusal is the answer; the others then fail as aborted.
  for (const later of [oversight, guard, credentials]) later.catch(() => {});
  let config = await finding;
  const approval = await oversight;
  const nothing = { configId: config.id, attemptId: null };
  // A send held for approval does not log in now: no credentials read, no attempt for the guard.
  if (approval !== null) return { approval, config: { ...config, password: null, login: nothing } };
  if (config.auth_type === "oauth2") {
    // The grant stays in Vault: the transport asks for an access token, as the owner, when it sends.
    const [{ owner }] = await tx<{ owner: string }[]>`select auth.uid()::text as owner`;
    return {
      approval,
      config: { ...config, password: null, login: nothing, owner: { sub: owner, role: "authenticated" } },
    };
  }
  if (!config.username) return { approval, config: { ...config, password: null, login: nothing } };
  let attempt: { id: string; attempt: string | null } | undefined;
  try {
    [attempt] = await guard;
  } catch (error) {
    if ((error as { code?: string })?.code !== "P0002") throw error;
    throw new ApiError(404, "config_not_found", `No SMTP config ${JSON.stringify(config.id)}`);
  }
  const [current] = await credentials;
  // The config the first statement read went (or changed what it is) before the guard ran.
  if (attempt?.id !== config.id || current?.id !== config.id) {
    throw configChanged();
  }
  const login = { configId: config.id, attemptId: attempt.attempt };
  // A change that landed since the unlocked read (a new server and password in one PATCH): the
  // config is read again, now that the guard's lock holds it still, so both reads agree.
  const moved = (c: SmtpConfig) =>
    current.host !== c.host || current.port !== c.port || current.security !== c.security ||
    current.username !== c.username;
  if (moved(config)) config = await findUsableConfig(tx, config.id);
  if (moved(config)) {
    throw configChanged();
  }
  // The Vault secret may be gone although the config still points at it.
  if (!current.password) throw incomplete(config);
  return { approval, config: { ...config, username: current.username, password: current.password, login } };
}

/** 409 `concurrent_update`: the config changed between the statements that read it for a send. */
function configChanged(): ApiError {
  return new ApiError(409, "concurrent_update", "The SMTP config changed while sending; retry", { retryable: true });
}

/** Templates already read in this transaction, by reference (a group of sends often shares one). */
type TemplateCache = Map<string, StoredTemplate>;
/** Stored attachments already read in this transaction, by id (a batch's messages share them). */
type FileCache = Map<string, StoredFile>;

/** The stored files a send was built from, as a listing of its attachments shows them. */
function fileFacts(files: FileCache): Map<string, StoredFileFacts> {
  return new Map(
    [...files].map(([id, file]) => [id, {
      filename: file.filename,
      content_type: file.contentType,
      size_bytes: file.content.byteLength,
    }]),
  );
}

/** Template parts first, explicit request fields over them. */
export async function contentOf(
  tx: Tx,
  req: SendEmailRequest,
  templates?: TemplateCache,
): Promise<
  { subject?: string; text?: string; html?: string; templateId: string | null; template?: StoredTemplate }
> {
  if (req.template === undefined) return { subject: req.subject, text: req.text, html: req.html, templateId: null };
  let template = templates?.get(req.template);
  if (!template) {
    template = await findTemplate(tx, req.template);
    templates?.set(req.template, template);
  }
  const rendered = renderTemplate(template, req.data ?? {});
  return {
    subject: templatedSubject(req.subject, rendered.subject, template),
    text: req.text ?? rendered.text,
    html: req.html ?? rendered.html,
    templateId: template.id,
    template,
  };
}

async function compose(
  ctx: AppContext,
  tx: Tx,
  config: SmtpConfig,
  req: SendEmailRequest,
  fixed: { messageId?: string; date?: Date } = {},
  templates?: TemplateCache,
  files: FileCache = new Map(),
  owner?: string,
): Promise<{
  message: BuiltMessage;
  subject?: string;
  templateId: string | null;
  template?: StoredTemplate;
  files: FileCache;
}> {
  const content = await contentOf(tx, req, templates);
  const ids = (req.attachments ?? []).flatMap((a) => "id" in a ? [a.id] : []);
  if (ids.length > 0) await loadAttachmentContents(tx, ids, files);
  if (content.text === undefined && content.html === undefined) {
    throw new ApiError(422, "template_empty", "The template has neither an HTML nor a text part");
  }
  const limits = ctx.config.limits;
  const fromName = req.from_name ?? config.from_name ?? undefined;
  const message = await buildMessage({
    from: fromName ? { name: fromName, address: config.from_email } : { address: config.from_email },
    to: req.to,
    cc: req.cc,
    bcc: req.bcc,
    replyTo: req.reply_to,
    subject: content.subject,
    text: content.text,
    html: content.html,
    headers: await withUnsubscribe(ctx, req, sanitizeHeaders(req.headers), owner, config),
    messageId: fixed.messageId,
    date: fixed.date,
    attachments: decodeAttachments(req.attachments, {
      maxCount: limits.maxAttachments,
      maxTotalBytes: limits.maxAttachmentBytes,
    }, files),
  }, limits);
  return { message, subject: content.subject, templateId: content.templateId, template: content.template, files };
}

/**
 * A message that asks for one-click unsubscribe (`unsubscribe`, one recipient: the schema checks)
 * gets its two headers, signed for its owner and recipient, unless the caller set its own.
 */
async function withUnsubscribe(
  ctx: AppContext,
  req: SendEmailRequest,
  headers: Record<string, string>,
  owner: string | undefined,
  config: SmtpConfig,
): Promise<Record<string, string>> {
  if (!req.unsubscribe || owner === undefined) return headers;
  if (Object.keys(headers).some((name) => name.toLowerCase().startsWith("list-unsubscribe"))) return headers;
  const [address] = recipientsOf(req);
  const topic = typeof req.unsubscribe === "object" ? req.unsubscribe.topic : null;
  // A mailto too where the sender's inbox is read (the reader honours the requests that arrive).
  const mailbox = config.imap?.read_bounces ? config.from_email : undefined;
  return { ...headers, ...await unsubscribeHeaders(ctx.config, { userId: owner, address, topic }, mailbox) };
}

/** The send's content fingerprint (see _shared/duplicates): what makes a repeat "the same email". */
function fingerprintOf(
  configId: string,
  req: SendEmailRequest,
  { message, template, files }: { message: BuiltMessage; template?: StoredTemplate; files: FileCache },
): Uint8Array {
  // Only where a send is accepted: the outbox's worker builds messages without fingerprinting them.
  const stored = new Map([...files].map(([id, f]) => [id, { ...f, content_type: f.contentType }]));
  return contentFingerprint({
    configId,
    recipients: message.envelope.to,
    ...requestContent(req, template, attachmentDigests(req.attachments, stored)),
  });
}

/** What the audit row records (see private.record_email_outcome). */
export interface Outcome {
  status: DeliveryReport["status"];
  message_id: string;
  recipients?: RecipientOutcome[];
  error_class?: string;
  error_message?: string;
  smtp_response_code?: number;
  smtp_enhanced_code?: string;
  smtp_response?: string;
  retryable?: boolean;
  /** The server's "try again in N s" hint, for the outbox's backoff. */
  retry_after_seconds?: number;
  /** What was actually sent (queued sends: the row then shows it, not what was inserted). */
  sent?: { to: string[]; cc_count: number; bcc_count: number; subject?: string | null };
}

export function outcomeOf(report: DeliveryReport): Outcome {
  const failure = report.failure;
  return {
    status: report.status,
    message_id: report.messageId,
    recipients: report.recipients,
    ...(failure ? failureColumns(failure) : {}),
  };
}

function failureColumns(failure: SmtpFailure): Partial<Outcome> {
  return {
    error_class: failure.code,
    error_message: failure.message,
    smtp_response_code: failure.responseCode,
    smtp_enhanced_code: failure.enhancedCode,
    smtp_response: failure.response,
    retryable: failure.retryable,
    retry_after_seconds: failure.retryAfterSeconds,
  };
}

/**
 * Record the outcome on the in-flight audit row, trying twice. A failure here must not
 * hide what happened on the wire (above all a delivered message), so it is logged with
 * the audit id and swallowed; the row then stays `sending` until a sweep marks it.
 */
async function recordOutcome(ctx: AppContext, claims: UserClaims, auditId: string, outcome: Outcome): Promise<void> {
  for (let attempt = 1; attempt <= 2; attempt++) {
    try {
      // One round trip: begin, the claims, the update and commit go down the wire together.
      await withUserEndingWith(
        ctx.sql,
        claims,
        () => Promise.resolve(),
        (tx) => tx`select private.record_email_outcome(${auditId}::uuid, ${tx.json(outcome as never)})`,
      );
      return;
    } catch (error) {
      if (attempt === 2) {
        const e = error as { name?: string; code?: string };
        console.error(JSON.stringify({
          level: "error",
          msg: "could not record send outcome",
          audit_id: auditId,
          status: outcome.status,
          error: e?.name,
          code: e?.code,
        }));
      }
    }
  }
}

/**
 * Tell the credential guard what the server said about the login, once for every send made
 * with it (`failureCodes`: each send's failure code, undefined when it was sent): refused
 * once is refused; else judged once is proven; else the attempt is released. Nothing is
 * written when nothing would change (proven credentials that worked, or no attempt to free).
 * Logged, never thrown: the send's outcome is what the caller must hear.
 * (See store/credential_guard.ts.)
 */
export async function settleLogin(
  ctx: AppContext,
  claims: UserClaims,
  login: LoginAttempt,
  failureCodes: (string | undefined)[],
): Promise<void> {
  const verdicts = failureCodes.map(authVerdict);
  const verdict = verdicts.includes(false) ? false : verdicts.includes(true) ? true : null;
  if (login.attemptId === null && verdict !== false) return;
  try {
    await withUser(
      ctx.sql,
      claims,
      (tx) => verdict === null ? releaseAuthAttempt(tx, login) : recordAuthResult(tx, login, verdict),
    );
  } catch (error) {
    const e = error as { name?: string; code?: string };
    console.error(JSON.stringify({ level: "error", msg: "could not settle login", error: e?.name, code: e?.code }));
  }
}

/** A send ready to go: its config (with credentials), the built message, what to audit. */
export interface PreparedSend {
  /** With `owner` for an OAuth config (whose tokens are fetched as the owner). */
  config: SmtpConfig & Credentials & { login: LoginAttempt; owner?: UserClaims };
  message: BuiltMessage;
  subject?: string;
  templateId: string | null;
  /** The template it was rendered from, if any (its content is part of the send's fingerprint). */
  template?: StoredTemplate;
  /** The stored attachments it was built from (their hashes are part of the send's fingerprint). */
  files: FileCache;
  /** Why this caller's send must wait for the owner's approval (see _shared/oversight), or null. */
  approval: "agents" | "always" | null;
  /**
   * Recipients on the owner's suppression list, left out of the message (headers and envelope);
   * an empty envelope means nobody is left to send to (the message is then built as asked).
   */
  suppressed: string[];
}

/**
 * In the user's transaction: resolve the config (and its credentials, guarded), check where it
 * may connect and build the exact message. The config's budget is the caller's to reserve, in
 * the statement that writes the audit row (see {@linkcode sendEmail}).
 *
 * @throws ApiError 4xx for config, template and composition problems.
 */
export async function prepareSend(
  ctx: AppContext,
  tx: Tx,
  req: SendEmailRequest,
  owner?: string,
): Promise<PreparedSend> {
  const sends = [{ request: () => Promise.resolve(req) }];
  // Its guardrails are checked by the statement that writes its audit row (see sendEmail).
  const [prepared] = await prepareSendGroup(ctx, tx, req.config, sends, {
    reserve: false,
    guardrails: false,
    recipients: recipientsOf(req),
    owner,
  });
  if ("error" in prepared) throw prepared.error;
  return prepared;
}

/** Which of `addresses` (spelled as given) are on the caller's suppression list. */
async function suppressedAmong(tx: Tx, addresses: string[]): Promise<Set<string>> {
  if (addresses.length === 0) return new Set();
  const [row] = await tx<{ listed: string[] }[]>`
    select private.suppressed_among(${[...new Set(addresses)]}::text[]) as listed`;
  return new Set(row.listed);
}

/** Every recipient a request names (To, Cc, Bcc). */
function recipientsOf(req: SendEmailRequest): string[] {
  return [...req.to, ...(req.cc ?? []), ...(req.bcc ?? [])].map((a) => a.address);
}

/**
 * The request without its recipients on the suppression list (`listed`: as private.suppressed_among
 * answered, spelled as the request gives them), and which those were. With nobody left, the
 * request as it was and `nobodyLeft`.
 */
function withoutSuppressed(
  req: SendEmailRequest,
  listed: ReadonlySet<string>,
): { req: SendEmailRequest; suppressed: string[]; nobodyLeft: boolean } {
  const isListed = (address: string) => listed.has(address);
  const suppressed = [...new Set(recipientsOf(req).filter(isListed))];
  if (suppressed.length === 0) return { req, suppressed, nobodyLeft: false };
  const keep = <T extends { address: string }>(list: T[] | undefined) => list?.filter((a) => !isListed(a.address));
  const left = { ...req, to: keep(req.to)!, cc: keep(req.cc), bcc: keep(req.bcc) };
  const nobodyLeft = recipientsOf(left).length === 0;
  return { req: nobodyLeft ? req : left, suppressed, nobodyLeft };
}

/** One send of a group: its request (read lazily, in the transaction) and its fixed identity. */
export interface GroupedSend {
  request: (tx: Tx) => Promise<SendEmailRequest>;
  /** Fixed when the outbox stamped them at enqueue time; new otherwise. */
  messageId?: string;
  date?: Date;
}

/**
 * In the user's transaction: prepare several sends through one config (`ref`) at once, as
 * the outbox worker does for a chunk of one user's queue: the config, its credentials and
 * the login check once, each message built (templates read once), the config's budget
 * reserved for all of them in one step. A send whose request or content is wrong gets its
 * ApiError in its place; what concerns them all (config, credentials, limits) throws.
 *
 * Options: `reserve: false`, the caller reserves the budget; `guardrails: false`, the caller
 * checks the recipients against the owner's guardrails (both in the statement that writes the
 * audit row); `approval: false`, the sends were approved or needed no approval when accepted
 * (the outbox), so none is held and the config logs in.
 *
 * @throws ApiError as {@linkcode prepareSend}; 429 when the budget cannot take the whole group.
 */
export async function prepareSendGroup(
  ctx: AppContext,
  tx: Tx,
  ref: string | undefined,
  sends: GroupedSend[],
  options: { reserve?: boolean; guardrails?: boolean; approval?: boolean; recipients?: string[]; owner?: string } = {},
): Promise<(PreparedSend | { error: ApiError })[]> {
  // A stop holds the whole group (the outbox puts it back); recipients are checked per message.
  // A send that will wait for approval does not log in now (openConfig's credential guard).
  const opening = openConfig(tx, ref, { approval: options.approval });
  // Recipients known beforehand are looked up on the suppression list in the same round trip.
  const early = options.recipients ? suppressedAmong(tx, options.recipients) : undefined;
  early?.catch(() => {});
  const { config, approval } = await opening;
  // An HTTPS transport's host is the provider's API, never the caller's: no SMTP egress rules.
  if (config.transport === "smtp") checkServerStatically(ctx.config.egress, config);
  const requests: (SendEmailRequest | { error: ApiError })[] = [];
  for (const send of sends) {
    try {
      requests.push(await send.request(tx));
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      requests.push({ error });
    }
  }
  // Recipients on the owner's suppression list are left out of the message (headers and
  // envelope: HTTPS transports deliver to the headers); one lookup for the whole group.
  const listed = await (early ?? suppressedAmong(tx, requests.flatMap((r) => "error" in r ? [] : recipientsOf(r))));
  const templates: TemplateCache = new Map();
  const files: FileCache = new Map();
  const results: (PreparedSend | { error: ApiError })[] = [];
  for (const [i, request] of requests.entries()) {
    if ("error" in request) {
      results.push(request);
      continue;
    }
    try {
      const { req, suppressed, nobodyLeft } = withoutSuppressed(request, listed);
      const fixed = { messageId: sends[i].messageId, date: sends[i].date };
      const composed = await compose(ctx, tx, config, req, fixed, templates, files, options.owner);
      // Nobody left: built as asked (its identity), sent to no one.
      if (nobodyLeft) composed.message.envelope.to = [];
      results.push({ config, approval, suppressed, ...composed });
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      results.push({ error });
    }
  }
  // The owner's guardrails, for every built message at once: a refused one gets its error in its place.
  // (`guardrails: false`: the caller checks them in the statement that writes the audit row.)
  const built = results.flatMap((r, i) => "error" in r ? [] : [{ i, to: r.message.envelope.to }]);
  const refusals = options.guardrails === false ? [] : await guardrailRefusals(tx, config.id, built.map((b) => b.to));
  for (const { at, error } of refusals) results[built[at].i] = { error };
  // A message with nobody left to send to takes nothing from the budget.
  const ready = results.filter((r) => !("error" in r) && r.message.envelope.to.length > 0).length;
  if (ready > 0 && options.reserve !== false) await reserveSendCapacity(tx, config, ready);
  return results;
}

/** How a transmission ended: a delivery report, or a refusal before any SMTP (egress, DNS). */
export type Transmission =
  | { report: DeliveryReport }
  | { refused: { httpStatus: number; failure: SmtpFailure; details?: Record<string, unknown> } };

/**
 * Talk SMTP for a prepared send (to `envelopeTo` when given: the recipients still to try),
 * then tell the credential guard how the login went.
 */
export async function transmit(
  ctx: AppContext,
  claims: UserClaims,
  prepared: PreparedSend,
  envelopeTo?: string[],
  pool?: SessionPool,
): Promise<Transmission> {
  const transmission = await transmitOnly(ctx, prepared, envelopeTo, pool);
  await settleLogin(ctx, claims, prepared.config.login, [failureCodeOf(transmission)]);
  return transmission;
}

/**
 * Talk SMTP for a prepared send; the caller settles the login (see {@linkcode settleLogin}).
 * `beforeFirstByte` (SMTP only): see {@linkcode deliver}; its refusal or failure is thrown as
 * NotStarted.
 */
export async function transmitOnly(
  ctx: AppContext,
  prepared: PreparedSend,
  envelopeTo?: string[],
  pool?: SessionPool,
  beforeFirstByte?: () => Promise<boolean>,
): Promise<Transmission> {
  const { config, message } = prepared;
  if (config.transport !== "smtp") return await transmitOverHttps(ctx, prepared, envelopeTo);
  const server: SmtpServer = {
    host: config.host,
    port: config.port,
    security: config.security,
    username: config.username,
    password: config.password,
  };
  if (config.auth_type === "oauth2") {
    // XOAUTH2: the token first, so that a grant that cannot give one is its own refusal
    // (oauth_reauth_required, ...) before any connection, not a failed login.
    const oauth = await oauthLogin(ctx, prepared);
    if ("refused" in oauth) return oauth;
    Object.assign(server, oauth);
  }
  const envelope = envelopeTo ? { ...message.envelope, to: envelopeTo } : message.envelope;
  try {
    const target: ResolvedTarget = await resolveTarget(ctx.config.egress, config.host, config.port, {
      timeoutMs: ctx.config.smtp.connectTimeoutMs,
    });
    const pooled = pool ? { pool, key: poolKey(config.id, server, target, config.limits.max_connections) } : undefined;
    return {
      report: await deliver(server, target, { ...message, envelope }, ctx.config.smtp, pooled, beforeFirstByte),
    };
  } catch (error) {
    if (error instanceof NotStarted) throw error;
    return { refused: describeFailure(error, server) };
  }
}

/** An OAuth config's SMTP login (XOAUTH2 as its mailbox), or the refusal of its grant. */
async function oauthLogin(
  ctx: AppContext,
  prepared: PreparedSend,
): Promise<Pick<SmtpServer, "username" | "xoauth2"> | Extract<Transmission, { refused: unknown }>> {
  const { config } = prepared;
  const tokens = oauthTokenSource(ctx.sql, config.owner!, config, { ...ctx.config.oauth, egress: ctx.config.egress });
  try {
    let current = await tokens.get();
    return {
      username: config.username ?? config.from_email,
      xoauth2: {
        current,
        fresh: async () => {
          await tokens.invalidate(current);
          current = await tokens.get();
          return current;
        },
      },
    };
  } catch (error) {
    if (!(error instanceof OAuthError)) throw error;
    return oauthRefusal(error);
  }
}

function oauthRefusal(error: OAuthError): Extract<Transmission, { refused: unknown }> {
  return { refused: describeFailure(error) };
}

/**
 * Send over the config's HTTPS API (Microsoft Graph, the Gmail API) with an access token of its
 * OAuth grant. A grant that cannot give one is a refusal before anything is sent: for good when
 * the user must act (the config's queue is paused), for now when the provider is unreachable.
 */
async function transmitOverHttps(
  ctx: AppContext,
  prepared: PreparedSend,
  envelopeTo?: string[],
): Promise<Transmission> {
  const { config, message } = prepared;
  const tokens = oauthTokenSource(ctx.sql, config.owner!, config, { ...ctx.config.oauth, egress: ctx.config.egress });
  const envelope = envelopeTo ? { ...message.envelope, to: envelopeTo } : message.envelope;
  const pending = new Set(envelope.to);
  try {
    const report = await sendOverHttps(
      config.transport as HttpsTransport,
      {
        raw: message.raw,
        messageId: message.messageId,
        envelope,
        bcc: message.recipients.bcc.map((a) => a.address).filter((a) => pending.has(a)),
      },
      tokens,
      {
        endpoints: { graphUrl: ctx.config.oauth.graphUrl, gmailUrl: ctx.config.oauth.gmailUrl },
      },
    );
    return { report };
  } catch (error) {
    if (!(error instanceof OAuthError)) throw error;
    return oauthRefusal(error);
  }
}

/** The failure code of a transmission; undefined when it was sent. */
export function failureCodeOf(transmission: Transmission): string | undefined {
  if ("refused" in transmission) return transmission.refused.failure.code;
  return transmission.report.status === "sent" ? undefined : transmission.report.failure?.code;
}

/** The audit outcome of a refusal before any SMTP. */
export function refusalOutcome(message: BuiltMessage, failure: SmtpFailure): Outcome {
  return {
    status: failure.outcome === "unknown" ? "failed" : failure.outcome,
    message_id: message.messageId,
    ...failureColumns(failure),
  };
}

/**
 * Send `req` as the user in `claims` and audit it.
 *
 * @throws ApiError 4xx for config, template and composition problems (not audited),
 *   429 over the config's limits, 422/502 for egress and SMTP failures (audited).
 */
export async function sendEmail(
  ctx: AppContext,
  claims: UserClaims,
  req: SendEmailRequest,
  options: {
    idempotencyKey?: string;
    /** The request as received: the outbox keeps it to retry deferred recipients (send.ts: sendEmail). */
    raw?: Record<string, unknown>;
  } = {},
): Promise<SendResult | HeldResult> {
  // The budget is reserved by the statement that writes the audit row, the transaction's last:
  // the budget's row lock serialises a config's concurrent sends, so it is taken last and
  // released by the commit that follows it down the wire.
  const { value: prepared, last: [audit] } = await withUserEndingWith<PreparedSend, (QueuedRow | { id: string })[]>(
    ctx.sql,
    claims,
    (tx) => {
      // An identical send within the config's window is refused by the audit row's insert
      // (409 duplicate_send), unless the caller wants it twice.
      allowDuplicates(tx, req.allow_duplicate);
      // Stored attachments it names are kept while its deferred recipients may be retried.
      return holdSendAttachments(tx, [req.attachments])
        .then((held) => checkAttachmentTypes(req.attachments, held))
        .then(() => prepareSend(ctx, tx, req, claims.sub));
    },
    (tx, { config, message, subject, templateId, template, approval, files, suppressed }) => {
      const fingerprint = fingerprintOf(config.id, req, { message, template, files });
      // A send that must wait for the owner's approval goes into the outbox, held, instead.
      if (approval) {
        return queueRequest(tx, config, { message, subject, templateId, fingerprint }, req, options.raw ?? req, {
          ...options,
          guardrails: message.envelope.to,
        }) as never;
      }
      const { to, cc, bcc } = message.recipients;
      // Every recipient suppressed: a final row, nothing sent, nothing spent.
      if (message.envelope.to.length === 0) {
        return tx<{ id: string }[]>`
          select private.record_suppressed_send(${config.id}::uuid, ${templateId}::uuid, ${message.envelope.from}::text,
            ${to.map((a) => a.address)}::text[], ${cc.length}::integer, ${bcc.length}::integer, ${
          subject ?? null
        }::text,
            ${req.agent_context ? tx.json(req.agent_context as never) : null}::jsonb,
            ${options.idempotencyKey ?? null}::text, ${suppressed}::text[]) as id`;
      }
      const content = keptContent(message, describeAttachments(req.attachments, fileFacts(files)));
      // The owner's guardrails for its recipients, whether it repeats a recent email, then the
      // budget, then the row (with the recipients skipped as suppressed): one statement.
      return tx<{ id: string }[]>`
        with checked as (${sendGuardrailsCheck(tx, config.id, message.envelope.to)}),
        fresh as (
          select private.refuse_duplicate_send(${config.id}::uuid, ${fingerprintParameter(fingerprint)}::bytea)
            from checked
        ),
        budget as (select private.reserve_send_slots(${config.id}::uuid, 1) from fresh),
        audit as (
          insert into public.email_audit_log
            (config_id, template_id, from_email, to_addresses, cc_count, bcc_count, subject, status, agent_context,
             idempotency_key, content_fingerprint, suppressed)
          select ${config.id}::uuid, ${templateId}::uuid, ${message.envelope.from}::text,
                 ${to.map((a) => a.address)}::text[], ${cc.length}::integer, ${bcc.length}::integer,
                 ${subject ?? null}::text, 'sending',
                 ${req.agent_context ? tx.json(req.agent_context as never) : null}::jsonb,
                 ${options.idempotencyKey ?? null}::text, ${fingerprintParameter(fingerprint)}::bytea,
                 ${suppressed}::text[]
            from budget
          returning id
        )
        insert into public.message_contents (audit_id, content)
        select id, ${tx.json(content as never)}::jsonb from audit
        returning audit_id as id`;
    },
  ).catch(payloadTooLargeForQueue);
  const auditId = audit.id;
  const { message } = prepared;
  if (prepared.approval) {
    await withUser(
      ctx.sql,
      claims,
      (tx) => queueApprovalNotice(tx, ctx.config.approvalUrl, { id: audit.id, count: 1 }),
    );
    return heldResult(audit as QueuedRow, ctx.config.approvalUrl);
  }

  // Every recipient on the owner's suppression list: nothing was sent (the row says so already);
  // the login the config's guard let through is given back unused.
  if (message.envelope.to.length === 0) {
    await settleLogin(ctx, claims, prepared.config.login, [undefined]);
    return {
      id: auditId,
      status: "suppressed",
      message_id: message.messageId,
      accepted: [],
      rejected: [],
      deferred: [],
      unknown: [],
      recipients: [],
      suppressed: prepared.suppressed,
    };
  }

  const transmission = await transmit(ctx, claims, prepared, undefined, ctx.smtpPool);
  if ("refused" in transmission) {
    // Refused before any SMTP (egress policy, DNS): nothing reached a server.
    const { httpStatus, failure, details } = transmission.refused;
    await recordOutcome(ctx, claims, auditId, refusalOutcome(message, failure));
    throw new ApiError(httpStatus, failure.code, failure.message, {
      ...details,
      ...failureDetails(failure),
      id: auditId,
      status: failure.outcome,
      message_id: message.messageId,
    });
  }
  const { report } = transmission;
  const byStatus = (status: RecipientOutcome["status"]) =>
    report.recipients.filter((r) => r.status === status).map((r) => r.address);
  // Some recipients accepted, some deferred: the deferred ones are retried through the outbox
  // (unless the caller opted out), the same message under the same Message-ID.
  const deferred = byStatus("deferred");
  const retryAt = report.status === "sent" && deferred.length > 0 && req.retry_deferred !== false && options.raw
    ? await retryDeferred(ctx, claims, auditId, outcomeOf(report), options.raw)
    : null;
  if (!retryAt) await recordOutcome(ctx, claims, auditId, outcomeOf(report));
  // The sender sees it in their own Sent folder too (after the response; never a resend).
  if (report.status === "sent" && prepared.config.imap?.copy_to_sent) {
    copyToSentLater(ctx, claims, prepared.config.id, auditId, message.raw);
  }
  if (report.status !== "sent") {
    const failure = report.failure!;
    throw new ApiError(502, failure.code, failure.message, {
      ...failureDetails(failure),
      id: auditId,
      status: report.status,
      message_id: report.messageId,
      recipients: report.recipients,
    });
  }
  return {
    id: auditId,
    status: "sent",
    message_id: report.messageId,
    accepted: byStatus("accepted"),
    rejected: byStatus("rejected"),
    deferred,
    unknown: byStatus("unknown"),
    recipients: report.recipients,
    suppressed: prepared.suppressed,
    ...(retryAt ? { retry: { next_attempt_at: retryAt.toISOString(), recipients: deferred } } : {}),
  };
}

/**
 * Hand a partly delivered send to the outbox for its deferred recipients; when it will try
 * them, or null when it could not (the outcome is then recorded as it stands).
 */
async function retryDeferred(
  ctx: AppContext,
  claims: UserClaims,
  auditId: string,
  outcome: Outcome,
  raw: Record<string, unknown>,
): Promise<Date | null> {
  const { scheduled_at: _when, config: _config, ...request } = raw;
  try {
    return await withUser(ctx.sql, claims, async (tx) => {
      const [{ next }] = await tx<{ next: Date | null }[]>`
        select private.retry_deferred_recipients(${auditId}::uuid, ${tx.json(outcome as never)},
                                                 ${tx.json({ kind: "request", request } as never)}) as next`;
      return next;
    });
  } catch (error) {
    const e = error as { name?: string; code?: string };
    console.error(
      JSON.stringify({ level: "error", msg: "could not queue deferred recipients", error: e?.name, code: e?.code }),
    );
    return null;
  }
}

/** The 202 response of a scheduled (or queued) send. */
export interface ScheduleResult {
  id: string;
  status: "scheduled" | "queued";
  scheduled_at: string;
  message_id: string;
}

/**
 * Queue `req` to go out at `req.scheduled_at` through the outbox. What can be checked now is
 * checked now (config, template, composition, limits of the message), so a mistake is a 4xx
 * today rather than a failure tomorrow; the credentials are only read when it is sent.
 * `raw` is the request as received: the outbox stores it and validates it again at send time.
 */
export async function scheduleEmail(
  ctx: AppContext,
  claims: UserClaims,
  req: SendEmailRequest & { scheduled_at: string },
  raw: Record<string, unknown>,
  options: { idempotencyKey?: string } = {},
): Promise<ScheduleResult | HeldResult> {
  return await withUser<ScheduleResult | HeldResult>(ctx.sql, claims, async (tx) => {
    // The credentials are read at send time; a config that cannot log in is refused now.
    const config = await findUsableConfig(tx, req.config);
    if (config.transport === "smtp") checkServerStatically(ctx.config.egress, config);
    // Stored attachments it names are kept until it can no longer go.
    const held = await holdSendAttachments(tx, [req.attachments], new Date(req.scheduled_at));
    await checkAttachmentTypes(req.attachments, held);
    const composed = await compose(ctx, tx, config, req);
    await checkSendGuardrails(tx, config.id, composed.message.envelope.to);
    allowDuplicates(tx, req.allow_duplicate);
    const fingerprint = fingerprintOf(config.id, req, composed);
    const [row] = await queueRequest(tx, config, { ...composed, fingerprint }, req, raw, {
      ...options,
      scheduledAt: req.scheduled_at,
    })
      .catch(payloadTooLargeForQueue);
    if (row.status === "pending_approval") {
      await queueApprovalNotice(tx, ctx.config.approvalUrl, { id: row.id, count: 1 });
      return heldResult(row, ctx.config.approvalUrl, req.scheduled_at);
    }
    return {
      id: row.id,
      status: row.status as ScheduleResult["status"],
      // A paused config's rows wait at 'infinity' (no time yet): the answer keeps the time asked for.
      scheduled_at: (Number.isFinite(row.next_attempt_at.getTime()) ? row.next_attempt_at : new Date(req.scheduled_at))
        .toISOString(),
      message_id: row.message_id,
    };
  });
}

/** What a dry run shows of one message: as it would be built, and what would happen to it. */
export interface DryRunMessage {
  from: string;
  to: string[];
  cc: string[];
  bcc: string[];
  subject: string | null;
  text: string | null;
  html: string | null;
  /** The message's header block exactly as it would be sent. */
  headers: string;
  envelope: { from: string; to: string[] };
  size_bytes: number;
  /** Recipients on the owner's suppression list: a real send skips them (all of them: nothing is sent). */
  suppressed: string[];
}

/** `dry_run: true` on send-email: checked, rendered, nothing queued or sent. */
export type DryRunResult = { dry_run: true; message: DryRunMessage } & DryRunVerdict;

/**
 * Everything a send would do before its first byte leaves, and nothing after: the config, the
 * template and composition checks (their 4xx as a send answers them), the message as it would
 * be built, and the owner's guardrails as a verdict. Nothing is written (the transaction is
 * read-only in effect), so nothing reaches the audit log or the analytics.
 */
export async function dryRunEmail(ctx: AppContext, claims: UserClaims, req: SendEmailRequest): Promise<DryRunResult> {
  return await withUser(ctx.sql, claims, async (tx) => {
    const config = await findUsableConfig(tx, req.config);
    if (config.transport === "smtp") checkServerStatically(ctx.config.egress, config);
    const composed = await compose(ctx, tx, config, req);
    // A dry run holds nothing: its inline files are checked, stored ones were when stored.
    await checkAttachmentTypes(req.attachments, new Map());
    let verdict = await guardrailVerdict(tx, config.id, composed.message.envelope.to);
    if (verdict.outcome !== "would_be_refused" && !req.allow_duplicate) {
      const [repeat] = (await earlierSends(tx, config.id, [hex(fingerprintOf(config.id, req, composed))])).values();
      if (repeat) verdict = { outcome: "would_be_refused", refusal: duplicateSendRefusal(repeat) };
    }
    return { dry_run: true as const, ...verdict, message: await dryRunMessage(tx, composed.message, req) };
  });
}

/** One send's request built as it would be sent, as a dry run shows it (send-bulk's samples). */
export async function dryRunOf(
  ctx: AppContext,
  tx: Tx,
  config: SmtpConfig,
  req: SendEmailRequest,
): Promise<DryRunMessage> {
  return await dryRunMessage(tx, (await compose(ctx, tx, config, req)).message, req);
}

/** A built message as a dry run shows it. */
export async function dryRunMessage(tx: Tx, message: BuiltMessage, req: SendEmailRequest): Promise<DryRunMessage> {
  const content = await contentOf(tx, req);
  const listed = await suppressedAmong(tx, recipientsOf(req));
  const raw = message.raw.toString("utf8");
  const end = raw.indexOf("\r\n\r\n");
  return {
    from: message.envelope.from,
    to: message.recipients.to.map((a) => a.address),
    cc: message.recipients.cc.map((a) => a.address),
    bcc: message.recipients.bcc.map((a) => a.address),
    subject: content.subject ?? null,
    text: content.text ?? null,
    html: content.html ?? null,
    headers: end >= 0 ? raw.slice(0, end) : raw,
    envelope: message.envelope,
    size_bytes: message.raw.length,
    suppressed: [...listed],
  };
}

/** A queued row as the outbox wrote it (held for approval when the guardrails say so). */
interface QueuedRow {
  id: string;
  status: "scheduled" | "queued" | "pending_approval";
  next_attempt_at: Date;
  message_id: string;
  approval_reason: "agents" | "always" | null;
  approval_expires_at: Date | null;
}

/**
 * Queue a composed send's request in the outbox (`raw`: the request as received, which the
 * worker validates again at send time). The outbox's trigger holds it for approval when the
 * owner's guardrails say so.
 */
function queueRequest(
  tx: Tx,
  config: SmtpConfig,
  { message, subject, templateId, fingerprint }: {
    message: BuiltMessage;
    subject?: string;
    templateId: string | null;
    fingerprint: Uint8Array;
  },
  req: SendEmailRequest,
  raw: Record<string, unknown>,
  options: { idempotencyKey?: string; scheduledAt?: string; guardrails?: string[] },
) {
  const { to, cc, bcc } = message.recipients;
  const { scheduled_at: _when, config: _config, ...request } = raw;
  // `guardrails`: these recipients are checked against the owner's guardrails first, in this statement.
  const checked = options.guardrails
    ? tx`with checked as (${sendGuardrailsCheck(tx, config.id, options.guardrails)})`
    : tx``;
  return tx<QueuedRow[]>`
    ${checked}
    insert into public.email_audit_log
      (config_id, template_id, from_email, to_addresses, cc_count, bcc_count, subject, status, agent_context,
       idempotency_key, scheduled_at, payload, content_fingerprint)
    select ${config.id}::uuid, ${templateId}::uuid, ${message.envelope.from}::text, ${to.map((a) => a.address)}::text[],
           ${cc.length}::integer, ${bcc.length}::integer, ${subject ?? null}::text, 'queued',
           ${req.agent_context ? tx.json(req.agent_context as never) : null}::jsonb,
           ${options.idempotencyKey ?? null}::text, ${options.scheduledAt ?? null}::timestamptz,
           ${tx.json({ kind: "request", request } as never)}::jsonb, ${fingerprintParameter(fingerprint)}::bytea
      ${options.guardrails ? tx`from checked` : tx``}
    returning id, status, next_attempt_at, message_id, approval_reason, approval_expires_at`;
}

/** A send held for the owner's approval, as send-email answers it (202). */
export interface HeldResult {
  id: string;
  status: "pending_approval";
  message_id: string;
  scheduled_at?: string;
  approval: ReturnType<typeof approvalHold>;
}

function heldResult(row: QueuedRow, approvalUrl: string | undefined, scheduledAt?: string): HeldResult {
  return {
    id: row.id,
    status: "pending_approval",
    message_id: row.message_id,
    ...(scheduledAt ? { scheduled_at: new Date(scheduledAt).toISOString() } : {}),
    approval: approvalHold(row.approval_reason ?? "always", row.approval_expires_at ?? new Date(), 1, {
      url: approvalUrl && `${approvalUrl}/${row.id}`,
    }),
  };
}

/** The outbox keeps a request as jsonb, whose text form (the check's measure) is a little longer than the body. */
function payloadTooLargeForQueue(error: unknown): never {
  const e = error as { code?: string; constraint_name?: string };
  if (e?.code === "23514" && e.constraint_name === "email_audit_log_payload_size") {
    throw new ApiError(
      413,
      "payload_too_large",
      "The request is too large to queue: the outbox keeps at most 15 MiB of it as JSON",
      { limit_bytes: 15 * 1024 * 1024 },
    );
  }
  throw error;
}

/**
 * Cancel a queued or scheduled send that has not started. Idempotent: a message already
 * cancelled answers `{id, status: "cancelled"}` again.
 *
 * @throws ApiError 404 `message_not_found`, 409 `not_cancellable` (already sending or done).
 */
export async function cancelEmail(
  ctx: AppContext,
  claims: UserClaims,
  id: string,
): Promise<{ id: string; status: string }> {
  return await withUser(ctx.sql, claims, async (tx) => {
    const [row] = await tx<{ status: string }[]>`select status from public.email_audit_log where id = ${id}::uuid`;
    if (!row) throw new ApiError(404, "message_not_found", `No message ${JSON.stringify(id)}`);
    const [{ cancelled }] = await tx<{ cancelled: number }[]>`
      select private.cancel_outbox_messages(array[${id}::uuid]) as cancelled`;
    if (cancelled === 0) {
      // Cancelling twice is answered as the first time (the cancel tool promises idempotence),
      // also when a concurrent cancel won: the row is read again after its update waited.
      const [now] = await tx<{ status: string }[]>`select status from public.email_audit_log where id = ${id}::uuid`;
      if (now?.status === "cancelled") return { id, status: "cancelled" };
      throw new ApiError(
        409,
        "not_cancellable",
        `The message is ${now?.status ?? row.status}; only queued or scheduled sends can be cancelled`,
        { status: now?.status ?? row.status },
      );
    }
    return { id, status: "cancelled" };
  });
}
