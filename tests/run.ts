// `deno task test`: every suite in one run. Deno tests (unit, integration, end to end)
// and the pgTAP files (run with pg_prove against a throwaway cluster carrying the
// platform bootstrap and our migrations, then `supabase db lint` and `supabase db advisors`
// over it), then one closing line `N passed, N failed`.
import postgres from "postgres";
import { bootstrapPlatform, freePort, pushMigrations, ROOT, startCluster } from "../local/postgres.ts";

interface Totals {
  passed: number;
  failed: number;
}

// The database suite runs beside the Deno tests (its own cluster, mostly waiting on pg_prove
// and the CLI) and says what it did once they are done, so the two never interleave.
const held = { lines: [] as string[], holding: false };
function log(line: string): void {
  if (held.holding) held.lines.push(line);
  else console.log(line);
}

/** Run a command; its output streams through (or, for the database suite while held, waits in `held`). */
async function run(
  cmd: string,
  args: string[],
  env: Record<string, string> = {},
  database = false,
): Promise<{ ok: boolean; out: string }> {
  const child = new Deno.Command(cmd, { args, cwd: ROOT, env, stdout: "piped", stderr: "piped" }).spawn();
  const decoder = new TextDecoder();
  let out = "";
  const pump = async (stream: ReadableStream<Uint8Array>, sink: typeof Deno.stdout) => {
    for await (const chunk of stream) {
      const text = decoder.decode(chunk, { stream: true });
      out += text;
      if (database && held.holding) held.lines.push(text.replace(/\n$/, ""));
      else await sink.write(chunk);
    }
  };
  const [status] = await Promise.all([child.status, pump(child.stdout, Deno.stdout), pump(child.stderr, Deno.stderr)]);
  return { ok: status.success, out };
}

// "ok | 12 passed (40 steps) | 0 failed (3s)" or "FAILED | 11 passed (38 steps) | 1 failed (2 steps) (3s)"
function denoTotals(out: string): Totals {
  // deno-lint-ignore no-control-regex
  const plain = out.replace(/\x1b\[[0-9;]*m/g, "");
  const match = /(?:ok|FAILED) \| (\d+) passed(?: \((\d+) steps?\))? \| (\d+) failed(?: \((\d+) steps?\))?/.exec(plain);
  if (!match) return { passed: 0, failed: 1 };
  const [, passed, passedSteps, failed, failedSteps] = match.map((m) => Number(m ?? 0));
  return { passed: passed + passedSteps, failed: failed + failedSteps };
}

function tapTotals(out: string): Totals {
  const passed = out.match(/^\s*ok \d+/gm)?.length ?? 0;
  let failed = out.match(/^\s*not ok \d+/gm)?.length ?? 0;
  // A file that died part-way ("You planned 34 tests but ran 15"): what never ran has failed.
  for (const [, planned, ran] of out.matchAll(/You planned (\d+) tests? but ran (\d+)/g)) {
    failed += Math.max(Number(planned) - Number(ran), 1);
  }
  return { passed, failed };
}

async function denoSuite(): Promise<Totals & { ok: boolean }> {
  console.log("== deno test");
  const deno = Deno.execPath();
  const result = await run(deno, ["test", "-A", "tests/"], { NO_COLOR: "1", DENO_NO_PACKAGE_JSON: "1" });
  return { ok: result.ok, ...denoTotals(result.out) };
}

// plpgsql_check over every function in public and private, via the real CLI; counted as one check.
async function dbLint(url: string, adminUrl: string): Promise<boolean> {
  log("== supabase db lint (plpgsql_check)");
  // plpgsql_check is not a trusted extension: the superuser installs it, as Supabase's image does.
  const sql = postgres(adminUrl, { max: 1, onnotice: () => {} });
  try {
    await sql`create extension if not exists plpgsql_check`;
  } finally {
    await sql.end();
  }
  const cli = `${ROOT}/node_modules/.bin/supabase`;
  const args = [
    "db",
    "lint",
    `--remote=${url}`,
    "--schema",
    "public,private",
    "--level",
    "warning",
    "--fail-on",
    "warning",
  ];
  const result = await run(cli, args, { PGSSLMODE: "disable" }, true);
  log(result.ok ? "ok - supabase db lint" : "not ok - supabase db lint");
  return result.ok;
}

interface AdvisorFinding {
  name: string;
  level: string;
  detail: string;
}

// Supabase's database advisors (the CLI's splinter lints, as the dashboard's Advisors show them)
// over the migrated schema, via the real CLI; counted as one check. Fails on any finding at WARN
// or above, and on an unindexed foreign key: an INFO lint, but a scan of the whole referencing
// table on every delete of the referenced row. The other INFO lints are expected here and only
// counted: unused_index (a fresh cluster has used no index yet) and rls_enabled_no_policy on the
// `private` tables (no policy is the point: only functions reach them, never the Data API).
async function dbAdvisors(url: string): Promise<boolean> {
  log("== supabase db advisors (splinter)");
  const cli = `${ROOT}/node_modules/.bin/supabase`;
  const args = ["db", "advisors", `--remote=${url}`, "--level", "info", "--fail-on", "warn", "--output-format", "json"];
  const out = await new Deno.Command(cli, {
    args,
    cwd: ROOT,
    env: { PGSSLMODE: "disable" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = new TextDecoder().decode(out.stdout);
  let findings: AdvisorFinding[];
  try {
    findings = (JSON.parse(stdout) as { results: AdvisorFinding[] }).results ?? [];
  } catch {
    log(stdout + new TextDecoder().decode(out.stderr));
    log("not ok - supabase db advisors (no JSON report)");
    return false;
  }
  const failing = findings.filter((f) => f.level !== "INFO" || f.name === "unindexed_foreign_keys");
  for (const f of failing) log(`  ${f.level} ${f.name}: ${f.detail}`);
  const expected = new Map<string, number>();
  for (const f of findings) if (!failing.includes(f)) expected.set(f.name, (expected.get(f.name) ?? 0) + 1);
  if (expected.size > 0) {
    log(`  INFO, expected here: ${[...expected].map(([name, n]) => `${name} x${n}`).join(", ")}`);
  }
  const ok = out.success && failing.length === 0;
  log(ok ? "ok - supabase db advisors" : "not ok - supabase db advisors");
  return ok;
}

async function pgTapSuite(): Promise<Totals & { ok: boolean }> {
  log("== pgTAP (pg_prove)");
  const files = [...Deno.readDirSync(`${ROOT}/supabase/tests/database`)]
    .filter((e) => e.name.endsWith(".sql"))
    .map((e) => `supabase/tests/database/${e.name}`)
    .sort();
  if (files.length === 0) return { ok: true, passed: 0, failed: 0 };
  const dir = await Deno.makeTempDir({ prefix: "mailroom-pgtap-" });
  const cluster = await startCluster({ dir, port: freePort(), fast: true });
  try {
    await bootstrapPlatform(cluster.adminUrl);
    await pushMigrations(cluster.url);
    const result = await run(
      "pg_prove",
      [
        "--verbose",
        "-h",
        "127.0.0.1",
        "-p",
        String(cluster.port),
        "-U",
        "postgres",
        "-d",
        "postgres",
        ...files,
      ],
      {},
      true,
    );
    // The advisors first: the lint installs plpgsql_check in public, which they would report.
    const advisors = await dbAdvisors(cluster.url);
    const lint = await dbLint(cluster.url, cluster.adminUrl);
    const totals = tapTotals(result.out);
    const checks = [lint, advisors];
    return {
      ok: result.ok && lint && advisors,
      passed: totals.passed + checks.filter(Boolean).length,
      failed: totals.failed + checks.filter((c) => !c).length,
    };
  } finally {
    await cluster.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

// `--only database` (pgTAP, db lint and db advisors) or `--only deno` runs one suite, while working on it.
// Both: the database suite runs beside the Deno tests, its report held until they finish.
const only = Deno.args.includes("--only") ? Deno.args[Deno.args.indexOf("--only") + 1] : undefined;
const skipped = { ok: true, passed: 0, failed: 0 };
held.holding = only === undefined;
const database = only === "deno" ? Promise.resolve(skipped) : pgTapSuite();
const deno = only === "database" ? skipped : await denoSuite();
held.holding = false;
for (const line of held.lines) console.log(line);
const suites = [deno, await database];
const passed = suites.reduce((n, s) => n + s.passed, 0);
const failed = suites.reduce((n, s) => n + s.failed, 0);
const allOk = suites.every((s) => s.ok) && failed === 0 && passed > 0;
console.log(
  `\ndeno: ${suites[0].passed} passed, ${suites[0].failed} failed; database (pgTAP + db lint + db advisors): ${
    suites[1].passed
  } passed, ${suites[1].failed} failed`,
);
console.log(`${passed} passed, ${failed} failed`);
if (!allOk) {
  if (passed === 0) console.error("no test ran");
  Deno.exit(1);
}
