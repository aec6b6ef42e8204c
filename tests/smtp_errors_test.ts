import assert from "node:assert/strict";
import { classifySmtpError, SessionFailure } from "../supabase/functions/_shared/smtp/smtp.ts";
import {
  cleanResponse,
  isTooManyRecipients,
  parseReply,
  replyCode,
} from "../supabase/functions/_shared/smtp/outcome.ts";

Deno.test("SMTP error classification", async (t) => {
  type Case = [string, Record<string, unknown>, string, "deferred" | "failed", boolean];
  const cases: Case[] = [
    [
      "bad credentials",
      { code: "EAUTH", responseCode: 535, response: "535 5.7.8 nope" },
      "smtp_auth_failed",
      "failed",
      false,
    ],
    [
      "Microsoft 365 with Basic authentication off",
      {
        code: "EAUTH",
        responseCode: 550,
        response: "550 5.7.30 Basic authentication is not supported for Client Submission.",
      },
      "smtp_basic_auth_disabled",
      "failed",
      false,
    ],
    [
      "Basic authentication disabled, said in words only",
      {
        code: "EAUTH",
        responseCode: 535,
        response: "535 5.7.139 Authentication unsuccessful, basic authentication is disabled.",
      },
      "smtp_basic_auth_disabled",
      "failed",
      false,
    ],
    [
      "a temporary AUTH failure",
      { code: "EAUTH", responseCode: 454, response: "454 4.7.0 later" },
      "smtp_auth_deferred",
      "deferred",
      true,
    ],
    ["no AUTH offered", { code: "ENOAUTHOFFERED" }, "smtp_auth_unavailable", "failed", false],
    [
      "AUTH required at MAIL FROM",
      { code: "EENVELOPE", command: "MAIL FROM", responseCode: 530 },
      "smtp_auth_required",
      "failed",
      false,
    ],
    [
      "sender refused",
      { code: "EENVELOPE", command: "MAIL FROM", responseCode: 553 },
      "smtp_sender_rejected",
      "failed",
      false,
    ],
    [
      "sender deferred",
      { code: "EENVELOPE", command: "MAIL FROM", responseCode: 451 },
      "smtp_sender_deferred",
      "deferred",
      true,
    ],
    [
      "all recipients rejected",
      { code: "EENVELOPE", command: "RCPT TO", responseCode: 550 },
      "smtp_recipients_rejected",
      "failed",
      false,
    ],
    [
      "all recipients deferred",
      { code: "EENVELOPE", command: "RCPT TO", responseCode: 450 },
      "smtp_recipients_deferred",
      "deferred",
      true,
    ],
    ["message rejected after DATA", { code: "EMESSAGE", responseCode: 554 }, "smtp_message_rejected", "failed", false],
    ["message deferred after DATA", { code: "EMESSAGE", responseCode: 451 }, "smtp_message_deferred", "deferred", true],
    ["message too large (552)", { code: "EMESSAGE", responseCode: 552 }, "smtp_message_too_large", "failed", false],
    [
      "message over the declared SIZE",
      { code: "EMESSAGE", message: "Message size larger than allowed 100" },
      "smtp_message_too_large",
      "failed",
      false,
    ],
    ["no SMTPUTF8", { code: "ESMTPUTF8" }, "smtp_utf8_unsupported", "failed", false],
    [
      "connect timeout",
      { code: "ETIMEDOUT", timeoutType: "CONNECT_TIMEOUT" },
      "smtp_connect_timeout",
      "deferred",
      true,
    ],
    [
      "greeting timeout",
      { code: "ETIMEDOUT", timeoutType: "GREETING_TIMEOUT" },
      "smtp_connect_timeout",
      "deferred",
      true,
    ],
    ["silence before DATA", { code: "ETIMEDOUT", timeoutType: "SOCKET_TIMEOUT" }, "smtp_timeout", "deferred", true],
    [
      "refused connection",
      { code: "ESOCKET", message: "connect ECONNREFUSED 127.0.0.1:1" },
      "smtp_connect_failed",
      "deferred",
      true,
    ],
    [
      "untrusted certificate",
      { code: "ESOCKET", message: "self-signed certificate" },
      "smtp_tls_untrusted",
      "failed",
      false,
    ],
    [
      "certificate for another name",
      { code: "ESOCKET", message: "Hostname/IP does not match certificate's altnames" },
      "smtp_tls_name_mismatch",
      "failed",
      false,
    ],
    [
      "expired certificate",
      { code: "ESOCKET", message: "certificate has expired" },
      "smtp_tls_certificate_expired",
      "failed",
      false,
    ],
    [
      "TLS protocol mismatch",
      { code: "ESOCKET", message: "peer is incompatible: protocol version" },
      "smtp_tls_failed",
      "failed",
      false,
    ],
    ["unknown host", { code: "EDNS" }, "smtp_host_not_found", "deferred", true],
    ["anything else", { message: "boom" }, "smtp_error", "failed", false],
  ];
  for (const [name, error, code, outcome, retryable] of cases) {
    await t.step(`classifies ${name} as ${code}${retryable ? " (retryable)" : ""}`, () => {
      const failure = classifySmtpError(Object.assign(new Error(String(error.message ?? "")), error));
      assert.deepEqual([failure.code, failure.outcome, failure.retryable], [code, outcome, retryable]);
    });
  }

  await t.step("hints at swapped port and security", () => {
    const tlsOn587 = classifySmtpError(
      Object.assign(new Error("wrong version number"), { code: "ESOCKET" }),
      { host: "smtp.example.com", port: 587, security: "tls" },
    );
    assert.equal(tlsOn587.code, "smtp_tls_failed");
    assert.match(tlsOn587.hint ?? "", /starttls/);
    const starttlsOn465 = classifySmtpError(
      Object.assign(new Error("Greeting never received"), { code: "ETIMEDOUT", timeoutType: "GREETING_TIMEOUT" }),
      { host: "smtp.example.com", port: 465, security: "starttls" },
    );
    assert.deepEqual([starttlsOn465.code, starttlsOn465.retryable], ["smtp_tls_failed", false]);
    assert.match(starttlsOn465.hint ?? "", /security "tls"/);
  });

  await t.step("keeps the server's reply, bounded, without the password, with its retry hint", () => {
    const failure = classifySmtpError(
      Object.assign(new Error("x"), {
        code: "EENVELOPE",
        command: "RCPT TO",
        responseCode: 450,
        response: `450 4.2.0 <a@b.c>: Greylisted for s3cret, try again in 300 seconds ${"x".repeat(900)}`,
      }),
      { host: "h", port: 465, security: "tls", username: "u", password: "s3cret" },
    );
    assert.equal(failure.enhancedCode, "4.2.0");
    assert.equal(failure.retryAfterSeconds, 300);
    assert.ok(!failure.response!.includes("s3cret"));
    assert.ok(failure.response!.length <= 501);
  });
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
      assert.equal(failure.retryable, false, "an unknown outcome is never retried automatically");
    }
  });

  await t.step("an explicit rejection after DATA is still a definite failure", () => {
    const failure = classifySmtpError(new SessionFailure(rejected, "data"));
    assert.deepEqual([failure.code, failure.outcome, failure.responseCode], ["smtp_message_rejected", "failed", 554]);
  });

  await t.step("a hang-up mid-session before DATA is a failure that is safe to retry", () => {
    const failure = classifySmtpError(new SessionFailure(closed, "session"));
    assert.deepEqual([failure.code, failure.outcome, failure.retryable], ["smtp_connection_lost", "deferred", true]);
  });
});

Deno.test("server replies as we keep them", async (t) => {
  await t.step("redact the password, also inside an echoed AUTH PLAIN or AUTH LOGIN line", () => {
    const secret = "pa55-w0rd!";
    const plain = btoa(`\0agent\0${secret}`);
    const login = btoa(secret);
    const cleaned = cleanResponse(`504 5.5.4 Unrecognized: AUTH PLAIN ${plain} then ${login} and ${secret}`, secret)!;
    assert.ok(!cleaned.includes(plain) && !cleaned.includes(login) && !cleaned.includes(secret), cleaned);
    assert.match(cleaned, /^504 5\.5\.4 Unrecognized: AUTH PLAIN \[redacted\]/);
    assert.equal(cleanResponse("250 2.0.0 Ok: queued as 4F2ab3", secret), "250 2.0.0 Ok: queued as 4F2ab3");
    const urlSafe = plain.replace(/\+/g, "-").replace(/\//g, "_");
    const truncated = btoa("\0agent\0pa55-w").replace(/=+$/, "");
    const json = JSON.stringify(`x"${secret}`).slice(1, -1);
    for (const echo of [urlSafe, truncated, json]) {
      const out = cleanResponse(`535 5.7.8 got ${echo}`, secret)!;
      assert.match(out, /\[redacted\]/, echo);
    }
  });

  await t.step("read codes only as SMTP defines them", () => {
    assert.deepEqual(parseReply("55099999999 nope"), { code: null, enhanced: null });
    assert.deepEqual(parseReply("452 4.5.3 Too many"), { code: 452, enhanced: "4.5.3" });
    assert.deepEqual(parseReply("452 4.5.30000x"), { code: 452, enhanced: null });
    assert.equal(replyCode(55099999999), null);
    assert.equal(replyCode(550), 550);
  });

  await t.step("452 means 'too many recipients' only without another enhanced code", () => {
    assert.equal(isTooManyRecipients(452, "4.5.3"), true);
    assert.equal(isTooManyRecipients(452, null), true);
    assert.equal(isTooManyRecipients(452, "4.2.2"), false, "a full mailbox");
  });

  await t.step("a greeting refusal is not a TLS failure, whatever its text says", () => {
    const busy = classifySmtpError(
      Object.assign(new Error("Invalid greeting. response=421 4.3.2 TLS record alert"), {
        code: "EPROTOCOL",
        response: "421 4.3.2 TLS record alert",
        responseCode: 421,
      }),
    );
    assert.deepEqual([busy.code, busy.retryable], ["smtp_service_unavailable", true]);
  });
});
