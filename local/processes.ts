// Other processes, seen from outside: alive or not, what they run, waiting for them to end.
// Linux answers from /proc; elsewhere (macOS) `ps` does. Nothing here signals a process to probe it.

/** True while `pid` is a running process (zombies count as gone). */
export function isAlive(pid: number): boolean {
  if (hasProc()) {
    try {
      const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
      // The state follows the command name in parentheses; Z is a zombie, X dead.
      return !/\)\s+[ZX]\s/.test(stat);
    } catch {
      return false;
    }
  }
  const state = ps(pid, "stat");
  return state !== undefined && !state.startsWith("Z");
}

/**
 * The command line of `pid`, arguments joined by spaces, or undefined when it cannot be read
 * (gone, a kernel thread, or not ours to see). Callers treat undefined as "not known to be ours".
 */
export function commandLineOf(pid: number): string | undefined {
  if (!hasProc()) return ps(pid, "command");
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

/** One `ps` column for `pid` (`stat`, `command`), or undefined when there is no such process or no `ps`. */
function ps(pid: number, column: "stat" | "command"): string | undefined {
  if (!Number.isSafeInteger(pid) || pid <= 0) return undefined;
  try {
    const { success, stdout } = new Deno.Command("ps", {
      args: ["-ww", "-o", `${column}=`, "-p", String(pid)],
      stdout: "piped",
      stderr: "null",
    }).outputSync();
    const text = new TextDecoder().decode(stdout).trim();
    return success && text ? text : undefined;
  } catch {
    return undefined;
  }
}

function hasProc(): boolean {
  try {
    return Deno.statSync("/proc/self").isDirectory;
  } catch {
    return false;
  }
}
