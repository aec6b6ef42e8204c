// The README's agent snippets are the example files the tests run, verbatim from their
// `export` on: an edited example without the README (or the reverse) fails here.
import assert from "node:assert/strict";

Deno.test("the README quotes the example files the tests run", async () => {
  const readme = await Deno.readTextFile(new URL("../README.md", import.meta.url));
  for (const file of ["sdk_send.ts", "langchain_agent.ts"]) {
    const source = await Deno.readTextFile(new URL(`../examples/${file}`, import.meta.url));
    const quoted = source.slice(source.indexOf("export "));
    assert.ok(readme.includes(quoted), `README quotes examples/${file}`);
  }
  const mcp = await Deno.readTextFile(new URL("../examples/mcp_send.ts", import.meta.url));
  for (const line of ["await client.connect(", 'name: "send_email",', "requestInit: { headers: { Authorization:"]) {
    assert.ok(mcp.includes(line) && readme.includes(line), `README and examples/mcp_send.ts share ${line}`);
  }
});
