// User email templates rendered with logic-less Mustache: the user owns the template, the agent
// supplies the data, so data can neither execute, reach prototypes, emit raw HTML, break headers,
// put a script URL into a link, style or script the message, nor hold the server for long (the
// rendering work is metered).
//
// Where data lands in the html part (data_contexts.ts): the html part is escaped, so data cannot
// add tags or attributes, but it can still fill a URL attribute (`<a href="{{link}}">`). After
// rendering, every URL attribute (href, src, srcset, action, formaction, background, poster, ...)
// whose name or value holds data must resolve to http:, https:, mailto:, tel:, cid: or a relative
// URL; anything else (javascript:, vbscript:, data:, ...; whatever the case, entities, tabs or
// control characters) is refused with 422 `template_data_unsafe_url` naming the variable. Data
// may not go at all into a style or on* attribute, a <style> or <script> element, an iframe's
// srcdoc or a <meta http-equiv> (refresh included): a template that puts a variable there is
// refused when it is saved (422 `template_invalid`, `details.context`), and data that gets there
// anyway (spelling an attribute's name, or through sections) when it is rendered (422
// `template_data_unsafe_context`). The template's own static URLs, styles and scripts are the
// user's business and are left alone.
//
// A bulk send renders one template for many recipients: compileTemplate parses it once and
// prepareTemplateData/mergeTemplateData copy the shared data once.
import Mustache from "mustache";
import { ApiError } from "../http.ts";
import { type DataRange, findUnsafeData, isSafeUrlValue, isUrlAttribute, type UnsafeContext } from "./data_contexts.ts";
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

// The variable whose value is being escaped, for naming it in errors.
let currentVariable = "";
// While an html part renders under a `urls` plan: its URL attributes' variable tags, by position.
let urlTags: Map<number, UrlTag> | undefined;
const escapedValue = mustache.Writer.prototype.escapedValue;
writer.escapedValue = function (this: MustacheWriter, token: Token, ...args: unknown[]): string | undefined {
  currentVariable = token[1];
  const out = escapedValue.call(this, token, ...args);
  // Called for every variable tag, absent values too, so a slot never keeps an older value.
  const tag = urlTags?.get(token[2]);
  if (tag) fillUrlSlot(tag, out ?? "");
  return out;
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

/** A part parsed and checked; for html, how its renders are checked (see analyzeHtml). */
interface CheckedPart {
  part: Part;
  tokens: Token[];
  plan?: HtmlPlan;
}

/**
 * How much of a rendered html part must be checked, as the template's source decides:
 *
 * - `none`: data lands only in text, where escaping is enough;
 * - `urls`: data lands only in text and in quoted attribute values, so where it lands is the
 *   same in every render, and no section is inside an attribute; only the values of URL
 *   attributes holding data are checked, each assembled from its static pieces and its
 *   variables' values as they are escaped (`tags`: those variable tags, by position);
 * - `scan`: anything else (data in attribute names or unquoted values, sections inside tags):
 *   the whole render is marked and read as HTML (data_contexts.ts).
 */
type HtmlPlan =
  | { check: "none" }
  | { check: "urls"; tags: Map<number, UrlTag> }
  | { check: "scan" };

/** A URL attribute whose value holds variables: its static pieces and a slot per variable. */
interface UrlAttribute {
  name: string;
  /** The value as written: static text, and slot numbers where variables go. */
  pieces: (string | number)[];
  /** The variables' names and their escaped values in the render in progress. */
  variables: string[];
  values: string[];
}

/** A variable tag in a URL attribute. */
interface UrlTag {
  attribute: UrlAttribute;
  slot: number;
}

/** Every part the template has, validated and parsed once. */
function checkedParts(template: EmailTemplate): CheckedPart[] {
  validateVariables(template.variables);
  const parts: CheckedPart[] = [];
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
    parts.push(part === "html" ? { part, tokens, plan: analyzeHtml(source, tokens) } : { part, tokens });
  }
  return parts;
}

/**
 * A template's html source read as HTML, with its `{{tags}}` standing for the data to come.
 * Refuses (422 `template_invalid`, `details.context`) a variable placed where data may not go
 * (see data_contexts.ts: style and event handler attributes, style and script elements, srcdoc,
 * meta http-equiv and refresh), and decides how renders are checked (see {@linkcode HtmlPlan}).
 *
 * Why a plan other than `scan` is exact: when every tag outside plain text is a variable inside
 * a quoted attribute value, each stretch of the source between two section tags starts and ends
 * in plain text, and escaped values hold no `<` or quote to leave the text or value they are in;
 * so however sections repeat or drop stretches, every value lands where its tag is.
 */
function analyzeHtml(source: string, tokens: Token[]): HtmlPlan {
  // The source with Mustache's syntax (everything outside text tokens) spelled as letters:
  // letters keep the tokenizer in whatever state it is in, as long as they last.
  const text = new Uint8Array(source.length);
  const variables: DataRange[] = [];
  // Where each piece of syntax starts: every tag (a section's closing one too), and every run
  // of characters outside text tokens (whitespace Mustache strips around standalone tags).
  const starts = new Set<number>();
  const walk = (list: Token[]) => {
    for (const token of list) {
      const [type, value, start, end, children] = token;
      if (type === "text") text.fill(1, start, end);
      else starts.add(start);
      if (type === "name") variables.push({ start, end, name: value });
      if (Array.isArray(children)) {
        starts.add((token as unknown as number[])[5]);
        walk(children);
      }
    }
  };
  walk(tokens);
  let skeleton = "";
  for (let i = 0, from = 0; i <= source.length; i++) {
    if (i < source.length && text[i] === text[from]) continue;
    if (text[from] === 1) skeleton += source.slice(from, i);
    else {
      skeleton += "x".repeat(i - from);
      starts.add(from);
    }
    from = i;
  }
  const syntax: { start: number; inText: boolean; quoted?: boolean }[] = [...starts].sort((x, y) => x - y)
    .map((start) => ({ start, inText: false }));
  variables.sort((x, y) => x.start - y.start);

  let next = 0;
  const unsafe = findUnsafeData(skeleton, variables, {
    urls: false,
    attributeNames: false,
    textRun(start, end) {
      for (; next < syntax.length && syntax[next].start < end; next++) {
        syntax[next].inText = syntax[next].start >= start;
      }
    },
  });
  if (unsafe?.kind === "context") {
    throw invalid(
      "html",
      `{{${unsafe.variable}}} at position ${unsafe.position} is in ${CONTEXT_NAMES[unsafe.context]}, where ` +
        "template data could restyle, script or redirect the message; write that part into the template itself",
      { position: unsafe.position, context: unsafe.context },
    );
  }
  if (syntax.every((chunk) => chunk.inText)) return { check: "none" };

  // Which syntax sits inside a quoted attribute value, and the URL attributes that hold variables.
  const variableAt = new Map(variables.map((v) => [v.start, v]));
  const tags = new Map<number, UrlTag>();
  let cursor = 0;
  scanHtml(skeleton, {
    attribute(nameStart, nameEnd, valueStart, valueEnd) {
      const quote = skeleton[valueStart - 1];
      if (valueStart < 0 || (quote !== '"' && quote !== "'")) return;
      while (cursor < syntax.length && syntax[cursor].start < valueStart) cursor++;
      const inside: number[] = [];
      for (; cursor < syntax.length && syntax[cursor].start < valueEnd; cursor++) {
        syntax[cursor].quoted = true;
        if (variableAt.has(syntax[cursor].start)) inside.push(syntax[cursor].start);
      }
      const name = skeleton.slice(nameStart, nameEnd).toLowerCase();
      if (inside.length === 0 || !isUrlAttribute(name)) return;
      const attribute: UrlAttribute = { name, pieces: [], variables: [], values: [] };
      let from = valueStart;
      for (const start of inside) {
        const variable = variableAt.get(start)!;
        attribute.pieces.push(source.slice(from, start), attribute.variables.length);
        tags.set(start, { attribute, slot: attribute.variables.length });
        attribute.variables.push(variable.name);
        from = variable.end;
      }
      attribute.pieces.push(source.slice(from, valueEnd));
    },
  });
  // Anything but a variable in a quoted value, outside plain text, needs the full scan.
  const fixed = syntax.every((chunk) => chunk.inText || (chunk.quoted && variableAt.has(chunk.start)));
  return fixed ? { check: "urls", tags } : { check: "scan" };
}

/** How a message names each context. */
const CONTEXT_NAMES: Record<UnsafeContext, string> = {
  style_attribute: "a style attribute",
  event_handler_attribute: "an event handler attribute",
  srcdoc_attribute: "a srcdoc attribute",
  meta_http_equiv: "a <meta http-equiv>",
  meta_refresh: 'the content of a <meta http-equiv="refresh">',
  style_element: "a <style> element",
  script_element: "a <script> element",
};

/**
 * Template data checked and copied once (see {@linkcode prepareTemplateData}), to render with,
 * or to merge with another's (see {@linkcode mergeTemplateData}).
 */
export interface TemplateData {
  /** The copy rendering reads: prototype-less objects, arrays and JSON scalars. */
  readonly root: Record<string, unknown>;
  /** Values per top-level key (objects, arrays and scalars, counted as the limit counts them). */
  readonly counts: ReadonlyMap<string, number>;
  /** Values in all, the root object included. */
  readonly total: number;
}

/**
 * Check and copy caller data for rendering: a JSON object at most {@linkcode MAX_DATA_DEPTH}
 * deep with at most {@linkcode MAX_DATA_VALUES} values. See {@linkcode renderTemplate} for what
 * the copy keeps.
 *
 * @throws ApiError 422 `template_data_invalid`.
 * @example
 * ```ts
 * prepareTemplateData({ name: "Ada", tags: ["a", "b"] }).total; // 5
 * ```
 */
export function prepareTemplateData(data: unknown): TemplateData {
  if (!isPlainObject(data)) {
    throw new ApiError(422, "template_data_invalid", "Template data must be a JSON object");
  }
  let count = 1;
  const root: Record<string, unknown> = Object.create(null);
  const counts = new Map<string, number>();
  for (const key of Object.keys(data)) {
    if (key === "__proto__") continue;
    const before = count;
    const item = copyValue(data[key], 1, () => ++count);
    if (item !== undefined) root[key] = item;
    counts.set(key, count - before);
  }
  return { root, counts, total: count };
}

/**
 * The data `over` merged over `base` at the top level, as `{...base, ...over}` would be
 * prepared (a bulk recipient's data over the batch's), without copying either again: the work
 * is one assignment per top-level key of `base` when `over` has any key.
 *
 * @throws ApiError 422 `template_data_invalid` when the merge has more than {@linkcode MAX_DATA_VALUES} values.
 * @example
 * ```ts
 * mergeTemplateData(prepareTemplateData({ a: 1, b: 2 }), prepareTemplateData({ b: 3 })).root; // { a: 1, b: 3 }
 * ```
 */
export function mergeTemplateData(base: TemplateData, over: TemplateData): TemplateData {
  if (over.counts.size === 0) return base;
  if (base.counts.size === 0) return over;
  let total = base.total + over.total - 1;
  for (const key of over.counts.keys()) total -= base.counts.get(key) ?? 0;
  if (total > MAX_DATA_VALUES) throw tooManyValues();
  const root = Object.assign(Object.create(null), base.root, over.root);
  // A key `over` dropped (a function, say) must not show `base`'s value through.
  for (const key of over.counts.keys()) if (!(key in over.root)) delete root[key];
  return { root, counts: new Map([...base.counts, ...over.counts]), total };
}

/** A template checked and parsed once, for rendering with many data (see {@linkcode compileTemplate}). */
export interface CompiledTemplate {
  /** The template it was compiled from. */
  readonly template: EmailTemplate;
  /**
   * Render as {@linkcode renderTemplate} does. `requireVariables: false` skips the required
   * variables check (a batch's shared data, whose recipients bring the rest).
   */
  render(data: TemplateData, options?: { requireVariables?: boolean }): RenderedTemplate;
  /** Rendering steps spent by every render so far, failed ones included (each is capped on its own). */
  readonly steps: number;
  /**
   * Whether renders of the html part can differ in their tags: only sections can repeat or drop
   * them (escaped data adds none), so without sections every render has the same elements.
   */
  readonly htmlShapeVaries: boolean;
}

/**
 * Check and parse a template once, to render it many times: a bulk send renders the same
 * template for every recipient, and parsing (about 0.5 µs per character) costs far more than
 * rendering.
 *
 * @throws ApiError 422 `template_invalid` (see {@linkcode validateTemplateSource}).
 * @example
 * ```ts
 * const compiled = compileTemplate({ subject: "Hi {{name}}", html: null, text: "Hi {{name}}", variables: ["name"] });
 * compiled.render(prepareTemplateData({ name: "Ada" })).subject; // "Hi Ada"
 * ```
 */
export function compileTemplate(template: EmailTemplate): CompiledTemplate {
  const parts = checkedParts(template);
  const required = requiredVariables(template);
  const html = parts.find((p) => p.part === "html");
  const htmlShapeVaries = html !== undefined && hasSections(html.tokens);
  let steps = 0;
  return {
    template,
    htmlShapeVaries,
    get steps() {
      return steps;
    },
    render(data, options = {}) {
      if (options.requireVariables !== false) {
        const missing = missingVariables(required, data.root);
        if (missing.length > 0) {
          throw new ApiError(422, "template_data_missing", `Template data is missing ${missing.join(", ")}`, {
            missing,
          });
        }
      }
      try {
        return renderParts(template, parts, data.root);
      } finally {
        steps += MAX_RENDER_STEPS - Math.max(meter.steps, 0);
      }
    },
  };
}

function hasSections(tokens: Token[]): boolean {
  return tokens.some(([type]) => type === "#" || type === "^");
}

function renderParts(template: EmailTemplate, parts: CheckedPart[], root: Record<string, unknown>): RenderedTemplate {
  const rendered: RenderedTemplate = {};
  meter.steps = MAX_RENDER_STEPS;
  meter.chars = MAX_RENDERED_CHARS;
  markedNames = [];
  try {
    for (const { part, tokens, plan } of parts) {
      const scan = plan?.check === "scan";
      const escape = part === "subject"
        ? subjectValue
        : part === "text"
        ? textValue
        : scan
        ? markedHtmlValue
        : htmlValue;
      urlTags = plan?.check === "urls" ? plan.tags : undefined;
      const out = writer.renderTokens(tokens, new DataContext(root), undefined, template[part], { tags: TAGS, escape });
      urlTags = undefined;
      rendered[part] = scan ? checkDataContexts(out) : out;
    }
  } finally {
    urlTags = undefined;
    markedNames = [];
  }
  // The template's own subject was checked above; this guards the combination.
  if (rendered.subject !== undefined && HEADER_BREAKERS.test(rendered.subject)) throw multiLineSubject();
  return rendered;
}

/**
 * Render a template with caller data.
 *
 * - `html`: every `{{name}}` is HTML-escaped; unescaped tags are rejected, so data cannot add markup.
 *   A URL attribute that data fills must stay http(s), mailto, tel, cid or relative (see the module comment);
 *   data may not fill a style or event handler attribute, a style or script element, an iframe's
 *   srcdoc, or a meta http-equiv or refresh (see data_contexts.ts).
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
 * To render one template with many data, see {@linkcode compileTemplate}.
 *
 * @throws ApiError 422 `template_invalid` (see {@linkcode validateTemplateSource}),
 *   422 `template_data_missing` with `details.missing` listing every missing variable,
 *   422 `template_data_invalid` for data that is not an object, too deep or too large, or a
 *   multi-line subject value, 422 `template_data_unsafe_url` (`details.variable`,
 *   `details.attribute`), 422 `template_data_unsafe_context` (`details.variable`,
 *   `details.context`, `details.attribute` for an attribute), 422 `template_too_complex`
 *   (`details.limit_steps`), 422 `template_output_too_large` (`details.limit_chars`).
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
  const compiled = compileTemplate(template);
  return compiled.render(prepareTemplateData(data));
}

/** Whether a template has a subject of its own (a send without `subject` needs one). */
export function hasSubject(template: Pick<EmailTemplate, "subject">): boolean {
  return template.subject !== null && template.subject.trim() !== "";
}

/**
 * The subject of a message built from a template: the request's own when it gives one (an
 * explicit `""` included: that was asked for), else the template's rendered subject, which
 * must not be missing or blank: a message must not lose its subject without anyone asking.
 *
 * @throws ApiError 422 `subject_missing` (`details.template`, `details.reason`:
 *   `template_has_no_subject` or `rendered_empty`).
 * @example
 * ```ts
 * templatedSubject(undefined, "Order 42 shipped", { name: "order-shipped" }); // "Order 42 shipped"
 * templatedSubject("Hello", undefined, { name: "signature" }); // "Hello"
 * templatedSubject(undefined, undefined, { name: "signature" }); // throws 422 subject_missing
 * ```
 */
export function templatedSubject(
  requested: string | undefined,
  rendered: string | undefined,
  template: { name: string },
): string {
  if (requested !== undefined) return requested;
  if (rendered === undefined) throw subjectMissing(template.name, "template_has_no_subject");
  if (rendered.trim() === "") throw subjectMissing(template.name, "rendered_empty");
  return rendered;
}

/** 422 `subject_missing` for a template's message that would go out without a subject. */
export function subjectMissing(template: string, reason: "template_has_no_subject" | "rendered_empty"): ApiError {
  const name = JSON.stringify(template);
  const message = reason === "template_has_no_subject"
    ? `Template ${name} has no subject and the request gives none: add "subject" to the request (it overrides ` +
      `the template's), or give the template one (PATCH /templates/${encodeURIComponent(template)})`
    : `Template ${name}'s subject renders empty with this data: give the variables it uses a value, or add ` +
      `"subject" to the request`;
  return new ApiError(422, "subject_missing", message, { template, reason });
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
  flattenText(tokens);
  return tokens;
}

/**
 * Mustache builds each text token by appending one character at a time, a string of thousands
 * of pieces that every render would walk again (about 3 µs per KiB). Replace each with a
 * contiguous copy once, so that rendering a template many times (a batch) stays cheap.
 */
function flattenText(tokens: Token[]): void {
  const pending = [tokens];
  for (let list = pending.pop(); list; list = pending.pop()) {
    for (const token of list) {
      if (token[0] === "text") token[1] = Array.from(token[1]).join("");
      if (Array.isArray(token[4])) pending.push(token[4]);
    }
  }
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

function invalid(
  part: Part | "variables",
  reason: string,
  details: Record<string, number | string> = {},
): ApiError {
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
  const text = htmlValue(value);
  if (text === "") return "";
  // Marking and the checks below cost a few steps' worth per value.
  spendSteps(HTML_VALUE_STEPS);
  markedNames.push(currentVariable);
  return DATA_START + (markedNames.length - 1) + DATA_NAME_END + text + DATA_END;
}

// The markers are escaped even where nothing is marked: noncharacters have no place in a message.
function htmlValue(value: unknown): string {
  let text = escapeHtml(toText(value));
  if (MARKERS.test(text)) text = text.replace(/[\uFDD0-\uFDD2]/g, (c) => `&#x${c.charCodeAt(0).toString(16)};`);
  spendChars(text.length);
  return text;
}

// Costs of the checks in steps, measured against rendering (a step is roughly 0.1-0.25 µs).
const HTML_VALUE_STEPS = 3;
const URL_CHECK_STEPS = 4;
const SCANNED_CHARS_PER_STEP = 16;

/**
 * Strip the data markers from rendered HTML and refuse it when data is where it may not be: a
 * URL attribute (its name or value) that does not resolve to a safe scheme, or a place where no
 * data may go (see data_contexts.ts).
 */
function checkDataContexts(marked: string): string {
  let at = marked.indexOf(DATA_START);
  if (at < 0) return marked;
  const ranges: DataRange[] = [];
  // Joined once: a flat string scans faster than one built by concatenation.
  const chunks: string[] = [];
  let length = 0;
  let from = 0;
  for (; at >= 0; at = marked.indexOf(DATA_START, from)) {
    const nameEnd = marked.indexOf(DATA_NAME_END, at);
    const end = marked.indexOf(DATA_END, nameEnd);
    chunks.push(marked.slice(from, at), marked.slice(nameEnd + 1, end));
    const start = length + at - from;
    length = start + end - nameEnd - 1;
    ranges.push({ start, end: length, name: markedNames[Number(marked.slice(at + 1, nameEnd))] });
    from = end + 1;
  }
  chunks.push(marked.slice(from));
  const html = chunks.join("");
  // Scanning is linear but not free: it is paid from the same budget, before it starts (each
  // range is at most one attribute to check).
  spendSteps(Math.ceil(html.length / SCANNED_CHARS_PER_STEP) + ranges.length * URL_CHECK_STEPS);

  const unsafe = findUnsafeData(html, ranges, { urls: true, attributeNames: true });
  if (unsafe === null) return html;
  if (unsafe.kind === "url") throw unsafeUrl(unsafe.variable, unsafe.attribute);
  throw new ApiError(
    422,
    "template_data_unsafe_context",
    `Template data "${unsafe.variable}" lands in ${CONTEXT_NAMES[unsafe.context]}, where data could restyle, ` +
      "script or redirect the message; the template must not let data reach it",
    {
      part: "html",
      variable: unsafe.variable,
      context: unsafe.context,
      ...(unsafe.attribute === undefined ? {} : { attribute: unsafe.attribute }),
    },
  );
}

/**
 * Under a `urls` plan: keep a URL attribute's variable value, and once its last one is in,
 * check the value it makes, as a full scan would: only when data is in it (a value is not
 * empty), naming the first variable that is not.
 */
function fillUrlSlot({ attribute, slot }: UrlTag, text: string): void {
  attribute.values[slot] = text;
  if (slot !== attribute.variables.length - 1) return;
  const first = attribute.values.findIndex((value) => value !== "");
  if (first < 0) return;
  const value = attribute.pieces.map((piece) => typeof piece === "number" ? attribute.values[piece] : piece).join("");
  spendSteps(URL_CHECK_STEPS + Math.ceil(value.length / SCANNED_CHARS_PER_STEP));
  if (!isSafeUrlValue(attribute.name, value)) throw unsafeUrl(attribute.variables[first], attribute.name);
}

function unsafeUrl(variable: string, attribute: string): ApiError {
  return new ApiError(
    422,
    "template_data_unsafe_url",
    `Template data "${variable}" makes the ${attribute} attribute a URL that is not http(s), mailto, tel, cid or relative`,
    { part: "html", variable, attribute },
  );
}

function tooManyValues(): ApiError {
  return new ApiError(422, "template_data_invalid", `Template data has more than ${MAX_DATA_VALUES} values`, {
    limit: MAX_DATA_VALUES,
  });
}

/**
 * Copy one value into a shape Mustache cannot misuse: prototype-less objects with own
 * enumerable keys only, arrays of the same, and JSON scalars. Everything else is dropped
 * (undefined). `count` is called once per value seen and returns the running total.
 */
function copyValue(value: unknown, depth: number, count: () => number): unknown {
  if (count() > MAX_DATA_VALUES) throw tooManyValues();
  if (value === null || ["string", "number", "boolean"].includes(typeof value)) return value;
  if (!Array.isArray(value) && !isPlainObject(value)) return undefined;
  if (depth >= MAX_DATA_DEPTH) {
    throw new ApiError(422, "template_data_invalid", `Template data is nested deeper than ${MAX_DATA_DEPTH}`, {
      limit: MAX_DATA_DEPTH,
    });
  }
  if (Array.isArray(value)) {
    return value.map((item) => copyValue(item, depth + 1, count)).filter((item) => item !== undefined);
  }
  const out: Record<string, unknown> = Object.create(null);
  for (const key of Object.keys(value)) {
    if (key === "__proto__") continue;
    const item = copyValue(value[key], depth + 1, count);
    if (item !== undefined) out[key] = item;
  }
  return out;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}
