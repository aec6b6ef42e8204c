import assert from "node:assert/strict";
import { classifySmtpError, SessionFailure } from "../supabase/functions/_shared/smtp/smtp.ts";

Deno.test("SMTP error classification", async (t) => {
  const cases: [string, Record<string, unknown>, string, "failed" | "unknown"][] = [
    [
      "bad credentials",
      { code: "EAUTH", responseCode: 535, message: "Invalid login: 535 nope" },
      "smtp_auth_failed",
      "failed",
    ],
    ["all recipients rejected", { code: "EENVELOPE", responseCode: 550 }, "smtp_recipients_rejected", "failed"],
    ["message rejected after DATA", { code: "EMESSAGE", responseCode: 554 }, "smtp_message_rejected", "failed"],
    ["connect timeout", { code: "ETIMEDOUT", timeoutType: "CONNECT_TIMEOUT" }, "smtp_connect_timeout", "failed"],
    ["greeting timeout", { code: "ETIMEDOUT", timeoutType: "GREETING_TIMEOUT" }, "smtp_connect_timeout", "failed"],
    ["silence before DATA", { code: "ETIMEDOUT", timeoutType: "SOCKET_TIMEOUT" }, "smtp_timeout", "failed"],
    [
      "refused connection",
      { code: "ESOCKET", message: "connect ECONNREFUSED 127.0.0.1:1" },
      "smtp_connect_failed",
      "failed",
    ],
    [
      "untrusted certificate",
      { code: "ESOCKET", message: "self-signed certificate" },
      "smtp_tls_verify_failed",
      "failed",
    ],
    ["unknown host", { code: "EDNS" }, "smtp_host_not_found", "failed"],
    ["anything else", { message: "boom" }, "smtp_error", "failed"],
  ];
  for (const [name, error, code, outcome] of cases) {
    await t.step(`classifies ${name} as ${code}`, () => {
      const failure = classifySmtpError(Object.assign(new Error(String(error.message ?? "")), error));
      assert.equal(failure.code, code);
      assert.equal(failure.outcome, outcome);
    });
  }
});

Deno.test("SMTP failures after the server accepted DATA have an unknown outcome", async (t) => {
  const timeout = Object.assign(new Error("Timeout"), { code: "ETIMEDOUT", timeoutType: "SOCKET_TIMEOUT" });
  const closed = Object.assign(new Error("Connection closed unexpectedly"), { code: "ECONNECTION" });
  const rejected = Object.assign(new Error("Message failed"), { code: "EMESSAGE", responseCode: 554 });

  await t.step("a timeout or a hang-up after DATA is unknown, never failed", () => {
    for (const cause of [timeout, closed, new Error("anything")]) {
      const failure = classifySmtpError(new SessionFailure(cause, "data"));
      assert.equal(failure.outcome, "unknown");
      assert.equal(failure.code, "smtp_outcome_unknown");
    }
  });

  await t.step("an explicit rejection after DATA is still a definite failure", () => {
    const failure = classifySmtpError(new SessionFailure(rejected, "data"));
    assert.deepEqual([failure.code, failure.outcome, failure.responseCode], ["smtp_message_rejected", "failed", 554]);
  });

  await t.step("a hang-up mid-session before DATA is a failure that is safe to retry", () => {
    const failure = classifySmtpError(new SessionFailure(closed, "session"));
    assert.deepEqual([failure.code, failure.outcome], ["smtp_connection_lost", "failed"]);
  });
});
