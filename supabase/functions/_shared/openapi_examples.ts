// Realistic examples for the OpenAPI document's request and response schemas, so the reference
// shows a config on port 465 and a sent message, not `port: 0` or the generator's placeholders.
// tests/openapi_errors_test.ts parses every example with the zod schema of the same name: an
// example the functions would refuse, or a response they would not give, fails.

type Json = Record<string, unknown>;

const CONFIG_ID = "3f6c1f3e-8a0b-4d2e-9c51-2b7d6f1e0a42";
const MESSAGE_ID = "0b1c9d2e-4f5a-4b6c-8d7e-9f0a1b2c3d4e";
const BATCH_ID = "5f0e2a1b-3c4d-4e5f-8a9b-0c1d2e3f4a5b";
const TEMPLATE_ID = "7a8b9c0d-1e2f-4a3b-8c4d-5e6f7a8b9c0d";

const smtpConfig = {
  id: CONFIG_ID,
  name: "work",
  host: "smtp.fastmail.com",
  port: 465,
  security: "tls",
  auth_type: "password",
  transport: "smtp",
  oauth: null,
  username: "ada@example.com",
  from_email: "ada@example.com",
  from_name: "Ada Lovelace",
  is_default: true,
  is_active: true,
  limits: { per_minute: 60, per_day: 2000, max_connections: 3 },
  duplicate_window_seconds: 600,
  suppress_hard_bounces: true,
  imap: { host: "imap.fastmail.com", read_bounces: true, copy_to_sent: true, last_error: null },
  has_password: true,
  credentials_changed_at: "2026-11-20T09:12:03.512Z",
  needs_attention: null,
  backoff_until: null,
  backoff_reason: null,
  created_at: "2026-11-20T09:12:03.512Z",
  updated_at: "2026-11-24T16:40:51.007Z",
};

const deliverability = {
  domain: "example.com",
  checked: true,
  spf: {
    found: true,
    record: "v=spf1 include:spf.messagingengine.com ~all",
    covers_provider: true,
    provider: "Fastmail",
  },
  dmarc: { found: false, record: null, policy: null },
  verdict: "may_land_in_spam",
  hints: [
    'example.com publishes no DMARC policy: Gmail and Yahoo require one of bulk senders. Add a TXT record at _dmarc.example.com: "v=DMARC1; p=none; rua=mailto:dmarc@example.com"',
    "Until then, mail from this config may land in spam, most of all at Gmail, Yahoo and Outlook.com",
  ],
};

const template = {
  id: TEMPLATE_ID,
  name: "welcome",
  description: "Sent when a customer signs up",
  subject: "Welcome, {{first_name}}",
  html: "<p>Hi {{first_name}}, your workspace <b>{{workspace}}</b> is ready.</p>",
  text: "Hi {{first_name}}, your workspace {{workspace}} is ready.",
  variables: { required: ["first_name", "workspace"] },
  starter: false,
  created_at: "2026-11-21T10:00:00.000Z",
  updated_at: "2026-11-21T10:00:00.000Z",
};

/** Request examples by schema name. */
export const REQUEST_EXAMPLES: Record<string, Json> = {
  UploadAttachmentRequest: { url: "https://files.example.com/terms-2027.pdf" },
  SendEmailRequest: {
    to: ["Grace Hopper <grace@example.org>"],
    subject: "Your invoice for November",
    text: "Hi Grace,\n\nyour invoice is attached.\n\nAda",
    attachments: [{ filename: "invoice-2026-11.pdf", content: "JVBERi0xLjcK", content_type: "application/pdf" }],
    config: "work",
    agent_context: { agent: "billing-assistant", run_id: "run_8f2c" },
  },
  SendBulkRequest: {
    recipients: [
      { email: "grace@example.org", name: "Grace Hopper", data: { first_name: "Grace", workspace: "Navy" } },
      { email: "alan@example.org", data: { first_name: "Alan", workspace: "Bletchley" } },
    ],
    template: "welcome",
    config: "work",
    scheduled_at: "2026-11-26T09:00:00Z",
  },
  CreateConfigRequest: {
    name: "work",
    host: "smtp.fastmail.com",
    port: 465,
    security: "tls",
    username: "ada@example.com",
    password: "app-specific-password",
    from_email: "ada@example.com",
    from_name: "Ada Lovelace",
    is_default: true,
    limits: { per_minute: 60, per_day: 2000 },
  },
  UpdateConfigRequest: { password: "new-app-specific-password", limits: { per_minute: 30 } },
  ImapSettingsRequest: { host: "imap.fastmail.com", port: 993, use_smtp_login: true },
  CreateWebhookRequest: {
    url: "https://hooks.example.com/mailroom",
    description: "Our CRM",
    event_types: ["message.sent", "message.bounced", "message.failed"],
  },
  UpdateWebhookRequest: { enabled: true },
  CreateTemplateRequest: {
    name: "welcome",
    description: "Sent when a customer signs up",
    subject: "Welcome, {{first_name}}",
    html: "<p>Hi {{first_name}}, your workspace <b>{{workspace}}</b> is ready.</p>",
    variables: { required: ["first_name", "workspace"] },
  },
  UpdateTemplateRequest: { subject: "Welcome aboard, {{first_name}}" },
  PreviewTemplateRequest: { data: { first_name: "Grace", workspace: "Navy" } },
};

/** Response examples by schema name. */
const pendingExample = {
  id: "0b9f2c4e-8a1d-4f3b-9c7e-5d2a1b3c4d5e",
  batch_id: null,
  config_id: CONFIG_ID,
  from_email: "ada@example.com",
  to: ["grace@example.com"],
  cc_count: 0,
  bcc_count: 0,
  subject: "The numbers you asked for",
  message_id: "<0b9f2c4e-8a1d-4f3b-9c7e-5d2a1b3c4d5e@example.com>",
  scheduled_at: null,
  reason: "agents",
  client_id: "agent-app",
  agent_context: { agent: "quarterly-report" },
  created_at: "2026-12-06T21:00:00.000Z",
  expires_at: "2026-12-09T21:00:00.000Z",
};

const guardrailsExample = {
  config_id: null,
  allow_recipients: null,
  deny_recipients: ["*.rival.example", "boss@corp.example"],
  max_recipients_per_request: 20,
  approval: "agents",
  approval_ttl_hours: 72,
  approval_requires_aal2: false,
  max_agent_messages_per_day: 200,
  approval_notify_config_id: null,
  stopped_at: null,
  stop_reason: null,
  updated_at: "2026-12-06T21:00:00.000Z",
};

const ATTACHMENT = {
  id: "3f1c2b4a-5d6e-4f70-8a9b-0c1d2e3f4a5b",
  filename: "terms-2027.pdf",
  content_type: "application/pdf",
  size_bytes: 184213,
  sha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
  source_url: null,
  created_at: "2026-12-07T09:00:00.000000Z",
  expires_at: "2027-01-06T09:00:00.000000Z",
};

export const RESPONSE_EXAMPLES: Record<string, Json> = {
  Attachment: ATTACHMENT,
  AttachmentList: { attachments: [ATTACHMENT], next_cursor: null },
  SendResult: {
    id: MESSAGE_ID,
    status: "sent",
    message_id: "<0b1c9d2e.4f5a@example.com>",
    accepted: ["grace@example.org"],
    rejected: [],
    deferred: [],
    unknown: [],
    recipients: [{
      address: "grace@example.org",
      status: "accepted",
      smtp_code: 250,
      enhanced_code: "2.0.0",
      response: "250 2.0.0 Ok: queued as 4XyZ1",
    }],
    suppressed: [],
  },
  Cancelled: { id: MESSAGE_ID, status: "cancelled" },
  Retried: { id: MESSAGE_ID, status: "queued" },
  BulkAccepted: { batch_id: BATCH_ID, queued: 2, scheduled_at: "2026-11-26T09:00:00.000Z" },
  DryRunResult: {
    dry_run: true,
    outcome: "would_be_refused",
    refusal: {
      status: 422,
      code: "recipient_denied",
      message: "The guardrails do not allow mail to boss@corp.example; nothing was sent or queued",
      details: { recipients: ["boss@corp.example"], count: 1 },
    },
    message: {
      from: "ada@example.com",
      to: ["boss@corp.example"],
      cc: [],
      bcc: [],
      subject: "Numbers",
      text: "Revenue is up 12%.",
      html: null,
      headers: "From: ada@example.com\r\nTo: boss@corp.example\r\nSubject: Numbers\r\nMIME-Version: 1.0",
      envelope: { from: "ada@example.com", to: ["boss@corp.example"] },
      size_bytes: 388,
      suppressed: [],
    },
  },
  BulkDryRun: {
    dry_run: true,
    outcome: "would_wait_for_approval",
    approval: { reason: "agents" },
    count: 2,
    samples: [{
      from: "ada@example.com",
      to: ["grace@example.com"],
      cc: [],
      bcc: [],
      subject: "Welcome, Grace",
      text: "Hi Grace, your workspace Navy is ready.",
      html: null,
      headers: "From: ada@example.com\r\nTo: grace@example.com\r\nSubject: Welcome, Grace\r\n" +
        "Message-ID: <…@example.com>\r\nDate: Sun, 06 Dec 2026 21:00:00 +0000\r\nMIME-Version: 1.0",
      envelope: { from: "ada@example.com", to: ["grace@example.com"] },
      size_bytes: 412,
      suppressed: [],
    }],
  },
  BatchCancelled: { batch_id: BATCH_ID, cancelled: 2 },
  SmtpConfig: smtpConfig,
  SmtpConfigWithWarnings: { ...smtpConfig, warnings: [] },
  ConfigList: { configs: [smtpConfig] },
  Deleted: { id: CONFIG_ID, deleted: true },
  Verification: {
    ok: true,
    tls: true,
    auth: true,
    latency_ms: 182,
    server_banner: "220 smtp.fastmail.com ESMTP ready",
    deliverability,
  },
  Deliverability: deliverability,
  Template: template,
  Guardrails: guardrailsExample,
  GuardrailsList: { account: guardrailsExample, configs: [] },
  ApprovalList: { approvals: [pendingExample], next_after: null },
  ApprovalDetail: {
    ...pendingExample,
    status: "pending_approval",
    content: {
      to: ["grace@example.com"],
      cc: [],
      bcc: [],
      subject: "The numbers you asked for",
      text: "Hi Grace, revenue is up 12% this quarter.",
      html: null,
      attachments: [{ filename: "q4.pdf", content_type: "application/pdf", size_bytes: 48213 }],
    },
  },
  ApprovalDecision: { decided: ["0b9f2c4e-8a1d-4f3b-9c7e-5d2a1b3c4d5e"], status: "approved" },
  OversightEvents: {
    events: [{
      id: 42,
      config_id: null,
      action: "sending_stopped",
      actor: { user_id: "6f1c2a7e-0b4d-4e8a-9c1f-2d3b4a5c6d7e", client_id: "agent-app", aal: "aal1" },
      details: { reason: "checking what the agent does" },
      created_at: "2026-12-06T21:00:00.000Z",
    }],
    next_before: null,
  },
  TemplatePreview: {
    template: { id: TEMPLATE_ID, name: "welcome" },
    subject: "Welcome, Grace",
    text: "Hi Grace, your workspace Navy is ready.",
    html: "<p>Hi Grace, your workspace <b>Navy</b> is ready.</p>",
  },
};
