// /templates: the caller's email templates (and the shared starter ones), managed without the
// Data API, with the same RLS as the table and the checks the sending paths apply.
//
//   GET    /templates               own and starter templates, by name (no bodies)
//   POST   /templates               create (201)
//   GET    /templates/:ref          one, by id or name (own before starter), with its bodies
//   PATCH  /templates/:ref          change own fields (null clears an optional one)
//   DELETE /templates/:ref          delete own
//   POST   /templates/:ref/preview  render with {data, subject?} exactly as a send would, send nothing
import { bearerToken } from "../_shared/auth.ts";
import type { AppContext } from "../_shared/context.ts";
import { withUser } from "../_shared/db.ts";
import { ApiError, type Handler, json, methodNotAllowed, readJson, routeSegments, serveJson } from "../_shared/http.ts";
import {
  type EmailTemplate,
  renderTemplate,
  requiredVariables,
  templatedSubject,
  validateTemplateSource,
} from "../_shared/mail/templates.ts";
import { createTemplateRequest, parseBody, previewTemplateRequest, updateTemplateRequest } from "../_shared/schemas.ts";
import {
  createTemplate,
  deleteTemplate,
  getTemplate,
  listTemplates,
  type TemplateRecord,
  updateTemplate,
} from "../_shared/store/templates.ts";

/** Largest request body: a template's parts are at most 256 KiB each (what a send renders). */
const MAX_BODY_BYTES = 1024 * 1024;

/** What a send would refuse is refused when the template is saved. */
function checkSource(
  template: { subject?: string | null; html?: string | null; text?: string | null; variables?: unknown },
): void {
  if ((template.html ?? null) === null && (template.text ?? null) === null) {
    throw new ApiError(400, "invalid_request", "A template needs html or text");
  }
  validateTemplateSource({
    subject: template.subject ?? null,
    html: template.html ?? null,
    text: template.text ?? null,
    variables: (template.variables ?? null) as EmailTemplate["variables"],
  });
}

function withRequired(template: TemplateRecord) {
  return { ...template, required_variables: requiredVariables(template as unknown as EmailTemplate) };
}

/** Build the templates handler over a shared context. */
export function createTemplatesHandler(ctx: AppContext): Handler {
  return serveJson(async (req) => {
    const claims = await ctx.verifyToken(bearerToken(req));
    const [ref, action, ...rest] = routeSegments(req, "templates");
    const method = req.method;
    if (rest.length > 0) throw new ApiError(404, "route_not_found", "No such route");

    if (ref === undefined) {
      if (method === "GET") return json({ templates: await withUser(ctx.sql, claims, listTemplates) });
      if (method !== "POST") methodNotAllowed("GET, POST");
      const body = parseBody(createTemplateRequest, await readJson(req, MAX_BODY_BYTES));
      checkSource(body);
      return json(withRequired(await withUser(ctx.sql, claims, (tx) => createTemplate(tx, body))), 201);
    }
    if (action === undefined) {
      if (method === "GET") return json(withRequired(await withUser(ctx.sql, claims, (tx) => getTemplate(tx, ref))));
      if (method === "DELETE") return json(await withUser(ctx.sql, claims, (tx) => deleteTemplate(tx, ref)));
      if (method !== "PATCH") methodNotAllowed("GET, PATCH, DELETE");
      const change = parseBody(updateTemplateRequest, await readJson(req, MAX_BODY_BYTES));
      return json(
        withRequired(await withUser(ctx.sql, claims, (tx) => updateTemplate(tx, ref, change, checkSource))),
      );
    }
    if (action !== "preview") {
      throw new ApiError(404, "route_not_found", `No action ${JSON.stringify(action)}; use preview`);
    }
    if (method !== "POST") methodNotAllowed("POST");
    const { data, subject } = parseBody(previewTemplateRequest, await readJson(req, MAX_BODY_BYTES));
    const template = await withUser(ctx.sql, claims, (tx) => getTemplate(tx, ref));
    const rendered = renderTemplate(template as unknown as EmailTemplate, data ?? {});
    return json({
      template: { id: template.id, name: template.name },
      // As a send would pick it, and refused as a send would refuse it (422 subject_missing).
      subject: templatedSubject(subject, rendered.subject, template),
      text: rendered.text ?? null,
      html: rendered.html ?? null,
    });
  });
}
