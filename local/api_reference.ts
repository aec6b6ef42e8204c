// The local stack's API reference page: Swagger UI over the `openapi` function's document.
// swagger-ui-dist is the project's prebuilt static bundle (no build step, no dependencies at
// runtime), served as files here; hosted projects can host the same page anywhere static.
import "swagger-ui-dist/package.json" with { type: "json" };
import { serveHttp } from "./http_server.ts";

const ASSETS: Record<string, string> = {
  "/swagger-ui-bundle.js": "text/javascript; charset=utf-8",
  "/swagger-ui.css": "text/css; charset=utf-8",
};

/**
 * The page as a fetch handler: `GET /` (the page, reading `specUrl`), the two static assets.
 *
 * @example
 * ```ts
 * const handler = createApiReferenceHandler("http://127.0.0.1:54321/functions/v1/openapi");
 * ```
 */
export function createApiReferenceHandler(specUrl: string): (req: Request) => Promise<Response> {
  const page = `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>mailroom API reference</title>
<link rel="stylesheet" href="/swagger-ui.css"></head>
<body><div id="api"></div>
<script src="/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({ url: ${JSON.stringify(specUrl)}, dom_id: "#api", persistAuthorization: true });</script>
</body></html>`;
  return async (req) => {
    const path = new URL(req.url).pathname;
    if (req.method !== "GET") return new Response("Use GET", { status: 405, headers: { allow: "GET" } });
    if (path === "/") return new Response(page, { headers: { "content-type": "text/html; charset=utf-8" } });
    const type = ASSETS[path];
    if (!type) return new Response("Not found", { status: 404 });
    const file = new URL(import.meta.resolve(`swagger-ui-dist${path}`));
    return new Response(await Deno.readFile(file), {
      headers: { "content-type": type, "cache-control": "public, max-age=3600" },
    });
  };
}

/** Serve the page on `port` (the dev stack: 54326). */
export async function startApiReference(port: number, specUrl: string) {
  return await serveHttp({ port, hostname: "127.0.0.1" }, createApiReferenceHandler(specUrl));
}
