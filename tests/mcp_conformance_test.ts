// The official MCP conformance suite (`@modelcontextprotocol/conformance`, server mode) against
// the MCP endpoint of a real test stack. The suite's CLI runs under Deno's Node compatibility
// (it asks for Node 22; this machine has 20), in its own process, exactly as CI would run it.
//
// Its server mode takes only a URL: it has no option for an Authorization header. A small proxy
// stands in for a client configured with a token: it adds `Authorization: Bearer <token>` and
// forwards everything else (the suite's Origin included) unchanged. Its origin is the one the
// stack allows (MAILROOM_ALLOWED_ORIGINS), as an operator would list a browser client's; the suite's
// rebinding request comes from http://evil.example.com and must be refused before the token counts.
import assert from "node:assert/strict";
import { ROOT } from "../local/postgres.ts";
import { startTestStack } from "./harness.ts";

/** Scenarios that test what the endpoint does: every check must pass. */
const APPLICABLE = ["server-initialize", "ping", "tools-list", "dns-rebinding-protection"];

/**
 * Scenarios that need what the endpoint does not have, and why. They fail with a protocol answer
 * (the method or the fixture tool does not exist), which is asserted so that a failure for another
 * reason (an HTTP error, a crash) is not taken for "not applicable".
 */
const NOT_APPLICABLE: Record<string, { why: string; error?: RegExp }> = {
  "logging-set-level": { why: "no logging capability", error: /Method not found/ },
  "completion-complete": { why: "no completions capability", error: /Method not found/ },
  "tools-call-with-logging": { why: "no logging capability", error: /Method not found/ },
  ...Object.fromEntries(
    [
      "tools-call-simple-text",
      "tools-call-image",
      "tools-call-audio",
      "tools-call-embedded-resource",
      "tools-call-mixed-content",
      "tools-call-error",
      "tools-call-with-progress",
      "tools-call-sampling",
      "tools-call-elicitation",
      "elicitation-sep1034-defaults",
      "elicitation-sep1330-enums",
    ].map((
      name,
    ) => [name, { why: "calls a fixture tool (test_*) of the suite's reference server", error: /Tool \S+ not found/ }]),
  ),
  ...Object.fromEntries(
    [
      "resources-list",
      "resources-read-text",
      "resources-read-binary",
      "resources-templates-read",
      "resources-subscribe",
      "resources-unsubscribe",
    ].map((name) => [name, { why: "no resources", error: /Method not found/ }]),
  ),
  ...Object.fromEntries(
    [
      "prompts-list",
      "prompts-get-simple",
      "prompts-get-with-args",
      "prompts-get-embedded-resource",
      "prompts-get-with-image",
    ].map((name) => [name, { why: "no prompts", error: /Method not found/ }]),
  ),
  // Stateless (no session id): the suite only warns, and checks nothing.
  "server-sse-multiple-streams": { why: "needs sessions; the endpoint is stateless" },
};

interface Check {
  id: string;
  status: "SUCCESS" | "FAILURE" | "WARNING" | "INFO" | "SKIPPED";
  errorMessage?: string;
  details?: Record<string, unknown>;
}

/** A proxy that adds the bearer token to every request and forwards the rest unchanged. */
function startTokenProxy(): { url: string; target(url: string, token: string): void; close(): Promise<void> } {
  let upstream = "";
  let bearer = "";
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    const url = new URL(req.url);
    const headers = new Headers(req.headers);
    // The proxy's own Host is not the upstream's; Origin passes through as the suite sent it.
    headers.delete("host");
    headers.set("authorization", `Bearer ${bearer}`);
    return fetch(`${upstream}${url.pathname}${url.search}`, {
      method: req.method,
      headers,
      body: req.body,
      redirect: "manual",
    });
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}`,
    target(url, token) {
      upstream = url;
      bearer = token;
    },
    close: () => server.shutdown(),
  };
}

/** Run the suite's whole active server suite once; the checks of each scenario by name. */
async function runSuite(url: string, expectedFailures: string[]) {
  const dir = await Deno.makeTempDir({ prefix: "mcp-conformance-" });
  try {
    const baseline = `${dir}/baseline.yml`;
    await Deno.writeTextFile(baseline, `server:\n${expectedFailures.map((name) => `  - ${name}\n`).join("")}`);
    const output = await new Deno.Command(Deno.execPath(), {
      // The import map pins the suite's version (deno.json), so this is the locked package.
      args: [
        "run",
        "-A",
        "@modelcontextprotocol/conformance",
        "server",
        "--url",
        url,
        "--expected-failures",
        baseline,
        "-o",
        `${dir}/results`,
      ],
      cwd: ROOT,
      env: { DENO_NO_PACKAGE_JSON: "1", NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(180_000),
    }).output();
    const log = new TextDecoder().decode(output.stdout) + new TextDecoder().decode(output.stderr);
    const scenarios = new Map<string, Check[]>();
    for await (const entry of Deno.readDir(`${dir}/results`)) {
      // server-<scenario>-<ISO timestamp with dashes>
      const name = /^server-(.+)-\d{4}-\d\d-\d\dT[\d-]+Z$/.exec(entry.name)?.[1];
      if (!name) continue;
      scenarios.set(name, JSON.parse(await Deno.readTextFile(`${dir}/results/${entry.name}/checks.json`)));
    }
    return { code: output.code, log, scenarios };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test({
  name: "the official MCP conformance suite (server mode) against /functions/v1/mcp",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const proxy = startTokenProxy();
    const stack = await startTestStack({ MAILROOM_ALLOWED_ORIGINS: proxy.url });
    try {
      const user = await stack.createUser();
      proxy.target(stack.url, user.token);
      // The suite counts a warning as a failure in its baseline, so every inapplicable scenario is listed.
      const { code, log, scenarios } = await runSuite(`${proxy.url}/functions/v1/mcp`, Object.keys(NOT_APPLICABLE));

      await t.step("the suite exits 0 with only the inapplicable scenarios as expected failures", () => {
        assert.equal(code, 0, log.slice(-4000));
      });

      await t.step("every scenario of the suite is either applicable or listed with its reason", () => {
        const unknown = [...scenarios.keys()].filter((name) => !APPLICABLE.includes(name) && !(name in NOT_APPLICABLE));
        assert.deepEqual(unknown, [], "a new scenario in the suite: decide whether it applies");
        for (const name of [...APPLICABLE, ...Object.keys(NOT_APPLICABLE)]) assert.ok(scenarios.has(name), name);
      });

      for (const name of APPLICABLE) {
        await t.step(`${name}: every check passes`, () => {
          const checks = scenarios.get(name) ?? [];
          assert.ok(checks.length > 0, `${name} ran no checks`);
          for (const check of checks) assert.equal(check.status, "SUCCESS", `${check.id}: ${check.errorMessage}`);
        });
      }

      await t.step("dns-rebinding-protection: refused by the Origin check (403), not by the token check", () => {
        const checks = scenarios.get("dns-rebinding-protection")!;
        const rejected = checks.find((c) => c.id === "localhost-host-rebinding-rejected")!;
        const details = rejected.details as { statusCode: number; body: { error: { code: string } } };
        assert.equal(details.statusCode, 403);
        assert.equal(details.body.error.code, "origin_not_allowed");
        const accepted = checks.find((c) => c.id === "localhost-host-valid-accepted")!;
        assert.equal((accepted.details as { statusCode: number }).statusCode, 200);
      });

      await t.step("the inapplicable scenarios fail only for want of the feature", () => {
        for (const [name, { error }] of Object.entries(NOT_APPLICABLE)) {
          const failures = (scenarios.get(name) ?? []).filter((c) => c.status === "FAILURE");
          if (!error) {
            assert.deepEqual(failures, [], name);
            continue;
          }
          assert.ok(failures.length > 0, `${name} now passes: move it to APPLICABLE`);
          for (const failure of failures) assert.match(failure.errorMessage ?? "", error, name);
        }
      });
    } finally {
      await stack.close();
      await proxy.close();
    }
  },
});
