// How an agent tool's arguments become one call of a mailroom function. Dependency-free on
// purpose: the MCP endpoint uses it in-process, and `deno task generate` copies it into the
// TypeScript SDK (clients/mailroom), so both make exactly the same calls.

/** One call of a mailroom function. */
export interface FunctionCall {
  fn: string;
  method: "GET" | "POST";
  path?: string;
  query?: Record<string, string>;
  body?: Record<string, unknown>;
  idempotencyKey?: string;
}

/** A tool's call, declared: which function, and where each argument goes. */
export interface CallSpec {
  fn: string;
  method: "GET" | "POST";
  /** After the function's name, with `{arg}` placeholders (URL-encoded). */
  path?: string;
  /** Arguments sent as query parameters (lists joined with commas). */
  query?: string[];
  /** The other arguments (all but path, query and idempotency_key ones) as the JSON body. */
  body?: boolean;
  /** Make this call only when this argument is given (the first call that applies is made). */
  when?: string;
}

/** The argument that becomes the Idempotency-Key header of a send. */
export const IDEMPOTENCY_ARGUMENT = "idempotency_key";

/** Thrown when no call applies (e.g. cancel without id or batch_id). */
export class ToolArgumentError extends Error {}

/**
 * The function call a tool makes for `args`.
 *
 * @throws ToolArgumentError when no declared call applies or a path argument is missing.
 * @example
 * ```ts
 * functionCall([{ fn: "send-bulk", method: "GET", path: "/{batch_id}" }], { batch_id: "b1" });
 * // { fn: "send-bulk", method: "GET", path: "/b1" }
 * ```
 */
export function functionCall(calls: readonly CallSpec[], args: Record<string, unknown>): FunctionCall {
  const spec = calls.find((c) => c.when === undefined || args[c.when] !== undefined);
  if (!spec) throw new ToolArgumentError(`Give one of: ${calls.map((c) => c.when).join(", ")}`);
  const used = new Set<string>([IDEMPOTENCY_ARGUMENT]);
  const path = spec.path?.replace(/\{(\w+)\}/g, (_, name: string) => {
    used.add(name);
    const value = args[name];
    if (value === undefined || value === null || value === "") throw new ToolArgumentError(`${name} is required`);
    // "." and ".." would be resolved as path steps by a URL, reaching another route.
    if (value === "." || value === "..") throw new ToolArgumentError(`${name} cannot be ${JSON.stringify(value)}`);
    return encodeURIComponent(String(value));
  });
  const call: FunctionCall = { fn: spec.fn, method: spec.method };
  if (path) call.path = path;
  if (spec.query) {
    call.query = {};
    for (const name of spec.query) {
      used.add(name);
      const value = args[name];
      if (value === undefined || value === null) continue;
      call.query[name] = Array.isArray(value) ? value.join(",") : String(value);
    }
  }
  if (spec.body) {
    call.body = Object.fromEntries(Object.entries(args).filter(([name]) => !used.has(name)));
  }
  const key = args[IDEMPOTENCY_ARGUMENT];
  if (typeof key === "string" && key !== "") call.idempotencyKey = key;
  return call;
}

/**
 * Mark a send made through an agent integration: `tags` (e.g. {via: "mcp", tool, client}) go
 * over the body's `agent_context` and over each bulk message's own, which would otherwise
 * replace the batch's.
 */
export function tagAgentContext(body: Record<string, unknown>, tags: Record<string, string>): Record<string, unknown> {
  const tag = (context: unknown) => ({ ...(context && typeof context === "object" ? context : {}), ...tags });
  const tagged: Record<string, unknown> = { ...body, agent_context: tag(body.agent_context) };
  if (Array.isArray(body.messages)) {
    tagged.messages = body.messages.map((m) =>
      m && typeof m === "object" && !Array.isArray(m)
        ? { ...m, agent_context: tag((m as Record<string, unknown>).agent_context) }
        : m
    );
  }
  return tagged;
}
