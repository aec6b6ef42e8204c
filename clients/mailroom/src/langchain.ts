// LangChain.js tools for mailroom: the same tools, descriptions and input schemas the MCP
// endpoint lists (generated from the server's definitions), built with `tool()` and zod
// schemas (`z.fromJSONSchema`), each making its call through a MailroomClient. A refusal
// comes back to the model as text starting with the stable code, so it can correct itself; a
// guardrail's refusal also says what to do instead (the MCP endpoint's words: refusals.ts).
import { tool } from "@langchain/core/tools";
import { z } from "zod";
import { type MailroomClient, MailroomError } from "./index.ts";
import { functionCall, tagAgentContext, ToolArgumentError } from "./generated/calls.ts";
import { withRefusalAdvice } from "./generated/refusals.ts";
import { TOOLS } from "./generated/tools.ts";

/**
 * The schema without `propertyNames` (zod writes it for records; `z.fromJSONSchema` turns it
 * into a transform, which LangChain cannot hand to a model as JSON Schema again).
 */
function forModels(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(forModels);
  if (!schema || typeof schema !== "object") return schema;
  return Object.fromEntries(
    Object.entries(schema).filter(([key]) => key !== "propertyNames").map(([key, value]) => [key, forModels(value)]),
  );
}

/** Options of {@linkcode createMailroomTools}. */
export interface MailroomToolsOptions {
  /** Only these tools (by name); all by default. */
  only?: string[];
  /** Recorded as `agent_context.client` with every send (default "langchain"). */
  client?: string;
}

/**
 * The mailroom tools for a LangChain agent.
 *
 * @example
 * ```ts
 * const agent = createAgent({ model, tools: createMailroomTools(createMailroomClient({ supabase })) });
 * ```
 */
export function createMailroomTools(client: MailroomClient, options: MailroomToolsOptions = {}) {
  return TOOLS.filter((t) => !options.only || options.only.includes(t.name)).map((definition) =>
    tool(
      async (args: Record<string, unknown>) => {
        try {
          const call = functionCall(definition.calls, args);
          if (definition.sends && call.body) {
            call.body = tagAgentContext(call.body, {
              via: "langchain",
              tool: definition.name,
              client: options.client ?? "langchain",
            });
          }
          // Sent by an agent: under the owner's `approval: agents`, its sends wait for approval.
          return JSON.stringify(await client.call(call, { via: "langchain" }));
        } catch (error) {
          if (error instanceof MailroomError) {
            const explained = withRefusalAdvice(error.message, error.code, error.details);
            return `${error.code} (HTTP ${error.status}): ${explained}` +
              (Object.keys(error.details).length ? ` ${JSON.stringify(error.details)}` : "");
          }
          if (error instanceof ToolArgumentError) return `invalid_request: ${error.message}`;
          throw error;
        }
      },
      {
        name: definition.name,
        description: definition.description,
        schema: z.fromJSONSchema(forModels(definition.inputSchema) as never) as z.ZodObject,
      },
    )
  );
}
