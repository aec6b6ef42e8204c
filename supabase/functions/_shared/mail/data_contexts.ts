// Where template data lands in HTML, and the places it may not fill. Data is HTML-escaped, so it
// cannot add tags or attributes, but the template decides where it goes: into a link (checked:
// the URL must stay http(s), mailto, tel, cid or relative), or into places where any text is
// code or a redirect: a style attribute or <style> element (CSS can load URLs, hide or overlay
// content), an event handler attribute (onclick=...), a <script> element, an iframe's srcdoc
// (a whole document), or <meta http-equiv> (refresh redirects the reader). Those are refused
// whatever the data says: escaping does not make text safe there, and no check short of a CSS
// or JavaScript parser would.
import { scanHtml } from "./html.ts";

/** Characters of rendered (or source) HTML that came from one variable. */
export interface DataRange {
  start: number;
  end: number;
  /** The variable, as written in the template (`order.id`). */
  name: string;
}

/**
 * Places data may not fill, as reported in `details.context`:
 *
 * - `style_attribute`: a `style` attribute;
 * - `event_handler_attribute`: any attribute whose name starts with `on` (`onclick`, `OnLoad`);
 * - `srcdoc_attribute`: an iframe's `srcdoc`, which holds a whole HTML document;
 * - `meta_http_equiv`: the `http-equiv` of a `<meta>` (data would choose what the meta does);
 * - `meta_refresh`: the `content` of `<meta http-equiv="refresh">` (a redirect);
 * - `style_element`, `script_element`: the text of a `<style>` or `<script>` element.
 */
export type UnsafeContext =
  | "style_attribute"
  | "event_handler_attribute"
  | "srcdoc_attribute"
  | "meta_http_equiv"
  | "meta_refresh"
  | "style_element"
  | "script_element";

/** What {@linkcode findUnsafeData} found: data where it may not be. */
export type UnsafeData =
  | { kind: "context"; variable: string; context: UnsafeContext; attribute?: string; position: number }
  | { kind: "url"; variable: string; attribute: string; position: number };

/** How {@linkcode findUnsafeData} reads the ranges. */
export interface FindOptions {
  /**
   * Check the URLs data helps to form (rendered HTML: the ranges hold real values). Off for a
   * template's source, where the ranges are `{{tags}}` and the values are not known yet.
   */
  urls: boolean;
  /**
   * Count data that spells an attribute's name (`<a {{attr}}="...">`). Only a rendered value
   * says which attribute that is; in a template's source the name is not known yet.
   */
  attributeNames: boolean;
  /** Called with each run of plain text (see `textRun` of `scanHtml`). */
  textRun?: (start: number, end: number) => void;
}

// Attributes whose value is fetched or followed as a URL (HTML, SVG and legacy ones).
const URL_ATTRIBUTES = new Set([
  "href",
  "src",
  "srcset",
  "imagesrcset",
  "action",
  "formaction",
  "background",
  "poster",
  "cite",
  "longdesc",
  "lowsrc",
  "dynsrc",
  "usemap",
  "data",
  "codebase",
  "classid",
  "archive",
  "manifest",
  "icon",
  "profile",
  "ping",
  "xlink:href",
]);
const SAFE_SCHEMES = new Set(["http", "https", "mailto", "tel", "cid"]);
// Elements whose text is code, not content (htmlparser2 reads both as raw text).
const CODE_ELEMENTS: Record<string, UnsafeContext> = { style: "style_element", script: "script_element" };

/** The context an attribute (lower-cased name) puts its value in, when data may not fill it. */
function attributeContext(attribute: string): UnsafeContext | undefined {
  if (attribute === "style") return "style_attribute";
  if (attribute.startsWith("on")) return "event_handler_attribute";
  if (attribute === "srcdoc") return "srcdoc_attribute";
  return undefined;
}

/**
 * The first place in `html` where data (`ranges`, sorted and not overlapping) is where it may
 * not be, or null. One linear pass (htmlparser2's tokenizer, see `scanHtml`).
 *
 * @example
 * ```ts
 * const html = '<p style="x">y</p>';
 * findUnsafeData(html, [{ start: 10, end: 11, name: "color" }], { urls: true, attributeNames: true });
 * // { kind: "context", variable: "color", context: "style_attribute", attribute: "style", position: 10 }
 * ```
 */
export function findUnsafeData(html: string, ranges: DataRange[], options: FindOptions): UnsafeData | null {
  // Ranges are sorted and every lookup starts at or after the previous one, so one cursor serves all.
  let cursor = 0;
  const dataIn = (start: number, end: number): DataRange | undefined => {
    while (cursor < ranges.length && ranges[cursor].end <= start) cursor++;
    return cursor < ranges.length && ranges[cursor].start < end ? ranges[cursor] : undefined;
  };

  let found: UnsafeData | null = null;
  const stop = new Error("found");
  const report = (finding: UnsafeData): never => {
    found = finding;
    throw stop;
  };

  let tag = "";
  // <meta>: whether an http-equiv says refresh, and data in its content (decided at the tag's end).
  let refresh = false;
  let contentData: DataRange | undefined;
  // The element whose text is code, from just after its start tag.
  let codeElement: { name: string; start: number } | undefined;

  const checkCode = (end: number) => {
    const element = codeElement!;
    codeElement = undefined;
    const data = dataIn(element.start, end);
    if (data) {
      report({ kind: "context", variable: data.name, context: CODE_ELEMENTS[element.name], position: data.start });
    }
  };

  try {
    scanHtml(html, {
      openTagName(name) {
        tag = name;
        refresh = false;
        contentData = undefined;
      },
      attribute(nameStart, nameEnd, valueStart, valueEnd) {
        const inName = options.attributeNames ? dataIn(nameStart, nameEnd) : undefined;
        const inValue = valueStart < 0 ? undefined : dataIn(valueStart, valueEnd);
        // Most attributes hold no data: only a meta's need reading then.
        if (inName === undefined && inValue === undefined && tag !== "meta") return;
        const attribute = html.slice(nameStart, nameEnd).toLowerCase();
        if (tag === "meta" && attribute === "http-equiv" && valueStart >= 0) {
          const data = inName ?? inValue;
          if (data) {
            report({
              kind: "context",
              variable: data.name,
              context: "meta_http_equiv",
              attribute,
              position: data.start,
            });
          }
          const equiv = decodeCharacterReferences(html.slice(valueStart, valueEnd));
          if (equiv.replace(/^[\t\n\f\r ]+|[\t\n\f\r ]+$/g, "").toLowerCase() === "refresh") refresh = true;
        }
        const data = inName ?? inValue;
        // As browsers do, an attribute without a value is empty: nothing to run or follow.
        if (data === undefined || valueStart < 0) return;
        if (tag === "meta" && attribute === "content") contentData ??= data;
        const context = attributeContext(attribute);
        if (context) report({ kind: "context", variable: data.name, context, attribute, position: data.start });
        if (!options.urls || !URL_ATTRIBUTES.has(attribute)) return;
        if (!isSafeUrlValue(attribute, html.slice(valueStart, valueEnd))) {
          report({ kind: "url", variable: data.name, attribute, position: data.start });
        }
      },
      openTagEnd(selfClosing, end) {
        if (tag === "meta" && refresh && contentData) {
          report({
            kind: "context",
            variable: contentData.name,
            context: "meta_refresh",
            attribute: "content",
            position: contentData.start,
          });
        }
        // `<style/>` is not raw text for htmlparser2 either.
        if (!selfClosing && (tag === "style" || tag === "script")) codeElement = { name: tag, start: end + 1 };
      },
      closeTag(name, start) {
        if (codeElement?.name === name) checkCode(start);
      },
      textRun: options.textRun,
    });
    // An element left open runs to the end.
    if (codeElement) checkCode(html.length);
  } catch (error) {
    if (error !== stop) throw error;
  }
  return found;
}

/** Whether an attribute (lower-cased name) is followed or fetched as a URL. */
export function isUrlAttribute(attribute: string): boolean {
  return URL_ATTRIBUTES.has(attribute);
}

/**
 * Whether a URL attribute's value, as written in HTML (character references and all), resolves
 * to http(s), mailto, tel, cid or a relative URL; for a srcset, every candidate.
 *
 * @example
 * ```ts
 * isSafeUrlValue("href", "java&#115;cript:alert(1)"); // false
 * ```
 */
export function isSafeUrlValue(attribute: string, raw: string): boolean {
  const value = decodeCharacterReferences(raw);
  const urls = attribute.endsWith("srcset") ? value.split(",").map((c) => c.trim().split(/\s+/)[0]) : [value];
  return urls.every(isSafeUrl);
}

// Named references that can spell a URL scheme or hide one; letters have no named references.
const NAMED_REFERENCES: Record<string, string> = {
  amp: "&",
  lt: "<",
  gt: ">",
  quot: '"',
  apos: "'",
  colon: ":",
  Tab: "\t",
  NewLine: "\n",
  plus: "+",
  period: ".",
  sol: "/",
  num: "#",
  quest: "?",
};

// These four are also read without the semicolon.
const LEGACY_REFERENCES = new Set(["amp", "lt", "gt", "quot"]);

/** Decode numeric character references and the named ones a scheme could be spelled with. */
function decodeCharacterReferences(value: string): string {
  return value.replace(/&(#[0-9]+|#[xX][0-9a-fA-F]+|[A-Za-z][A-Za-z0-9]*)(;?)/g, (match, ref: string, semi: string) => {
    if (ref.startsWith("#")) {
      const code = ref[1] === "x" || ref[1] === "X" ? parseInt(ref.slice(2), 16) : parseInt(ref.slice(1), 10);
      return code > 0 && code <= 0x10ffff ? String.fromCodePoint(code) : "\uFFFD";
    }
    const named = NAMED_REFERENCES[ref];
    return named !== undefined && (semi || LEGACY_REFERENCES.has(ref)) ? named : match;
  });
}

/**
 * Whether a URL resolves to a safe scheme or is relative. As URL parsers do, leading and trailing
 * controls and spaces and every tab and newline are ignored; beyond that, controls and spaces
 * inside the scheme are dropped too, and a leftover `&` (an unknown reference) before the first
 * colon counts as unsafe.
 */
function isSafeUrl(url: string): boolean {
  const end = url.search(/[/?#:]/);
  if (end < 0 || url[end] !== ":") return true;
  const prefix = url.slice(0, end);
  if (prefix.includes("&")) return false;
  // deno-lint-ignore no-control-regex
  const scheme = prefix.replace(/[\x00-\x20]/g, "").toLowerCase();
  if (!/^[a-z][a-z0-9+.-]*$/.test(scheme)) return true;
  return SAFE_SCHEMES.has(scheme);
}
