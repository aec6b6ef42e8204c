// JSON Schema of what a zod request schema accepts (its input side), for the agent tools and
// the OpenAPI document. A preprocess that turns one value into a list (the recipient fields)
// is shown as "one or a list", which JSON Schema would otherwise show as the list only.
import { z } from "zod";

/**
 * The input JSON Schema of `schema` (draft 2020-12, without `$schema`).
 *
 * @example
 * ```ts
 * inputJsonSchema(z.object({ to: recipientList })); // { type: "object", properties: { to: { anyOf: [...] } } }
 * ```
 */
export function inputJsonSchema(schema: z.ZodType): Record<string, unknown> {
  const generated = z.toJSONSchema(schema, {
    io: "input",
    unrepresentable: "any",
    override: (ctx) => {
      const def = (ctx.zodSchema as unknown as {
        _zod: { def: { type: string; in?: { _zod: { def: { type: string } } } } };
      })._zod.def;
      const json = ctx.jsonSchema as Record<string, unknown>;
      if (def.type === "pipe" && def.in?._zod.def.type === "transform" && json.type === "array" && json.items) {
        const { description, ...list } = json;
        for (const key of Object.keys(json)) delete json[key];
        if (description !== undefined) json.description = description;
        json.anyOf = [list.items, list];
      }
    },
  }) as Record<string, unknown>;
  const { $schema: _dialect, ...rest } = generated;
  return rest;
}

/** The output JSON Schema of `schema` (what a response holds), without `$schema`. */
export function outputJsonSchema(schema: z.ZodType): Record<string, unknown> {
  const { $schema: _dialect, ...rest } = z.toJSONSchema(schema, { io: "output", unrepresentable: "any" }) as Record<
    string,
    unknown
  >;
  return rest;
}
