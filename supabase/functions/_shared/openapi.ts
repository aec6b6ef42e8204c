// The OpenAPI 3.1 document of mailroom's functions, built from the zod schemas the functions
// validate with (no second, hand-written copy of a request). Served by the `openapi` function
// and written to openapi.json by `deno task generate`, which also derives the SDK's request
// types from it (a test fails when either drifts).
import type { z } from "zod";
import { inputJsonSchema, outputJsonSchema } from "./json_schema.ts";
import { type ResponseName, RESPONSES } from "./responses.ts";
import {
  createConfigRequest,
  createTemplateRequest,
  imapSettingsRequest,
  previewTemplateRequest,
  sendBulkRequest,
  sendEmailRequest,
  updateConfigRequest,
  updateTemplateRequest,
  uploadAttachmentRequest,
} from "./schemas.ts";
import { AUDIT_STATUSES, DEFAULT_BREAKDOWNS, MAX_PAGE_SIZE } from "./analytics/params.ts";
import { decisionRequest, guardrailsRequest, stopRequest } from "./oversight/mod.ts";
import { addSuppressionsRequest, MAX_ADDRESSES_PER_REQUEST, SUPPRESSION_REASONS } from "./suppressions/mod.ts";
import { createWebhookRequest, updateWebhookRequest } from "./webhooks/mod.ts";
import { COMMON_ERRORS, errorExamples, errorResponses, ROUTE_ERRORS, USER_AUTH_ERRORS } from "./openapi_errors.ts";
import { REQUEST_EXAMPLES, RESPONSE_EXAMPLES } from "./openapi_examples.ts";

/** The API's version (the path prefix is /functions/v1). */
export const API_VERSION = "1.0.0";

type Json = Record<string, unknown>;

const REQUESTS: Record<string, z.ZodType> = {
  SendEmailRequest: sendEmailRequest,
  SendBulkRequest: sendBulkRequest,
  CreateConfigRequest: createConfigRequest,
  UpdateConfigRequest: updateConfigRequest,
  ImapSettingsRequest: imapSettingsRequest,
  CreateTemplateRequest: createTemplateRequest,
  UpdateTemplateRequest: updateTemplateRequest,
  PreviewTemplateRequest: previewTemplateRequest,
  UploadAttachmentRequest: uploadAttachmentRequest,
  AddSuppressionsRequest: addSuppressionsRequest,
  GuardrailsRequest: guardrailsRequest,
  StopRequest: stopRequest,
  DecisionRequest: decisionRequest,
  CreateWebhookRequest: createWebhookRequest,
  UpdateWebhookRequest: updateWebhookRequest,
};

const ERROR_SCHEMA: Json = {
  type: "object",
  required: ["error"],
  properties: {
    error: {
      type: "object",
      required: ["code", "message"],
      properties: {
        code: { type: "string", description: "Stable snake_case code, e.g. template_data_missing" },
        message: { type: "string" },
        details: { type: "object", additionalProperties: true },
      },
    },
  },
};

const DESCRIPTION = `Email for AI agents through each user's own SMTP server.

**Getting a token.** Every call except \`/openapi\` acts as a signed-in Supabase user: send the user's access token
as \`Authorization: Bearer <token>\`. In an app, sign in with supabase-js and use
\`(await supabase.auth.getSession()).data.session.access_token\` (\`supabase.functions.invoke\` sends it for you).
On the local stack (\`npm run dev\`), \`npm run token [email]\` creates a user and prints a token valid for 24 h.
Press **Authorize** above and paste it to try the operations here.

**Errors** are \`{"error": {"code", "message", "details"}}\` with a stable snake_case \`code\`: branch on the code,
not the message. Each operation lists the codes it can answer under its responses.`;

const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const body = (name: string) => ({ required: true, content: { "application/json": { schema: ref(name) } } });
const ok = (name: ResponseName | ResponseName[] | null, description: string, status = "200") => ({
  [status]: {
    description,
    content: {
      "application/json": {
        schema: Array.isArray(name) ? { oneOf: name.map(ref) } : name ? ref(name) : { type: "object" },
      },
    },
  },
});
const errors = { default: { description: "An error", content: { "application/json": { schema: ref("Error") } } } };
const pathParam = (name: string, description: string) => ({
  name,
  in: "path",
  required: true,
  description,
  schema: { type: "string" },
});
const query = (name: string, description: string, schema: Json = { type: "string" }) => ({
  name,
  in: "query",
  required: false,
  description,
  schema,
});
const idempotencyKey = {
  name: "Idempotency-Key",
  in: "header",
  required: false,
  description: "Repeat a request safely for 24 h: the same key and body replay the first response",
  schema: { type: "string", maxLength: 255 },
};

function op(summary: string, responses: Json, extra: Json = {}): Json {
  return { summary, ...extra, responses: { ...responses, ...errors } };
}

const attachmentId = pathParam("id", "A stored attachment's id");

const FILTERS = [
  query("from", "Start: a date (local midnight in tz) or a timestamp with a zone; default 30 days before to"),
  query("to", "End (exclusive); default now"),
  query("tz", "IANA time zone, default UTC"),
  query("config", "SMTP config id or name"),
  query("status", "Comma-separated statuses", {
    type: "string",
    description: `Any of ${AUDIT_STATUSES.join(", ")}`,
  }),
  query("batch_id", "A batch's id", { type: "string", format: "uuid" }),
  query("template", "Template id or name"),
];

/**
 * The OpenAPI document for a project at `projectUrl` (its functions at `<projectUrl>/functions/v1`).
 *
 * @example
 * ```ts
 * const doc = openApiDocument("https://abc.supabase.co");
 * ```
 */
export function openApiDocument(projectUrl: string): Json {
  const document = buildDocument(projectUrl);
  for (const [path, methods] of Object.entries(document.paths as Record<string, Record<string, Json>>)) {
    for (const [method, operation] of Object.entries(methods)) {
      // Stable operation ids for code generators: the method and the path, e.g. getSmtpConfigsRefVerifications.
      operation.operationId = method + path.split(/[^A-Za-z0-9]+/).filter(Boolean)
        .map((word) => word[0].toUpperCase() + word.slice(1)).join("");
      describeOperation(path, method, operation);
    }
  }
  withoutSafeIntegerBounds(document.components);
  return document;
}

/** Each function's operations, in the order the reference shows them. */
const TAGS = [
  { name: "send-email", description: "Send one message now or later; cancel or retry it" },
  { name: "send-bulk", description: "Queue up to 10,000 messages as a batch; follow and cancel it" },
  { name: "smtp-configs", description: "Your SMTP servers: credentials in Vault, limits, verification" },
  { name: "templates", description: "Mustache templates for subject, text and HTML" },
  { name: "attachments", description: "Files stored once and attached by id to any number of messages" },
  { name: "suppressions", description: "Addresses your mail never goes to again: every send path skips them" },
  { name: "email-analytics", description: "What was sent: totals, series, breakdowns, the audit rows" },
  { name: "webhooks", description: "Your HTTPS endpoints receive your message events, signed (Standard Webhooks)" },
  { name: "oversight", description: "Guardrails every send passes, and the stop button (agents may only tighten)" },
  { name: "mcp", description: "The same operations as MCP tools for agents" },
  { name: "process-outbox", description: "The outbox worker (server to server, secret key)" },
  { name: "unsubscribe", description: "One-click unsubscribe (RFC 8058): public, the link in List-Unsubscribe" },
  { name: "openapi", description: "This document" },
];

/**
 * Adds what a reader of one operation needs: its function's tag, the error codes it can answer
 * (by status, each with an example), and realistic examples of its request and response bodies.
 */
function describeOperation(path: string, method: string, operation: Json): void {
  operation.tags = [path.split("/")[1]];
  const security = operation.security as unknown[] | undefined;
  const codes = [
    ...(security === undefined ? USER_AUTH_ERRORS : []),
    ...(ROUTE_ERRORS[`${method} ${path}`] ?? []),
    ...COMMON_ERRORS,
  ];
  const { default: fallback, ...responses } = operation.responses as Record<string, Json>;
  operation.responses = { ...responses, ...errorResponses(codes), default: fallback };
  exampleFor(operation.requestBody as Json | undefined, REQUEST_EXAMPLES);
  for (const [status, response] of Object.entries(responses)) {
    if (status.startsWith("2")) exampleFor(response, RESPONSE_EXAMPLES);
  }
}

/** Puts the example of the body's schema (a `$ref`, or the first of a `oneOf`) on its media type. */
function exampleFor(body: Json | undefined, examples: Record<string, Json>): void {
  const media = (body?.content as Record<string, Json> | undefined)?.["application/json"];
  const schema = media?.schema as { $ref?: string; oneOf?: { $ref?: string }[] } | undefined;
  const schemaRef = schema?.$ref ?? schema?.oneOf?.[0]?.$ref;
  const example = schemaRef ? examples[schemaRef.split("/").pop()!] : undefined;
  if (media && example) media.example = example;
}

/**
 * zod writes `.int()` as ±Number.MAX_SAFE_INTEGER bounds, which say nothing to a reader and
 * make generated samples show `port: -9007199254740991`; the real bounds stay.
 */
function withoutSafeIntegerBounds(node: unknown): void {
  if (Array.isArray(node)) return node.forEach(withoutSafeIntegerBounds);
  if (node === null || typeof node !== "object") return;
  const object = node as Json;
  if (object.minimum === Number.MIN_SAFE_INTEGER) delete object.minimum;
  if (object.maximum === Number.MAX_SAFE_INTEGER) delete object.maximum;
  Object.values(object).forEach(withoutSafeIntegerBounds);
}

function buildDocument(projectUrl: string): Json {
  const config = pathParam("ref", "Config id or name");
  const template = pathParam("ref", "Template id or name");
  const batch = pathParam("batch_id", "Batch id");
  return {
    openapi: "3.1.0",
    info: {
      title: "mailroom",
      version: API_VERSION,
      license: { name: "MIT", identifier: "MIT" },
      description: DESCRIPTION,
    },
    tags: TAGS,
    servers: [{ url: `${projectUrl.replace(/\/+$/, "")}/functions/v1` }],
    security: [{ supabaseUser: [] }],
    components: {
      securitySchemes: {
        supabaseUser: {
          type: "http",
          scheme: "bearer",
          bearerFormat: "JWT",
          description: "The signed-in user's Supabase access token: `(await supabase.auth.getSession())" +
            ".data.session.access_token` in supabase-js; locally, `npm run token` prints one (valid 24 h).",
        },
        secretKey: {
          type: "apiKey",
          in: "header",
          name: "apikey",
          description: "A Supabase secret API key (`sb_secret_...`, Project Settings > API Keys); never in a browser.",
        },
      },
      schemas: {
        ...Object.fromEntries(Object.entries(REQUESTS).map(([name, schema]) => [name, inputJsonSchema(schema)])),
        ...Object.fromEntries(Object.entries(RESPONSES).map(([name, schema]) => [name, outputJsonSchema(schema)])),
        Error: ERROR_SCHEMA,
      },
      examples: errorExamples(),
    },
    paths: {
      "/send-email": {
        post: op("Send an email now, or schedule it", {
          ...ok(
            ["SendResult", "DryRunResult"],
            "Sent: accepted, rejected, deferred and unknown recipients (with dry_run: what would happen)",
          ),
          ...ok("SendResult", "Scheduled, queued, or held for the owner's approval (pending_approval)", "202"),
        }, { requestBody: body("SendEmailRequest"), parameters: [idempotencyKey] }),
      },
      "/send-email/{id}": {
        get: op(
          "One of your sends: its status, recipients and outcome (as /email-analytics/messages/{id})",
          ok(
            "Message",
            "The message",
          ),
          { parameters: [pathParam("id", "The send's id")] },
        ),
      },
      "/send-email/{id}/cancel": {
        post: op("Cancel a scheduled or queued send (again: answered as cancelled)", ok("Cancelled", "Cancelled"), {
          parameters: [pathParam("id", "The send's id")],
        }),
      },
      "/send-email/{id}/retry": {
        post: op("Send again a message the outbox set aside (error_class worker_crashed)", ok("Retried", "Queued"), {
          parameters: [pathParam("id", "The send's id")],
        }),
      },
      "/send-bulk": {
        post: op("Queue up to 10,000 messages", {
          ...ok("BulkAccepted", "Queued (or held for the owner's approval: pending_approval)", "202"),
          ...ok("BulkDryRun", "dry_run: checked and rendered, nothing queued"),
        }, {
          requestBody: body("SendBulkRequest"),
          parameters: [idempotencyKey],
        }),
        get: op(
          "Your batches, newest first (or one with ?batch_id=)",
          ok(["BatchList", "BatchStatus"], "The batches, or with ?batch_id= one BatchStatus"),
          {
            parameters: [
              query("batch_id", "One batch's progress instead of the list", { type: "string", format: "uuid" }),
              query("before", "created_at of the last batch of the previous page"),
              query("limit", "1-50", { type: "integer", minimum: 1, maximum: 50 }),
            ],
          },
        ),
      },
      "/send-bulk/{batch_id}": {
        get: op("A batch's progress", ok("BatchStatus", "Counts by status, times, rate, top errors"), {
          parameters: [batch],
        }),
      },
      "/send-bulk/{batch_id}/cancel": {
        post: op("Cancel a batch's messages that have not started", ok("BatchCancelled", "How many were cancelled"), {
          parameters: [batch],
        }),
      },
      "/smtp-configs": {
        get: op("Your SMTP configs", ok("ConfigList", "Default first")),
        post: op(
          "Create a config (its password goes to Vault)",
          ok("SmtpConfigWithWarnings", "The config and warnings", "201"),
          {
            requestBody: body("CreateConfigRequest"),
          },
        ),
      },
      "/smtp-configs/presets": {
        get: op(
          "Well-known providers: server, login, limits, and whether this deployment reaches them",
          ok("PresetList", "Gmail, Microsoft 365, iCloud, Fastmail, ... in that order"),
        ),
      },
      "/smtp-configs/{ref}": {
        get: op("One config", ok("SmtpConfig", "The config"), { parameters: [config] }),
        patch: op("Change a config", ok("SmtpConfigWithWarnings", "The config and warnings"), {
          parameters: [config],
          requestBody: body("UpdateConfigRequest"),
        }),
        delete: op("Delete a config and its Vault secret", ok("Deleted", "Deleted"), { parameters: [config] }),
      },
      ...Object.fromEntries(
        [["verify", "Connect, TLS, log in, quit; nothing is sent"], ["default", "Make it the default"], [
          "activate",
          "Allow sending through it",
        ], ["deactivate", "Refuse sending through it"]].map(([action, summary]) => [
          `/smtp-configs/{ref}/${action}`,
          {
            post: op(summary, ok(action === "verify" ? "Verification" : "SmtpConfig", "Result"), {
              parameters: [config],
            }),
          },
        ]),
      ),
      "/smtp-configs/{ref}/deliverability": {
        get: op(
          "Will its mail reach the inbox: the From domain's SPF (does it name the provider?) and DMARC",
          ok("Deliverability", "What DNS says, a verdict and what to change"),
          { parameters: [config] },
        ),
      },
      "/smtp-configs/{ref}/imap": {
        get: op("The config's IMAP settings (never the password)", ok("ImapSettings", "The settings"), {
          parameters: [config],
        }),
        patch: op(
          "Set or change its IMAP settings: bounces read back from the inbox, Sent copies (your own session only)",
          ok("ImapSettings", "The settings"),
          { parameters: [config], requestBody: body("ImapSettingsRequest") },
        ),
        delete: op(
          "Remove its IMAP settings and their password (your own session only)",
          ok("ImapDeleted", "Removed"),
          {
            parameters: [config],
          },
        ),
      },
      "/smtp-configs/{ref}/imap/check": {
        post: op(
          "Read the inbox for bounce and complaint reports now (the outbox worker does it every few minutes)",
          ok("MailboxCheck", "What was read and matched"),
          { parameters: [config] },
        ),
      },
      "/smtp-configs/{ref}/verifications": {
        get: op("The config's last 50 verifications", ok("VerificationList", "Newest first"), { parameters: [config] }),
      },
      "/templates": {
        get: op("Your templates and the starter ones", ok("TemplateList", "By name, without bodies")),
        post: op("Create a template", ok("Template", "The template", "201"), {
          requestBody: body("CreateTemplateRequest"),
        }),
      },
      "/templates/{ref}": {
        get: op("One template with its bodies", ok("Template", "The template"), { parameters: [template] }),
        patch: op("Change your template", ok("Template", "The template"), {
          parameters: [template],
          requestBody: body("UpdateTemplateRequest"),
        }),
        delete: op("Delete your template", ok("Deleted", "Deleted"), { parameters: [template] }),
      },
      "/templates/{ref}/preview": {
        post: op("Render with data, send nothing", ok("TemplatePreview", "The rendered parts"), {
          parameters: [template],
          requestBody: body("PreviewTemplateRequest"),
        }),
      },
      "/attachments": {
        get: op("Your stored attachments, newest first", ok("AttachmentList", "A page of records (never the bytes)"), {
          parameters: [
            query("limit", "1-200, default 50", { type: "integer", minimum: 1, maximum: 200 }),
            query("cursor", "next_cursor of the previous page"),
          ],
        }),
        post: op(
          "Store a file once (multipart field `file`, or JSON base64 or an https URL); attach it by id",
          {
            ...ok("Attachment", "Stored", "201"),
            ...ok("Attachment", "The same file (bytes, name and type) was stored already: its retention starts again"),
          },
          {
            requestBody: {
              required: true,
              content: {
                "multipart/form-data": {
                  schema: {
                    type: "object",
                    required: ["file"],
                    properties: {
                      file: { type: "string", format: "binary", description: "The file (its part's name is its name)" },
                      filename: { type: "string", description: "Another name for it" },
                      content_type: { type: "string", description: "Its media type, checked against the bytes" },
                    },
                  },
                },
                "application/json": { schema: ref("UploadAttachmentRequest") },
              },
            },
          },
        ),
      },
      "/attachments/{id}": {
        get: op("One stored attachment's record", ok("Attachment", "The record"), { parameters: [attachmentId] }),
        delete: op("Delete a stored attachment (not while a waiting message needs it)", ok("Deleted", "Deleted"), {
          parameters: [attachmentId],
        }),
      },
      "/suppressions": {
        get: op("Your suppression list, in address order", ok("SuppressionList", "A page"), {
          parameters: [
            query("limit", "1-1000, default 100", { type: "integer", minimum: 1, maximum: 1000 }),
            query("after", "next_after of the previous page"),
            query("reason", SUPPRESSION_REASONS.join(", "), { type: "string", enum: [...SUPPRESSION_REASONS] }),
          ],
        }),
        post: op(
          `Add addresses (at most ${MAX_ADDRESSES_PER_REQUEST}); an agent may add, never remove`,
          { ...ok("SuppressionsAdded", "Added", "201"), ...ok("SuppressionsAdded", "All were listed already") },
          { requestBody: body("AddSuppressionsRequest") },
        ),
      },
      "/suppressions/{address}": {
        get: op("One entry", ok("Suppression", "The entry"), { parameters: [pathParam("address", "The address")] }),
        delete: op(
          "Lift it (mail may go to it again): your own session only, never an agent's token",
          ok("SuppressionDeleted", "Lifted"),
          { parameters: [pathParam("address", "The address")] },
        ),
      },
      "/webhooks": {
        get: op("Your webhooks, oldest first", ok("WebhookList", "The webhooks (never their secrets)")),
        post: op(
          "Add one (your own session only): its signing secret is in the answer, once",
          ok("WebhookCreated", "The webhook and its secret", "201"),
          { requestBody: body("CreateWebhookRequest") },
        ),
      },
      "/webhooks/{id}": {
        get: op("One webhook", ok("Webhook", "The webhook"), { parameters: [pathParam("id", "The webhook's id")] }),
        patch: op(
          "Change it (your own session only); enabled: true starts a disabled one afresh",
          ok("Webhook", "It"),
          {
            parameters: [pathParam("id", "The webhook's id")],
            requestBody: body("UpdateWebhookRequest"),
          },
        ),
        delete: op("Remove it and its delivery log (your own session only)", ok("WebhookDeleted", "Removed"), {
          parameters: [pathParam("id", "The webhook's id")],
        }),
      },
      "/webhooks/{id}/rotate-secret": {
        post: op(
          "A new signing secret, shown once; the old one signs beside it for 24 hours",
          ok("WebhookSecret", "It"),
          {
            parameters: [pathParam("id", "The webhook's id")],
          },
        ),
      },
      "/webhooks/{id}/test": {
        post: op("Queue a webhook.test event now (the worker sends it)", ok("WebhookTestQueued", "Queued", "202"), {
          parameters: [pathParam("id", "The webhook's id")],
        }),
      },
      "/webhooks/{id}/deliveries": {
        get: op("Its latest deliveries, newest first", ok("WebhookDeliveries", "The deliveries"), {
          parameters: [
            pathParam("id", "The webhook's id"),
            query("limit", "1-100, default 20", { type: "integer", minimum: 1, maximum: 100 }),
          ],
        }),
      },
      "/email-analytics": {
        get: op("Totals, success rate, latency, series and breakdowns", ok("AnalyticsSummary", "The summary"), {
          parameters: [
            ...FILTERS,
            query("interval", "hour or day", { type: "string", enum: ["hour", "day"] }),
            query("group_by", `Comma-separated: ${DEFAULT_BREAKDOWNS.join(", ")}, agent_context.<key>`),
          ],
        }),
      },
      "/email-analytics/messages": {
        get: op("Your audit rows, newest first", ok("MessagePage", "One page"), {
          parameters: [
            ...FILTERS,
            query("recipient", "An address: messages to it (To, Cc or Bcc), any case"),
            query("agent", "agent_context.agent as the sender set it"),
            query("client_id", "The OAuth client (agent) whose token made the send"),
            query("limit", `1-${MAX_PAGE_SIZE}`, { type: "integer", minimum: 1, maximum: MAX_PAGE_SIZE }),
            query("cursor", "next_cursor of the previous page"),
          ],
        }),
      },
      "/email-analytics/messages/{id}": {
        get: op("One audit row", ok("Message", "The message"), { parameters: [pathParam("id", "The message's id")] }),
      },
      "/email-analytics/messages/{id}/content": {
        get: op(
          "What a message said: headers, text and HTML parts, attachments listed",
          ok("MessageContent", "Its content"),
          { parameters: [pathParam("id", "The message's id")] },
        ),
      },
      "/oversight/guardrails": {
        get: op("The account's guardrails and each config's own", ok("GuardrailsList", "The guardrails")),
        put: op(
          "Replace the account's guardrails ({config} for one config's); an agent may only tighten",
          ok("Guardrails", "The guardrails now"),
          { requestBody: body("GuardrailsRequest") },
        ),
      },
      "/oversight/stop": {
        post: op(
          "Stop all sending ({config} for one config): nothing leaves, queued mail waits",
          ok(
            "Guardrails",
            "Stopped",
          ),
          { requestBody: body("StopRequest") },
        ),
      },
      "/oversight/resume": {
        post: op("Lift the stop (the owner's own session, never an agent's)", ok("Guardrails", "Lifted"), {
          requestBody: body("StopRequest"),
        }),
      },
      "/oversight/approvals": {
        get: op("Sends waiting for your approval, oldest first", ok("ApprovalList", "One page"), {
          parameters: [
            query("after", "next_after of the previous page", { type: "string", format: "uuid" }),
            query("limit", "1-200", { type: "integer", minimum: 1, maximum: 200 }),
          ],
        }),
      },
      "/oversight/approvals/{id}": {
        get: op("One held send with what would be sent (rendered)", ok("ApprovalDetail", "The send"), {
          parameters: [pathParam("id", "The message's id")],
        }),
      },
      "/oversight/approvals/{id}/approve": {
        post: op(
          "Approve: it goes into the outbox (your own session, never an agent's)",
          ok(
            "ApprovalDecision",
            "Approved",
          ),
          { parameters: [pathParam("id", "The message's id")], requestBody: body("DecisionRequest") },
        ),
      },
      "/oversight/approvals/{id}/reject": {
        post: op("Reject: it is never sent", ok("ApprovalDecision", "Rejected"), {
          parameters: [pathParam("id", "The message's id")],
          requestBody: body("DecisionRequest"),
        }),
      },
      "/oversight/approvals/batch/{batch_id}/approve": {
        post: op("Approve every pending message of a batch", ok("ApprovalDecision", "Approved"), {
          parameters: [pathParam("batch_id", "The batch's id")],
          requestBody: body("DecisionRequest"),
        }),
      },
      "/oversight/approvals/batch/{batch_id}/reject": {
        post: op("Reject every pending message of a batch", ok("ApprovalDecision", "Rejected"), {
          parameters: [pathParam("batch_id", "The batch's id")],
          requestBody: body("DecisionRequest"),
        }),
      },
      "/oversight/events": {
        get: op("Who changed guardrails or pressed the stop, newest first", ok("OversightEvents", "One page"), {
          parameters: [
            query("before", "next_before of the previous page", { type: "integer", minimum: 1 }),
            query("limit", "1-200", { type: "integer", minimum: 1, maximum: 200 }),
          ],
        }),
      },
      "/mcp/.well-known/oauth-protected-resource": {
        get: op("The MCP endpoint's protected-resource metadata (RFC 9728)", ok(null, "The metadata"), {
          security: [],
        }),
      },
      "/mcp": {
        post: op("The MCP endpoint (Streamable HTTP, JSON-RPC)", ok(null, "A JSON-RPC response or an event stream")),
      },
      "/process-outbox": {
        post: op("Drain the outbox (server to server)", ok(null, "The drain report"), {
          security: [{ secretKey: [] }],
        }),
      },
      "/openapi": { get: op("This document", ok(null, "OpenAPI 3.1"), { security: [] }) },
      "/unsubscribe": {
        post: op(
          "Unsubscribe the link's recipient from its sender's mail (what a mail provider's Unsubscribe button posts)",
          ok(null, "Unsubscribed (text/plain)"),
          { security: [], parameters: [query("token", "The token of the List-Unsubscribe link")] },
        ),
        get: op("What the link does, in plain text; changes nothing", ok(null, "An explanation (text/plain)"), {
          security: [],
          parameters: [query("token", "The token of the List-Unsubscribe link")],
        }),
      },
    },
  };
}
