// Stored attachments (issue 31): a file uploaded once (multipart or JSON, or fetched once from an
// HTTPS URL through the egress policy) and attached by id. Against the real stack, a real
// database and an SMTP server that records what it receives; the file server is a real HTTPS
// server on loopback with the stack's certificates.
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import { simpleParser } from "mailparser";
import { generateCertificates } from "../local/certs.ts";
import { body, type ErrorBody, startTestStack, type TestStack } from "./harness.ts";
import { startScriptedSmtp } from "./scripted_smtp.ts";

type Attachment = { id: string; filename: string; content_type: string; size_bytes: number; sha256: string };

/** Bytes that file-type knows as a PDF, then noise: a file no one would mistake for text. */
function pdfBytes(size: number, seed: number): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(size);
  for (let i = 0; i < size; i++) bytes[i] = (i * 31 + seed * 7 + (i >> 8)) & 0xff;
  bytes.set(new TextEncoder().encode("%PDF-1.7\n"), 0);
  return bytes;
}

const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");
const MAX_FILE = 300_000;

Deno.test({
  name: "stored attachments: upload once, attach by id, fetched by URL only where the egress policy allows",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    // A real HTTPS file server on loopback: /report.pdf, a redirect to 127.0.0.1, and one too large.
    const certs = await generateCertificates();
    const file = pdfBytes(40_000, 1);
    let served = 0;
    const files: Deno.HttpServer<Deno.NetAddr> = Deno.serve({
      port: 0,
      hostname: "127.0.0.1",
      cert: certs.cert,
      key: certs.key,
      onListen: () => {},
    }, (req): Response => {
      const path = new URL(req.url).pathname;
      if (path === "/report.pdf") {
        served++;
        return new Response(file, { headers: { "content-type": "application/pdf" } });
      }
      if (path === "/to-loopback") return Response.redirect(`https://127.0.0.1:${files.addr.port}/report.pdf`, 302);
      if (path === "/huge") return new Response(new Uint8Array(MAX_FILE + 1));
      return new Response("no", { status: 404 });
    });
    const filesPort = files.addr.port;
    const stack: TestStack = await startTestStack({
      MAILROOM_ALLOW_PLAINTEXT_SMTP: "true",
      MAILROOM_ATTACHMENT_MAX_BYTES: String(MAX_FILE),
      MAILROOM_OAUTH_CA_CERTS: certs.caCert,
      MAILROOM_EGRESS_ALLOWLIST: `localhost,localhost:${filesPort}`,
    });
    const smtp = await startScriptedSmtp({ extensions: ["PIPELINING"] });
    const upload = (token: string, form: FormData) =>
      fetch(`${stack.url}/functions/v1/attachments`, {
        method: "POST",
        headers: { authorization: `Bearer ${token}` },
        body: form,
      });
    const call = (token: string, path: string, payload?: unknown, method = "POST") =>
      stack.invoke(path, { token, method, ...(payload === undefined ? {} : { body: payload }) });
    const failure = async (res: Response, status: number) => {
      const parsed = await body<ErrorBody>(res);
      assert.equal(res.status, status, JSON.stringify(parsed));
      return parsed.error;
    };
    const setup = async () => {
      const user = await stack.createUser();
      await stack.createConfig(user, { port: smtp.port, security: "none", username: null });
      return user;
    };
    const uploadPdf = async (token: string, bytes: Uint8Array<ArrayBuffer> = file, name = "report.pdf") => {
      const form = new FormData();
      form.append("file", new File([bytes], name, { type: "application/octet-stream" }));
      const res = await upload(token, form);
      return { res, stored: await body<Attachment>(res) };
    };

    try {
      await t.step("a multipart upload is stored once, typed by its bytes, and found again by its bytes", async () => {
        const user = await setup();
        const first = await uploadPdf(user.token);
        assert.equal(first.res.status, 201, JSON.stringify(first.stored));
        assert.equal(first.stored.filename, "report.pdf");
        assert.equal(first.stored.content_type, "application/pdf");
        assert.equal(first.stored.size_bytes, file.byteLength);
        assert.equal(first.stored.sha256, sha256(file));
        // The same bytes, name and type again (an agent's retry): the same attachment, 200.
        const again = await uploadPdf(user.token);
        assert.equal(again.res.status, 200);
        assert.equal(again.stored.id, first.stored.id);
        const list = await body<{ attachments: Attachment[] }>(await call(user.token, "attachments", undefined, "GET"));
        assert.deepEqual(list.attachments.map((a) => a.id), [first.stored.id]);
        const one = await body<Attachment>(await call(user.token, `attachments/${first.stored.id}`, undefined, "GET"));
        assert.equal(one.sha256, sha256(file));
        assert.equal((one as Record<string, unknown>).content, undefined, "the record never carries the bytes");
      });

      await t.step(
        "a program dressed as a document is refused, on upload and in a send; a wrong label is corrected",
        async () => {
          const user = await setup();
          const exe = new Uint8Array(2048);
          exe.set([0x4d, 0x5a, 0x90, 0x00, 0x03], 0);
          const disguised = await uploadPdf(user.token, exe, "invoice.pdf");
          assert.equal(disguised.res.status, 422);
          const declared = await call(user.token, "attachments", {
            filename: "invoice.bin",
            content: Buffer.from(exe).toString("base64"),
            content_type: "application/pdf",
          });
          const error = await failure(declared, 422);
          assert.equal(error.code, "attachment_type_mismatch");
          assert.deepEqual(error.details, { declared: "application/pdf", detected: "application/x-msdownload" });
          // Inline in a send, and a stored program renamed in the send: refused the same way, nothing sent.
          const before = smtp.messages().length;
          const inline = await call(user.token, "send-email", {
            to: "victim@example.com",
            subject: "invoice",
            text: "x",
            attachments: [{ filename: "invoice.pdf", content: Buffer.from(exe).toString("base64") }],
          });
          assert.equal((await failure(inline, 422)).code, "attachment_type_mismatch");
          const program = await uploadPdf(user.token, exe, "setup.exe");
          assert.equal(program.res.status, 201, JSON.stringify(program.stored));
          const renamed = await call(user.token, "send-email", {
            to: "victim@example.com",
            subject: "invoice",
            text: "x",
            attachments: [{ id: program.stored.id, filename: "invoice.pdf" }],
          });
          assert.equal((await failure(renamed, 422)).code, "attachment_type_mismatch");
          assert.equal(smtp.messages().length, before);
          // A PDF declared as a PNG is no threat: it is stored as what it is. A CSV starting "MZ" is text.
          const relabelled = await call(user.token, "attachments", {
            filename: "notes.bin",
            content: Buffer.from(file).toString("base64"),
            content_type: "image/png",
          });
          assert.equal((await body<Attachment>(relabelled)).content_type, "application/pdf");
          const csv = await call(user.token, "attachments", { filename: "models.csv", content: btoa("MZ,3\nBMW,4\n") });
          assert.equal((await body<Attachment>(csv)).content_type, "text/csv");
        },
      );

      await t.step("an oversized upload is refused while it is read, not after", async () => {
        const user = await setup();
        // A body of unknown length (chunked), far larger than the limit: count what was pulled.
        const total = MAX_FILE * 100;
        const chunk = new Uint8Array(16 * 1024);
        let pulled = 0;
        const stream = new ReadableStream<Uint8Array>({
          pull(controller) {
            if (pulled >= total) return controller.close();
            pulled += chunk.byteLength;
            controller.enqueue(chunk);
          },
        });
        const res = await fetch(`${stack.url}/functions/v1/attachments`, {
          method: "POST",
          headers: { authorization: `Bearer ${user.token}`, "content-type": "multipart/form-data; boundary=x" },
          body: stream,
        });
        const error = await failure(res, 413);
        assert.equal(error.code, "attachment_too_large");
        assert.equal(error.details?.limit_bytes, MAX_FILE);
        assert.ok(pulled < total / 2, `the function stopped reading: ${pulled} of ${total} bytes pulled`);
        // With a Content-Length over the limit, nothing is read at all.
        const declared = await fetch(`${stack.url}/functions/v1/attachments`, {
          method: "POST",
          headers: { authorization: `Bearer ${user.token}`, "content-type": "application/json" },
          body: JSON.stringify({ filename: "a.bin", content: "A".repeat(MAX_FILE * 2) }),
        });
        assert.equal((await failure(declared, 413)).code, "attachment_too_large");
      });

      await t.step("send-email attaches a stored file by id, byte for byte; another user's id is a 404", async () => {
        const user = await setup();
        const { stored } = await uploadPdf(user.token);
        const res = await call(user.token, "send-email", {
          to: "reader@example.com",
          subject: "by id",
          text: "See the report",
          // An id in capitals is the same id.
          attachments: [{ id: stored.id }, { id: stored.id.toUpperCase(), filename: "copy.pdf" }],
        });
        assert.equal(res.status, 200, JSON.stringify(await body(res.clone())));
        const received = smtp.messages().find((m) => m.data.includes("Subject: by id"))!;
        const mail = await simpleParser(Buffer.from(received.data));
        assert.deepEqual(mail.attachments.map((a) => a.filename), ["report.pdf", "copy.pdf"]);
        for (const attachment of mail.attachments) {
          assert.equal(attachment.contentType, "application/pdf");
          assert.equal(sha256(attachment.content), sha256(file));
        }

        const other = await setup();
        const before = smtp.messages().length;
        const stolen = await call(other.token, "send-email", {
          to: "reader@example.com",
          subject: "not mine",
          text: "x",
          attachments: [{ id: stored.id }],
        });
        const error = await failure(stolen, 404);
        assert.equal(error.code, "attachment_not_found");
        assert.equal(smtp.messages().length, before, "nothing was sent");
        assert.equal(
          (await failure(await call(other.token, `attachments/${stored.id}`, undefined, "GET"), 404)).code,
          "attachment_not_found",
        );
        assert.equal(
          (await failure(await call(other.token, `attachments/${stored.id}`, undefined, "DELETE"), 404)).code,
          "attachment_not_found",
        );
      });

      await t.step("the same file inline or by id is the same email (duplicate_send)", async () => {
        const user = await setup();
        const { stored } = await uploadPdf(user.token);
        const email = { to: "dup@example.com", subject: "same file", text: "x" };
        const first = await call(user.token, "send-email", { ...email, attachments: [{ id: stored.id }] });
        assert.equal(first.status, 200);
        const inline = await call(user.token, "send-email", {
          ...email,
          attachments: [{ filename: "report.pdf", content: Buffer.from(file).toString("base64") }],
        });
        assert.equal((await failure(inline, 409)).code, "duplicate_send");
      });

      await t.step(
        "a batch of 1,000 carries one stored file: bytes once in Postgres, intact in every message",
        async () => {
          const user = await setup();
          const bytes = pdfBytes(20_000, 2);
          const { stored } = await uploadPdf(user.token, bytes, "terms.pdf");
          await stack.sql`update public.user_smtp_configs set max_per_minute = 10000, max_per_day = 1000000
                         where user_id = ${user.id}`;
          const recipients = Array.from({ length: 1000 }, (_, i) => `r${i}@example.com`);
          const res = await call(user.token, "send-bulk", {
            recipients,
            subject: "terms",
            text: "The new terms are attached",
            attachments: [{ id: stored.id }],
          });
          const accepted = await body<{ batch_id: string; queued: number }>(res);
          assert.equal(res.status, 202, JSON.stringify(accepted));
          assert.equal(accepted.queued, 1000);
          const [held] = await stack.sql<
            { files: number; file_bytes: number; payload_bytes: number; content_bytes: number }[]
          >`
          select (select count(*)::int from public.attachments where user_id = ${user.id}) as files,
                 (select sum(octet_length(content))::int from public.attachments where user_id = ${user.id}) as file_bytes,
                 (select sum(octet_length(payload::text))::int from public.email_audit_log
                   where batch_id = ${accepted.batch_id}) as payload_bytes,
                 (select octet_length(content::text) from public.email_batches where id = ${accepted.batch_id}) as content_bytes`;
          assert.equal(held.files, 1);
          assert.equal(held.file_bytes, bytes.byteLength);
          assert.ok(held.payload_bytes + held.content_bytes < bytes.byteLength * 5, JSON.stringify(held));
          // The claim counts what the worker will hold for each row: the file, as base64.
          const [{ min }] = await stack.sql<{ min: number }[]>`
          select min(payload_bytes)::int as min from public.email_audit_log where batch_id = ${accepted.batch_id}`;
          assert.ok(min > bytes.byteLength, `each row counts the file it names (${min} bytes)`);

          const before = smtp.messages().length;
          const report = await stack.drainOutbox();
          assert.equal(report.sent, 1000, JSON.stringify(report));
          const batch = smtp.messages().slice(before);
          assert.equal(batch.length, 1000);
          const expected = sha256(bytes);
          for (const message of batch) {
            const mail = await simpleParser(Buffer.from(message.data));
            assert.equal(mail.attachments.length, 1);
            assert.equal(mail.attachments[0].filename, "terms.pdf");
            assert.equal(sha256(mail.attachments[0].content), expected);
          }
        },
      );

      await t.step("a file a waiting message needs cannot be deleted until that message is done", async () => {
        const user = await setup();
        const { stored } = await uploadPdf(user.token);
        const scheduled = await call(user.token, "send-email", {
          to: "later@example.com",
          subject: "later",
          text: "x",
          attachments: [{ id: stored.id }],
          scheduled_at: new Date(Date.now() + 3_600_000).toISOString(),
        });
        const { id } = await body<{ id: string }>(scheduled);
        assert.equal(scheduled.status, 202);
        const refused = await failure(await call(user.token, `attachments/${stored.id}`, undefined, "DELETE"), 409);
        assert.equal(refused.code, "attachment_in_use");
        assert.equal(refused.details?.messages, 1);
        assert.equal((await call(user.token, `send-email/${id}/cancel`)).status, 200);
        const deleted = await call(user.token, `attachments/${stored.id}`, undefined, "DELETE");
        assert.deepEqual(await body(deleted), { id: stored.id, deleted: true });
        assert.equal(
          (await failure(await call(user.token, `attachments/${stored.id}`, undefined, "GET"), 404)).code,
          "attachment_not_found",
        );
      });

      await t.step(
        "a URL is fetched once and stored; 127.0.0.1, a redirect to it, and a huge file are refused",
        async () => {
          const user = await setup();
          const url = `https://localhost:${filesPort}/report.pdf`;
          const res = await call(user.token, "send-email", {
            to: ["u1@example.com", "u2@example.com"],
            subject: "by url",
            text: "x",
            attachments: [{ url }],
          });
          assert.equal(res.status, 200, JSON.stringify(await body(res.clone())));
          const mail = await simpleParser(
            Buffer.from(smtp.messages().find((m) => m.data.includes("Subject: by url"))!.data),
          );
          assert.equal(mail.attachments[0].filename, "report.pdf");
          assert.equal(sha256(mail.attachments[0].content), sha256(file));
          const list = await body<{ attachments: (Attachment & { source_url: string })[] }>(
            await call(user.token, "attachments", undefined, "GET"),
          );
          assert.equal(list.attachments.length, 1);
          assert.equal(list.attachments[0].source_url, url);
          assert.equal(served, 1);
          // The same URL spelled in capitals is the same stored file (fetched again: a URL may change).
          const shouted = await call(user.token, "attachments", {
            url: url.replace("https://localhost", "HTTPS://LOCALHOST"),
          });
          assert.equal((await body<Attachment>(shouted)).id, list.attachments[0].id);

          const refusedUrl = async (target: string, status: number) =>
            (await failure(
              await call(user.token, "send-email", {
                to: "u@example.com",
                subject: `refused ${target}`,
                text: "x",
                attachments: [{ url: target }],
              }),
              status,
            )).code;
          assert.equal(await refusedUrl(`https://127.0.0.1:${filesPort}/report.pdf`, 422), "attachment_url_forbidden");
          assert.equal(await refusedUrl(`https://localhost:${filesPort}/to-loopback`, 422), "attachment_url_forbidden");
          assert.equal(await refusedUrl(`https://localhost:${filesPort}/huge`, 413), "attachment_too_large");
          assert.equal(await refusedUrl(`http://localhost:${filesPort}/report.pdf`, 400), "attachment_url_invalid");
          assert.equal(served, 2, "the refused redirect never reached the file");
        },
      );
    } finally {
      await smtp.close();
      await stack.close();
      await files.shutdown();
    }
  },
});
