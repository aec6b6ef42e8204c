// HTML bodies: the plain-text alternative (html-to-text), and the check that makes it safe to
// produce. html-to-text's parser (htmlparser2) slows down with the square of the nesting depth
// (50,000 nested tables: 20 s; every end tag searches the open elements) and its walk recurses
// per level (a stack overflow from about 1,000 levels). So before converting, one linear pass
// that follows htmlparser2's own rules measures the depth the parser would build and counts the
// tags, and HTML over MAX_HTML_DEPTH or MAX_HTML_TAGS is refused (422 `html_too_complex`).
import { convert } from "html-to-text";
import { ApiError } from "../http.ts";

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
 * Most quoting and list levels (blockquote, ul, ol, dl) open at once. Each level prefixes every
 * line of the text part (`> `, list indentation), so deep quoting multiplies the output: 255
 * blockquotes around 2 MiB of words made 55 million characters and 9.5 s of work.
 */
export const MAX_HTML_INDENT = 16;

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
  /** The most quoting and list levels open at once (see {@linkcode MAX_HTML_INDENT}). */
  indent: number;
  /** Set when counting stopped early because a limit was passed. */
  over?: "depth" | "tags" | "indent";
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
  limits: { maxDepth: number; maxTags: number; maxIndent?: number } = { maxDepth: Infinity, maxTags: Infinity },
): HtmlShape {
  const stack = new ParserStack();
  const shape: HtmlShape = { depth: 0, elements: 0, tags: 0, indent: 0 };
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
        if (INDENTING.has(name)) {
          shape.indent = Math.max(shape.indent, stack.count(INDENTING));
          if (shape.indent > (limits.maxIndent ?? Infinity)) throw over;
        }
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
    const which = shape.depth > limits.maxDepth ? "depth" : shape.tags > limits.maxTags ? "tags" : "indent";
    return { ...shape, over: which };
  }
  return shape;
}

/**
 * Refuse HTML that {@linkcode htmlToText} would refuse, without converting it: one linear pass.
 * For callers that accept now what is converted later (a queued send's generated text part).
 *
 * @throws ApiError 422 `html_too_complex`, as {@linkcode htmlToText}.
 * @example
 * ```ts
 * checkHtmlComplexity("<div>".repeat(300)); // throws html_too_complex (limit_depth)
 * ```
 */
export function checkHtmlComplexity(html: string): void {
  const shape = htmlShape(html, { maxDepth: MAX_HTML_DEPTH, maxTags: MAX_HTML_TAGS, maxIndent: MAX_HTML_INDENT });
  if (shape.over === "indent") {
    throw new ApiError(
      422,
      "html_too_complex",
      `The HTML nests quotes and lists deeper than ${MAX_HTML_INDENT}; flatten it or give a text part`,
      { limit_indent: MAX_HTML_INDENT },
    );
  }
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
  /** A start tag's name, lower-cased, as soon as the name ends (`start`: where the name begins). */
  openTagName?(name: string, start: number): void;
  /** An attribute of the current start tag; `valueStart` is -1 when it has no value. */
  attribute?(nameStart: number, nameEnd: number, valueStart: number, valueEnd: number): void;
  /** The current start tag ends, with `/>` or `>` (`end`: the position of that `>`). */
  openTagEnd?(selfClosing: boolean, end: number): void;
  /** An end tag's name, lower-cased (`start`: where the name begins, after `</`). */
  closeTag?(name: string, start: number): void;
  /**
   * A run of positions `[start, end)` where the tokenizer is in plain text: a character there
   * is content, not part of a tag, comment, declaration or raw-text element (script, style,
   * title, textarea, xmp). Runs are reported in order; a `<` that starts no tag ends one run
   * and the text after it is the next.
   */
  textRun?(start: number, end: number): void;
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
  // Text runs cost a comparison per character, so they are only tracked when asked for.
  const textRun = handler.textRun;
  let runStart = 0;

  for (; i < length; i++) {
    const c = html.charCodeAt(i);
    const wasText = state === S.Text;
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
          handler.openTagName?.(html.slice(sectionStart, i).toLowerCase(), sectionStart);
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
          handler.closeTag?.(html.slice(sectionStart, i).toLowerCase(), sectionStart);
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
          handler.openTagEnd?.(false, i);
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
          handler.openTagEnd?.(true, i);
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
    // The state now applies from position i + 1 on (after a fast-forward or a step back too).
    if (textRun && wasText !== (state === S.Text)) {
      if (wasText) textRun(runStart, i + 1);
      else runStart = i + 1;
    }
  }
  if (textRun && state === S.Text && runStart < length) textRun(runStart, length);
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
// Elements whose levels prefix every line of the text part.
const INDENTING = new Set(["blockquote", "ul", "ol", "dl"]);

class ParserStack {
  private readonly open_: string[] = [];

  /** How many open elements are in `names` (O(depth); depth is bounded by the caller). */
  count(names: Set<string>): number {
    let n = 0;
    for (const name of this.open_) if (names.has(name)) n++;
    return n;
  }
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
