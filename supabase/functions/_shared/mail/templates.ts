// User email templates rendered with logic-less Mustache: the user owns the template, the agent
// supplies the data, so data can neither execute, reach prototypes, emit raw HTML, break headers,
// put a script URL into a link, nor hold the server for long (the rendering work is metered).
//
// URLs from data: the HTML part is escaped, so data cannot add tags or attributes, but it can
// still fill a URL attribute (`<a href="{{link}}">`). After rendering, every URL attribute
// (href, src, srcset, action, formaction, background, poster, ...) whose name or value holds
// data must resolve to http:, https:, mailto:, tel:, cid: or a relative URL; anything else
// (javascript:, vbscript:, data:, ...; whatever the case, entities, tabs or control characters)
// is refused with 422 `template_data_unsafe_url` naming the variable. The template's own
// static URLs are the user's business and are left alone.
import Mustache from "mustache";
import { ApiError } from "../http.ts";
import { scanHtml } from "./html.ts";

/**
 * Which variables a template declares, as stored in `email_templates.variables`. Either form is accepted:
 *
 * - a list of required names: `["first_name", "order.id"]`;
 * - a JSON-schema-like object: `{ "required": ["first_name"], "properties": { "first_name": { "type": "string",
 *   "description": "Greeting name" } } }`. Only `required` affects rendering; `properties` documents the data
 *   for people and agents and is checked for shape only.
 *
 * Names may be dotted paths (`order.id`), resolved through nested objects of the data.
 */
export type TemplateVariables = string[] | TemplateVariableSchema;

/** The object form of {@linkcode TemplateVariables}. */
export interface TemplateVariableSchema {
  required?: string[];
  properties?: Record<string, { type?: string; description?: string }>;
}

/** The parts of an `email_templates` row that rendering needs; a `null` (or missing) part is not rendered. */
export interface EmailTemplate {
  subject: string | null;
  html: string | null;
  text: string | null;
  variables: TemplateVariables | null;
}

/** A rendered template: a part is present exactly when the template has it. */
export interface RenderedTemplate {
  subject?: string;
  html?: string;
  text?: string;
}

/** The data a caller may pass to {@linkcode renderTemplate}: at most this deep ... */
export const MAX_DATA_DEPTH = 10;
/** ... and with at most this many values in total (objects, arrays and scalars). */
export const MAX_DATA_VALUES = 10_000;

/**
 * Longest template part, in UTF-16 code units. Mustache makes a token of every character of
 * text before merging them, so parsing costs about 0.5 µs per character; the database allows
 * 2 MiB per part, which would take a second to parse on every send.
 */
export const MAX_TEMPLATE_PART_CHARS = 256 * 1024;
/** Deepest nesting of `{{#section}}` / `{{^section}}` blocks. */
export const MAX_SECTION_DEPTH = 16;
/** Longest variable or section name (dotted paths included). */
export const MAX_VARIABLE_NAME = 200;

type Part = "subject" | "html" | "text";
const PARTS: readonly Part[] = ["subject", "html", "text"];

// The tags are passed explicitly so that a change to the global `Mustache.tags` cannot affect us.
const TAGS: [string, string] = ["{{", "}}"];
const HEADER_BREAKERS = /[\r\n\0]/;
const VARIABLE_NAME = /^[^\s.{}&#^/>!=][^\s{}&#^/>!=]*$/;

// mustache ships no type declarations; these describe the part of its API used here.
type Token = [type: string, value: string, start: number, end: number, children?: Token[]];
interface MustacheContext {
  view: unknown;
  parent?: MustacheContext;
  push(view: unknown): MustacheContext;
  lookup(name: string): unknown;
}
interface MustacheWriter {
  templateCache: unknown;
  renderTokens(...args: unknown[]): string;
  escapedValue(token: Token, ...args: unknown[]): string | undefined;
  parse(template: string, tags: [string, string]): Token[];
  render(
    template: string,
    view: MustacheContext,
    partials: undefined,
    config: { tags: [string, string]; escape: (value: unknown) => string },
  ): string;
}
interface MustacheApi {
  escape(text: string): string;
  Writer: { new (): MustacheWriter; prototype: MustacheWriter };
  Context: new (view: unknown, parent?: MustacheContext) => MustacheContext;
}
const mustache = Mustache as MustacheApi;
const escapeHtml = mustache.escape;

// One writer without a template cache: templates come from users, so caching them by content
// (as Mustache.parse does) would grow without bound.
const writer = new mustache.Writer();
writer.templateCache = undefined;

/**
 * Most characters a render may produce. Nested sections multiply (`{{#a}}{{#a}}{{#a}}…` over a
 * few hundred items is hundreds of millions of characters), so output is metered as it is built,
 * not checked afterwards. Nested output is counted at every level, which only makes the meter
 * stricter; the cap is far above any real email (the HTML limit is 2 MiB).
 */
export const MAX_RENDERED_CHARS = 20_000_000;

/**
 * Most rendering steps a render may take: one per token rendered, per section iteration, per
 * context searched in a lookup and per list item turned into text. Output alone does not bound
 * the work: `{{#a}}{{#a}}{{#a}}{{#a}}{{/a}}{{/a}}{{/a}}{{/a}}` over 300 items renders nothing in
 * eight billion iterations. A million steps take about a quarter of a second; a newsletter
 * listing all 10,000 data values takes a few hundred thousand.
 */
export const MAX_RENDER_STEPS = 1_000_000;

// Rendering is synchronous, so one meter for the render in progress is enough.
const meter = { steps: 0, chars: 0 };

function spendSteps(steps: number): void {
  meter.steps -= steps;
  if (meter.steps < 0) {
    throw new ApiError(
      422,
      "template_too_complex",
      `Rendering the template with this data takes more than ${MAX_RENDER_STEPS} steps; nest fewer sections over long lists`,
      { limit_steps: MAX_RENDER_STEPS },
    );
  }
}

function spendChars(chars: number): void {
  meter.chars -= chars;
  if (meter.chars < 0) {
    throw new ApiError(422, "template_output_too_large", "The template renders to more text than any email may hold", {
      limit_chars: MAX_RENDERED_CHARS,
    });
  }
}

const renderTokens = mustache.Writer.prototype.renderTokens;
writer.renderTokens = function (this: MustacheWriter, ...args: unknown[]): string {
  // Charged before rendering: an empty section body still costs one step per iteration.
  spendSteps(1 + (args[0] as Token[]).length);
  const out = renderTokens.apply(this, args);
  spendChars(out.length);
  return out;
};

// The variable whose value is being escaped, for naming it in template_data_unsafe_url.
let currentVariable = "";
const escapedValue = mustache.Writer.prototype.escapedValue;
writer.escapedValue = function (this: MustacheWriter, token: Token, ...args: unknown[]): string | undefined {
  currentVariable = token[1];
  return escapedValue.call(this, token, ...args);
};

/**
 * Mustache's own lookup walks the prototype chain (`{{constructor}}`, `{{name.constructor.name}}`)
 * and calls any function it finds. This context only ever sees own properties and never calls.
 */
class DataContext extends mustache.Context {
  override push(view: unknown): MustacheContext {
    return new DataContext(view, this);
  }

  override lookup(name: string): unknown {
    if (name === ".") return this.view;
    const path = name.split(".");
    spendSteps(path.length);
    return lookupOwn(this, path);
  }
}

function lookupOwn(start: MustacheContext, path: string[]): unknown {
  for (let context: MustacheContext | undefined = start; context; context = context.parent) {
    spendSteps(1);
    const found = ownPath(context.view, path);
    if (found.hit) return found.value;
  }
  return undefined;
}

function ownPath(root: unknown, path: string[]): { hit: boolean; value?: unknown } {
  let value = root;
  for (const segment of path) {
    if (value === null || value === undefined || !Object.hasOwn(Object(value), segment)) return { hit: false };
    value = (value as Record<string, unknown>)[segment];
  }
  return { hit: true, value };
}

/**
 * The names a template requires, from its `variables` (either form); unknown shapes yield none.
 *
 * @example
 * ```ts
 * requiredVariables({ subject: null, html: null, text: "Hi {{name}}", variables: { required: ["name"] } });
 * // ["name"]
 * ```
 */
export function requiredVariables(template: Pick<EmailTemplate, "variables">): string[] {
  const variables = template.variables;
  const list = Array.isArray(variables) ? variables : variables?.required;
  if (!Array.isArray(list)) return [];
  return [...new Set(list.filter((name): name is string => typeof name === "string"))];
}

/**
 * The data names a template uses at its top level, in order of first use: every variable and
 * section name outside `{{#section}}` blocks (first segment of dotted paths), plus the section
 * names themselves. Names inside a `{{#section}}` are left out because they may be fields of the
 * section's items rather than top-level data.
 *
 * @throws ApiError 422 `template_invalid` if a part does not parse.
 * @example
 * ```ts
 * referencedVariables({ subject: "Order {{order.id}}", html: null, text: "{{#items}}{{sku}}{{/items}}", variables: null });
 * // ["order", "items"]
 * ```
 */
export function referencedVariables(template: EmailTemplate): string[] {
  const names = new Set<string>();
  const collect = (tokens: Token[]) => {
    for (const [type, value, , , children] of tokens) {
      if (!["name", "&", "#", "^"].includes(type) || value === ".") continue;
      names.add(value.split(".")[0]);
      if (type === "^" && Array.isArray(children)) collect(children);
    }
  };
  for (const part of PARTS) {
    const source = template[part];
    if (typeof source === "string") collect(parsePart(part, source));
  }
  return [...names];
}

/**
 * Check a template before it is saved: every part must parse, output only escaped `{{name}}`
 * tags (no `{{{name}}}` or `{{& name}}`), use no partials (`{{> name}}`), and the subject must be
 * a single line. `variables` must have one of the two accepted shapes. So that no template can
 * hold the server for long, a part is at most {@linkcode MAX_TEMPLATE_PART_CHARS} characters,
 * sections nest at most {@linkcode MAX_SECTION_DEPTH} deep and names are at most
 * {@linkcode MAX_VARIABLE_NAME} characters (`details.limit`). The html part must not contain
 * U+FDD0 to U+FDD2 (Unicode noncharacters), which rendering uses internally.
 *
 * @throws ApiError 422 `template_invalid` naming the part and the reason (`details.part`).
 * @example
 * ```ts
 * validateTemplateSource({ subject: "Hi {{name}}", html: "<p>{{{raw}}}</p>", text: null, variables: null });
 * // throws: html: unescaped output {{{raw}}} ...
 * ```
 */
export function validateTemplateSource(template: EmailTemplate): void {
  checkedParts(template);
}

/** Every part the template has, validated and parsed once. */
function checkedParts(template: EmailTemplate): { part: Part; tokens: Token[] }[] {
  validateVariables(template.variables);
  const parts: { part: Part; tokens: Token[] }[] = [];
  for (const part of PARTS) {
    const source = template[part];
    if (source === null || source === undefined) continue;
    if (typeof source !== "string") throw invalid(part, "must be a string or null");
    if (part === "subject" && HEADER_BREAKERS.test(source)) throw invalid(part, "must not contain CR, LF or NUL");
    if (part === "html" && MARKERS.test(source)) {
      throw invalid(part, "must not contain U+FDD0 to U+FDD2 (Unicode noncharacters)");
    }
    const tokens = parsePart(part, source);
    checkTokens(part, tokens);
    parts.push({ part, tokens });
  }
  return parts;
}

/**
 * Render a template with caller data.
 *
 * - `html`: every `{{name}}` is HTML-escaped; unescaped tags are rejected, so data cannot add markup.
 *   A URL attribute that data fills must stay http(s), mailto, tel, cid or relative (see the module comment).
 * - `subject` and `text`: values are inserted as they are (no HTML entities); a value that would put
 *   CR, LF or NUL into the subject is rejected, so data cannot start a new header line.
 * - Data is copied into prototype-less objects; lookups see only its own properties, functions are
 *   dropped (never called), non-plain objects are dropped, and `__proto__` keys are ignored.
 *   `{{constructor}}` or `{{name.length}}`-style probing of anything else renders empty.
 * - A scalar renders as text, an array as its scalar items joined by ", ", an object as nothing.
 * - Every required variable (see {@linkcode TemplateVariables}) must be present and not null; an
 *   empty string counts as present.
 * - The work is metered: at most {@linkcode MAX_RENDER_STEPS} steps and
 *   {@linkcode MAX_RENDERED_CHARS} characters of output.
 *
 * @throws ApiError 422 `template_invalid` (see {@linkcode validateTemplateSource}),
 *   422 `template_data_missing` with `details.missing` listing every missing variable,
 *   422 `template_data_invalid` for data that is not an object, too deep or too large, or a
 *   multi-line subject value, 422 `template_data_unsafe_url` (`details.variable`,
 *   `details.attribute`), 422 `template_too_complex` (`details.limit_steps`),
 *   422 `template_output_too_large` (`details.limit_chars`).
 * @example
 * ```ts
 * renderTemplate(
 *   { subject: "Hi {{name}}", html: "<p>Hi {{name}}</p>", text: null, variables: ["name"] },
 *   { name: "Tom & <Jerry>" },
 * );
 * // { subject: "Hi Tom & <Jerry>", html: "<p>Hi Tom &amp; &lt;Jerry&gt;</p>" }
 * ```
 */
export function renderTemplate(template: EmailTemplate, data: Record<string, unknown>): RenderedTemplate {
  const parts = checkedParts(template);
  const root = sanitizeData(data);
  const missing = missingVariables(requiredVariables(template), root);
  if (missing.length > 0) {
    throw new ApiError(422, "template_data_missing", `Template data is missing ${missing.join(", ")}`, { missing });
  }

  const rendered: RenderedTemplate = {};
  meter.steps = MAX_RENDER_STEPS;
  meter.chars = MAX_RENDERED_CHARS;
  markedNames = [];
  for (const { part, tokens } of parts) {
    const escape = part === "html" ? markedHtmlValue : part === "subject" ? subjectValue : textValue;
    const out = writer.renderTokens(tokens, new DataContext(root), undefined, template[part], { tags: TAGS, escape });
    rendered[part] = part === "html" ? checkDataUrls(out) : out;
  }
  markedNames = [];
  // The template's own subject was checked above; this guards the combination.
  if (rendered.subject !== undefined && HEADER_BREAKERS.test(rendered.subject)) throw multiLineSubject();
  return rendered;
}

/**
 * The `required` variables absent (or null) in `data`: dotted names resolved through own
 * properties only, as rendering resolves them.
 *
 * @example
 * ```ts
 * missingVariables(["name", "order.id"], { name: "Ada", order: {} }); // ["order.id"]
 * ```
 */
export function missingVariables(required: string[], data: unknown): string[] {
  return required.filter((name) => {
    const found = ownPath(data, name.split("."));
    return !found.hit || found.value === undefined || found.value === null;
  });
}

function parsePart(part: Part, source: string): Token[] {
  if (source.length > MAX_TEMPLATE_PART_CHARS) {
    throw invalid(part, `is longer than ${MAX_TEMPLATE_PART_CHARS} characters`, { limit: MAX_TEMPLATE_PART_CHARS });
  }
  let tokens: Token[];
  try {
    tokens = writer.parse(source, TAGS);
  } catch (error) {
    throw invalid(part, (error as Error).message);
  }
  checkNesting(part, tokens);
  return tokens;
}

/** Refuse sections nested deeper than the limit, without recursion (the tree may be deep). */
function checkNesting(part: Part, tokens: Token[]): void {
  const pending: { tokens: Token[]; depth: number }[] = [{ tokens, depth: 0 }];
  for (let next = pending.pop(); next; next = pending.pop()) {
    for (const token of next.tokens) {
      const children = token[4];
      if (!Array.isArray(children)) continue;
      if (next.depth + 1 > MAX_SECTION_DEPTH) {
        throw invalid(part, `sections nest deeper than ${MAX_SECTION_DEPTH} ("${token[1]}" at position ${token[2]})`, {
          position: token[2],
          limit: MAX_SECTION_DEPTH,
        });
      }
      pending.push({ tokens: children, depth: next.depth + 1 });
    }
  }
}

function checkTokens(part: Part, tokens: Token[]): void {
  for (const [type, value, start, , children] of tokens) {
    if (type === "&") {
      throw invalid(
        part,
        `unescaped output of "${value}" at position ${start} is not allowed; use {{${value}}} ` +
          "(html is always escaped, subject and text never are)",
        { position: start },
      );
    }
    if (type === ">") {
      throw invalid(part, `partials are not supported ("{{> ${value}}}" at position ${start})`, { position: start });
    }
    if (["name", "#", "^"].includes(type) && value !== "." && !VARIABLE_NAME.test(value)) {
      throw invalid(part, `"${value}" at position ${start} is not a variable name`, { position: start });
    }
    if (["name", "#", "^"].includes(type) && value.length > MAX_VARIABLE_NAME) {
      throw invalid(part, `the name at position ${start} is longer than ${MAX_VARIABLE_NAME} characters`, {
        position: start,
        limit: MAX_VARIABLE_NAME,
      });
    }
    if (Array.isArray(children)) checkTokens(part, children);
  }
}

function validateVariables(variables: unknown): void {
  if (variables === null || variables === undefined) return;
  const names = (list: unknown, where: string) => {
    if (!Array.isArray(list) || !list.every((n) => typeof n === "string" && VARIABLE_NAME.test(n))) {
      throw invalid("variables", `${where} must be a list of variable names`);
    }
  };
  if (Array.isArray(variables)) return names(variables, "variables");
  if (typeof variables !== "object") throw invalid("variables", "must be a list of names or an object");
  const { required, properties } = variables as Record<string, unknown>;
  if (required !== undefined) names(required, "variables.required");
  if (properties === undefined) return;
  if (typeof properties !== "object" || properties === null || Array.isArray(properties)) {
    throw invalid("variables", "variables.properties must be an object");
  }
  for (const [name, spec] of Object.entries(properties)) {
    const ok = typeof spec === "object" && spec !== null && !Array.isArray(spec) &&
      ["type", "description"].every((k) => {
        const v = (spec as Record<string, unknown>)[k];
        return v === undefined || typeof v === "string";
      });
    if (!ok) throw invalid("variables", `variables.properties.${name} must be {type?: string, description?: string}`);
  }
}

function invalid(part: Part | "variables", reason: string, details: Record<string, number> = {}): ApiError {
  return new ApiError(422, "template_invalid", `Template ${part}: ${reason}`, { part, ...details });
}

function multiLineSubject(): ApiError {
  return new ApiError(
    422,
    "template_data_invalid",
    "A value used in the subject contains CR, LF or NUL; subject values must be single-line",
    { part: "subject" },
  );
}

function subjectValue(value: unknown): string {
  const text = textValue(value);
  if (HEADER_BREAKERS.test(text)) throw multiLineSubject();
  return text;
}

// Values are metered one by one too: one section iteration may repeat a long value many times.
function textValue(value: unknown): string {
  const text = toText(value);
  spendChars(text.length);
  return text;
}

function toText(value: unknown): string {
  if (typeof value === "string") return value;
  if (typeof value === "number" || typeof value === "boolean") return String(value);
  if (Array.isArray(value)) {
    spendSteps(value.length);
    return value.filter((v) => ["string", "number", "boolean"].includes(typeof v)).map(String).join(", ");
  }
  return "";
}

// Each escaped value in the html part is wrapped as START index NAME_END value END, so that after
// rendering we know which characters came from which variable. Data cannot contain the markers
// (they are escaped as entities) and templates may not (validateTemplateSource).
const DATA_START = "\uFDD0";
const DATA_NAME_END = "\uFDD1";
const DATA_END = "\uFDD2";
const MARKERS = /[\uFDD0-\uFDD2]/;
let markedNames: string[] = [];

function markedHtmlValue(value: unknown): string {
  let text = escapeHtml(toText(value));
  if (MARKERS.test(text)) text = text.replace(/[\uFDD0-\uFDD2]/g, (c) => `&#x${c.charCodeAt(0).toString(16)};`);
  spendChars(text.length);
  if (text === "") return "";
  // Marking and the URL check below cost a few steps' worth per value.
  spendSteps(HTML_VALUE_STEPS);
  markedNames.push(currentVariable);
  return DATA_START + (markedNames.length - 1) + DATA_NAME_END + text + DATA_END;
}

// Costs of the URL check in steps, measured against rendering (a step is roughly 0.1-0.25 µs).
const HTML_VALUE_STEPS = 3;
const URL_CHECK_STEPS = 4;
const SCANNED_CHARS_PER_STEP = 16;

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

/**
 * Strip the data markers from rendered HTML and refuse it when data fills a URL attribute (its
 * name or value) that does not resolve to a safe scheme.
 */
function checkDataUrls(marked: string): string {
  if (!marked.includes(DATA_START)) return marked;
  const ranges: { start: number; end: number; name: string }[] = [];
  let html = "";
  let from = 0;
  for (let at = marked.indexOf(DATA_START); at >= 0; at = marked.indexOf(DATA_START, from)) {
    const nameEnd = marked.indexOf(DATA_NAME_END, at);
    const end = marked.indexOf(DATA_END, nameEnd);
    html += marked.slice(from, at);
    const start = html.length;
    html += marked.slice(nameEnd + 1, end);
    ranges.push({ start, end: html.length, name: markedNames[Number(marked.slice(at + 1, nameEnd))] });
    from = end + 1;
  }
  html += marked.slice(from);
  // Scanning is linear but not free: it is paid from the same budget, before it starts.
  spendSteps(Math.ceil(html.length / SCANNED_CHARS_PER_STEP));

  // Attributes arrive in document order and ranges are sorted, so one cursor serves all lookups.
  let cursor = 0;
  const dataIn = (start: number, end: number): string | undefined => {
    while (cursor < ranges.length && ranges[cursor].end <= start) cursor++;
    return cursor < ranges.length && ranges[cursor].start < end ? ranges[cursor].name : undefined;
  };
  scanHtml(html, {
    attribute(nameStart, nameEnd, valueStart, valueEnd) {
      const fromName = dataIn(nameStart, nameEnd);
      const fromValue = valueStart < 0 ? undefined : dataIn(valueStart, valueEnd);
      const variable = fromName ?? fromValue;
      if (variable === undefined || valueStart < 0) return;
      const attribute = html.slice(nameStart, nameEnd).toLowerCase();
      if (!URL_ATTRIBUTES.has(attribute)) return;
      spendSteps(URL_CHECK_STEPS);
      const value = decodeCharacterReferences(html.slice(valueStart, valueEnd));
      const urls = attribute.endsWith("srcset") ? value.split(",").map((c) => c.trim().split(/\s+/)[0]) : [value];
      if (urls.every(isSafeUrl)) return;
      throw new ApiError(
        422,
        "template_data_unsafe_url",
        `Template data "${variable}" makes the ${attribute} attribute a URL that is not http(s), mailto, tel, cid or relative`,
        { part: "html", variable, attribute },
      );
    },
  });
  return html;
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

/**
 * Copy caller data into a shape Mustache cannot misuse: prototype-less objects with own
 * enumerable keys only, arrays of the same, and JSON scalars. Everything else is dropped.
 */
function sanitizeData(data: unknown): Record<string, unknown> {
  if (!isPlainObject(data)) {
    throw new ApiError(422, "template_data_invalid", "Template data must be a JSON object");
  }
  let count = 0;
  const copy = (value: unknown, depth: number): unknown => {
    if (++count > MAX_DATA_VALUES) {
      throw new ApiError(422, "template_data_invalid", `Template data has more than ${MAX_DATA_VALUES} values`, {
        limit: MAX_DATA_VALUES,
      });
    }
    if (value === null || ["string", "number", "boolean"].includes(typeof value)) return value;
    if (!Array.isArray(value) && !isPlainObject(value)) return undefined;
    if (depth >= MAX_DATA_DEPTH) {
      throw new ApiError(422, "template_data_invalid", `Template data is nested deeper than ${MAX_DATA_DEPTH}`, {
        limit: MAX_DATA_DEPTH,
      });
    }
    if (Array.isArray(value)) {
      return value.map((item) => copy(item, depth + 1)).filter((item) => item !== undefined);
    }
    const out: Record<string, unknown> = Object.create(null);
    for (const key of Object.keys(value)) {
      if (key === "__proto__") continue;
      const item = copy(value[key], depth + 1);
      if (item !== undefined) out[key] = item;
    }
    return out;
  };
  return copy(data, 0) as Record<string, unknown>;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}
