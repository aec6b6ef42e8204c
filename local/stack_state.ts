// The running stack's state file (`.local/stack.json`): its pid, ports, URLs and function
// pids. `npm run dev` claims it before it listens anywhere (so a second start sees the first
// and leaves it alone), `status`, `stop` and `token` read it, and a run that was killed
// outright (`kill -9`) is recognised by its pid being gone: only then are its leftovers stopped.
import { ROOT, stopCluster } from "./postgres.ts";
import { LOCAL_DIR, type PortName } from "./ports.ts";
import { commandLineOf, isAlive, waitForExit } from "./processes.ts";

/** What a running (or crashed) stack wrote about itself. */
export interface StackState {
  /** The `local/dev.ts` process. */
  pid: number;
  startedAt: string;
  /** `starting` until the banner is printed. */
  phase: "starting" | "running";
  ports: Record<PortName, number>;
  apiUrl: string;
  /** The database the functions use; set once it is up. */
  databaseUrl?: string;
  /** The private cluster's folder, when the stack started one (not with DATABASE_URL). */
  clusterDir?: string;
  /** The function processes (kept current: a restarted function has a new pid). */
  functionPids: number[];
}

/** Where the state is kept. */
export const STATE_FILE = `${LOCAL_DIR}/stack.json`;

/** The state file's content, or null when there is none (or it cannot be read). */
export function readStackState(path = STATE_FILE): StackState | null {
  try {
    return JSON.parse(Deno.readTextFileSync(path)) as StackState;
  } catch {
    return null;
  }
}

/** True when the state's pid is still a `local/dev.ts` of this checkout (pids get reused). */
export function isLive(state: StackState): boolean {
  if (!isAlive(state.pid)) return false;
  const command = commandLineOf(state.pid);
  return command === undefined || command.includes("local/dev.ts");
}

/** The live stack's state, or null when no stack runs. */
export function runningStack(path = STATE_FILE): StackState | null {
  const state = readStackState(path);
  return state && isLive(state) ? state : null;
}

/** Outcome of `claimStackState`. */
export type Claim = { claimed: true; leftovers: number[] } | { claimed: false; running: StackState };

/**
 * Make `state` the stack's state unless a live stack holds it. The file is created exclusively
 * and whole, so of two starts at once only one gets it and the other reads a complete state. A dead run's file is replaced after its function
 * processes are stopped (their pids come back in `leftovers`).
 */
export function claimStackState(state: StackState, path = STATE_FILE): Claim {
  Deno.mkdirSync(path.slice(0, path.lastIndexOf("/")), { recursive: true });
  if (createWhole(path, state)) return { claimed: true, leftovers: [] };
  const previous = readStackState(path);
  if (previous && isLive(previous)) return { claimed: false, running: previous };
  const leftovers = previous ? stopLeftoverFunctions(previous) : [];
  Deno.removeSync(path);
  if (createWhole(path, state)) return { claimed: true, leftovers };
  // Another start claimed it between our removal and our retry.
  const winner = readStackState(path);
  if (winner) return { claimed: false, running: winner };
  throw new Error(`cannot claim ${path}`);
}

/** Create `path` holding `state`, complete from its first moment (a hard link of a written file); false if it exists. */
function createWhole(path: string, state: StackState): boolean {
  const temporary = `${path}.${Deno.pid}.tmp`;
  Deno.writeTextFileSync(temporary, JSON.stringify(state, null, 2));
  try {
    Deno.linkSync(temporary, path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.AlreadyExists) return false;
    throw error;
  } finally {
    Deno.removeSync(temporary);
  }
}

/** Rewrite the state (ours: after claimStackState), atomically. */
export function updateStackState(state: StackState, path = STATE_FILE): void {
  const temporary = `${path}.${Deno.pid}.tmp`;
  Deno.writeTextFileSync(temporary, JSON.stringify(state, null, 2));
  Deno.renameSync(temporary, path);
}

/** Remove the state file if it is this process's (a second start never removes the first's). */
export function releaseStackState(path = STATE_FILE): void {
  if (readStackState(path)?.pid !== Deno.pid) return;
  try {
    Deno.removeSync(path);
  } catch {
    // Gone already.
  }
}

/** SIGTERM the function processes of a dead run: only pids still running one of our functions. */
export function stopLeftoverFunctions(state: StackState): number[] {
  const stopped: number[] = [];
  for (const pid of state.functionPids) {
    if (!commandLineOf(pid)?.includes(`${ROOT}/supabase/functions/`)) continue;
    try {
      Deno.kill(pid, "SIGTERM");
      stopped.push(pid);
    } catch {
      // Gone meanwhile, or not ours to stop.
    }
  }
  return stopped;
}

/** What `stopStack` did. */
export type StopOutcome =
  | { kind: "not_running" }
  | { kind: "stopped"; pid: number }
  | { kind: "cleaned"; functionPids: number[]; cluster: boolean }
  | { kind: "timeout"; pid: number };

/**
 * Stop the stack: a live one with SIGTERM (it stops its own processes and Postgres, as on
 * Ctrl-C) and wait until it is gone; for a dead run, stop what it left (function processes,
 * its Postgres) and remove its state.
 */
export async function stopStack(path = STATE_FILE, timeoutMs = 30_000): Promise<StopOutcome> {
  const state = readStackState(path);
  if (!state) return { kind: "not_running" };
  if (isLive(state)) {
    Deno.kill(state.pid, "SIGTERM");
    return await waitForExit(state.pid, timeoutMs) ? { kind: "stopped", pid: state.pid } : {
      kind: "timeout",
      pid: state.pid,
    };
  }
  const functionPids = stopLeftoverFunctions(state);
  const cluster = state.clusterDir ? await stopCluster(state.clusterDir) : false;
  try {
    Deno.removeSync(path);
  } catch {
    // Gone already.
  }
  return { kind: "cleaned", functionPids, cluster };
}
