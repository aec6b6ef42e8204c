// kickOutbox starts a drain through EdgeRuntime.waitUntil where the runtime has it (hosted
// Supabase), and does nothing elsewhere. The EdgeRuntime global is a stand-in here.
import assert from "node:assert/strict";
import { kickOutbox } from "../supabase/functions/_shared/outbox/kick.ts";
import type { AppContext } from "../supabase/functions/_shared/context.ts";

Deno.test("kickOutbox", async (t) => {
  await t.step("does nothing without EdgeRuntime", () => {
    assert.equal(kickOutbox({} as AppContext), false);
  });

  await t.step("hands a drain to EdgeRuntime.waitUntil when it exists", async () => {
    const handed: Promise<unknown>[] = [];
    const runtime = { waitUntil: (promise: Promise<unknown>) => handed.push(promise) };
    Object.assign(globalThis, { EdgeRuntime: runtime });
    try {
      // A context whose database fails: the drain must end quietly, never as an unhandled rejection.
      const failing = (() => Promise.reject(Object.assign(new Error("down"), { code: "ECONNREFUSED" }))) as never;
      const ctx = { sql: failing, config: { outboxBudgetMs: 10 } } as unknown as AppContext;
      const original = console.error;
      const logged: string[] = [];
      console.error = (line: string) => logged.push(line);
      try {
        assert.equal(kickOutbox(ctx), true);
        assert.equal(handed.length, 1);
        await handed[0];
      } finally {
        console.error = original;
      }
      assert.match(logged.join("\n"), /background drain failed/);
    } finally {
      delete (globalThis as { EdgeRuntime?: unknown }).EdgeRuntime;
    }
  });
});
