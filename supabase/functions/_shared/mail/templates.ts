// User email templates rendered with logic-less Mustache: the user owns the template, the agent
// supplies the data, so data can neither execute, reach prototypes, emit raw HTML nor break headers.
import Mustache from "mustache";
import { ApiError } from "../http.ts";

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

let renderBudget = 0;
const renderTokens = mustache.Writer.prototype.renderTokens;
writer.renderTokens = function (this: MustacheWriter, ...args: unknown[]): string {
  const out = renderTokens.apply(this, args);
  renderBudget -= out.length;
  if (renderBudget < 0) {
    throw new ApiError(422, "template_output_too_large", "The template renders to more text than any email may hold", {
      limit_chars: MAX_RENDERED_CHARS,
    });
  }
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
    return lookupOwn(this, name.split("."));
  }
}

function lookupOwn(start: MustacheContext, path: string[]): unknown {
  for (let context: MustacheContext | undefined = start; context; context = context.parent) {
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
 * a single line. `variables` must have one of the two accepted shapes.
 *
 * @throws ApiError 422 `template_invalid` naming the part and the reason (`details.part`).
 * @example
 * ```ts
 * validateTemplateSource({ subject: "Hi {{name}}", html: "<p>{{{raw}}}</p>", text: null, variables: null });
 * // throws: html: unescaped output {{{raw}}} ...
 * ```
 */
export function validateTemplateSource(template: EmailTemplate): void {
  validateVariables(template.variables);
  for (const part of PARTS) {
    const source = template[part];
    if (source === null || source === undefined) continue;
    if (typeof source !== "string") throw invalid(part, "must be a string or null");
    if (part === "subject" && HEADER_BREAKERS.test(source)) throw invalid(part, "must not contain CR, LF or NUL");
    checkTokens(part, parsePart(part, source));
  }
}

/**
 * Render a template with caller data.
 *
 * - `html`: every `{{name}}` is HTML-escaped; unescaped tags are rejected, so data cannot add markup.
 * - `subject` and `text`: values are inserted as they are (no HTML entities); a value that would put
 *   CR, LF or NUL into the subject is rejected, so data cannot start a new header line.
 * - Data is copied into prototype-less objects; lookups see only its own properties, functions are
 *   dropped (never called), non-plain objects are dropped, and `__proto__` keys are ignored.
 *   `{{constructor}}` or `{{name.length}}`-style probing of anything else renders empty.
 * - A scalar renders as text, an array as its scalar items joined by ", ", an object as nothing.
 * - Every required variable (see {@linkcode TemplateVariables}) must be present and not null; an
 *   empty string counts as present.
 *
 * @throws ApiError 422 `template_invalid` (see {@linkcode validateTemplateSource}),
 *   422 `template_data_missing` with `details.missing` listing every missing variable,
 *   422 `template_data_invalid` for data that is not an object, too deep or too large, or a
 *   multi-line subject value.
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
  validateTemplateSource(template);
  const root = sanitizeData(data);
  const missing = requiredVariables(template).filter((name) => {
    const found = ownPath(root, name.split("."));
    return !found.hit || found.value === undefined || found.value === null;
  });
  if (missing.length > 0) {
    throw new ApiError(422, "template_data_missing", `Template data is missing ${missing.join(", ")}`, { missing });
  }

  const rendered: RenderedTemplate = {};
  renderBudget = MAX_RENDERED_CHARS;
  for (const part of PARTS) {
    const source = template[part];
    if (source === null || source === undefined) continue;
    const escape = part === "html" ? (v: unknown) => escapeHtml(toText(v)) : part === "subject" ? subjectValue : toText;
    rendered[part] = writer.render(source, new DataContext(root), undefined, { tags: TAGS, escape });
  }
  // The template's own subject was checked above; this guards the combination.
  if (rendered.subject !== undefined && HEADER_BREAKERS.test(rendered.subject)) throw multiLineSubject();
  return rendered;
}

function parsePart(part: Part, source: string): Token[] {
  try {
    return writer.parse(source, TAGS);
  } catch (error) {
    throw invalid(part, (error as Error).message);
  }
}

function checkTokens(part: Part, tokens: Token[]): void {
  for (const [type, value, start, , children] of tokens) {
    if (type === "&") {
      throw invalid(
        part,
        `unescaped output of "${value}" at position ${start} is not allowed; use {{${value}}} ` +
          "(html is always escaped, subject and text never are)",
        start,
      );
    }
    if (type === ">") throw invalid(part, `partials are not supported ("{{> ${value}}}" at position ${start})`, start);
    if (["name", "#", "^"].includes(type) && value !== "." && !VARIABLE_NAME.test(value)) {
      throw invalid(part, `"${value}" at position ${start} is not a variable name`, start);
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

function invalid(part: Part | "variables", reason: string, position?: number): ApiError {
  const details = position === undefined ? { part } : { part, position };
  return new ApiError(422, "template_invalid", `Template ${part}: ${reason}`, details);
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
  const text = toText(value);
  if (HEADER_BREAKERS.test(text)) throw multiLineSubject();
  return text;
}

function toText(value: unknown): string {
  if (typeof value === "string") return value;
  if (typeof value === "number" || typeof value === "boolean") return String(value);
  if (Array.isArray(value)) {
    return value.filter((v) => ["string", "number", "boolean"].includes(typeof v)).map(String).join(", ");
  }
  return "";
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
