import assert from "node:assert/strict";
import fc from "fast-check";
import Mustache from "mustache";
import { apiError } from "./api_error.ts";
import {
  compileTemplate,
  type EmailTemplate,
  MAX_DATA_DEPTH,
  MAX_DATA_VALUES,
  MAX_RENDER_STEPS,
  MAX_SECTION_DEPTH,
  MAX_TEMPLATE_PART_CHARS,
  MAX_VARIABLE_NAME,
  mergeTemplateData,
  missingVariables,
  prepareTemplateData,
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

Deno.test("places template data may not go", async (t) => {
  const saved = (source: string) =>
    apiError(() => validateTemplateSource(template({ html: source })), 422, "template_invalid");
  const refused = (source: string, data: Record<string, unknown>) =>
    apiError(() => renderTemplate(template({ html: source }), data), 422, "template_data_unsafe_context");

  await t.step("refuses a template that puts a variable there, naming the context, in any spelling", () => {
    const cases: [string, string][] = [
      ['<p style="color: {{color}}">x</p>', "style_attribute"],
      ["<p STYLE='{{color}}'>x</p>", "style_attribute"],
      ["<p sTyLe = {{color}}>x</p>", "style_attribute"],
      ['<p\n\tstyle\n=\n"{{color}}">x</p>', "style_attribute"],
      ['<svg><rect style="fill:{{color}}"/></svg>', "style_attribute"],
      ['<a onclick="{{js}}">x</a>', "event_handler_attribute"],
      ["<img src=x ONERROR={{js}}>", "event_handler_attribute"],
      ['<a/onmouseover="{{js}}">x</a>', "event_handler_attribute"],
      ['<body onLoad="go({{id}})">', "event_handler_attribute"],
      ["<style>p { color: {{color}} }</style>", "style_element"],
      ['<STYLE type="text/css">{{css}}</STYLE>', "style_element"],
      ["<style >a{}</style ><style\n>{{css}}", "style_element"],
      ["<script>var id = '{{id}}';</script>", "script_element"],
      ['<SCRIPT type="module">{{js}}</script >', "script_element"],
      ['<iframe srcdoc="{{page}}"></iframe>', "srcdoc_attribute"],
      ['<meta http-equiv="refresh" content="0; url={{link}}">', "meta_refresh"],
      ['<META HTTP-EQUIV="Refresh" CONTENT="{{seconds}}">', "meta_refresh"],
      ['<meta content="0;url={{link}}" http-equiv=" refresh\t">', "meta_refresh"],
      ['<meta http-equiv="&#82;efresh" content="{{link}}">', "meta_refresh"],
      ['<meta http-equiv="&#x72;&#x65;fresh" content="{{link}}">', "meta_refresh"],
      ['<meta http-equiv="{{what}}" content="0; url=https://example.com">', "meta_http_equiv"],
    ];
    for (const [source, context] of cases) {
      const error = saved(source);
      assert.equal(error.details?.context, context, source);
      assert.equal(error.details?.part, "html", source);
      assert.equal(error.details?.position, source.indexOf("{{"), source);
    }
  });

  await t.step("leaves data in text, other attributes and look-alikes alone, and the template's own styles", () => {
    const allowed = [
      '<p title="{{a}}" class="{{b}}" data-style="{{c}}" data-onclick="{{d}}">{{e}}</p>',
      '<style>p { color: red }</style><p style="color: red">{{a}}</p><script>go()</script>',
      '<meta name="description" content="{{a}}"><meta http-equiv="content-language" content="{{b}}">',
      "<styles>{{a}}</styles><scripts>{{b}}</scripts><p>style={{c}}</p>",
      '<p {{#bold}}style="font-weight: bold"{{/bold}}>{{a}}</p>',
      "<!-- <style>{{a}}</style> --><textarea>{{b}}</textarea><title>{{c}}</title>",
    ];
    for (const source of allowed) {
      validateTemplateSource(template({ html: source }));
      renderTemplate(template({ html: source }), {
        a: "color: red",
        b: "alert(1)",
        c: "x",
        d: "y",
        e: "z",
        bold: true,
      });
    }
  });

  await t.step("refuses data that gets there when rendered: names it spells, sections that open a style", () => {
    const cases: [string, Record<string, unknown>, string, string | undefined][] = [
      ['<p {{attr}}="color: red">x</p>', { attr: "style" }, "style_attribute", "style"],
      ['<p {{attr}}="color: red">x</p>', { attr: "STYLE" }, "style_attribute", "style"],
      ['<a {{attr}}="alert(1)">x</a>', { attr: "onClick" }, "event_handler_attribute", "onclick"],
      ['<a on{{event}}="alert(1)">x</a>', { event: "mouseover" }, "event_handler_attribute", "onmouseover"],
      [
        '<meta {{attr}}="refresh" content="0;url=https://e.com">',
        { attr: "http-equiv" },
        "meta_http_equiv",
        "http-equiv",
      ],
      ["<style>{{#open}}</style>{{/open}}<p>{{color}}</p>", { open: false, color: "red" }, "style_element", undefined],
      ["<script>{{^closed}}</script>{{/closed}}{{x}}", { closed: true, x: "1" }, "script_element", undefined],
    ];
    for (const [source, data, context, attribute] of cases) {
      const error = refused(source, data);
      const expected = {
        part: "html",
        variable: error.details?.variable,
        context,
        ...(attribute ? { attribute } : {}),
      };
      assert.deepEqual(error.details, expected, source);
      assert.ok(Object.keys(data).includes(String(error.details?.variable)), source);
    }
    // A valueless attribute runs nothing; a closed style element holds no data.
    assert.equal(renderTemplate(template({ html: "<a {{attr}}>x</a>" }), { attr: "onclick" }).html, "<a onclick>x</a>");
    assert.equal(
      renderTemplate(template({ html: "<style>{{#open}}</style>{{/open}}<p>{{color}}</p>" }), {
        open: true,
        color: "red",
      })
        .html,
      "<style></style><p>red</p>",
    );
  });

  await t.step("the preview and every send refuse what the save refuses, for templates stored before", () => {
    // A template saved before the check reaches renderTemplate as it is stored.
    const error = apiError(
      () => renderTemplate(template({ html: '<p style="color: {{c}}">x</p>' }), { c: "red" }),
      422,
      "template_invalid",
    );
    assert.equal(error.details?.context, "style_attribute");
  });
});

Deno.test("compiled templates", async (t) => {
  await t.step("render many data with one parse, exactly as renderTemplate does", () => {
    const source = template({
      subject: "Order {{order.id}} for {{name}}",
      html: '<p>Hi {{name}}</p>{{#items}}<a href="{{url}}" title="{{name}}">{{label}}</a>{{/items}}',
      text: "Hi {{name}}",
      variables: ["name"],
    });
    const compiled = compileTemplate(source);
    const shared = prepareTemplateData({ order: { id: 7 }, items: [{ url: "https://e.com/a", label: "A" }] });
    for (const name of ["Ada", "Tom & <Jerry>", ""]) {
      const merged = mergeTemplateData(shared, prepareTemplateData({ name }));
      assert.deepEqual(
        compiled.render(merged),
        renderTemplate(source, { order: { id: 7 }, items: shared.root.items, name }),
      );
    }
    assert.ok(compiled.steps > 0);
    assert.equal(compiled.htmlShapeVaries, true);
    assert.equal(compileTemplate(template({ html: "<p>{{a}}</p>" })).htmlShapeVaries, false);
  });

  await t.step("check URLs in quoted attributes wherever sections repeat them, as a full scan does", () => {
    const source = template({
      html: "{{#links}}<a title='{{t}}' href='{{u}}'>{{t}}</a><img srcset=\"{{u}} 1x, {{v}} 2x\">{{/links}}",
    });
    const ok = { t: "x", u: "https://e.com/a", v: "/b.png" };
    const html = renderTemplate(source, { links: [ok, ok] }).html!;
    assert.ok(!/[\uFDD0-\uFDD2]/.test(html), "no markers are left");
    assert.equal(html.split("https:&#x2F;&#x2F;e.com&#x2F;a").length, 5);
    for (
      const [bad, attribute] of [
        [{ u: "javascript:alert(1)" }, "href"],
        [{ v: "data:image/png,x" }, "srcset"],
        [{ u: "java\tscript:x" }, "href"],
      ] as const
    ) {
      const error = apiError(
        () => renderTemplate(source, { links: [ok, { ...ok, ...bad }] }),
        422,
        "template_data_unsafe_url",
      );
      // The attribute's first variable is named, as a full scan names it.
      assert.deepEqual(error.details, { part: "html", variable: "u", attribute });
    }
    // Data in a title may say anything.
    renderTemplate(source, { links: [{ ...ok, t: "javascript:alert(1)" }] });
  });

  await t.step("decide as a full scan of every render does, whatever the data (property)", () => {
    const source = '<p title="{{t}}">{{t}}</p>{{#links}}<a href="{{u}}{{t}}" class=\'{{t}}\'>{{t}}</a>' +
      '<a href="java{{u}}">x</a><img srcset="{{u}} 1x, {{t}} 2x">{{/links}}<img src="x/{{u}}">';
    // A Mustache comment inside an HTML comment is outside plain text: that forces the full scan
    // (on a line of its own, so that it changes nothing about standalone tags below).
    const scanned = "<!--{{! scan }}-->\n";
    const outcome = (html: string, data: Record<string, unknown>) => {
      try {
        const out = renderTemplate(template({ html }), data).html!;
        return html.startsWith(scanned) ? out.slice("<!---->\n".length) : out;
      } catch (error) {
        return JSON.stringify([(error as { code: string }).code, (error as { details: unknown }).details]);
      }
    };
    const value = fc.constantFrom(
      "https://e.com/a",
      "/b",
      "javascript:alert(1)",
      " JAVASCRIPT:x",
      "java\tscript:x",
      "data:text/html,x",
      "mailto:a@e.com",
      "a b",
      "",
      "x:y",
      "script:alert(1)",
      "&#106;avascript:x",
    );
    fc.assert(fc.property(value, fc.array(fc.record({ u: value, t: value }), { maxLength: 3 }), (t, links) => {
      const data = { t, u: t, links };
      assert.equal(outcome(source, data), outcome(scanned + source, data));
    }));
  });

  await t.step("merge data over shared data as {...shared, ...own} would be prepared (property)", () => {
    const json = fc.dictionary(
      fc.constantFrom("a", "b", "c", "d"),
      fc.oneof(
        fc.string(),
        fc.integer(),
        fc.constant(null),
        fc.array(fc.integer(), { maxLength: 4 }),
        fc.dictionary(fc.string(), fc.boolean(), { maxKeys: 3 }),
      ),
    );
    fc.assert(fc.property(json, json, (shared, own) => {
      const merged = mergeTemplateData(prepareTemplateData(shared), prepareTemplateData(own));
      const direct = prepareTemplateData({ ...shared, ...own });
      assert.deepEqual({ ...merged.root }, { ...direct.root });
      assert.equal(merged.total, direct.total);
    }));
  });

  await t.step("refuse a merge over the value limit, as the merged data would be refused", () => {
    const half = Array.from({ length: MAX_DATA_VALUES / 2 }, (_, i) => i);
    const shared = prepareTemplateData({ a: half });
    mergeTemplateData(shared, prepareTemplateData({ a: half, b: half.slice(0, 10) }));
    const error = apiError(
      () => mergeTemplateData(shared, prepareTemplateData({ b: half })),
      422,
      "template_data_invalid",
    );
    assert.deepEqual(error.details, { limit: MAX_DATA_VALUES });
  });
});
