// Turning a validated send request into nodemailer message fields: bodies, allowed extra headers,
// in-memory attachments, recipient de-duplication and ASCII domains, within size limits.
//
// The text alternative is made by html-to-text, whose parser (htmlparser2) slows down with the
// square of the nesting depth (50,000 nested tables: 20 s; every end tag searches the open
// elements) and whose walk recurses per level (a stack overflow from about 1,000 levels). So
// before converting, one linear pass that follows htmlparser2's own rules measures the depth the
// parser would build and counts the tags, and HTML over MAX_HTML_DEPTH or MAX_HTML_TAGS is
// refused (422 `html_too_complex`).
import { Buffer } from "node:buffer";
import { domainToASCII } from "node:url";
import { convert } from "html-to-text";
import type { Address } from "./addresses.ts";
import { ApiError } from "../http.ts";

/** Size limits of one message. */
export interface CompositionLimits {
  /** Recipients over to, cc and bcc together (after de-duplication). */
  maxRecipients: number;
  /** The whole encoded message as the SMTP server receives it (headers, bodies, base64 attachments). */
  maxMessageBytes: number;
  /** The HTML body, UTF-8 encoded. */
  maxHtmlBytes: number;
  /** The subject, in UTF-16 code units (RFC 5322's line limit). */
  maxSubjectChars: number;
  /** Number of attachments. */
  maxAttachments: number;
  /** All attachments together, decoded. */
  maxAttachmentBytes: number;
}

/** Defaults for {@linkcode CompositionLimits}; {@linkcode loadCompositionLimits} applies overrides. */
export const DEFAULT_LIMITS: Readonly<CompositionLimits> = Object.freeze({
  maxRecipients: 50,
  maxMessageBytes: 10 * 1024 * 1024,
  maxHtmlBytes: 2 * 1024 * 1024,
  maxSubjectChars: 998,
  maxAttachments: 10,
  // Base64 grows content by a third: 7 MiB of attachments still fit a 10 MiB message.
  maxAttachmentBytes: 7 * 1024 * 1024,
});

const LIMIT_VARIABLES: Record<keyof CompositionLimits, string> = {
  maxRecipients: "MAILROOM_MAX_RECIPIENTS",
  maxMessageBytes: "MAILROOM_MAX_MESSAGE_BYTES",
  maxHtmlBytes: "MAILROOM_MAX_HTML_BYTES",
  maxSubjectChars: "MAILROOM_MAX_SUBJECT_CHARS",
  maxAttachments: "MAILROOM_MAX_ATTACHMENTS",
  maxAttachmentBytes: "MAILROOM_MAX_ATTACHMENT_BYTES",
};

/**
 * Composition limits from the environment, each falling back to {@linkcode DEFAULT_LIMITS}:
 *
 * | variable                        | limit                | default  |
 * | ------------------------------- | -------------------- | -------- |
 * | `MAILROOM_MAX_RECIPIENTS`       | `maxRecipients`      | 50       |
 * | `MAILROOM_MAX_MESSAGE_BYTES`    | `maxMessageBytes`    | 10 MiB   |
 * | `MAILROOM_MAX_HTML_BYTES`       | `maxHtmlBytes`       | 2 MiB    |
 * | `MAILROOM_MAX_SUBJECT_CHARS`    | `maxSubjectChars`    | 998      |
 * | `MAILROOM_MAX_ATTACHMENTS`      | `maxAttachments`     | 10       |
 * | `MAILROOM_MAX_ATTACHMENT_BYTES` | `maxAttachmentBytes` | 7 MiB    |
 *
 * `MAILROOM_MAX_SUBJECT_CHARS` cannot exceed 998. Values are positive integers in plain digits.
 *
 * @throws Error naming the variable when a value is not a positive integer.
 * @example
 * ```ts
 * const limits = loadCompositionLimits(Deno.env.toObject());
 * ```
 */
export function loadCompositionLimits(env: Record<string, string | undefined>): CompositionLimits {
  const limits = { ...DEFAULT_LIMITS };
  for (const [key, name] of Object.entries(LIMIT_VARIABLES) as [keyof CompositionLimits, string][]) {
    const raw = env[name]?.trim();
    if (!raw) continue;
    const value = /^\d+$/.test(raw) ? Number(raw) : NaN;
    if (!Number.isSafeInteger(value) || value <= 0) {
      throw new Error(`${name} must be a positive integer, got "${raw}"`);
    }
    limits[key] = value;
  }
  if (limits.maxSubjectChars > DEFAULT_LIMITS.maxSubjectChars) {
    throw new Error(`MAILROOM_MAX_SUBJECT_CHARS must not exceed ${DEFAULT_LIMITS.maxSubjectChars}`);
  }
  return limits;
}

// html-to-text ships no type declarations; this is the part of its options used here.
interface SelectorDefinition {
  selector: string;
  format?: string;
  options?: Record<string, unknown>;
}
const toText = convert as (
  html: string,
  options: { wordwrap: number | false; selectors: SelectorDefinition[]; limits: { maxDepth: number } },
) => string;

const TEXT_SELECTORS: SelectorDefinition[] = [
  { selector: "a", options: { linkBrackets: ["[", "]"], hideLinkHrefIfSameAsText: true } },
  { selector: "img", format: "skip" },
  { selector: "title", format: "skip" },
  // Preheaders and other hidden text would read as stray lines in the plain-text part.
  { selector: "[hidden]", format: "skip" },
  { selector: "[style*='display:none']", format: "skip" },
  { selector: "[style*='display: none']", format: "skip" },
  ...["h1", "h2", "h3", "h4", "h5", "h6"].map((selector) => ({ selector, options: { uppercase: false } })),
  // Email HTML nests tables for layout; aligned columns would overflow the wrap width, so each
  // cell reads as its own line instead.
  { selector: "table", format: "block", options: { leadingLineBreaks: 2, trailingLineBreaks: 2 } },
  ...["tbody", "thead", "tfoot", "tr", "td", "th"].map((selector) => ({
    selector,
    format: "block",
    options: { leadingLineBreaks: 1, trailingLineBreaks: 1 },
  })),
];

/** Deepest element nesting of an HTML body that a text part is generated from. */
export const MAX_HTML_DEPTH = 256;
/**
 * Most start and end tags in an HTML body that a text part is generated from: html-to-text takes
 * about 4 µs per element, and each end tag costs a search of up to {@linkcode MAX_HTML_DEPTH} open elements.
 */
export const MAX_HTML_TAGS = 40_000;

/**
 * The plain-text rendering of an HTML body: wrapped at 78 columns, links as `text [url]` (just
 * the URL when the text is the URL), images and hidden elements skipped, each table cell on its own line.
 *
 * @throws ApiError 422 `html_too_complex` when the HTML nests deeper than {@linkcode MAX_HTML_DEPTH}
 *   (`details.limit_depth`) or has more than {@linkcode MAX_HTML_TAGS} tags (`details.limit_tags`).
 * @example
 * ```ts
 * htmlToText('<p>Read <a href="https://example.com/a">the post</a></p>');
 * // "Read the post [https://example.com/a]"
 * ```
 */
export function htmlToText(html: string): string {
  checkHtmlComplexity(html);
  // maxDepth only backs up the check above: html-to-text would cut deeper content silently.
  return toText(html, { wordwrap: 78, selectors: TEXT_SELECTORS, limits: { maxDepth: MAX_HTML_DEPTH + 8 } });
}

/** The shape of an HTML document as htmlparser2 would build it; see {@linkcode htmlShape}. */
export interface HtmlShape {
  /** The deepest element's depth (a top-level element is at 1). */
  depth: number;
  /** Elements in the tree, including those a stray `</p>` or `</br>` creates. */
  elements: number;
  /** Start and end tags. */
  tags: number;
  /** Set when counting stopped early because a limit was passed. */
  over?: "depth" | "tags";
}

/**
 * The depth htmlparser2 would nest `html` to and its numbers of elements and tags, counted in one
 * pass that stops as soon as a limit is passed.
 *
 * @example
 * ```ts
 * htmlShape("<ul><li>a<li>b</ul>"); // { depth: 2, elements: 3, tags: 4 }
 * ```
 */
export function htmlShape(
  html: string,
  limits: { maxDepth: number; maxTags: number } = { maxDepth: Infinity, maxTags: Infinity },
): HtmlShape {
  const stack = new ParserStack();
  const shape: HtmlShape = { depth: 0, elements: 0, tags: 0 };
  const over = new Error("over");
  const tag = () => {
    if (++shape.tags > limits.maxTags) throw over;
  };
  const element = (depth: number) => {
    shape.elements++;
    shape.depth = Math.max(shape.depth, depth);
    if (shape.depth > limits.maxDepth) throw over;
  };
  try {
    scanHtml(html, {
      openTagName(name) {
        tag();
        element(stack.open(name));
      },
      openTagEnd(selfClosing) {
        if (selfClosing) stack.selfClosing();
      },
      closeTag(name) {
        tag();
        const created = stack.close(name);
        if (created > 0) element(created);
      },
    });
  } catch (error) {
    if (error !== over) throw error;
    return { ...shape, over: shape.depth > limits.maxDepth ? "depth" : "tags" };
  }
  return shape;
}

function checkHtmlComplexity(html: string): void {
  const shape = htmlShape(html, { maxDepth: MAX_HTML_DEPTH, maxTags: MAX_HTML_TAGS });
  if (shape.over === "depth") {
    throw new ApiError(
      422,
      "html_too_complex",
      `The HTML nests elements deeper than ${MAX_HTML_DEPTH}; flatten it or give a text part`,
      { limit_depth: MAX_HTML_DEPTH },
    );
  }
  if (shape.over === "tags") {
    throw new ApiError(
      422,
      "html_too_complex",
      `The HTML has more than ${MAX_HTML_TAGS} tags; simplify it or give a text part`,
      { limit_tags: MAX_HTML_TAGS },
    );
  }
}

/** What {@linkcode scanHtml} reports, in document order, with htmlparser2's names and positions. */
export interface HtmlTokenHandler {
  /** A start tag's name, lower-cased, as soon as the name ends. */
  openTagName?(name: string): void;
  /** An attribute of the current start tag; `valueStart` is -1 when it has no value. */
  attribute?(nameStart: number, nameEnd: number, valueStart: number, valueEnd: number): void;
  /** The current start tag ends, with `/>` or `>`. */
  openTagEnd?(selfClosing: boolean): void;
  /** An end tag's name, lower-cased. */
  closeTag?(name: string): void;
}

enum S {
  Text,
  BeforeTagName,
  InTagName,
  InSelfClosingTag,
  BeforeClosingTagName,
  InClosingTagName,
  AfterClosingTagName,
  BeforeAttributeName,
  InAttributeName,
  AfterAttributeName,
  BeforeAttributeValue,
  InAttributeValueDq,
  InAttributeValueSq,
  InAttributeValueNq,
  BeforeDeclaration,
  InDeclaration,
  InProcessingInstruction,
  BeforeComment,
  CdataSequence,
  InSpecialComment,
  InCommentLike,
  BeforeSpecialS,
  BeforeSpecialT,
  SpecialStartSequence,
  InSpecialTag,
}

const codes = (text: string) => Array.from(text, (c) => c.charCodeAt(0));
const CDATA = codes("CDATA[");
const CDATA_END = codes("]]>");
const COMMENT_END = codes("-->");
const SCRIPT_END = codes("</script");
const STYLE_END = codes("</style");
const TITLE_END = codes("</title");
const TEXTAREA_END = codes("</textarea");
const XMP_END = codes("</xmp");
const SPECIAL_S = [SCRIPT_END, STYLE_END];
const SPECIAL_T = [TITLE_END, TEXTAREA_END, XMP_END];
const LT = 0x3c;
const GT = 0x3e;
const SLASH = 0x2f;

const isWhitespace = (c: number) => c === 0x20 || c === 0x0a || c === 0x09 || c === 0x0c || c === 0x0d;
const isEndOfTagSection = (c: number) => c === SLASH || c === GT || isWhitespace(c);
const isAsciiAlpha = (c: number) => (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a);

/**
 * Tokenize HTML as htmlparser2 10 does in HTML mode (a port of its Tokenizer's states, entity
 * decoding left out because it never changes where a tag starts or ends), reporting tags and
 * attributes. Linear in the length of `html`; a handler may throw to stop early.
 *
 * @example
 * ```ts
 * scanHtml('<a href="x">y</a>', { openTagName: (name) => console.log(name) }); // logs "a"
 * ```
 */
export function scanHtml(html: string, handler: HtmlTokenHandler): void {
  const length = html.length;
  let state = S.Text;
  let sectionStart = 0;
  let sequence = COMMENT_END;
  let sequenceIndex = 0;
  let isSpecial = false;
  let attributeStart = -1;
  let attributeEnd = -1;
  let i = 0;
  // Move to the next `c` (true) or to the last character (false), as htmlparser2's fastForwardTo.
  const fastForwardTo = (c: number): boolean => {
    const at = html.indexOf(String.fromCharCode(c), i + 1);
    i = at < 0 ? length - 1 : at;
    return at >= 0;
  };
  const attribute = (valueStart: number, valueEnd: number) =>
    handler.attribute?.(attributeStart, attributeEnd, valueStart, valueEnd);

  for (; i < length; i++) {
    const c = html.charCodeAt(i);
    switch (state) {
      case S.Text:
        if (c === LT) {
          state = S.BeforeTagName;
          sectionStart = i;
        } else if (fastForwardTo(LT)) {
          state = S.BeforeTagName;
          sectionStart = i;
        }
        break;
      case S.BeforeTagName:
        if (c === 0x21) {
          state = S.BeforeDeclaration;
          sectionStart = i + 1;
        } else if (c === 0x3f) {
          state = S.InProcessingInstruction;
          sectionStart = i + 1;
        } else if (isAsciiAlpha(c)) {
          const lower = c | 0x20;
          sectionStart = i;
          if (lower === SCRIPT_END[2]) state = S.BeforeSpecialS;
          else if (lower === TITLE_END[2] || lower === XMP_END[2]) state = S.BeforeSpecialT;
          else state = S.InTagName;
        } else if (c === SLASH) {
          state = S.BeforeClosingTagName;
        } else {
          state = S.Text;
          i--;
        }
        break;
      case S.InTagName:
        if (isEndOfTagSection(c)) {
          handler.openTagName?.(html.slice(sectionStart, i).toLowerCase());
          state = S.BeforeAttributeName;
          i--;
        }
        break;
      case S.BeforeClosingTagName:
        if (c === GT) {
          state = S.Text;
        } else if (!isWhitespace(c)) {
          state = isAsciiAlpha(c) ? S.InClosingTagName : S.InSpecialComment;
          sectionStart = i;
        }
        break;
      case S.InClosingTagName:
        if (c === GT || isWhitespace(c)) {
          handler.closeTag?.(html.slice(sectionStart, i).toLowerCase());
          state = S.AfterClosingTagName;
          i--;
        }
        break;
      case S.AfterClosingTagName:
      case S.InDeclaration:
      case S.InProcessingInstruction:
      case S.InSpecialComment:
        if (c === GT || fastForwardTo(GT)) state = S.Text;
        break;
      case S.BeforeAttributeName:
        if (c === GT) {
          handler.openTagEnd?.(false);
          state = isSpecial ? S.InSpecialTag : S.Text;
          sequenceIndex = 0;
        } else if (c === SLASH) {
          state = S.InSelfClosingTag;
        } else if (!isWhitespace(c)) {
          state = S.InAttributeName;
          sectionStart = i;
        }
        break;
      case S.InSelfClosingTag:
        if (c === GT) {
          handler.openTagEnd?.(true);
          state = S.Text;
          isSpecial = false;
        } else if (!isWhitespace(c)) {
          state = S.BeforeAttributeName;
          i--;
        }
        break;
      case S.InAttributeName:
        if (c === 0x3d || isEndOfTagSection(c)) {
          attributeStart = sectionStart;
          attributeEnd = i;
          state = S.AfterAttributeName;
          i--;
        }
        break;
      case S.AfterAttributeName:
        if (c === 0x3d) {
          state = S.BeforeAttributeValue;
        } else if (c === SLASH || c === GT) {
          attribute(-1, -1);
          state = S.BeforeAttributeName;
          i--;
        } else if (!isWhitespace(c)) {
          attribute(-1, -1);
          state = S.InAttributeName;
          sectionStart = i;
        }
        break;
      case S.BeforeAttributeValue:
        if (c === 0x22) {
          state = S.InAttributeValueDq;
          sectionStart = i + 1;
        } else if (c === 0x27) {
          state = S.InAttributeValueSq;
          sectionStart = i + 1;
        } else if (!isWhitespace(c)) {
          state = S.InAttributeValueNq;
          sectionStart = i;
          i--;
        }
        break;
      case S.InAttributeValueDq:
      case S.InAttributeValueSq: {
        const quote = state === S.InAttributeValueDq ? 0x22 : 0x27;
        if (c === quote || fastForwardTo(quote)) {
          attribute(sectionStart, i);
          state = S.BeforeAttributeName;
        }
        break;
      }
      case S.InAttributeValueNq:
        if (isWhitespace(c) || c === GT) {
          attribute(sectionStart, i);
          state = S.BeforeAttributeName;
          i--;
        }
        break;
      case S.BeforeDeclaration:
        if (c === 0x5b) {
          state = S.CdataSequence;
          sequenceIndex = 0;
        } else {
          state = c === 0x2d ? S.BeforeComment : S.InDeclaration;
        }
        break;
      case S.BeforeComment:
        if (c === 0x2d) {
          state = S.InCommentLike;
          sequence = COMMENT_END;
          // `<!-->` and `<!--->` are complete comments.
          sequenceIndex = 2;
        } else {
          state = S.InDeclaration;
        }
        break;
      case S.CdataSequence:
        if (c === CDATA[sequenceIndex]) {
          if (++sequenceIndex === CDATA.length) {
            state = S.InCommentLike;
            sequence = CDATA_END;
            sequenceIndex = 0;
          }
        } else {
          sequenceIndex = 0;
          state = S.InDeclaration;
          i--;
        }
        break;
      case S.InCommentLike:
        if (c === sequence[sequenceIndex]) {
          if (++sequenceIndex === sequence.length) {
            state = S.Text;
            sequenceIndex = 0;
          }
        } else if (sequenceIndex === 0) {
          if (fastForwardTo(sequence[0])) sequenceIndex = 1;
        } else if (c !== sequence[sequenceIndex - 1]) {
          // `--->` and `]]]>` still end it.
          sequenceIndex = 0;
        }
        break;
      case S.BeforeSpecialS:
      case S.BeforeSpecialT: {
        // The second letter picks the raw-text element this may be. Like htmlparser2, a first
        // letter "t" or "x" allows all three of title, textarea and xmp (so <tmp> is raw text).
        const candidates = state === S.BeforeSpecialS ? SPECIAL_S : SPECIAL_T;
        const end = candidates.find((e) => e[3] === (c | 0x20));
        if (end) {
          isSpecial = true;
          sequence = end;
          sequenceIndex = 4;
          state = S.SpecialStartSequence;
        } else {
          state = S.InTagName;
          i--;
        }
        break;
      }
      case S.SpecialStartSequence: {
        const isEnd = sequenceIndex === sequence.length;
        const isMatch = isEnd ? isEndOfTagSection(c) : (c | 0x20) === sequence[sequenceIndex];
        if (!isMatch) {
          isSpecial = false;
        } else if (!isEnd) {
          sequenceIndex++;
          break;
        }
        sequenceIndex = 0;
        state = S.InTagName;
        i--;
        break;
      }
      case S.InSpecialTag:
        if (sequenceIndex === sequence.length) {
          if (c === GT || isWhitespace(c)) {
            isSpecial = false;
            // The end tag's name follows `</` (or the two characters that matched it).
            sectionStart = i - sequence.length + 2;
            state = S.InClosingTagName;
            i--;
            break;
          }
          sequenceIndex = 0;
        }
        if ((c | 0x20) === sequence[sequenceIndex]) {
          sequenceIndex++;
        } else if (sequenceIndex === 0) {
          // In <title> htmlparser2 looks at every character (for entities); elsewhere it skips to "<".
          if (sequence !== TITLE_END && fastForwardTo(LT)) sequenceIndex = 1;
        } else {
          sequenceIndex = Number(c === LT);
        }
        break;
    }
  }
}

// htmlparser2's tree-building rules (Parser.ts): which start tags close which open ones,
// which elements are void, and where `/>` closes an element (SVG and MathML).
const P_TAG = new Set(["p"]);
const FORM_TAGS = new Set(["input", "option", "optgroup", "select", "button", "datalist", "textarea"]);
const TABLE_SECTION_TAGS = new Set(["thead", "tbody"]);
const DDT_TAGS = new Set(["dd", "dt"]);
const RTP_TAGS = new Set(["rt", "rp"]);
const OPEN_IMPLIES_CLOSE = new Map<string, Set<string>>([
  ["tr", new Set(["tr", "th", "td"])],
  ["th", new Set(["th"])],
  ["td", new Set(["thead", "th", "td"])],
  ["body", new Set(["head", "link", "script"])],
  ["li", new Set(["li"])],
  ...["p", "h1", "h2", "h3", "h4", "h5", "h6"].map((tag): [string, Set<string>] => [tag, P_TAG]),
  ...["select", "input", "output", "button", "datalist", "textarea"].map((tag): [string, Set<string>] => [
    tag,
    FORM_TAGS,
  ]),
  ["option", new Set(["option"])],
  ["optgroup", new Set(["optgroup", "option"])],
  ["dd", DDT_TAGS],
  ["dt", DDT_TAGS],
  ...[
    "address",
    "article",
    "aside",
    "blockquote",
    "details",
    "div",
    "dl",
    "fieldset",
    "figcaption",
    "figure",
    "footer",
    "form",
    "header",
    "hr",
    "main",
    "nav",
    "ol",
    "pre",
    "section",
    "table",
    "ul",
  ].map((tag): [string, Set<string>] => [tag, P_TAG]),
  ["rt", RTP_TAGS],
  ["rp", RTP_TAGS],
  ["tbody", TABLE_SECTION_TAGS],
  ["tfoot", TABLE_SECTION_TAGS],
]);
const VOID_ELEMENTS = new Set([
  "area",
  "base",
  "basefont",
  "br",
  "col",
  "command",
  "embed",
  "frame",
  "hr",
  "img",
  "input",
  "isindex",
  "keygen",
  "link",
  "meta",
  "param",
  "source",
  "track",
  "wbr",
]);
const FOREIGN_CONTEXT_ELEMENTS = new Set(["math", "svg"]);
const HTML_INTEGRATION_ELEMENTS = new Set([
  "mi",
  "mo",
  "mn",
  "ms",
  "mtext",
  "annotation-xml",
  "foreignobject",
  "desc",
  "title",
]);

/** The stack of open elements as htmlparser2's Parser keeps it (top last here). */
class ParserStack {
  private readonly open_: string[] = [];
  private readonly foreign: boolean[] = [false];
  private tagName = "";

  /** Open an element; returns its depth (a void element is a leaf one level below the top). */
  open(name: string): number {
    const impliesClose = OPEN_IMPLIES_CLOSE.get(name);
    if (impliesClose) {
      while (this.open_.length > 0 && impliesClose.has(this.open_[this.open_.length - 1])) this.open_.pop();
    }
    if (!VOID_ELEMENTS.has(name)) {
      this.open_.push(name);
      if (FOREIGN_CONTEXT_ELEMENTS.has(name)) this.foreign.push(true);
      else if (HTML_INTEGRATION_ELEMENTS.has(name)) this.foreign.push(false);
    }
    this.tagName = name;
    return VOID_ELEMENTS.has(name) ? this.open_.length + 1 : this.open_.length;
  }

  selfClosing(): void {
    if (this.foreign[this.foreign.length - 1] && this.open_[this.open_.length - 1] === this.tagName) this.open_.pop();
  }

  /** Close an element; a stray `</p>` or `</br>` creates an empty one, whose depth is returned (else 0). */
  close(name: string): number {
    if (FOREIGN_CONTEXT_ELEMENTS.has(name) || HTML_INTEGRATION_ELEMENTS.has(name)) this.foreign.pop();
    if (VOID_ELEMENTS.has(name)) return name === "br" ? this.open_.length + 1 : 0;
    const at = this.open_.lastIndexOf(name);
    if (at >= 0) this.open_.length = at;
    else if (name === "p") return this.open_.length + 1;
    return 0;
  }
}

/**
 * The bodies to send: HTML alone gets a generated text alternative (nodemailer then builds
 * multipart/alternative); text alone stays text; both are kept as given.
 *
 * @example
 * ```ts
 * bodies({ html: "<p>Hi</p>" }); // { html: "<p>Hi</p>", text: "Hi" }
 * ```
 */
export function bodies(input: { text?: string; html?: string }): { text?: string; html?: string } {
  const out: { text?: string; html?: string } = {};
  if (input.text !== undefined) out.text = input.text;
  if (input.html !== undefined) {
    out.html = input.html;
    if (out.text === undefined) out.text = htmlToText(input.html);
  }
  return out;
}

/** Most extra headers a message may carry. */
export const MAX_HEADERS = 20;
/** Longest extra header value, in UTF-16 code units (RFC 5322's line limit). */
export const MAX_HEADER_VALUE = 998;

// Headers a caller may set besides any X-*; canonical spelling by lower-case name. Everything
// else (From, To, Subject, Content-*, Received, DKIM-Signature, ...) is the sender's business.
const ALLOWED_HEADERS = new Map(
  ["List-Unsubscribe", "List-Unsubscribe-Post", "List-Id", "In-Reply-To", "References", "Auto-Submitted", "Precedence"]
    .map((name) => [name.toLowerCase(), name]),
);
// RFC 5322 field-name: printable US-ASCII except the colon; at most a folded line's worth.
const FIELD_NAME = /^[\x21-\x39\x3b-\x7e]{1,76}$/;
// Control characters other than tab (Unicode Cc: C0, DEL, C1). CR, LF and NUL would end a header
// line; the others have no business in a header value or a file name either.
const CONTROL = /[^\P{Cc}\t]/u;

/**
 * Check the caller's extra headers against the allow-list (any `X-*`, `List-Unsubscribe`,
 * `List-Unsubscribe-Post`, `List-Id`, `In-Reply-To`, `References`, `Auto-Submitted`,
 * `Precedence`; case-insensitive) and return them for nodemailer's `headers`, known names in
 * canonical spelling.
 *
 * @throws ApiError 400 `header_not_allowed` (not a field name, or not allowed),
 *   400 `duplicate_header` (same name twice, in any case), 400 `invalid_header_value` (not a
 *   string, a control character such as CR, LF or NUL, or longer than 998), 400 `too_many_headers`
 *   (more than {@linkcode MAX_HEADERS}); `details.header` names the header.
 * @example
 * ```ts
 * sanitizeHeaders({ "list-unsubscribe": "<mailto:u@example.com>", "X-Campaign": "q3" });
 * // { "List-Unsubscribe": "<mailto:u@example.com>", "X-Campaign": "q3" }
 * ```
 */
export function sanitizeHeaders(headers: Record<string, string> | undefined): Record<string, string> {
  if (headers === undefined) return {};
  const entries = Object.entries(headers);
  if (entries.length > MAX_HEADERS) {
    throw new ApiError(400, "too_many_headers", `At most ${MAX_HEADERS} extra headers are allowed`, {
      limit: MAX_HEADERS,
    });
  }
  const out: Record<string, string> = {};
  const seen = new Set<string>();
  for (const [header, value] of entries) {
    const lower = header.toLowerCase();
    const isExtension = lower.startsWith("x-") && lower.length > 2;
    if (!FIELD_NAME.test(header) || !(isExtension || ALLOWED_HEADERS.has(lower))) {
      throw new ApiError(400, "header_not_allowed", `Header ${JSON.stringify(header)} may not be set`, { header });
    }
    if (seen.has(lower)) {
      throw new ApiError(400, "duplicate_header", `Header ${JSON.stringify(header)} is given more than once`, {
        header,
      });
    }
    seen.add(lower);
    if (typeof value !== "string" || CONTROL.test(value) || value.length > MAX_HEADER_VALUE) {
      throw new ApiError(
        400,
        "invalid_header_value",
        `Header ${JSON.stringify(header)} must be a single-line string of at most ${MAX_HEADER_VALUE} characters`,
        { header },
      );
    }
    if (lower === "list-unsubscribe" && !isListUnsubscribe(value)) {
      throw new ApiError(
        400,
        "invalid_header_value",
        `Header ${JSON.stringify(header)} must be a comma-separated list of <https://...> and <mailto:...> entries`,
        { header, expected: "<https://...>, <mailto:...>" },
      );
    }
    out[ALLOWED_HEADERS.get(lower) ?? header] = value;
  }
  return out;
}

/**
 * RFC 2369 / RFC 8058: `<uri>` entries separated by commas, each an https URL with a host or a
 * mailto address. Anything else (javascript:, http:, bare URLs) would be a link the recipient's
 * mail client offers under the sender's name.
 */
function isListUnsubscribe(value: string): boolean {
  return value.split(",").every((entry) => {
    const uri = /^<([^<>\s]+)>$/.exec(entry.trim())?.[1];
    if (uri === undefined) return false;
    if (/^mailto:[^@]+@[^@]+$/i.test(uri)) return true;
    if (!/^https:\/\//i.test(uri)) return false;
    try {
      return new URL(uri).hostname !== "";
    } catch {
      return false;
    }
  });
}

/** An attachment as the API takes it: base64 content. */
export interface AttachmentInput {
  filename: string;
  content: string;
  content_type?: string;
}

/**
 * An attachment as nodemailer takes it, with in-memory content only: never `path`, `href` or
 * `raw`, so nodemailer cannot be made to read a file or fetch a URL.
 */
export interface InMemoryAttachment {
  filename: string;
  content: Buffer;
  contentType?: string;
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
// RFC 6838 restricted-name, type/subtype only (no parameters).
const MEDIA_TYPE = /^[a-z0-9][a-z0-9!#$&^_.+-]{0,126}\/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}$/i;
const MAX_FILENAME = 255;

/**
 * Decode base64 attachments into in-memory nodemailer attachments.
 *
 * - `content`: standard base64 (RFC 4648 alphabet, `=` padding required, zero padding bits);
 *   line breaks are ignored so MIME-wrapped base64 is accepted; anything else is rejected.
 * - `filename`: 1 to 255 characters, no control characters, no `/` or `\`, not `.` or `..`, and
 *   no bidirectional controls or invisible format characters (U+202E and friends, zero-width
 *   characters, Hangul fillers), which can make `invoice\u202Efdp.exe` read as `invoiceexe.pdf`.
 * - `content_type`: `type/subtype` without parameters; stored lower-case. When absent,
 *   nodemailer guesses it from the filename.
 *
 * Limits are checked before decoding, so oversized input is never allocated.
 *
 * @throws ApiError 413 `too_many_attachments` (`details.limit`), 413 `attachments_too_large`
 *   (`details.limit_bytes`), 400 `invalid_attachment` (`details.index`, `details.field`).
 * @example
 * ```ts
 * decodeAttachments([{ filename: "hi.txt", content: "aGk=" }], { maxCount: 10, maxTotalBytes: 1024 });
 * // [{ filename: "hi.txt", content: Buffer "hi" }]
 * ```
 */
export function decodeAttachments(
  list: AttachmentInput[] | undefined,
  limits: { maxCount: number; maxTotalBytes: number },
): InMemoryAttachment[] {
  if (list === undefined) return [];
  if (list.length > limits.maxCount) {
    throw new ApiError(413, "too_many_attachments", `At most ${limits.maxCount} attachments are allowed`, {
      limit: limits.maxCount,
    });
  }
  let total = 0;
  return list.map((item, index) => {
    const filename = checkFilename(item.filename, index);
    const contentType = checkContentType(item.content_type, index);
    const base64 = typeof item.content === "string" ? item.content.replace(/\r?\n/g, "") : "";
    if (typeof item.content !== "string" || base64.length % 4 !== 0 || !BASE64.test(base64)) {
      throw invalidAttachment(index, "content", "content must be standard base64 with padding");
    }
    total += decodedLength(base64);
    if (total > limits.maxTotalBytes) {
      throw new ApiError(
        413,
        "attachments_too_large",
        `Attachments exceed ${limits.maxTotalBytes} bytes in total`,
        { limit_bytes: limits.maxTotalBytes },
      );
    }
    let bytes: Uint8Array;
    try {
      bytes = Uint8Array.fromBase64(base64, { lastChunkHandling: "strict" });
    } catch {
      throw invalidAttachment(index, "content", "content must be standard base64 with padding");
    }
    const content = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    return contentType === undefined ? { filename, content } : { filename, content, contentType };
  });
}

function decodedLength(base64: string): number {
  const padding = base64.endsWith("==") ? 2 : base64.endsWith("=") ? 1 : 0;
  return (base64.length / 4) * 3 - padding;
}

// Unicode format characters (Cf: bidi controls U+200E/F, U+202A-E, U+2066-9, U+061C, zero-width
// characters, soft hyphen, ...) and letters that render as nothing (Hangul fillers, the combining
// grapheme joiner): in a file name they only serve to disguise it.
const INVISIBLE = /[\p{Cf}\u034F\u115F\u1160\u3164\uFFA0]/u;
// Except the zero-width joiner inside an emoji sequence (👨‍👩‍👧), where it is what it is meant for.
const EMOJI_JOINER = /(?<=[\p{Extended_Pictographic}\p{Emoji_Modifier}]\uFE0F?)\u200D(?=\p{Extended_Pictographic})/gu;

function checkFilename(filename: unknown, index: number): string {
  if (
    typeof filename !== "string" || filename.length === 0 || filename.length > MAX_FILENAME ||
    CONTROL.test(filename) || INVISIBLE.test(filename.replace(EMOJI_JOINER, "")) || /[\t/\\]/.test(filename) ||
    filename === "." ||
    filename === ".."
  ) {
    throw invalidAttachment(
      index,
      "filename",
      `filename must be 1 to ${MAX_FILENAME} characters without control, bidirectional or invisible ` +
        `format characters, "/" or "\\"`,
    );
  }
  return filename;
}

function checkContentType(contentType: unknown, index: number): string | undefined {
  if (contentType === undefined) return undefined;
  if (typeof contentType !== "string" || !MEDIA_TYPE.test(contentType)) {
    throw invalidAttachment(index, "content_type", "content_type must look like type/subtype");
  }
  return contentType.toLowerCase();
}

function invalidAttachment(index: number, field: string, reason: string): ApiError {
  return new ApiError(400, "invalid_attachment", `Attachment ${index}: ${reason}`, { index, field });
}

/** Recipients by header, in nodemailer's vocabulary. */
export interface Recipients {
  to: Address[];
  cc?: Address[];
  bcc?: Address[];
}

/**
 * Drop repeated recipients across to, cc and bcc, keeping the first occurrence in the order
 * to, cc, bcc (so an address in both to and bcc stays visible in to). Addresses compare
 * case-insensitively in full (local part too, as practically every server does) and with the
 * domain in ASCII form, so `a@bücher.de` and `A@xn--bcher-kva.de` are one recipient.
 *
 * @example
 * ```ts
 * dedupeRecipients({ to: [{ address: "a@example.com" }], bcc: [{ address: "A@EXAMPLE.com" }] });
 * // { to: [{ address: "a@example.com" }], cc: [], bcc: [] }
 * ```
 */
export function dedupeRecipients(recipients: Recipients): Required<Recipients> {
  const seen = new Set<string>();
  const keep = (list: Address[] | undefined) =>
    (list ?? []).filter((recipient) => {
      const key = recipientKey(recipient.address);
      if (seen.has(key)) return false;
      seen.add(key);
      return true;
    });
  return { to: keep(recipients.to), cc: keep(recipients.cc), bcc: keep(recipients.bcc) };
}

function recipientKey(address: string): string {
  const at = address.lastIndexOf("@");
  if (at < 0) return address.toLowerCase();
  const domain = address.slice(at + 1);
  return `${address.slice(0, at).toLowerCase()}@${(domainToASCII(domain) || domain).toLowerCase()}`;
}

/**
 * How many recipients over to, cc and bcc (count after {@linkcode dedupeRecipients}).
 *
 * @example
 * ```ts
 * countRecipients({ to: [{ address: "a@example.com" }], cc: [{ address: "b@example.com" }] }); // 2
 * ```
 */
export function countRecipients(recipients: Recipients): number {
  return recipients.to.length + (recipients.cc?.length ?? 0) + (recipients.bcc?.length ?? 0);
}

const LDH_LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

/**
 * The address with its domain in ASCII (IDNA/punycode `xn--` labels, lower-case) and the local
 * part untouched. A domain literal such as `[192.0.2.1]` is returned as it is.
 *
 * @throws ApiError 400 `invalid_recipient` if there is no `@` or the domain is not a valid host name.
 * @example
 * ```ts
 * toPunycodeAddress("jörg@bücher.de"); // "jörg@xn--bcher-kva.de"
 * ```
 */
export function toPunycodeAddress(address: string): string {
  const at = address.lastIndexOf("@");
  const local = address.slice(0, at);
  const domain = address.slice(at + 1);
  if (at <= 0 || domain.length === 0) throw invalidRecipient(address);
  if (domain.startsWith("[") && domain.endsWith("]")) return address;
  // domainToASCII maps Unicode (UTS #46) but leaves odd ASCII alone, so the result is checked too.
  const ascii = domainToASCII(domain);
  const labels = ascii.split(".");
  if (!ascii || ascii.length > 253 || !labels.every((label) => LDH_LABEL.test(label))) {
    throw invalidRecipient(address);
  }
  return `${local}@${ascii}`;
}

function invalidRecipient(address: string): ApiError {
  return new ApiError(400, "invalid_recipient", `${JSON.stringify(address)} has no valid domain`, { address });
}
