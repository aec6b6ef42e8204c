// The dashboard (dashboard/) for the local stack: built with `deno bundle` into .local/dashboard/
// (index.html, styles.css, app.js), served on its own port with a config.json pointing at the
// local functions, and a one-click sign-in as the demo user (POST /local/session mints the
// demo user's token; only this local server has it, never the static app a project deploys).
import { ROOT } from "./postgres.ts";
import { serveHttp } from "./http_server.ts";
import { hostNameOf, LOOPBACK_NAMES } from "./inbox.ts";

const TYPES: Record<string, string> = {
  "/index.html": "text/html; charset=utf-8",
  "/styles.css": "text/css; charset=utf-8",
  "/app.js": "text/javascript; charset=utf-8",
  "/unsubscribe.html": "text/html; charset=utf-8",
  "/unsubscribe.js": "text/javascript; charset=utf-8",
};

/**
 * Bundle the app (dashboard/src/main.ts, with preact, htm, supabase-js and the SDK) for browsers
 * into `outDir`, with index.html and styles.css beside it: the files a static host serves.
 *
 * @throws Error with deno bundle's output when the build fails.
 */
export async function buildDashboard(outDir: string): Promise<void> {
  await Deno.mkdir(outDir, { recursive: true });
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "bundle",
      "--quiet",
      "--platform",
      "browser",
      "--minify",
      "--config",
      `${ROOT}/deno.json`,
      "-o",
      `${outDir}/app.js`,
      `${ROOT}/dashboard/src/main.ts`,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) {
    throw new Error(
      `deno bundle failed:\n${new TextDecoder().decode(out.stderr)}${new TextDecoder().decode(out.stdout)}`,
    );
  }
  await Deno.copyFile(`${ROOT}/dashboard/index.html`, `${outDir}/index.html`);
  await Deno.copyFile(`${ROOT}/dashboard/styles.css`, `${outDir}/styles.css`);
  // The confirmation page of one-click unsubscribe links (MAILROOM_UNSUBSCRIBE_PAGE_URL).
  await Deno.copyFile(`${ROOT}/dashboard/unsubscribe.html`, `${outDir}/unsubscribe.html`);
  await Deno.copyFile(`${ROOT}/dashboard/unsubscribe.js`, `${outDir}/unsubscribe.js`);
  // Headers a <meta> policy cannot set, for hosts that read a _headers file (Netlify, Cloudflare Pages).
  await Deno.writeTextFile(
    `${outDir}/_headers`,
    "/*\n  Content-Security-Policy: frame-ancestors 'none'\n  X-Frame-Options: DENY\n  X-Content-Type-Options: nosniff\n",
  );
}

export interface DashboardOptions {
  /** Where buildDashboard wrote the files. */
  dir: string;
  /** The project URL the app talks to (the local gateway). */
  apiUrl: string;
  anonKey: string;
  /** The demo user's token, minted for each one-click sign-in. */
  demoToken: () => Promise<string>;
}

/** Every answer: never inside another site's frame (an Approve button must not be clickjacked). */
const FRAMING = { "content-security-policy": "frame-ancestors 'none'", "x-frame-options": "DENY" };

function refused(status: number, message: string): Response {
  return new Response(message, { status, headers: { ...FRAMING, "content-type": "text/plain; charset=utf-8" } });
}

/**
 * The dashboard server as a fetch handler. It answers only at loopback names (a page on another
 * site whose name was rebound to 127.0.0.1 gets 421), and mints the demo token only for this
 * page's own scripts: a POST from its own origin, as JSON (a cross-site page cannot send that
 * without a preflight this server never approves).
 */
export function createDashboardHandler(options: DashboardOptions): (req: Request) => Promise<Response> {
  const allowed = new Set(LOOPBACK_NAMES);
  return async (req) => {
    const url = new URL(req.url);
    const host = hostNameOf(req, url);
    if (host === undefined || !allowed.has(host)) {
      return refused(421, "This dashboard answers only at 127.0.0.1, localhost or [::1]");
    }
    if (url.pathname === "/local/session") {
      if (req.method !== "POST") return refused(405, "Use POST");
      const origin = req.headers.get("origin");
      const json = (req.headers.get("content-type") ?? "").split(";")[0].trim() === "application/json";
      const host = req.headers.get("host");
      if (origin !== (host ? `${url.protocol}//${host}` : url.origin) || !json) {
        return refused(403, "The demo sign-in is for this dashboard's own page");
      }
      return Response.json({ access_token: await options.demoToken() }, {
        headers: { ...FRAMING, "cache-control": "no-store" },
      });
    }
    if (req.method !== "GET" && req.method !== "HEAD") return refused(405, "Use GET");
    if (url.pathname === "/config.json") {
      return Response.json({
        supabase_url: options.apiUrl,
        anon_key: options.anonKey,
        local_sign_in_url: `${url.origin}/local/session`,
      }, { headers: { ...FRAMING, "cache-control": "no-store" } });
    }
    const path = url.pathname === "/" ? "/index.html" : url.pathname;
    const type = TYPES[path];
    if (!type) return refused(404, "Not found");
    return new Response(await Deno.readFile(`${options.dir}${path}`), {
      headers: { ...FRAMING, "content-type": type, "cache-control": "no-cache", "x-content-type-options": "nosniff" },
    });
  };
}

/** Serve the dashboard on `port` (the dev stack: 54323, Supabase Studio's port). */
export async function startDashboard(port: number, options: DashboardOptions) {
  return await serveHttp({ port, hostname: "127.0.0.1" }, createDashboardHandler(options));
}

// `npm run build:dashboard [dir]`: the static files to put on any static host (default dashboard/dist/),
// with a config.json to fill in for the project.
if (import.meta.main) {
  const dir = Deno.args[0] ?? `${ROOT}/dashboard/dist`;
  await buildDashboard(dir);
  const config = `${dir}/config.json`;
  try {
    await Deno.stat(config);
  } catch {
    await Deno.writeTextFile(
      config,
      `${
        JSON.stringify({ supabase_url: "https://<project-ref>.supabase.co", anon_key: "<publishable key>" }, null, 2)
      }\n`,
    );
  }
  console.log(`Built the dashboard into ${dir}: edit ${config}, then upload the folder to any static host.`);
}
