// /mcp: mailroom as an MCP server (Streamable HTTP, stateless: any instance answers any
// request). Built on the official TypeScript SDK v2 (`@modelcontextprotocol/server`,
// `createMcpHandler`): it speaks the current stateless revision (2026-07-28) and, through its
// legacy stateless fallback, the 2025 revisions that SDK 1.x clients and
// `@langchain/mcp-adapters` 1.x still use.
//
// Authorization as the MCP spec asks: the endpoint is an OAuth 2.1 protected resource whose
// authorization server is the project's Supabase Auth. A request without a valid Supabase
// access token gets 401 with `WWW-Authenticate: Bearer resource_metadata=...`, and the
// metadata (RFC 9728) is served at /functions/v1/mcp/.well-known/oauth-protected-resource.
// Tokens are verified exactly as every other function verifies them.
//
// Before the token, the Origin (origin.ts): a browser page whose origin the operator has not
// listed gets 403 origin_not_allowed on every method, preflight included. The metadata stays
// readable from any origin: it is public, and browser clients read it to find Supabase Auth.
//
// Each tool (see _shared/agent/tools.ts) is one call of a mailroom function, run in-process
// through that function's own handler with the caller's token: same validation, limits, RLS,
// idempotency and audit as over HTTP. Sends record agent_context {via: "mcp", tool, client}.
import {
  createMcpHandler,
  inputRequired,
  McpServer,
  type ServerContext,
  type StandardSchemaWithJSON,
} from "@modelcontextprotocol/server";
import { bearerToken, type UserClaims } from "../_shared/auth.ts";
import type { AppContext } from "../_shared/context.ts";
import { ApiError, checkValueDepth, corsHeaders, errorResponse, type Handler, isUuid, json } from "../_shared/http.ts";
import { allowedOrigin } from "./origin.ts";
import { AGENT_TOOLS, type AgentTool, toolInputJsonSchema } from "../_shared/agent/tools.ts";
import { parseBody } from "../_shared/schemas.ts";
import { type FunctionCall, functionCall, tagAgentContext, ToolArgumentError } from "../_shared/agent/calls.ts";
import { withRefusalAdvice } from "../_shared/agent/refusals.ts";
import { createEmailAnalyticsHandler } from "../email-analytics/handler.ts";
import { createSendBulkHandler } from "../send-bulk/handler.ts";
import { createSendEmailHandler } from "../send-email/handler.ts";
import { createSmtpConfigsHandler } from "../smtp-configs/handler.ts";
import { createTemplatesHandler } from "../templates/handler.ts";
import { createAttachmentsHandler } from "../attachments/handler.ts";

/** Largest MCP request: the largest function body plus room for the JSON-RPC envelope. */
const MAX_REQUEST_BYTES = 17 * 1024 * 1024;

/** Headers MCP clients send and read, for browsers (CORS). */
const MCP_ALLOW_HEADERS = "mcp-protocol-version, mcp-session-id, mcp-method, mcp-name, last-event-id";
const MCP_EXPOSE_HEADERS = "www-authenticate, mcp-protocol-version, mcp-session-id";

/** The server's name and version as MCP clients see them. */
export const MCP_SERVER_INFO = { name: "mailroom", version: "0.1.0" };

const INSTRUCTIONS = "mailroom sends email for the signed-in user through their own SMTP server. Sends are " +
  "real and audited: confirm recipients and content with the user before calling send_email or " +
  "send_bulk_email, pass an idempotency_key so a retry never sends twice, and never resend a message whose " +
  "status is `unknown` without asking. The owner's guardrails and stop button are theirs alone: when a send is " +
  "refused by them, tell the user instead of retrying.";

interface Caller {
  token: string;
  claims: UserClaims;
  /** Who is calling: the OAuth client_id claim, else the HTTP User-Agent. */
  client: string;
}

/** The public URL of this function and of its protected-resource metadata. */
function urls(ctx: AppContext) {
  const resource = `${ctx.config.supabaseUrl}/functions/v1/mcp`;
  return { resource, metadata: `${resource}/.well-known/oauth-protected-resource` };
}

/**
 * CORS headers, with `allowOrigin` as Access-Control-Allow-Origin: the caller's allowed origin
 * (then `Vary: Origin`, since the answer depends on it), `*` for public metadata, or nothing
 * when the request had no Origin or a refused one.
 */
function withCors(res: Response, allowOrigin: string | undefined, preflight = false): Response {
  for (const [name, value] of Object.entries(corsHeaders)) {
    if (!(preflight && name === "access-control-allow-headers")) res.headers.set(name, value);
  }
  res.headers.set(
    "access-control-expose-headers",
    `${corsHeaders["access-control-expose-headers"]}, ${MCP_EXPOSE_HEADERS}`,
  );
  if (allowOrigin) res.headers.set("access-control-allow-origin", allowOrigin);
  else res.headers.delete("access-control-allow-origin");
  if (allowOrigin !== "*") res.headers.append("vary", "origin");
  return res;
}

function challenge(ctx: AppContext, error: unknown, requestId: string, origin: string | undefined): Response {
  const res = withCors(errorResponse(error, requestId), origin);
  const invalid = error instanceof ApiError && error.code !== "missing_token" ? ', error="invalid_token"' : "";
  res.headers.set("www-authenticate", `Bearer resource_metadata="${urls(ctx).metadata}"${invalid}`);
  return res;
}

/** Build the mcp handler over a shared context. */
export function createMcpFunctionHandler(ctx: AppContext): Handler {
  const functions: Record<string, Handler> = {
    "send-email": createSendEmailHandler(ctx),
    "send-bulk": createSendBulkHandler(ctx),
    "smtp-configs": createSmtpConfigsHandler(ctx),
    templates: createTemplatesHandler(ctx),
    attachments: createAttachmentsHandler(ctx),
    "email-analytics": createEmailAnalyticsHandler(ctx),
  };
  const mcp = createMcpHandler(({ authInfo }) => buildServer(functions, ctx, authInfo?.extra?.caller as Caller), {
    // send-bulk takes up to 16 MiB, send-email 15 MiB (attachments): a tool call may be as large.
    maxRequestBodySize: MAX_REQUEST_BYTES,
  });

  const allowedOrigins: ReadonlySet<string> = new Set(ctx.config.allowedOrigins);
  const preflight = (origin: string | undefined) =>
    withCors(
      new Response(null, {
        status: 204,
        headers: {
          "access-control-allow-headers": `${corsHeaders["access-control-allow-headers"]}, ${MCP_ALLOW_HEADERS}`,
        },
      }),
      origin,
      true,
    );

  return async (req) => {
    const requestId = crypto.randomUUID();
    const path = new URL(req.url).pathname.replace(/\/+$/, "");
    if (path.endsWith("/.well-known/oauth-protected-resource")) {
      // Public metadata, the same for everyone: any origin may read it (no Origin check).
      return req.method === "OPTIONS" ? preflight("*") : withCors(metadata(ctx), "*");
    }
    let origin: string | undefined;
    try {
      origin = allowedOrigin(req, allowedOrigins);
    } catch (error) {
      // Decided before the token and the MCP handler, on every method (preflight too), and
      // without Access-Control-Allow-Origin: the refused page cannot even read the answer.
      return withCors(errorResponse(error, requestId), undefined);
    }
    if (req.method === "OPTIONS") return preflight(origin);
    let caller: Caller;
    try {
      const token = bearerToken(req);
      const claims = await ctx.verifyToken(token);
      const clientId = typeof claims.client_id === "string" ? claims.client_id : undefined;
      // The OAuth client, else the client's product name (the User-Agent without its version, so
      // an upgraded client's retry still matches its idempotency key).
      const product = /^[^\s/]+/.exec(req.headers.get("user-agent") ?? "")?.[0];
      caller = { token, claims, client: (clientId ?? product ?? "unknown").slice(0, 200) };
    } catch (error) {
      return challenge(ctx, error, requestId, origin);
    }
    const res = await mcp.fetch(req, {
      authInfo: {
        token: caller.token,
        clientId: caller.client,
        scopes: [],
        expiresAt: typeof caller.claims.exp === "number" ? caller.claims.exp : undefined,
        extra: { caller },
      },
    });
    res.headers.set("x-request-id", requestId);
    return withCors(res, origin);
  };
}

/** The RFC 9728 protected-resource metadata: where clients get a token for this resource. */
function metadata(ctx: AppContext): Response {
  const { resource } = urls(ctx);
  return json(
    {
      resource,
      authorization_servers: [`${ctx.config.supabaseUrl}/auth/v1`],
      bearer_methods_supported: ["header"],
      scopes_supported: [],
      resource_name: "mailroom",
      resource_documentation: "https://github.com/supabase-community/mailroom#use-from-an-agent",
    },
    200,
    { "cache-control": "public, max-age=300" },
  );
}

function buildServer(functions: Record<string, Handler>, ctx: AppContext, caller: Caller): McpServer {
  const server = new McpServer(MCP_SERVER_INFO, { instructions: INSTRUCTIONS });
  for (const tool of AGENT_TOOLS) {
    server.registerTool(tool.name, {
      title: tool.title,
      description: tool.description,
      inputSchema: advertised(toolInputJsonSchema(tool)),
      annotations: tool.annotations,
    }, async (args: unknown, toolCtx: ServerContext) => {
      // The retry after the owner was sent to approve (URL-mode elicitation): report, never send again.
      const state = toolCtx.mcpReq.requestState();
      if (tool.sends && typeof state === "string") return await heldStatus(functions, ctx, caller, state);
      const result = await runTool(functions, ctx, caller, tool, (args ?? {}) as Record<string, unknown>);
      const held = tool.sends ? heldOf(result.structuredContent) : null;
      const url = held && ctx.config.approvalUrl
        ? `${ctx.config.approvalUrl}/${held.kind === "batch" ? "batch/" : ""}${encodeURIComponent(held.id)}`
        : null;
      // A client that can open a page for its user gets one: approval happens there, outside the model's channel.
      if (held && url && server.server.getClientCapabilities()?.elicitation?.url) {
        return inputRequired({
          inputRequests: { approval: inputRequired.elicitUrl({ message: approvalPrompt(held), url }) },
          requestState: JSON.stringify(held),
        });
      }
      return result;
    });
  }
  return server;
}

/** A send the owner must approve, as a tool's result names it. */
interface Held {
  kind: "message" | "batch";
  id: string;
  count: number;
}

function heldOf(result: unknown): Held | null {
  const r = (result ?? {}) as { status?: string; id?: string; batch_id?: string; pending_approval?: number };
  if (r.status === "pending_approval" && typeof r.id === "string") return { kind: "message", id: r.id, count: 1 };
  if (typeof r.batch_id === "string" && typeof r.pending_approval === "number" && r.pending_approval > 0) {
    return { kind: "batch", id: r.batch_id, count: r.pending_approval };
  }
  return null;
}

function approvalPrompt(held: Held): string {
  return held.kind === "message"
    ? "An email your agent wrote waits for your approval. Open mailroom to read it, then approve or reject it."
    : `${held.count} emails your agent wrote wait for your approval. Open mailroom to read them, then approve or ` +
      "reject them.";
}

/**
 * What became of a held send, for the tool call retried after the owner was sent to approve it.
 * The state comes back from the client, so it is read as the caller (RLS): it can only name the
 * caller's own sends, and it never causes a send.
 */
async function heldStatus(functions: Record<string, Handler>, ctx: AppContext, caller: Caller, state: string) {
  let held: Held;
  try {
    held = JSON.parse(state) as Held;
    if ((held.kind !== "message" && held.kind !== "batch") || typeof held.id !== "string" || !isUuid(held.id)) {
      throw new TypeError("not a held send");
    }
  } catch {
    return toolError(400, {
      error: { code: "invalid_request", message: "The request state is not one mailroom gave" },
    });
  }
  const call: FunctionCall = held.kind === "message"
    ? { fn: "send-email", method: "GET", path: `/${held.id}` }
    : { fn: "send-bulk", method: "GET", path: `/${held.id}` };
  const res = await functions[call.fn](requestFor(ctx, caller, call));
  const result = await res.json() as Record<string, unknown>;
  if (!res.ok) return toolError(res.status, result);
  const text = held.kind === "message" ? messageDecision(String(result.status)) : batchDecision(result);
  return { content: [{ type: "text" as const, text }], structuredContent: result };
}

function messageDecision(status: string): string {
  switch (status) {
    case "pending_approval":
      return "The email still waits for the account owner's approval: nothing was sent. Tell the user it waits for " +
        "them; do not send it again.";
    case "rejected":
      return "The account owner rejected this email: it was not sent and will not be. Do not send it again.";
    case "expired":
      return "Nobody approved this email in time: it was not sent. Do not send it again unless the user asks.";
    case "cancelled":
      return "This email was cancelled: it was not sent.";
    case "suppressed":
      return "The account owner approved this email, but every recipient is on the suppression list (they " +
        "unsubscribed or bounced): it was not sent. Do not try to reach them another way.";
    default:
      return `The account owner approved this email; it is ${status} (the outbox sends it).`;
  }
}

function batchDecision(result: Record<string, unknown>): string {
  const counts = (result.counts ?? {}) as Record<string, number>;
  if (counts.pending_approval > 0) {
    return `${counts.pending_approval} emails still wait for the account owner's approval. Tell the user; do not ` +
      "send them again.";
  }
  return `The account owner decided: ${counts.rejected ?? 0} rejected, ${counts.expired ?? 0} expired, the rest ` +
    "approved and in the outbox.";
}

/**
 * A tool's input schema as clients see it, without the SDK's own validation: runTool checks the
 * arguments with the tool's zod schema (the one the function itself uses), so a bad argument
 * comes back as a tool error with our stable code and the field's path, exactly as over HTTP,
 * instead of the SDK's generic "Input validation error" text.
 */
function advertised(schema: Record<string, unknown>): StandardSchemaWithJSON<Record<string, unknown>> {
  return {
    "~standard": {
      version: 1,
      vendor: "mailroom",
      jsonSchema: { input: () => schema, output: () => schema },
      validate: (value: unknown) => ({ value: (value ?? {}) as Record<string, unknown> }),
    },
  };
}

/** A tool's result: short text for the model, the function's JSON as structuredContent. */
async function runTool(
  functions: Record<string, Handler>,
  ctx: AppContext,
  caller: Caller,
  tool: AgentTool,
  args: Record<string, unknown>,
) {
  try {
    // Bounded first, as every function's body reader bounds its body: the walks below recurse.
    checkValueDepth(args);
    parseBody(tool.input, args);
    const call = functionCall(tool.calls, args);
    if (tool.sends && call.body) {
      call.body = tagAgentContext(call.body, { via: "mcp", tool: tool.name, client: caller.client });
    }
    const res = await functions[call.fn](requestFor(ctx, caller, call));
    const result = await res.json() as Record<string, unknown>;
    if (!res.ok) return toolError(res.status, result);
    return { content: [{ type: "text" as const, text: tool.summarize(result) }], structuredContent: result };
  } catch (error) {
    if (error instanceof ToolArgumentError) {
      return toolError(400, { error: { code: "invalid_request", message: error.message } });
    }
    if (error instanceof ApiError) {
      return toolError(error.status, {
        error: { code: error.code, message: error.message, ...(error.details ? { details: error.details } : {}) },
      });
    }
    throw error;
  }
}

function requestFor(ctx: AppContext, caller: Caller, call: FunctionCall): Request {
  const url = new URL(`${ctx.config.supabaseUrl}/functions/v1/${call.fn}${call.path ?? ""}`);
  for (const [name, value] of Object.entries(call.query ?? {})) {
    if (value !== undefined && value !== "") url.searchParams.set(name, value);
  }
  // A send through a tool is an agent's: under `approval: agents` it waits (see _shared/oversight).
  const headers: Record<string, string> = { authorization: `Bearer ${caller.token}`, "x-mailroom-via": "mcp" };
  if (call.idempotencyKey) headers["idempotency-key"] = call.idempotencyKey;
  if (call.body !== undefined) headers["content-type"] = "application/json";
  return new Request(url, {
    method: call.method,
    headers,
    body: call.body === undefined ? undefined : JSON.stringify(call.body),
  });
}

/**
 * A failed call as a tool error the model can read: the stable code first, then what to do (a
 * guardrail's refusal says so in words that end a retry loop: see refusals.ts).
 */
function toolError(status: number, body: Record<string, unknown>) {
  const error = (body.error ?? {}) as { code?: string; message?: string; details?: Record<string, unknown> };
  const retry = error.details?.retryable === true ? " It can be retried later." : "";
  const explained = withRefusalAdvice(`${error.message ?? ""}${retry}`, error.code, error.details);
  return {
    isError: true,
    content: [{ type: "text" as const, text: `${error.code ?? "error"} (HTTP ${status}): ${explained}` }],
    structuredContent: { status, ...body },
  };
}
