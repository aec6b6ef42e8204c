// docs/deploying.md's hosted deploy is a sequence a new user copies line by line. What can be run here
// without a Supabase account is run: every `npx supabase ...` command of the section against the
// bundled CLI's `--help` (the subcommand exists and takes every flag the docs give it, so a
// renamed flag fails here), the rules that bite with this CLI (database commands need
// `--remote`, deploys without Docker need `--use-api`), the settings file against the
// variables the code reads, and the check step's request bodies against the real functions.
import assert from "node:assert/strict";
import { startTestStack } from "./harness.ts";
import { startSmtpCatcher } from "../local/smtp_catcher.ts";

const ROOT = new URL("../", import.meta.url);
const deploying = Deno.readTextFileSync(new URL("docs/deploying.md", ROOT));
const api = Deno.readTextFileSync(new URL("docs/api.md", ROOT));
const CLI = new URL("node_modules/.bin/supabase", ROOT).pathname;

/** The text of docs/deploying.md's hosted deploy section. */
function deploySection(): string {
  const start = deploying.indexOf("## Deploying to a hosted project");
  assert.ok(start >= 0, "docs/deploying.md has a hosted deploy section");
  const end = deploying.indexOf("\n## ", start);
  return deploying.slice(start, end < 0 ? undefined : end);
}

/** Each line of the section's sh blocks, comments dropped and continuations joined. */
function shellLines(section: string): string[] {
  const lines: string[] = [];
  for (const block of section.matchAll(/```sh\n([\s\S]*?)```/g)) {
    const joined = block[1].replace(/\\\n\s*/g, " ");
    for (const raw of joined.split("\n")) {
      const line = raw.replace(/\s+#(?!\S*').*$/, "").trim();
      if (line && !line.startsWith("#")) lines.push(line);
    }
  }
  return lines;
}

/** Split a command line into words, keeping quoted strings whole (no expansion). */
function words(line: string): string[] {
  return [...line.matchAll(/"([^"]*)"|'([^']*)'|(\S+)/g)].map((m) => m[1] ?? m[2] ?? m[3]);
}

async function help(args: string[]): Promise<string> {
  const out = await new Deno.Command(CLI, { args: [...args, "--help"], stdout: "piped", stderr: "piped" }).output();
  return new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
}

const supabaseCommands = shellLines(deploySection())
  .filter((line) => line.startsWith("npx supabase "))
  .map((line) => words(line).slice(2));

Deno.test("the hosted deploy runs login, link, db push, secrets, functions deploy and the schedule, in order", () => {
  const order = supabaseCommands.map((w) => w.filter((x) => !x.startsWith("-")).slice(0, 2).join(" "));
  const expected = ["login", "link", "db push", "secrets set", "functions deploy", "db query"];
  let at = 0;
  for (const step of order) if (step.startsWith(expected[at])) at++;
  assert.equal(at, expected.length, `steps in order: ${order.join(" → ")}`);
});

Deno.test("every supabase command of the hosted deploy exists in the bundled CLI with every flag it is given", async () => {
  assert.ok(supabaseCommands.length >= 8, `found ${supabaseCommands.length} commands`);
  // One check per command, all at once (each asks the CLI for help up to three times).
  await Promise.all(supabaseCommands.map(async (args) => {
    const path = args.filter((w, i) => !w.startsWith("-") && args.slice(0, i).every((x) => !x.startsWith("-")))
      .filter((w) => /^[a-z][a-z-]*$/.test(w));
    // The longest leading words the CLI knows as a command (`db push`, `projects api-keys`).
    let usage = "";
    let command: string[] = [];
    for (let n = Math.min(path.length, 3); n >= 1; n--) {
      const text = await help(path.slice(0, n));
      if (new RegExp(`^\\s*supabase ${path.slice(0, n).join(" ")} \\[`, "m").test(text)) {
        usage = text;
        command = path.slice(0, n);
        break;
      }
    }
    assert.ok(command.length > 0, `the CLI knows \`supabase ${args.join(" ")}\``);
    for (const flag of args.filter((w) => w.startsWith("--")).map((w) => w.split("=")[0])) {
      assert.ok(
        new RegExp(`(^|\\s)${flag}(\\[|\\s|$)`, "m").test(usage),
        `\`supabase ${command.join(" ")}\` takes ${flag}`,
      );
    }
  }));
});

Deno.test("database commands name the hosted project; the deploy needs no Docker", () => {
  for (const args of supabaseCommands) {
    if (args[0] === "db") assert.ok(args.includes("--remote"), `supabase ${args.join(" ")} targets --remote`);
    if (args[0] === "functions" && args[1] === "deploy") assert.ok(args.includes("--use-api"));
  }
  assert.ok(supabaseCommands.some((a) => a[0] === "db" && a[1] === "push" && a.includes("--include-seed")));
});

Deno.test("supabase/hosted.env.example names every MAILROOM_ variable the functions read, and the docs document each", async () => {
  const example = Deno.readTextFileSync(new URL("supabase/hosted.env.example", ROOT));
  const read = new Set<string>();
  for await (const file of walk(new URL("supabase/functions/", ROOT))) {
    for (const m of Deno.readTextFileSync(file).matchAll(/\bMAILROOM_[A-Z_]+\b/g)) read.add(m[0]);
  }
  assert.ok(read.size > 20, `found ${read.size} variables`);
  for (const name of read) {
    assert.match(example, new RegExp(`^#? ?${name}=`, "m"), `hosted.env.example lists ${name}`);
    // The Configuration table of docs/deploying.md; the MAILROOM_MAX_* limits are in docs/api.md's Limits table.
    const documented = deploying.includes(`\`${name}\``) || (name.startsWith("MAILROOM_MAX_") && api.includes(name));
    assert.ok(documented, `docs/deploying.md documents ${name}`);
  }
  // What `secrets set --env-file` will set: NAME=value lines, none the platform refuses.
  const set = example.split("\n").filter((l) => l.trim() && !l.trim().startsWith("#"));
  assert.deepEqual(set.map((l) => l.split("=")[0]), ["MAILROOM_DB_URL"]);
  assert.ok(!/^SUPABASE_/m.test(example), "no SUPABASE_ secrets (the platform refuses that prefix)");
  const ignored = Deno.readTextFileSync(new URL(".gitignore", ROOT));
  assert.match(ignored, /^supabase\/hosted\.env$/m, "the filled-in file is never committed");
});

async function* walk(dir: URL): AsyncGenerator<URL> {
  for await (const entry of Deno.readDir(dir)) {
    const url = new URL(entry.name + (entry.isDirectory ? "/" : ""), dir);
    if (entry.isDirectory) yield* walk(url);
    else if (entry.name.endsWith(".ts")) yield url;
  }
}

Deno.test({
  name: "the check step's requests work as written against the real functions: config, verify, send, send-bulk",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const calls = shellLines(deploySection())
      .filter((line) => line.startsWith("curl ") && line.includes("/functions/v1/"))
      .map((line) => {
        const w = words(line);
        const url = w.find((x) => x.includes("/functions/v1/"))!;
        return {
          path: url.slice(url.indexOf("/functions/v1/") + "/functions/v1/".length),
          data: w.includes("-d") ? JSON.parse(w[w.indexOf("-d") + 1]) : undefined,
        };
      });
    assert.deepEqual(calls.map((c) => c.path), ["smtp-configs", "smtp-configs/main/verify", "send-email", "send-bulk"]);

    const stack = await startTestStack({});
    // A real TLS server that takes the docs' login; only its host and port differ from the docs' placeholder.
    const config = calls[0].data as Record<string, string>;
    const smtp = await startSmtpCatcher({
      mode: "tls",
      tls: { key: stack.certs.key, cert: stack.certs.cert },
      users: { [config.username]: config.password },
    });
    try {
      const user = await stack.createUser("you@example.com");
      const answers: string[] = [];
      for (const call of calls) {
        const body = call.path === "smtp-configs" ? { ...config, host: "localhost", port: smtp.port } : call.data;
        const res = await stack.invoke(call.path, { token: user.token, method: "POST", body });
        const json = await res.json();
        answers.push(`${call.path} ${res.status}${json.ok === undefined ? "" : ` ok=${json.ok}`}`);
      }
      assert.deepEqual(answers, [
        "smtp-configs 201",
        "smtp-configs/main/verify 200 ok=true",
        "send-email 200",
        "send-bulk 202",
      ]);
      await stack.drainOutbox();
      assert.deepEqual(smtp.messages().map((m) => /^Subject: (.*)$/m.exec(m.raw)?.[1]).sort(), [
        "mailroom on Supabase",
        "through the outbox",
      ]);
    } finally {
      await smtp.close();
      await stack.close();
    }
  },
});
