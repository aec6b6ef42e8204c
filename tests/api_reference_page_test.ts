// The API reference page in a real browser: headless Chromium (Debian's `chromium`, driven by
// playwright-core) opens Swagger UI as `npm run dev` serves it, over the document the `openapi`
// function builds, and finds what a user looks for: operations grouped by function, the error
// codes of a route, realistic examples, and how to get a token.
import assert from "node:assert/strict";
import { chromium } from "playwright-core";
import { startApiReference } from "../local/api_reference.ts";
import { serveHttp } from "../local/http_server.ts";
import { functionHandlers } from "../local/functions.ts";
import { openApiDocument } from "../supabase/functions/_shared/openapi.ts";

const CHROMIUM = Deno.env.get("CHROMIUM_PATH") ?? "/usr/bin/chromium";

Deno.test("API reference in headless Chromium", async (t) => {
  // The document as the openapi function serves it (JSON, CORS for the page on another port).
  const spec = await serveHttp(
    { port: 0, hostname: "127.0.0.1" },
    () =>
      Response.json(openApiDocument("http://127.0.0.1:54321"), {
        headers: { "access-control-allow-origin": "*" },
      }),
  );
  const docs = await startApiReference(0, `http://127.0.0.1:${spec.port}/`);
  const browser = await chromium.launch({ executablePath: CHROMIUM });
  try {
    const page = await browser.newPage();
    page.setDefaultTimeout(15_000);
    const errors: string[] = [];
    page.on("pageerror", (error) => errors.push(error.message));

    await t.step("the page loads the document", async () => {
      await page.goto(`http://127.0.0.1:${docs.port}/`);
      await page.locator(".information-container .title").getByText("mailroom").waitFor();
    });

    await t.step("operations are grouped under each function's tag", async () => {
      await page.locator(".opblock-tag").first().waitFor();
      const tags = await page.locator(".opblock-tag").evaluateAll((nodes) =>
        nodes.map((node) => (node as unknown as { dataset: { tag: string } }).dataset.tag)
      );
      assert.deepEqual([...tags].sort(), Object.keys(functionHandlers).sort());
      const sendEmail = page.locator(".opblock-tag-section").filter({ has: page.locator('[data-tag="send-email"]') });
      assert.deepEqual(
        (await sendEmail.locator(".opblock-summary-path").allTextContents()).map((p) => p.replace(/\u200b/g, "")),
        ["/send-email", "/send-email/{id}", "/send-email/{id}/cancel", "/send-email/{id}/retry"],
      );
      const configs = page.locator(".opblock-tag-section").filter({ has: page.locator('[data-tag="smtp-configs"]') });
      assert.ok(await configs.locator(".opblock").count() >= 9);
    });

    await t.step("a route's error responses show their codes and an example of each", async () => {
      await page.locator("#operations-send-email-postSendEmail .opblock-summary").first().click();
      const operation = page.locator("#operations-send-email-postSendEmail");
      const rejected = operation.locator('tr.response[data-code="502"]');
      await rejected.waitFor();
      assert.match(await rejected.locator(".response-col_description").innerText(), /smtp_recipients_rejected/);
      const invalid = operation.locator('tr.response[data-code="400"]');
      assert.match(await invalid.innerText(), /invalid_request/);
      assert.match(await invalid.innerText(), /"code": "invalid_json"|"code": "invalid_request"/);
      assert.match(await operation.locator('tr.response[data-code="401"]').innerText(), /missing_token/);
    });

    await t.step("examples are realistic: port 465, never the safe-integer bounds", async () => {
      await page.locator("#operations-smtp-configs-postSmtpConfigs .opblock-summary").first().click();
      const body = page.locator("#operations-smtp-configs-postSmtpConfigs .opblock-section-request-body");
      await body.waitFor();
      assert.match(await body.innerText(), /"port": 465/);
      const text = await page.locator("body").innerText();
      assert.doesNotMatch(text, /9007199254740991/);
    });

    await t.step("the page says how to get a token", async () => {
      assert.match(await page.locator(".information-container").innerText(), /npm run token/);
      await page.locator("button.authorize").first().click();
      const dialog = page.locator(".auth-container").first();
      await dialog.waitFor();
      assert.match(await page.locator(".modal-ux").innerText(), /npm run token/);
    });

    await t.step("without script errors", () => assert.deepEqual(errors, []));
  } finally {
    await browser.close();
    await docs.close();
    await spec.close();
  }
});
