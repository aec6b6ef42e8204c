import assert from "node:assert/strict";
import Mustache from "mustache";
import { apiError } from "./api_error.ts";
import {
  type EmailTemplate,
  MAX_DATA_DEPTH,
  MAX_DATA_VALUES,
  MAX_RENDER_STEPS,
  MAX_SECTION_DEPTH,
  MAX_TEMPLATE_PART_CHARS,
  MAX_VARIABLE_NAME,
  missingVariables,
  referencedVariables,
  renderTemplate,
  requiredVariables,
  validateTemplateSource,
} from "../supabase/functions/_shared/mail/templates.ts";

function template(parts: Partial<EmailTemplate>): EmailTemplate {
  return { subject: null, html: null, text: null, variables: null, ...parts };
}

Deno.test("rendering templates", async (t) => {
  await t.step("renders each part the template has and leaves out the others", () => {
    const out = renderTemplate(template({ subject: "Hi {{name}}", text: "Hello {{name}}" }), { name: "Ada" });
    assert.deepEqual(out, { subject: "Hi Ada", text: "Hello Ada" });
  });

  await t.step("HTML-escapes data in the html part, including a script tag and attribute quotes", () => {
    const out = renderTemplate(
      template({ html: '<p title="{{title}}">{{body}}</p>' }),
      { title: `" onmouseover="alert(1)`, body: "<script>alert('x')</script>" },
    );
    assert.equal(
      out.html,
      '<p title="&quot; onmouseover&#x3D;&quot;alert(1)">&lt;script&gt;alert(&#39;x&#39;)&lt;&#x2F;script&gt;</p>',
    );
  });

  await t.step("inserts data into the text part and subject without HTML escaping", () => {
    const out = renderTemplate(
      template({ subject: "{{a}} & co", text: "{{a}} <b>" }),
      { a: "Tom & Jerry <tj@example.com>" },
    );
    assert.equal(out.subject, "Tom & Jerry <tj@example.com> & co");
    assert.equal(out.text, "Tom & Jerry <tj@example.com> <b>");
  });

  await t.step("keeps line breaks from data in text and html bodies", () => {
    const out = renderTemplate(template({ text: "{{note}}", html: "<pre>{{note}}</pre>" }), { note: "a\nb" });
    assert.equal(out.text, "a\nb");
    assert.equal(out.html, "<pre>a\nb</pre>");
  });

  await t.step("renders prototype members and probing paths as empty", () => {
    const probes = [
      "{{constructor}}",
      "{{__proto__}}",
      "{{__proto__.x}}",
      "{{toString}}",
      "{{valueOf}}",
      "{{hasOwnProperty}}",
      "{{a.constructor.name}}",
      "{{s.constructor.name}}",
      "{{s.toString}}",
      "{{list.constructor}}",
      "{{list.map}}",
      "{{#list.constructor}}x{{/list.constructor}}",
      "{{#s.constructor.constructor}}return 1{{/s.constructor.constructor}}",
    ];
    for (const probe of probes) {
      const out = renderTemplate(template({ text: `[${probe}]`, html: `[${probe}]` }), {
        a: { b: 1 },
        s: "str",
        list: [1, 2],
      });
      assert.deepEqual(out, { text: "[]", html: "[]" }, probe);
    }
  });

  await t.step("still resolves later names after looking up hasOwnProperty or __proto__", () => {
    // Mustache's lookup cache is a plain object: these names used to shadow its methods.
    const out = renderTemplate(template({ text: "{{hasOwnProperty}}{{__proto__}}{{name}}" }), {
      name: "Ada",
      hasOwnProperty: "own",
    });
    assert.equal(out.text, "ownAda");
  });

  await t.step("ignores a __proto__ key in JSON data without polluting any prototype", () => {
    const data = JSON.parse('{"__proto__": {"polluted": "yes"}, "name": "Ada"}');
    const out = renderTemplate(template({ text: "{{polluted}}{{__proto__.polluted}}{{name}}" }), data);
    assert.equal(out.text, "Ada");
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
  });

  await t.step("never calls a function found in the data", () => {
    let called = 0;
    const fn = () => {
      called++;
      return "called";
    };
    const out = renderTemplate(
      template({ text: "[{{fn}}][{{#fn}}inside{{/fn}}][{{^fn}}absent{{/fn}}][{{obj.fn}}]" }),
      { fn, obj: { fn } },
    );
    assert.equal(out.text, "[][][absent][]");
    assert.equal(called, 0);
  });

  await t.step("iterates arrays, enters objects and falls back to outer names in sections", () => {
    const out = renderTemplate(
      template({
        text: "{{#items}}{{sku}}x{{qty}} for {{customer}};{{/items}}" +
          "{{#order}}#{{id}}{{/order}}{{^none}} none{{/none}}{{#tags}} {{.}}{{/tags}}",
      }),
      {
        customer: "Ada",
        items: [{ sku: "A", qty: 2 }, { sku: "B", qty: 1 }],
        order: { id: 7 },
        none: [],
        tags: ["x", "y"],
      },
    );
    assert.equal(out.text, "Ax2 for Ada;Bx1 for Ada;#7 none x y");
  });

  await t.step("renders scalars as text, arrays as a list and objects as nothing", () => {
    const out = renderTemplate(
      template({ text: "{{n}}|{{b}}|{{list}}|{{obj}}|{{nothing}}|{{order.id}}" }),
      { n: 1.5, b: false, list: ["a", 2, { x: 1 }, true], obj: { x: 1 }, nothing: null, order: { id: 42 } },
    );
    assert.equal(out.text, "1.5|false|a, 2, true|||42");
  });

  await t.step("lists every missing required variable at once", () => {
    const error = apiError(
      () =>
        renderTemplate(
          template({ text: "{{a}}{{b}}{{c}}{{d}}", variables: ["a", "b", "c", "d", "order.id"] }),
          { a: "x", b: null, c: "", order: {} },
        ),
      422,
      "template_data_missing",
    );
    assert.deepEqual(error.details, { missing: ["b", "d", "order.id"] });
  });

  await t.step("takes required variables from the schema form too", () => {
    const variables = { required: ["name"], properties: { name: { type: "string" }, nick: { type: "string" } } };
    const error = apiError(
      () => renderTemplate(template({ text: "{{name}}", variables }), {}),
      422,
      "template_data_missing",
    );
    assert.deepEqual(error.details, { missing: ["name"] });
    assert.equal(renderTemplate(template({ text: "{{name}}", variables }), { name: "" }).text, "");
  });

  await t.step("rejects subject data that would start a new header line", () => {
    for (const value of ["x\r\nBcc: victim@example.com", "x\nBcc: v@example.com", "x\rY", "x\0y", ["a", "b\n"]]) {
      const error = apiError(
        () => renderTemplate(template({ subject: "Re: {{v}}", text: "{{v}}" }), { v: value }),
        422,
        "template_data_invalid",
      );
      assert.deepEqual(error.details, { part: "subject" });
    }
    const nested = { subject: "{{#items}}{{name}}{{/items}}", text: "ok" };
    apiError(() => renderTemplate(template(nested), { items: [{ name: "a\nb" }] }), 422, "template_data_invalid");
  });

  await t.step("rejects templates with unescaped tags or partials even if they were never validated", () => {
    apiError(() => renderTemplate(template({ html: "{{{x}}}" }), { x: "<b>" }), 422, "template_invalid");
    apiError(() => renderTemplate(template({ text: "{{> footer}}" }), {}), 422, "template_invalid");
  });

  await t.step("rejects data that is not an object, too deep or too large", () => {
    apiError(() => renderTemplate(template({ text: "x" }), [] as never), 422, "template_data_invalid");
    apiError(() => renderTemplate(template({ text: "x" }), null as never), 422, "template_data_invalid");
    let deep: Record<string, unknown> = { leaf: "x" };
    for (let i = 0; i < MAX_DATA_DEPTH; i++) deep = { d: deep };
    const tooDeep = apiError(() => renderTemplate(template({ text: "x" }), deep), 422, "template_data_invalid");
    assert.deepEqual(tooDeep.details, { limit: MAX_DATA_DEPTH });
    const big = { list: Array.from({ length: MAX_DATA_VALUES }, (_, i) => i) };
    const tooBig = apiError(() => renderTemplate(template({ text: "x" }), big), 422, "template_data_invalid");
    assert.deepEqual(tooBig.details, { limit: MAX_DATA_VALUES });
  });

  await t.step("accepts data right at the depth limit", () => {
    let deep: Record<string, unknown> = { leaf: "x" };
    for (let i = 0; i < MAX_DATA_DEPTH - 1; i++) deep = { d: deep };
    const path = `${"d.".repeat(MAX_DATA_DEPTH - 1)}leaf`;
    assert.equal(renderTemplate(template({ text: `{{${path}}}` }), deep).text, "x");
  });

  await t.step("does not fill Mustache's global template cache", () => {
    const cache = (Mustache as { templateCache: { _cache: Record<string, unknown> } }).templateCache._cache;
    const before = Object.keys(cache).length;
    for (let i = 0; i < 50; i++) renderTemplate(template({ text: `template ${i} {{x}}` }), { x: i });
    assert.equal(Object.keys(cache).length, before);
  });
});

Deno.test("validating template sources", async (t) => {
  await t.step("accepts escaped tags, sections, comments and changed delimiters", () => {
    validateTemplateSource(template({
      subject: "Order {{order.id}} {{! note }}",
      html: "<ul>{{#items}}<li>{{name}}</li>{{/items}}{{^items}}<li>none</li>{{/items}}</ul>",
      text: "{{=<% %>=}}Hi <% name %>",
      variables: ["order.id"],
    }));
  });

  await t.step("rejects triple mustaches and ampersand tags in every part, naming the part", () => {
    const cases: [keyof EmailTemplate, string][] = [
      ["html", "<p>{{{body}}}</p>"],
      ["html", "<p>{{& body}}</p>"],
      ["text", "{{{body}}}"],
      ["subject", "{{&body}}"],
      ["html", "{{=<% %>=}}<%{body}%>"],
      ["html", "{{#items}}{{{name}}}{{/items}}"],
    ];
    for (const [part, source] of cases) {
      const error = apiError(() => validateTemplateSource(template({ [part]: source })), 422, "template_invalid");
      assert.equal(error.details?.part, part, source);
      assert.match(error.message, /unescaped/);
    }
  });

  await t.step("rejects partials", () => {
    const error = apiError(() => validateTemplateSource(template({ html: "{{> footer}}" })), 422, "template_invalid");
    assert.match(error.message, /partials/);
  });

  await t.step("reports syntax errors with the part they are in", () => {
    for (const html of ["<p>{{name</p>", "{{#a}}x", "x{{/a}}", "{{#a}}{{/b}}", "{{=<% %>}}"]) {
      const error = apiError(() => validateTemplateSource(template({ html })), 422, "template_invalid");
      assert.equal(error.details?.part, "html", html);
      assert.match(error.message, /^Template html: /);
    }
  });

  await t.step("rejects a multi-line subject and names that are not variable names", () => {
    const subject = apiError(
      () => validateTemplateSource(template({ subject: "a\r\nBcc: x@example.com" })),
      422,
      "template_invalid",
    );
    assert.equal(subject.details?.part, "subject");
    apiError(() => validateTemplateSource(template({ text: "{{first name}}" })), 422, "template_invalid");
  });

  await t.step("accepts both variable forms and rejects other shapes", () => {
    validateTemplateSource(template({ variables: ["a", "b.c"] }));
    validateTemplateSource(template({ variables: { required: ["a"], properties: { a: { type: "string" } } } }));
    validateTemplateSource(template({ variables: {} }));
    const bad: unknown[] = [
      "a",
      [1],
      ["has space"],
      { required: "a" },
      { properties: [] },
      { properties: { a: { type: 1 } } },
      { properties: { a: null } },
    ];
    for (const variables of bad) {
      const error = apiError(
        () => validateTemplateSource(template({ variables: variables as never })),
        422,
        "template_invalid",
      );
      assert.equal(error.details?.part, "variables", JSON.stringify(variables));
    }
  });
});

Deno.test("template variables", async (t) => {
  await t.step("reads required names from a list or from a schema's required, once each", () => {
    assert.deepEqual(requiredVariables({ variables: ["a", "b", "a"] }), ["a", "b"]);
    assert.deepEqual(requiredVariables({ variables: { required: ["x"], properties: { x: {}, y: {} } } }), ["x"]);
    assert.deepEqual(requiredVariables({ variables: { properties: { y: {} } } }), []);
    assert.deepEqual(requiredVariables({ variables: null }), []);
  });

  await t.step("lists top-level names used across subject, html and text in order of first use", () => {
    const names = referencedVariables(template({
      subject: "Order {{order.id}} for {{customer}}",
      html: "{{#items}}{{sku}} {{customer}}{{/items}}{{^items}}{{empty_note}}{{/items}}{{! comment }}",
      text: "{{customer}} {{.}} {{footer}}",
    }));
    assert.deepEqual(names, ["order", "customer", "items", "empty_note", "footer"]);
  });
});

Deno.test("rendering is metered", async (t) => {
  const items = Array.from({ length: 300 }, (_, i) => i);

  await t.step("refuses output that grows past the limit with template_output_too_large", () => {
    const text = "{{#a}}" + "{{big}}".repeat(50) + "{{/a}}";
    const error = apiError(
      () => renderTemplate(template({ text }), { a: items, big: "x".repeat(100_000) }),
      422,
      "template_output_too_large",
    );
    assert.ok(error.details?.limit_chars);
  });

  await t.step("refuses work that grows past the step budget, even when nothing is output", () => {
    const nested = (depth: number, body: string) => "{{#a}}".repeat(depth) + body + "{{/a}}".repeat(depth);
    const bombs: [string, Record<string, unknown>][] = [
      [nested(4, ""), { a: items }],
      [nested(2, "{{missing}}{{missing.too}}{{.}}"), { a: items }],
      [nested(3, "{{#empty}}x{{/empty}}"), { a: items, empty: [] }],
      [nested(2, "{{list}}"), { a: items, list: Array.from({ length: 5000 }, () => ({})) }],
      [nested(2, "{{x}}".repeat(20)), { a: items }],
    ];
    for (const [text, data] of bombs) {
      for (const part of ["text", "html", "subject"] as const) {
        const error = apiError(() => renderTemplate(template({ [part]: text }), data), 422, "template_too_complex");
        assert.deepEqual(error.details, { limit_steps: MAX_RENDER_STEPS }, `${part}: ${text}`);
      }
    }
  });

  await t.step("renders a long newsletter well within the budget", () => {
    const articles = Array.from({ length: 2000 }, (_, i) => ({ title: `T${i}`, url: `https://example.com/${i}` }));
    const html = '{{#articles}}<h2><a href="{{url}}">{{title}}</a></h2><p>{{intro}} {{title}}</p>{{/articles}}';
    const out = renderTemplate(template({ html, text: "{{#articles}}{{title}}: {{url}}\n{{/articles}}" }), {
      articles,
      intro: "Read",
    });
    assert.equal(out.text?.split("\n").length, 2001);
    assert.match(out.html ?? "", /<h2><a href="https:&#x2F;&#x2F;example.com&#x2F;1999">T1999<\/a><\/h2>/);
  });

  await t.step("renders small nested lists unchanged", () => {
    const fine = template({ text: "{{#a}}{{.}},{{/a}}" });
    assert.equal(renderTemplate(fine, { a: [1, 2, 3] }).text, "1,2,3,");
    const grid = template({ text: "{{#rows}}{{#cells}}{{.}}{{/cells}};{{/rows}}" });
    assert.equal(renderTemplate(grid, { rows: [{ cells: [1, 2] }, { cells: [3] }] }).text, "12;3;");
  });
});

Deno.test("template sources are bounded", async (t) => {
  await t.step("refuses a part longer than the limit, naming the part", () => {
    validateTemplateSource(template({ text: "x".repeat(MAX_TEMPLATE_PART_CHARS) }));
    const error = apiError(
      () => validateTemplateSource(template({ html: "x".repeat(MAX_TEMPLATE_PART_CHARS + 1) })),
      422,
      "template_invalid",
    );
    assert.deepEqual(error.details, { part: "html", limit: MAX_TEMPLATE_PART_CHARS });
  });

  await t.step("refuses sections nested deeper than the limit, however deep, without overflowing", () => {
    const nested = (depth: number) => "{{#a}}".repeat(depth) + "x" + "{{/a}}".repeat(depth);
    validateTemplateSource(template({ text: nested(MAX_SECTION_DEPTH) }));
    for (const depth of [MAX_SECTION_DEPTH + 1, 20_000]) {
      const error = apiError(() => validateTemplateSource(template({ text: nested(depth) })), 422, "template_invalid");
      assert.equal(error.details?.limit, MAX_SECTION_DEPTH);
      assert.equal(error.details?.part, "text");
    }
    const inverted = "{{^a}}".repeat(MAX_SECTION_DEPTH + 1) + "{{/a}}".repeat(MAX_SECTION_DEPTH + 1);
    apiError(() => renderTemplate(template({ subject: inverted }), {}), 422, "template_invalid");
  });

  await t.step("refuses names longer than the limit", () => {
    const name = "a".repeat(MAX_VARIABLE_NAME + 1);
    for (const tag of [`{{${name}}}`, `{{#${name}}}x{{/${name}}}`]) {
      const error = apiError(() => validateTemplateSource(template({ text: tag })), 422, "template_invalid");
      assert.equal(error.details?.limit, MAX_VARIABLE_NAME);
    }
    validateTemplateSource(template({ text: `{{${"a".repeat(MAX_VARIABLE_NAME)}}}` }));
  });

  await t.step("refuses the noncharacters rendering uses as markers in the html part only", () => {
    const error = apiError(() => validateTemplateSource(template({ html: "a\uFDD0b" })), 422, "template_invalid");
    assert.equal(error.details?.part, "html");
    validateTemplateSource(template({ text: "a\uFDD0b" }));
  });
});

Deno.test("URLs from template data", async (t) => {
  const html = (source: string, data: Record<string, unknown>) => renderTemplate(template({ html: source }), data).html;
  const refused = (source: string, data: Record<string, unknown>) =>
    apiError(() => html(source, data), 422, "template_data_unsafe_url");

  await t.step("refuses script and data URLs in every URL attribute, naming the variable and attribute", () => {
    const attributes = ["href", "src", "action", "formaction", "background", "poster", "cite", "xlink:href", "HREF"];
    for (const attribute of attributes) {
      const error = refused(`<a ${attribute}="{{link}}">x</a>`, { link: "javascript:alert(1)" });
      assert.deepEqual(error.details, { part: "html", variable: "link", attribute: attribute.toLowerCase() });
    }
    for (
      const link of ["vbscript:msgbox(1)", "data:text/html;base64,PHNjcmlwdD4=", "file:///etc/passwd", "ms-msdt:x"]
    ) {
      refused('<img src="{{link}}">', { link });
    }
  });

  await t.step("sees through case, whitespace, control characters and entities", () => {
    const tricks = [
      "JaVaScRiPt:alert(1)",
      "  javascript:alert(1)",
      "\x01\x02javascript:alert(1)",
      "java\tscript:alert(1)",
      "java\nscript:alert(1)",
      "java\rscript:alert(1)",
      "javascript\t:alert(1)",
      "\u0000javascript:alert(1)",
    ];
    for (const link of tricks) refused('<a href="{{link}}">x</a>', { link });
    // Data that completes a character reference the template started.
    refused('<a href="&#10{{rest}}">x</a>', { rest: "6;avascript:alert(1)" });
    // Data that spells the scheme next to static text, or unquoted.
    refused('<a href="java{{rest}}">x</a>', { rest: "script:alert(1)" });
    refused("<a href={{link}}>x</a>", { link: "javascript:alert(1)" });
    refused("<a href='{{link}}'>x</a>", { link: "javascript:alert(1)" });
  });

  await t.step("checks every candidate of a srcset", () => {
    refused('<img srcset="{{a}} 1x, {{b}} 2x">', { a: "https://example.com/a.png", b: "data:image/png,x" });
    const ok = html('<img srcset="{{a}} 1x, {{b}} 2x">', { a: "https://e.com/a.png", b: "/b.png" });
    assert.equal(ok, '<img srcset="https:&#x2F;&#x2F;e.com&#x2F;a.png 1x, &#x2F;b.png 2x">');
  });

  await t.step("checks attribute names that data spells", () => {
    const error = refused('<a {{name}}="{{value}}">x</a>', { name: "href", value: "javascript:alert(1)" });
    assert.equal(error.details?.attribute, "href");
  });

  await t.step("keeps http(s), mailto, tel, cid and relative URLs from data, unchanged", () => {
    const links = [
      "https://example.com/a?b=1&c=2#d",
      "http://example.com",
      "HTTPS://EXAMPLE.COM",
      "mailto:jane@example.com",
      "tel:+4930123",
      "cid:logo@example.com",
      "/relative/path",
      "#anchor",
      "?q=1",
      "//example.com/x",
      "page.html",
      "",
    ];
    for (const link of links) {
      const out = html('<a href="{{link}}" title="{{link}}">{{link}}</a>', { link });
      assert.ok(out && !/[\uFDD0-\uFDD2]/.test(out), "no markers are left in the output");
      const escaped = Mustache.escape(link);
      assert.equal(out, `<a href="${escaped}" title="${escaped}">${escaped}</a>`, link);
    }
  });

  await t.step("leaves data after a static scheme, non-URL attributes and static URLs alone", () => {
    const js = "javascript:alert(1)";
    assert.equal(
      html('<a href="https://e.com/{{p}}">x</a>', { p: js }),
      '<a href="https://e.com/javascript:alert(1)">x</a>',
    );
    assert.equal(html('<img alt="{{p}}" title="{{p}}">{{p}}', { p: js }), `<img alt="${js}" title="${js}">${js}`);
    assert.equal(html('<a href="javascript:void(0)">{{p}}</a>', { p: "x" }), '<a href="javascript:void(0)">x</a>');
    assert.equal(html("<p>{{p}}</p><!-- <a href='{{p}}'> -->", { p: js }), `<p>${js}</p><!-- <a href='${js}'> -->`);
  });

  await t.step("escapes the marker characters if data contains them", () => {
    assert.equal(html("<p>{{p}}</p>", { p: "a\uFDD0b\uFDD2c" }), "<p>a&#xfdd0;b&#xfdd2;c</p>");
  });
});

Deno.test("missingVariables resolves dotted names through own properties, as rendering does", () => {
  const data = { name: "Ada", order: { id: null }, nested: Object.create({ inherited: 1 }) };
  assert.deepEqual(
    missingVariables(["name", "order.id", "order", "nested.inherited", "absent"], data),
    ["order.id", "nested.inherited", "absent"],
  );
  assert.deepEqual(missingVariables([], data), []);
});
