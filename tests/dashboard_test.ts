// The dashboard (dashboard/) in a real browser: headless Chromium (Debian's `chromium`, driven
// by playwright-core) against the real stack (functions, Postgres) and an SMTP server that
// records what it receives. Built with `deno bundle` as `npm run dev` builds it. What an owner
// does: sign in with one click, find what was sent and how it ended, approve one held send (it
// arrives once), reject another (it never does), without an agent's HTML running anything.
import assert from "node:assert/strict";
import AxeBuilder from "@axe-core/playwright";
import { type Browser, chromium, type Page } from "playwright-core";
import { buildDashboard, createDashboardHandler, startDashboard } from "../local/dashboard.ts";
import { freePort, ROOT } from "../local/postgres.ts";
import { body, startTestStack, type TestStack } from "./harness.ts";
import { startScriptedSmtp } from "./scripted_smtp.ts";

const CHROMIUM = Deno.env.get("CHROMIUM_PATH") ?? "/usr/bin/chromium";
const WAIT_MS = 15_000;
/** Where the run leaves a screenshot of each page (the README shows copies of them). */
const SHOTS = `${ROOT}/.local/screenshots`;

/** Serious or critical axe-core findings on the page as it is now. */
async function accessibilityProblems(page: Page): Promise<string[]> {
  const results = await new AxeBuilder({ page }).analyze();
  return results.violations
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => `${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(" ")).join("; ")})`);
}

Deno.test({
  name: "the dashboard in a real browser: sign in, messages, approvals, nothing an agent wrote runs",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    // The dashboard's port is chosen first: opened unsubscribe links are sent to its page.
    const dashboardPort = freePort();
    const stack: TestStack = await startTestStack({
      MAILROOM_ALLOW_PLAINTEXT_SMTP: "true",
      MAILROOM_UNSUBSCRIBE_PAGE_URL: `http://127.0.0.1:${dashboardPort}/unsubscribe.html`,
    });
    // gone@ is refused for good at RCPT: a send that fails, for the overview's numbers.
    const smtp = await startScriptedSmtp({
      extensions: ["PIPELINING"],
      rcpt: (address) => address.startsWith("gone@") ? "550 5.1.1 No such user" : "250 2.1.5 OK",
    });
    // A server an agent's HTML would call home to: it must never hear from the page.
    const pixelHits: string[] = [];
    const pixel = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen: () => {} }, (req) => {
      pixelHits.push(`server heard: ${req.url}`);
      return new Response("", { status: 204 });
    });
    const owner = await stack.createUser();
    await stack.createConfig(owner, { name: "work", port: smtp.port, security: "none", username: null });
    const agent = await stack.mint({ sub: owner.id, email: owner.email, clientId: "dashboard-test-agent" });
    const dir = await Deno.makeTempDir({ prefix: "mailroom-test-dashboard-" });
    await buildDashboard(dir);
    const dashboard = await startDashboard(dashboardPort, {
      dir,
      apiUrl: stack.url,
      anonKey: stack.anonKey,
      demoToken: () => Promise.resolve(owner.token),
    });
    const base = `http://127.0.0.1:${dashboard.port}`;
    let browser: Browser | undefined;
    await Deno.mkdir(SHOTS, { recursive: true });
    const call = (token: string, path: string, payload?: unknown, method = "POST") =>
      stack.invoke(path, { token, method, ...(payload === undefined ? {} : { body: payload }) });
    const received = (subject: string) => smtp.messages().filter((m) => m.data.includes(`Subject: ${subject}`)).length;

    try {
      browser = await chromium.launch({ executablePath: CHROMIUM });
      const context = await browser.newContext();
      const page = await context.newPage();
      page.setDefaultTimeout(WAIT_MS);
      const dialogs: string[] = [];
      page.on("dialog", (dialog) => {
        dialogs.push(dialog.message());
        dialog.dismiss().catch(() => {});
      });
      const errors: string[] = [];
      page.on("pageerror", (error) => errors.push(error.message));
      // A request the page's policy blocks is still announced (then fails): what counts is an answer.
      page.on("response", (res) => {
        if (res.url().includes(`:${pixel.addr.port}`)) pixelHits.push(`browser got an answer from ${res.url()}`);
      });

      await t.step("signs in with one click as the demo user and says who is signed in", async () => {
        await page.goto(base);
        assert.deepEqual(await accessibilityProblems(page), []);
        await page.screenshot({ path: `${SHOTS}/dashboard-sign-in.png` });
        await page.getByRole("button", { name: "Sign in as the demo user" }).click();
        await page.getByTestId("account").waitFor();
        assert.equal(await page.getByTestId("account").textContent(), owner.email);
        // The first page is the overview; empty, it tells a new user what to do next.
        await page.getByText("Nothing sent in this range yet.").waitFor();
        assert.deepEqual(await accessibilityProblems(page), []);
      });

      await t.step(
        "a mail sent through the API shows in Messages with its outcome and the server's reply",
        async () => {
          const sent = await call(owner.token, "send-email", {
            to: "ada@example.com",
            subject: "Quarterly",
            text: "Hi",
            html: `<p>Numbers <b>inside</b></p><img src="http://127.0.0.1:${pixel.addr.port}/open.gif">`,
            attachments: [{ filename: "q3.csv", content: btoa("a,b\n1,2\n"), content_type: "text/csv" }],
          });
          assert.equal(sent.status, 200);
          const { id } = await body<{ id: string }>(sent);
          await page.goto(`${base}/#/messages`);
          // The list was empty when it first showed: Refresh asks again.
          await page.getByRole("button", { name: "Refresh" }).click();
          const row = page.locator(`tr[data-id="${id}"]`);
          await row.waitFor();
          assert.match(await row.textContent() ?? "", /sent.*ada@example\.com.*Quarterly.*work/);
          assert.deepEqual(await accessibilityProblems(page), []);
          await page.screenshot({ path: `${SHOTS}/dashboard-messages.png`, fullPage: true });
          await row.getByRole("link").click();
          await page.getByRole("heading", { name: "Quarterly" }).waitFor();
          assert.match(await page.locator("main").textContent() ?? "", /ada@example\.com.*accepted.*250/s);
          // What it said: its attachment listed, its text, its HTML in the inert preview, its headers.
          await page.frameLocator("iframe.preview").getByText("inside").waitFor();
          assert.match(await page.locator("main").textContent() ?? "", /q3\.csv \(text\/csv, 8 bytes\).*Hi/s);
          await page.getByText("Headers (").click();
          await page.getByRole("rowheader", { name: "Message-ID" }).waitFor();
          assert.deepEqual(await accessibilityProblems(page), []);
          await page.screenshot({ path: `${SHOTS}/dashboard-message.png`, fullPage: true });
          // The recipient filter goes to the server, in any case.
          await page.goto(`${base}/#/messages`);
          await row.waitFor();
          const asked = page.waitForResponse((r) => r.url().includes("recipient=ADA%40example.com") && r.ok());
          await page.getByLabel("Recipient").fill("ADA@example.com");
          await page.getByLabel("Recipient").press("Enter");
          await asked;
          await row.waitFor();
          // Filters go to the server: failed messages only, and there are none.
          await page.goto(`${base}/#/messages`);
          await page.getByLabel("Status").selectOption("failed");
          await page.getByText("No messages yet.").waitFor();
        },
      );

      await t.step("the overview's numbers are email-analytics' numbers", async () => {
        // One more that fails for good: the server refuses its only recipient.
        const refused = await call(owner.token, "send-email", { to: "gone@example.com", subject: "Lost", text: "x" });
        await refused.body?.cancel();
        await page.goto(`${base}/#/overview`);
        const totals = page.getByTestId("totals");
        await totals.waitFor();
        const shown = async (name: string) => Number(await totals.locator(`[data-total="${name}"]`).textContent());
        const tz = await page.evaluate(() => Intl.DateTimeFormat().resolvedOptions().timeZone);
        const from = new Date(Date.now() - 7 * 86_400_000).toISOString();
        const summary = await body<{ total: number; totals: Record<string, number>; series: { total: number }[] }>(
          await call(
            owner.token,
            `email-analytics?from=${encodeURIComponent(from)}&tz=${tz}&interval=day`,
            undefined,
            "GET",
          ),
        );
        assert.equal(await shown("total"), summary.total);
        assert.equal(await shown("sent"), summary.totals.sent ?? 0);
        assert.equal(await shown("failed"), summary.totals.failed ?? 0);
        assert.equal(summary.total, 2);
        const rows = await page.getByTestId("series").locator("tbody tr td:nth-child(2)").allTextContents();
        assert.equal(rows.map(Number).reduce((a, b) => a + b, 0), summary.series.reduce((a, b) => a + b.total, 0));
        assert.deepEqual(await accessibilityProblems(page), []);
        await page.screenshot({ path: `${SHOTS}/dashboard-overview.png`, fullPage: true });
      });

      await t.step("a batch's progress moves to done while the worker drains it", async () => {
        const bulk = await call(owner.token, "send-bulk", {
          recipients: ["b1@example.com", "b2@example.com", "b3@example.com"],
          subject: "Batch news",
          text: "Hello",
        });
        const { batch_id } = await body<{ batch_id: string }>(bulk);
        await page.goto(`${base}/#/batches`);
        await page.locator(`tr[data-id="${batch_id}"]`).waitFor();
        assert.deepEqual(await accessibilityProblems(page), []);
        // Polls are conditional: the browser asks again with the ETag it has (an unchanged batch is
        // then a 304 the browser answers from its cache, which serve_json_test shows).
        const revalidated = page.waitForRequest(async (r) =>
          r.url().includes(`/send-bulk/${batch_id}`) && (await r.allHeaders())["if-none-match"] !== undefined
        );
        await page.locator(`tr[data-id="${batch_id}"]`).getByRole("link").click();
        await page.getByText("0 of 3").waitFor();
        assert.match((await (await revalidated).allHeaders())["if-none-match"], /^W\/"[0-9a-f]{32}"$/);
        await stack.drainOutbox();
        // The page polls: it shows the batch done without being reloaded.
        await page.getByText("3 of 3").waitFor();
        await page.getByText("Done: nothing is left to send.").waitFor();
        assert.equal(received("Batch news"), 3);
        assert.deepEqual(await accessibilityProblems(page), []);
        await page.screenshot({ path: `${SHOTS}/dashboard-batch.png`, fullPage: true });
      });

      await t.step("a mailbox: its state, verify step by step, limits whose errors are the API's", async () => {
        await page.goto(`${base}/#/mailboxes`);
        await page.getByRole("link", { name: "work" }).click();
        await page.getByRole("heading", { name: "work" }).waitFor();
        await page.getByRole("button", { name: "Verify now" }).click();
        const steps = page.getByRole("status", { name: "Verification" });
        await steps.getByText("Login not needed").waitFor();
        await page.locator("table").getByText("ok").first().waitFor();
        // A limit the API refuses: its code and message are shown, nothing is saved.
        await page.getByLabel("Per minute").fill("0");
        await page.getByRole("button", { name: "Save", exact: true }).click();
        assert.match(await page.getByRole("alert").textContent() ?? "", /^invalid_request: .*per_minute/);
        await page.getByLabel("Per minute").fill("120");
        await page.getByRole("button", { name: "Save", exact: true }).click();
        await page.getByText("Saved.").waitFor();
        // Its guardrails: a pattern the API refuses is its error; a good one is saved for this mailbox.
        const guard = page.getByRole("form", { name: "This mailbox's guardrails" });
        await guard.getByLabel("Never these recipients").fill("not a pattern!");
        await guard.getByRole("button", { name: "Save guardrails" }).click();
        assert.match(await page.getByRole("alert").textContent() ?? "", /^invalid_request: .*deny_recipients/);
        await guard.getByLabel("Never these recipients").fill("spam.example");
        await guard.getByRole("button", { name: "Save guardrails" }).click();
        await page.getByText("Guardrails saved.").waitFor();
        const [rails] = await stack.sql<{ deny_recipients: string[]; approval: string | null }[]>`
          select deny_recipients, approval from public.sending_guardrails where user_id = ${owner.id} and config_id is not null`;
        assert.deepEqual([rails.deny_recipients, rails.approval], [["spam.example"], null]);
        const [{ max_per_minute }] = await stack.sql<{ max_per_minute: number }[]>`
          select max_per_minute from public.user_smtp_configs where user_id = ${owner.id}`;
        assert.equal(max_per_minute, 120);
        // Without IMAP settings, the page says what they would give and how to set them.
        await page.getByText(/No IMAP settings: bounces are known only/).waitFor();
        assert.deepEqual(await accessibilityProblems(page), []);
        await page.screenshot({ path: `${SHOTS}/dashboard-mailbox.png`, fullPage: true });
      });

      await t.step(
        "webhooks: added in the page (its secret shown once), a test event queued, then removed",
        async () => {
          await page.goto(`${base}/#/webhooks`);
          await page.getByText("No webhooks yet.").waitFor();
          // A URL the API refuses is its error, as the API says it.
          await page.getByLabel("HTTPS URL").fill("https://10.0.0.7/hook");
          await page.getByRole("button", { name: "Add", exact: true }).click();
          assert.match(await page.getByRole("alert").textContent() ?? "", /^webhook_url_forbidden: /);
          await page.getByLabel("HTTPS URL").fill("https://hooks.example.com/mailroom");
          await page.getByRole("button", { name: "Add", exact: true }).click();
          const secret = await page.getByTestId("webhook-secret").textContent();
          assert.match(secret ?? "", /^whsec_/);
          await page.getByRole("link", { name: "https://hooks.example.com/mailroom" }).click();
          await page.getByRole("heading", { name: "Webhook" }).waitFor();
          await page.getByRole("button", { name: "Send a test event" }).click();
          await page.getByRole("table", { name: "Deliveries" }).getByText("webhook.test").waitFor();
          assert.deepEqual(await accessibilityProblems(page), []);
          await page.screenshot({ path: `${SHOTS}/dashboard-webhook.png`, fullPage: true });
          await page.getByRole("button", { name: "Remove" }).click();
          await page.getByText("No webhooks yet.").waitFor();
          const left = await stack.sql`select 1 from public.webhooks where user_id = ${owner.id}`;
          assert.equal(left.length, 0);
        },
      );

      await t.step(
        "a template previews with sample data as a send renders it; missing data is the API's error",
        async () => {
          await page.goto(`${base}/#/templates`);
          await page.getByRole("link", { name: "welcome" }).click();
          await page.getByRole("heading", { name: "welcome" }).waitFor();
          await page.getByRole("button", { name: "Preview" }).click();
          assert.match(await page.getByRole("alert").textContent() ?? "", /^template_data_missing: /);
          const data = { name: "Ann", product: "Acme", login_url: "https://acme.example/login" };
          await page.getByLabel(/Sample data/).fill(JSON.stringify(data));
          await page.getByRole("button", { name: "Preview" }).click();
          const rendered = await body<{ subject: string }>(
            await call(owner.token, "templates/welcome/preview", { data }),
          );
          await page.getByTestId("preview-subject").getByText(rendered.subject).waitFor();
          await page.frameLocator("iframe.preview").getByText("Ann", { exact: false }).first().waitFor();
          assert.deepEqual(await accessibilityProblems(page), []);
          await page.screenshot({ path: `${SHOTS}/dashboard-template.png`, fullPage: true });
        },
      );

      await t.step("an agent's held send approved in the page arrives once; a rejected one never", async () => {
        const set = await call(owner.token, "oversight/guardrails", { approval: "agents" }, "PUT");
        assert.equal(set.status, 200, await set.text());
        const held = async (subject: string, extra: Record<string, unknown> = {}) => {
          const res = await call(agent, "send-email", {
            to: "bob@example.com",
            subject,
            text: "From the agent",
            ...extra,
          });
          const parsed = await body<{ id: string; status: string }>(res);
          assert.equal(parsed.status, "pending_approval", JSON.stringify(parsed));
          return parsed.id;
        };
        const approveId = await held("Approve me");
        const rejectId = await held("Reject me");

        await page.goto(`${base}/#/approvals`);
        await page.locator(`tr[data-id="${approveId}"]`).waitFor().catch(async (error) => {
          throw new Error(`${error.message}\n${await page.locator("body").innerText()}`);
        });
        assert.deepEqual(await accessibilityProblems(page), []);
        await page.screenshot({ path: `${SHOTS}/dashboard-approvals.png`, fullPage: true });

        await page.locator(`tr[data-id="${approveId}"]`).getByRole("link").click();
        await page.getByRole("button", { name: "Approve and send" }).click();
        await page.getByText("Decided: approved").waitFor();
        await page.goto(`${base}/#/approvals/${rejectId}`);
        await page.getByLabel("Reason (optional)").fill("Not to Bob");
        await page.getByRole("button", { name: "Reject" }).click();
        await page.getByText("Decided: rejected").waitFor();

        await stack.drainOutbox();
        await stack.drainOutbox();
        assert.equal(received("Approve me"), 1);
        assert.equal(received("Reject me"), 0);
        // Deciding again is refused by the API, and the page shows its code.
        await page.goto(`${base}/#/approvals/${approveId}`);
        // What became of it: approved, then sent by the outbox.
        await page.getByText("Decided: sent").waitFor();
        // The stop button: pressed in the page, it stops every send (an agent's is refused); resumed, they go.
        await page.goto(`${base}/#/approvals`);
        await page.getByRole("button", { name: "Stop all sending" }).click();
        await page.getByText("All sending is stopped").waitFor();
        const refused = await call(agent, "send-email", { to: "bob@example.com", subject: "While stopped", text: "x" });
        assert.equal((await body<{ error: { code: string } }>(refused)).error.code, "sending_stopped");
        await page.getByRole("button", { name: "Resume sending" }).click();
        await page.getByRole("button", { name: "Stop all sending" }).waitFor();
      });

      await t.step("an opened unsubscribe link shows a page whose button unsubscribes", async () => {
        const sent = await call(owner.token, "send-email", {
          to: "reader@example.com",
          subject: "Digest",
          text: "Hello",
          unsubscribe: { topic: "digest" },
        });
        assert.equal(sent.status, 200);
        const head = smtp.messages().at(-1)!.data.split("\r\n\r\n")[0].replace(/\r\n[ \t]+/g, "");
        const link = /^List-Unsubscribe: *<([^>]+)>/im.exec(head)![1];
        await page.goto(link);
        await page.waitForURL(/\/unsubscribe\.html\?token=/);
        await page.getByText("Stop email to reader@example.com from this sender (digest)?").waitFor();
        assert.deepEqual(await accessibilityProblems(page), []);
        await page.screenshot({ path: `${SHOTS}/unsubscribe.png`, fullPage: true });
        await page.getByRole("button", { name: "Unsubscribe reader@example.com" }).click();
        await page.getByText("reader@example.com is unsubscribed").waitFor();
        const [row] = await stack.sql<{ reason: string }[]>`
          select reason from public.suppressions where user_id = ${owner.id} and address = 'reader@example.com'`;
        assert.equal(row?.reason, "unsubscribed");
      });

      await t.step(
        "nothing an agent wrote runs: not its subject in the page, not its HTML in the preview",
        async () => {
          const subject = `<img src=x onerror="alert('subject')"><script>alert('s')</script>`;
          const html =
            `<p>Hello</p><script>alert('html')</script><img src="http://127.0.0.1:${pixel.addr.port}/p.gif" ` +
            `onerror="alert('img')"><iframe src="http://127.0.0.1:${pixel.addr.port}/frame"></iframe>` +
            `<a href="http://127.0.0.1:${pixel.addr.port}/click">Read more</a>`;
          const res = await call(agent, "send-email", { to: "eve@example.com", subject, html });
          const { id } = await body<{ id: string }>(res);
          await page.goto(`${base}/#/approvals`);
          await page.getByRole("button", { name: "Refresh" }).click();
          await page.locator(`tr[data-id="${id}"]`).waitFor();
          assert.ok((await page.locator(`tr[data-id="${id}"]`).textContent())?.includes("<img src=x"), "shown as text");
          await page.goto(`${base}/#/approvals/${id}`);
          const preview = page.frameLocator("iframe.preview");
          await preview.getByText("Hello").waitFor();
          await page.screenshot({ path: `${SHOTS}/dashboard-approval.png`, fullPage: true });
          assert.equal(await page.locator("iframe.preview").getAttribute("sandbox"), "");
          // Once the preview's document has loaded, every script and image in it has had its chance.
          const frame = page.frames().find((f) => f !== page.mainFrame() && f.url() === "about:srcdoc");
          assert.ok(frame, "the preview is a document of its own");
          await frame.waitForLoadState("load");
          // A link in it goes nowhere when clicked (a sandboxed frame could still navigate itself).
          await preview.getByText("Read more").click();
          await preview.getByText("Hello").waitFor();
          assert.deepEqual(dialogs, []);
          assert.deepEqual(pixelHits, []);
          assert.deepEqual(errors, []);
          assert.deepEqual(await accessibilityProblems(page), []);
        },
      );
    } finally {
      await browser?.close();
      await dashboard.close();
      await pixel.shutdown();
      await smtp.close();
      await stack.close();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});

Deno.test("the local dashboard server: only at loopback names, its demo sign-in only for its own page, never framed", async () => {
  const handler = createDashboardHandler({
    dir: "/nonexistent",
    apiUrl: "http://127.0.0.1:1",
    anonKey: "anon",
    demoToken: () => Promise.resolve("demo-token"),
  });
  const rebound = await handler(new Request("http://attacker.example:54323/config.json"));
  assert.equal(rebound.status, 421);
  const crossSite = await handler(
    new Request("http://127.0.0.1:54323/local/session", {
      method: "POST",
      headers: { origin: "https://attacker.example", "content-type": "application/json" },
    }),
  );
  assert.equal(crossSite.status, 403);
  const form = await handler(
    new Request("http://127.0.0.1:54323/local/session", {
      method: "POST",
      headers: { origin: "http://127.0.0.1:54323", "content-type": "application/x-www-form-urlencoded" },
    }),
  );
  assert.equal(form.status, 403, "a cross-site form post cannot ask for it either");
  const own = await handler(
    new Request("http://127.0.0.1:54323/local/session", {
      method: "POST",
      headers: { origin: "http://127.0.0.1:54323", "content-type": "application/json" },
    }),
  );
  assert.deepEqual(await own.json(), { access_token: "demo-token" });
  assert.equal(own.headers.get("x-frame-options"), "DENY");
  assert.match(own.headers.get("content-security-policy") ?? "", /frame-ancestors 'none'/);
});
