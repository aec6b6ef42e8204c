// The stack's lock and state file: who may claim the stack, who `stop` may signal, and which
// leftovers of a dead run get stopped. A pid in the state file is never taken as proof of life.
import assert from "node:assert/strict";
import {
  claimStackState,
  readStackState,
  releaseStackState,
  stackIsRunning,
  type StackState,
  stopStack,
} from "../local/stack_state.ts";
import { commandLineOf, isAlive } from "../local/processes.ts";
import { ROOT } from "../local/postgres.ts";

function stateOf(pid: number, functionPids: number[] = []): StackState {
  const port = 1;
  return {
    pid,
    startedAt: new Date().toISOString(),
    phase: "running",
    ports: {
      api: port,
      db: port,
      dashboard: port,
      inbox: port,
      docs: port,
      smtp: port,
      smtps: port,
      oauth: port,
      imap: port,
    },
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

/** An unrelated program whose command line cannot be read (as a kernel thread's, or one with an empty argv). */
async function stranger(): Promise<Deno.ChildProcess> {
  const child = new Deno.Command("bash", { args: ["-c", 'exec -a "" cat'], stdin: "piped", stdout: "null" }).spawn();
  const deadline = Date.now() + 5_000;
  // Until bash has become the argv-less `cat`.
  while (commandLineOf(child.pid) !== undefined) {
    if (Date.now() > deadline) throw new Error("the stranger kept a readable command line");
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return child;
}

async function exitedPid(): Promise<number> {
  const child = new Deno.Command("true").spawn();
  await child.status;
  return child.pid;
}

async function ended(child: Deno.ChildProcess): Promise<void> {
  try {
    child.kill("SIGKILL");
  } catch {
    // Gone already.
  }
  await child.status;
}

/** A `tests/fixtures/stack_claimer.ts` process, ready for its rounds; `extra` lands on its command line. */
async function claimer(extra: string[] = []) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", `${ROOT}/tests/fixtures/stack_claimer.ts`, ...extra],
    env: { DENO_NO_PACKAGE_JSON: "1" },
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  const nextLine = async (): Promise<string> => {
    while (!buffer.includes("\n")) {
      const { value, done } = await lines.read();
      if (done) throw new Error(`claimer ${child.pid} ended; stderr: ${await new Response(child.stderr).text()}`);
      buffer += value;
    }
    const line = buffer.slice(0, buffer.indexOf("\n"));
    buffer = buffer.slice(line.length + 1);
    return line;
  };
  assert.equal(await nextLine(), "ready");
  const writer = child.stdin.getWriter();
  return {
    child,
    nextLine,
    start: async (paths: string[], startAt: number, roundMs: number) => {
      await writer.write(new TextEncoder().encode(JSON.stringify({ paths, startAt, roundMs }) + "\n"));
      await writer.close();
    },
    close: async () => {
      await ended(child);
      await lines.cancel().catch(() => {});
      await child.stderr.cancel().catch(() => {});
    },
  };
}

Deno.test("claimStackState", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "mailroom-state-" });
  const path = `${dir}/stack.json`;
  try {
    await t.step("claims a missing file whole and holds the lock; release removes our state and lets go", async () => {
      const claim = await claimStackState(stateOf(Deno.pid), path);
      assert.ok(claim.claimed);
      assert.deepEqual(claim.leftovers, []);
      assert.equal(readStackState(path)?.pid, Deno.pid);
      assert.equal(await stackIsRunning(path), true);
      releaseStackState(claim.lock, path);
      assert.equal(readStackState(path), null);
      assert.equal(await stackIsRunning(path), false);
    });

    await t.step(
      "while a stack holds the lock a second claim is refused, says who runs, and touches nothing",
      async () => {
        const first = await claimStackState(stateOf(Deno.pid), path);
        assert.ok(first.claimed);
        try {
          const second = await claimStackState(stateOf(await exitedPid()), path);
          assert.equal(second.claimed, false);
          assert.equal(!second.claimed && second.running?.pid, Deno.pid);
          assert.equal(readStackState(path)?.pid, Deno.pid, "a second start never replaces the first's state");
        } finally {
          releaseStackState(first.lock, path);
        }
      },
    );

    await t.step("a dead run's state is replaced: its functions are stopped, a recorded stranger is not", async () => {
      const ours = sleeper(`${ROOT}/supabase/functions/send-email/index.ts`);
      const other = sleeper("not-a-function");
      const unreadable = await stranger();
      try {
        Deno.writeTextFileSync(path, JSON.stringify(stateOf(await exitedPid(), [ours.pid, other.pid, unreadable.pid])));
        const claim = await claimStackState(stateOf(Deno.pid), path);
        assert.ok(claim.claimed);
        assert.deepEqual(claim.leftovers, [ours.pid]);
        assert.equal((await ours.status).signal, "SIGTERM");
        assert.equal(readStackState(path)?.pid, Deno.pid);
        assert.ok(isAlive(other.pid) && isAlive(unreadable.pid));
        releaseStackState(claim.lock, path);
      } finally {
        await Promise.all([ended(ours), ended(other), ended(unreadable)]);
      }
    });

    await t.step("a state whose pid now belongs to another program is not a live stack", async () => {
      const other = await stranger();
      try {
        Deno.writeTextFileSync(path, JSON.stringify(stateOf(other.pid)));
        assert.equal(await stackIsRunning(path), false);
        const claim = await claimStackState(stateOf(Deno.pid), path);
        assert.ok(claim.claimed, "a killed run's state never blocks a start");
        releaseStackState(claim.lock, path);
        assert.ok(isAlive(other.pid));
      } finally {
        await ended(other);
      }
    });

    await t.step("two starts at once over a dead run's state: exactly one claims, every round", async () => {
      const rounds = 30;
      const paths: string[] = [];
      for (let round = 0; round < rounds; round++) {
        const roundPath = `${dir}/race-${round}/stack.json`;
        Deno.mkdirSync(`${dir}/race-${round}`);
        Deno.writeTextFileSync(roundPath, JSON.stringify(stateOf(await exitedPid())));
        paths.push(roundPath);
      }
      const claimers = await Promise.all([claimer(), claimer()]);
      try {
        // A claim holds for 80% of its round, longer than a refused start keeps trying.
        const startAt = Date.now() + 200;
        await Promise.all(claimers.map((c) => c.start(paths, startAt, 250)));
        for (let round = 0; round < rounds; round++) {
          const results = await Promise.all(
            claimers.map(async (c) => JSON.parse(await c.nextLine()) as { round: number; pid: number; result: string }),
          );
          const outcomes = results.map((r) => r.result).sort();
          assert.deepEqual(outcomes, ["claimed", "refused"], `round ${round}: ${JSON.stringify(results)}`);
          const winner = results.find((r) => r.result === "claimed")!.pid;
          assert.equal(readStackState(paths[round])?.pid, winner, `round ${round}: the winner's state stays`);
        }
        for (const c of claimers) assert.equal((await c.child.status).code, 0);
      } finally {
        await Promise.all(claimers.map((c) => c.close()));
      }
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("stopStack", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "mailroom-stop-" });
  const path = `${dir}/stack.json`;
  try {
    await t.step("never signals a stranger whose pid a killed run's state names", async () => {
      const other = await stranger();
      const functionStranger = await stranger();
      try {
        Deno.writeTextFileSync(path, JSON.stringify(stateOf(other.pid, [functionStranger.pid])));
        const outcome = await stopStack(path, 2_000);
        assert.deepEqual(outcome, { kind: "cleaned", functionPids: [], cluster: false });
        assert.ok(isAlive(other.pid) && isAlive(functionStranger.pid), "the strangers still run");
        assert.equal(readStackState(path), null, "the killed run's state is removed");
      } finally {
        await Promise.all([ended(other), ended(functionStranger)]);
      }
    });

    await t.step("while the lock is held, a state naming another program is not signalled", async () => {
      const other = sleeper("something-else");
      const claim = await claimStackState(stateOf(other.pid), path);
      assert.ok(claim.claimed);
      try {
        const outcome = await stopStack(path, 2_000);
        assert.equal(outcome.kind, "unidentified");
        assert.ok(isAlive(other.pid));
      } finally {
        releaseStackState(claim.lock, path);
        Deno.removeSync(path);
        await ended(other);
      }
    });

    await t.step("a live stack gets SIGTERM and stop waits until its lock is free", async () => {
      // The claimer's command line names local/dev.ts, as the stack's does.
      const stack = await claimer(["local/dev.ts"]);
      try {
        await stack.start([path], Date.now(), 600_000);
        assert.equal(JSON.parse(await stack.nextLine()).result, "claimed");
        const outcome = await stopStack(path, 10_000);
        assert.deepEqual(outcome, { kind: "stopped", pid: stack.child.pid });
        assert.equal((await stack.child.status).signal, "SIGTERM");
        assert.equal(await stackIsRunning(path), false);
      } finally {
        await stack.close();
      }
    });

    await t.step("with nothing there, says so", async () => {
      Deno.removeSync(path);
      assert.deepEqual(await stopStack(path, 1_000), { kind: "not_running" });
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
