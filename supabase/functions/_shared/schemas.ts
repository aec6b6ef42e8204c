// Request schemas (zod): the single source for validation and the request types.
import { z } from "zod";
import { type Address, parseAddress, type RecipientInput } from "./addresses.ts";
import { ApiError } from "./http.ts";

const recipientInput = z.union([
  z.string().max(998),
  z.object({ email: z.string().max(320), name: z.string().max(200).optional() }).strict(),
]);

/** A recipient in any accepted spelling, parsed into an Address. */
export const recipient = recipientInput.transform((value, ctx): Address => {
  const parsed = parseAddress(value as RecipientInput);
  if ("error" in parsed) {
    ctx.addIssue({ code: "custom", message: `${JSON.stringify(value)} ${parsed.error}` });
    return z.NEVER;
  }
  return parsed;
});

/** One recipient or a list of them; always a list once parsed. */
export const recipientList = z.preprocess((v) => (v === undefined || Array.isArray(v) ? v : [v]), z.array(recipient));

const noHeaderBreakers = (field: string) =>
  z.string().refine((s) => !/[\r\n\0]/.test(s), { message: `${field} must not contain CR, LF or NUL` });

/** Body of `POST /send-email`. */
export const sendEmailRequest = z.object({
  to: recipientList.refine((list) => list.length > 0, "at least one recipient is required"),
  cc: recipientList.optional(),
  bcc: recipientList.optional(),
  reply_to: recipientList.optional(),
  subject: noHeaderBreakers("subject").pipe(z.string().max(998)).optional(),
  text: z.string().optional(),
  html: z.string().optional(),
  config: z.string().min(1).max(64).optional(),
  agent_context: z.record(z.string(), z.unknown()).optional(),
}).strict().refine((body) => body.text !== undefined || body.html !== undefined, {
  message: "give text, html or both",
  path: ["text"],
});

/** A validated send request. */
export type SendEmailRequest = z.infer<typeof sendEmailRequest>;

/** Validate `value`, turning failures into 400 `invalid_request` with field paths. */
export function parseBody<T extends z.ZodType>(schema: T, value: unknown): z.infer<T> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issues = result.error.issues.map((issue) => ({
    path: issue.path.map(String).join("."),
    message: issue.message,
  }));
  const summary = issues.map((i) => (i.path ? `${i.path}: ${i.message}` : i.message)).join("; ");
  throw new ApiError(400, "invalid_request", summary, { issues });
}
