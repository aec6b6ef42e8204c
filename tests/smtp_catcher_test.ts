// Integration tests for the local SMTP catcher, its certificates and the web
// inbox: real servers on random loopback ports, real nodemailer clients.
import assert from "node:assert/strict";
import { once } from "node:events";
import net from "node:net";
import { join } from "node:path";
import nodemailer from "nodemailer";
import type SMTPTransport from "nodemailer/lib/smtp-transport";
import { generateCertificates, generateSelfSigned, loadOrCreateCertificates } from "../local/certs.ts";
import {
  type CaughtMessage,
  MessageStore,
  rawBytes,
  scriptedReply,
  type SmtpCatcher,
  type SmtpCatcherOptions,
  startSmtpCatcher,
  startStallingServer,
} from "../local/smtp_catcher.ts";
import { INBOX_CSP, INBOX_LIST_CSP, startInbox } from "../local/inbox.ts";

const certs = await generateCertificates();
const users = { alice: "correct horse battery staple" };
const TIMEOUTS = {
  connectionTimeout: 3000,
  greetingTimeout: 3000,
  socketTimeout: 3000,
};

/** A nodemailer transport to a catcher that trusts only the generated CA. */
function transport(port: number, options: SMTPTransport.Options = {}) {
  return nodemailer.createTransport({
    host: "127.0.0.1",
    port,
    ...TIMEOUTS,
    ...options,
    tls: { ca: certs.caCert, servername: "localhost", ...options.tls },
  });
}

function message(subject: string, extra: Record<string, unknown> = {}) {
  return {
    from: "Sender <sender@example.test>",
    to: "Recipient <rcpt@example.test>",
    subject,
    text: `Body of ${subject}`,
    ...extra,
  };
}

async function withCatcher(
  options: SmtpCatcherOptions,
  run: (catcher: SmtpCatcher) => Promise<void>,
): Promise<void> {
  const catcher = await startSmtpCatcher(options);
  try {
    await run(catcher);
  } finally {
    await catcher.close();
  }
}

/** The nodemailer error a rejected promise carried, for asserting on `code`. */
async function smtpFailure(
  promise: Promise<unknown>,
): Promise<Error & { code?: string; responseCode?: number }> {
  try {
    await promise;
  } catch (error) {
    return error as Error & { code?: string; responseCode?: number };
  }
  assert.fail("expected the SMTP operation to fail");
}

Deno.test("SMTP catcher over implicit TLS", async (t) => {
  await withCatcher(
    { mode: "tls", tls: certs, users },
    async (catcher) => {
      await t.step(
        "delivers an authenticated message and keeps its bytes",
        async () => {
          const info = await transport(catcher.port, {
            secure: true,
            auth: { user: "alice", pass: users.alice },
          }).sendMail(message("Implicit TLS hello"));
          assert.deepEqual(info.accepted, ["rcpt@example.test"]);

          const [caught] = await catcher.waitForMessages(1);
          assert.match(caught.raw, /^Subject: Implicit TLS hello\r$/m);
          assert.equal(caught.secure, true);
          assert.equal(caught.authUser, "alice");
          assert.deepEqual(caught.envelope, {
            mailFrom: "sender@example.test",
            rcptTo: ["rcpt@example.test"],
          });
          assert.equal(caught.size, new TextEncoder().encode(caught.raw).length);
          assert.equal(caught.rawEncoding, "utf8");
          assert.ok(!Number.isNaN(Date.parse(caught.receivedAt)));
        },
      );

      await t.step("never keeps the password", () => {
        const stored = JSON.stringify(catcher.messages());
        assert.ok(!stored.includes(users.alice));
      });

      await t.step("rejects a wrong password with EAUTH", async () => {
        const error = await smtpFailure(
          transport(catcher.port, {
            secure: true,
            auth: { user: "alice", pass: "wrong" },
          }).sendMail(message("Should not arrive")),
        );
        assert.equal(error.code, "EAUTH");
        assert.equal(error.responseCode, 535);
        assert.equal(catcher.messages().length, 1);
      });

      await t.step("refuses mail from a client that did not log in", async () => {
        const error = await smtpFailure(
          transport(catcher.port, { secure: true }).sendMail(
            message("Anonymous"),
          ),
        );
        assert.equal(error.code, "EENVELOPE");
        assert.equal(catcher.messages().length, 1);
      });
    },
  );
});

Deno.test("SMTP catcher with STARTTLS", async (t) => {
  await t.step("upgrades the connection and authenticates", async () => {
    await withCatcher({ mode: "starttls", tls: certs, users }, async (catcher) => {
      await transport(catcher.port, {
        requireTLS: true,
        auth: { user: "alice", pass: users.alice },
      }).sendMail(message("STARTTLS hello"));
      const [caught] = await catcher.waitForMessages(1);
      assert.equal(caught.secure, true);
      assert.equal(caught.authUser, "alice");
      assert.match(caught.raw, /^Subject: STARTTLS hello\r$/m);
    });
  });

  await t.step(
    "a client requiring TLS refuses a server that hides STARTTLS",
    async () => {
      await withCatcher(
        { mode: "starttls", tls: certs, users, hideStartTls: true },
        async (catcher) => {
          const error = await smtpFailure(
            transport(catcher.port, {
              requireTLS: true,
              auth: { user: "alice", pass: users.alice },
            }).sendMail(message("Downgraded")),
          );
          assert.equal(error.code, "ETLS");
          assert.equal(catcher.messages().length, 0);
        },
      );
    },
  );
});

Deno.test("SMTP catcher without TLS", async (t) => {
  await withCatcher(
    { mode: "plain", maxSize: 2048 },
    async (catcher) => {
      await t.step("accepts mail without login in plain mode", async () => {
        await transport(catcher.port, { ignoreTLS: true }).sendMail(
          message("Plain hello"),
        );
        const [caught] = await catcher.waitForMessages(1);
        assert.equal(caught.secure, false);
        assert.equal(caught.authUser, undefined);
      });

      await t.step("answers 552 to a message over maxSize", async () => {
        const error = await smtpFailure(
          transport(catcher.port, { ignoreTLS: true }).sendMail(
            message("Too big", { text: "x".repeat(4096) }),
          ),
        );
        assert.equal(error.responseCode, 552);
        assert.equal(catcher.messages().length, 1);
      });
    },
  );
});

Deno.test("generated certificates", async (t) => {
  await t.step(
    "a client trusting only the generated CA verifies the server as localhost",
    async () => {
      await withCatcher({ mode: "tls", tls: certs }, async (catcher) => {
        assert.equal(
          await transport(catcher.port, { secure: true }).verify(),
          true,
        );
      });
    },
  );

  await t.step(
    "the same client rejects a self-signed certificate",
    async () => {
      const untrusted = await generateSelfSigned();
      await withCatcher({ mode: "tls", tls: untrusted }, async (catcher) => {
        const error = await smtpFailure(
          transport(catcher.port, { secure: true }).verify(),
        );
        assert.equal(error.code, "ESOCKET");
        assert.match(error.message, /self[- ]signed certificate/i);
      });
    },
  );

  await t.step("a name outside the certificate is refused", async () => {
    await withCatcher({ mode: "tls", tls: certs }, async (catcher) => {
      const error = await smtpFailure(
        transport(catcher.port, {
          secure: true,
          tls: { servername: "mail.example.test" },
        }).verify(),
      );
      assert.equal(error.code, "ESOCKET");
      assert.match(error.message, /does not match certificate's altnames/);
    });
  });

  await t.step("loadOrCreateCertificates keeps the CA across restarts", async () => {
    const dir = join(await Deno.makeTempDir(), "certs");
    try {
      const first = await loadOrCreateCertificates(dir);
      const second = await loadOrCreateCertificates(dir);
      assert.deepEqual(second, first);
      assert.match(first.key, /^-----BEGIN PRIVATE KEY-----/);
      const keyMode = (await Deno.stat(join(dir, "key.pem"))).mode;
      if (keyMode !== null) assert.equal(keyMode & 0o077, 0);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
});

Deno.test("SMTP catcher rejects recipients it is told to", async (t) => {
  await withCatcher(
    {
      mode: "tls",
      tls: certs,
      rejectRecipients: (address) => address.startsWith("bounce"),
    },
    async (catcher) => {
      await t.step("a partly rejected envelope delivers to the rest", async () => {
        const info = await transport(catcher.port, { secure: true }).sendMail(
          message("Partial", {
            to: ["ok@example.test", "bounce@example.test"],
          }),
        );
        assert.deepEqual(info.accepted, ["ok@example.test"]);
        assert.deepEqual(info.rejected, ["bounce@example.test"]);
        const [caught] = await catcher.waitForMessages(1);
        assert.deepEqual(caught.envelope.rcptTo, ["ok@example.test"]);
      });

      await t.step("a fully rejected envelope fails with EENVELOPE", async () => {
        const error = await smtpFailure(
          transport(catcher.port, { secure: true }).sendMail(
            message("Nobody", { to: "bounce@example.test" }),
          ),
        );
        assert.equal(error.code, "EENVELOPE");
        assert.equal(catcher.messages().length, 1);
      });
    },
  );
});

Deno.test("waiting for messages", async (t) => {
  await withCatcher({ mode: "plain" }, async (catcher) => {
    await t.step("resolves as soon as the count is reached", async () => {
      const waiting = catcher.waitForMessages(2, 3000);
      const send = transport(catcher.port, { ignoreTLS: true });
      await send.sendMail(message("One"));
      await send.sendMail(message("Two"));
      const caught = await waiting;
      assert.deepEqual(
        caught.map((m) => /^Subject: (.*)\r$/m.exec(m.raw)?.[1]),
        ["One", "Two"],
      );
    });

    await t.step("rejects with a clear error at the deadline", async () => {
      await assert.rejects(
        catcher.waitForMessages(3, 50),
        /Timed out after 50 ms waiting for 3 message\(s\); 2 received/,
      );
    });

    await t.step("clear() forgets every message", () => {
      catcher.clear();
      assert.equal(catcher.messages().length, 0);
    });
  });
});

Deno.test("message store persistence", async (t) => {
  const dir = await Deno.makeTempDir();
  try {
    await t.step("a new store on the same directory reloads mail", async () => {
      const store = new MessageStore({ dir });
      await withCatcher({ mode: "plain", store }, async (catcher) => {
        await transport(catcher.port, { ignoreTLS: true }).sendMail(
          message("Persisted"),
        );
        await catcher.waitForMessages(1);
      });
      const reloaded = new MessageStore({ dir });
      assert.deepEqual(reloaded.list(), store.list());
    });

    await t.step("keeps bytes that are not UTF-8 exact", () => {
      const bytes = new Uint8Array([
        ...new TextEncoder().encode("Subject: latin1\r\n\r\ncaf"),
        0xe9,
        0x0d,
        0x0a,
      ]);
      const latin1: CaughtMessage = {
        id: "latin1-message",
        receivedAt: new Date().toISOString(),
        envelope: { mailFrom: "", rcptTo: ["rcpt@example.test"] },
        secure: false,
        raw: String.fromCharCode(...bytes),
        rawEncoding: "latin1",
        size: bytes.length,
      };
      new MessageStore({ dir }).add(latin1);
      const reloaded = new MessageStore({ dir }).get("latin1-message");
      assert.ok(reloaded);
      assert.deepEqual(rawBytes(reloaded), bytes);
      assert.equal(reloaded.rawEncoding, "latin1");
    });

    await t.step("remove() forgets one message and its files, and bumps the version", () => {
      const store = new MessageStore({ dir });
      const before = store.version;
      assert.equal(store.remove("latin1-message"), true);
      assert.equal(store.remove("latin1-message"), false);
      assert.equal(store.version, before + 1);
      assert.equal(new MessageStore({ dir }).get("latin1-message"), undefined);
      assert.equal(new MessageStore({ dir }).size, store.size);
    });

    await t.step("clear() deletes the stored files", async () => {
      new MessageStore({ dir }).clear();
      assert.equal(new MessageStore({ dir }).size, 0);
      assert.deepEqual(await Array.fromAsync(Deno.readDir(dir)), []);
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("stalling server", async (t) => {
  const stalling = await startStallingServer();
  try {
    await t.step("never greets, so clients hit their greeting timeout", async () => {
      const error = await smtpFailure(
        transport(stalling.port, { ignoreTLS: true, greetingTimeout: 200 })
          .verify(),
      );
      assert.equal(error.code, "ETIMEDOUT");
    });

    await t.step("close() drops connected clients", async () => {
      const socket = net.connect(stalling.port, "127.0.0.1");
      await once(socket, "connect");
      const closed = once(socket, "close");
      await stalling.close();
      await closed;
      assert.equal(socket.destroyed, true);
    });
  } finally {
    await stalling.close();
  }
});

Deno.test("web inbox", async (t) => {
  const store = new MessageStore();
  const catcher = await startSmtpCatcher({ mode: "plain", store });
  const inbox = await startInbox({ port: 0, store });
  const base = `http://127.0.0.1:${inbox.port}`;
  try {
    await transport(catcher.port, { ignoreTLS: true }).sendMail(
      message("Inbox <b>subject</b>", {
        html: '<p onclick="steal()">Hi</p><script>alert("xss")</script>' +
          '<img src="https://tracker.example/p.gif">',
      }),
    );
    const [caught] = await catcher.waitForMessages(1);

    await t.step("GET / is a shell whose only script is same-origin, none inline", async () => {
      const response = await fetch(`${base}/`);
      const body = await response.text();
      assert.equal(response.status, 200);
      assert.equal(response.headers.get("content-security-policy"), INBOX_LIST_CSP);
      assert.match(INBOX_LIST_CSP, /script-src 'self';/);
      assert.deepEqual([...body.matchAll(/<script[^>]*>/g)].map((m) => m[0]), ['<script src="/inbox.js" defer>']);
      assert.match(body, /<script src="\/inbox.js" defer><\/script>/);
      const script = await fetch(`${base}/inbox.js`);
      assert.match(script.headers.get("content-type") ?? "", /^text\/javascript/);
      assert.doesNotMatch(await script.text(), /innerHTML/);
    });

    await t.step(
      "GET /messages/:id sandboxes the HTML part under a no-script CSP",
      async () => {
        const response = await fetch(`${base}/messages/${caught.id}`);
        const body = await response.text();
        assert.equal(response.status, 200);
        const csp = response.headers.get("content-security-policy") ?? "";
        assert.equal(csp, INBOX_CSP);
        assert.match(csp, /default-src 'none'/);
        assert.doesNotMatch(csp, /script-src/);
        assert.match(body, /<iframe sandbox="" srcdoc="/);
        assert.ok(!/<script/i.test(body));
        assert.ok(body.includes("&lt;script&gt;"));
        assert.ok(body.includes("Body of Inbox"));
      },
    );

    await t.step("GET /messages/:id/raw serves the exact message", async () => {
      const response = await fetch(`${base}/messages/${caught.id}/raw`);
      assert.match(response.headers.get("content-type") ?? "", /^text\/plain/);
      assert.deepEqual(
        new Uint8Array(await response.arrayBuffer()),
        rawBytes(caught),
      );
    });

    await t.step("GET /api/messages lists summaries as JSON", async () => {
      const response = await fetch(`${base}/api/messages`);
      const { messages } = await response.json();
      assert.equal(messages.length, 1);
      assert.equal(messages[0].id, caught.id);
      assert.equal(messages[0].subject, "Inbox <b>subject</b>");
      assert.equal(messages[0].raw, undefined);
    });

    await t.step("unknown messages are 404", async () => {
      const response = await fetch(`${base}/messages/nope`);
      await response.body?.cancel();
      assert.equal(response.status, 404);
    });

    await t.step("DELETE /api/messages clears the inbox", async () => {
      const response = await fetch(`${base}/api/messages`, {
        method: "DELETE",
      });
      await response.body?.cancel();
      assert.equal(response.status, 204);
      assert.equal(store.size, 0);
    });
  } finally {
    await inbox.close();
    await catcher.close();
  }
});

Deno.test("scripted replies by recipient address", () => {
  assert.deepEqual(scriptedReply("temp-451@example.com"), {
    at: "rcpt",
    code: 451,
    text: "4.2.0 Recipient temporarily unavailable, try again in 60 seconds (catcher: temp-)",
  });
  assert.equal(scriptedReply("perm-550+jane@example.com")?.at, "rcpt");
  assert.equal((scriptedReply("data-554@example.com") as { code: number }).code, 554);
  assert.deepEqual(scriptedReply("slow-500@example.com"), { at: "delay", seconds: 120 });
  for (const ordinary of ["jane@example.com", "temp-550@example.com", "perm-451@example.com", "temp-200@x.com"]) {
    assert.equal(scriptedReply(ordinary), undefined, ordinary);
  }
});
