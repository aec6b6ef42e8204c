// Finding the template a send names: the caller's own first, then a starter template.
import type { z } from "zod";
import { isoUtc, type Tx } from "../db.ts";
import type { template } from "../responses.ts";
import { ApiError, isUuid } from "../http.ts";
import type { EmailTemplate } from "../mail/templates.ts";

/** A stored template, as the sending paths need it. */
export interface StoredTemplate extends EmailTemplate {
  id: string;
  name: string;
}

/** The template named by id or name (own before starter, as RLS shows them), else 404. */
export async function findTemplate(tx: Tx, ref: string): Promise<StoredTemplate> {
  const where = isUuid(ref) ? tx`t.id = ${ref}::uuid` : tx`t.name = ${ref}`;
  const [template] = await tx<StoredTemplate[]>`
    select t.id, t.name, t.subject, t.html, t.text, t.variables
      from public.email_templates t
     where ${where}
     order by t.user_id nulls last
     limit 1`;
  if (!template) throw new ApiError(404, "template_not_found", `No template ${JSON.stringify(ref)}`);
  return template;
}

/** A template as the templates function shows it (`starter`: shared, read-only). */
export type TemplateRecord = Omit<z.infer<typeof template>, "required_variables">;

function recordColumns(tx: Tx, withBodies: boolean) {
  return tx`t.id, t.name, t.description, t.subject, ${withBodies ? tx`t.html, t.text,` : tx``} t.variables,
            t.user_id is null as starter,
            ${isoUtc(tx, "t.created_at")} as created_at,
            ${isoUtc(tx, "t.updated_at")} as updated_at`;
}

/** The caller's templates and the starter ones, by name (bodies left out: GET one for them). */
export async function listTemplates(tx: Tx): Promise<TemplateRecord[]> {
  return await tx<TemplateRecord[]>`
    select ${recordColumns(tx, false)} from public.email_templates t
     order by t.user_id nulls last, t.name`;
}

/** One template by id or name, own before starter, with its bodies; else 404. */
export async function getTemplate(tx: Tx, ref: string): Promise<TemplateRecord> {
  const where = isUuid(ref) ? tx`t.id = ${ref}::uuid` : tx`t.name = ${ref}`;
  const [row] = await tx<TemplateRecord[]>`
    select ${recordColumns(tx, true)} from public.email_templates t where ${where}
     order by t.user_id nulls last limit 1`;
  if (!row) throw new ApiError(404, "template_not_found", `No template ${JSON.stringify(ref)}`);
  return row;
}

/** One of the caller's own templates (a starter template cannot be changed: 403). */
async function ownTemplate(tx: Tx, ref: string): Promise<TemplateRecord> {
  const template = await getTemplate(tx, ref);
  if (template.starter) {
    throw new ApiError(403, "template_read_only", "Starter templates are shared and read-only; create your own copy");
  }
  return template;
}

function mapTemplateError(error: unknown): never {
  const e = error as { code?: string; constraint_name?: string };
  if (e?.code === "23505" && e.constraint_name === "email_templates_name_per_user") {
    throw new ApiError(409, "template_name_taken", "You already have a template with that name");
  }
  if (e?.code === "23514") {
    throw new ApiError(400, "invalid_request", `A value is out of range (${e.constraint_name ?? "check"})`);
  }
  throw error;
}

/** The template's fields as they are stored. */
export interface TemplateFields {
  name?: string;
  description?: string | null;
  subject?: string | null;
  html?: string | null;
  text?: string | null;
  variables?: unknown;
}

/** Create one of the caller's templates (validated by the caller with validateTemplateSource). */
export async function createTemplate(tx: Tx, fields: TemplateFields & { name: string }): Promise<TemplateRecord> {
  try {
    const [{ id }] = await tx<{ id: string }[]>`
      insert into public.email_templates (name, description, subject, html, text, variables)
      values (${fields.name}, ${fields.description ?? null}, ${fields.subject ?? null}, ${fields.html ?? null},
              ${fields.text ?? null}, ${fields.variables == null ? null : tx.json(fields.variables as never)})
      returning id`;
    return await getTemplate(tx, id);
  } catch (error) {
    return mapTemplateError(error);
  }
}

/**
 * Change one of the caller's templates: `merge` gets the stored template and the change and
 * validates the result before anything is written.
 */
export async function updateTemplate(
  tx: Tx,
  ref: string,
  change: TemplateFields,
  check: (merged: TemplateRecord) => void,
): Promise<TemplateRecord> {
  const current = await ownTemplate(tx, ref);
  check({ ...current, ...change } as TemplateRecord);
  const set = (column: keyof TemplateFields) => change[column] !== undefined;
  try {
    await tx`
      update public.email_templates t set
        name = ${set("name") ? change.name! : current.name},
        description = ${set("description") ? change.description ?? null : current.description},
        subject = ${set("subject") ? change.subject ?? null : current.subject},
        html = ${set("html") ? change.html ?? null : current.html ?? null},
        text = ${set("text") ? change.text ?? null : current.text ?? null},
        variables = ${
      set("variables")
        ? (change.variables === null ? null : tx.json(change.variables as never))
        : (current.variables === null ? null : tx.json(current.variables as never))
    }
       where t.id = ${current.id}::uuid`;
    return await getTemplate(tx, current.id);
  } catch (error) {
    return mapTemplateError(error);
  }
}

/** Delete one of the caller's templates; sends that used it keep their audit rows. */
export async function deleteTemplate(tx: Tx, ref: string): Promise<{ id: string; deleted: true }> {
  const template = await ownTemplate(tx, ref);
  await tx`delete from public.email_templates where id = ${template.id}::uuid`;
  return { id: template.id, deleted: true };
}
