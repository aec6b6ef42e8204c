// Each function in a process of its own, started from its `index.ts` with the import map
// `supabase/config.toml` names for it, as `supabase functions serve` runs one worker per
// function: a broken entry point or import map fails here as it would there. V8's heap is
// capped at the platform's 256 MB. A process that dies (out of memory, a crash) is started
// again, as the Edge Runtime starts a fresh worker for the next request, and the log says so.
import { ROOT } from "./postgres.ts";

/** A running function process. */
export interface FunctionProcess {
  name: string;
  /** Where its Deno.serve listens (loopback); changes when it was restarted. */
  readonly url: string;
  readonly pid: number;
  /** Resolves once the process listens (at once, unless it is being restarted). */
  ready(): Promise<void>;
  /** How often it died and was started again. */
  readonly restarts: number;
  /** Milliseconds from spawn until it listened. */
  coldStartMs: number;
  /** The current process's peak resident memory so far, in bytes (Linux), or null. */
  peakRssBytes(): number | null;
  close(): Promise<void>;
}

/** How long a function may take to start listening. */
const START_TIMEOUT_MS = 60_000;

/** The platform's memory limit per function. */
export const FUNCTION_MEMORY_MB = 256;

/** The function folders under supabase/functions (every one with an index.ts). */
export function functionNames(): string[] {
  return [...Deno.readDirSync(`${ROOT}/supabase/functions`)]
    .filter((e) => e.isDirectory && !e.name.startsWith("_"))
    .filter((e) => {
      try {
        return Deno.statSync(`${ROOT}/supabase/functions/${e.name}/index.ts`).isFile;
      } catch {
        return false;
      }
    })
    .map((e) => e.name)
    .sort();
}

/**
 * The import map config.toml sets for a function (`[functions.<name>] import_map`), as a path.
 *
 * @throws Error when config.toml names none: the platform would not find the npm imports either.
 */
export function importMapOf(name: string, configToml = Deno.readTextFileSync(`${ROOT}/supabase/config.toml`)): string {
  const section = new RegExp(
    `^\\[functions\\.${name.replace(/[-]/g, "\\-")}\\]\\s*$([\\s\\S]*?)(?=^\\[|$(?![\\s\\S]))`,
    "m",
  )
    .exec(configToml);
  const importMap = section && /^\s*import_map\s*=\s*"([^"]+)"/m.exec(section[1]);
  if (!importMap) throw new Error(`supabase/config.toml sets no import_map for function ${name}`);
  return `${ROOT}/supabase/${importMap[1]}`.replace(/\/[^/]+\/\.\.\//g, "/");
}

/** Start `supabase/functions/<name>/index.ts` in its own Deno process with `env`, restarted when it dies. */
export async function startFunctionProcess(
  name: string,
  env: Record<string, string | undefined>,
): Promise<FunctionProcess> {
  const started = performance.now();
  let current = await spawnFunction(name, env);
  const coldStartMs = Math.round(performance.now() - started);
  let closing = false;
  let restarts = 0;
  let restarting: Promise<void> = Promise.resolve();
  const supervise = (child: Deno.ChildProcess) => {
    child.status.then((status) => {
      if (closing) return;
      restarts++;
      console.error(
        `[${name}] exited (code ${status.code}${status.signal ? `, ${status.signal}` : ""}); ` +
          "starting it again, as the Edge Runtime starts a fresh worker for the next request",
      );
      restarting = (async () => {
        for (let attempt = 1;; attempt++) {
          try {
            current = await spawnFunction(name, env);
            supervise(current.child);
            console.error(`[${name}] started again (pid ${current.child.pid})`);
            return;
          } catch (error) {
            if (closing || attempt >= 5) {
              console.error(`[${name}] could not be started again: ${(error as Error).message}`);
              return;
            }
            await new Promise((resolve) => setTimeout(resolve, 500 * attempt));
          }
        }
      })();
    });
  };
  supervise(current.child);
  return {
    name,
    get url() {
      return `http://127.0.0.1:${current.port}`;
    },
    get pid() {
      return current.child.pid;
    },
    get restarts() {
      return restarts;
    },
    ready: () => restarting,
    coldStartMs,
    peakRssBytes: () => peakRss(current.child.pid),
    close: async () => {
      closing = true;
      await restarting;
      try {
        current.child.kill("SIGTERM");
      } catch {
        // already gone
      }
      await current.child.status;
    },
  };
}

/** One Deno process running the function; resolves once it listens. */
async function spawnFunction(
  name: string,
  env: Record<string, string | undefined>,
): Promise<{ child: Deno.ChildProcess; port: number }> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--no-prompt",
      `--config=${importMapOf(name)}`,
      "--allow-net",
      "--allow-env",
      "--allow-read",
      "--allow-sys",
      // The whole heap (young and old generations) is limited as the Edge Runtime limits a
      // user worker (`CreateParams::heap_limits(0, memory limit)`), not only the old space: a
      // young generation sized for a big machine holds tens of MB of garbage the platform's
      // would have collected.
      `--v8-flags=--max-heap-size=${FUNCTION_MEMORY_MB}`,
      `${ROOT}/supabase/functions/${name}/index.ts`,
    ],
    cwd: ROOT,
    clearEnv: true,
    env: {
      ...Object.fromEntries(Object.entries(env).filter((e): e is [string, string] => e[1] !== undefined)),
      PATH: Deno.env.get("PATH") ?? "",
      HOME: Deno.env.get("HOME") ?? "",
      DENO_DIR: Deno.env.get("DENO_DIR") ?? "",
      DENO_NO_PACKAGE_JSON: "1",
      NO_COLOR: "1",
      DENO_SERVE_ADDRESS: "tcp:127.0.0.1:0",
    },
    stdout: "piped",
    stderr: "piped",
  }).spawn();

  const port = await new Promise<number>((resolve, reject) => {
    let settled = false;
    const forward = async (stream: ReadableStream<Uint8Array>, sink: (line: string) => void) => {
      const decoder = new TextDecoder();
      let buffer = "";
      for await (const chunk of stream) {
        buffer += decoder.decode(chunk, { stream: true });
        let newline: number;
        while ((newline = buffer.indexOf("\n")) >= 0) {
          const line = buffer.slice(0, newline);
          buffer = buffer.slice(newline + 1);
          const listening = /Listening on https?:\/\/[^:]+:(\d+)/.exec(line);
          if (listening && !settled) {
            settled = true;
            clearTimeout(timer);
            resolve(Number(listening[1]));
          } else {
            sink(`[${name}] ${line}`);
          }
        }
      }
    };
    forward(child.stdout, (line) => console.log(line));
    forward(child.stderr, (line) => console.error(line));
    const timer = setTimeout(() => {
      if (settled) return;
      settled = true;
      child.kill("SIGKILL");
      reject(new Error(`function ${name} did not listen within ${START_TIMEOUT_MS} ms`));
    }, START_TIMEOUT_MS);
    child.status.then((status) => {
      clearTimeout(timer);
      if (!settled) {
        settled = true;
        reject(new Error(`function ${name} exited (code ${status.code}) before it listened; see its output above`));
      }
    });
  });

  return { child, port };
}

function peakRss(pid: number): number | null {
  try {
    const status = Deno.readTextFileSync(`/proc/${pid}/status`);
    const match = /^VmHWM:\s+(\d+) kB/m.exec(status);
    return match ? Number(match[1]) * 1024 : null;
  } catch {
    return null;
  }
}
