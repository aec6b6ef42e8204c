// Every link from README.md and docs/*.md to a file of this repository points at a file that
// exists, and every `#anchor` (in the same page or another one) matches a heading of the target,
// slugged as GitHub does.
import assert from "node:assert/strict";

const ROOT = new URL("../", import.meta.url);

/** GitHub's heading anchor: lowercase, punctuation other than `-` and `_` dropped, spaces to `-`. */
export function slug(heading: string): string {
  return heading
    .replace(/\[([^\]]*)\]\([^)]*\)/g, "$1") // a link's text
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, "")
    .replace(/ /g, "-");
}

/** The lines of a markdown file outside fenced code blocks, with their line numbers. */
function prose(text: string): [number, string][] {
  const lines: [number, string][] = [];
  let fence = false;
  text.split("\n").forEach((line, i) => {
    if (/^\s*```/.test(line)) fence = !fence;
    else if (!fence) lines.push([i + 1, line]);
  });
  return lines;
}

/** The anchors of a markdown file's headings, numbered like GitHub's when a heading repeats. */
function anchors(text: string): Set<string> {
  const seen = new Map<string, number>();
  const result = new Set<string>();
  for (const [, line] of prose(text)) {
    const m = /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line);
    if (!m) continue;
    const base = slug(m[1]);
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    result.add(n === 0 ? base : `${base}-${n}`);
  }
  return result;
}

/** Markdown links `[text](target)` outside code: inline code spans are left out. */
function links(text: string): { line: number; target: string }[] {
  const found: { line: number; target: string }[] = [];
  for (const [line, raw] of prose(text)) {
    const content = raw.replace(/`[^`]*`/g, "``");
    for (const m of content.matchAll(/\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)) found.push({ line, target: m[1] });
  }
  return found;
}

async function markdownFiles(): Promise<URL[]> {
  const files = [new URL("README.md", ROOT)];
  for await (const entry of Deno.readDir(new URL("docs/", ROOT))) {
    if (entry.isFile && entry.name.endsWith(".md")) files.push(new URL(`docs/${entry.name}`, ROOT));
  }
  return files.sort((a, b) => a.href.localeCompare(b.href));
}

function exists(url: URL): boolean {
  try {
    Deno.statSync(url);
    return true;
  } catch {
    return false;
  }
}

Deno.test("the slug is GitHub's", () => {
  assert.equal(slug("`POST /functions/v1/send-email`"), "post-functionsv1send-email");
  assert.equal(slug("OpenAPI 3.1: `GET /functions/v1/openapi`"), "openapi-31-get-functionsv1openapi");
  assert.equal(
    slug("Security: what an attacker with a valid token cannot do"),
    "security-what-an-attacker-with-a-valid-token-cannot-do",
  );
  assert.equal(slug("The local stack (`npm run dev`)"), "the-local-stack-npm-run-dev");
  assert.equal(slug("Dependencies and why"), "dependencies-and-why");
});

Deno.test("README.md and docs/*.md link only to files and headings that exist", async () => {
  const files = await markdownFiles();
  assert.ok(files.length >= 8, `found ${files.length} markdown files`);
  const broken: string[] = [];
  let checked = 0;
  for (const file of files) {
    const text = await Deno.readTextFile(file);
    const name = file.pathname.slice(ROOT.pathname.length);
    for (const { line, target } of links(text)) {
      if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue; // http:, https:, mailto:
      checked++;
      const [path, anchor] = target.split("#", 2) as [string, string | undefined];
      const url = path ? new URL(decodeURIComponent(path), file) : file;
      if (!url.pathname.startsWith(ROOT.pathname) || !exists(url)) {
        broken.push(`${name}:${line}: ${target}: no such file`);
        continue;
      }
      if (anchor === undefined) continue;
      if (!url.pathname.endsWith(".md")) {
        broken.push(`${name}:${line}: ${target}: an anchor into a file that is not markdown`);
        continue;
      }
      if (!anchors(await Deno.readTextFile(url)).has(anchor)) {
        broken.push(`${name}:${line}: ${target}: no heading with that anchor`);
      }
    }
  }
  assert.ok(checked > 40, `checked ${checked} local links`);
  assert.deepEqual(broken, []);
});
