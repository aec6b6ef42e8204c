// The stack's state file: who may claim it, and which leftovers of a dead run get stopped.
import assert from "node:assert/strict";
import { claimStackState, readStackState, releaseStackState, type StackState } from "../local/stack_state.ts";
import { isAlive } from "../local/processes.ts";

function stateOf(pid: number, functionPids: number[] = []): StackState {
  const port = 1;
  return {
    pid,
    startedAt: new Date().toISOString(),
    phase: "running",
    ports: { api: port, db: port, inbox: port, docs: port, smtp: port, smtps: port },
    apiUrl: "http://127.0.0.1:1",
    functionPids,
  };
}

/** A process that lives until killed, its command line holding `marker`. */
function sleeper(marker: string): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: ["eval", "await new Promise((resolve) => setTimeout(resolve, 60_000))", marker],
    stdout: "null",
    stderr: "null",
  }).spawn();
}

async function exitedPid(): Promise<number> {
  const child = new Deno.Command("true").spawn();
  await child.status;
  return child.pid;
}

Deno.test("claimStackState", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "mailroom-state-" });
  const path = `${dir}/stack.json`;
  try {
    await t.step("claims a missing file whole, and release removes only our own", () => {
      assert.deepEqual(claimStackState(stateOf(Deno.pid), path), { claimed: true, leftovers: [] });
      assert.equal(readStackState(path)?.pid, Deno.pid);
      releaseStackState(path);
      assert.equal(readStackState(path), null);
    });

    await t.step("a live stack's state is left as it is, and the claim says who runs", async () => {
      const live = sleeper("local/dev.ts");
      try {
        Deno.writeTextFileSync(path, JSON.stringify(stateOf(live.pid)));
        const claim = claimStackState(stateOf(Deno.pid), path);
        assert.equal(claim.claimed, false);
        assert.equal(!claim.claimed && claim.running.pid, live.pid);
        releaseStackState(path);
        assert.equal(readStackState(path)?.pid, live.pid, "a second start never removes the first's state");
      } finally {
        live.kill("SIGKILL");
        await live.status;
      }
      Deno.removeSync(path);
    });

    await t.step(
      "a dead run's state is replaced; a recorded pid that is not our function is not signalled",
      async () => {
        const stranger = sleeper("not-a-function");
        try {
          Deno.writeTextFileSync(path, JSON.stringify(stateOf(await exitedPid(), [stranger.pid])));
          assert.deepEqual(claimStackState(stateOf(Deno.pid), path), { claimed: true, leftovers: [] });
          assert.equal(readStackState(path)?.pid, Deno.pid);
          assert.ok(isAlive(stranger.pid));
        } finally {
          stranger.kill("SIGKILL");
          await stranger.status;
        }
        releaseStackState(path);
      },
    );

    await t.step("a pid reused by another program is not a live stack", async () => {
      const other = sleeper("something-else");
      try {
        Deno.writeTextFileSync(path, JSON.stringify(stateOf(other.pid)));
        assert.equal(claimStackState(stateOf(Deno.pid), path).claimed, true);
      } finally {
        other.kill("SIGKILL");
        await other.status;
      }
      releaseStackState(path);
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
