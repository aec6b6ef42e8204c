// Rendering a bulk send's messages when it is accepted, so that what can never be sent is
// refused with a 4xx before anything is queued, instead of failing row by row in the worker.
//
// What fails for the whole batch and what for one recipient:
// - the template itself (template_invalid), and whatever the shared content and shared data
//   fail on their own (a template too complex or too large with the shared data, a script URL
//   or a multi-line subject value in the shared data, HTML too complex for a text part, a
//   subject or HTML body over the limits, a template without a subject when the batch gives
//   none): the batch is refused with the render's own code, as preview and send-email refuse
//   it, after one render;
// - a recipient's own data (missing variables, its own lists making the render too complex,
//   its own unsafe URL or multi-line subject value, its values making the subject or HTML too
//   long, or the subject empty): that recipient is named by index in `invalid_recipients` (or skipped).
//
// Each recipient with its own data is rendered with {...shared data, ...own data}, as the worker
// will. Parsing and copying are done once per batch, and a template whose data lands only in
// text (or only in quoted attributes) is cheap to render again (see mail/templates.ts), so
// 10,000 recipients of an ordinary newsletter take tens of milliseconds. The rendering work of
// one accept is bounded (ACCEPT_RENDER_STEPS, shared by all entries); entries past it get the
// cheap checks only and render when sent, unless some rendered entry already failed: then the
// batch is refused, skip_invalid or not, since the others may well fail the same way.
import { ApiError } from "../http.ts";
import { checkContent, type CompositionLimits } from "../mail/compose.ts";
import {
  type CompiledTemplate,
  compileTemplate,
  hasSubject,
  mergeTemplateData,
  prepareTemplateData,
  type RenderedTemplate,
  subjectMissing,
  type TemplateData,
  templatedSubject,
} from "../mail/templates.ts";
import type { SendEmailRequest } from "../schemas.ts";
import type { StoredTemplate } from "../store/templates.ts";

/**
 * Most rendering steps (see `MAX_RENDER_STEPS` in mail/templates.ts) one accept spends on all of
 * a batch's renders together: about a quarter to a whole second of CPU, within the platform's 2 s
 * per request. One render may still take up to `MAX_RENDER_STEPS` past it.
 */
export const ACCEPT_RENDER_STEPS = 4_000_000;

/** The rendering work one accept may still do, shared by all of a batch's entries. */
export class RenderBudget {
  #remaining: number;
  /** How many entries were rendered, and the first one left unrendered when the budget ran out. */
  rendered = 0;
  stoppedAt: number | undefined;

  constructor(steps = ACCEPT_RENDER_STEPS) {
    this.#remaining = steps;
  }

  /** Whether entry `index` may still be rendered; the first refusal is remembered. */
  allows(index: number): boolean {
    if (this.#remaining > 0) return true;
    this.stoppedAt ??= index;
    return false;
  }

  spend(steps: number): void {
    this.#remaining -= steps;
  }
}

/** Content a recipients-mode batch shares. */
export type SharedContent = Pick<SendEmailRequest, "subject" | "text" | "html" | "data">;

/**
 * Check a recipients-mode batch's shared content as its messages will be built, and return
 * the check for one recipient's own data: null when it renders, else the reason.
 *
 * @throws ApiError the batch's refusal: `template_invalid`, the render's own codes with the
 *   shared data (`template_too_complex`, `template_output_too_large`, `template_data_invalid`,
 *   `template_data_unsafe_url`, `template_data_unsafe_context`), `subject_too_long`,
 *   `html_too_large`, `html_too_complex`.
 * @example
 * ```ts
 * const check = checkBatchContent(template, { data: { shop: "Acme" } }, limits, new RenderBudget());
 * check(0, { first_name: "Ada" }); // null
 * ```
 */
export function checkBatchContent(
  template: StoredTemplate | undefined,
  content: SharedContent,
  limits: CompositionLimits,
  budget: RenderBudget,
): (index: number, data: Record<string, unknown> | undefined) => string | null {
  if (template === undefined) {
    checkContent(content, limits);
    return () => null;
  }
  const { compiled, shared, sharedSubjectBlank } = renderShared(template, content, limits, budget);
  // Only sections can change the tags of the template's html (see htmlShapeVaries).
  const checkShape = compiled.htmlShapeVaries && content.html === undefined && content.text === undefined;

  return (index, data) => {
    // Without data of its own a recipient's message is the one just rendered.
    if (data === undefined || Object.keys(data).length === 0) {
      return sharedSubjectBlank ? reasonOf(subjectMissing(template.name, "rendered_empty")) : null;
    }
    if (!budget.allows(index)) return null;
    budget.rendered++;
    const before = compiled.steps;
    try {
      const merged = mergeTemplateData(shared, prepareTemplateData(data));
      budget.spend(shared.counts.size);
      const rendered = compiled.render(merged);
      templatedSubject(content.subject, rendered.subject, template);
      const message = withOverrides(content, rendered);
      if (checkShape && message.text === undefined && message.html !== undefined) {
        budget.spend(htmlScanSteps(message.html));
      }
      checkContent(message, limits, { checkShape });
      return null;
    } catch (error) {
      if (error instanceof ApiError) return reasonOf(error);
      throw error;
    } finally {
      budget.spend(compiled.steps - before);
    }
  };
}

/** The template compiled and rendered with the shared data alone: what fails there fails the batch. */
function renderShared(
  template: StoredTemplate,
  content: SharedContent,
  limits: CompositionLimits,
  budget: RenderBudget,
): { compiled: CompiledTemplate; shared: TemplateData; sharedSubjectBlank: boolean } {
  let compiled: CompiledTemplate | undefined;
  try {
    compiled = compileTemplate(template);
    // A template without a subject fails every message alike: the batch is refused as a whole.
    if (content.subject === undefined && !hasSubject(template)) {
      throw subjectMissing(template.name, "template_has_no_subject");
    }
    const shared = prepareTemplateData(content.data ?? {});
    // Recipients bring the required variables; the shared data alone must render all the same.
    const rendered = compiled.render(shared, { requireVariables: false });
    checkContent(withOverrides(content, rendered), limits);
    // Blank with the shared data alone: a recipient without data of its own would get no subject.
    const sharedSubjectBlank = content.subject === undefined && (rendered.subject ?? "").trim() === "";
    return { compiled, shared, sharedSubjectBlank };
  } catch (error) {
    // The template itself is at fault there, whatever the data.
    if (!(error instanceof ApiError) || error.code === "template_invalid" || error.code === "subject_missing") {
      throw error;
    }
    throw new ApiError(error.status, error.code, `With the batch's shared data: ${error.message}`, error.details);
  } finally {
    budget.spend(compiled?.steps ?? 0);
  }
}

/**
 * The check for messages-mode entries that use a template: each renders with its own data;
 * templates are compiled once per batch, and an HTML shape sections cannot change is checked
 * once per template. Null when it renders, else the reason.
 *
 * @example
 * ```ts
 * const check = messageRenderer(limits, new RenderBudget());
 * check(0, { to: [...], template: "welcome", data: { name: "Ada" } }, template); // null
 * ```
 */
export function messageRenderer(
  limits: CompositionLimits,
  budget: RenderBudget,
): (index: number, request: SendEmailRequest, template: StoredTemplate) => string | null {
  const compiled = new Map<string, CompiledTemplate | ApiError>();
  // For templates whose html no section can change: the shape check's verdict, by template id.
  const shapes = new Map<string, string | null>();
  return (index, request, template) => {
    let entry = compiled.get(template.id);
    if (entry === undefined) {
      try {
        entry = compileTemplate(template);
      } catch (error) {
        if (!(error instanceof ApiError)) throw error;
        entry = error;
      }
      compiled.set(template.id, entry);
    }
    if (entry instanceof ApiError) return reasonOf(entry);
    if (request.subject === undefined && !hasSubject(template)) {
      return reasonOf(subjectMissing(template.name, "template_has_no_subject"));
    }
    if (!budget.allows(index)) return null;
    budget.rendered++;
    const before = entry.steps;
    try {
      const rendered = entry.render(prepareTemplateData(request.data ?? {}));
      templatedSubject(request.subject, rendered.subject, template);
      const message = withOverrides(request, rendered);
      checkContent(message, limits, { checkShape: false });
      if (message.text !== undefined || message.html === undefined) return null;
      // The text part will be generated from this html: its shape must allow that.
      const fixed = request.html === undefined && !entry.htmlShapeVaries;
      const known = fixed ? shapes.get(template.id) : undefined;
      if (known !== undefined) return known;
      budget.spend(htmlScanSteps(message.html));
      const verdict = shapeProblem(message.html, limits);
      if (fixed) shapes.set(template.id, verdict);
      return verdict;
    } catch (error) {
      if (error instanceof ApiError) return reasonOf(error);
      throw error;
    } finally {
      budget.spend(entry.steps - before);
    }
  };
}

/** The refusal when rendering stopped early and some rendered entry failed. */
export function stoppedEarly(budget: RenderBudget): string {
  return `rendering every entry would take more than ${ACCEPT_RENDER_STEPS} steps; it stopped at entry ` +
    `${budget.stoppedAt} after ${budget.rendered} renders, and the entries left may fail as these do`;
}

/** The message's parts: the request's own fields over the template's, as send-email picks them. */
function withOverrides(
  request: Pick<SendEmailRequest, "subject" | "text" | "html">,
  rendered: RenderedTemplate,
): { subject?: string; text?: string; html?: string } {
  return {
    subject: request.subject ?? rendered.subject,
    text: request.text ?? rendered.text,
    html: request.html ?? rendered.html,
  };
}

function shapeProblem(html: string, limits: CompositionLimits): string | null {
  try {
    checkContent({ html }, limits);
    return null;
  } catch (error) {
    if (error instanceof ApiError) return reasonOf(error);
    throw error;
  }
}

// An HTML shape check reads the body once, about as fast as a render scans it (mail/templates.ts).
function htmlScanSteps(html: string): number {
  return Math.ceil(html.length / 16);
}

/** An entry's reason: the code first, so that a client can tell them apart. */
function reasonOf(error: ApiError): string {
  return `${error.code}: ${error.message}`;
}
