import assert from "node:assert/strict";
import { ConfigError, loadConfig } from "../supabase/functions/_shared/config.ts";

const base = { SUPABASE_URL: "https://abc.supabase.co/", SUPABASE_DB_URL: "postgresql://postgres@db:5432/postgres" };

Deno.test("configuration from the environment", async (t) => {
  await t.step("derives the JWKS URL and issuer from SUPABASE_URL", () => {
    const config = loadConfig(base);
    assert.equal(config.jwt.jwksUrl, "https://abc.supabase.co/auth/v1/.well-known/jwks.json");
    assert.equal(config.jwt.issuer, "https://abc.supabase.co/auth/v1");
    assert.equal(config.dbPooled, false);
    assert.equal(config.smtp.connectTimeoutMs, 10_000);
  });

  await t.step("treats the transaction pooler (port 6543) as pooled and prefers MAILROOM_DB_URL", () => {
    const config = loadConfig({ ...base, MAILROOM_DB_URL: "postgresql://u:p@pooler.supabase.com:6543/postgres" });
    assert.equal(config.dbUrl, "postgresql://u:p@pooler.supabase.com:6543/postgres");
    assert.equal(config.dbPooled, true);
  });

  await t.step("names the missing variable", () => {
    assert.throws(
      () => loadConfig({ SUPABASE_URL: "http://x" }),
      (e: unknown) => e instanceof ConfigError && /SUPABASE_DB_URL/.test(e.message),
    );
  });

  await t.step("rejects timeouts that are not positive integers", () => {
    assert.throws(() => loadConfig({ ...base, MAILROOM_SMTP_CONNECT_TIMEOUT_MS: "soon" }), ConfigError);
    assert.throws(() => loadConfig({ ...base, MAILROOM_SMTP_SOCKET_TIMEOUT_MS: "-5" }), ConfigError);
  });

  await t.step("accepts an inline JWKS and rejects a malformed one", () => {
    assert.equal(loadConfig({ ...base, SUPABASE_JWKS: '{"keys":[]}' }).jwt.jwks?.keys.length, 0);
    assert.throws(() => loadConfig({ ...base, SUPABASE_JWKS: "{oops" }), ConfigError);
  });
});
