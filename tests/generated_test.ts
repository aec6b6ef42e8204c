// What the SDK takes from the server's definitions (`deno task generate`) must match them:
// a changed tool, schema or call without regenerating fails here.
import assert from "node:assert/strict";
import { generatedFiles } from "../scripts/generate.ts";

Deno.test("the SDK's generated files match the server's definitions", async () => {
  for (const [path, content] of Object.entries(await generatedFiles())) {
    const current = await Deno.readTextFile(new URL(`../${path}`, import.meta.url));
    assert.ok(current === content, `${path} is out of date: run deno task generate`);
  }
});
