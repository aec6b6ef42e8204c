// Finding the template a send names: the caller's own first, then a starter template.
import type { Tx } from "../db.ts";
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
