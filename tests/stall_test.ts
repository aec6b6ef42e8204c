// Hostile sends end to end: input that used to hold the event loop for minutes (template
// bombs, deeply nested HTML) is refused with its own code while another request is served,
// and unsafe content (script links from data, odd unsubscribe headers, disguised file names)
// never reaches the SMTP server. The functions run in this process, so an unbounded request
// would stall this test for far longer than any runner waits; no assertion measures time.
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { simpleParser } from "mailparser";
import { body, type ErrorBody, startTestStack, type TestStack, userWithCatcher } from "./harness.ts";
import { MAX_HTML_DEPTH, MAX_HTML_INDENT, MAX_HTML_TAGS } from "../supabase/functions/_shared/mail/html.ts";
import { MAX_RENDER_STEPS } from "../supabase/functions/_shared/mail/templates.ts";

/** About 2 MiB (the default HTML limit) of one unit repeated. */
const fill = (unit: string, bytes = 2 * 1024 * 1024 - 64) => unit.repeat(Math.floor(bytes / unit.length));

Deno.test({
  name: "hostile sends",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const stack: TestStack = await startTestStack();
    const { user, smtp } = await userWithCatcher(stack);

    const addTemplate = async (name: string, parts: { html?: string; text?: string }) => {
      await stack.asDataApi(user, async (tx) => {
        await tx`insert into public.email_templates (name, subject, html, text)
                 values (${name}, 'Hostile', ${parts.html ?? null}, ${parts.text ?? null})`;
      });
    };
    const send = (payload: Record<string, unknown>) =>
      stack.invoke("send-email", { token: user.token, body: { to: "jane@example.com", ...payload } });

    /**
     * Send the hostile payload and, while it is in flight, list the user's configs. The hostile
     * send must be refused with its code, the listing must succeed, and nothing may be sent.
     */
    const refusedWhileOthersAreServed = async (
      payload: Record<string, unknown>,
      status: number,
      code: string,
    ): Promise<ErrorBody["error"]> => {
      smtp.clear();
      const hostile = send(payload);
      const benign = stack.invoke("smtp-configs", { token: user.token, method: "GET" });
      const [refused, listed] = await Promise.all([hostile, benign]);
      const error = (await body<ErrorBody>(refused)).error;
      assert.equal(refused.status, status, JSON.stringify(error));
      assert.equal(error.code, code);
      const configs = await body<{ name: string }[] | { configs: { name: string }[] }>(listed);
      assert.equal(listed.status, 200, JSON.stringify(configs));
      const names = (Array.isArray(configs) ? configs : configs.configs).map((c) => c.name);
      assert.deepEqual(names, ["catcher"]);
      assert.equal(smtp.messages().length, 0, "nothing reached the SMTP server");
      return error;
    };

    try {
      await t.step("refuses template bombs with 422 template_too_complex", async () => {
        const items = Array.from({ length: 1_000 }, (_, i) => i);
        const nest = (depth: number, inner: string) => "{{#a}}".repeat(depth) + inner + "{{/a}}".repeat(depth);
        // Unbounded, each of these is 10^9 to 10^12 rendering steps: minutes to hours.
        const bombs: [string, { html?: string; text?: string }, Record<string, unknown>][] = [
          ["empty-sections", { text: nest(4, "") }, { a: items }],
          ["names-in-sections", { html: nest(3, "{{x}}") }, { a: items }],
          ["inverted-sections", { text: nest(3, "{{^none}}{{/none}}") }, { a: items }],
          ["lists-in-sections", { text: nest(2, "{{list}}") }, {
            a: items,
            list: Array.from({ length: 8_000 }, () => ({})),
          }],
        ];
        for (const [name, parts, data] of bombs) {
          await addTemplate(name, parts);
          const error = await refusedWhileOthersAreServed({ template: name, data }, 422, "template_too_complex");
          assert.deepEqual(error.details, { limit_steps: MAX_RENDER_STEPS }, name);
        }
      });

      await t.step("refuses deeply nested HTML with 422 html_too_complex, in every shape", async () => {
        // 2 MiB of nesting is 140,000 to 420,000 levels: minutes in the HTML parser, then a stack overflow.
        const shapes = {
          div: fill("<div>"),
          table: fill("<table><tr><td>"),
          list: fill("<ul><li>"),
          inline: fill("<b><i>"),
          svg: "<svg>" + fill("<g>"),
          quoted: fill('<a title="</a>">'),
        };
        for (const [shape, html] of Object.entries(shapes)) {
          const error = await refusedWhileOthersAreServed({ subject: shape, html }, 422, "html_too_complex");
          // Lists reach the quoting and list limit long before the depth limit.
          const limit = shape === "list" ? { limit_indent: MAX_HTML_INDENT } : { limit_depth: MAX_HTML_DEPTH };
          assert.deepEqual(error.details, limit, shape);
        }
      });

      await t.step("refuses deep quoting, whose every level prefixes every line of the text part", async () => {
        const html = "<blockquote>".repeat(255) + "w ".repeat(900_000);
        const error = await refusedWhileOthersAreServed({ subject: "quotes", html }, 422, "html_too_complex");
        assert.deepEqual(error.details, { limit_indent: MAX_HTML_INDENT });
      });

      await t.step("refuses deep HTML that a template builds from data", async () => {
        await addTemplate("deep-from-data", { html: "{{#a}}<div>{{/a}}{{#a}}</div>{{/a}}" });
        const data = { a: Array.from({ length: 5_000 }, (_, i) => i) };
        await refusedWhileOthersAreServed({ template: "deep-from-data", data }, 422, "html_too_complex");
      });

      await t.step("refuses HTML with more tags than a text part can be made from", async () => {
        // Each element costs html-to-text microseconds, each stray end tag a search of the open elements.
        for (const html of [fill("<span>x</span>"), "<div>".repeat(MAX_HTML_DEPTH - 1) + fill("</x>", 2_000_000)]) {
          const error = await refusedWhileOthersAreServed({ html }, 422, "html_too_complex");
          assert.deepEqual(error.details, { limit_tags: MAX_HTML_TAGS });
        }
      });

      await t.step("still sends deep HTML when the caller gives the text part", async () => {
        smtp.clear();
        const res = await send({ subject: "own text", html: "<div>".repeat(MAX_HTML_DEPTH * 4), text: "Plain" });
        assert.equal(res.status, 200, JSON.stringify(await body(res)));
        assert.equal((await smtp.waitForMessages(1)).length, 1);
      });

      await t.step("refuses a script link from template data with 422 template_data_unsafe_url", async () => {
        await addTemplate("linked", { html: '<p>Hi {{name}}, <a href="{{link}}">continue</a></p>' });
        for (const link of ["JaVaScRiPt:alert(document.domain)", " \tjava\tscript:alert(1)", "data:text/html,<b>x"]) {
          const error = await refusedWhileOthersAreServed(
            { template: "linked", data: { name: "Jane", link } },
            422,
            "template_data_unsafe_url",
          );
          assert.deepEqual(error.details, { part: "html", variable: "link", attribute: "href" });
        }
        smtp.clear();
        const res = await send({ template: "linked", data: { name: "Jane", link: "https://example.com/go?a=1&b=2" } });
        assert.equal(res.status, 200, JSON.stringify(await body(res)));
        const [message] = await smtp.waitForMessages(1);
        const mail = await simpleParser(Buffer.from(message.raw));
        assert.match(mail.html || "", /href="https:&#x2F;&#x2F;example.com&#x2F;go\?a&#x3D;1&amp;b&#x3D;2"/);
        assert.match(mail.text ?? "", /continue \[https:\/\/example\.com\/go\?a=1&b=2\]/);
      });

      await t.step("refuses List-Unsubscribe values other than <https:> and <mailto:> entries", async () => {
        for (const value of ["<javascript:alert(1)>", "https://example.com/u", "<http://example.com/u>"]) {
          const error = await refusedWhileOthersAreServed(
            { text: "x", headers: { "List-Unsubscribe": value } },
            400,
            "invalid_header_value",
          );
          assert.equal(error.details?.header, "List-Unsubscribe");
        }
        smtp.clear();
        const value = "<mailto:unsubscribe@example.com>, <https://example.com/u?id=1>";
        const res = await send({ text: "x", headers: { "List-Unsubscribe": value } });
        assert.equal(res.status, 200, JSON.stringify(await body(res)));
        const [message] = await smtp.waitForMessages(1);
        const headers = message.raw.split("\r\n\r\n")[0].replace(/\r\n[ \t]/g, " ");
        assert.ok(headers.split("\r\n").includes(`List-Unsubscribe: ${value}`), headers);
      });

      await t.step("refuses attachment names that bidirectional or invisible characters disguise", async () => {
        for (const filename of ["invoice\u202Efdp.exe", "report.pdf\u200B.exe", "\u2067photo.jpg"]) {
          const error = await refusedWhileOthersAreServed(
            { text: "x", attachments: [{ filename, content: "aGk=" }] },
            400,
            "invalid_attachment",
          );
          assert.deepEqual(error.details, { index: 0, field: "filename" });
        }
      });
    } finally {
      await smtp.close();
      await stack.close();
    }
  },
});
