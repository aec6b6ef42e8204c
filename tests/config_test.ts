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

  await t.step("reads the SMTP connection reuse settings and refuses bad ones", () => {
    assert.deepEqual(loadConfig(base).smtpPool, {
      maxPerKey: 10,
      idleMs: 30_000,
      maxMessages: 100,
      busyWaitMs: 30_000,
    });
    const tuned = loadConfig({
      ...base,
      MAILROOM_SMTP_POOL_MAX_CONNECTIONS: "2",
      MAILROOM_SMTP_POOL_IDLE_MS: "5000",
      MAILROOM_SMTP_POOL_MAX_MESSAGES: "20",
    });
    assert.deepEqual(tuned.smtpPool, { maxPerKey: 2, idleMs: 5_000, maxMessages: 20, busyWaitMs: 30_000 });
    assert.equal(loadConfig({ ...base, MAILROOM_SMTP_REUSE_CONNECTIONS: "FALSE" }).smtpPool, null);
    assert.throws(() => loadConfig({ ...base, MAILROOM_SMTP_REUSE_CONNECTIONS: "no" }), /true or false/);
    assert.throws(() => loadConfig({ ...base, MAILROOM_SMTP_POOL_MAX_CONNECTIONS: "0" }), ConfigError);
    assert.throws(() => loadConfig({ ...base, MAILROOM_SMTP_POOL_IDLE_MS: "1.5" }), ConfigError);
  });

  await t.step("reads the bulk limit, the worker's keys and the EHLO name", () => {
    const config = loadConfig({
      ...base,
      MAILROOM_BULK_MAX_RECIPIENTS: "500",
      SUPABASE_SECRET_KEYS: JSON.stringify({ default: "sb_secret_0123456789abcdef" }),
      SUPABASE_SERVICE_ROLE_KEY: "legacy-service-role-jwt-value",
    });
    assert.equal(config.bulk.maxEntries, 500);
    assert.deepEqual(config.workerKeys, ["sb_secret_0123456789abcdef", "legacy-service-role-jwt-value"]);
    assert.equal(config.smtp.ehloName, "abc.supabase.co");
    assert.equal(loadConfig({ ...base, SUPABASE_URL: "http://127.0.0.1:54321" }).smtp.ehloName, "[127.0.0.1]");
    assert.equal(loadConfig(base).bulk.maxEntries, 10_000);
    assert.throws(() => loadConfig({ ...base, MAILROOM_BULK_MAX_RECIPIENTS: "200000" }), ConfigError);
    assert.throws(() => loadConfig({ ...base, SUPABASE_SECRET_KEYS: "[1,2]" }), ConfigError);
    assert.throws(() => loadConfig({ ...base, MAILROOM_SMTP_EHLO_NAME: "bad name!" }), ConfigError);
  });

  await t.step("accepts an inline JWKS and rejects a malformed one", () => {
    assert.equal(loadConfig({ ...base, SUPABASE_JWKS: '{"keys":[]}' }).jwt.jwks?.keys.length, 0);
    assert.throws(() => loadConfig({ ...base, SUPABASE_JWKS: "{oops" }), ConfigError);
  });
});
