// The agent snippets of docs/agents.md are the example files the tests run, verbatim from their
// `export` on: an edited example without the docs (or the reverse) fails here. The README's short
// SDK example is made of lines of examples/sdk_send.ts.
import assert from "node:assert/strict";

Deno.test("docs/agents.md quotes the example files the tests run", async () => {
  const agents = await Deno.readTextFile(new URL("../docs/agents.md", import.meta.url));
  for (const file of ["sdk_send.ts", "langchain_agent.ts"]) {
    const source = await Deno.readTextFile(new URL(`../examples/${file}`, import.meta.url));
    const quoted = source.slice(source.indexOf("export "));
    assert.ok(agents.includes(quoted), `docs/agents.md quotes examples/${file}`);
  }
  const mcp = await Deno.readTextFile(new URL("../examples/mcp_send.ts", import.meta.url));
  for (const line of ["await client.connect(", 'name: "send_email",', "requestInit: { headers: { Authorization:"]) {
    assert.ok(mcp.includes(line) && agents.includes(line), `docs/agents.md and examples/mcp_send.ts share ${line}`);
  }
});

Deno.test("the README's SDK calls are lines of examples/sdk_send.ts", async () => {
  const readme = await Deno.readTextFile(new URL("../README.md", import.meta.url));
  const sdk = await Deno.readTextFile(new URL("../examples/sdk_send.ts", import.meta.url));
  const calls = readme.split("\n").filter((line) =>
    line.startsWith("await mailroom.") || line.includes("= await mailroom.")
  );
  assert.ok(calls.length >= 2, `found ${calls.length} SDK calls in the README`);
  for (const line of calls) assert.ok(sdk.includes(line), `examples/sdk_send.ts has ${line}`);
});
