// The local inbox in a real browser: headless Chromium (Debian's `chromium`, driven by
// playwright-core) against a real SMTP catcher and the inbox server, with mail sent over SMTP
// by nodemailer. What a developer does every day: watch mail arrive, search, open, download an
// attachment, delete, and page through thousands of messages.
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import nodemailer from "nodemailer";
import { type Browser, chromium, type Page } from "playwright-core";
import { MessageStore, type SmtpCatcher, startSmtpCatcher } from "../local/smtp_catcher.ts";
import { contentDisposition, type Inbox, startInbox } from "../local/inbox.ts";

const CHROMIUM = Deno.env.get("CHROMIUM_PATH") ?? "/usr/bin/chromium";
/** Long enough for a poll (1 s) and a redraw on a loaded machine; events end waits sooner. */
const WAIT_MS = 15_000;

interface Setup {
  store: MessageStore;
  catcher: SmtpCatcher;
  inbox: Inbox;
  base: string;
  browser: Browser;
  page: Page;
}

async function withInbox(run: (setup: Setup) => Promise<void>): Promise<void> {
  const store = new MessageStore();
  const catcher = await startSmtpCatcher({ mode: "plain", store });
  const inbox = await startInbox({ port: 0, store });
  const browser = await chromium.launch({ executablePath: CHROMIUM });
  try {
    const page = await browser.newPage({ acceptDownloads: true });
    page.setDefaultTimeout(WAIT_MS);
    await run({ store, catcher, inbox, base: `http://127.0.0.1:${inbox.port}`, browser, page });
  } finally {
    await browser.close();
    await inbox.close();
    await catcher.close();
  }
}

function sender(catcher: SmtpCatcher, pool = false) {
  return nodemailer.createTransport({
    host: "127.0.0.1",
    port: catcher.port,
    ignoreTLS: true,
    pool,
    maxConnections: 4,
    maxMessages: Infinity,
  });
}

/** The subjects in the list, top to bottom. */
function subjects(page: Page): Promise<string[]> {
  return page.locator("#messages tbody tr td:nth-child(4) a").allTextContents();
}

// Page-side functions reach the DOM through this shape, so the tests type-check without the
// DOM library; they are passed as functions because the page's CSP forbids eval (strings).
interface PageDocument {
  querySelectorAll(selector: string): ArrayLike<{ textContent: string | null }>;
  querySelector(selector: string): { hidden: boolean } | null;
}

/** Waits until the list shows exactly these subjects (in this order); none: the table is hidden. */
async function waitForSubjects(page: Page, expected: string[]): Promise<void> {
  await page.waitForFunction((want) => {
    const doc = (globalThis as unknown as { document: PageDocument }).document;
    const shown = Array.from(doc.querySelectorAll("#messages tbody tr td:nth-child(4) a"), (a) => a.textContent);
    return JSON.stringify(shown) === JSON.stringify(want) &&
      (want.length > 0 || doc.querySelector("#messages")?.hidden === true);
  }, expected);
}

/** Waits until the first row's subject is no longer `before`. */
async function waitForTopChange(page: Page, before: string): Promise<void> {
  await page.waitForFunction((was) => {
    const doc = (globalThis as unknown as { document: PageDocument }).document;
    return doc.querySelectorAll("#messages tbody tr td:nth-child(4) a")[0]?.textContent !== was;
  }, before);
}

Deno.test("inbox in headless Chromium", async (t) => {
  await withInbox(async ({ store, catcher, base, page }) => {
    const mail = sender(catcher);
    const seen: string[] = [];
    page.on("console", (m) => m.type() === "error" && seen.push(m.text()));

    await t.step("an empty inbox says so", async () => {
      await page.goto(`${base}/`);
      await page.getByText("No messages yet.").waitFor();
    });

    await t.step("a new message appears without a reload", async () => {
      await page.evaluate(() => Object.assign(globalThis, { sameDocument: true }));
      await mail.sendMail({
        from: "Ada <ada@example.test>",
        to: "Bob <bob@example.test>",
        subject: "Quarterly <b>report</b>",
        text: "The numbers are in.",
      });
      await waitForSubjects(page, ["Quarterly <b>report</b>"]);
      assert.equal(await page.evaluate(() => (globalThis as { sameDocument?: boolean }).sameDocument), true);
      assert.equal(await page.locator("#messages b").count(), 0, "the subject is text, not markup");
      assert.equal(await page.locator("#status").textContent(), "1–1 of 1");
    });

    await t.step("search narrows the list by subject, address and text", async () => {
      await mail.sendMail({
        from: "carol@example.test",
        to: "dave@other.test",
        subject: "Lunch",
        text: "Pizza at noon, bring the pineapple.",
      });
      await mail.sendMail({
        from: "erin@example.test",
        to: "frank@example.test",
        cc: "dave@other.test",
        subject: "Invoice 42",
        html: "<p>Amount due: <b>€ 120</b></p>",
      });
      await waitForSubjects(page, ["Invoice 42", "Lunch", "Quarterly <b>report</b>"]);

      const cases: Array<[string, string[]]> = [
        ["invoice", ["Invoice 42"]], // subject, any case
        ["dave@other.test", ["Invoice 42", "Lunch"]], // To and Cc addresses
        ["pineapple", ["Lunch"]], // text body
        ["€ 120", ["Invoice 42"]], // text derived from the HTML part
        ["ada bob", ["Quarterly <b>report</b>"]], // every term must match
      ];
      for (const [query, expected] of cases) {
        await page.fill("#search", query);
        await waitForSubjects(page, expected);
      }
      await page.fill("#search", "nothing-matches-this");
      await page.getByText("No messages match “nothing-matches-this”.").waitFor();
      await page.fill("#search", "");
      await waitForSubjects(page, ["Invoice 42", "Lunch", "Quarterly <b>report</b>"]);
    });

    await t.step("an attachment downloads with its exact bytes and name", async () => {
      const bytes = crypto.getRandomValues(new Uint8Array(60_000));
      await mail.sendMail({
        from: "ada@example.test",
        to: "bob@example.test",
        subject: "With attachments",
        text: "See attached.",
        attachments: [
          { filename: "résumé 2026.pdf", content: Buffer.from(bytes), contentType: "application/pdf" },
          { filename: "page.html", content: "<script>document.title='pwned'</script>", contentType: "text/html" },
        ],
      });
      await page.getByRole("link", { name: "With attachments 📎" }).click();
      await page.waitForURL(/\/messages\/[A-Za-z0-9-]+$/);

      const [download] = await Promise.all([
        page.waitForEvent("download"),
        page.getByRole("link", { name: "résumé 2026.pdf" }).click(),
      ]);
      assert.equal(download.suggestedFilename(), "résumé 2026.pdf");
      assert.deepEqual(new Uint8Array(await Deno.readFile(await download.path())), bytes);

      // An HTML attachment is a download too, never a page on the inbox's origin.
      const href = await page.getByRole("link", { name: "page.html" }).getAttribute("href");
      const response = await fetch(`${base}${href}`);
      assert.equal(response.headers.get("content-type"), "text/html");
      assert.equal(response.headers.get("content-disposition"), contentDisposition("page.html"));
      assert.match(response.headers.get("content-security-policy") ?? "", /\bsandbox\b/);
      assert.equal(response.headers.get("x-content-type-options"), "nosniff");
      assert.equal(await response.text(), "<script>document.title='pwned'</script>");
      await page.goBack();
    });

    await t.step("delete one removes it from the page and the store", async () => {
      await waitForSubjects(page, ["With attachments 📎", "Invoice 42", "Lunch", "Quarterly <b>report</b>"]);
      const lunch = store.list().find((m) => m.raw.includes("Subject: Lunch"));
      assert.ok(lunch);
      await page.locator(`tr[data-id="${lunch.id}"] button.delete`).click();
      await waitForSubjects(page, ["With attachments 📎", "Invoice 42", "Quarterly <b>report</b>"]);
      assert.equal(store.get(lunch.id), undefined);
      assert.equal(store.size, 3);
    });

    await t.step("delete all, after a confirmation, empties the inbox", async () => {
      page.once("dialog", (dialog) => dialog.dismiss());
      await page.click("#delete-all");
      assert.equal(store.size, 3, "dismissing the confirmation deletes nothing");
      page.once("dialog", (dialog) => dialog.accept());
      await page.click("#delete-all");
      await page.getByText("No messages yet.").waitFor();
      assert.equal(store.size, 0);
    });

    await t.step("the page ran without script errors or CSP violations", () => {
      assert.deepEqual(seen, []);
    });
    mail.close();
  });
});

Deno.test("inbox with 3,000 messages: small pages, paging reaches the oldest", async (t) => {
  await withInbox(async ({ store, catcher, base, page }) => {
    const COUNT = 3000;
    const mail = sender(catcher, true);
    const sends = [];
    for (let i = 1; i <= COUNT; i++) {
      sends.push(mail.sendMail({
        from: "load@example.test",
        to: `rcpt${i}@example.test`,
        subject: `Message ${String(i).padStart(4, "0")}`,
        text: `Body ${i} `.repeat(20),
      }));
    }
    await Promise.all(sends);
    mail.close();
    assert.equal(store.size, COUNT);
    // Newest first by arrival; the pool's connections may interleave, so read the order back.
    const expectedOrder = store.list().sort((a, b) =>
      a.receivedAt === b.receivedAt ? (a.id < b.id ? 1 : -1) : a.receivedAt < b.receivedAt ? 1 : -1
    ).map((m) => /^Subject: (.*)\r$/m.exec(m.raw)?.[1]);

    await t.step("the first page is 50 rows and its bytes stay small", async () => {
      const [listing] = await Promise.all([
        page.waitForResponse((r) => r.url().includes("/api/messages?")),
        page.goto(`${base}/`),
      ]);
      const pageJson = await listing.body();
      await page.locator("#messages tbody tr").nth(49).waitFor();
      assert.equal(await page.locator("#messages tbody tr").count(), 50);
      const documentBytes = new TextEncoder().encode(await page.content()).length;
      console.log(`first page: ${pageJson.length} bytes of JSON, ${documentBytes} bytes of rendered DOM`);
      assert.ok(pageJson.length < 32 * 1024, `JSON page is ${pageJson.length} bytes`);
      assert.ok(documentBytes < 64 * 1024, `rendered page is ${documentBytes} bytes`);
      assert.deepEqual(await subjects(page), expectedOrder.slice(0, 50));
      assert.equal(await page.locator("#status").textContent(), "1–50 of 3000");
    });

    await t.step("Older pages through to the oldest message, Newer comes back", async () => {
      let pages = 1;
      while (await page.locator("#older").isEnabled()) {
        const top = (await subjects(page))[0];
        await page.click("#older");
        await waitForTopChange(page, top);
        pages++;
        const first = (pages - 1) * 50;
        assert.deepEqual(await subjects(page), expectedOrder.slice(first, first + 50), `page ${pages}`);
      }
      assert.equal(pages, COUNT / 50);
      assert.equal(await page.locator("#status").textContent(), "2951–3000 of 3000");
      assert.equal((await subjects(page)).at(-1), expectedOrder.at(-1));
      await page.click("#newer");
      await page.getByText("2901–2950 of 3000").waitFor();
    });

    await t.step("a search over all 3,000 finds one and pages no further", async () => {
      await page.fill("#search", "rcpt1234@example.test");
      await waitForSubjects(page, ["Message 1234"]);
      assert.equal(await page.locator("#older").isEnabled(), false);
    });
  });
});

Deno.test("inbox JSON API refuses bad input with stable codes", async (t) => {
  const store = new MessageStore();
  const inbox = await startInbox({ port: 0, store });
  const base = `http://127.0.0.1:${inbox.port}`;
  const error = async (path: string, init?: RequestInit) => {
    const response = await fetch(`${base}${path}`, init);
    return [response.status, (await response.json()).error.code];
  };
  try {
    await t.step("limit out of range is 400 invalid_limit", async () => {
      assert.deepEqual(await error("/api/messages?limit=0"), [400, "invalid_limit"]);
      assert.deepEqual(await error("/api/messages?limit=201"), [400, "invalid_limit"]);
      assert.deepEqual(await error("/api/messages?limit=abc"), [400, "invalid_limit"]);
    });
    await t.step("a cursor the inbox did not hand out is 400 invalid_cursor", async () => {
      assert.deepEqual(await error("/api/messages?cursor=%%%"), [400, "invalid_cursor"]);
      assert.deepEqual(await error(`/api/messages?cursor=${btoa("yesterday|x")}`), [400, "invalid_cursor"]);
    });
    await t.step("an unknown message is 404 message_not_found, for GET and DELETE", async () => {
      assert.deepEqual(await error("/api/messages/nope"), [404, "message_not_found"]);
      assert.deepEqual(await error("/api/messages/nope", { method: "DELETE" }), [404, "message_not_found"]);
    });
    await t.step("a wrong method is 405 with Allow", async () => {
      const response = await fetch(`${base}/api/messages`, { method: "POST" });
      assert.equal(response.status, 405);
      assert.equal(response.headers.get("allow"), "GET, DELETE");
      assert.equal((await response.json()).error.code, "method_not_allowed");
    });
    await t.step("an unknown API route is 404 route_not_found", async () => {
      assert.deepEqual(await error("/api/nothing"), [404, "route_not_found"]);
    });
  } finally {
    await inbox.close();
  }
});

Deno.test("contentDisposition follows RFC 6266 with an RFC 8187 UTF-8 name", () => {
  assert.equal(contentDisposition("report.pdf"), `attachment; filename="report.pdf"; filename*=UTF-8''report.pdf`);
  assert.equal(
    contentDisposition('résumé "final".pdf'),
    `attachment; filename="r_sum_ _final_.pdf"; filename*=UTF-8''r%C3%A9sum%C3%A9%20%22final%22.pdf`,
  );
  assert.equal(
    contentDisposition("it's (1).txt"),
    `attachment; filename="it's (1).txt"; filename*=UTF-8''it%27s%20%281%29.txt`,
  );
});

/** One HTTP/1.0 request (no chunked answer) sent as bytes, so that its Host header is ours (fetch sets its own). */
async function rawRequest(port: number, method: string, path: string, host: string): Promise<[number, string]> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await conn.write(
      new TextEncoder().encode(`${method} ${path} HTTP/1.0\r\nHost: ${host}\r\n\r\n`),
    );
    const response = await new Response(conn.readable).text();
    const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(response)?.[1]);
    return [status, response.slice(response.indexOf("\r\n\r\n") + 4)];
  } catch (error) {
    conn.close();
    throw error;
  }
}

Deno.test("inbox answers only to loopback host names (DNS rebinding)", async (t) => {
  const store = new MessageStore();
  const raw = "Subject: kept\r\n\r\nhi\r\n";
  store.add({
    id: "kept",
    receivedAt: new Date().toISOString(),
    envelope: { mailFrom: "a@example.test", rcptTo: ["b@example.test"] },
    secure: false,
    raw,
    rawEncoding: "utf8",
    size: raw.length,
  });
  const inbox = await startInbox({ port: 0, store });
  try {
    await t.step("a DELETE with a forged Host is 421 host_not_allowed and deletes nothing", async () => {
      const forged = ["rebind.attacker.example", `rebind.attacker.example:${inbox.port}`, "127.0.0.1.nip.io"];
      for (const host of [...forged, "127.0.0.1@rebind.attacker.example"]) {
        for (const path of ["/api/messages", "/api/messages/kept"]) {
          const [status, body] = await rawRequest(inbox.port, "DELETE", path, host);
          assert.equal(status, 421, `${host} ${path}`);
          assert.equal(JSON.parse(body).error.code, "host_not_allowed");
        }
      }
      assert.equal(store.size, 1);
    });
    await t.step("pages and reads with a forged Host are refused too", async () => {
      for (const path of ["/", "/messages/kept/raw", "/api/messages", "/api/version"]) {
        const [status] = await rawRequest(inbox.port, "GET", path, "rebind.attacker.example");
        assert.equal(status, 421, path);
      }
    });
    await t.step("127.0.0.1, localhost and [::1], with or without a port, are served", async () => {
      for (const host of ["127.0.0.1", `127.0.0.1:${inbox.port}`, `localhost:${inbox.port}`, "LOCALHOST", "[::1]:80"]) {
        const [status, body] = await rawRequest(inbox.port, "GET", "/api/version", host);
        assert.equal(status, 200, host);
        assert.equal(JSON.parse(body).total, 1);
      }
    });
  } finally {
    await inbox.close();
  }
});
