// `npm run stop`: stop the local stack `npm run dev` started, from another terminal (as
// `supabase stop` does), or clean up after one that was killed outright.
import { stopStack } from "./stack_state.ts";

async function main(): Promise<void> {
  const outcome = await stopStack();
  switch (outcome.kind) {
    case "not_running":
      console.log("mailroom local stack is not running.");
      return;
    case "stopped":
      console.log(`Stopped mailroom local stack (pid ${outcome.pid}).`);
      return;
    case "cleaned":
      console.log(
        "mailroom local stack was not running (a previous run was killed); stopped what it left: " +
          `${outcome.functionPids.length} function process(es)${outcome.cluster ? " and its Postgres" : ""}.`,
      );
      return;
    case "unidentified":
      console.error(
        `mailroom local stack holds ${outcome.lockFile}, but its state names no running local/dev.ts; ` +
          "nothing was signalled. Stop it from its own terminal (Ctrl-C).",
      );
      return Deno.exit(1);
    case "timeout":
      console.error(
        `mailroom local stack (pid ${outcome.pid}) did not stop within 30 s; kill it with: kill ${outcome.pid}`,
      );
      Deno.exit(1);
  }
}

if (import.meta.main) await main();
