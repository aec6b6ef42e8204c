// Request and response types of mailroom's functions (API v1), all from the OpenAPI document
// (generated/api.ts, written by `deno task generate` from the server's zod schemas), so they
// cannot drift from what the server accepts and answers.
import type { components } from "./generated/api.ts";

type Schemas = components["schemas"];
export type SendEmailRequest = Schemas["SendEmailRequest"];
export type SendBulkRequest = Schemas["SendBulkRequest"];
export type CreateConfigRequest = Schemas["CreateConfigRequest"];
export type UpdateConfigRequest = Schemas["UpdateConfigRequest"];
export type CreateTemplateRequest = Schemas["CreateTemplateRequest"];
export type UpdateTemplateRequest = Schemas["UpdateTemplateRequest"];

export type SendResult = Schemas["SendResult"];
export type RecipientOutcome = Extract<SendResult, { status: "sent" }>["recipients"][number];
export type BulkAccepted = Schemas["BulkAccepted"];
export type BatchStatus = Schemas["BatchStatus"];
export type BatchList = Schemas["BatchList"];
export type SmtpConfig = Schemas["SmtpConfig"];
export type SmtpConfigWithWarnings = Schemas["SmtpConfigWithWarnings"];
export type Warning = SmtpConfigWithWarnings["warnings"][number];
export type Verification = Schemas["Verification"];
export type VerificationRecord = Schemas["VerificationList"]["verifications"][number];
/** A well-known provider: its server, login, limits, and whether this deployment reaches it. */
export type ProviderPreset = Schemas["PresetList"]["presets"][number];
/** What DNS says about a config's From domain (SPF, DMARC), a verdict and what to change. */
export type Deliverability = Schemas["Deliverability"];
export type Template = Schemas["Template"];
/** A stored attachment's record (never its bytes): attach it as `{ id }`. */
export type Attachment = Schemas["Attachment"];
export type AttachmentList = Schemas["AttachmentList"];
export type TemplatePreview = Schemas["TemplatePreview"];
export type Guardrails = Schemas["Guardrails"];
export type GuardrailsList = Schemas["GuardrailsList"];
export type GuardrailsRequest = Schemas["GuardrailsRequest"];
export type OversightEvents = Schemas["OversightEvents"];
export type ApprovalList = Schemas["ApprovalList"];
export type DryRunResult = Schemas["DryRunResult"];
export type BulkDryRun = Schemas["BulkDryRun"];
export type ApprovalDetail = Schemas["ApprovalDetail"];
export type ApprovalDecision = Schemas["ApprovalDecision"];
export type AnalyticsSummary = Schemas["AnalyticsSummary"];
export type Message = Schemas["Message"];
export type MessagePage = Schemas["MessagePage"];
export type MessageContent = Schemas["MessageContent"];
export type Suppression = Schemas["Suppression"];
export type ImapSettings = Schemas["ImapSettings"];
export type ImapSettingsRequest = Schemas["ImapSettingsRequest"];
export type MailboxCheck = Schemas["MailboxCheck"];
export type Webhook = Schemas["Webhook"];
export type WebhookCreated = Schemas["WebhookCreated"];
export type WebhookDeliveries = Schemas["WebhookDeliveries"];
export type CreateWebhookRequest = Schemas["CreateWebhookRequest"];
export type UpdateWebhookRequest = Schemas["UpdateWebhookRequest"];
export type SuppressionList = Schemas["SuppressionList"];
export type SuppressionsAdded = Schemas["SuppressionsAdded"];

/** A recipient: "a@example.com", "Ada <a@example.com>" or {email, name?}. */
export type Recipient = string | { email: string; name?: string };
export type Recipients = Recipient | Recipient[];

export type AuditStatus =
  | "sent"
  | "failed"
  | "unknown"
  | "deferred"
  | "queued"
  | "scheduled"
  | "sending"
  | "cancelled"
  | "pending_approval"
  | "rejected"
  | "expired"
  | "suppressed";

/** Filters of the analytics summary and the message list. */
export interface AnalyticsFilters {
  from?: string;
  to?: string;
  tz?: string;
  config?: string;
  status?: AuditStatus[];
  batch_id?: string;
  template?: string;
}

export interface AnalyticsQuery extends AnalyticsFilters {
  interval?: "hour" | "day";
  group_by?: string[];
}

export interface MessagesQuery extends AnalyticsFilters {
  /** An address: messages to it (To, Cc or Bcc), any case. */
  recipient?: string;
  /** agent_context.agent as the sender set it. */
  agent?: string;
  /** The OAuth client (agent) whose token made the send. */
  client_id?: string;
  limit?: number;
  cursor?: string;
}
