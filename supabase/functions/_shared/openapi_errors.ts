// The error codes each route can answer, for the OpenAPI document: one catalogue of codes
// (status and a typical message) and, per route, which of them apply beyond the ones every
// route shares. tests/openapi_errors_test.ts checks that every code here is one the functions
// really throw, with that status, so the reference cannot promise a code that does not exist.

type Json = Record<string, unknown>;

/** A documented error code: its HTTP status and a typical message. */
export interface ErrorCodeDoc {
  status: number;
  message: string;
  details?: Json;
}

/** Every code the reference documents. */
export const ERROR_CODES: Record<string, ErrorCodeDoc> = {
  // Any route
  route_not_found: { status: 404, message: "No route POST /send-email/abc" },
  method_not_allowed: { status: 405, message: "Use POST" },
  internal_error: {
    status: 500,
    message: "Internal error",
    details: { request_id: "7d3c3e0e-…" },
  },
  database_unavailable: {
    status: 503,
    message: "The database is unavailable; retry shortly",
  },
  database_timeout: {
    status: 503,
    message: "The database stopped this request's work at its time limit; retry shortly, or ask for less at once",
    details: { retryable: true, retry_after_seconds: 5 },
  },
  // Authentication
  missing_token: {
    status: 401,
    message: "Send the user's access token as Authorization: Bearer <token>",
  },
  invalid_token: {
    status: 401,
    message: "The token's signature or issuer is not this project's",
  },
  token_expired: {
    status: 401,
    message: "The token has expired; refresh the session",
  },
  user_not_found: {
    status: 401,
    message: "The user this token was issued to no longer exists",
  },
  anonymous_user_not_allowed: {
    status: 403,
    message: "Anonymous sign-ins cannot send mail",
  },
  auth_unavailable: {
    status: 503,
    message: "The project's signing keys could not be fetched; retry shortly",
  },
  missing_secret_key: {
    status: 401,
    message: "Send a secret API key in the apikey header",
  },
  invalid_secret_key: {
    status: 401,
    message: "This endpoint takes a secret API key, not a user token",
  },
  worker_not_configured: {
    status: 503,
    message: "No secret key is configured for the worker",
  },
  origin_not_allowed: {
    status: 403,
    message: "Origin https://evil.example is not allowed",
  },
  // Request bodies
  invalid_json: { status: 400, message: "Request body is not valid JSON" },
  json_too_deep: {
    status: 400,
    message: "JSON nests deeper than 64 levels",
    details: { limit: 64 },
  },
  invalid_request: {
    status: 400,
    message: "to: Invalid email address",
    details: { issues: [{ path: ["to"], message: "Invalid email address" }] },
  },
  body_timeout: { status: 408, message: "The request body arrived too slowly" },
  payload_too_large: {
    status: 413,
    message: "Request body exceeds 10485760 bytes",
    details: { limit_bytes: 10485760 },
  },
  server_busy: {
    status: 503,
    message: "This instance is holding as many request bodies as it can; retry shortly",
  },
  invalid_idempotency_key: {
    status: 400,
    message: "Idempotency-Key must be 1-255 printable ASCII characters",
  },
  request_in_progress: {
    status: 409,
    message: "A request with this Idempotency-Key is still in progress",
  },
  request_interrupted: {
    status: 409,
    message: "The first request with this Idempotency-Key did not finish",
  },
  idempotency_key_reused: {
    status: 422,
    message: "This Idempotency-Key was used with a different body",
  },
  // Composing a message
  invalid_attachment: {
    status: 400,
    message: "attachments[0].content is not base64",
  },
  invalid_header_value: {
    status: 400,
    message: "Header X-Campaign holds a line break",
  },
  header_not_allowed: {
    status: 400,
    message: "Header Bcc cannot be set through headers",
  },
  duplicate_header: {
    status: 400,
    message: "Header X-Campaign is given twice",
  },
  too_many_headers: { status: 400, message: "At most 50 extra headers" },
  too_many_recipients: {
    status: 422,
    message: "At most 50 recipients per message",
  },
  subject_too_long: {
    status: 422,
    message: "The subject is longer than 998 characters",
  },
  html_too_large: { status: 413, message: "The HTML body exceeds 2 MB" },
  message_too_large: {
    status: 413,
    message: "The message exceeds the config's size limit",
  },
  attachments_too_large: {
    status: 413,
    message: "Attachments exceed 10 MB in total",
  },
  too_many_attachments: { status: 413, message: "At most 20 attachments" },
  attachment_not_found: {
    status: 404,
    message: 'attachments.0.id: no stored attachment "3f1c…" (it was deleted, expired, or is not yours)',
    details: { index: 0, attachment_id: "3f1c…" },
  },
  attachment_in_use: {
    status: 409,
    message: "2 waiting message(s) still attach this file; cancel them, or delete it once they are sent",
    details: { id: "3f1c…", messages: 2 },
  },
  attachment_too_large: {
    status: 413,
    message: "The file exceeds 7340032 bytes",
    details: { limit_bytes: 7340032 },
  },
  attachment_storage_full: {
    status: 413,
    message: "Storing this file (2000000 bytes) would pass your attachment storage limit of 104857600 bytes",
    details: { limit_bytes: 104857600, used_bytes: 103000000, size_bytes: 2000000 },
  },
  attachment_type_mismatch: {
    status: 422,
    message: 'The file is a program (application/x-msdownload), but its name "invoice.pdf" says application/pdf',
    details: { filename: "invoice.pdf", expected: "application/pdf", detected: "application/x-msdownload" },
  },
  unsupported_media_type: {
    status: 415,
    message: "Send the file as multipart/form-data (a field named file) or as JSON",
  },
  attachment_url_invalid: { status: 400, message: "url must be an https URL" },
  attachment_url_forbidden: {
    status: 422,
    message: 'Attachment URL host "127.0.0.1" is not allowed: loopback address',
    details: { host: "127.0.0.1" },
  },
  attachment_url_port_not_allowed: { status: 422, message: "Port 8443 is not allowed for attachment url hosts" },
  attachment_url_not_found: { status: 502, message: 'Attachment URL host "files.example" could not be resolved' },
  attachment_url_failed: {
    status: 422,
    message: "Could not fetch https://files.example/report.pdf: the server answered 404",
    details: { url: "https://files.example/report.pdf", status: 404 },
  },
  too_many_attachment_urls: {
    status: 422,
    message: "At most 10 different attachment URLs per request; upload the files and attach them by id",
    details: { limit: 10, count: 12 },
  },
  agent_context_too_large: {
    status: 413,
    message: "agent_context exceeds 8 KB",
  },
  content_too_large: {
    status: 413,
    message: "The batch's content exceeds what one batch may hold",
  },
  invalid_recipients: {
    status: 422,
    message: "3 recipients are not valid addresses",
  },
  // Configs and the egress policy
  config_not_found: { status: 404, message: 'No SMTP config named "work"' },
  config_inactive: {
    status: 409,
    message: 'SMTP config "work" is deactivated',
  },
  config_incomplete: {
    status: 422,
    message: 'SMTP config "work" has no password',
  },
  config_invalid_sender: {
    status: 422,
    message: "from_email is not a valid address",
  },
  config_name_taken: {
    status: 409,
    message: 'You already have a config named "work"',
  },
  default_conflict: {
    status: 409,
    message: "Another config became the default at the same time; retry",
  },
  concurrent_update: {
    status: 409,
    message: "The row changed while this request ran; retry",
  },
  smtp_host_invalid: {
    status: 400,
    message: 'SMTP host "smtp..example.com" is not a host name',
  },
  smtp_host_forbidden: {
    status: 422,
    message: "SMTP host resolves to a private address (10.0.0.5)",
  },
  smtp_host_not_found: {
    status: 502,
    message: 'SMTP host "smtp.example.invalid" could not be resolved',
  },
  smtp_port_not_allowed: {
    status: 422,
    message: "Port 8080 is not an SMTP port (25, 465, 587, 2525)",
  },
  smtp_port_blocked_by_platform: {
    status: 422,
    message: "Supabase blocks outbound port 587; use 465",
  },
  plaintext_not_allowed: {
    status: 422,
    message: 'security "none" is allowed only for the local catcher',
  },
  sending_stopped: {
    status: 409,
    message: "Sending is stopped for this account; nothing leaves until the owner lifts the stop",
    details: { scope: "account", stopped_at: "2026-12-06T21:00:00.000Z" },
  },
  recipient_denied: {
    status: 422,
    message: "The guardrails do not allow mail to boss@corp.example; nothing was sent or queued",
    details: { recipients: ["boss@corp.example"], count: 1 },
  },
  recipient_cap_exceeded: {
    status: 422,
    message: "The guardrails allow at most 5 recipients per request; this one has 12",
    details: { limit: 5, count: 12 },
  },
  first_party_session_required: {
    status: 403,
    message: "Lifting the stop needs the account owner's own session; a token issued to an OAuth client may only " +
      "tighten guardrails",
    details: { client_id: "agent-app" },
  },
  not_stopped: { status: 409, message: "Sending is not stopped" },
  agent_daily_cap_reached: {
    status: 429,
    message: "Agents may send 200 messages a day through this account; 200 were sent in the last 24 hours, so 1 more " +
      "cannot go: ask the account owner",
    details: { limit: 200, used: 200, scope: "account", retryable: false },
  },
  not_pending: {
    status: 409,
    message: "The message is queued, not waiting for approval: it was decided, expired or cancelled already",
    details: { status: "queued" },
  },
  mfa_required: {
    status: 403,
    message: "The guardrails ask for a session with multi-factor authentication (aal2) to decide on sends",
  },
  duplicate_send: {
    status: 409,
    message: "This exact email (same config, recipients, subject, body and attachments) was already sent at " +
      "2026-12-07T09:12:03Z (message 6f1c0b2e-3c1a-4a53-9b0e-8a3f6d2e1c44, status sent); it was not sent again. Send " +
      "it with allow_duplicate: true only if it should really go twice",
    details: {
      duplicate_of: {
        id: "6f1c0b2e-3c1a-4a53-9b0e-8a3f6d2e1c44",
        status: "sent",
        message_id: "<6f1c0b2e-3c1a-4a53-9b0e-8a3f6d2e1c44@example.com>",
        created_at: "2026-12-07T09:12:03.512Z",
        scheduled_at: null,
      },
      window_seconds: 600,
    },
  },
  rate_limited: {
    status: 429,
    message: 'SMTP config "work" allows 60 messages per minute',
    details: { limit: 60, per: "minute", retry_after_seconds: 12 },
  },
  auth_attempts_exceeded: {
    status: 429,
    message: "Too many failed logins to this server; wait before retrying",
  },
  // SMTP outcomes (details.retryable says whether trying again can succeed)
  smtp_auth_failed: {
    status: 502,
    message: "535 5.7.8 Authentication credentials invalid",
    details: { retryable: false, smtp_code: 535 },
  },
  oauth_reauth_required: {
    status: 502,
    message: "The provider no longer accepts this mailbox's authorisation (invalid_grant); connect the mailbox again",
    details: { retryable: false },
  },
  oauth_client_rejected: {
    status: 502,
    message: "The provider refused the OAuth client (invalid_client); check the client id and secret",
    details: { retryable: false },
  },
  oauth_scope_missing: {
    status: 502,
    message: "The authorisation lacks the scope sending needs (invalid_scope); connect the mailbox again",
    details: { retryable: false },
  },
  oauth_token_refresh_failed: {
    status: 502,
    message: "The token endpoint answered 503; the refresh is tried again later",
    details: { retryable: true },
  },
  oauth_token_rejected: {
    status: 502,
    message: "Microsoft Graph refused a freshly refreshed access token; connect the mailbox again",
    details: { retryable: false },
  },
  oauth_token_url_redirected: {
    status: 502,
    message: "The token endpoint https://idp.example.com answered 302 (a redirect); redirects are not followed",
    details: { retryable: false },
  },
  oauth_token_url_invalid: {
    status: 400,
    message: 'Token endpoint host "intranet" is not a fully qualified host name',
  },
  oauth_token_url_forbidden: {
    status: 422,
    message: 'Token endpoint host "idp.example.com" is not allowed: it resolves to a private address',
  },
  oauth_token_url_port_not_allowed: {
    status: 422,
    message: "Port 8443 is not allowed for a token endpoint; use 443",
  },
  oauth_permission_missing: {
    status: 502,
    message: "Microsoft Graph refused to send for this mailbox: the authorisation lacks Mail.Send",
    details: { retryable: false },
  },
  provider_throttled: {
    status: 502,
    message: "Microsoft Graph answered 429 (ApplicationThrottled); sent again later",
    details: { retryable: true, retry_after_seconds: 30 },
  },
  provider_unavailable: {
    status: 502,
    message: "the Gmail API answered 503; sent again later",
    details: { retryable: true },
  },
  provider_unreachable: {
    status: 502,
    message: "Microsoft Graph could not be reached",
    details: { retryable: true },
  },
  provider_outcome_unknown: {
    status: 502,
    message: "Microsoft Graph answered 504 after the message was sent; it may have been delivered",
    details: { retryable: false },
  },
  provider_rejected_message: {
    status: 502,
    message: "the Gmail API refused the message with 400 (invalidArgument)",
    details: { retryable: false },
  },
  provider_message_too_large: {
    status: 502,
    message: "Microsoft Graph takes messages up to 3 MiB",
    details: { retryable: false },
  },
  preset_has_no_oauth: { status: 422, message: "iCloud Mail has no OAuth; log in with an app-specific password" },
  preset_unknown: { status: 400, message: 'No preset "gmial"; see GET /smtp-configs/presets' },
  preset_needs_oauth: {
    status: 422,
    message: "Microsoft 365 / Exchange Online takes no passwords for SMTP; connect it with OAuth",
    details: { preset: "microsoft365" },
  },
  preset_unreachable: {
    status: 422,
    message: "iCloud Mail's SMTP server (smtp.mail.me.com:587) cannot be reached from here",
    details: { preset: "icloud", port: 587 },
  },
  smtp_basic_auth_disabled: {
    status: 502,
    message: "The SMTP server no longer accepts passwords (Microsoft 365 turned Basic authentication off for SMTP)",
    details: { retryable: false, smtp_code: 550, hint: "connect the mailbox with OAuth instead" },
  },
  smtp_connect_failed: {
    status: 502,
    message: "Connection refused by smtp.example.com:465",
    details: { retryable: true },
  },
  smtp_connect_timeout: {
    status: 502,
    message: "No connection within 10 s",
    details: { retryable: true },
  },
  smtp_tls_untrusted: {
    status: 502,
    message: "The server's certificate is not trusted",
    details: { retryable: false },
  },
  smtp_tls_name_mismatch: {
    status: 502,
    message: "The certificate is not for smtp.example.com",
  },
  smtp_recipients_rejected: {
    status: 502,
    message: "550 5.1.1 User unknown",
    details: { retryable: false, smtp_code: 550 },
  },
  smtp_recipients_deferred: {
    status: 502,
    message: "451 4.2.0 Try again later",
    details: { retryable: true, smtp_code: 451 },
  },
  smtp_message_rejected: {
    status: 502,
    message: "554 5.7.1 Message refused",
    details: { retryable: false },
  },
  smtp_message_deferred: {
    status: 502,
    message: "451 4.3.0 Try again later",
    details: { retryable: true },
  },
  smtp_timeout: {
    status: 502,
    message: "The server stopped answering",
    details: { retryable: true },
  },
  smtp_outcome_unknown: {
    status: 502,
    message: "The connection ended after the message was sent, before the server answered",
    details: { retryable: false },
  },
  // Sends, batches, templates, analytics
  message_not_found: { status: 404, message: "No message 0b1c…" },
  not_cancellable: { status: 409, message: "The message was already sent" },
  not_retryable: {
    status: 409,
    message: "Only a message the outbox set aside can be retried",
  },
  batch_not_found: { status: 404, message: "No batch 5f0e…" },
  template_not_found: { status: 404, message: 'No template named "welcome"' },
  subject_missing: {
    status: 422,
    message: 'Template "welcome" has no subject and the request gives none; add "subject" to the request',
    details: { template: "welcome", reason: "template_has_no_subject" },
  },
  template_name_taken: {
    status: 409,
    message: 'You already have a template named "welcome"',
  },
  template_read_only: {
    status: 403,
    message: "Starter templates are read-only; copy it under a new name",
  },
  template_invalid: { status: 422, message: "Unclosed section {{#items}}" },
  template_too_complex: {
    status: 422,
    message: "The template nests sections too deep",
  },
  template_empty: {
    status: 422,
    message: "Give subject, text or html, or a template",
  },
  template_data_missing: {
    status: 422,
    message: "The template needs first_name",
    details: { missing: ["first_name"] },
  },
  template_data_invalid: { status: 422, message: "data.items must be a list" },
  template_data_unsafe_url: {
    status: 422,
    message: "data.link is not an http(s) URL",
  },
  template_output_too_large: {
    status: 422,
    message: "The rendered message exceeds 2 MB",
  },
  invalid_date: { status: 400, message: 'from: "yesterday" is not a date' },
  invalid_timezone: {
    status: 400,
    message: 'tz: "Mars/Olympus" is not an IANA time zone',
  },
  invalid_interval: { status: 400, message: "interval is hour or day" },
  invalid_status: { status: 400, message: 'status: "lost" is not a status' },
  invalid_group_by: {
    status: 400,
    message: 'group_by: "weather" cannot be grouped by',
  },
  invalid_batch_id: { status: 400, message: "batch_id is not a UUID" },
  invalid_config: { status: 400, message: "config is empty" },
  invalid_template: { status: 400, message: "template is empty" },
  invalid_limit: { status: 400, message: "limit is an integer from 1 to 200" },
  duplicate_parameter: { status: 400, message: "tz is given twice" },
  invalid_cursor: {
    status: 400,
    message: "cursor is not one this API handed out",
  },
  analytics_timeout: {
    status: 503,
    message: "The summary took too long; narrow the range",
  },
  invalid_recipient: { status: 400, message: "recipient must be an email address, such as ada@example.com" },
  invalid_agent: { status: 400, message: "agent must be an agent's name as its agent_context.agent says" },
  invalid_client_id: { status: 400, message: "client_id must be an OAuth client's id (at most 200 characters)" },
  content_not_kept: {
    status: 404,
    message: "This message's content is not kept: it was sent more than 30 days ago, before messages kept their " +
      "content, or by another agent",
    details: { message_id: "0b1c…" },
  },
  invalid_address: {
    status: 400,
    message: '"ada@" is not a valid email address',
    details: { address: "ada@" },
  },
  invalid_reason: { status: 400, message: "reason must be one of unsubscribed, hard_bounce, complaint, manual" },
  imap_not_configured: {
    status: 404,
    message: 'Config "work" has no IMAP settings; PATCH /smtp-configs/{id}/imap with host and a login',
  },
  imap_login_unavailable: {
    status: 422,
    message: 'Config "work" signs in with OAuth: give the IMAP username and password instead',
  },
  imap_host_invalid: { status: 400, message: 'IMAP host "imap..example.com" is not a valid host name' },
  imap_host_forbidden: { status: 422, message: 'IMAP host "10.0.0.5" is not allowed: private address' },
  imap_port_not_allowed: {
    status: 422,
    message: "Port 25 is not an IMAP port; use 993 (tls) or 143 (starttls)",
    details: { port: 25, allowed_ports: [993, 143], settings: ["MAILROOM_EGRESS_ALLOWLIST"] },
  },
  imap_host_not_found: { status: 502, message: 'IMAP host "imap.example.com" could not be resolved' },
  imap_auth_failed: { status: 502, message: "The IMAP server imap.example.com:993 refused the login" },
  imap_unreachable: { status: 502, message: "Nothing answers at imap.example.com:993 (connection refused)" },
  imap_timeout: { status: 502, message: "The IMAP server imap.example.com:993 did not answer in time" },
  imap_tls_failed: { status: 502, message: "TLS with imap.example.com:993 failed: certificate has expired" },
  imap_incomplete: {
    status: 502,
    message: "The IMAP settings have no password: give one (or use_smtp_login with a password config)",
  },
  imap_failed: { status: 502, message: "IMAP with imap.example.com:993 failed: Mailbox does not exist" },
  webhook_not_found: { status: 404, message: 'No webhook "2b1f…"' },
  webhook_limit_reached: { status: 409, message: "You have 10 webhooks: remove one first", details: { limit: 10 } },
  webhook_url_invalid: { status: 400, message: "url must be an https URL" },
  webhook_url_forbidden: { status: 422, message: 'Webhook host "10.0.0.5" is not allowed: private address' },
  webhook_url_port_not_allowed: { status: 422, message: "Port 8080 is not allowed for webhook hosts; use 443" },
  suppression_not_found: { status: 404, message: '"ada@example.com" is not on your suppression list' },
  invalid_unsubscribe_token: {
    status: 400,
    message: "This unsubscribe link is not valid (it was changed or cut); use the link from the email as it came",
  },
};

const AUTH = [
  "missing_token",
  "invalid_token",
  "token_expired",
  "user_not_found",
  "anonymous_user_not_allowed",
];
const BODY = [
  "invalid_json",
  "json_too_deep",
  "invalid_request",
  "body_timeout",
  "payload_too_large",
  "server_busy",
];
const IDEMPOTENCY = [
  "invalid_idempotency_key",
  "request_in_progress",
  "request_interrupted",
  "idempotency_key_reused",
];
/** A custom provider's token endpoint refused by the egress policy (at creation, and at every refresh). */
const TOKEN_URL_EGRESS = [
  "oauth_token_url_invalid",
  "oauth_token_url_forbidden",
  "oauth_token_url_port_not_allowed",
];
/** An OAuth config's token and HTTPS-transport failures (Microsoft Graph, the Gmail API). */
const OAUTH = [
  "oauth_reauth_required",
  "oauth_client_rejected",
  "oauth_scope_missing",
  "oauth_token_refresh_failed",
  "oauth_token_url_redirected",
  ...TOKEN_URL_EGRESS,
  "oauth_token_rejected",
  "oauth_permission_missing",
];
const HTTPS_TRANSPORT = [
  "provider_throttled",
  "provider_unavailable",
  "provider_unreachable",
  "provider_outcome_unknown",
  "provider_rejected_message",
  "provider_message_too_large",
];
const SMTP = [
  "smtp_auth_failed",
  "smtp_basic_auth_disabled",
  "smtp_connect_failed",
  "smtp_connect_timeout",
  "smtp_tls_untrusted",
  "smtp_tls_name_mismatch",
  "smtp_timeout",
];
const EGRESS = [
  "smtp_host_invalid",
  "smtp_host_forbidden",
  "smtp_host_not_found",
  "smtp_port_not_allowed",
  "smtp_port_blocked_by_platform",
  "plaintext_not_allowed",
];
const COMPOSE = [
  "invalid_attachment",
  "invalid_header_value",
  "header_not_allowed",
  "duplicate_header",
  "too_many_headers",
  "too_many_recipients",
  "subject_too_long",
  "html_too_large",
  "message_too_large",
  "attachments_too_large",
  "too_many_attachments",
  "agent_context_too_large",
];
/** Stored attachments a send names, and files it gives by URL (fetched and stored at accept). */
const ATTACHMENTS = [
  "attachment_not_found",
  "attachment_too_large",
  "attachment_storage_full",
  "attachment_type_mismatch",
  "attachment_url_invalid",
  "attachment_url_forbidden",
  "attachment_url_port_not_allowed",
  "attachment_url_not_found",
  "attachment_url_failed",
  "too_many_attachment_urls",
];
const ANALYTICS_PARAMS = [
  "invalid_date",
  "invalid_timezone",
  "invalid_status",
  "invalid_batch_id",
  "invalid_config",
  "invalid_template",
  "duplicate_parameter",
];
const TEMPLATE_DATA = [
  "template_not_found",
  "template_empty",
  "template_data_missing",
  "template_data_invalid",
  "subject_missing",
];

/** Codes every route may answer: unknown paths, wrong methods, our faults. */
export const COMMON_ERRORS = [
  "route_not_found",
  "method_not_allowed",
  "internal_error",
  "database_unavailable",
  "database_timeout",
];

/** Codes of routes that take the user's token (all but the public and server-to-server ones). */
export const USER_AUTH_ERRORS = [...AUTH, "auth_unavailable"];

/** What the owner's guardrails answer a send (see _shared/oversight). */
const GUARDRAILS = ["sending_stopped", "recipient_denied", "recipient_cap_exceeded", "agent_daily_cap_reached"];
/** Who may decide on held sends: the owner's own session, with MFA where asked. */
const DECIDE = ["first_party_session_required", "mfa_required"];

/** Per operation (`"<method> <path>"`), the codes beyond the common and authentication ones. */
export const ROUTE_ERRORS: Record<string, string[]> = {
  "put /oversight/guardrails": [...BODY, "config_not_found", "first_party_session_required"],
  "post /oversight/stop": [...BODY, "config_not_found"],
  "post /oversight/resume": [...BODY, "config_not_found", "first_party_session_required", "not_stopped"],
  "get /oversight/events": ["invalid_request"],
  "get /oversight/approvals": ["invalid_request"],
  "get /oversight/approvals/{id}": ["message_not_found"],
  "post /oversight/approvals/{id}/approve": [...BODY, "message_not_found", "not_pending", ...DECIDE],
  "post /oversight/approvals/{id}/reject": [...BODY, "message_not_found", "not_pending", ...DECIDE],
  "post /oversight/approvals/batch/{batch_id}/approve": [...BODY, "not_pending", ...DECIDE],
  "post /oversight/approvals/batch/{batch_id}/reject": [...BODY, "not_pending", ...DECIDE],
  "post /send-email": [
    ...BODY,
    ...IDEMPOTENCY,
    ...COMPOSE,
    ...TEMPLATE_DATA,
    "template_data_unsafe_url",
    "config_not_found",
    "config_inactive",
    "config_incomplete",
    "config_invalid_sender",
    ...EGRESS,
    "rate_limited",
    ...SMTP,
    "smtp_recipients_rejected",
    "smtp_recipients_deferred",
    "smtp_message_rejected",
    "smtp_message_deferred",
    "smtp_outcome_unknown",
    ...OAUTH,
    ...HTTPS_TRANSPORT,
    ...GUARDRAILS,
    "duplicate_send",
    ...ATTACHMENTS,
  ],
  "get /send-email/{id}": ["message_not_found"],
  "post /send-email/{id}/cancel": [
    "message_not_found",
    "not_cancellable",
    "concurrent_update",
  ],
  "post /send-email/{id}/retry": ["message_not_found", "not_retryable"],
  "post /send-bulk": [
    ...BODY,
    ...IDEMPOTENCY,
    "invalid_recipients",
    "too_many_recipients",
    "content_too_large",
    "agent_context_too_large",
    ...TEMPLATE_DATA,
    "config_not_found",
    "config_inactive",
    "config_incomplete",
    ...GUARDRAILS,
    "duplicate_send",
    ...ATTACHMENTS,
    "invalid_attachment",
    "attachments_too_large",
    "too_many_attachments",
  ],
  "get /send-bulk": ["invalid_request", "batch_not_found"],
  "get /attachments": ["invalid_limit", "invalid_cursor"],
  "post /attachments": [...BODY, "unsupported_media_type", "invalid_attachment", ...ATTACHMENTS],
  "get /attachments/{id}": ["attachment_not_found"],
  "delete /attachments/{id}": ["attachment_not_found", "attachment_in_use"],
  "get /send-bulk/{batch_id}": ["batch_not_found"],
  "post /send-bulk/{batch_id}/cancel": ["batch_not_found"],
  "post /smtp-configs": [
    ...BODY,
    "config_name_taken",
    "config_incomplete",
    "config_invalid_sender",
    "preset_unknown",
    "preset_needs_oauth",
    "preset_has_no_oauth",
    "preset_unreachable",
    ...EGRESS,
    ...TOKEN_URL_EGRESS,
  ],
  "get /smtp-configs/{ref}": ["config_not_found"],
  "patch /smtp-configs/{ref}": [
    ...BODY,
    "config_not_found",
    "config_name_taken",
    "config_invalid_sender",
    "concurrent_update",
    ...EGRESS,
  ],
  "delete /smtp-configs/{ref}": ["config_not_found", "first_party_session_required"],
  "post /smtp-configs/{ref}/verify": [
    "config_not_found",
    "config_incomplete",
    ...EGRESS,
    "rate_limited",
    "auth_attempts_exceeded",
    ...SMTP,
    ...OAUTH,
  ],
  "post /smtp-configs/{ref}/default": ["config_not_found", "default_conflict"],
  "post /smtp-configs/{ref}/activate": ["config_not_found"],
  "post /smtp-configs/{ref}/deactivate": ["config_not_found"],
  "get /smtp-configs/{ref}/verifications": ["config_not_found"],
  "get /smtp-configs/{ref}/imap": ["config_not_found", "imap_not_configured"],
  "post /webhooks": [
    ...BODY,
    "first_party_session_required",
    "webhook_limit_reached",
    "webhook_url_invalid",
    "webhook_url_forbidden",
    "webhook_url_port_not_allowed",
  ],
  "get /webhooks/{id}": ["webhook_not_found"],
  "patch /webhooks/{id}": [
    ...BODY,
    "webhook_not_found",
    "first_party_session_required",
    "webhook_url_invalid",
    "webhook_url_forbidden",
    "webhook_url_port_not_allowed",
  ],
  "delete /webhooks/{id}": ["webhook_not_found", "first_party_session_required"],
  "post /webhooks/{id}/rotate-secret": ["webhook_not_found", "first_party_session_required"],
  "post /webhooks/{id}/test": ["webhook_not_found"],
  "get /webhooks/{id}/deliveries": ["webhook_not_found", "invalid_limit"],
  "patch /smtp-configs/{ref}/imap": [
    ...BODY,
    "config_not_found",
    "first_party_session_required",
    "imap_login_unavailable",
    "imap_host_invalid",
    "imap_host_forbidden",
    "imap_port_not_allowed",
    "plaintext_not_allowed",
  ],
  "delete /smtp-configs/{ref}/imap": ["config_not_found", "imap_not_configured", "first_party_session_required"],
  "post /smtp-configs/{ref}/imap/check": [
    "config_not_found",
    "imap_not_configured",
    "imap_incomplete",
    "imap_host_forbidden",
    "imap_host_not_found",
    "imap_auth_failed",
    "imap_unreachable",
    "imap_timeout",
    "imap_tls_failed",
    "imap_failed",
  ],
  "get /smtp-configs/{ref}/deliverability": ["config_not_found"],
  "post /templates": [
    ...BODY,
    "template_name_taken",
    "template_invalid",
    "template_too_complex",
  ],
  "get /templates/{ref}": ["template_not_found"],
  "patch /templates/{ref}": [
    ...BODY,
    "template_not_found",
    "template_read_only",
    "template_name_taken",
    "template_invalid",
    "template_too_complex",
  ],
  "delete /templates/{ref}": ["template_not_found", "template_read_only"],
  "post /templates/{ref}/preview": [
    ...BODY,
    "template_not_found",
    "template_data_missing",
    "template_data_invalid",
    "template_data_unsafe_url",
    "template_output_too_large",
  ],
  "get /email-analytics": [
    ...ANALYTICS_PARAMS,
    "invalid_interval",
    "invalid_group_by",
    "analytics_timeout",
  ],
  "get /email-analytics/messages": [
    ...ANALYTICS_PARAMS,
    "invalid_limit",
    "invalid_cursor",
    "invalid_recipient",
    "invalid_agent",
    "invalid_client_id",
  ],
  "get /email-analytics/messages/{id}": ["message_not_found"],
  "get /email-analytics/messages/{id}/content": ["message_not_found", "content_not_kept"],
  "get /suppressions": ["invalid_limit", "invalid_address", "invalid_reason"],
  "post /suppressions": [...BODY, "invalid_address"],
  "get /suppressions/{address}": ["invalid_address", "suppression_not_found"],
  "delete /suppressions/{address}": ["invalid_address", "suppression_not_found", "first_party_session_required"],
  "post /mcp": ["origin_not_allowed"],
  "post /unsubscribe": ["invalid_unsubscribe_token"],
  "get /unsubscribe": ["invalid_unsubscribe_token"],
  "post /process-outbox": [
    "missing_secret_key",
    "invalid_secret_key",
    "worker_not_configured",
  ],
};

const REASONS: Record<number, string> = {
  400: "Invalid input",
  401: "Not authenticated",
  403: "Forbidden",
  404: "Not found",
  405: "Method not allowed",
  408: "Request body too slow",
  409: "Conflict",
  413: "Too large",
  422: "Cannot be processed",
  429: "Rate limited (see Retry-After)",
  500: "Our fault (quote details.request_id)",
  502: "The SMTP server refused or failed (details.retryable)",
  503: "Unavailable; retry shortly (see Retry-After)",
};

/**
 * OpenAPI responses for these codes, one per status: the codes named in the description and
 * each one an example (a `$ref` into `components.examples`, see {@linkcode errorExamples}).
 *
 * @example
 * ```ts
 * errorResponses(["config_not_found", "route_not_found"]); // { "404": { description: "Not found: ...", ... } }
 * ```
 */
export function errorResponses(codes: string[]): Record<string, Json> {
  const byStatus = new Map<number, string[]>();
  for (const code of new Set(codes)) {
    const doc = ERROR_CODES[code];
    if (!doc) throw new Error(`Undocumented error code ${code}`);
    byStatus.set(doc.status, [...byStatus.get(doc.status) ?? [], code]);
  }
  const statuses = [...byStatus.keys()].sort((a, b) => a - b);
  return Object.fromEntries(statuses.map((status) => {
    const list = byStatus.get(status)!;
    return [String(status), {
      description: `${REASONS[status] ?? "Error"}: ${list.map((code) => `\`${code}\``).join(", ")}`,
      content: {
        "application/json": {
          schema: { $ref: "#/components/schemas/Error" },
          examples: Object.fromEntries(
            list.map((
              code,
            ) => [code, { $ref: `#/components/examples/${code}` }]),
          ),
        },
      },
    }];
  }));
}

/** `components.examples`: one `{error: {code, message, details?}}` per documented code. */
export function errorExamples(): Record<string, Json> {
  return Object.fromEntries(
    Object.entries(ERROR_CODES).map(([code, doc]) => [code, {
      summary: `${doc.status} ${code}`,
      value: {
        error: {
          code,
          message: doc.message,
          ...(doc.details ? { details: doc.details } : {}),
        },
      },
    }]),
  );
}
