// What the functions answer, as zod schemas: the OpenAPI document's response schemas (and so
// the SDK's response types, generated from it), and the contract the tests check real
// responses against (strict objects: a field the server adds without documenting it fails).
import { z } from "zod";

const timestamp = z.string().describe("ISO 8601");
const uuid = z.string().uuid();

export const recipientOutcome = z.strictObject({
  address: z.string(),
  status: z.enum(["accepted", "rejected", "deferred", "unknown"]),
  smtp_code: z.number().int().nullable(),
  enhanced_code: z.string().nullable(),
  response: z.string().nullable(),
});

/** Why a send waits for the owner, until when, and where they decide. */
const approvalHold = z.strictObject({
  reason: z.enum(["agents", "always"]).describe("agents: made by an agent (an OAuth client or the agent tools)"),
  expires_at: timestamp.describe("Ends as expired, unsent, unless approved by then"),
  url: z.string().optional().describe("The approval page (MAILROOM_APPROVAL_URL), where the owner decides"),
  message: z.string().describe("For the model: what happened and what to tell the user"),
});

/** A message as a dry run shows it: as it would be built and sent. */
const dryRunMessage = z.strictObject({
  from: z.string(),
  to: z.array(z.string()),
  cc: z.array(z.string()),
  bcc: z.array(z.string()),
  subject: z.string().nullable(),
  text: z.string().nullable(),
  html: z.string().nullable(),
  headers: z.string().describe("The header block exactly as it would be sent"),
  envelope: z.strictObject({ from: z.string(), to: z.array(z.string()) }),
  suppressed: z.array(z.string()).describe(
    "Recipients on your suppression list: a real send skips them (all of them: nothing would be sent)",
  ),
  size_bytes: z.number().int(),
});
const dryRunVerdict = {
  outcome: z.enum(["would_send", "would_wait_for_approval", "would_be_refused"]),
  approval: z.strictObject({ reason: z.enum(["agents", "always"]) }).optional(),
  refusal: z.strictObject({
    status: z.number().int(),
    code: z.string().describe("recipient_denied, recipient_cap_exceeded or sending_stopped"),
    message: z.string(),
    details: z.unknown().optional(),
  }).optional(),
};

export const dryRunResult = z.strictObject({
  dry_run: z.literal(true),
  ...dryRunVerdict,
  message: dryRunMessage,
}).describe("dry_run: nothing was queued or sent");

export const sendResult = z.union([
  z.strictObject({
    id: uuid,
    status: z.enum(["sent", "suppressed"]).describe(
      "suppressed: every recipient is on your suppression list (unsubscribed, bounced); nothing was sent",
    ),
    message_id: z.string(),
    accepted: z.array(z.string()),
    rejected: z.array(z.string()),
    deferred: z.array(z.string()),
    unknown: z.array(z.string()),
    recipients: z.array(recipientOutcome),
    suppressed: z.array(z.string()).describe(
      "Recipients skipped because they are on your suppression list (GET /suppressions); the others got it",
    ),
    retry: z.strictObject({
      next_attempt_at: timestamp.describe("When the outbox tries the deferred recipients again"),
      recipients: z.array(z.string()).describe("The deferred recipients it will try (only those)"),
    }).optional().describe(
      "Present when some recipients were deferred (4xx): the message waits in the outbox for them, same Message-ID",
    ),
  }),
  z.strictObject({
    id: uuid,
    status: z.enum(["scheduled", "queued"]),
    scheduled_at: timestamp,
    message_id: z.string(),
  }),
  z.strictObject({
    id: uuid,
    status: z.literal("pending_approval"),
    message_id: z.string(),
    scheduled_at: timestamp.optional().describe("When it goes once approved (now when absent)"),
    approval: approvalHold,
  }),
]);

export const cancelled = z.strictObject({ id: uuid, status: z.literal("cancelled") });
export const retried = z.strictObject({ id: uuid, status: z.literal("queued") });

/** The message a repeat names (409 duplicate_send, and send-bulk's skipped entries). */
const earlierSend = z.strictObject({
  id: uuid,
  status: z.string(),
  message_id: z.string().nullable().describe("null while an immediate send is still in flight"),
  created_at: z.string(),
  scheduled_at: z.string().nullable(),
});

/** An entry send-bulk left out: invalid, or the same email as a recent message or an earlier entry. */
const skippedEntry = z.strictObject({
  index: z.number().int(),
  reason: z.string(),
  code: z.literal("duplicate_send").optional().describe("Set when the entry repeats an email: it was left out"),
  duplicate_of: z.union([earlierSend, z.strictObject({ entry: z.number().int() })]).optional().describe(
    "What it repeats: a recent message, or an earlier entry of this request",
  ),
});

export const bulkDryRun = z.strictObject({
  dry_run: z.literal(true),
  ...dryRunVerdict,
  count: z.number().int().describe("Messages that would be queued"),
  samples: z.array(dryRunMessage).describe("The first three, built as they would be sent"),
  skipped: z.array(skippedEntry).optional(),
});

export const bulkAccepted = z.strictObject({
  batch_id: uuid,
  queued: z.number().int(),
  pending_approval: z.number().int().optional().describe("Messages that wait for the owner's approval"),
  approval: approvalHold.optional(),
  scheduled_at: timestamp.optional(),
  suppressed: z.array(z.string()).optional().describe(
    "Recipients on your suppression list: their messages end `suppressed` when their turn comes, nothing sent",
  ),
  skipped: z.array(skippedEntry).optional(),
  warnings: z.array(z.strictObject({ code: z.string(), message: z.string() })).optional().describe(
    "Accepted, but: exceeds_daily_budget (more waits for the config than its per-day limit still allows)",
  ),
});

export const batchStatus = z.strictObject({
  batch_id: uuid,
  created_at: timestamp,
  scheduled_at: timestamp.nullable(),
  total: z.number().int(),
  counts: z.strictObject({
    queued: z.number().int(),
    scheduled: z.number().int(),
    sending: z.number().int(),
    sent: z.number().int(),
    deferred: z.number().int(),
    failed: z.number().int(),
    unknown: z.number().int(),
    cancelled: z.number().int(),
    pending_approval: z.number().int().describe("Waiting for the owner's approval"),
    rejected: z.number().int(),
    expired: z.number().int().describe("Nobody approved them in time"),
    suppressed: z.number().int().describe("Every recipient on your suppression list: nothing sent"),
  }),
  first_sent_at: timestamp.nullable(),
  last_sent_at: timestamp.nullable(),
  rate_per_minute: z.number().nullable(),
  top_errors: z.array(z.strictObject({ error_class: z.string(), count: z.number().int() })),
  waiting: z.array(z.strictObject({
    reason: z.string().describe(
      "set_aside, config_paused, server_pushed_back, rate_limited, deferred_by_server, scheduled or due",
    ),
    count: z.number().int(),
    next_attempt_at: timestamp.nullable().describe("The earliest next attempt; null while it waits for you"),
    detail: z.string().nullable().describe("Why, in the server's or the config's words"),
  })).optional().describe("Why the batch's queued and scheduled messages wait (one batch's progress only)"),
  recipients: z.strictObject({ accepted: z.number().int(), rejected: z.number().int(), deferred: z.number().int() })
    .optional().describe(
      "Recipients by outcome so far, partly delivered messages included (one batch's progress only)",
    ),
});

export const batchList = z.strictObject({ batches: z.array(batchStatus), next_before: timestamp.nullable() });
export const batchCancelled = z.strictObject({ batch_id: uuid, cancelled: z.number().int() });

export const smtpConfig = z.strictObject({
  id: uuid,
  name: z.string(),
  host: z.string(),
  port: z.number().int(),
  security: z.enum(["tls", "starttls", "none"]),
  auth_type: z.enum(["password", "oauth2"]),
  transport: z.enum(["smtp", "graph", "gmail_api"]).describe(
    "How messages leave: SMTP, Microsoft Graph sendMail or the Gmail API (the last two with OAuth)",
  ),
  oauth: z.strictObject({
    provider: z.enum(["google", "microsoft", "custom"]),
    client_id: z.string(),
    tenant: z.string().nullable(),
    token_url: z.string().nullable(),
    scopes: z.array(z.string()).nullable(),
    has_refresh_token: z.boolean(),
    has_client_secret: z.boolean(),
  }).nullable().describe("The OAuth grant's issuer and client (never its secrets); null for a password config"),
  username: z.string().nullable(),
  from_email: z.string(),
  from_name: z.string().nullable(),
  is_default: z.boolean(),
  is_active: z.boolean(),
  limits: z.strictObject({
    per_minute: z.number().int(),
    per_day: z.number().int(),
    max_connections: z.number().int().describe(
      "SMTP sessions one instance or outbox worker holds at once to this server (messages sent in parallel)",
    ),
  }),
  duplicate_window_seconds: z.number().int().describe(
    "How long a send through this config refuses the same email again (409 duplicate_send); 0: never",
  ),
  suppress_hard_bounces: z.boolean().describe("Hard bounces at RCPT join your suppression list"),
  imap: z.strictObject({
    host: z.string(),
    read_bounces: z.boolean(),
    copy_to_sent: z.boolean(),
    last_error: z.string().nullable(),
  }).nullable().describe(
    "Its mailbox over IMAP (bounces read back, Sent copies); GET /smtp-configs/{ref}/imap has all",
  ),
  has_password: z.boolean(),
  credentials_changed_at: timestamp.describe("When the server, login, password or OAuth grant last changed"),
  needs_attention: z.string().nullable().describe("Why the outbox paused this config's queue, until fixed"),
  backoff_until: timestamp.nullable().describe(
    "The server pushed back (421, or 450 at MAIL FROM): the outbox leaves this config alone until then",
  ),
  backoff_reason: z.string().nullable().describe("The server's words when it pushed back"),
  created_at: timestamp,
  updated_at: timestamp,
});

const warning = z.strictObject({ code: z.string(), message: z.string() });
export const smtpConfigWithWarnings = smtpConfig.extend({ warnings: z.array(warning) });
export const configList = z.strictObject({ configs: z.array(smtpConfig) });
export const deleted = z.strictObject({ id: uuid, deleted: z.literal(true) });

export const deliverability = z.strictObject({
  domain: z.string(),
  checked: z.boolean().describe("false when DNS could not be asked from here (the rest is then unknown)"),
  spf: z.strictObject({
    found: z.boolean(),
    record: z.string().nullable(),
    covers_provider: z.boolean().nullable().describe(
      "whether it includes the sending provider's SPF (null: cannot tell)",
    ),
    provider: z.string().nullable(),
  }),
  dmarc: z.strictObject({
    found: z.boolean(),
    record: z.string().nullable(),
    policy: z.enum(["none", "quarantine", "reject"]).nullable(),
  }),
  verdict: z.enum(["likely_inbox", "may_land_in_spam", "unknown"]),
  hints: z.array(z.string()).describe("What to change, in plain words"),
});

export const verification = z.strictObject({
  ok: z.literal(true),
  tls: z.boolean(),
  auth: z.boolean(),
  latency_ms: z.number(),
  server_banner: z.string().nullable(),
  deliverability: deliverability.describe("The From domain's SPF and DMARC, as DNS says from here"),
});

const scopes = z.array(z.string());

export const presetList = z.strictObject({
  presets: z.array(z.strictObject({
    id: z.string(),
    name: z.string(),
    smtp: z.strictObject({ host: z.string(), port: z.number().int(), security: z.enum(["tls", "starttls"]) }),
    auth: z.array(z.enum(["password", "app_password", "api_key", "oauth2"])),
    credentials: z.string(),
    oauth: z.strictObject({
      provider: z.enum(["google", "microsoft"]),
      scopes: z.strictObject({ smtp: scopes.optional(), graph: scopes.optional(), gmail_api: scopes.optional() }),
    }).optional(),
    https_transports: z.array(z.enum(["graph", "gmail_api"])),
    limits: z.strictObject({
      per_day: z.number().int().optional(),
      per_minute: z.number().int().optional(),
      recipients_per_message: z.number().int().optional(),
      note: z.string(),
    }),
    note: z.string().optional(),
    docs: z.string(),
    sending: z.strictObject({ domains: z.array(z.string()), spf_includes: z.array(z.string()) }).describe(
      "The domains of the hosts that send for it, and the SPF include that authorises them",
    ),
    reachable_here: z.strictObject({ smtp: z.boolean(), reason: z.string().optional() }),
  })),
});

export const verificationList = z.strictObject({
  config_id: uuid,
  verifications: z.array(z.strictObject({
    id: uuid,
    ok: z.boolean(),
    error_class: z.string().nullable(),
    latency_ms: z.number().int().nullable(),
    server_banner: z.string().nullable(),
    created_at: timestamp,
  })),
});

const templateVariables = z.union([
  z.array(z.string()),
  z.object({ required: z.array(z.string()).optional(), properties: z.record(z.string(), z.unknown()).optional() }),
]).nullable();

export const template = z.strictObject({
  id: uuid,
  name: z.string(),
  description: z.string().nullable(),
  subject: z.string().nullable(),
  html: z.string().nullable().optional(),
  text: z.string().nullable().optional(),
  variables: templateVariables,
  starter: z.boolean().describe("A shared starter template: read-only"),
  required_variables: z.array(z.string()).optional(),
  created_at: timestamp,
  updated_at: timestamp,
});
export const templateList = z.strictObject({ templates: z.array(template) });

/** A stored attachment (POST /attachments): its record, never its bytes. */
export const attachment = z.strictObject({
  id: uuid.describe('Attach it to any send as {"id": ...}'),
  filename: z.string(),
  content_type: z.string().describe("Declared, else sniffed from the bytes, else from the name; checked against both"),
  size_bytes: z.number().int(),
  sha256: z.string().describe("SHA-256 of the bytes, hex"),
  source_url: z.string().nullable().describe("Where it was fetched from, for a file given by URL"),
  created_at: z.string(),
  expires_at: z.string().describe("When it is deleted: the retention after upload, extended by sends that wait for it"),
});
export const attachmentList = z.strictObject({
  attachments: z.array(attachment).describe("Newest first"),
  next_cursor: z.string().nullable().describe("Pass as ?cursor= for the next page; null on the last"),
});
export const templatePreview = z.strictObject({
  template: z.strictObject({ id: uuid, name: z.string() }),
  subject: z.string().nullable(),
  text: z.string().nullable(),
  html: z.string().nullable(),
});

const counts = {
  total: z.number().int(),
  sent: z.number().int(),
  failed: z.number().int(),
  unknown: z.number().int(),
};

export const analyticsSummary = z.strictObject({
  range: z.strictObject({ from: timestamp, to: timestamp, interval: z.enum(["hour", "day"]), tz: z.string() }),
  total: z.number().int(),
  totals: z.record(z.string(), z.number().int()),
  success_rate: z.number().nullable().describe(
    "sent / (sent + failed + unknown + deferred); null when nothing finished",
  ),
  latency_ms: z.strictObject({
    count: z.number().int(),
    p50: z.number().nullable(),
    p90: z.number().nullable(),
    p99: z.number().nullable(),
  }).describe("From due (scheduled or requested) to the server's acceptance, over sent messages"),
  series: z.array(z.strictObject({ start: timestamp, ...counts })),
  breakdowns: z.record(
    z.string(),
    z.array(z.strictObject({ key: z.string().nullable(), name: z.string().nullable(), ...counts })),
  ),
});

export const message = z.strictObject({
  id: uuid,
  created_at: timestamp,
  completed_at: timestamp.nullable(),
  scheduled_at: timestamp.nullable(),
  status: z.string(),
  from: z.string(),
  to: z.array(z.string()),
  cc_count: z.number().int(),
  bcc_count: z.number().int(),
  subject: z.string().nullable(),
  recipients: z.array(
    recipientOutcome.extend({
      status: z.enum(["accepted", "rejected", "deferred", "unknown", "bounced"]).describe(
        "bounced: accepted by your server, then returned by the recipient's (a bounce report read from your mailbox)",
      ),
    }).partial({ smtp_code: true, enhanced_code: true, response: true }),
  ).nullable(),
  bounced: z.array(z.string()).describe("Recipients whose mail came back later (bounce reports in your mailbox)"),
  reports: z.array(z.strictObject({
    address: z.string(),
    kind: z.enum(["bounce", "delay", "complaint"]),
    status: z.string().optional().describe("The enhanced status code (5.1.1), or a complaint's feedback type"),
    diagnostic: z.string().optional().describe("What the recipient's server said"),
    remote_mta: z.string().optional(),
    reported_at: timestamp.optional(),
  })).nullable().describe("Delivery and complaint reports read back from your mailbox over IMAP"),
  sent_copy: z.strictObject({
    status: z.enum(["copied", "failed"]),
    folder: z.string().optional(),
    error: z.string().optional(),
    at: timestamp,
  }).nullable().describe("The copy in your mailbox's Sent folder (configs with IMAP settings)"),
  error_code: z.string().nullable(),
  error_message: z.string().nullable(),
  smtp_response_code: z.number().int().nullable(),
  message_id: z.string().nullable(),
  attempts: z.number().int(),
  batch_id: uuid.nullable(),
  config: z.strictObject({ id: uuid, name: z.string().nullable() }).nullable(),
  template_id: uuid.nullable(),
  agent_context: z.record(z.string(), z.unknown()).nullable(),
  client_id: z.string().nullable().describe("The OAuth client (agent) whose token made the send"),
  via: z.string().nullable().describe("The agent tools that made it (mcp, langchain), if any"),
  suppressed: z.array(z.string()).describe("Recipients skipped: they are on your suppression list"),
  duplicate_of: uuid.nullable().describe(
    "The earlier message this one repeats: it was sent anyway with allow_duplicate (see duplicate_send)",
  ),
  waiting: z.strictObject({
    reason: z.string().describe(
      "set_aside, config_paused, server_pushed_back, rate_limited, deferred_by_server, scheduled or due",
    ),
    detail: z.string().nullable(),
    next_attempt_at: timestamp.nullable().describe("null while it waits for you (set aside, paused config)"),
  }).nullable().describe("Why a queued or scheduled message waits; null otherwise"),
});
export const messagePage = z.strictObject({ messages: z.array(message), next_cursor: z.string().nullable() });

/** One scope's guardrails (the account's when config_id is null) and its stop button. */
export const guardrails = z.strictObject({
  config_id: z.string().nullable(),
  allow_recipients: z.array(z.string()).nullable(),
  deny_recipients: z.array(z.string()),
  max_recipients_per_request: z.number().int().nullable(),
  approval: z.enum(["off", "agents", "always"]).nullable(),
  approval_ttl_hours: z.number().int().nullable(),
  approval_requires_aal2: z.boolean().nullable(),
  max_agent_messages_per_day: z.number().int().nullable(),
  approval_notify_config_id: z.string().nullable(),
  stopped_at: z.string().nullable(),
  stop_reason: z.string().nullable(),
  updated_at: z.string(),
});
export const guardrailsList = z.strictObject({ account: guardrails, configs: z.array(guardrails) });
export const oversightEvents = z.strictObject({
  events: z.array(z.strictObject({
    id: z.number().int(),
    config_id: z.string().nullable(),
    action: z.enum([
      "guardrails_changed",
      "sending_stopped",
      "sending_resumed",
      "guardrails_removed",
      "approved",
      "rejected",
      "expired",
    ]),
    actor: z.strictObject({
      system: z.string().optional().describe("expiry: nobody acted"),
      user_id: z.string().optional(),
      session_id: z.string().optional(),
      client_id: z.string().optional().describe("Set when an OAuth client (an agent) acted"),
      aal: z.string().optional(),
    }),
    details: z.record(z.string(), z.unknown()),
    created_at: z.string(),
  })),
  next_before: z.number().int().nullable().describe("Pass as ?before= for the next page; null at the end"),
});

const pendingApproval = z.strictObject({
  id: uuid,
  batch_id: uuid.nullable(),
  config_id: uuid.nullable(),
  from_email: z.string(),
  to: z.array(z.string()),
  cc_count: z.number().int(),
  bcc_count: z.number().int(),
  subject: z.string().nullable(),
  message_id: z.string(),
  scheduled_at: timestamp.nullable(),
  reason: z.enum(["agents", "always"]),
  client_id: z.string().nullable().describe("The OAuth client (agent) that made the send"),
  agent_context: z.record(z.string(), z.unknown()).nullable(),
  created_at: timestamp,
  expires_at: timestamp,
});
export const approvalList = z.strictObject({
  approvals: z.array(pendingApproval),
  next_after: uuid.nullable().describe("Pass as ?after= for the next page; null at the end"),
});
const listedAttachment = z.strictObject({
  filename: z.string(),
  content_type: z.string().nullable(),
  size_bytes: z.number().int(),
  id: z.string().optional().describe("A stored attachment's id (GET /attachments/:id)"),
});
export const approvalDetail = pendingApproval.extend({
  status: z.string().describe("pending_approval while it waits; what became of it after"),
  content: z.strictObject({
    to: z.array(z.string()),
    cc: z.array(z.string()),
    bcc: z.array(z.string()),
    subject: z.string().nullable(),
    text: z.string().nullable(),
    html: z.string().nullable().describe("Show it sandboxed (no scripts, no network): it is the agent's HTML"),
    attachments: z.array(listedAttachment),
  }).nullable(),
});
export const messageContent = z.strictObject({
  id: uuid,
  source: z.enum(["sent", "request"]).describe(
    "sent: kept as it went out; request: rebuilt from the queued request (its template as it is now)",
  ),
  to: z.array(z.string()),
  cc: z.array(z.string()),
  bcc: z.array(z.string()),
  subject: z.string().nullable(),
  headers: z.array(z.strictObject({ name: z.string(), value: z.string() })).describe(
    "As on the wire (encoded words stay encoded); for source request, the ones the request sets",
  ),
  text: z.string().nullable().describe("The text part (made from the HTML when the send gave none)"),
  html: z.string().nullable().describe("Show it sandboxed (no scripts, no network): it is the agent's HTML"),
  attachments: z.array(listedAttachment).describe("Listed; their bytes are not kept with the message"),
  truncated: z.boolean().describe("A part was longer than 200,000 characters and is cut"),
});
export const approvalDecision = z.strictObject({
  decided: z.array(uuid).describe("The messages this call decided"),
  status: z.enum(["approved", "rejected"]),
});

/** Every documented response schema, by the name the OpenAPI document gives it. */
const suppression = z.strictObject({
  address: z.string(),
  reason: z.enum(["unsubscribed", "hard_bounce", "complaint", "manual"]),
  source: z.string().nullable().describe("Where it came from: the server's reply for a hard bounce, your note"),
  message_id: uuid.nullable().describe("The message whose outcome added it (a hard bounce)"),
  created_at: timestamp,
});
export const suppressionList = z.strictObject({
  suppressions: z.array(suppression),
  next_after: z.string().nullable().describe("Pass as ?after= for the next page; null at the end"),
});
export const suppressionsAdded = z.strictObject({
  added: z.number().int().describe("How many were not listed before"),
  suppressions: z.array(suppression).describe("The entries for the addresses given, as they are now"),
});
export const suppressionDeleted = z.strictObject({ address: z.string(), deleted: z.literal(true) });

export const imapSettings = z.strictObject({
  config_id: uuid,
  host: z.string(),
  port: z.number().int(),
  security: z.enum(["tls", "starttls", "none"]),
  username: z.string().nullable(),
  has_password: z.boolean().describe("An IMAP password is stored (in Vault; never shown)"),
  use_smtp_login: z.boolean().describe("Logs in with the config's SMTP username and password"),
  read_bounces: z.boolean(),
  copy_to_sent: z.boolean(),
  sent_folder: z.string().nullable(),
  processed_folder: z.string().nullable(),
  checked_at: timestamp.nullable().describe("When the inbox was last read"),
  last_error: z.string().nullable().describe("Why the last check or Sent copy could not log in, if it could not"),
  last_error_at: timestamp.nullable(),
  next_check_at: timestamp.nullable().describe(
    "null: no more scheduled checks (nor Sent copies) since the server refused the login, until the password changes",
  ),
  created_at: timestamp,
  updated_at: timestamp,
});
export const imapDeleted = z.strictObject({ config_id: uuid, deleted: z.literal(true) });
export const mailboxCheck = z.strictObject({
  config_id: uuid,
  checked: z.number().int().describe("New messages looked at"),
  reports: z.number().int().describe("Delivery status notifications and complaint reports among them"),
  matched: z.number().int().describe("Reports about your own messages: recorded, and hard bounces suppressed"),
  unsubscribed: z.number().int().describe("Unsubscribe requests by mail (List-Unsubscribe's mailto) honoured"),
  moved: z.number().int().describe("Matched reports moved to processed_folder"),
});

export const webhook = z.strictObject({
  id: uuid,
  url: z.string(),
  description: z.string().nullable(),
  event_types: z.array(z.string()).nullable().describe("The events it receives; null: all of them"),
  enabled: z.boolean(),
  consecutive_failures: z.number().int().describe(
    "Failed deliveries in a row; failing for 5 days straight (and 20 times at least) disables it",
  ),
  disabled_reason: z.string().nullable().describe("Why it was disabled (the last failure), until turned back on"),
  disabled_at: timestamp.nullable(),
  last_success_at: timestamp.nullable(),
  last_failure_at: timestamp.nullable(),
  last_error: z.string().nullable(),
  created_at: timestamp,
  updated_at: timestamp,
});
const webhookSecret = z.string().describe(
  "whsec_…: verify each delivery's webhook-signature with it (any Standard Webhooks library); shown only now",
);
export const webhookCreated = webhook.extend({ secret: webhookSecret });
export const webhookList = z.strictObject({ webhooks: z.array(webhook) });
export const webhookDeleted = z.strictObject({ id: uuid, deleted: z.literal(true) });
export const webhookSecretRotated = z.strictObject({
  id: uuid,
  secret: webhookSecret,
  previous_valid_until: timestamp.describe("Until then deliveries carry a signature by the old secret too"),
});
export const webhookTestQueued = z.strictObject({
  id: uuid.describe("The delivery's id (webhook-id: msg_<id>)"),
  event_type: z.literal("webhook.test"),
});
export const webhookDeliveries = z.strictObject({
  webhook_id: uuid,
  deliveries: z.array(z.strictObject({
    id: uuid.describe("Sent as webhook-id msg_<id>: the same on every attempt, so a receiver can drop repeats"),
    event_type: z.string(),
    message_id: uuid.nullable().describe("The message (audit row) it is about"),
    created_at: timestamp,
    attempts: z.number().int(),
    next_attempt_at: timestamp.nullable().describe("When it is tried next; null once delivered or given up"),
    delivered_at: timestamp.nullable(),
    failed_at: timestamp.nullable().describe("Given up after 8 attempts"),
    last_status: z.number().int().nullable().describe("The receiver's last HTTP status"),
    last_error: z.string().nullable(),
  })),
});

export const RESPONSES = {
  SendResult: sendResult,
  Cancelled: cancelled,
  Retried: retried,
  BulkAccepted: bulkAccepted,
  BulkDryRun: bulkDryRun,
  DryRunResult: dryRunResult,
  BatchStatus: batchStatus,
  BatchList: batchList,
  BatchCancelled: batchCancelled,
  SmtpConfig: smtpConfig,
  SmtpConfigWithWarnings: smtpConfigWithWarnings,
  ConfigList: configList,
  Deleted: deleted,
  Verification: verification,
  VerificationList: verificationList,
  PresetList: presetList,
  Deliverability: deliverability,
  Template: template,
  TemplateList: templateList,
  TemplatePreview: templatePreview,
  Attachment: attachment,
  AttachmentList: attachmentList,
  AnalyticsSummary: analyticsSummary,
  Message: message,
  MessagePage: messagePage,
  MessageContent: messageContent,
  Suppression: suppression,
  SuppressionList: suppressionList,
  SuppressionsAdded: suppressionsAdded,
  SuppressionDeleted: suppressionDeleted,
  ImapSettings: imapSettings,
  ImapDeleted: imapDeleted,
  MailboxCheck: mailboxCheck,
  Webhook: webhook,
  WebhookCreated: webhookCreated,
  WebhookList: webhookList,
  WebhookDeleted: webhookDeleted,
  WebhookSecret: webhookSecretRotated,
  WebhookTestQueued: webhookTestQueued,
  WebhookDeliveries: webhookDeliveries,
  Guardrails: guardrails,
  GuardrailsList: guardrailsList,
  OversightEvents: oversightEvents,
  ApprovalList: approvalList,
  ApprovalDetail: approvalDetail,
  ApprovalDecision: approvalDecision,
} as const;

export type ResponseName = keyof typeof RESPONSES;
