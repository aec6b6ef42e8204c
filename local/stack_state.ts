// Whether the local stack runs, and what it wrote about itself. Liveness is a lock, never a pid:
// `npm run dev` holds an exclusive lock on `.local/stack.lock` for its whole life and the OS
// drops it when the process ends, however it ends (`kill -9` too). A pid in a file can be reused
// by any other program, so `.local/stack.json` only carries information (pid, ports, URLs,
// database URL, function pids) and is believed only while the lock is held.
import { stopLeftoverDovecot } from "./dovecot.ts";
import { ROOT, stopCluster } from "./postgres.ts";
import { LOCAL_DIR, type PortName } from "./ports.ts";
import { commandLineOf, isAlive } from "./processes.ts";

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

/** The lock a running stack holds: `stack.lock` beside its state file. Never removed (a new file would be a new lock). */
export function lockFileOf(statePath: string): string {
  return `${statePath.slice(0, statePath.lastIndexOf("/"))}/stack.lock`;
}

/**
 * How long a lock attempt keeps trying before it concludes that a stack holds the lock. A stack
 * holds it for its whole life; `status`, `stop` and a starting stack hold it for moments only,
 * so a short retry keeps their probes from being mistaken for a running stack.
 */
const LOCK_ATTEMPTS = 5;
const LOCK_RETRY_MS = 25;

/** The state file's content, or null when there is none (or it cannot be read). */
export function readStackState(path = STATE_FILE): StackState | null {
  try {
    return JSON.parse(Deno.readTextFileSync(path)) as StackState;
  } catch {
    return null;
  }
}

/**
 * True while a stack holds the lock: a shared lock cannot be had.
 *
 * @example
 * ```ts
 * if (!(await stackIsRunning())) console.log("not running");
 * ```
 */
export async function stackIsRunning(path = STATE_FILE): Promise<boolean> {
  let file: Deno.FsFile;
  try {
    file = Deno.openSync(lockFileOf(path), { read: true });
  } catch {
    return false; // No lock file: no stack has run here since locks came in.
  }
  try {
    return !(await tryLock(file, false));
  } finally {
    file.close();
  }
}

/** The live stack's state, or null when no stack runs (or it has not written its state yet). */
export async function runningStack(path = STATE_FILE): Promise<StackState | null> {
  return await stackIsRunning(path) ? readStackState(path) : null;
}

/** Outcome of `claimStackState`; a claim's `lock` is held until `releaseStackState` (or the process ends). */
export type Claim =
  | { claimed: true; leftovers: number[]; lock: Deno.FsFile }
  | { claimed: false; running: StackState | null };

/**
 * Make `state` the stack's state unless a live stack holds the lock. Of two starts at once the OS
 * gives the lock to one; the other is told who runs and touches nothing. A dead run's state is
 * replaced, and its function processes (only those positively identified as ours) stopped: their
 * pids come back in `leftovers`.
 */
export async function claimStackState(state: StackState, path = STATE_FILE): Promise<Claim> {
  Deno.mkdirSync(path.slice(0, path.lastIndexOf("/")), { recursive: true });
  const lock = await takeLock(path);
  if (!lock) return { claimed: false, running: readStackState(path) };
  const previous = readStackState(path);
  // Ours first, so that a held lock is paired with a dead run's pid for as short a time as can be.
  updateStackState(state, path);
  const leftovers = previous ? stopLeftoverFunctions(previous) : [];
  return { claimed: true, leftovers, lock };
}

/** Rewrite the state (ours: after claimStackState), atomically. */
export function updateStackState(state: StackState, path = STATE_FILE): void {
  const temporary = `${path}.${Deno.pid}.tmp`;
  Deno.writeTextFileSync(temporary, JSON.stringify(state, null, 2));
  Deno.renameSync(temporary, path);
}

/** Remove our state file, then let go of the lock (in that order: the next start's state is never removed). */
export function releaseStackState(lock: Deno.FsFile, path = STATE_FILE): void {
  if (readStackState(path)?.pid === Deno.pid) {
    try {
      Deno.removeSync(path);
    } catch {
      // Gone already.
    }
  }
  lock.close();
}

/**
 * SIGTERM the function processes a dead run left: only pids whose command line shows one of this
 * checkout's functions (`<repo>/supabase/functions/<name>/index.ts`). A command line that cannot be
 * read is not ours.
 */
export function stopLeftoverFunctions(state: StackState): number[] {
  const stopped: number[] = [];
  for (const pid of state.functionPids) {
    if (!isOurFunction(commandLineOf(pid))) continue;
    try {
      Deno.kill(pid, "SIGTERM");
      stopped.push(pid);
    } catch {
      // Gone meanwhile, or not ours to stop.
    }
  }
  return stopped;
}

function isOurFunction(command: string | undefined): boolean {
  return command !== undefined &&
    new RegExp(`${escapeRegExp(ROOT)}/supabase/functions/[^/ ]+/index\\.ts`).test(command);
}

/** What `stopStack` did. */
export type StopOutcome =
  | { kind: "not_running" }
  | { kind: "stopped"; pid: number }
  | { kind: "cleaned"; functionPids: number[]; cluster: boolean }
  | { kind: "timeout"; pid: number }
  /** The lock is held but the state names no live `local/dev.ts`: nothing is signalled. */
  | { kind: "unidentified"; lockFile: string };

/**
 * Stop the stack. While a stack holds the lock, SIGTERM the pid its state names (it stops its own
 * processes and Postgres, as on Ctrl-C) and wait until the lock is free. With the lock free, no
 * stack runs: take the lock ourselves (so no start can begin meanwhile), stop what a killed run
 * left (its function processes, its Postgres) and remove its state.
 */
export async function stopStack(path = STATE_FILE, timeoutMs = 30_000): Promise<StopOutcome> {
  Deno.mkdirSync(path.slice(0, path.lastIndexOf("/")), { recursive: true });
  const lock = await takeLock(path);
  if (!lock) return await stopRunning(path, timeoutMs);
  try {
    const state = readStackState(path);
    if (!state) return { kind: "not_running" };
    const functionPids = stopLeftoverFunctions(state);
    const cluster = state.clusterDir ? await stopCluster(state.clusterDir) : false;
    await stopLeftoverDovecot(`${path.slice(0, path.lastIndexOf("/"))}/dovecot`);
    try {
      Deno.removeSync(path);
    } catch {
      // Gone already.
    }
    return { kind: "cleaned", functionPids, cluster };
  } finally {
    lock.close();
  }
}

async function stopRunning(path: string, timeoutMs: number): Promise<StopOutcome> {
  const pid = await holderPid(path);
  if (pid === undefined) return { kind: "unidentified", lockFile: lockFileOf(path) };
  try {
    Deno.kill(pid, "SIGTERM");
  } catch {
    // It ended meanwhile: the wait below sees the lock free.
  }
  const deadline = Date.now() + timeoutMs;
  while (await stackIsRunning(path)) {
    if (Date.now() > deadline) return { kind: "timeout", pid };
    await delay(100);
  }
  return { kind: "stopped", pid };
}

/**
 * The pid of the stack that holds the lock, from its state. A start writes its state just after it
 * takes the lock, so for a moment the file may still be a dead run's: wait (briefly) for a state
 * whose pid is alive and, where its command line can be read, runs `local/dev.ts`.
 */
async function holderPid(path: string): Promise<number | undefined> {
  const deadline = Date.now() + 2_000;
  for (;;) {
    const state = readStackState(path);
    if (state && isAlive(state.pid)) {
      const command = commandLineOf(state.pid);
      if (command === undefined || command.includes("local/dev.ts")) return state.pid;
    }
    if (Date.now() > deadline || !(await stackIsRunning(path))) return undefined;
    await delay(50);
  }
}

/** Open (creating) the lock file and take its exclusive lock, or null when a stack holds it. */
async function takeLock(path: string): Promise<Deno.FsFile | null> {
  const file = Deno.openSync(lockFileOf(path), { read: true, write: true, create: true, mode: 0o600 });
  if (await tryLock(file, true)) return file;
  file.close();
  return null;
}

async function tryLock(file: Deno.FsFile, exclusive: boolean): Promise<boolean> {
  for (let attempt = 1;; attempt++) {
    if (file.tryLockSync(exclusive)) return true;
    if (attempt === LOCK_ATTEMPTS) return false;
    await delay(LOCK_RETRY_MS);
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
