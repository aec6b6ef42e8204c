// The dashboard (dashboard/) in a real browser: headless Chromium (Debian's `chromium`, driven
// by playwright-core) against the real stack (functions, Postgres) and an SMTP server that
// records what it receives. Built with `deno bundle` as `npm run dev` builds it. What an owner
// does: sign in with one click, find what was sent and how it ended, approve one held send (it
// arrives once), reject another (it never does), without an agent's HTML running anything.
import assert from "node:assert/strict";
import AxeBuilder from "@axe-core/playwright";
import { type Browser, chromium, type Page } from "playwright-core";
import { buildDashboard, startDashboard } from "../local/dashboard.ts";
import { ROOT } from "../local/postgres.ts";
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
    const stack: TestStack = await startTestStack({ MAILROOM_ALLOW_PLAINTEXT_SMTP: "true" });
    const smtp = await startScriptedSmtp({ extensions: ["PIPELINING"] });
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
    const dashboard = await startDashboard(0, {
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
        // An empty log tells a new user what to do next.
        await page.getByText("No messages yet.").waitFor();
      });

      await t.step(
        "a mail sent through the API shows in Messages with its outcome and the server's reply",
        async () => {
          const sent = await call(owner.token, "send-email", {
            to: "ada@example.com",
            subject: "Quarterly",
            text: "Hi",
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
          assert.deepEqual(await accessibilityProblems(page), []);
          // Filters go to the server: failed messages only, and there are none.
          await page.goto(`${base}/#/messages`);
          await page.getByLabel("Status").selectOption("failed");
          await page.getByText("No messages yet.").waitFor();
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
      });

      await t.step(
        "nothing an agent wrote runs: not its subject in the page, not its HTML in the preview",
        async () => {
          const subject = `<img src=x onerror="alert('subject')"><script>alert('s')</script>`;
          const html =
            `<p>Hello</p><script>alert('html')</script><img src="http://127.0.0.1:${pixel.addr.port}/p.gif" ` +
            `onerror="alert('img')"><iframe src="http://127.0.0.1:${pixel.addr.port}/frame"></iframe>`;
          const res = await call(agent, "send-email", { to: "eve@example.com", subject, html });
          const { id } = await body<{ id: string }>(res);
          await page.goto(`${base}/#/approvals`);
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
