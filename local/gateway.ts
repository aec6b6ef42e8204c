// The local functions gateway: the same URLs as `supabase functions serve`
// (/functions/v1/<name>), plus the JWKS that Supabase Auth would publish.
import { type AppContext, createContext } from "../supabase/functions/_shared/context.ts";
import { json } from "../supabase/functions/_shared/http.ts";
import { functionHandlers } from "./functions.ts";
import { serveHttp } from "./http_server.ts";

/** A running gateway. */
export interface Gateway {
  url: string;
  port: number;
  ctx: AppContext;
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
}

const FUNCTION_PATH = /^\/functions\/v1\/([a-z0-9_-]+)(\/.*)?$/;

/** Serve every function in `functionHandlers` over one shared context. */
export async function startGateway(options: GatewayOptions): Promise<Gateway> {
  const ctx = createContext(options.env);
  const handlers = Object.fromEntries(
    Object.entries(functionHandlers).map(([name, factory]) => [name, factory(ctx)]),
  );

  const server = await serveHttp(
    { port: options.port, hostname: options.hostname ?? "127.0.0.1" },
    (req) => {
      const url = new URL(req.url);
      if (url.pathname === "/auth/v1/.well-known/jwks.json") return json(options.jwks);
      const match = FUNCTION_PATH.exec(url.pathname);
      const handler = match && handlers[match[1]];
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
    },
  );
  const port = server.port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    ctx,
    close: async () => {
      await server.close();
      await ctx.sql.end({ timeout: 2 });
    },
  };
}
