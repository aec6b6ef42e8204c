// Start draining right after a send is queued, where the platform lets work outlive the
// response (Supabase's Edge Runtime: EdgeRuntime.waitUntil), so a batch does not wait for
// the next scheduled tick. Elsewhere (the local stack, tests) the scheduler does it.
import type { AppContext } from "../context.ts";
import { drainOutbox } from "./worker.ts";

interface EdgeRuntimeGlobal {
  EdgeRuntime?: { waitUntil(promise: Promise<unknown>): void };
}

/** Drain in the background after the response, when the runtime supports it; true if started. */
export function kickOutbox(ctx: AppContext): boolean {
  const runtime = (globalThis as EdgeRuntimeGlobal).EdgeRuntime;
  if (!runtime?.waitUntil) return false;
  const drain = drainOutbox(ctx, { workerId: crypto.randomUUID(), budgetMs: ctx.config.outboxBudgetMs })
    .catch((error: unknown) => {
      const e = error as { name?: string; code?: string };
      console.error(JSON.stringify({ level: "error", msg: "background drain failed", error: e?.name, code: e?.code }));
    });
  runtime.waitUntil(drain);
  return true;
}
