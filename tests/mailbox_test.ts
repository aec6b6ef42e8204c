// The sender's own mailbox over IMAP, against a real Dovecot (Debian's dovecot-imapd, started
// here with TLS) and a real SMTP server: IMAP settings through the API (password in Vault, never
// shown), a copy of each sent message in Sent byte for byte, bounce reports read back from the
// inbox (delivery status notifications as Postfix writes them: tests/fixtures/dsn, made by a
// real Postfix bounce) marking the recipient `bounced` and suppressing hard bounces, complaint
// reports, and failures (login refused, server down) recorded without touching `sent`.
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { ImapFlow } from "imapflow";
import { body, captureLogs, errorCode, startTestStack, type TestUser } from "./harness.ts";
import { startSmtpCatcher } from "../local/smtp_catcher.ts";
import { type Dovecot, startDovecot } from "../local/dovecot.ts";

const FIXTURES = new URL("./fixtures/dsn/", import.meta.url);
const fixture = (name: string) => Deno.readTextFile(new URL(name, FIXTURES));

/** A Postfix bounce for our message: the fixture's Message-ID and recipient replaced by ours. */
async function bounceFor(name: string, messageId: string, recipient: string, fixtureRecipient: string) {
  return (await fixture(name))
    .replaceAll("<fixture-1@mailroom.test>", messageId)
    .replaceAll("<fixture-2@mailroom.test>", messageId)
    .replaceAll("<fixture-3@mailroom.test>", messageId)
    .replaceAll(fixtureRecipient, recipient);
}

Deno.test({
  name: "mailbox over IMAP: settings, Sent copies, bounce and complaint reports",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const stack = await startTestStack();
    let dovecot: Dovecot | undefined;
    // As the local stack's: bounce-511@… is accepted, then bounced into the sender's mailbox.
    const smtp = await startSmtpCatcher({
      mode: "tls",
      tls: { key: stack.certs.key, cert: stack.certs.cert },
      users: { mailer: "pw" },
      onBounce: (bounce) => dovecot?.deliver("owner", bounce.report),
    });
    const dir = await Deno.makeTempDir({ prefix: "mailroom-test-dovecot-" });
    const IMAP_PASSWORD = `imap-secret-${crypto.randomUUID()}`;
    try {
      dovecot = await startDovecot({
        dir,
        tls: { cert: stack.certs.cert, key: stack.certs.key },
        users: [{ name: "owner", password: IMAP_PASSWORD }, { name: "other", password: "other-pw" }],
      });
      const imapPort = dovecot.port;
      const owner = await stack.createUser();
      const other = await stack.createUser();
      await stack.createConfig(owner, { name: "main", port: smtp.port, password: "pw" });
      await stack.createConfig(other, { name: "main", port: smtp.port, password: "pw" });
      const call = (user: TestUser, path: string, init: { method?: string; body?: unknown; token?: string } = {}) =>
        stack.invoke(path, { token: user.token, ...init });
      const send = async (user: TestUser, fields: Record<string, unknown>) => {
        const res = await call(user, "send-email", {
          body: { subject: "Quarterly report", text: "Hello.", ...fields },
        });
        const sent = await body(res);
        assert.equal(res.status, 200, JSON.stringify(sent));
        return sent as { id: string; message_id: string };
      };
      const auditRow = async (id: string) => {
        const [row] = await stack.sql`select * from public.email_audit_log where id = ${id}::uuid`;
        return row;
      };
      const waitFor = async <T>(what: string, probe: () => Promise<T | undefined | null>, timeoutMs = 10_000) => {
        const until = Date.now() + timeoutMs;
        while (Date.now() < until) {
          const value = await probe();
          if (value) return value;
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
        throw new Error(`timed out waiting for ${what}`);
      };
      const imapClient = () =>
        new ImapFlow({
          host: "localhost",
          port: imapPort,
          secure: true,
          auth: { user: "owner", pass: IMAP_PASSWORD },
          logger: false,
          tls: { ca: [stack.certs.caCert] },
        });
      const check = async (user = owner) => {
        const res = await call(user, "smtp-configs/main/imap/check", {});
        const result = await body(res);
        assert.equal(res.status, 200, JSON.stringify(result));
        return result as { checked: number; reports: number; matched: number; unsubscribed: number; moved: number };
      };

      await t.step("settings through the API: the password goes to Vault and never comes back", async () => {
        assert.equal(
          await errorCode(await call(owner, "smtp-configs/main/imap", { method: "GET" }), 404),
          "imap_not_configured",
        );
        assert.equal(
          await errorCode(
            await call(owner, "smtp-configs/main/imap", { method: "PATCH", body: { host: "localhost" } }),
            400,
          ),
          "invalid_request",
          "the first time needs a login",
        );
        assert.equal(
          await errorCode(
            await call(owner, "smtp-configs/main/imap", {
              method: "PATCH",
              body: { host: "10.1.2.3", port: 993, username: "owner", password: "x" },
            }),
            422,
          ),
          "imap_host_forbidden",
        );
        assert.equal(
          await errorCode(
            await call(owner, "smtp-configs/main/imap", {
              method: "PATCH",
              body: { host: "imap.example.com", port: 25, username: "owner", password: "x" },
            }),
            422,
          ),
          "imap_port_not_allowed",
        );
        const res = await call(owner, "smtp-configs/main/imap", {
          method: "PATCH",
          body: { host: "localhost", port: imapPort, username: "owner", password: IMAP_PASSWORD },
        });
        const text = await res.text();
        assert.equal(res.status, 200, text);
        assert.ok(!text.includes(IMAP_PASSWORD), "never in a response");
        const settings = JSON.parse(text);
        assert.equal(settings.has_password, true);
        assert.equal(settings.copy_to_sent, true);
        assert.equal(settings.read_bounces, true);
        const config = await body(await call(owner, "smtp-configs/main", { method: "GET" }));
        assert.deepEqual(config.imap, { host: "localhost", read_bounces: true, copy_to_sent: true, last_error: null });
        // Another user's config is not theirs to read or change.
        assert.equal(
          await errorCode(await call(other, `smtp-configs/${settings.config_id}/imap`, { method: "GET" }), 404),
          "config_not_found",
        );
        // The Data API: nobody else sees the row; the owner sees no password.
        const seen = await stack.asDataApi(other, (tx) => tx`select * from public.smtp_config_imap`);
        assert.equal(seen.length, 0);
        const [stored] = await stack.sql`select * from public.smtp_config_imap where config_id = ${settings
          .config_id as string}`;
        assert.ok(!JSON.stringify(stored).includes(IMAP_PASSWORD), "only a Vault secret id in the row");
      });

      await t.step("an agent reads the settings and checks the inbox, but never changes them", async () => {
        const agent = await stack.mint({ sub: owner.id, email: owner.email, clientId: "some-agent" });
        const seen = await call(owner, "smtp-configs/main/imap", { method: "GET", token: agent });
        assert.equal(seen.status, 200);
        for (const init of [{ method: "PATCH", body: { host: "imap.attacker.example" } }, { method: "DELETE" }]) {
          const res = await call(owner, "smtp-configs/main/imap", { ...init, token: agent });
          assert.equal(await errorCode(res, 403), "first_party_session_required");
        }
        // Nor through the Data API with that token.
        await assert.rejects(
          stack.sql.begin(async (tx) => {
            const claims = JSON.stringify({ sub: owner.id, role: "authenticated", client_id: "some-agent" });
            await tx`select set_config('request.jwt.claims', ${claims}, true), set_config('role', 'authenticated', true)`;
            await tx`update public.smtp_config_imap set host = 'imap.attacker.example'`;
          }),
          /first_party_session_required|client/,
        );
        assert.equal((await body(await call(owner, "smtp-configs/main/imap", { method: "GET" }))).host, "localhost");
      });

      await t.step("the SMTP login is sent only to an IMAP server in the SMTP server's domain", async () => {
        const res = await call(owner, "smtp-configs/main/imap", {
          method: "PATCH",
          body: { host: "imap.attacker.example", port: 993, use_smtp_login: true },
        });
        assert.equal(await errorCode(res, 422), "imap_login_unavailable");
        // Nor through the Data API: the database gives the SMTP password to no other host.
        await stack.asDataApi(owner, async (tx) => {
          await tx`update public.smtp_config_imap set host = 'imap.attacker.example', use_smtp_login = true`;
          const [login] = await tx`select password from private.imap_login(
            (select config_id from public.smtp_config_imap limit 1))`;
          assert.equal(login.password, null);
          throw new Error("rolled back");
        }).catch((error) => assert.match(String(error), /rolled back/));
      });

      await t.step("a new host drops the stored password unless it is given again", async () => {
        const moved = await body(
          await call(owner, "smtp-configs/main/imap", { method: "PATCH", body: { username: "someone-else" } }),
        );
        assert.equal(moved.has_password, false, "a password never follows its server elsewhere");
        const back = await body(
          await call(owner, "smtp-configs/main/imap", {
            method: "PATCH",
            body: { username: "owner", password: IMAP_PASSWORD },
          }),
        );
        assert.equal(back.has_password, true);
      });

      await t.step("a sent message is copied to Sent, byte for byte, and flagged seen", async () => {
        smtp.clear();
        const sent = await send(owner, { to: "ann@example.net" });
        const row = await waitFor("the sent copy", async () => {
          const r = await auditRow(sent.id);
          return r.sent_copy ? r : null;
        });
        assert.equal(row.status, "sent");
        assert.equal(row.sent_copy.status, "copied", JSON.stringify(row.sent_copy));
        assert.equal(row.sent_copy.folder, "Sent");
        const [received] = smtp.messages();
        const client = imapClient();
        await client.connect();
        try {
          const lock = await client.getMailboxLock("Sent");
          try {
            const copies = [];
            for await (const m of client.fetch("1:*", { source: true, flags: true })) copies.push(m);
            assert.equal(copies.length, 1);
            assert.equal(
              Buffer.from(copies[0].source!).toString("latin1"),
              Buffer.from(received.raw, received.rawEncoding === "utf8" ? "utf8" : "latin1").toString("latin1"),
              "what the SMTP server received",
            );
            assert.ok(copies[0].flags?.has("\\Seen"));
          } finally {
            lock.release();
          }
        } finally {
          await client.logout();
        }
      });

      await t.step("a delivery status notification marks the recipient bounced and suppresses it", async () => {
        const userMail = "From: friend@example.org\r\nTo: owner@example.com\r\nSubject: lunch?\r\n" +
          "Message-ID: <lunch@example.org>\r\n\r\nSee you at noon.\r\n";
        await dovecot!.deliver("owner", userMail);
        const sent = await send(owner, { to: ["gone@example.net", "kept@example.net"] });
        await dovecot!.deliver(
          "owner",
          await bounceFor("postfix_5.1.1_full.eml", sent.message_id, "gone@example.net", "bounce-511@example.net"),
        );
        const result = await check();
        assert.equal(result.reports, 1);
        assert.equal(result.matched, 1);
        const row = await auditRow(sent.id);
        assert.equal(row.status, "sent", "the submission server did accept it");
        assert.deepEqual(row.bounced, ["gone@example.net"]);
        const gone = row.recipients.find((r: { address: string }) => r.address === "gone@example.net");
        assert.equal(gone.status, "bounced");
        assert.equal(gone.enhanced_code, "5.1.1");
        assert.equal(gone.smtp_code, 550, "the remote server's code, not the submission server's 250");
        assert.match(gone.response, /User unknown in\s+virtual mailbox table/);
        assert.equal(
          row.recipients.find((r: { address: string }) => r.address === "kept@example.net").status,
          "accepted",
        );
        assert.equal(row.reports[0].remote_mta, "127.0.0.1");
        const listed = await body(await call(owner, "suppressions/gone%40example.net", { method: "GET" }));
        assert.equal(listed.reason, "hard_bounce");
        // What the API shows of it.
        const page = await body<{ messages: Record<string, unknown>[] }>(
          await call(owner, "email-analytics/messages?recipient=gone%40example.net", { method: "GET" }),
        );
        assert.deepEqual(page.messages[0].bounced, ["gone@example.net"]);
        assert.equal((page.messages[0].reports as { kind: string }[])[0].kind, "bounce");
        assert.equal((page.messages[0].sent_copy as { status: string }).status, "copied");
        assert.match(String(listed.source), /5\.1\.1/);
        // The user's own mail is as it was: still unread, still in the inbox.
        const inbox = await dovecot!.messages("owner");
        const lunch = inbox.find((m) => new TextDecoder().decode(m.raw).includes("lunch@example.org"))!;
        assert.ok(!lunch.flags.includes("S"), "not marked read");
        // Read again: nothing new, nothing recorded twice.
        assert.deepEqual(await check(), {
          config_id: (await auditRow(sent.id)).config_id,
          checked: 0,
          reports: 0,
          matched: 0,
          unsubscribed: 0,
          moved: 0,
        });
      });

      await t.step("the local catcher's bounce-511@ comes back into the mailbox and is read", async () => {
        const sent = await send(owner, { to: "bounce-511@example.com" });
        assert.equal(smtp.messages().filter((m) => m.envelope.rcptTo.includes("bounce-511@example.com")).length, 1);
        assert.equal((await check()).matched, 1);
        const row = await auditRow(sent.id);
        assert.deepEqual(row.bounced, ["bounce-511@example.com"]);
        assert.equal(row.recipients[0].enhanced_code, "5.1.1");
      });

      await t.step("a policy bounce (5.7.1) is recorded but does not suppress", async () => {
        const sent = await send(owner, { to: "blocked@example.net" });
        await dovecot!.deliver(
          "owner",
          await bounceFor(
            "postfix_5.7.1_headers.eml",
            sent.message_id,
            "blocked@example.net",
            "policy-571@example.net",
          ),
        );
        assert.equal((await check()).matched, 1);
        const row = await auditRow(sent.id);
        assert.deepEqual(row.bounced, ["blocked@example.net"]);
        assert.equal(
          await errorCode(await call(owner, "suppressions/blocked%40example.net", { method: "GET" }), 404),
          "suppression_not_found",
        );
      });

      await t.step("reports about someone else's message, and malformed ones, change nothing", async () => {
        const theirs = await send(other, { to: "victim@example.net" });
        await dovecot!.deliver(
          "owner",
          await bounceFor(
            "postfix_5.1.1_headers.eml",
            theirs.message_id,
            "victim@example.net",
            "bounce-511@example.net",
          ),
        );
        await dovecot!.deliver(
          "owner",
          "From: MAILER-DAEMON@example.net\r\nTo: owner@example.com\r\nSubject: broken\r\nMIME-Version: 1.0\r\n" +
            'Content-Type: multipart/report; report-type=delivery-status; boundary="x"\r\n\r\n--x\r\n' +
            "Content-Type: message/delivery-status\r\n\r\nAction: failed\r\nStatus: nonsense\r\n\r\n--x--\r\n",
        );
        await dovecot!.deliver("owner", "garbage without headers \u0000\u0001\r\n");
        // A "bounce" mailed by somebody (not from the null sender) about one of her own messages.
        const mine = await send(owner, { to: ["cc-victim@example.net", "forger@example.net"] });
        await dovecot!.deliver(
          "owner",
          (await bounceFor(
            "postfix_5.1.1_headers.eml",
            mine.message_id,
            "cc-victim@example.net",
            "bounce-511@example.net",
          ))
            .replace("Return-Path: <>", "Return-Path: <forger@example.net>"),
        );
        const result = await check();
        assert.equal(result.checked, 4);
        assert.equal(result.matched, 0);
        const row = await auditRow(theirs.id);
        assert.deepEqual(row.bounced, []);
        assert.equal(row.reports, null);
        const listed = await stack.sql`
          select 1 from public.suppressions where address in ('victim@example.net', 'cc-victim@example.net')`;
        assert.equal(listed.length, 0);
        assert.deepEqual((await auditRow(mine.id)).bounced, []);
      });

      await t.step(
        "List-Unsubscribe offers a mailto to the read mailbox; a request that arrives there is honoured",
        async () => {
          smtp.clear();
          await send(owner, { to: "optout@example.net", unsubscribe: { topic: "digest" } });
          const raw = smtp.messages()[0].raw;
          const head = raw.slice(0, raw.indexOf("\r\n\r\n")).replace(/\r\n[ \t]+/g, " ");
          const header = /^List-Unsubscribe: (.*)$/mi.exec(head)?.[1] ?? head;
          const mailto = /<mailto:([^?>]+)\?subject=unsubscribe%20([^>]+)>/.exec(header);
          assert.ok(mailto, header);
          assert.equal(mailto[1], owner.email, "the sender's own (read) mailbox");
          const token = mailto[2];
          const request = (subject: string) =>
            `From: optout@example.net\r\nTo: ${owner.email}\r\nSubject: ${subject}\r\n` +
            `Message-ID: <${crypto.randomUUID()}@example.net>\r\n\r\n\r\n`;
          // A forged one (another address in it, the signature kept) does nothing.
          const [v, payload, signature] = token.split(".");
          const forged = btoa(JSON.stringify([owner.id, "someone-else@example.net", null]))
            .replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
          await dovecot!.deliver("owner", request(`unsubscribe ${v}.${forged}.${signature}`));
          await dovecot!.deliver("owner", request(`unsubscribe ${token}`));
          assert.ok(payload);
          const result = await check();
          assert.equal(result.unsubscribed, 1);
          const listed = await body(await call(owner, "suppressions/optout%40example.net", { method: "GET" }));
          assert.deepEqual([listed.reason, listed.source], ["unsubscribed", "mailto unsubscribe (digest)"]);
          const none = await stack.sql`select 1 from public.suppressions where address = 'someone-else@example.net'`;
          assert.equal(none.length, 0);
        },
      );

      await t.step("with processed_folder, matched reports are moved there; the rest of the inbox stays", async () => {
        await call(owner, "smtp-configs/main/imap", { method: "PATCH", body: { processed_folder: "Reports" } });
        const sent = await send(owner, { to: "moved@example.net" });
        await dovecot!.deliver(
          "owner",
          await bounceFor("postfix_5.1.1_headers.eml", sent.message_id, "moved@example.net", "bounce-511@example.net"),
        );
        await dovecot!.deliver("owner", "From: a@example.org\r\nSubject: keep me\r\nMessage-ID: <keep@x>\r\n\r\nx\r\n");
        const result = await check();
        assert.deepEqual([result.matched, result.moved], [1, 1]);
        const text = (list: { raw: Uint8Array }[]) => list.map((m) => new TextDecoder().decode(m.raw));
        assert.ok(text(await dovecot!.messages("owner", "Reports")).some((m) => m.includes(sent.message_id)));
        const inbox = text(await dovecot!.messages("owner"));
        assert.ok(!inbox.some((m) => m.includes(sent.message_id)), "the report left the inbox");
        assert.ok(inbox.some((m) => m.includes("<keep@x>")), "the user's own mail stayed");
        await call(owner, "smtp-configs/main/imap", { method: "PATCH", body: { processed_folder: null } });
      });

      await t.step("a complaint report (ARF) suppresses the complainer", async () => {
        const sent = await send(owner, { to: "annoyed@example.net" });
        const arf = (await fixture("arf_abuse.eml")).replaceAll("<arf-original@mailroom.test>", sent.message_id);
        await dovecot!.deliver("owner", arf);
        assert.equal((await check()).matched, 1);
        const row = await auditRow(sent.id);
        assert.equal(row.reports[0].kind, "complaint");
        const listed = await body(await call(owner, "suppressions/annoyed%40example.net", { method: "GET" }));
        assert.equal(listed.reason, "complaint");
      });

      await t.step("queued mail: the worker copies it to Sent and reads due mailboxes", async () => {
        const res = await call(owner, "send-bulk", {
          body: { subject: "Hi", text: "Hello", recipients: ["q1@example.net"] },
        });
        assert.equal(res.status, 202, await res.clone().text());
        await stack.sql`update public.smtp_config_imap set next_check_at = now() - interval '1 minute'`;
        const report = await stack.drainOutbox();
        assert.equal(report.sent, 1);
        assert.ok(report.mailboxes_checked >= 1);
        const [row] = await stack.sql`
          select sent_copy from public.email_audit_log where to_addresses = '{q1@example.net}'`;
        assert.equal(row.sent_copy?.status, "copied");
        const inSent = (await dovecot!.messages("owner", "Sent")).map((m) => new TextDecoder().decode(m.raw));
        assert.equal(inSent.filter((m) => m.includes("To: q1@example.net")).length, 1);
      });

      await t.step(
        "a refused login or a server that is down leaves the message sent, the failure recorded",
        async () => {
          await call(owner, "smtp-configs/main/imap", { method: "PATCH", body: { password: "wrong-password" } });
          const { result: sent, logs } = await captureLogs(() => send(owner, { to: "x1@example.net" }));
          const row = await waitFor("the failed copy", async () => {
            const r = await auditRow(sent.id);
            return r.sent_copy ? r : null;
          });
          assert.equal(row.status, "sent");
          assert.equal(row.sent_copy.status, "failed");
          assert.match(row.sent_copy.error, /refused the login/);
          assert.equal(
            smtp.messages().filter((m) => m.envelope.rcptTo.includes("x1@example.net")).length,
            1,
            "never resent",
          );
          const refused = await call(owner, "smtp-configs/main/imap/check", {});
          assert.equal(await errorCode(refused, 502), "imap_auth_failed");
          const settings = await body(await call(owner, "smtp-configs/main/imap", { method: "GET" }));
          assert.match(String(settings.last_error), /refused the login/);
          assert.equal(settings.next_check_at, null, "no scheduled check retries a refused password");
          // Nor does the next send's copy log in again (each try counts against the account).
          const again = await send(owner, { to: "x3@example.net" });
          const againRow = await waitFor("the skipped copy", async () => {
            const r = await auditRow(again.id);
            return r.sent_copy ? r : null;
          });
          assert.match(againRow.sent_copy.error, /fix the IMAP settings' password/);

          await dovecot!.stop();
          dovecot = undefined;
          await call(owner, "smtp-configs/main/imap", { method: "PATCH", body: { password: IMAP_PASSWORD } });
          const down = await send(owner, { to: "x2@example.net" });
          const downRow = await waitFor("the failed copy", async () => {
            const r = await auditRow(down.id);
            return r.sent_copy ? r : null;
          });
          assert.equal(downRow.status, "sent");
          assert.equal(downRow.sent_copy.status, "failed");
          assert.match(downRow.sent_copy.error, /connection refused|Nothing answers/i);
          assert.equal(await errorCode(await call(owner, "smtp-configs/main/imap/check", {}), 502), "imap_unreachable");
          assert.ok(!logs.includes(IMAP_PASSWORD));
        },
      );

      await t.step("the IMAP password is in no row but Vault's", async () => {
        const rows = await stack.sql`
          select to_jsonb(a)::text as t from public.email_audit_log a
          union all select to_jsonb(i)::text from public.smtp_config_imap i
          union all select to_jsonb(s)::text from public.suppressions s`;
        for (const { t } of rows) assert.ok(!t.includes(IMAP_PASSWORD));
      });

      await t.step("removing the settings removes the password from Vault", async () => {
        const settings = await body(await call(owner, "smtp-configs/main/imap", { method: "GET" }));
        const [{ secret }] = await stack.sql`
          select password_secret_id as secret from public.smtp_config_imap where config_id = ${settings
          .config_id as string}`;
        const removed = await call(owner, "smtp-configs/main/imap", { method: "DELETE" });
        assert.equal(removed.status, 200);
        const left = await stack.sql`select 1 from vault.secrets where id = ${secret}`;
        assert.equal(left.length, 0);
      });
    } finally {
      await dovecot?.stop();
      await smtp.close();
      await stack.close();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
