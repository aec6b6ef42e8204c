// Request and response types of mailroom's functions (API v1). Requests come from the OpenAPI
// document (generated/api.ts, from the server's zod schemas: they cannot drift); responses are
// written here as the README documents them.
import type { components } from "./generated/api.ts";

type Schemas = components["schemas"];
export type SendEmailRequest = Schemas["SendEmailRequest"];
export type SendBulkRequest = Schemas["SendBulkRequest"];
export type CreateConfigRequest = Schemas["CreateConfigRequest"];
export type UpdateConfigRequest = Schemas["UpdateConfigRequest"];
export type CreateTemplateRequest = Schemas["CreateTemplateRequest"];
export type UpdateTemplateRequest = Schemas["UpdateTemplateRequest"];

/** A recipient: "a@example.com", "Ada <a@example.com>" or {email, name?}. */
export type Recipient = string | { email: string; name?: string };
export type Recipients = Recipient | Recipient[];

export interface RecipientOutcome {
  address: string;
  status: "accepted" | "rejected" | "deferred" | "unknown";
  smtp_code?: number;
  enhanced_code?: string;
  response?: string;
}

/** 200: sent; 202: scheduled (or queued) for later. */
export type SendResult =
  | {
    id: string;
    status: "sent";
    message_id: string;
    accepted: string[];
    rejected: string[];
    deferred: string[];
    unknown: string[];
    recipients: RecipientOutcome[];
  }
  | { id: string; status: "scheduled" | "queued"; scheduled_at: string; message_id: string };

export interface BulkAccepted {
  batch_id: string;
  queued: number;
  scheduled_at?: string;
  skipped?: { index: number; reason: string }[];
}

export interface BatchStatus {
  batch_id: string;
  created_at: string;
  scheduled_at: string | null;
  total: number;
  counts: {
    queued: number;
    scheduled: number;
    sending: number;
    sent: number;
    deferred: number;
    failed: number;
    unknown: number;
    cancelled: number;
  };
  first_sent_at: string | null;
  last_sent_at: string | null;
  rate_per_minute: number | null;
  top_errors: { error_class: string; count: number }[];
}

export interface SmtpConfig {
  id: string;
  name: string;
  host: string;
  port: number;
  security: "tls" | "starttls" | "none";
  username: string | null;
  from_email: string;
  from_name: string | null;
  is_default: boolean;
  is_active: boolean;
  limits: { per_minute: number; per_day: number };
  has_password: boolean;
  needs_attention: string | null;
  created_at: string;
  updated_at: string;
}

export interface Warning {
  code: string;
  message: string;
}

export interface Verification {
  ok: true;
  tls: boolean;
  auth: boolean;
  latency_ms: number;
  server_banner: string | null;
  [key: string]: unknown;
}

export interface VerificationRecord {
  id: string;
  ok: boolean;
  error_class: string | null;
  latency_ms: number | null;
  server_banner: string | null;
  created_at: string;
}

export type AuditStatus = "sent" | "failed" | "unknown" | "deferred" | "queued" | "scheduled" | "sending" | "cancelled";

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
  limit?: number;
  cursor?: string;
}

export interface BreakdownEntry {
  key: string | null;
  name: string | null;
  total: number;
  sent: number;
  failed: number;
  unknown: number;
}

export interface AnalyticsSummary {
  range: { from: string; to: string; interval: "hour" | "day"; tz: string };
  total: number;
  totals: Record<AuditStatus, number>;
  success_rate: number | null;
  latency_ms: { count: number; p50: number | null; p90: number | null; p99: number | null };
  series: { start: string; total: number; sent: number; failed: number; unknown: number }[];
  breakdowns: Record<string, BreakdownEntry[]>;
}

export interface Message {
  id: string;
  created_at: string;
  completed_at: string | null;
  scheduled_at: string | null;
  status: AuditStatus;
  from: string;
  to: string[];
  cc_count: number;
  bcc_count: number;
  subject: string | null;
  recipients: RecipientOutcome[] | null;
  error_code: string | null;
  error_message: string | null;
  smtp_response_code: number | null;
  message_id: string | null;
  attempts: number;
  batch_id: string | null;
  config: { id: string; name: string | null } | null;
  template_id: string | null;
  agent_context: Record<string, unknown> | null;
}

export interface Template {
  id: string;
  name: string;
  description: string | null;
  subject: string | null;
  html?: string | null;
  text?: string | null;
  variables:
    | string[]
    | { required?: string[]; properties?: Record<string, { type?: string; description?: string }> }
    | null;
  starter: boolean;
  required_variables?: string[];
  created_at: string;
  updated_at: string;
}

export interface TemplatePreview {
  template: { id: string; name: string };
  subject: string | null;
  text: string | null;
  html: string | null;
}
