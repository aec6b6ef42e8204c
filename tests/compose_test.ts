import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import fc from "fast-check";
import { convert } from "html-to-text";
import { apiError } from "./api_error.ts";
import {
  htmlShape,
  htmlToText,
  MAX_HTML_DEPTH,
  MAX_HTML_INDENT,
  MAX_HTML_TAGS,
  scanHtml,
} from "../supabase/functions/_shared/mail/html.ts";
import { canonicalAddress, countRecipients, dedupeRecipients } from "../supabase/functions/_shared/mail/addresses.ts";
import {
  type AttachmentInput,
  bodies,
  checkContent,
  decodeAttachments,
  DEFAULT_LIMITS,
  loadCompositionLimits,
  MAX_HEADER_VALUE,
  MAX_HEADERS,
  sanitizeHeaders,
} from "../supabase/functions/_shared/mail/compose.ts";

const NEWSLETTER = `<!doctype html>
<html><head><title>Weekly</title><style>p { color: red }</style></head>
<body>
  <div style="display:none">Preheader: this week's highlights</div>
  <table role="presentation"><tr>
    <td><img src="https://example.com/logo.png" alt="Example logo"></td>
    <td><h1>Weekly News</h1></td>
  </tr></table>
  <p>Hello &amp; welcome! Read <a href="https://example.com/posts/1?utm=a&amp;x=1">our first post</a>
  or visit <a href="https://example.com/">https://example.com/</a>.</p>
  <ul><li>One</li><li>Two</li></ul>
  <p>${"Lorem ipsum dolor sit amet, ".repeat(8)}</p>
  <p><a href="https://example.com/unsubscribe">Unsubscribe</a></p>
  <script>alert(1)</script>
</body></html>`;

Deno.test("plain-text bodies from HTML", async (t) => {
  await t.step("keeps links as text and URL, skips images, hidden text, head and scripts", () => {
    const text = htmlToText(NEWSLETTER);
    assert.match(text, /our first post \[https:\/\/example\.com\/posts\/1\?utm=a&x=1\]/);
    assert.match(text, /Unsubscribe \[https:\/\/example\.com\/unsubscribe\]/);
    assert.match(text, /visit https:\/\/example\.com\/\./, "a link whose text is its URL is not repeated");
    assert.match(text, /Hello & welcome!/);
    assert.match(text, /^Weekly News$/m, "headings keep their case");
    assert.match(text, /\* One\n \* Two/);
    for (const hidden of ["logo", "Preheader", "alert", "color: red", "Weekly\n"]) {
      assert.ok(!text.includes(hidden), `${JSON.stringify(hidden)} should not be in:\n${text}`);
    }
  });

  await t.step("puts each table cell on its own line", () => {
    const text = htmlToText(
      "<p>Intro</p><table><tr><th>Item</th><th>Qty</th></tr><tr><td>Apple</td><td>2</td></tr></table>",
    );
    assert.equal(text, "Intro\n\nItem\nQty\nApple\n2");
  });

  await t.step("wraps lines at 78 columns", () => {
    const text = htmlToText(NEWSLETTER);
    assert.ok(text.split("\n").every((line) => line.length <= 78), text);
  });

  await t.step("adds a text part to HTML-only bodies and keeps given bodies as they are", () => {
    assert.deepEqual(bodies({ html: "<p>Hi <b>there</b></p>" }), { html: "<p>Hi <b>there</b></p>", text: "Hi there" });
    assert.deepEqual(bodies({ text: "plain" }), { text: "plain" });
    assert.deepEqual(bodies({ text: "mine", html: "<p>theirs</p>" }), { text: "mine", html: "<p>theirs</p>" });
    assert.deepEqual(bodies({}), {});
  });
});

/** `depth` levels of one nesting shape, closed or left open. */
const NESTINGS: Record<string, (depth: number) => string> = {
  div: (n) => "<div>".repeat(n) + "x" + "</div>".repeat(n),
  "open div": (n) => "<div>".repeat(n) + "x",
  table: (n) => "<table><tr><td>".repeat(Math.ceil(n / 3)) + "x" + "</td></tr></table>".repeat(Math.ceil(n / 3)),
  "ul li": (n) => "<ul><li>".repeat(Math.ceil(n / 2)) + "x",
  "inline b": (n) => "<b>".repeat(n) + "x",
  "svg g": (n) => "<svg>" + "<g>".repeat(n) + "<path/>",
  "a with attributes": (n) => '<a href="https://example.com/" title=">">'.repeat(n) + "x",
};

/** The deepest element and the element count of the tree html-to-text walks (script and style included). */
function walkedShape(html: string): { depth: number; elements: number } {
  type Node = { type: string; parent: Node | null; children?: Node[] };
  let depth = 0;
  let elements = 0;
  const probe = (elem: Node, walk: (nodes: unknown, builder: unknown) => void, builder: unknown) => {
    let level = 0;
    for (let node: Node | null = elem; node && node.type !== "root"; node = node.parent) level++;
    elements++;
    depth = Math.max(depth, level);
    for (const child of elem.children ?? []) {
      if (child.type === "script" || child.type === "style") {
        elements++;
        depth = Math.max(depth, level + 1);
      }
    }
    walk(elem.children, builder);
  };
  // Every element html-to-text knows is walked with the probe instead of its own formatter.
  const known = ["*", "a", "article", "aside", "blockquote", "br", "div", "footer", "form", "h1", "h2", "h3", "h4"]
    .concat(["h5", "h6", "header", "hr", "img", "main", "nav", "ol", "p", "pre", "section", "table", "ul", "wbr"]);
  (convert as (html: string, options: unknown) => string)(`<span>${html}`, {
    baseElements: { selectors: ["*"], orderBy: "occurrence", returnDomByDefault: true },
    selectors: known.map((selector) => ({ selector, format: "probe" })),
    formatters: { probe },
  });
  // Less the <span> that holds everything (top-level script and style would be skipped otherwise).
  return { depth: depth - 1, elements: elements - 1 };
}

Deno.test("plain-text bodies from hostile HTML", async (t) => {
  await t.step("refuses HTML nested deeper than the limit, in any shape and however deep", () => {
    for (const [shape, make] of Object.entries(NESTINGS)) {
      for (const depth of [MAX_HTML_DEPTH + 3, 50_000]) {
        const error = apiError(() => htmlToText(make(depth)), 422, "html_too_complex");
        // Lists reach the quoting and list limit long before the depth limit.
        const limit = shape === "ul li" ? { limit_indent: MAX_HTML_INDENT } : { limit_depth: MAX_HTML_DEPTH };
        assert.deepEqual(error.details, limit, `${shape} ${depth}`);
        apiError(() => bodies({ html: make(depth) }), 422, "html_too_complex");
      }
    }
  });

  await t.step("refuses quotes and lists nested deeper than the indent limit; converts them up to it", () => {
    const quoted = (n: number) => "<blockquote>".repeat(n) + "w " + "</blockquote>".repeat(n);
    const error = apiError(() => htmlToText(quoted(MAX_HTML_INDENT + 1)), 422, "html_too_complex");
    assert.deepEqual(error.details, { limit_indent: MAX_HTML_INDENT });
    assert.match(htmlToText(quoted(MAX_HTML_INDENT)), /^(> ){16}w$/);
    assert.equal(htmlShape("<ul><li><ol><li><dl><dd><blockquote>x").indent, 4);
  });

  await t.step("converts HTML nested right up to the limit", () => {
    const text = htmlToText("<div>".repeat(MAX_HTML_DEPTH - 1) + "<b>deep</b>" + "</div>".repeat(MAX_HTML_DEPTH - 1));
    assert.equal(text, "deep");
    assert.deepEqual(bodies({ text: "given", html: "<div>".repeat(50_000) }).text, "given", "no conversion, no check");
  });

  await t.step("refuses more tags than the limit, start or end, and counts implied closes as the parser does", () => {
    const spans = "<span>x</span>".repeat(MAX_HTML_TAGS / 2);
    assert.equal(htmlToText(spans).length, MAX_HTML_TAGS / 2);
    for (const html of [spans + "<b>", spans + "</b>", "<div>".repeat(MAX_HTML_DEPTH) + "</x>".repeat(MAX_HTML_TAGS)]) {
      const error = apiError(() => htmlToText(html), 422, "html_too_complex");
      assert.deepEqual(error.details, { limit_tags: MAX_HTML_TAGS });
    }
    // Unclosed <p>, <li> and <td> close each other: long, but flat.
    assert.deepEqual(htmlShape("<p>x".repeat(5_000)), { depth: 1, elements: 5_000, tags: 5_000, indent: 0 });
    assert.deepEqual(htmlShape("<ul>" + "<li>x".repeat(5_000)), { depth: 2, elements: 5_001, tags: 5_001, indent: 1 });
    assert.deepEqual(htmlShape("<table><tr>" + "<td>x".repeat(5_000)), {
      depth: 3,
      elements: 5_002,
      tags: 5_002,
      indent: 0,
    });
  });

  await t.step("ignores tags inside comments, attributes and raw text, but not closing tags hidden there", () => {
    const deep = "<div>".repeat(MAX_HTML_DEPTH + 1);
    for (const hidden of [`<!--${deep}-->`, `<p title="${deep}">x</p>`, `<script>${deep}</script>`]) {
      assert.ok(htmlShape(hidden).depth <= 2, hidden.slice(0, 20));
    }
    for (const wrap of [`<style>${deep}</style>`, `<textarea>${deep}</textarea>`, `<![CDATA[${deep}]]>`]) {
      assert.ok(htmlShape(wrap).depth <= 2, wrap.slice(0, 20));
    }
    const closesHidden = [
      "<div><!--</div>-->",
      '<div title="</div>">',
      "<div><script></div></script>",
      "<div></-div>",
      "<div><?</div>>",
    ];
    for (const unit of closesHidden) {
      assert.ok(htmlShape(unit.repeat(MAX_HTML_DEPTH + 1)).depth > MAX_HTML_DEPTH, unit);
    }
  });

  await t.step("reports the runs of plain text: not tags, comments, declarations or raw text", () => {
    const runs = (html: string) => {
      const found: string[] = [];
      scanHtml(html, { textRun: (start, end) => found.push(html.slice(start, end)) });
      return found;
    };
    // A run ends with the "<" that starts what follows it (the document starts in text).
    assert.deepEqual(runs('a<b c="d>e">f<!-- g -->h<style>i</style>j<!doctype x>k< l'), [
      "a<",
      "f<",
      "h<",
      "j<",
      // "<" and a space is no tag: the text goes on (as a run of its own).
      "k<",
      " l",
    ]);
    assert.deepEqual(runs("<title>a<b>c</title>d<textarea>e</textarea>"), ["<", "d<"]);
    assert.deepEqual(runs("no tags at all"), ["no tags at all"]);
    assert.deepEqual(runs("<p>"), ["<"]);
  });

  await t.step("measures the depth and size of the tree html-to-text builds (property)", () => {
    const pieces = [
      "<div>",
      "</div>",
      "<p>",
      "</p>",
      "<li>",
      "<ul>",
      "</ul>",
      "<table>",
      "<tr>",
      "<td>",
      "</td>",
      "<tbody>",
      "<!--",
      "-->",
      "<!-",
      "<!",
      ">",
      "<",
      "/",
      "</",
      "-",
      "]",
      "<script>",
      "</script>",
      "</SCRIPT",
      "<style>",
      "</style ",
      "<title>",
      "</title>",
      "<textarea>",
      "<xmp>",
      "<tmp>",
      "<xitle>",
      "\x1c",
      "\x0f",
      "'",
      '"',
      "=",
      " ",
      "\t",
      "a",
      "<svg>",
      "</svg>",
      "<path/>",
      "<math>",
      "<mi>",
      "</mi>",
      "<br>",
      "</br>",
      "<img>",
      "<![CDATA[",
      "]]>",
      "<?",
      "<b",
      " x='",
      '<a href="',
      "<option>",
      "<select>",
      "<dd>",
      "<dt>",
      "<th>",
      "<body>",
      "<head>",
      "<link>",
      "<h1>",
      "<DIV>",
      "<Div/>",
      "&",
      "&lt;",
    ];
    const html = fc.array(fc.constantFrom(...pieces), { maxLength: 80 }).map((list) => list.join(""));
    fc.assert(
      fc.property(html, (source) => {
        const mine = htmlShape(source);
        const walked = walkedShape(source);
        // An unfinished start tag at the very end is on the parser's stack but never in the tree.
        assert.ok(mine.depth >= walked.depth && mine.depth <= walked.depth + 1, `depth of ${JSON.stringify(source)}`);
        assert.ok(mine.elements >= walked.elements && mine.elements <= walked.elements + 1, JSON.stringify(source));
      }),
      { numRuns: 3_000 },
    );
  });
});

Deno.test("extra headers", async (t) => {
  await t.step("allows X-* and the listed headers case-insensitively, in canonical spelling", () => {
    const headers = sanitizeHeaders({
      "x-campaign": "q3",
      "X-Mailer": "agent",
      "list-unsubscribe": "<mailto:unsubscribe@example.com>, <https://example.com/u>",
      "LIST-UNSUBSCRIBE-POST": "List-Unsubscribe=One-Click",
      "List-Id": "News <news.example.com>",
      "in-reply-to": "<abc@example.com>",
      "references": "<abc@example.com> <def@example.com>",
      "auto-submitted": "auto-generated",
      "precedence": "bulk",
    });
    assert.deepEqual(headers, {
      "x-campaign": "q3",
      "X-Mailer": "agent",
      "List-Unsubscribe": "<mailto:unsubscribe@example.com>, <https://example.com/u>",
      "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
      "List-Id": "News <news.example.com>",
      "In-Reply-To": "<abc@example.com>",
      "References": "<abc@example.com> <def@example.com>",
      "Auto-Submitted": "auto-generated",
      "Precedence": "bulk",
    });
    assert.deepEqual(sanitizeHeaders(undefined), {});
  });

  await t.step("rejects headers outside the allow-list and names that are not field names", () => {
    const names = [
      "From",
      "to",
      "Bcc",
      "Subject",
      "Content-Type",
      "Content-Transfer-Encoding",
      "DKIM-Signature",
      "Return-Path",
      "Received",
      "X-",
      "X Spaced",
      "X-Colon:",
      "X-Ünicode",
      "X-\r\nBcc",
      "__proto__",
      `X-${"a".repeat(80)}`,
    ];
    for (const name of names) {
      const error = apiError(() => sanitizeHeaders({ [name]: "v" }), 400, "header_not_allowed");
      assert.deepEqual(error.details, { header: name });
    }
  });

  await t.step("rejects CR, LF, NUL and other control characters in values", () => {
    for (const value of ["a\r\nBcc: victim@example.com", "a\nb", "a\rb", "a\0b", "a\x1bb", "a\x7fb", "a\u0085b"]) {
      const error = apiError(() => sanitizeHeaders({ "X-Tag": value }), 400, "invalid_header_value");
      assert.deepEqual(error.details, { header: "X-Tag" });
    }
    assert.deepEqual(sanitizeHeaders({ "X-Tab": "a\tb" }), { "X-Tab": "a\tb" });
    apiError(() => sanitizeHeaders({ "X-Num": 5 as unknown as string }), 400, "invalid_header_value");
  });

  await t.step("limits value length and header count", () => {
    sanitizeHeaders({ "X-Long": "a".repeat(MAX_HEADER_VALUE) });
    apiError(() => sanitizeHeaders({ "X-Long": "a".repeat(MAX_HEADER_VALUE + 1) }), 400, "invalid_header_value");
    const many = (n: number) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`X-H${i}`, "v"]));
    assert.equal(Object.keys(sanitizeHeaders(many(MAX_HEADERS))).length, MAX_HEADERS);
    const error = apiError(() => sanitizeHeaders(many(MAX_HEADERS + 1)), 400, "too_many_headers");
    assert.deepEqual(error.details, { limit: MAX_HEADERS });
  });

  await t.step("accepts List-Unsubscribe only as <https://...> and <mailto:...> entries", () => {
    const good = [
      "<https://example.com/unsubscribe?u=1&l=2>",
      "<mailto:unsubscribe@example.com?subject=stop>",
      "<mailto:u@example.com>, <https://example.com/u>",
      "<HTTPS://EXAMPLE.COM/U>,<MAILTO:U@EXAMPLE.COM>",
    ];
    for (const value of good) {
      assert.deepEqual(sanitizeHeaders({ "list-unsubscribe": value }), { "List-Unsubscribe": value });
    }
    const bad = [
      "<javascript:alert(1)>",
      "<http://example.com/u>",
      "<data:text/html,x>",
      "https://example.com/u",
      "mailto:u@example.com",
      "<https://example.com/u",
      "<https://>",
      "<mailto:>",
      "<mailto:nobody>",
      "<https://example.com/a b>",
      "<https://example.com/u>,",
      "<https://example.com/u>, javascript:alert(1)",
      "<https://example.com/u> <mailto:u@example.com>",
      "",
      "<>",
      "<ftp://example.com/u>",
    ];
    for (const value of bad) {
      const error = apiError(() => sanitizeHeaders({ "List-Unsubscribe": value }), 400, "invalid_header_value");
      assert.deepEqual(error.details, { header: "List-Unsubscribe", expected: "<https://...>, <mailto:...>" }, value);
    }
  });

  await t.step("rejects the same header given twice in different case", () => {
    const error = apiError(() => sanitizeHeaders({ "X-A": "1", "x-a": "2" }), 400, "duplicate_header");
    assert.deepEqual(error.details, { header: "x-a" });
  });
});

const LIMITS = { maxCount: 3, maxTotalBytes: 16 };
const b64 = (text: string) => Buffer.from(text).toString("base64");
/** The bytes an attachment's content stream gives. */
const bytesOf = async (content: AsyncIterable<Uint8Array> | Uint8Array) => {
  if (content instanceof Uint8Array) return Buffer.from(content);
  const chunks: Uint8Array[] = [];
  for await (const chunk of content) chunks.push(chunk);
  return Buffer.concat(chunks);
};

Deno.test("attachments", async (t) => {
  await t.step("decodes base64 into in-memory streams with only filename, content and contentType", async () => {
    const input = [
      { filename: "hello.txt", content: b64("hello"), content_type: "Text/Plain" },
      { filename: "résumé 2024.pdf", content: b64("%PDF") },
      { filename: "empty.bin", content: "" },
    ];
    const out = decodeAttachments(input, LIMITS);
    assert.equal(out.length, 3);
    assert.equal((await bytesOf(out[0].content)).toString(), "hello");
    assert.deepEqual(Object.keys(out[0]), ["filename", "content", "contentType"]);
    assert.equal(out[0].contentType, "text/plain");
    assert.deepEqual(Object.keys(out[1]), ["filename", "content"]);
    assert.equal(out[1].filename, "résumé 2024.pdf");
    assert.equal((await bytesOf(out[2].content)).length, 0);
    assert.deepEqual(decodeAttachments(undefined, LIMITS), []);
  });

  await t.step("never passes on path, href, raw or other keys from the input", async () => {
    const sneaky = {
      filename: "x.txt",
      content: b64("x"),
      path: "/etc/passwd",
      href: "http://169.254.169.254/",
      raw: "Content-Type: text/plain\r\n\r\nhi",
      encoding: "utf8",
      cid: "logo",
    } as AttachmentInput;
    const [out] = decodeAttachments([sneaky], LIMITS);
    assert.deepEqual(Object.keys(out), ["filename", "content"]);
    assert.equal((await bytesOf(out.content)).toString(), "x");
  });

  await t.step("accepts line-wrapped base64", async () => {
    const wrapped = b64("0123456789abcdef").replace(/(.{8})/g, "$1\r\n");
    const [out] = decodeAttachments([{ filename: "w.txt", content: wrapped }], LIMITS);
    assert.equal((await bytesOf(out.content)).toString(), "0123456789abcdef");
  });

  await t.step("decodes a large attachment slice by slice into exactly its bytes", async () => {
    // Sizes around the 48 KiB slice: the last group padded by one, by two, or not at all.
    for (const size of [0, 1, 49_151, 49_152, 49_153, 200_000, 300_001]) {
      const bytes = Buffer.from(Uint8Array.from({ length: size }, (_, i) => (i * 7919) % 256));
      const [out] = decodeAttachments([{ filename: "big.bin", content: bytes.toString("base64") }], {
        maxCount: 1,
        maxTotalBytes: 1_000_000,
      });
      const chunks: Uint8Array[] = [];
      for await (const chunk of out.content) chunks.push(chunk);
      assert.ok(chunks.every((chunk) => chunk.length <= 49_152), `slices of at most 48 KiB (${size})`);
      assert.ok(Buffer.concat(chunks).equals(bytes), `the same bytes (${size})`);
    }
  });

  await t.step("rejects content that is not strict base64, naming the index", () => {
    const bad = [
      "aGk", // missing padding
      "aGl=", // non-zero padding bits
      "a=Gk",
      "aGk=aGk=",
      "aG k=",
      "aGk=\t",
      "-_-_",
      "data:text/plain;base64,aGk=",
      "aGk=!",
      42 as unknown as string,
    ];
    for (const content of bad) {
      const error = apiError(
        () => decodeAttachments([{ filename: "ok.txt", content: b64("ok") }, { filename: "x.txt", content }], LIMITS),
        400,
        "invalid_attachment",
      );
      assert.deepEqual(error.details, { index: 1, field: "content" }, String(content));
    }
  });

  await t.step("rejects file names with directories, control characters or nothing in them", () => {
    const names = ["../etc/passwd", "a/b.txt", "..\\win.ini", "C:\\x.txt", ".", "..", "", "a\r\nb.txt", "a\0.txt"];
    for (const filename of [...names, "a\tb", "x".repeat(256)]) {
      const error = apiError(
        () => decodeAttachments([{ filename, content: b64("x") }], LIMITS),
        400,
        "invalid_attachment",
      );
      assert.deepEqual(error.details, { index: 0, field: "filename" }, JSON.stringify(filename));
    }
    assert.equal(decodeAttachments([{ filename: "..hidden", content: "" }], LIMITS)[0].filename, "..hidden");
  });

  await t.step("rejects file names with bidirectional controls or invisible characters", () => {
    const hidden = [
      "\u202A",
      "\u202B",
      "\u202C",
      "\u202D",
      "\u202E",
      "\u2066",
      "\u2067",
      "\u2068",
      "\u2069",
      "\u200E",
      "\u200F",
      "\u061C",
      "\u200B",
      "\u200C",
      "\u200D",
      "\u2060",
      "\uFEFF",
      "\u00AD",
      "\u034F",
      "\u115F",
      "\u3164",
      "\uFFA0",
    ];
    for (const character of hidden) {
      for (const filename of [`invoice${character}fdp.exe`, `${character}a.txt`, `a.txt${character}`]) {
        const error = apiError(
          () => decodeAttachments([{ filename, content: b64("x") }], LIMITS),
          400,
          "invalid_attachment",
        );
        assert.deepEqual(error.details, { index: 0, field: "filename" }, JSON.stringify(filename));
      }
    }
    for (const filename of ["Grüße aus Köln.pdf", "日本語.txt", "عربي.docx", "👨‍👩‍👧 photo.jpg", "👩🏽‍💻.png", "a b.txt"]) {
      assert.equal(decodeAttachments([{ filename, content: b64("x") }], LIMITS)[0].filename, filename);
    }
  });

  await t.step("rejects line and paragraph separators and every other character that renders as nothing", () => {
    const refused: [string, string][] = [
      ["\u2028", "a line separator"],
      ["\u2029", "a paragraph separator"],
      ["\u0085", "a control character"],
      ["\u000B", "a control character"],
      ["\u202E", "a bidirectional control"],
      ["\u2066", "a bidirectional control"],
      ["\u180E", "an invisible character"],
      ["\uFE0F", "an invisible character"],
      ["\u180B", "an invisible character"],
      ["\u{E0041}", "an invisible character"],
      ["\u{E0100}", "an invisible character"],
      ["\u2064", "an invisible character"],
      ["\uFFF0", "an invisible character"],
    ];
    for (const [character, kind] of refused) {
      const code = `U+${character.codePointAt(0)!.toString(16).toUpperCase().padStart(4, "0")}`;
      const error = apiError(
        () =>
          decodeAttachments(
            [{ filename: "ok.txt", content: "" }, { filename: `report${character}.pdf`, content: "" }],
            LIMITS,
          ),
        400,
        "invalid_attachment",
      );
      assert.deepEqual(error.details, { index: 1, field: "filename" }, code);
      assert.ok(
        error.message.startsWith(`attachments.1.filename: filename contains ${code} (${kind}) at position 6;`),
        error.message,
      );
    }
    // Variation selectors after an emoji, and keycaps, are what they are meant for.
    for (const filename of ["❤️ notes.txt", "1️⃣ first.txt", "☺︎.txt", "👨‍👩‍👧‍👦 family.jpg"]) {
      assert.equal(decodeAttachments([{ filename, content: "" }], LIMITS)[0].filename, filename);
    }
  });

  await t.step("requires content_type to be type/subtype", () => {
    for (const content_type of ["text", "text/plain; charset=utf-8", "text/plain\r\nX: y", "/plain", "a/b/c", ""]) {
      const error = apiError(
        () => decodeAttachments([{ filename: "a.txt", content: b64("x"), content_type }], LIMITS),
        400,
        "invalid_attachment",
      );
      assert.deepEqual(error.details, { index: 0, field: "content_type" }, content_type);
    }
    const ok = decodeAttachments(
      [{ filename: "a.docx", content: "", content_type: "application/vnd.openxmlformats-officedocument.word+xml" }],
      LIMITS,
    );
    assert.equal(ok[0].contentType, "application/vnd.openxmlformats-officedocument.word+xml");
  });

  await t.step("limits the number of attachments", () => {
    const one = { filename: "a.txt", content: "" };
    decodeAttachments([one, one, one], LIMITS);
    const error = apiError(() => decodeAttachments([one, one, one, one], LIMITS), 413, "too_many_attachments");
    assert.deepEqual(error.details, { limit: 3 });
  });

  await t.step("limits the total decoded size", async () => {
    const total = decodeAttachments(
      [{ filename: "a", content: b64("x".repeat(10)) }, { filename: "b", content: b64("y".repeat(6)) }],
      LIMITS,
    );
    assert.equal((await bytesOf(total[0].content)).length + (await bytesOf(total[1].content)).length, 16);
    const error = apiError(
      () =>
        decodeAttachments(
          [{ filename: "a", content: b64("x".repeat(10)) }, { filename: "b", content: b64("y".repeat(7)) }],
          LIMITS,
        ),
      413,
      "attachments_too_large",
    );
    assert.deepEqual(error.details, { limit_bytes: 16 });
  });
});

Deno.test("composition limits", async (t) => {
  await t.step("uses the defaults when nothing is set", () => {
    assert.deepEqual(loadCompositionLimits({}), {
      maxRecipients: 50,
      maxMessageBytes: 10 * 1024 * 1024,
      maxHtmlBytes: 2 * 1024 * 1024,
      maxSubjectChars: 998,
      maxAttachments: 10,
      maxAttachmentBytes: 7 * 1024 * 1024,
    });
    assert.deepEqual(loadCompositionLimits({ MAILROOM_MAX_RECIPIENTS: " " }), DEFAULT_LIMITS);
  });

  await t.step("reads each override from its MAILROOM_MAX_* variable", () => {
    const limits = loadCompositionLimits({
      MAILROOM_MAX_RECIPIENTS: "5",
      MAILROOM_MAX_MESSAGE_BYTES: "1000",
      MAILROOM_MAX_HTML_BYTES: "500",
      MAILROOM_MAX_SUBJECT_CHARS: "200",
      MAILROOM_MAX_ATTACHMENTS: "2",
      MAILROOM_MAX_ATTACHMENT_BYTES: "300",
    });
    assert.deepEqual(limits, {
      maxRecipients: 5,
      maxMessageBytes: 1000,
      maxHtmlBytes: 500,
      maxSubjectChars: 200,
      maxAttachments: 2,
      maxAttachmentBytes: 300,
    });
    assert.equal(DEFAULT_LIMITS.maxRecipients, 50, "defaults are not modified");
  });

  await t.step("rejects values that are not positive integers, naming the variable", () => {
    for (const raw of ["many", "0", "-1", "1.5", "1e3", "0x10", "99999999999999999999"]) {
      assert.throws(() => loadCompositionLimits({ MAILROOM_MAX_ATTACHMENTS: raw }), /MAILROOM_MAX_ATTACHMENTS/, raw);
    }
    assert.throws(() => loadCompositionLimits({ MAILROOM_MAX_SUBJECT_CHARS: "999" }), /MAILROOM_MAX_SUBJECT_CHARS/);
  });
});

Deno.test("recipients", async (t) => {
  await t.step("keeps the first occurrence in the order to, cc, bcc", () => {
    const out = dedupeRecipients({
      to: [{ name: "Ann", address: "ann@example.com" }, { address: "bob@example.com" }],
      cc: [{ address: "carol@example.com" }, { name: "Bob again", address: "BOB@Example.COM" }],
      bcc: [{ address: "Ann@EXAMPLE.com" }, { address: "carol@example.com" }, { address: "dave@example.com" }],
    });
    assert.deepEqual(out, {
      to: [{ name: "Ann", address: "ann@example.com" }, { address: "bob@example.com" }],
      cc: [{ address: "carol@example.com" }],
      bcc: [{ address: "dave@example.com" }],
    });
    assert.equal(countRecipients(out), 4);
  });

  await t.step("removes repeats within one list and treats an IDN and its punycode as one domain", () => {
    const out = dedupeRecipients({
      to: [{ address: "a@bücher.de" }, { address: "a@example.com" }, { address: "a@EXAMPLE.com" }],
      bcc: [{ address: "A@xn--bcher-kva.de" }],
    });
    assert.deepEqual(out, { to: [{ address: "a@bücher.de" }, { address: "a@example.com" }], cc: [], bcc: [] });
  });

  await t.step("counts recipients over all lists", () => {
    assert.equal(countRecipients({ to: [{ address: "a@example.com" }] }), 1);
    assert.equal(
      countRecipients({ to: [{ address: "a@example.com" }], cc: [], bcc: [{ address: "b@example.com" }] }),
      2,
    );
  });

  await t.step("canonical addresses: IDN domains in punycode, the local part as given", () => {
    assert.equal(canonicalAddress("jörg@bücher.de"), "jörg@bücher.de", "UTF-8 on both sides for SMTPUTF8");
    assert.equal(canonicalAddress("user@日本語.jp"), "user@xn--wgv71a119e.jp");
    assert.equal(canonicalAddress("Jane.Doe@Example.COM"), "Jane.Doe@example.com");
    assert.equal(canonicalAddress("a@xn--bcher-kva.de"), "a@xn--bcher-kva.de");
  });

  await t.step("canonical addresses refuse domains that cannot be host names", () => {
    for (
      const address of [
        "a@xn--zz.com",
        "a@exa mple.com",
        "a@ex%41mple.com",
        "a@-bad.com",
        "a@a..b.com",
        "a@",
        "@x.com",
        "nope",
        '"a@b"@example.com',
        "a@[192.0.2.1]",
      ]
    ) {
      assert.ok(typeof canonicalAddress(address) !== "string", address);
    }
  });
});

Deno.test("content accepted now and built later", async (t) => {
  await t.step(
    "refuses what building the message would: subject and HTML size, HTML no text part can come from",
    () => {
      const limits = { maxSubjectChars: 10, maxHtmlBytes: 13 };
      checkContent({ subject: "0123456789", html: "<p>ééé</p>" }, limits);
      assert.deepEqual(
        apiError(() => checkContent({ subject: "01234567890" }, limits), 422, "subject_too_long").details,
        { limit: 10 },
      );
      assert.deepEqual(
        apiError(() => checkContent({ html: "<p>éééé</p>" }, limits), 413, "html_too_large").details,
        { limit_bytes: 13 },
      );
      const deep = "<div>".repeat(MAX_HTML_DEPTH + 1);
      apiError(() => checkContent({ html: deep }, DEFAULT_LIMITS), 422, "html_too_complex");
      // With a text part, or when the caller has checked the shape, nothing is generated from it.
      checkContent({ html: deep, text: "plain" }, DEFAULT_LIMITS);
      checkContent({ html: deep }, DEFAULT_LIMITS, { checkShape: false });
    },
  );
});
