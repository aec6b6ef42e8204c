// /openapi: the OpenAPI 3.1 document of mailroom's functions (GET, no token needed), built
// from the zod schemas the functions validate with (see _shared/openapi.ts).
import type { AppContext } from "../_shared/context.ts";
import { ApiError, type Handler, json, serveJson } from "../_shared/http.ts";
import { openApiDocument } from "../_shared/openapi.ts";

/** Build the openapi handler over a shared context. */
export function createOpenApiHandler(ctx: AppContext): Handler {
  const document = openApiDocument(ctx.config.supabaseUrl);
  return serveJson((req) => {
    if (req.method !== "GET") {
      throw new ApiError(405, "method_not_allowed", "Use GET", undefined, { allow: "GET, OPTIONS" });
    }
    return Promise.resolve(json(document, 200, { "cache-control": "public, max-age=300" }));
  });
}
