// The dashboard (dashboard/) for the local stack: built with `deno bundle` into .local/dashboard/
// (index.html, styles.css, app.js), served on its own port with a config.json pointing at the
// local functions, and a one-click sign-in as the demo user (POST /local/session mints the
// demo user's token; only this local server has it, never the static app a project deploys).
import { ROOT } from "./postgres.ts";
import { serveHttp } from "./http_server.ts";

const TYPES: Record<string, string> = {
  "/index.html": "text/html; charset=utf-8",
  "/styles.css": "text/css; charset=utf-8",
  "/app.js": "text/javascript; charset=utf-8",
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

/** The dashboard server as a fetch handler. */
export function createDashboardHandler(options: DashboardOptions): (req: Request) => Promise<Response> {
  return async (req) => {
    const url = new URL(req.url);
    if (url.pathname === "/local/session") {
      if (req.method !== "POST") return new Response("Use POST", { status: 405, headers: { allow: "POST" } });
      return Response.json({ access_token: await options.demoToken() }, { headers: { "cache-control": "no-store" } });
    }
    if (req.method !== "GET" && req.method !== "HEAD") {
      return new Response("Use GET", { status: 405, headers: { allow: "GET" } });
    }
    if (url.pathname === "/config.json") {
      return Response.json({
        supabase_url: options.apiUrl,
        anon_key: options.anonKey,
        local_sign_in_url: `${url.origin}/local/session`,
      }, { headers: { "cache-control": "no-store" } });
    }
    const path = url.pathname === "/" ? "/index.html" : url.pathname;
    const type = TYPES[path];
    if (!type) return new Response("Not found", { status: 404 });
    return new Response(await Deno.readFile(`${options.dir}${path}`), {
      headers: { "content-type": type, "cache-control": "no-cache", "x-content-type-options": "nosniff" },
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
