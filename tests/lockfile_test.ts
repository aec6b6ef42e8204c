// package-lock.json is one lock for every platform: `npm ci` refuses a lock that lacks an
// optional dependency of a package it installs (`Missing: @supabase/cli-darwin-arm64 from lock
// file`), so the lock must list the deno and supabase binaries of every platform, not only this
// machine's, and `npm install` must not need to rewrite it.
import assert from "node:assert/strict";

const ROOT = new URL("../", import.meta.url);
const lock = JSON.parse(Deno.readTextFileSync(new URL("package-lock.json", ROOT)));
const manifest = JSON.parse(Deno.readTextFileSync(new URL("package.json", ROOT)));

Deno.test("package-lock.json pins what package.json asks for, at the same versions", () => {
  const root = lock.packages[""];
  assert.deepEqual(root.devDependencies, manifest.devDependencies);
  for (const [name, version] of Object.entries(manifest.devDependencies as Record<string, string>)) {
    assert.equal(lock.packages[`node_modules/${name}`]?.version, version, name);
  }
});

Deno.test("package-lock.json lists every platform's binary of deno and the supabase CLI", () => {
  for (const name of Object.keys(manifest.devDependencies)) {
    const entry = lock.packages[`node_modules/${name}`];
    const optional = Object.keys(entry.optionalDependencies ?? {});
    assert.ok(optional.length >= 6, `${name} lists its platform binaries as optional dependencies`);
    for (const dependency of optional) {
      const locked = lock.packages[`node_modules/${dependency}`];
      assert.ok(locked, `${dependency} (optional dependency of ${name}) is in package-lock.json`);
      assert.match(locked.integrity ?? "", /^sha512-/, `${dependency} has an integrity hash`);
      assert.ok(locked.os?.length && locked.cpu?.length, `${dependency} names its os and cpu`);
    }
  }
});
