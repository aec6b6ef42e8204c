// `npm run status`: is the local stack running, and where (as `supabase status`). Exits 0
// when it runs, 1 when it does not.
import { readStackState, stackIsRunning, type StackState } from "./stack_state.ts";
import { isAlive } from "./processes.ts";

/** The status report of a live stack. */
export function describeRunning(state: StackState): string {
  const alive = state.functionPids.filter(isAlive).length;
  return [
    `mailroom local stack is ${state.phase} (pid ${state.pid}, since ${state.startedAt})`,
    "",
    `  Functions  ${state.apiUrl}/functions/v1/<name>   (${alive} of ${state.functionPids.length} processes up)`,
    `  Database   ${state.databaseUrl ?? "(starting)"}`,
    `  SMTP       127.0.0.1:${state.ports.smtp} (STARTTLS), 127.0.0.1:${state.ports.smtps} (TLS)`,
    `  Inbox      http://127.0.0.1:${state.ports.inbox}`,
    `  API docs   http://127.0.0.1:${state.ports.docs}`,
  ].join("\n");
}

async function main(): Promise<void> {
  // Running means the stack's lock is held; the state file alone may be a killed run's.
  const running = await stackIsRunning();
  const state = readStackState();
  if (running) {
    console.log(state ? describeRunning(state) : "mailroom local stack is starting.");
    return;
  }
  console.log(
    state
      ? "mailroom local stack is not running (a previous run was killed; `npm run stop` stops what it left)."
      : "mailroom local stack is not running. Start it with: npm run dev",
  );
  Deno.exit(1);
}

if (import.meta.main) await main();
