// TLS failures end to end, against real TLS servers: each says what went wrong and is never
// reported as a retryable connection loss. Certificates come from a second local CA that the
// functions trust; the scripted peer (a stand-in) answers STARTTLS and then sends garbage.
import assert from "node:assert/strict";
import { body, type ErrorBody, startTestStack } from "./harness.ts";
import { generateCertificates, generateSelfSigned } from "../local/certs.ts";
import { startSmtpCatcher } from "../local/smtp_catcher.ts";
import { freePort, ROOT } from "../local/postgres.ts";
import { startScriptedSmtp } from "./scripted_smtp.ts";

/** A TLS 1.0-only SMTP server (Python's ssl), implicit TLS, on loopback. */
async function startTls10Server(cert: string, key: string): Promise<{ port: number; close(): Promise<void> }> {
  const dir = await Deno.makeTempDir({ prefix: "mailroom-tls10-" });
  await Deno.writeTextFile(`${dir}/cert.pem`, cert);
  await Deno.writeTextFile(`${dir}/key.pem`, key);
  const port = freePort();
  const script = `
import socket, ssl, sys
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.minimum_version = ssl.TLSVersion.TLSv1
ctx.maximum_version = ssl.TLSVersion.TLSv1
ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
ctx.load_cert_chain(sys.argv[2], sys.argv[3])
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", int(sys.argv[1]))); srv.listen(5)
print("ready", flush=True)
while True:
    conn, _ = srv.accept()
    try:
        ctx.wrap_socket(conn, server_side=True).sendall(b"220 tls10.example ESMTP\\r\\n")
    except Exception:
        conn.close()
`;
  const child = new Deno.Command("/usr/bin/python3", {
    args: ["-c", script, String(port), `${dir}/cert.pem`, `${dir}/key.pem`],
    stdout: "piped",
    stderr: "null",
    cwd: ROOT,
  }).spawn();
  const reader = child.stdout.getReader();
  await reader.read(); // "ready"
  return {
    port,
    close: async () => {
      child.kill();
      await child.status;
      reader.releaseLock();
      await child.stdout.cancel().catch(() => {});
      await Deno.remove(dir, { recursive: true });
    },
  };
}

Deno.test({
  name: "TLS failures, told apart",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const good = await generateCertificates();
    const otherName = await generateCertificates({ names: ["mail.example.test"] });
    const expired = await generateCertificates({ expired: true });
    const stack = await startTestStack({
      MAILROOM_ALLOW_PLAINTEXT_SMTP: "true",
      MAILROOM_SMTP_CA_CERTS: [good.caCert, otherName.caCert, expired.caCert].join("\n"),
    });
    const user = await stack.createUser();
    let n = 0;
    const sendVia = async (port: number, security: "tls" | "starttls") => {
      const name = `tls${++n}`;
      await stack.createConfig(user, { name, port, security, password: "pw", is_default: false });
      const res = await stack.invoke("send-email", {
        token: user.token,
        body: { to: "a@example.com", text: "x", config: name },
      });
      return { status: res.status, error: (await body<ErrorBody>(res)).error };
    };

    try {
      await t.step("a certificate for another name: smtp_tls_name_mismatch", async () => {
        const server = await startSmtpCatcher({ mode: "tls", tls: otherName });
        try {
          const { status, error } = await sendVia(server.port, "tls");
          assert.equal(status, 502);
          assert.deepEqual([error.code, error.details?.retryable], ["smtp_tls_name_mismatch", false]);
        } finally {
          await server.close();
        }
      });

      await t.step("an expired certificate: smtp_tls_certificate_expired", async () => {
        const server = await startSmtpCatcher({ mode: "tls", tls: expired });
        try {
          const { error } = await sendVia(server.port, "tls");
          assert.deepEqual([error.code, error.details?.retryable], ["smtp_tls_certificate_expired", false]);
          const certificate = error.details?.certificate as { expired: boolean; subject: string; valid_to: string };
          assert.deepEqual([certificate.expired, certificate.subject], [true, "localhost"]);
          assert.ok(Date.parse(certificate.valid_to) < Date.now());
          assert.match(error.message, /expired on/);
        } finally {
          await server.close();
        }
      });

      await t.step("a self-signed certificate: smtp_tls_untrusted, saying it is self-signed", async () => {
        const server = await startSmtpCatcher({ mode: "tls", tls: await generateSelfSigned() });
        try {
          const { error } = await sendVia(server.port, "tls");
          assert.equal(error.code, "smtp_tls_untrusted");
          assert.match(error.message, /self-signed/);
          assert.equal((error.details?.certificate as { self_signed: boolean }).self_signed, true);
        } finally {
          await server.close();
        }
      });

      await t.step("a server that speaks only TLS 1.0: smtp_tls_failed, not retryable", async () => {
        const server = await startTls10Server(good.cert, good.key);
        try {
          const { error } = await sendVia(server.port, "tls");
          assert.deepEqual([error.code, error.details?.retryable], ["smtp_tls_failed", false]);
        } finally {
          await server.close();
        }
      });

      await t.step("security tls aimed at a STARTTLS port: smtp_tls_failed", async () => {
        const server = await startSmtpCatcher({ mode: "starttls", tls: good });
        try {
          const { error } = await sendVia(server.port, "tls");
          assert.deepEqual([error.code, error.details?.retryable], ["smtp_tls_failed", false]);
          assert.equal(server.messages().length, 0);
        } finally {
          await server.close();
        }
      });

      await t.step("garbage after STARTTLS: smtp_tls_failed, never a retryable connection loss", async () => {
        const server = await startScriptedSmtp({ extensions: ["STARTTLS", "AUTH PLAIN"] });
        try {
          const { error } = await sendVia(server.port, "starttls");
          assert.deepEqual([error.code, error.details?.retryable], ["smtp_tls_failed", false]);
          assert.ok(!server.transcript().some((line) => line.startsWith("AUTH")), "no credentials were sent");
        } finally {
          await server.close();
        }
      });

      await t.step("security starttls aimed at an implicit-TLS port: a timeout with a hint", async () => {
        const server = await startSmtpCatcher({ mode: "tls", tls: good });
        try {
          const { error } = await sendVia(server.port, "starttls");
          assert.equal(error.code, "smtp_connect_timeout");
          assert.match(String(error.details?.hint), /security "tls"/);
        } finally {
          await server.close();
        }
      });
    } finally {
      await stack.close();
    }
  },
});
