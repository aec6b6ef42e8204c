// The second review's memory loads at full size (issue 26 item 2), against functions started as
// the platform starts them: ~14 MB send-bulk bodies 1, 4 and 8 at once, twelve ~9.3 MB sends at
// once, and 25 such scheduled messages coming due together for the worker. Asserted: every
// function process stays under the platform's 256 MB of memory as its peak resident set (not
// only its heap), none died, every request got an answer the API documents (202/200, or 503
// `server_busy` past the instance's body budget), and every due message went out.
import assert from "node:assert/strict";
import { benchMemory } from "../bench/memory.ts";
import { FUNCTION_MEMORY_MB } from "../local/function_processes.ts";

Deno.test({
  name: "large bodies at once keep every function under 256 MB resident, and none dies",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const rows = await benchMemory(false);
    assert.equal(rows.length, 5, "send-bulk 1, 4 and 8 at once, send-email 12 at once, the worker");
    for (const row of rows) {
      assert.ok(row.peak_rss_mb !== null, `${row.load}: peak RSS is read`);
      assert.ok(row.peak_rss_mb < FUNCTION_MEMORY_MB, `${row.load}: peak RSS ${row.peak_rss_mb} MB`);
      assert.equal(row.restarts, 0, `${row.load}: the function's process never died`);
    }
    for (const row of rows.slice(0, 4)) {
      const answers = Object.keys(row.answers);
      assert.ok(answers.every((a) => ["200", "202", "503 server_busy"].includes(a)), `${row.load}: ${answers}`);
      assert.ok((row.answers["200"] ?? 0) + (row.answers["202"] ?? 0) >= 1, `${row.load}: one was admitted`);
    }
    const worker = rows[4];
    assert.deepEqual(worker.answers, { sent: 25 }, "every due message was sent");
    assert.ok(
      worker.worker_peak_memory_mib! < FUNCTION_MEMORY_MB,
      `worker heap + external ${worker.worker_peak_memory_mib}`,
    );
  },
});
