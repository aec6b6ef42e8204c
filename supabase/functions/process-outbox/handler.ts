// POST /process-outbox: server-to-server only (a secret API key). Drains the outbox for a
// bounded time and answers with what it did.
import type { AppContext } from "../_shared/context.ts";
import { ApiError, type Handler, json, serveJson } from "../_shared/http.ts";
import { drainOutbox } from "../_shared/outbox/worker.ts";
import { requireSecretKey } from "../_shared/secret_key.ts";

/** Build the process-outbox handler over a shared context. */
export function createProcessOutboxHandler(ctx: AppContext): Handler {
  return serveJson(async (req) => {
    if (req.method !== "POST") {
      throw new ApiError(405, "method_not_allowed", "Use POST", undefined, { allow: "POST, OPTIONS" });
    }
    requireSecretKey(req, ctx.config.workerKeys);
    await req.body?.cancel();
    const report = await drainOutbox(ctx, {
      workerId: crypto.randomUUID(),
      budgetMs: ctx.config.outboxBudgetMs,
      cpuBudgetMs: ctx.config.outboxCpuBudgetMs,
    });
    return json(report);
  });
}
