// The functions the local gateway serves, by name (the folder names under supabase/functions).
import type { AppContext } from "../supabase/functions/_shared/context.ts";
import type { Handler } from "../supabase/functions/_shared/http.ts";
import { createSendBulkHandler } from "../supabase/functions/send-bulk/handler.ts";
import { createSendEmailHandler } from "../supabase/functions/send-email/handler.ts";
import { createSmtpConfigsHandler } from "../supabase/functions/smtp-configs/handler.ts";
import { createProcessOutboxHandler } from "../supabase/functions/process-outbox/handler.ts";
import { createEmailAnalyticsHandler } from "../supabase/functions/email-analytics/handler.ts";
import { createTemplatesHandler } from "../supabase/functions/templates/handler.ts";
import { createAttachmentsHandler } from "../supabase/functions/attachments/handler.ts";
import { createSuppressionsHandler } from "../supabase/functions/suppressions/handler.ts";
import { createUnsubscribeHandler } from "../supabase/functions/unsubscribe/handler.ts";
import { createMcpFunctionHandler } from "../supabase/functions/mcp/handler.ts";
import { createOpenApiHandler } from "../supabase/functions/openapi/handler.ts";
import { createOversightHandler } from "../supabase/functions/oversight/handler.ts";
import { createWebhooksHandler } from "../supabase/functions/webhooks/handler.ts";

/** Factory of each function's handler over a shared context. */
export const functionHandlers: Record<string, (ctx: AppContext) => Handler> = {
  "send-bulk": createSendBulkHandler,
  "send-email": createSendEmailHandler,
  "smtp-configs": createSmtpConfigsHandler,
  "process-outbox": createProcessOutboxHandler,
  "email-analytics": createEmailAnalyticsHandler,
  templates: createTemplatesHandler,
  attachments: createAttachmentsHandler,
  suppressions: createSuppressionsHandler,
  unsubscribe: createUnsubscribeHandler,
  mcp: createMcpFunctionHandler,
  openapi: createOpenApiHandler,
  oversight: createOversightHandler,
  webhooks: createWebhooksHandler,
};
