// The local functions gateway: the same URLs as `supabase functions serve`
// (/functions/v1/<name>), plus the JWKS that Supabase Auth would publish.
//
// Two ways to run the functions behind it:
// - `process` (the dev stack): each function in its own Deno process started from its
//   `index.ts` with its import map, as the platform runs one worker per function
//   (local/function_processes.ts);
// - `inline` (most tests): every handler in this process over one shared context, so tests
//   can capture the functions' logs and start quickly. The suite also boots every function
//   as a process (tests/function_processes_test.ts).
import { createContext } from "../supabase/functions/_shared/context.ts";
import type { Handler } from "../supabase/functions/_shared/http.ts";
import { json } from "../supabase/functions/_shared/http.ts";
import { functionHandlers } from "./functions.ts";
import { functionNames, type FunctionProcess, startFunctionProcess } from "./function_processes.ts";
import { serveHttp } from "./http_server.ts";

/** A running gateway. */
export interface Gateway {
  url: string;
  port: number;
  /** The function processes, in `process` mode. */
  processes: FunctionProcess[];
  close(): Promise<void>;
}

/** Options for `startGateway`. */
export interface GatewayOptions {
  port: number;
  hostname?: string;
  /** The functions' environment (SUPABASE_URL, SUPABASE_DB_URL, MAILROOM_*). */
  env: Record<string, string | undefined>;
  /** JWKS to publish at /auth/v1/.well-known/jwks.json. */
  jwks: { keys: unknown[] };
  /** How the functions run (see the module comment); `inline` by default. */
  isolation?: "inline" | "process";
  /** Called once per request when its response starts (the dev stack's request log). */
  onRequest?: (entry: RequestLogEntry) => void;
}

/** One request through the gateway, as the request log shows it. */
export interface RequestLogEntry {
  method: string;
  path: string;
  status: number;
  /** Milliseconds until the response started (a streamed body may go on after). */
  ms: number;
  /** The function's `x-request-id`, when it sent one. */
  requestId: string | null;
  userAgent: string | null;
}

/**
 * The request log's line, e.g. `POST /functions/v1/send-email 200 41ms req 6f1c...`.
 *
 * @example
 * ```ts
 * formatRequestLine({ method: "GET", path: "/functions/v1/openapi", status: 200, ms: 3, requestId: null, userAgent: null });
 * // "GET /functions/v1/openapi 200 3ms"
 * ```
 */
export function formatRequestLine(entry: RequestLogEntry): string {
  const line = `${entry.method} ${entry.path} ${entry.status} ${entry.ms}ms`;
  return entry.requestId ? `${line} req ${entry.requestId}` : line;
}

const FUNCTION_PATH = /^\/functions\/v1\/([a-z0-9_-]+)(\/.*)?$/;

/** Serve every function, inline or each in its own process. */
export async function startGateway(options: GatewayOptions): Promise<Gateway> {
  const backends = options.isolation === "process" ? await processBackends(options.env) : inlineBackends(options.env);
  const route = (req: Request): Response | Promise<Response> => {
    const url = new URL(req.url);
    if (url.pathname === "/auth/v1/.well-known/jwks.json") return json(options.jwks);
    const match = FUNCTION_PATH.exec(url.pathname);
    const handler = match && backends.handlers[match[1]];
    if (!handler) {
      return json({ error: { code: "function_not_found", message: `No function at ${url.pathname}` } }, 404);
    }
    // The Edge Runtime hands a function its path starting at the function's name.
    const inner = new URL(`/${match[1]}${match[2] ?? ""}${url.search}`, url);
    const hasBody = req.method !== "GET" && req.method !== "HEAD";
    const init: RequestInit & { duplex?: "half" } = {
      method: req.method,
      headers: req.headers,
      body: hasBody ? req.body : null,
      duplex: "half",
    };
    return handler(new Request(inner, init));
  };
  const onRequest = options.onRequest;
  const logged = onRequest
    ? async (req: Request) => {
      const started = performance.now();
      const res = await route(req);
      onRequest({
        method: req.method,
        path: new URL(req.url).pathname,
        status: res.status,
        ms: Math.round(performance.now() - started),
        requestId: res.headers.get("x-request-id"),
        userAgent: req.headers.get("user-agent"),
      });
      return res;
    }
    : route;
  const server = await serveHttp({ port: options.port, hostname: options.hostname ?? "127.0.0.1" }, logged);
  return {
    url: `http://127.0.0.1:${server.port}`,
    port: server.port,
    processes: backends.processes,
    close: async () => {
      await server.close();
      await backends.close();
    },
  };
}

interface Backends {
  handlers: Record<string, Handler>;
  processes: FunctionProcess[];
  close(): Promise<void>;
}

function inlineBackends(env: Record<string, string | undefined>): Backends {
  const ctx = createContext(env);
  const handlers = Object.fromEntries(
    Object.entries(functionHandlers).map(([name, factory]) => [name, factory(ctx)]),
  );
  return {
    handlers,
    processes: [],
    close: () => {
      ctx.smtpPool?.close();
      return ctx.sql.end({ timeout: 2 });
    },
  };
}

async function processBackends(env: Record<string, string | undefined>): Promise<Backends> {
  const started = await Promise.allSettled(functionNames().map((name) => startFunctionProcess(name, env)));
  const processes = started.flatMap((s) => s.status === "fulfilled" ? [s.value] : []);
  const failed = started.find((s): s is PromiseRejectedResult => s.status === "rejected");
  if (failed) {
    await Promise.all(processes.map((p) => p.close()));
    throw failed.reason;
  }
  const handlers = Object.fromEntries(processes.map((p) => [p.name, proxyTo(p)]));
  return { handlers, processes, close: async () => void await Promise.all(processes.map((p) => p.close())) };
}

/** The largest declared body the gateway hands on whole (the functions' own limits are below it). */
const MAX_BUFFERED_BODY_BYTES = 20 * 1024 * 1024;

/** Forward a request to a function process, streaming both ways. */
function proxyTo(process: FunctionProcess): Handler {
  return async (req) => {
    const url = new URL(req.url);
    const hasBody = req.method !== "GET" && req.method !== "HEAD";
    // A declared body (what supabase-js and fetch send) is handed on whole, so the function sees
    // its Content-Length as on the platform (fetch would send a stream chunked); others stream.
    const declared = Number(req.headers.get("content-length") ?? "NaN");
    const whole = hasBody && Number.isSafeInteger(declared) && declared <= MAX_BUFFERED_BODY_BYTES;
    const init: RequestInit & { duplex?: "half" } = {
      method: req.method,
      headers: req.headers,
      body: !hasBody ? null : whole ? await req.arrayBuffer().catch(() => null) : req.body,
      duplex: "half",
      redirect: "manual",
    };
    try {
      // A process that died is being started again: the request waits for it, as the platform's does.
      await process.ready();
      return await fetch(`${process.url}${url.pathname}${url.search}`, init);
    } catch {
      return json(
        { error: { code: "function_unavailable", message: `Function ${process.name} is not answering` } },
        502,
      );
    }
  };
}
