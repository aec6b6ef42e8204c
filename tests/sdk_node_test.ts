// The SDK as Node users get it: `npm run build` (tsc) in clients/mailroom, then Node 20+
// imports the package's ESM entry points by name and makes a call that fails as typed.
import assert from "node:assert/strict";

const SDK = new URL("../clients/mailroom/", import.meta.url);

async function run(cmd: string, args: string[], cwd: URL | string): Promise<string> {
  const out = await new Deno.Command(cmd, { args, cwd, stdout: "piped", stderr: "piped" }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  assert.ok(out.success, `${cmd} ${args.join(" ")} failed:\n${text}`);
  return text;
}

Deno.test({
  name: "the SDK builds with tsc and imports in Node",
  sanitizeResources: false,
  fn: async () => {
    await run("npm", ["install", "--no-audit", "--no-fund", "--loglevel=error"], SDK);
    await run("npm", ["run", "--silent", "build"], SDK);
    const dir = await Deno.makeTempDir({ prefix: "mailroom-node-" });
    try {
      await Deno.mkdir(`${dir}/node_modules/@mailroom`, { recursive: true });
      await Deno.symlink(SDK.pathname.replace(/\/$/, ""), `${dir}/node_modules/@mailroom/client`);
      await Deno.writeTextFile(
        `${dir}/check.mjs`,
        `import { createMailroomClient, MailroomError, TOOLS } from "@mailroom/client";
import { createMailroomTools } from "@mailroom/client/langchain";
const client = createMailroomClient({ url: "http://127.0.0.1:9", accessToken: "x" });
const tools = createMailroomTools(client);
let code = null;
try { await client.configs.list(); } catch (e) { code = e instanceof MailroomError ? e.code : String(e); }
console.log(JSON.stringify({ tools: TOOLS.map((t) => t.name), langchain: tools.map((t) => t.name), code }));`,
      );
      const output = JSON.parse((await run("node", ["check.mjs"], dir)).trim());
      assert.equal(output.tools.length, 12);
      assert.deepEqual(output.langchain, output.tools);
      assert.equal(output.code, "network_error");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
