// Message composition end to end: what a real SMTP server receives is parsed with
// mailparser and checked part by part, header by header, byte by byte.
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { simpleParser } from "mailparser";
import { body, errorCode, startTestStack, type TestStack, type TestUser } from "./harness.ts";
import { type CaughtMessage, rawBytes, type SmtpCatcher, startSmtpCatcher } from "../local/smtp_catcher.ts";

const LIMITS = {
  MAILROOM_MAX_RECIPIENTS: "5",
  MAILROOM_MAX_MESSAGE_BYTES: "200000",
  MAILROOM_MAX_HTML_BYTES: "50000",
  MAILROOM_MAX_SUBJECT_CHARS: "120",
  MAILROOM_MAX_ATTACHMENTS: "3",
  MAILROOM_MAX_ATTACHMENT_BYTES: "100000",
};

function headerBlock(message: CaughtMessage): string {
  return message.raw.split(/\r?\n\r?\n/)[0];
}

Deno.test({
  name: "message composition",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const stack: TestStack = await startTestStack(LIMITS);
    const smtp: SmtpCatcher = await startSmtpCatcher({
      mode: "tls",
      tls: { key: stack.certs.key, cert: stack.certs.cert },
      users: { mailer: "pw" },
    });
    const user: TestUser = await stack.createUser("composer@example.com");
    const other: TestUser = await stack.createUser();
    await stack.createConfig(user, { port: smtp.port, password: "pw", from_name: "Config Name" });

    const send = async (payload: Record<string, unknown>, as: TestUser = user) => {
      smtp.clear();
      return await stack.invoke("send-email", { token: as.token, body: { to: "jane@example.com", ...payload } });
    };
    const sendOk = async (payload: Record<string, unknown>) => {
      const res = await send(payload);
      const result = await body<{ id: string; message_id: string }>(res);
      assert.equal(res.status, 200, JSON.stringify(result));
      const [message] = await smtp.waitForMessages(1);
      return { result, message, mail: await simpleParser(Buffer.from(rawBytes(message))) };
    };
    const asUser = stack.asDataApi;

    try {
      await t.step("renders the starter welcome template with escaped HTML and a text part", async () => {
        const { result, mail } = await sendOk({
          template: "welcome",
          data: {
            name: "Jane <script>alert(1)</script>",
            product: "Mailroom",
            login_url: "https://app.example.com/login?t=abc&x=1",
            tips: ["Connect your SMTP", "Send a test"],
          },
        });
        assert.equal(mail.subject, "Welcome to Mailroom, Jane <script>alert(1)</script>!");
        assert.ok(mail.html && !mail.html.includes("<script>"), "data must be escaped in HTML");
        assert.ok(mail.html && mail.html.includes("&lt;script&gt;"));
        assert.match(mail.text ?? "", /Sign in: https:\/\/app\.example\.com\/login\?t=abc&x=1/);
        assert.match(mail.text ?? "", /- Connect your SMTP/);
        const [audit] = await stack.sql`
          select a.template_id, t.name from public.email_audit_log a join public.email_templates t on t.id = a.template_id
           where a.id = ${result.id}`;
        assert.equal(audit.name, "welcome");
      });

      await t.step("lists every missing required variable with 422 template_data_missing", async () => {
        const res = await send({ template: "welcome", data: { name: "Jane" } });
        const parsed = await body<{ error: { code: string; details: { missing: string[] } } }>(res);
        assert.equal(res.status, 422);
        assert.equal(parsed.error.code, "template_data_missing");
        assert.deepEqual([...parsed.error.details.missing].sort(), ["login_url", "product"]);
        assert.equal(smtp.messages().length, 0);
      });

      await t.step("renders html-only templates with a generated plain-text alternative", async () => {
        const { mail, message } = await sendOk({
          template: "newsletter",
          data: {
            headline: "November news",
            intro: "Three things happened.",
            list_name: "Product updates",
            articles: [{ title: "Faster sends", url: "https://example.com/a", summary: "Pooling landed." }],
          },
        });
        assert.match(message.raw, /Content-Type: multipart\/alternative/i);
        assert.match(mail.text ?? "", /Faster sends \[https:\/\/example\.com\/a\]/);
        assert.match(mail.html || "", /<h2><a href="https:&#x2F;&#x2F;example.com&#x2F;a">Faster sends<\/a><\/h2>/);
      });

      await t.step(
        "uses the caller's own template before a starter of the same name, never another user's",
        async () => {
          await asUser(user, (tx) =>
            tx`insert into public.email_templates (name, subject, text, variables)
             values ('welcome', 'Own {{name}}', 'Hello {{name}} {{constructor}}{{__proto__}}{{toString}}.', '["name"]')`);
          await asUser(
            other,
            (tx) =>
              tx`insert into public.email_templates (name, subject, text) values ('private-one', 'secret', 'secret')`,
          );
          const { mail, message } = await sendOk({ template: "welcome", data: { name: "Jane" } });
          assert.equal(mail.subject, "Own Jane");
          assert.equal(mail.text?.trim(), "Hello Jane .", "no prototype properties leak into output");
          assert.match(message.raw, /Content-Type: text\/plain/i);
          assert.doesNotMatch(message.raw, /multipart\/alternative/i, "text only stays text/plain");
          assert.equal(await errorCode(await send({ template: "private-one" }), 404), "template_not_found");
        },
      );

      await t.step("refuses template data that would break the subject line", async () => {
        const res = await send({
          template: "welcome",
          data: { name: "Jane\r\nBcc: victim@example.org" },
        });
        assert.ok([400, 422].includes(res.status), `status ${res.status}`);
        await res.body?.cancel();
        assert.equal(smtp.messages().length, 0);
      });

      await t.step("encodes UTF-8 subjects and display names", async () => {
        const { mail, message } = await sendOk({
          to: { email: "joerg@example.com", name: "Jörg Müller" },
          subject: "Grüße aus Köln 👋",
          text: "Schöne Grüße",
          from_name: "Agent Ünïcode",
        });
        assert.equal(mail.subject, "Grüße aus Köln 👋");
        assert.deepEqual(mail.to && !Array.isArray(mail.to) && mail.to.value, [
          { address: "joerg@example.com", name: "Jörg Müller" },
        ]);
        assert.deepEqual(mail.from?.value, [{ address: "composer@example.com", name: "Agent Ünïcode" }]);
        assert.match(headerBlock(message), /^Subject: =\?UTF-8\?/m, "the subject is MIME-encoded");
        assert.ok([...headerBlock(message)].every((c) => c.charCodeAt(0) < 128), "headers are 7-bit");
        assert.equal(message.envelope.mailFrom, "composer@example.com", "the envelope sender is the config's");
      });

      await t.step("sends to IDN domains in punycode and removes duplicate recipients", async () => {
        const { message, mail } = await sendOk({
          to: ["joerg@bücher.de", "jane@example.com"],
          cc: ["JANE@EXAMPLE.COM", "carol@example.com"],
          bcc: ["carol@example.com", "dave@example.com"],
          text: "x",
        });
        // On the wire the domain is ASCII; smtp-server shows envelope domains decoded again.
        assert.match(headerBlock(message), /^To: joerg@xn--bcher-kva\.de, jane@example\.com$/m);
        assert.deepEqual(message.envelope.rcptTo, [
          "joerg@bücher.de",
          "jane@example.com",
          "carol@example.com",
          "dave@example.com",
        ]);
        assert.deepEqual(mail.cc && !Array.isArray(mail.cc) && mail.cc.value.map((a) => a.address), [
          "carol@example.com",
        ]);
        assert.doesNotMatch(headerBlock(message), /dave@example\.com/, "bcc stays out of the headers");
      });

      await t.step("keeps a body line that is a lone dot intact (dot-stuffing)", async () => {
        const text = "line one\n.\n..two dots\n.leading dot\nend";
        const { mail } = await sendOk({ text });
        assert.equal(mail.text?.replace(/\r\n/g, "\n").trimEnd(), text);
      });

      await t.step("passes allowlisted headers and refuses others and injections", async () => {
        const { mail, message } = await sendOk({
          text: "x",
          headers: {
            "X-Campaign": "autumn",
            "In-Reply-To": "<parent@example.com>",
            "References": "<root@example.com> <parent@example.com>",
            "List-Unsubscribe": "<https://example.com/u/1>",
          },
        });
        assert.equal(mail.headers.get("x-campaign"), "autumn");
        assert.equal(mail.inReplyTo, "<parent@example.com>");
        assert.match(headerBlock(message), /^List-Unsubscribe: <https:\/\/example\.com\/u\/1>/m);

        assert.equal(
          await errorCode(await send({ text: "x", headers: { "Bcc": "evil@example.org" } }), 400),
          "header_not_allowed",
        );
        assert.equal(
          await errorCode(await send({ text: "x", headers: { "From": "ceo@example.com" } }), 400),
          "header_not_allowed",
        );
        assert.equal(
          await errorCode(await send({ text: "x", headers: { "X-Note": "a\r\nBcc: evil@example.org" } }), 400),
          "invalid_header_value",
        );
        assert.equal(
          await errorCode(await send({ text: "x", reply_to: "r@example.com\nBcc: evil@example.org" }), 400),
          "invalid_header_value",
        );
        assert.equal(
          await errorCode(await send({ text: "x", from_name: "Boss\r\nX-Evil: 1" }), 400),
          "invalid_header_value",
        );
        assert.equal(smtp.messages().length, 0, "nothing was sent for any refused header");
      });

      await t.step("delivers attachments byte for byte, from memory only", async () => {
        const bytes = crypto.getRandomValues(new Uint8Array(5000));
        const { mail } = await sendOk({
          text: "see attached",
          attachments: [
            {
              filename: "random.bin",
              content: Buffer.from(bytes).toString("base64"),
              content_type: "application/octet-stream",
            },
            { filename: "Bericht Grüße.txt", content: Buffer.from("hallo\n").toString("base64") },
          ],
        });
        assert.equal(mail.attachments.length, 2);
        assert.deepEqual(new Uint8Array(mail.attachments[0].content), bytes);
        assert.equal(mail.attachments[0].contentType, "application/octet-stream");
        assert.equal(mail.attachments[1].filename, "Bericht Grüße.txt");
        assert.equal(mail.attachments[1].content.toString(), "hallo\n");

        const withPath = await send({ text: "x", attachments: [{ filename: "p", content: "", path: "/etc/passwd" }] });
        assert.equal(await errorCode(withPath, 400), "invalid_request");
        const href = await send({ text: "x", attachments: [{ filename: "p", href: "http://169.254.169.254/" }] });
        assert.equal(await errorCode(href, 400), "invalid_request");
        const badBase64 = await send({ text: "x", attachments: [{ filename: "a.txt", content: "not base64!" }] });
        assert.equal(await errorCode(badBase64, 400), "invalid_attachment");
        const traversal = await send({ text: "x", attachments: [{ filename: "../../etc/x", content: "aGk=" }] });
        assert.equal(await errorCode(traversal, 400), "invalid_attachment");
        const many = Array.from({ length: 4 }, (_, i) => ({ filename: `${i}.txt`, content: "aGk=" }));
        assert.equal(await errorCode(await send({ text: "x", attachments: many }), 413), "too_many_attachments");
        const big = Buffer.alloc(100_001).toString("base64");
        assert.equal(
          await errorCode(await send({ text: "x", attachments: [{ filename: "big.bin", content: big }] }), 413),
          "attachments_too_large",
        );
        assert.equal(smtp.messages().length, 0);
      });

      await t.step("enforces recipient, subject, HTML and message size limits with named errors", async () => {
        const six = Array.from({ length: 6 }, (_, i) => `r${i}@example.com`);
        const res = await send({ to: six, text: "x" });
        const parsed = await body<{ error: { code: string; details: { limit: number } } }>(res);
        assert.equal(res.status, 422);
        assert.equal(parsed.error.code, "too_many_recipients");
        assert.equal(parsed.error.details.limit, 5);

        assert.equal(await errorCode(await send({ subject: "s".repeat(121), text: "x" }), 422), "subject_too_long");
        assert.equal(await errorCode(await send({ html: "<p>" + "h".repeat(50_001) + "</p>" }), 413), "html_too_large");
        const almost = Buffer.alloc(99_000).toString("base64");
        const tooBig = await send({ text: "t".repeat(90_000), attachments: [{ filename: "a.bin", content: almost }] });
        assert.equal(await errorCode(tooBig, 413), "message_too_large");
        assert.equal(smtp.messages().length, 0);
        const audited = await stack
          .sql`select count(*)::int as n from public.email_audit_log where user_id = ${user.id} and status <> 'sent'`;
        assert.equal(audited[0].n, 0, "refused compositions leave no audit rows");
      });
    } finally {
      await smtp.close();
      await stack.close();
    }
  },
});
