// `npm run dev` as a developer runs it: local/dev.ts in a process of its own, every port moved
// to a free one by environment variable and its state in a temporary folder, then a second
// start, `status`, `token`, `stop`, and a start on a port something else holds.
import assert from "node:assert/strict";
import { decodeJwt } from "jose";
import { freePort, ROOT, stopCluster } from "../local/postgres.ts";
import { PORT_SETTINGS, type PortName } from "../local/ports.ts";
import { isPortFree } from "../local/port_owners.ts";
import { isAlive } from "../local/processes.ts";
import type { StackState } from "../local/stack_state.ts";

/** A running `deno run` of a local/ script, with its output kept line by line. */
interface Script {
  child: Deno.ChildProcess;
  lines: string[];
  /** Resolves once the process has exited and its output is read. */
  ended: Promise<void>;
  /** Resolves with the first line matching `pattern` (rejects after `timeoutMs` or when the process ends). */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<string>;
}

function spawnScript(script: string, env: Record<string, string>, args: string[] = []): Script {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", `local/${script}`, ...args],
    cwd: ROOT,
    // Only what the test sets: a DATABASE_URL or MAILROOM_* of the caller's shell must not leak in.
    clearEnv: true,
    env: { ...env, DENO_NO_PACKAGE_JSON: "1", NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const lines: string[] = [];
  let ended = false;
  const pump = async (stream: ReadableStream<Uint8Array>) => {
    let buffer = "";
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      buffer += chunk;
      const parts = buffer.split("\n");
      buffer = parts.pop()!;
      lines.push(...parts);
    }
    if (buffer) lines.push(buffer);
  };
  const pumped = Promise.all([pump(child.stdout), pump(child.stderr)]);
  const endedPromise = child.status.then(() => pumped).then(() => void (ended = true));
  return {
    child,
    lines,
    ended: endedPromise,
    waitFor: async (pattern, timeoutMs = 90_000) => {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const line = lines.find((l) => pattern.test(l));
        if (line !== undefined) return line;
        if (ended || Date.now() > deadline) {
          throw new Error(`no line matching ${pattern} (${ended ? "exited" : "timed out"}):\n${lines.join("\n")}`);
        }
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    },
  };
}

/** Wait until `condition` holds (10 s at most). */
async function poll(condition: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Run a local/ script to its end. */
async function runScript(script: string, env: Record<string, string>, args: string[] = []) {
  const run = spawnScript(script, env, args);
  await run.ended;
  const status = await run.child.status;
  return { code: status.code, output: run.lines.join("\n") };
}

Deno.test({
  name: "the dev stack's lifecycle: one running stack, status, token, stop, a taken port, and after kill -9",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const localDir = await Deno.makeTempDir({ prefix: "mailroom-dev-" });
    // Postgres runs as its own user under root: it must reach <localDir>/postgres.
    await Deno.chmod(localDir, 0o755);
    const ports = Object.fromEntries(Object.keys(PORT_SETTINGS).map((name) => [name, freePort()])) as Record<
      PortName,
      number
    >;
    const env: Record<string, string> = {
      PATH: Deno.env.get("PATH") ?? "",
      HOME: Deno.env.get("HOME") ?? "",
      MAILROOM_LOCAL_DIR: localDir,
      ...Object.fromEntries(Object.entries(PORT_SETTINGS).map(([name, s]) => [s.env, String(ports[name as PortName])])),
    };
    const deno = Deno.env.get("DENO_DIR");
    if (deno) env.DENO_DIR = deno;
    const api = `http://127.0.0.1:${ports.api}`;
    const stack = spawnScript("dev.ts", env);
    let state: StackState | undefined;
    try {
      await stack.waitFor(/mailroom local stack is running/);
      state = JSON.parse(await Deno.readTextFile(`${localDir}/stack.json`)) as StackState;

      await t.step("the banner prints an export TOKEN line, how to mint an agent's, and the stack's own ports", () => {
        const output = stack.lines.join("\n");
        assert.match(output, /^ {2}export TOKEN=eyJ[\w-]+\.[\w-]+\.[\w-]+$/m);
        assert.match(output, /^ {2}export AGENT_TOKEN=\$\(npm run --silent token -- --quiet --agent\)$/m);
        assert.match(output, new RegExp(`Functions  ${api}/functions/v1/<name>`));
        assert.match(output, new RegExp(`Inbox      http://127.0.0.1:${ports.inbox}`));
        assert.match(output, new RegExp(`Dashboard  http://127.0.0.1:${ports.dashboard}`));
        assert.doesNotMatch(output, /Initialize|Download|deprecated/i);
      });

      await t.step("the dashboard is served, pointed at these functions, and signs in the demo user", async () => {
        const dashboard = `http://127.0.0.1:${ports.dashboard}`;
        const page = await fetch(dashboard);
        assert.match(await page.text(), /<script type="module" src=".\/app.js"><\/script>/);
        const config = await (await fetch(`${dashboard}/config.json`)).json();
        assert.equal(config.supabase_url, api);
        // Only its own page may ask (a POST from its origin, as JSON): not another site, not a rebound name.
        const elsewhere = await fetch(config.local_sign_in_url, {
          method: "POST",
          headers: { origin: "https://evil.example" },
        });
        assert.equal(elsewhere.status, 403);
        await elsewhere.body?.cancel();
        const session = await (await fetch(config.local_sign_in_url, {
          method: "POST",
          headers: { origin: dashboard, "content-type": "application/json" },
          body: "{}",
        })).json();
        const configs = await fetch(`${api}/functions/v1/smtp-configs`, {
          headers: { authorization: `Bearer ${session.access_token}` },
        });
        assert.deepEqual((await configs.json()).configs.map((c: { name: string }) => c.name), ["local-inbox"]);
      });

      await t.step("a second start exits 1 saying the stack is running, and leaves it answering", async () => {
        const second = await runScript("dev.ts", env);
        assert.equal(second.code, 1, second.output);
        assert.match(second.output, new RegExp(`already running \\(pid ${state!.pid}, ${api}`));
        assert.match(second.output, /npm run stop/);
        const res = await fetch(`${api}/functions/v1/openapi`);
        assert.equal(res.status, 200);
        await res.body?.cancel();
        assert.ok(state!.functionPids.length > 0 && state!.functionPids.every(isAlive), "function processes kept");
        assert.equal(JSON.parse(await Deno.readTextFile(`${localDir}/stack.json`)).pid, state!.pid);
      });

      await t.step("each request prints one line: method, path, status, ms and request id", async () => {
        const res = await fetch(`${api}/functions/v1/send-email`, { method: "POST", body: "{}" });
        const requestId = res.headers.get("x-request-id");
        await res.body?.cancel();
        assert.equal(res.status, 401);
        assert.ok(requestId);
        await stack.waitFor(new RegExp(`^POST /functions/v1/send-email 401 \\d+ms req ${requestId}$`), 10_000);
        await stack.waitFor(/^GET \/functions\/v1\/openapi 200 \d+ms( req \S+)?$/, 10_000);
        // The scheduler's call every 2 s stays out of it.
        assert.ok(!stack.lines.some((l) => l.includes("/functions/v1/process-outbox")), stack.lines.join("\n"));
      });

      await t.step("status reports the running stack and exits 0", async () => {
        const status = await runScript("status.ts", env);
        assert.equal(status.code, 0, status.output);
        assert.match(status.output, new RegExp(`is running \\(pid ${state!.pid},`));
        assert.match(status.output, new RegExp(`${api}/functions/v1/<name> +\\((\\d+) of \\1 processes up\\)`));
      });

      await t.step("token mints for the running stack's database and issuer", async () => {
        const minted = await runScript("token.ts", env, ["agent@example.com"]);
        assert.equal(minted.code, 0, minted.output);
        const token = minted.output.trim().split("\n").pop()!;
        const res = await fetch(`${api}/functions/v1/smtp-configs`, { headers: { authorization: `Bearer ${token}` } });
        assert.equal(res.status, 200, await res.text());
      });

      await t.step(
        "token --agent mints an OAuth client's token: the functions take it, oversight sees an agent",
        async () => {
          const mint = async (args: string[]) => {
            const minted = await runScript("token.ts", env, args);
            assert.equal(minted.code, 0, minted.output);
            return minted.output.trim();
          };
          const agent = await mint(["--quiet", "--agent", "agent@example.com"]);
          const own = await mint(["--quiet", "agent@example.com"]);
          const claims = decodeJwt(agent);
          assert.equal(claims.client_id, "local-agent");
          assert.equal(claims.sub, decodeJwt(own).sub, "the same user");
          assert.equal(
            decodeJwt(await mint(["--quiet", "--agent", "my-mcp-client", "agent@example.com"])).client_id,
            "my-mcp-client",
          );
          const call = (token: string, path: string, method = "POST") =>
            fetch(`${api}/functions/v1/${path}`, {
              method,
              headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
              body: method === "POST" ? JSON.stringify({ reason: "dev stack test" }) : undefined,
            });
          const listed = await call(agent, "smtp-configs", "GET");
          assert.equal(listed.status, 200, await listed.text());
          // An agent may press stop, never lift it; the user's own session may.
          const stopped = await call(agent, "oversight/stop");
          assert.equal(stopped.status, 200, await stopped.text());
          const refused = await call(agent, "oversight/resume");
          assert.equal(refused.status, 403);
          const { error } = await refused.json() as { error: { code: string; details: { client_id: string } } };
          assert.equal(error.code, "first_party_session_required");
          assert.equal(error.details.client_id, "local-agent");
          const resumed = await call(own, "oversight/resume");
          assert.equal(resumed.status, 200, await resumed.text());
          // The audit names the client that stopped and the session that lifted it.
          const events = await call(own, "oversight/events", "GET");
          const actors = (await events.json() as { events: { action: string; actor: { client_id?: string } }[] }).events
            .map((e) => [e.action, e.actor.client_id ?? null]);
          assert.deepEqual(actors, [["sending_resumed", null], ["sending_stopped", "local-agent"]]);
        },
      );

      await t.step("MCP calls run without a runtime deprecation warning", async () => {
        const token = /export TOKEN=(\S+)/.exec(stack.lines.join("\n"))![1];
        const call = async (id: number, method: string, params: Record<string, unknown>) => {
          const res = await fetch(`${api}/functions/v1/mcp`, {
            method: "POST",
            headers: {
              authorization: `Bearer ${token}`,
              "content-type": "application/json",
              accept: "application/json, text/event-stream",
              "mcp-protocol-version": "2025-06-18",
            },
            body: JSON.stringify({ jsonrpc: "2.0", id, method, params }),
          });
          const text = await res.text();
          assert.equal(res.status, 200, text);
          return text;
        };
        const clientInfo = { name: "dev-stack-test", version: "1" };
        await call(1, "initialize", { protocolVersion: "2025-06-18", capabilities: {}, clientInfo });
        assert.match(await call(2, "tools/call", { name: "list_smtp_configs", arguments: {} }), /local-inbox/);
        await stack.waitFor(/^POST \/functions\/v1\/mcp 200 /, 10_000);
        assert.ok(!stack.lines.some((l) => /deprecat|warning/i.test(l)), stack.lines.join("\n"));
      });

      await t.step(
        "an OAuth mailbox works end to end against the providers' stand-in; its mail is in the inbox",
        async () => {
          const token = /export TOKEN=(\S+)/.exec(stack.lines.join("\n"))![1];
          const post = (path: string, payload: unknown) =>
            fetch(`${api}/functions/v1/${path}`, {
              method: "POST",
              headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
              body: JSON.stringify(payload),
            });
          const created = await post("smtp-configs", {
            name: "m365",
            preset: "microsoft365",
            from_email: "demo@mailroom.local",
            oauth: { client_id: "mailroom-local", refresh_token: "local-demo" },
          });
          assert.equal(created.status, 201, await created.text());
          const sent = await post("send-email", {
            config: "m365",
            to: "graph@example.com",
            subject: "Via Graph",
            text: "x",
          });
          assert.equal(sent.status, 200, await sent.text());
          const inbox = await fetch(`http://127.0.0.1:${ports.inbox}/api/messages?q=graph@example.com`);
          const listed = JSON.stringify(await inbox.json());
          assert.match(listed, /Via Graph/);
        },
      );

      await t.step(
        "the demo mailbox: a Sent copy, and bounce-511@ read back as a hard bounce by the worker",
        async () => {
          const token = /export TOKEN=(\S+)/.exec(stack.lines.join("\n"))![1];
          const headers = { authorization: `Bearer ${token}`, "content-type": "application/json" };
          assert.match(stack.lines.join("\n"), new RegExp(`IMAP       127.0.0.1:${ports.imap} \\(TLS\\)`));
          const res = await fetch(`${api}/functions/v1/send-email`, {
            method: "POST",
            headers,
            body: JSON.stringify({ to: "bounce-511@example.com", subject: "Bounce me", text: "x" }),
          });
          assert.equal(res.status, 200, await res.clone().text());
          // The scheduler's worker finds the bounce within MAILROOM_MAILBOX_CHECK_SECONDS (10 s here).
          const until = Date.now() + 30_000;
          let suppressed: Response | undefined;
          while (Date.now() < until) {
            suppressed = await fetch(`${api}/functions/v1/suppressions/bounce-511%40example.com`, { headers });
            if (suppressed.status === 200) break;
            await suppressed.body?.cancel();
            await new Promise((resolve) => setTimeout(resolve, 500));
          }
          assert.equal(suppressed?.status, 200, "the bounce was read back and suppressed");
          assert.equal((await suppressed!.json()).reason, "hard_bounce");
          const settings = await (await fetch(`${api}/functions/v1/smtp-configs/local-inbox/imap`, { headers })).json();
          assert.equal(settings.last_error, null);
        },
      );

      await t.step("stop stops it: one message, processes gone, ports free, state removed", async () => {
        const stopped = await runScript("stop.ts", env);
        assert.equal(stopped.code, 0, stopped.output);
        assert.match(stopped.output, new RegExp(`Stopped mailroom local stack \\(pid ${state!.pid}\\)`));
        assert.equal((await stack.child.status).code, 0);
        assert.equal(stack.lines.filter((l) => l.includes("Stopping mailroom local stack")).length, 1);
        for (const pid of state!.functionPids) assert.ok(!isAlive(pid), `function process ${pid} still runs`);
        for (const [name, port] of Object.entries(ports)) assert.ok(isPortFree(port), `${name} port ${port} in use`);
        await assert.rejects(Deno.stat(`${localDir}/stack.json`), Deno.errors.NotFound);
      });

      await t.step("status and stop with nothing running say so", async () => {
        const status = await runScript("status.ts", env);
        assert.equal(status.code, 1);
        assert.match(status.output, /is not running/);
        const stopped = await runScript("stop.ts", env);
        assert.equal(stopped.code, 0);
        assert.match(stopped.output, /is not running/);
      });

      await t.step("a port held by another listener: exit 1 naming the port, its owner and its variable", async () => {
        const holder = Deno.listen({ hostname: "127.0.0.1", port: ports.inbox });
        try {
          const refused = await runScript("dev.ts", env);
          assert.equal(refused.code, 1, refused.output);
          assert.match(
            refused.output,
            new RegExp(`Port ${ports.inbox} \\(web inbox\\) is in use by pid ${Deno.pid} \\(.*deno.*\\)`),
          );
          assert.match(refused.output, /MAILROOM_INBOX_PORT=<port> npm run dev/);
          await assert.rejects(Deno.stat(`${localDir}/stack.json`), Deno.errors.NotFound);
        } finally {
          holder.close();
        }
      });

      await t.step("after kill -9, stop stops what the run left: its function processes and its Postgres", async () => {
        const killed = spawnScript("dev.ts", env, ["--quiet"]);
        await killed.waitFor(/mailroom local stack is running/);
        const left = JSON.parse(await Deno.readTextFile(`${localDir}/stack.json`)) as StackState;
        killed.child.kill("SIGKILL");
        await killed.ended;
        assert.ok(left.functionPids.length > 0 && left.functionPids.every(isAlive), "orphaned function processes");
        assert.ok(!isPortFree(ports.db), "its Postgres still runs");
        const status = await runScript("status.ts", env);
        assert.equal(status.code, 1);
        assert.match(status.output, /a previous run was killed/);
        const stopped = await runScript("stop.ts", env);
        assert.equal(stopped.code, 0, stopped.output);
        assert.match(stopped.output, new RegExp(`stopped what it left: ${left.functionPids.length} function process`));
        assert.match(stopped.output, /and its Postgres/);
        await poll(() => left.functionPids.every((pid) => !isAlive(pid)), "function processes to end");
        for (const [name, port] of Object.entries(ports)) assert.ok(isPortFree(port), `${name} port ${port} in use`);
        await assert.rejects(Deno.stat(`${localDir}/stack.json`), Deno.errors.NotFound);
      });
    } finally {
      if (isAlive(stack.child.pid)) stack.child.kill("SIGTERM");
      await stack.child.status;
      for (const pid of state?.functionPids ?? []) if (isAlive(pid)) Deno.kill(pid, "SIGKILL");
      await stopCluster(`${localDir}/postgres`);
      await Deno.remove(localDir, { recursive: true }).catch(() => {});
    }
  },
});
