// Other processes, seen from outside: alive or not, what they run, waiting for them to end.
// Linux answers from /proc; elsewhere a signal-0-like probe (SIGCONT) says whether a pid lives.

/** True while `pid` is a running process (zombies count as gone). */
export function isAlive(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    // The state follows the command name in parentheses; Z is a zombie, X dead.
    return !/\)\s+[ZX]\s/.test(stat);
  } catch {
    if (hasProc()) return false;
  }
  try {
    Deno.kill(pid, "SIGCONT");
    return true;
  } catch (error) {
    return error instanceof Deno.errors.PermissionDenied;
  }
}

/** The command line of `pid`, arguments joined by spaces (Linux), or undefined. */
export function commandLineOf(pid: number): string | undefined {
  try {
    const raw = Deno.readTextFileSync(`/proc/${pid}/cmdline`);
    return raw.split("\0").filter(Boolean).join(" ") || undefined;
  } catch {
    return undefined;
  }
}

/** Resolves true once `pid` has exited, false when it still runs after `timeoutMs`. */
export async function waitForExit(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (isAlive(pid)) {
    if (Date.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return true;
}

function hasProc(): boolean {
  try {
    return Deno.statSync("/proc/self").isDirectory;
  } catch {
    return false;
  }
}
