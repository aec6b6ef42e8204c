// Every function booted as the platform boots it: its own process, from its index.ts, with
// the import map supabase/config.toml names. A broken entry point or import map fails here.
import assert from "node:assert/strict";
import { body, startTestStack, userWithCatcher } from "./harness.ts";
import { functionNames, importMapOf } from "../local/function_processes.ts";
import { ROOT } from "../local/postgres.ts";

Deno.test({
  name: "functions in their own processes",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const stack = await startTestStack({}, { isolation: "process" });
    const { user, smtp } = await userWithCatcher(stack);
    try {
      await t.step("every function folder with an index.ts runs in a process of its own", () => {
        const names = stack.processes.map((p) => p.name).sort();
        assert.deepEqual(names, functionNames());
        assert.ok(names.includes("send-email") && names.includes("smtp-configs"), names.join(", "));
        assert.equal(new Set(stack.processes.map((p) => p.pid)).size, names.length, "one process each");
        for (const p of stack.processes) assert.ok(p.coldStartMs > 0, p.name);
      });

      await t.step("smtp-configs answers through its own process", async () => {
        const res = await stack.invoke("smtp-configs", { token: user.token, method: "GET" });
        const listed = await body<{ configs: { name: string }[] }>(res);
        assert.equal(res.status, 200, JSON.stringify(listed));
        assert.deepEqual(listed.configs.map((c) => c.name), ["catcher"]);
      });

      await t.step("send-email delivers through its own process", async () => {
        const res = await stack.invoke("send-email", { token: user.token, body: { to: "a@example.com", text: "x" } });
        assert.equal(res.status, 200, JSON.stringify(await body(res)));
        assert.equal((await smtp.waitForMessages(1)).length, 1);
      });

      await t.step("errors and bodies stream through the gateway unchanged", async () => {
        const res = await stack.invoke("send-email", { token: user.token, body: { to: [], text: "x" } });
        assert.equal(res.status, 400);
        assert.equal((await body<{ error: { code: string } }>(res)).error.code, "invalid_request");
        assert.ok(res.headers.get("x-request-id"));
      });

      await t.step(
        "a function process that dies is started again for the next request, and the log says so",
        async () => {
          const configs = stack.processes.find((p) => p.name === "smtp-configs")!;
          const before = configs.pid;
          const logged: string[] = [];
          const original = console.error;
          console.error = (...args: unknown[]) => void logged.push(args.map(String).join(" "));
          try {
            Deno.kill(before, "SIGKILL");
            // The next request waits for the fresh process instead of failing.
            let res = await stack.invoke("smtp-configs", { token: user.token, method: "GET" });
            for (let i = 0; res.status === 502 && i < 50; i++) {
              // Sent before the death was noticed: the platform answers such a request with an error too.
              await res.body?.cancel();
              await new Promise((resolve) => setTimeout(resolve, 100));
              res = await stack.invoke("smtp-configs", { token: user.token, method: "GET" });
            }
            assert.equal(res.status, 200, await res.text());
          } finally {
            console.error = original;
          }
          assert.notEqual(configs.pid, before, "a new process");
          assert.equal(configs.restarts, 1);
          assert.ok(logged.some((line) => /\[smtp-configs\] exited .*starting it again/.test(line)), logged.join("\n"));
        },
      );
    } finally {
      await smtp.close();
      await stack.close();
    }
  },
});

Deno.test("import maps come from supabase/config.toml, per function", async (t) => {
  await t.step("each function names one, and it exists", () => {
    for (const name of functionNames()) assert.ok(Deno.statSync(importMapOf(name)).isFile, name);
  });
  await t.step("it holds only what the functions import, at the root's ranges and locked versions", () => {
    const root = JSON.parse(Deno.readTextFileSync(`${ROOT}/deno.json`)).imports as Record<string, string>;
    const rootLock = JSON.parse(Deno.readTextFileSync(`${ROOT}/deno.lock`)).specifiers as Record<string, string>;
    for (const path of new Set(functionNames().map((name) => importMapOf(name)))) {
      assert.notEqual(path, `${ROOT}/deno.json`, "not the root map: it lists the tests' and tools' packages too");
      const imports = JSON.parse(Deno.readTextFileSync(path)).imports as Record<string, string>;
      for (const [name, target] of Object.entries(imports)) assert.equal(target, root[name], name);
      for (const test of ["fast-check", "langchain", "@langchain/core", "smtp-server"]) {
        assert.ok(!(test in imports), `${test} is not a function's import`);
      }
      const lock = JSON.parse(Deno.readTextFileSync(path.replace(/deno\.json$/, "deno.lock"))).specifiers;
      for (const target of Object.values(imports)) assert.equal(lock[target], rootLock[target], target);
    }
  });
  await t.step("a function without one is refused", () => {
    assert.throws(() => importMapOf("send-email", '[functions.other]\nimport_map = "../deno.json"\n'), /no import_map/);
  });
});
