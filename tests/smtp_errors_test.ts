import assert from "node:assert/strict";
import { classifySmtpError } from "../supabase/functions/_shared/smtp.ts";

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
    ["silence mid-session", { code: "ETIMEDOUT", timeoutType: "SOCKET_TIMEOUT" }, "smtp_timeout", "unknown"],
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
