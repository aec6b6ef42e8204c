// Request schemas (zod): the single source for validation and the request types.
import { z } from "zod";
import { type Address, countRecipients, parseAddress, type RecipientInput } from "./mail/addresses.ts";
import { ApiError, isUuid } from "./http.ts";
import { PRESET_IDS } from "./presets/providers.ts";

/** Issues carrying this param make `parseBody` answer `invalid_header_value` instead of `invalid_request`. */
const HEADER_BREAK = { code: "invalid_header_value" };
/** Issues carrying this param make `parseBody` answer 422 `too_many_recipients`. */
const TOO_MANY = { code: "too_many_recipients" };

const recipientInput = z.union([
  z.string().max(998),
  z.object({ email: z.string().max(320), name: z.string().max(200).optional() }).strict(),
]);

/** A value for an error message: JSON-quoted and cut to a readable length. */
function quoteShort(value: string): string {
  return JSON.stringify(value.length > 100 ? `${value.slice(0, 100)}…` : value);
}

/** A recipient in any accepted spelling, parsed into an Address. */
export const recipient = recipientInput.transform((value, ctx): Address => {
  const parsed = parseAddress(value as RecipientInput);
  if ("error" in parsed) {
    const breaks = parsed.error.includes("CR, LF or NUL");
    ctx.addIssue({
      code: "custom",
      message: `${quoteShort(typeof value === "string" ? value : value.email)} ${parsed.error}`,
      ...(breaks ? { params: HEADER_BREAK } : {}),
    });
    return z.NEVER;
  }
  return parsed;
});

/**
 * Most entries one recipient field may hold before any of them is parsed. The per-message
 * limit (`MAILROOM_MAX_RECIPIENTS`, after de-duplication) is checked later; this bounds the
 * work a request can cause before that.
 */
export const MAX_RECIPIENT_ENTRIES = 1000;

/** One recipient or a list of them; always a list once parsed. */
export const recipientList = z.preprocess(
  (v, ctx) => {
    const list = v === undefined || Array.isArray(v) ? v : [v];
    if (Array.isArray(list) && list.length > MAX_RECIPIENT_ENTRIES) {
      ctx.addIssue({ code: "custom", message: `at most ${MAX_RECIPIENT_ENTRIES} entries`, params: TOO_MANY });
      return z.NEVER;
    }
    return list;
  },
  z.array(recipient),
);

const noHeaderBreakers = (field: string) =>
  z.string().refine((s) => !/[\r\n\0]/.test(s), {
    message: `${field} must not contain CR, LF or NUL`,
    params: HEADER_BREAK,
  });

/** Longest a send may be scheduled ahead. */
export const MAX_SCHEDULE_AHEAD_DAYS = 30;

/**
 * When to send: an ISO 8601 date-time with a time zone offset (`2026-12-01T09:00:00+01:00`
 * or `...Z`), at most {@linkcode MAX_SCHEDULE_AHEAD_DAYS} days ahead. A time in the past
 * means "now".
 */
export const scheduledAt = z.string().max(64).refine(
  (value) =>
    /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:\d{2})$/.test(value) &&
    !Number.isNaN(Date.parse(value)),
  "must be an ISO 8601 date-time with a time zone, e.g. 2026-12-01T09:00:00Z",
).refine(
  (value) => Date.parse(value) <= Date.now() + MAX_SCHEDULE_AHEAD_DAYS * 86_400_000,
  `must be at most ${MAX_SCHEDULE_AHEAD_DAYS} days ahead`,
);

/** A file given inline: its bytes in base64. */
const inlineAttachment = z.object({
  filename: z.string().describe("The file's name as the recipient sees it"),
  content: z.string().describe("The bytes, standard base64"),
  content_type: z.string().optional().describe(
    "Its media type (type/subtype); sniffed or taken from the name when omitted",
  ),
}).strict();

/** A stored attachment (POST /attachments), by id. */
const storedAttachment = z.object({
  id: z.string().describe(
    "A stored attachment's id (POST /attachments): the file is carried once, however many messages",
  ),
  filename: z.string().optional().describe("Another name for it in this message (the stored one otherwise)"),
}).strict();

/** A file to fetch from an HTTPS URL when the send is accepted (and store, as an upload). */
const urlAttachment = z.object({
  url: z.string().max(2048).describe("An https URL, fetched once when the send is accepted (public hosts only)"),
  filename: z.string().optional().describe("Its name (else the server's, or the URL's last segment)"),
  content_type: z.string().optional().describe("Its media type (else the server's, checked against the bytes)"),
}).strict();

/** Attachments of a message: inline base64, stored ones by id, or HTTPS URLs. */
export const attachmentList = z.array(z.union([inlineAttachment, storedAttachment, urlAttachment])).describe(
  "Files: {filename, content (base64), content_type?}, {id} of a stored attachment (POST /attachments), " +
    "or {url} of an https file fetched once when the send is accepted",
);

/** JSON body of `POST /attachments`: a file in base64, or an https URL to fetch it from once. */
export const uploadAttachmentRequest = z.union([inlineAttachment, urlAttachment]);
export type UploadAttachmentRequest = z.infer<typeof uploadAttachmentRequest>;

/** One-click unsubscribe for a message: on, off, or on for a topic (a list the recipient leaves). */
const unsubscribeOption = z.union([
  z.boolean(),
  z.strictObject({
    topic: z.string().min(1).max(100).regex(
      /^[\p{L}\p{N}][\p{L}\p{N} ._:@+-]*$/u,
      "letters, digits, spaces, . _ : @ + -",
    )
      .describe("The list or topic the recipient leaves; all of your mail when omitted"),
  }),
]);

/** Body of `POST /send-email`. */
export const sendEmailRequest = z.object({
  to: recipientList.refine((list) => list.length > 0, "at least one recipient is required").describe(
    'Recipient(s): "a@example.com", "Ada <a@example.com>", {email, name?}, or a list of them',
  ),
  cc: recipientList.optional().describe("Cc recipient(s), as `to`"),
  bcc: recipientList.optional().describe("Bcc recipient(s), as `to`; not shown to the others"),
  reply_to: recipientList.optional().describe("Reply-To address(es)"),
  subject: noHeaderBreakers("subject").optional().describe("Subject (a template's subject when omitted)"),
  text: z.string().optional().describe("Plain-text body"),
  html: z.string().optional().describe("HTML body (a text part is derived from it when text is omitted)"),
  template: z.string().min(1).max(64).optional().describe("A template's name or id, instead of subject/text/html"),
  data: z.record(z.string(), z.unknown()).optional().describe("The template's variables"),
  from_name: noHeaderBreakers("from_name").pipe(z.string().max(200)).optional().describe(
    "Sender display name (the address is always the SMTP config's)",
  ),
  headers: z.record(z.string(), z.string()).optional().describe("Extra headers (X-*, List-Unsubscribe, ...)"),
  attachments: attachmentList.optional(),
  config: z.string().min(1).max(64).optional().describe("SMTP config by name or id; the default one when omitted"),
  agent_context: z.record(z.string(), z.unknown()).refine(withinAgentContextLimits).optional().describe(
    "Free-form context stored with the audit row (who asked, which run)",
  ),
  scheduled_at: scheduledAt.optional().describe(
    "Send later: an ISO 8601 time with a zone, at most 30 days ahead (the answer is then `scheduled`)",
  ),
  retry_deferred: z.boolean().optional().describe(
    "Retry recipients the server deferred (4xx) through the outbox, same Message-ID (default true); false to retry yourself",
  ),
  dry_run: z.boolean().optional().describe(
    "Check and render only: the answer shows the message and what would happen (would_send, " +
      "would_wait_for_approval, would_be_refused); nothing is queued, sent or counted",
  ),
  allow_duplicate: z.boolean().optional().describe(
    "Send even if this exact email (same config, recipients, subject, body, attachments) was sent or queued within " +
      "the config's duplicate window (default 10 minutes), which is otherwise refused with 409 duplicate_send. " +
      "Only when the user really wants it twice",
  ),
  unsubscribe: unsubscribeOption.optional().describe(
    "Add one-click unsubscribe (List-Unsubscribe with a signed link, List-Unsubscribe-Post): true, or {topic}. " +
      "A message to one recipient only. Bulk mail has it unless `unsubscribe: false`",
  ),
}).strict().refine((body) => body.text !== undefined || body.html !== undefined || body.template !== undefined, {
  message: "give text, html, both, or a template",
  path: ["text"],
}).refine((body) => body.data === undefined || body.template !== undefined, {
  message: "data is only used with a template",
  path: ["data"],
}).refine((body) => !body.unsubscribe || countRecipients(body) === 1, {
  message: "a one-click unsubscribe link names one recipient: send to one (send-bulk sends one message each)",
  path: ["unsubscribe"],
});

/** A validated send request. */
export type SendEmailRequest = z.infer<typeof sendEmailRequest>;

/** Largest `agent_context`, as UTF-8 JSON: it is stored with every audit row. */
export const MAX_AGENT_CONTEXT_BYTES = 8 * 1024;
/** Deepest `agent_context`: the object itself is level 1. */
export const MAX_AGENT_CONTEXT_DEPTH = 5;

/**
 * Refuse an oversized `agent_context` with its own code (thrown, so it is not folded into
 * `invalid_request`): 413 `agent_context_too_large` with both limits in `details`.
 */
function withinAgentContextLimits(context: Record<string, unknown>): boolean {
  const depth = (value: unknown): number => {
    if (value === null || typeof value !== "object") return 0;
    let deepest = 0;
    for (const inner of Object.values(value)) deepest = Math.max(deepest, depth(inner));
    return 1 + deepest;
  };
  // Size first: depth is then only measured on at most 8 KiB of JSON.
  const bytes = new TextEncoder().encode(JSON.stringify(context)).length;
  if (bytes > MAX_AGENT_CONTEXT_BYTES || depth(context) > MAX_AGENT_CONTEXT_DEPTH) {
    throw new ApiError(
      413,
      "agent_context_too_large",
      `agent_context must be at most ${MAX_AGENT_CONTEXT_BYTES} bytes as JSON and ${MAX_AGENT_CONTEXT_DEPTH} levels deep`,
      { limit_bytes: MAX_AGENT_CONTEXT_BYTES, limit_depth: MAX_AGENT_CONTEXT_DEPTH },
    );
  }
  return true;
}

/** Path of the first string (or key) holding a NUL character, which Postgres text cannot store. */
function nulPath(value: unknown): string | null {
  const found = findNul(value);
  return found === null ? null : found.reverse().join(".");
}

/** The path to the first NUL, innermost step first (built only once one is found), or null. */
function findNul(value: unknown): string[] | null {
  if (typeof value === "string") return value.includes("\0") ? [] : null;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const found = findNul(value[i]);
      if (found !== null) return (found.push(String(i)), found);
    }
  } else if (value && typeof value === "object") {
    for (const [key, inner] of Object.entries(value)) {
      if (key.includes("\0")) return [key.replace(/\0/g, "")];
      const found = findNul(inner);
      if (found !== null) return (found.push(key), found);
    }
  }
  return null;
}

const MAX_REPORTED_ISSUES = 20;

/** A validation problem as the API reports it: a dotted path and what is wrong there. */
export interface BodyIssue {
  path: string;
  message: string;
}

/**
 * Why a sender key is refused: senders used to Resend or Postmark put the sender in every
 * request (`from`, or `from_email` as a config has it), but here it belongs to the SMTP config
 * (the server only accepts its own addresses).
 */
export function senderKeyMessage(key = "from"): string {
  return `there is no ${JSON.stringify(key)}: the sender is always the SMTP config's from_email. Choose ` +
    "the config that sends with `config` (its name or id; the default config otherwise) and the display name with " +
    "`from_name`; to send from another address, create a config for it (POST /smtp-configs)";
}

/** What `from` gets (kept for callers that match on it). */
export const FROM_KEY_MESSAGE = senderKeyMessage("from");

/** Keys a request may carry by habit from other email APIs, each explained at its own path. */
const SENDER_KEYS = new Set(["from", "from_email", "sender"]);

/**
 * Zod's issues as the API reports them (at most `max`): dotted paths, and an unknown sender key
 * (`from`, `from_email`, `sender`) explained at its own path instead of folded into "Unrecognized key".
 */
export function bodyIssues(issues: readonly z.core.$ZodIssue[], max = MAX_REPORTED_ISSUES): BodyIssue[] {
  const out: BodyIssue[] = [];
  for (const issue of issues) {
    const path = issue.path.map(String);
    if (issue.code === "unrecognized_keys" && issue.keys.some((key) => SENDER_KEYS.has(key))) {
      for (const key of issue.keys.filter((key) => SENDER_KEYS.has(key))) {
        out.push({ path: [...path, key].join("."), message: senderKeyMessage(key) });
      }
      const others = issue.keys.filter((key) => !SENDER_KEYS.has(key));
      if (others.length === 0) continue;
      const quoted = others.map((key) => JSON.stringify(key)).join(", ");
      out.push({ path: path.join("."), message: `Unrecognized key${others.length > 1 ? "s" : ""}: ${quoted}` });
      continue;
    }
    out.push({ path: path.join("."), message: issue.message });
  }
  return out.slice(0, max);
}

/** Issues as one line: `path: message; ...`. */
export function issuesSummary(issues: BodyIssue[]): string {
  return issues.map((i) => (i.path ? `${i.path}: ${i.message}` : i.message)).join("; ");
}

/** Validate `value`, turning failures into 400 `invalid_request` with field paths. */
export function parseBody<T extends z.ZodType>(schema: T, value: unknown): z.infer<T> {
  const result = schema.safeParse(value);
  if (result.success) {
    const path = nulPath(value);
    if (path !== null) {
      throw new ApiError(400, "invalid_request", `${path || "body"}: NUL characters are not allowed`, {
        issues: [{ path, message: "NUL characters are not allowed" }],
      });
    }
    return result.data;
  }
  // The first few issues say enough; a thousand bad entries need not come back a thousand times.
  const issues = bodyIssues(result.error.issues);
  const summary = issuesSummary(issues);
  const flagged = (param: { code: string }) =>
    result.error.issues.some((issue) => (issue as { params?: { code?: string } }).params?.code === param.code);
  if (flagged(TOO_MANY)) throw new ApiError(422, "too_many_recipients", summary, { issues });
  throw new ApiError(400, flagged(HEADER_BREAK) ? "invalid_header_value" : "invalid_request", summary, { issues });
}

const configName = z.string().trim().min(1).max(64)
  .regex(/^[\p{L}\p{N}][\p{L}\p{N} ._@+-]*$/u, "use letters, digits, spaces and . _ @ + -")
  .refine((name) => !isUuid(name), "must not look like an id")
  // GET /smtp-configs/presets is the provider list, not a config.
  .refine((name) => name.toLowerCase() !== "presets", '"presets" is reserved');

// Stored in canonical form (see mail/addresses.ts), which the database checks again.
const fromEmail = z.string().max(320).transform((value, ctx) => {
  const parsed = parseAddress(value);
  if ("error" in parsed || parsed.name) {
    const why = "error" in parsed ? parsed.error : "must be a bare address";
    ctx.addIssue({ code: "custom", message: `${JSON.stringify(value)} ${why}` });
    return z.NEVER;
  }
  return parsed.address;
});

const configLimits = z.object({
  per_minute: z.number().int().min(1).max(10_000).optional(),
  per_day: z.number().int().min(1).max(1_000_000).optional(),
  max_connections: z.number().int().min(1).max(10).optional().describe(
    "SMTP sessions one function instance or outbox worker holds to this server at once, and so how many of this " +
      "config's messages the outbox sends in parallel (default 3; Microsoft 365 allows 3 per mailbox, Gmail about 15)",
  ),
}).strict();

const configFields = {
  name: configName,
  host: z.string().min(1).max(255),
  port: z.number().int().min(1).max(65535),
  security: z.enum(["tls", "starttls", "none"]),
  username: z.string().min(1).max(320).nullable(),
  password: z.string().min(1).max(1024),
  from_email: fromEmail,
  from_name: noHeaderBreakers("from_name").pipe(z.string().max(200)).nullable(),
  is_default: z.boolean(),
  is_active: z.boolean(),
  limits: configLimits,
  duplicate_window_seconds: z.number().int().min(0).max(86_400).describe(
    "How long a send through this config refuses the same email again (409 duplicate_send): same recipients, " +
      "subject, body and attachments; default 600 (10 minutes), 0 turns it off",
  ),
  suppress_hard_bounces: z.boolean().describe(
    "A recipient the server refuses because the mailbox does not exist (5.1.1, 5.1.2, 5.1.10) joins your " +
      "suppression list; default true",
  ),
};

const DEFAULT_PORTS = { tls: 465, starttls: 587, none: 25 } as const;

/** Where the HTTPS transports send (the config's host for them is fixed, never the caller's). */
export const HTTPS_TRANSPORT_HOSTS = { graph: "graph.microsoft.com", gmail_api: "gmail.googleapis.com" } as const;

/** An OAuth grant as the user gives it: the issuer, the client, and the refresh token from consent. */
const oauthGrant = z.strictObject({
  provider: z.enum(["google", "microsoft", "custom"]).describe(
    "Who issued the grant: google (Gmail / Google Workspace), microsoft (Microsoft 365, Outlook.com) or custom " +
      "(any other OAuth 2.0 provider: give its token_url; XOAUTH2 over SMTP only)",
  ),
  client_id: z.string().min(1).max(512).describe("The OAuth app's client id"),
  client_secret: z.string().min(1).max(1024).optional().describe(
    "The app's client secret, when it has one (kept in Vault, never shown again)",
  ),
  refresh_token: z.string().min(1).max(4096).describe(
    "The refresh token from the user's consent (offline access; kept in Vault, never shown again)",
  ),
  tenant: z.string().regex(/^[A-Za-z0-9.-]{1,255}$/).optional().describe(
    "Microsoft only: the tenant id or domain (default common)",
  ),
  token_url: z.string().max(2048).regex(/^https:\/\/[A-Za-z0-9.-]+(:[0-9]{1,5})?(\/[^\s#]*)?$/, "must be an https URL")
    .optional().describe(
      "custom only (and required there): the provider's token endpoint, an https URL on a public address " +
        "(checked like an SMTP host; redirects are not followed)",
    ),
  scopes: z.array(
    // RFC 6749 section 3.3: a scope is printable ASCII without spaces, quotes or backslashes.
    z.string().min(1).max(200).regex(/^[\x21\x23-\x5B\x5D-\x7E]+$/, "must be one scope (no spaces)"),
  ).min(1).max(20).optional().describe(
    "custom only: the scopes to ask for when refreshing (omitted: the grant's own)",
  ),
});

/** Whether a grant fits its transport and provider; an issue's text, or null. */
function grantProblem(transport: string, grant: z.infer<typeof oauthGrant>): { path: string; message: string } | null {
  if (grant.provider === "custom" && transport !== "smtp") {
    return {
      path: "transport",
      message: `a custom provider's mailbox sends over SMTP with XOAUTH2 (transport smtp); ${transport} is ` +
        (transport === "graph" ? "Microsoft's" : "Google's") + " API",
    };
  }
  if (transport === "graph" && grant.provider !== "microsoft") {
    return { path: "transport", message: "graph sends for Microsoft mailboxes (oauth.provider microsoft)" };
  }
  if (transport === "gmail_api" && grant.provider !== "google") {
    return { path: "transport", message: "gmail_api sends for Google mailboxes (oauth.provider google)" };
  }
  if (grant.tenant !== undefined && grant.provider !== "microsoft") {
    return { path: "oauth.tenant", message: "only a Microsoft grant has a tenant" };
  }
  if (grant.provider === "custom") {
    // graph and gmail_api are refused above: they send only for their own provider's mailboxes.
    if (grant.token_url === undefined) {
      return { path: "oauth.token_url", message: "a custom provider needs its token endpoint: token_url (https)" };
    }
    return null;
  }
  // google and microsoft have their own token endpoints and the transport's scopes.
  if (grant.token_url !== undefined) {
    return { path: "oauth.token_url", message: "only a custom provider takes a token_url" };
  }
  if (grant.scopes !== undefined) {
    return { path: "oauth.scopes", message: "the scopes of google and microsoft grants are the transport's" };
  }
  return null;
}

/** Body of `POST /smtp-configs`. */
export const createConfigRequest = z.object({
  ...configFields,
  host: configFields.host.optional(),
  auth_type: z.enum(["password", "oauth2"]).default("password").describe(
    "password (the default) or oauth2: a grant from the mailbox's provider (give oauth)",
  ),
  transport: z.enum(["smtp", "graph", "gmail_api"]).default("smtp").describe(
    "How messages leave: smtp (with oauth2: SASL XOAUTH2), or with oauth2 Microsoft Graph (graph) or the Gmail API " +
      "(gmail_api), which work where SMTP ports are blocked (Microsoft 365 submits only on 587)",
  ),
  oauth: oauthGrant.optional(),
  preset: z.enum(PRESET_IDS).optional().describe(
    "A provider from GET /smtp-configs/presets: its host, port, security and sending limits are filled in " +
      "(fields given here win), so only name, username, password and from_email are needed",
  ),
  port: configFields.port.optional(),
  security: configFields.security.default("tls"),
  username: configFields.username.optional(),
  password: configFields.password.optional(),
  from_name: configFields.from_name.optional(),
  is_default: configFields.is_default.optional(),
  is_active: configFields.is_active.default(true),
  limits: configLimits.optional(),
  duplicate_window_seconds: configFields.duplicate_window_seconds.optional(),
  suppress_hard_bounces: configFields.suppress_hard_bounces.optional(),
}).strict()
  .superRefine((c, ctx) => {
    const issue = (path: string, message: string) => ctx.addIssue({ code: "custom", path: path.split("."), message });
    if (c.auth_type === "password") {
      if (c.oauth !== undefined) issue("auth_type", 'oauth is for auth_type "oauth2"');
      if (c.transport !== "smtp") issue("transport", `${c.transport} needs auth_type "oauth2" and an oauth grant`);
      if (c.host === undefined) issue("host", "host is required (or name a preset)");
      if (c.username && c.password === undefined) issue("password", "password is required when username is given");
      return;
    }
    if (c.oauth === undefined) {
      return issue("oauth", 'auth_type "oauth2" needs the grant: oauth {provider, client_id, refresh_token}');
    }
    if (c.password !== undefined) issue("password", "an OAuth config has no password");
    const problem = grantProblem(c.transport, c.oauth);
    if (problem) issue(problem.path, problem.message);
    if (c.transport !== "smtp" && (c.host !== undefined || c.port !== undefined)) {
      issue("host", `host and port do not apply to transport ${c.transport}: it sends over the provider's HTTPS API`);
    }
    if (c.transport === "smtp" && c.host === undefined) {
      issue("host", "XOAUTH2 over SMTP needs the server: host (or a preset, e.g. gmail)");
    }
  })
  .transform((c) => {
    if (c.transport === "graph" || c.transport === "gmail_api") {
      return { ...c, host: HTTPS_TRANSPORT_HOSTS[c.transport], port: 443, security: "tls" as const };
    }
    return { ...c, host: c.host!, port: c.port ?? DEFAULT_PORTS[c.security] };
  });

/** A validated create request. */
export type CreateConfigRequest = z.infer<typeof createConfigRequest>;

/**
 * Body of `PATCH /smtp-configs/:id`: any subset; a password rotates the Vault secret, and
 * `oauth` (an OAuth config's) reconnects it: a new refresh token (and client secret).
 */
export const updateConfigRequest = z.object({
  ...configFields,
  oauth: z.strictObject({
    refresh_token: oauthGrant.shape.refresh_token,
    client_secret: oauthGrant.shape.client_secret,
  }).optional().describe("Reconnect an OAuth config: the refresh token of a new consent (and a new client secret)"),
}).partial().strict()
  .refine((c) => Object.keys(c).length > 0, { message: "give at least one field to change" });

/** A validated update request. */
export type UpdateConfigRequest = z.infer<typeof updateConfigRequest>;

/** A folder name as IMAP servers show it (no control characters). */
const imapFolder = z.string().min(1).max(200)
  .refine((name) => ![...name].some((c) => c.charCodeAt(0) < 0x20 || c.charCodeAt(0) === 0x7f), "no control characters")
  .nullable();

/**
 * Body of `PATCH /smtp-configs/:ref/imap`: any subset of the IMAP settings; the first time,
 * `host` and a login (`username` and `password`, or `use_smtp_login`).
 */
export const imapSettingsRequest = z.strictObject({
  host: z.string().min(1).max(253).describe("The IMAP server, e.g. imap.fastmail.com"),
  port: z.number().int().min(1).max(65535).describe("993 (tls, the default) or 143 (starttls)"),
  security: z.enum(["tls", "starttls", "none"]).describe("tls (implicit, port 993; the default) or starttls"),
  username: z.string().min(1).max(320).nullable().describe("The IMAP login (usually the mailbox address)"),
  password: z.string().min(1).max(1024).describe("The IMAP password (kept in Vault, never shown again)"),
  use_smtp_login: z.boolean().describe(
    "Log in with the config's own SMTP username and password instead (most providers use the same ones)",
  ),
  read_bounces: z.boolean().describe(
    "Read delivery status notifications and complaint reports from the inbox every few minutes (default true)",
  ),
  copy_to_sent: z.boolean().describe("Put a copy of each sent message in the Sent folder (default true)"),
  sent_folder: imapFolder.describe("The folder for Sent copies (default: the one marked \\Sent, else one named Sent)"),
  processed_folder: imapFolder.describe(
    "Move matched reports to this folder (default null: the inbox is only read, nothing in it changes)",
  ),
}).partial()
  .refine((c) => Object.keys(c).length > 0, { message: "give at least one setting" })
  .refine((c) => !(c.password !== undefined && c.use_smtp_login === true), {
    message: "give a password or use_smtp_login, not both",
    path: ["use_smtp_login"],
  });

/** A validated IMAP settings request. */
export type ImapSettingsRequest = z.infer<typeof imapSettingsRequest>;

// Bulk sends (send-bulk) --------------------------------------------------------------------
// The request is validated in two passes: this schema checks the request's own fields, and
// every entry of `recipients` or `messages` is then validated on its own (bulkRecipient,
// sendEmailRequest), so that one bad entry is reported by its index (or skipped) instead of
// failing the whole request.

/** Fields a recipients-mode batch shares; messages-mode batches carry them per message. */
const BULK_SHARED_CONTENT = [
  "subject",
  "text",
  "html",
  "template",
  "data",
  "headers",
  "from_name",
  "reply_to",
  "attachments",
] as const;

/**
 * One recipient of a bulk send: `"a@example.com"`, `"Ada <a@example.com>"` or
 * `{email, name?, data?}`, parsed into its canonical address as send-email parses `to`.
 */
export const bulkRecipient = z.preprocess(
  (value) => typeof value === "string" ? { email: value } : value,
  z.object({
    email: z.string().describe('The address, "a@example.com" or "Ada <a@example.com>"'),
    name: z.string().optional().describe("Display name, when email is a bare address"),
    data: z.record(z.string(), z.unknown()).optional().describe(
      "Template data for this recipient, merged over the shared data (its keys win)",
    ),
  }).strict(),
).transform((entry, ctx) => {
  const parsed = parseAddress(entry.name === undefined ? entry.email : { email: entry.email, name: entry.name });
  if ("error" in parsed) {
    ctx.addIssue({ code: "custom", message: `${quoteShort(entry.email)} ${parsed.error}`, path: ["email"] });
    return z.NEVER;
  }
  return { to: parsed, data: entry.data };
});

/** A validated bulk recipient: its canonical address and its own template data. */
export type BulkRecipient = z.infer<typeof bulkRecipient>;

/** Body of `POST /send-bulk`: `recipients` with shared content, or `messages`. */
export const sendBulkRequest = z.object({
  recipients: z.array(z.unknown()).min(1).optional().describe(
    'Who gets the shared content, one message each: "a@example.com", "Ada <a@example.com>" or ' +
      "{email, name?, data?}. Each entry is validated on its own.",
  ),
  messages: z.array(z.unknown()).min(1).optional().describe(
    "Instead of recipients: complete send-email bodies, one message each (no scheduled_at or config; " +
      "those apply to the whole batch). Each entry is validated on its own.",
  ),
  subject: noHeaderBreakers("subject").optional().describe("Shared subject (recipients mode)"),
  text: z.string().optional().describe("Shared plain-text body (recipients mode)"),
  html: z.string().optional().describe("Shared HTML body (recipients mode)"),
  template: z.string().min(1).max(64).optional().describe("Shared template, by name or id (recipients mode)"),
  data: z.record(z.string(), z.unknown()).optional().describe(
    "Template data every recipient shares; each recipient's data is merged over it",
  ),
  headers: z.record(z.string(), z.string()).optional().describe("Shared extra headers (X-*, List-Unsubscribe, ...)"),
  from_name: noHeaderBreakers("from_name").pipe(z.string().max(200)).optional().describe("Sender display name"),
  reply_to: recipientList.optional().describe("Shared Reply-To address(es)"),
  attachments: attachmentList.optional().describe(
    "Shared files (recipients mode), stored once for the whole batch: {id} of a stored attachment, {url} fetched " +
      "once, or {filename, content (base64)}",
  ),
  config: z.string().min(1).max(64).optional().describe("SMTP config by name or id; the default one when omitted"),
  agent_context: z.record(z.string(), z.unknown()).refine(withinAgentContextLimits).optional().describe(
    "Free-form context stored with the batch and every message's audit row",
  ),
  scheduled_at: scheduledAt.optional().describe("When to start sending; now when omitted or in the past"),
  dry_run: z.boolean().optional().describe(
    "Check and render only: the answer shows the first messages and what would happen; nothing is queued",
  ),
  skip_invalid: z.boolean().optional().describe(
    "Queue the valid entries and report the invalid ones as `skipped` instead of refusing the request",
  ),
  unsubscribe: unsubscribeOption.optional().describe(
    "One-click unsubscribe in every message (List-Unsubscribe with a signed link per recipient): on unless false; " +
      "{topic} names the list. In messages mode, messages to one recipient only",
  ),
  allow_duplicate: z.boolean().optional().describe(
    "Queue every entry even if the same email (same recipient and content) was sent or queued within the config's " +
      "duplicate window, or appears twice in this batch; otherwise those entries are left out and reported in " +
      "`skipped` with reason duplicate_send",
  ),
}).strict().superRefine((body, ctx) => {
  if ((body.recipients === undefined) === (body.messages === undefined)) {
    ctx.addIssue({ code: "custom", message: "give either recipients or messages", path: ["recipients"] });
    return;
  }
  if (body.messages !== undefined) {
    for (const field of BULK_SHARED_CONTENT) {
      if (body[field] !== undefined) {
        ctx.addIssue({ code: "custom", message: `${field} goes into each message in messages mode`, path: [field] });
      }
    }
    return;
  }
  if (body.text === undefined && body.html === undefined && body.template === undefined) {
    ctx.addIssue({ code: "custom", message: "give text, html, both, or a template", path: ["text"] });
  }
  if (body.template !== undefined) return;
  if (body.data !== undefined) {
    ctx.addIssue({ code: "custom", message: "data is only used with a template", path: ["data"] });
  }
  // Without a template nothing would use it, and text like "Hi {{name}}" would go out as written.
  let reported = 0;
  for (const [index, entry] of (body.recipients ?? []).entries()) {
    if (entry === null || typeof entry !== "object" || (entry as { data?: unknown }).data === undefined) continue;
    ctx.addIssue({ code: "custom", message: "data is only used with a template", path: ["recipients", index, "data"] });
    if (++reported === MAX_REPORTED_ISSUES) return;
  }
});

/** A validated send-bulk request (entries not yet validated). */
export type SendBulkRequest = z.infer<typeof sendBulkRequest>;

const templateName = z.string().trim().min(1).max(64)
  .regex(/^[\p{L}\p{N}][\p{L}\p{N} ._@+-]*$/u, "use letters, digits, spaces and . _ @ + -")
  .refine((name) => !isUuid(name), "must not look like an id");

const templateVariables = z.union([
  z.array(z.string().min(1).max(200)).max(200),
  z.object({
    required: z.array(z.string().min(1).max(200)).max(200).optional(),
    properties: z.record(
      z.string().min(1).max(200),
      z.object({ type: z.string().max(64).optional(), description: z.string().max(1000).optional() }).strict(),
    ).optional(),
  }).strict(),
]);

const templateFields = {
  name: templateName,
  description: z.string().max(1000).nullable(),
  subject: z.string().max(998).nullable(),
  html: z.string().nullable(),
  text: z.string().nullable(),
  variables: templateVariables.nullable(),
};

/** Body of `POST /templates`: Mustache parts (html escaped), at least one of html and text. */
export const createTemplateRequest = z.object({
  name: templateFields.name,
  description: templateFields.description.optional(),
  subject: templateFields.subject.optional(),
  html: templateFields.html.optional(),
  text: templateFields.text.optional(),
  variables: templateFields.variables.optional(),
}).strict().refine((t) => (t.html ?? null) !== null || (t.text ?? null) !== null, {
  message: "a template needs html or text",
});
export type CreateTemplateRequest = z.infer<typeof createTemplateRequest>;

/** Body of `PATCH /templates/:ref`: any of the fields; null clears an optional one. */
export const updateTemplateRequest = z.object(templateFields).partial().strict()
  .refine((t) => Object.keys(t).length > 0, { message: "nothing to update" });
export type UpdateTemplateRequest = z.infer<typeof updateTemplateRequest>;

/** Body of `POST /templates/:ref/preview`. */
export const previewTemplateRequest = z.object({
  data: z.record(z.string(), z.unknown()).optional(),
  subject: noHeaderBreakers("subject").optional().describe(
    "The subject a send would give (it overrides the template's); needed to preview a template without one",
  ),
}).strict();
