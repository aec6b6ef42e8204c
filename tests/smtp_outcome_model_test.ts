// The SMTP outcome model end to end: send-email against a scripted SMTP peer (a stand-in
// that answers the way Postfix does for greylisting, full mailboxes, recipient limits and
// missing extensions, on cue) and the audit row, for every row of the model.
import assert from "node:assert/strict";
import { body, type ErrorBody, startTestStack, type TestStack, type TestUser } from "./harness.ts";
import { type ScriptOptions, startScriptedSmtp } from "./scripted_smtp.ts";
import { startSmtpCatcher } from "../local/smtp_catcher.ts";

const PASSWORD = "scripted-pa55word";

interface Sent {
  id: string;
  status: string;
  message_id: string;
  accepted: string[];
  rejected: string[];
  deferred: string[];
  unknown: string[];
  recipients: { address: string; status: string; smtp_code: number | null; enhanced_code: string | null }[];
}

Deno.test({
  name: "SMTP outcomes per recipient and per message",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const stack: TestStack = await startTestStack({
      MAILROOM_ALLOW_PLAINTEXT_SMTP: "true",
      MAILROOM_SMTP_SESSION_TIMEOUT_MS: "2500",
    });
    const user: TestUser = await stack.createUser();
    // Each step uses a config of its own: more than a user may create per hour by default.
    await stack.sql`update private.credential_limits set max_events = 1000
                     where name in ('config_creation', 'password_change', 'auth_failure')`;
    let configs = 0;

    /** Send through a fresh scripted server; returns the HTTP answer, the audit row and the server. */
    const send = async (script: ScriptOptions, payload: Record<string, unknown>, username: string | null = "u") => {
      const smtp = await startScriptedSmtp({
        extensions: ["PIPELINING", "AUTH PLAIN"],
        users: { u: PASSWORD },
        ...script,
      });
      const name = `c${++configs}`;
      await stack.createConfig(user, {
        name,
        port: smtp.port,
        security: "none",
        username,
        password: PASSWORD,
        is_default: false,
        // The steps reuse addresses that earlier ones saw refused with 5.1.1: none is suppressed here.
        suppress_hard_bounces: false,
      });
      const res = await stack.invoke("send-email", {
        token: user.token,
        body: { subject: "s", text: "x", config: name, ...payload },
      });
      const json = await body<Sent & ErrorBody>(res);
      const id = (json.id ?? json.error?.details?.id) as string;
      const [audit] = await stack.sql`
        select status, message_id, accepted, rejected, deferred, error_class, retryable, recipients
          from public.email_audit_log where id = ${id}`;
      await smtp.close();
      return { status: res.status, json, audit, smtp };
    };

    try {
      await t.step("one 550 among three recipients: two accepted, one rejected, the message sent", async () => {
        const { status, json, audit } = await send(
          { rcpt: (a) => a.startsWith("bad") ? "550 5.1.1 <bad@example.com>: Recipient address rejected" : "250 OK" },
          { to: ["a@example.com", "bad@example.com", "c@example.com"] },
        );
        assert.equal(status, 200);
        assert.deepEqual(json.accepted, ["a@example.com", "c@example.com"]);
        assert.deepEqual(json.rejected, ["bad@example.com"]);
        assert.deepEqual(json.deferred, []);
        assert.deepEqual(json.recipients[1], {
          address: "bad@example.com",
          status: "rejected",
          smtp_code: 550,
          enhanced_code: "5.1.1",
          response: "550 5.1.1 <bad@example.com>: Recipient address rejected",
        });
        assert.equal(audit.status, "sent");
        assert.deepEqual(audit.rejected, ["bad@example.com"]);
        assert.equal(audit.message_id, json.message_id);
      });

      await t.step("a greylisted recipient next to a good one is deferred, never plain rejected", async () => {
        const greylisted =
          "450 4.2.0 <g@example.com>: Recipient address rejected: Greylisted, try again in 300 seconds";
        const { status, json, audit } = await send(
          { rcpt: (a) => a.startsWith("g@") ? greylisted : "250 OK" },
          { to: ["a@example.com", "g@example.com"] },
        );
        assert.equal(status, 200);
        assert.deepEqual([json.accepted, json.rejected, json.deferred], [["a@example.com"], [], ["g@example.com"]]);
        assert.equal(json.recipients[1].status, "deferred");
        assert.deepEqual(audit.deferred, ["g@example.com"]);
        assert.equal((audit.recipients as Sent["recipients"])[1].smtp_code, 450);
      });

      await t.step("every recipient deferred: 502 smtp_recipients_deferred, retryable, audit deferred", async () => {
        const { status, json, audit } = await send(
          { rcpt: () => "451 4.7.1 Service unavailable - try again later" },
          { to: ["a@example.com", "b@example.com"] },
        );
        assert.equal(status, 502);
        assert.equal(json.error.code, "smtp_recipients_deferred");
        assert.equal(json.error.details?.retryable, true);
        assert.equal(json.error.details?.smtp_response_code, 451);
        assert.equal(json.error.details?.status, "deferred");
        assert.deepEqual([audit.status, audit.error_class, audit.retryable], [
          "deferred",
          "smtp_recipients_deferred",
          true,
        ]);
        assert.ok(audit.message_id, "the Message-ID is kept for every outcome");
      });

      await t.step("550 and 450 mixed with nothing accepted: deferred, each keeps its own code", async () => {
        const { status, json } = await send(
          { rcpt: (a) => a.startsWith("x") ? "550 5.1.1 unknown user" : "450 4.2.1 mailbox busy" },
          { to: ["x@example.com", "y@example.com"] },
        );
        assert.equal(status, 502);
        assert.equal(json.error.code, "smtp_recipients_deferred");
        const recipients = json.error.details?.recipients as Sent["recipients"];
        assert.deepEqual(recipients.map((r) => [r.status, r.smtp_code]), [["rejected", 550], ["deferred", 450]]);
      });

      await t.step("all rejected permanently: 502 smtp_recipients_rejected, not retryable", async () => {
        const { status, json, audit } = await send({ rcpt: () => "550 5.1.1 no such user" }, { to: "a@example.com" });
        assert.equal(status, 502);
        assert.deepEqual([json.error.code, json.error.details?.retryable], ["smtp_recipients_rejected", false]);
        assert.deepEqual([audit.status, audit.retryable], ["failed", false]);
      });

      await t.step("452 too many recipients: the rest go in a second transaction and all arrive", async () => {
        let inTransaction = 0;
        const { status, json, smtp } = await send(
          {
            mail: () => {
              inTransaction = 0;
              return "250 OK";
            },
            rcpt: () => ++inTransaction > 3 ? "452 4.5.3 Error: too many recipients" : "250 OK",
          },
          { to: ["a@example.com", "b@example.com", "c@example.com", "d@example.com", "e@example.com"] },
        );
        assert.equal(status, 200);
        assert.equal(json.accepted.length, 5);
        const messages = smtp.messages();
        assert.equal(messages.length, 2, "two transactions");
        assert.deepEqual(messages.map((m) => m.rcptTo), [
          ["a@example.com", "b@example.com", "c@example.com"],
          ["d@example.com", "e@example.com"],
        ]);
        assert.equal(messages[0].data, messages[1].data, "the same message, with the same Message-ID");
      });

      await t.step("452 with no progress at all stays a temporary refusal with the server's own reply", async () => {
        const { status, json, smtp } = await send(
          { rcpt: () => "452 4.5.3 Error: too many recipients" },
          { to: ["a@example.com", "b@example.com"] },
        );
        assert.equal(status, 502);
        assert.equal(json.error.code, "smtp_recipients_deferred");
        const recipients = json.error.details?.recipients as Sent["recipients"];
        assert.deepEqual(recipients.map((r) => [r.status, r.smtp_code, r.enhanced_code]), [
          ["deferred", 452, "4.5.3"],
          ["deferred", 452, "4.5.3"],
        ]);
        assert.equal(smtp.transcript().filter((l) => l.startsWith("MAIL FROM")).length, 1, "no endless retry");
      });

      await t.step("a temporary refusal at end of data: smtp_message_deferred, retryable", async () => {
        const { status, json, audit } = await send(
          { dataReply: "451 4.3.0 Error: queue file write error" },
          { to: "a@example.com" },
        );
        assert.equal(status, 502);
        assert.deepEqual([json.error.code, json.error.details?.retryable], ["smtp_message_deferred", true]);
        assert.equal(audit.status, "deferred");
      });

      await t.step("a refusal at end of data: smtp_message_rejected", async () => {
        const { json } = await send({ dataReply: "554 5.7.1 Message rejected as spam" }, { to: "a@example.com" });
        assert.deepEqual([json.error.code, json.error.details?.retryable], ["smtp_message_rejected", false]);
      });

      await t.step("a sender refusal is not called a recipient rejection", async () => {
        const { json } = await send({ mail: () => "553 5.7.1 Sender address rejected: not owned by user" }, {
          to: "a@example.com",
        });
        assert.equal(json.error.code, "smtp_sender_rejected");
      });

      await t.step("AUTH required (530) is an authentication error", async () => {
        const { json } = await send(
          { extensions: ["PIPELINING"], mail: () => "530 5.7.0 Authentication required" },
          { to: "a@example.com" },
          null,
        );
        assert.equal(json.error.code, "smtp_auth_required");
      });

      await t.step("SIZE is declared and an oversize message is refused before upload", async () => {
        const { status, json, smtp } = await send({ extensions: ["PIPELINING", "SIZE 200", "AUTH PLAIN"] }, {
          to: "a@example.com",
          text: "x".repeat(2000),
        });
        assert.equal(status, 502);
        assert.equal(json.error.code, "smtp_message_too_large");
        assert.equal(smtp.messages().length, 0, "nothing was uploaded");
        assert.ok(!smtp.transcript().some((l) => l.startsWith("MAIL FROM")), "not even MAIL FROM was sent");
      });

      await t.step("SIZE is announced on MAIL FROM when the server offers it", async () => {
        const { status, smtp } = await send({ extensions: ["PIPELINING", "SIZE 1000000", "AUTH PLAIN"] }, {
          to: "a@example.com",
        });
        assert.equal(status, 200);
        assert.match(smtp.transcript().find((l) => l.startsWith("MAIL FROM"))!, /SIZE=\d+/);
      });

      await t.step("a non-ASCII address goes only to a server that offers SMTPUTF8", async () => {
        const refused = await send({}, { to: "jörg@example.com" });
        assert.equal(refused.status, 502);
        assert.equal(refused.json.error.code, "smtp_utf8_unsupported");
        assert.equal(refused.smtp.messages().length, 0);
        const offered = await send({ extensions: ["PIPELINING", "SMTPUTF8", "AUTH PLAIN"] }, {
          to: "jörg@example.com",
        });
        assert.equal(offered.status, 200);
        assert.match(offered.smtp.transcript().find((l) => l.startsWith("MAIL FROM"))!, /SMTPUTF8/);
        assert.deepEqual(offered.smtp.messages()[0].rcptTo, ["jörg@example.com"]);
      });

      await t.step("credentials configured but no AUTH offered: smtp_auth_unavailable, nothing sent", async () => {
        const { json, smtp } = await send({ extensions: ["PIPELINING"] }, { to: "a@example.com" });
        assert.equal(json.error.code, "smtp_auth_unavailable");
        assert.equal(smtp.messages().length, 0);
      });

      await t.step("a server echoing the AUTH command back leaks no credentials", async () => {
        const { status, json, audit } = await send({ authReply: (line) => `504 5.5.4 Unrecognized: ${line}` }, {
          to: "a@example.com",
        });
        assert.equal(status, 502);
        assert.equal(json.error.code, "smtp_auth_failed");
        const plain = btoa(`\0u\0${PASSWORD}`);
        for (const text of [JSON.stringify(json), JSON.stringify(audit)]) {
          assert.ok(!text.includes(plain) && !text.includes(PASSWORD), text);
        }
        assert.equal(
          json.error.details?.smtp_response,
          "504 [reply text withheld]",
          "an AUTH reply keeps only its code",
        );
      });

      await t.step(
        "Microsoft 365 refusing passwords (5.7.30) says to switch to OAuth, not that the password is wrong",
        async () => {
          const { status, json, audit } = await send({
            authReply: () => "550 5.7.30 Basic authentication is not supported for Client Submission.",
          }, { to: "a@example.com" });
          assert.equal(status, 502);
          assert.equal(json.error.code, "smtp_basic_auth_disabled");
          assert.equal(json.error.details?.retryable, false);
          assert.match(String(json.error.details?.hint), /OAuth/);
          assert.equal(json.error.details?.smtp_response, "550 [reply text withheld]");
          assert.equal(audit.error_class, "smtp_basic_auth_disabled");
        },
      );

      await t.step("a 421 greeting is a temporary refusal; a 554 greeting a permanent one (not TLS)", async () => {
        const busy = await send({ greeting: "421 4.3.2 Too many connections, try again later" }, {
          to: "a@example.com",
        });
        assert.deepEqual([busy.json.error.code, busy.json.error.details?.retryable], [
          "smtp_service_unavailable",
          true,
        ]);
        assert.equal(busy.audit.status, "deferred");
        const refused = await send({ greeting: "554 5.7.1 You are not welcome here" }, { to: "a@example.com" });
        assert.deepEqual([refused.json.error.code, refused.json.error.details?.retryable], [
          "smtp_service_refused",
          false,
        ]);
      });

      await t.step("a reply code out of range is recorded sanely, never left in sending", async () => {
        const { status, json, audit } = await send(
          { rcpt: (a) => a.startsWith("odd") ? "55099999999 nope" : "250 OK" },
          { to: ["a@example.com", "odd@example.com"] },
        );
        assert.equal(status, 200, JSON.stringify(json));
        assert.equal(audit.status, "sent");
        assert.equal(json.recipients[1].smtp_code, null);
      });

      await t.step("refused recipients and a 354 anyway: the recipients' refusals stand, not 'unknown'", async () => {
        const { status, json, audit } = await send(
          { rcpt: () => "550 5.1.1 no such user", dataCommandReply: "354 go" },
          {
            to: "a@example.com",
          },
        );
        assert.equal(status, 502);
        assert.equal(json.error.code, "smtp_recipients_rejected");
        assert.equal(audit.status, "failed");
      });

      await t.step("a second transaction that ends without a reply leaves its recipients unknown", async () => {
        let inTransaction = 0;
        const { status, json } = await send(
          {
            mail: () => {
              inTransaction = 0;
              return "250 OK";
            },
            rcpt: () => ++inTransaction > 1 ? "452 4.5.3 Too many recipients" : "250 OK",
            dataReply: (index) => index === 0 ? "250 2.0.0 queued" : null,
          },
          { to: ["a@example.com", "b@example.com"] },
        );
        assert.equal(status, 200, JSON.stringify(json));
        assert.deepEqual([json.accepted, json.unknown], [["a@example.com"], ["b@example.com"]]);
      });

      await t.step(
        "a server that hangs up before its greeting: a retryable connection failure, also for verify",
        async () => {
          const { status, json, audit } = await send({ misbehaviour: "close-before-greeting" }, {
            to: "a@example.com",
          });
          assert.equal(status, 502);
          assert.equal(json.error.details?.retryable, true, JSON.stringify(json));
          assert.match(json.error.code, /^smtp_(connect_failed|connection_lost)$/);
          assert.equal(audit.status, "deferred");
          const smtp = await startScriptedSmtp({ misbehaviour: "close-before-greeting" });
          try {
            await stack.createConfig(user, {
              name: "hangs-up",
              port: smtp.port,
              security: "none",
              username: "u",
              password: PASSWORD,
              is_default: false,
            });
            const res = await stack.invoke("smtp-configs/hangs-up/verify", { token: user.token });
            const verified = await body<ErrorBody>(res);
            assert.equal(res.status, 502, JSON.stringify(verified));
            assert.equal(verified.error.details?.retryable, true);
          } finally {
            await smtp.close();
          }
        },
      );

      await t.step("a server that drips replies forever meets the session deadline", async () => {
        const { status, json } = await send({ misbehaviour: "drip-after-ehlo" }, { to: "a@example.com" });
        assert.equal(status, 502);
        assert.deepEqual([json.error.code, json.error.details?.retryable], ["smtp_timeout", true]);
      });

      await t.step("a message refused as spam is refused for every recipient, even 452-held ones", async () => {
        let inTransaction = 0;
        const { status, json, audit } = await send(
          {
            mail: () => {
              inTransaction = 0;
              return "250 OK";
            },
            rcpt: (a) =>
              a.startsWith("g") ? "450 4.2.0 greylisted" : ++inTransaction > 1 ? "452 4.5.3 Too many" : "250 OK",
            dataReply: "554 5.7.1 Message rejected as spam",
          },
          { to: ["a@example.com", "b@example.com", "g@example.com"] },
        );
        assert.equal(status, 502);
        assert.deepEqual([json.error.code, json.error.details?.retryable, json.error.details?.status], [
          "smtp_message_rejected",
          false,
          "failed",
        ]);
        assert.equal(audit.status, "failed");
        const recipients = json.error.details?.recipients as Sent["recipients"];
        assert.deepEqual(recipients.map((r) => r.status), ["rejected", "rejected", "rejected"]);
      });

      await t.step("a stray 354 to a RCPT, then a hang-up: nothing was sent, so not unknown", async () => {
        const { status, json } = await send(
          { rcpt: (_a, i) => i === 0 ? "250 OK" : null, extensions: ["AUTH PLAIN"] },
          { to: ["a@example.com", "b@example.com"] },
        );
        assert.equal(status, 502);
        assert.notEqual(json.error.code, "smtp_outcome_unknown");
        assert.equal(json.error.details?.retryable, true);
      });

      await t.step("the connection ends after the final dot: unknown, with the Message-ID", async () => {
        const { status, json, audit } = await send({ misbehaviour: "close-after-dot" }, { to: "a@example.com" });
        assert.equal(status, 502);
        assert.deepEqual([json.error.code, json.error.details?.retryable], ["smtp_outcome_unknown", false]);
        assert.equal(audit.status, "unknown");
        assert.ok(audit.message_id && audit.message_id === json.error.details?.message_id);
        assert.equal((audit.recipients as Sent["recipients"])[0].status, "unknown");
      });
    } finally {
      await stack.close();
    }
  },
});

Deno.test({
  name: "SMTP outcomes against the local catcher's scripted recipients (smtp-server)",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const stack = await startTestStack();
    const catcher = await startSmtpCatcher({
      mode: "tls",
      tls: { key: stack.certs.key, cert: stack.certs.cert },
      users: { mailer: "pw" },
      replyByAddress: true,
    });
    try {
      const user = await stack.createUser();
      await stack.createConfig(user, { port: catcher.port, password: "pw" });
      const send = async (to: string[]) => {
        const res = await stack.invoke("send-email", { token: user.token, body: { to, subject: "s", text: "x" } });
        return { status: res.status, json: await body<Sent & ErrorBody>(res) };
      };

      await t.step(
        "temp-, perm- and full- recipients next to a good one: sent, each with its own outcome",
        async () => {
          const { status, json } = await send([
            "ok@example.com",
            "temp-451@example.com",
            "perm-550@example.com",
            "full-452+jane@example.com",
          ]);
          assert.equal(status, 200, JSON.stringify(json));
          assert.deepEqual(json.accepted, ["ok@example.com"]);
          assert.deepEqual(json.rejected, ["perm-550@example.com"]);
          assert.deepEqual(json.deferred, ["temp-451@example.com", "full-452+jane@example.com"]);
          assert.deepEqual(
            json.recipients.map((r) => [r.smtp_code, r.enhanced_code]),
            [[250, null], [451, "4.2.0"], [550, "5.1.1"], [452, "4.2.2"]],
            "a full mailbox (452 4.2.2) is not mistaken for 'too many recipients'",
          );
          const [delivered] = await catcher.waitForMessages(1);
          assert.deepEqual(delivered.envelope.rcptTo, ["ok@example.com"]);
        },
      );

      await t.step("data-451 and data-554 are answered after the final dot", async () => {
        const deferred = await send(["data-451@example.com"]);
        assert.deepEqual([deferred.status, deferred.json.error.code], [502, "smtp_message_deferred"]);
        assert.equal(deferred.json.error.details?.retryable, true);
        const rejected = await send(["data-554@example.com", "ok@example.com"]);
        assert.deepEqual([rejected.status, rejected.json.error.code], [502, "smtp_message_rejected"]);
        const recipients = rejected.json.error.details?.recipients as Sent["recipients"];
        assert.deepEqual(recipients.map((r) => r.status), ["rejected", "rejected"]);
      });

      await t.step("slow- recipients run into the socket timeout before DATA: deferred, retryable", async () => {
        const { status, json } = await send(["slow-10@example.com"]);
        assert.equal(status, 502);
        assert.deepEqual([json.error.code, json.error.details?.retryable, json.error.details?.status], [
          "smtp_timeout",
          true,
          "deferred",
        ]);
      });
    } finally {
      await catcher.close();
      await stack.close();
    }
  },
});
