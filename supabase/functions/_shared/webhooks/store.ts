// Webhooks as the API shows and changes them, in the caller's RLS context. The signing secret is
// made here, stored in Vault (private.set_webhook_secret) and shown once, when it is made.
import { z } from "zod";
import { isoUtc, type Tx } from "../db.ts";
import { ApiError, isUuid } from "../http.ts";
import { checkHttpsUrlStatically, type EgressPolicy, WEBHOOK_URL } from "../smtp/egress.ts";
import { newWebhookSecret } from "./signing.ts";

/** The events a webhook can ask for (all of them when it names none). */
export const WEBHOOK_EVENT_TYPES = [
  "message.queued",
  "message.scheduled",
  "message.sent",
  "message.deferred",
  "message.failed",
  "message.unknown",
  "message.suppressed",
  "message.cancelled",
  "message.bounced",
  "message.complained",
  "message.pending_approval",
  "message.rejected",
  "message.expired",
] as const;

const eventTypes = z.array(z.enum(WEBHOOK_EVENT_TYPES)).min(1).max(20).nullable().describe(
  "The events to receive (null or absent: all of them)",
);
const url = z.string().max(2048).describe(
  "Your endpoint: an https URL on a public address (checked like an SMTP host; redirects are not followed)",
);
const description = z.string().max(200).nullable().describe("What it is for, for you");

/** Body of `POST /webhooks`. */
export const createWebhookRequest = z.strictObject({
  url,
  description: description.optional(),
  event_types: eventTypes.optional(),
});

/** Body of `PATCH /webhooks/:id`: any of the fields; `enabled: true` turns a disabled one back on. */
export const updateWebhookRequest = z.strictObject({
  url,
  description,
  event_types: eventTypes,
  enabled: z.boolean().describe("false pauses it (events are not kept meanwhile); true starts it afresh"),
}).partial().refine((c) => Object.keys(c).length > 0, { message: "give at least one field to change" });

/** A webhook as the API returns it: never its secret. */
export interface Webhook {
  id: string;
  url: string;
  description: string | null;
  event_types: string[] | null;
  enabled: boolean;
  consecutive_failures: number;
  disabled_reason: string | null;
  disabled_at: string | null;
  last_success_at: string | null;
  last_failure_at: string | null;
  last_error: string | null;
  created_at: string;
  updated_at: string;
}

function columns(tx: Tx) {
  return tx`w.id, w.url, w.description, w.event_types, w.enabled, w.consecutive_failures, w.disabled_reason,
            ${isoUtc(tx, "w.disabled_at")} as disabled_at, ${isoUtc(tx, "w.last_success_at")} as last_success_at,
            ${isoUtc(tx, "w.last_failure_at")} as last_failure_at, w.last_error,
            ${isoUtc(tx, "w.created_at")} as created_at, ${isoUtc(tx, "w.updated_at")} as updated_at`;
}

function notFound(id: string): ApiError {
  return new ApiError(404, "webhook_not_found", `No webhook ${JSON.stringify(id)}`);
}

/** The caller's webhooks, oldest first. */
export function listWebhooks(tx: Tx): Promise<Webhook[]> {
  return tx<Webhook[]>`select ${columns(tx)} from public.webhooks w order by w.created_at, w.id`;
}

/** One of the caller's webhooks. */
export async function getWebhook(tx: Tx, id: string): Promise<Webhook> {
  if (!isUuid(id)) throw notFound(id);
  const [row] = await tx<Webhook[]>`select ${columns(tx)} from public.webhooks w where w.id = ${id}::uuid`;
  if (!row) throw notFound(id);
  return row;
}

/** Check an endpoint against the egress policy (no DNS: that happens at each delivery). */
function checkUrl(policy: EgressPolicy, value: string): string {
  return checkHttpsUrlStatically(policy, WEBHOOK_URL, value).url.toString();
}

/** Add a webhook; its secret (shown this once) goes to Vault. */
export async function createWebhook(
  tx: Tx,
  req: z.infer<typeof createWebhookRequest>,
  policy: EgressPolicy,
): Promise<Webhook & { secret: string }> {
  const [{ id }] = await tx<{ id: string }[]>`
    insert into public.webhooks (url, description, event_types)
    values (${checkUrl(policy, req.url)}, ${req.description ?? null}, ${req.event_types ?? null}::text[])
    returning id`;
  const secret = newWebhookSecret();
  await tx`select private.set_webhook_secret(${id}::uuid, ${secret})`;
  return { ...await getWebhook(tx, id), secret };
}

/** Change a webhook. */
export async function updateWebhook(
  tx: Tx,
  id: string,
  req: z.infer<typeof updateWebhookRequest>,
  policy: EgressPolicy,
): Promise<Webhook> {
  await getWebhook(tx, id);
  const changes: Record<string, unknown> = {};
  if (req.url !== undefined) changes.url = checkUrl(policy, req.url);
  if (req.description !== undefined) changes.description = req.description;
  if (req.enabled !== undefined) changes.enabled = req.enabled;
  if (Object.keys(changes).length > 0) await tx`update public.webhooks set ${tx(changes)} where id = ${id}::uuid`;
  if (req.event_types !== undefined) {
    await tx`update public.webhooks set event_types = ${req.event_types}::text[] where id = ${id}::uuid`;
  }
  return await getWebhook(tx, id);
}

/** A new signing secret, shown this once; the old one signs beside it for 24 hours. */
export async function rotateWebhookSecret(
  tx: Tx,
  id: string,
): Promise<{ id: string; secret: string; previous_valid_until: string }> {
  await getWebhook(tx, id);
  const secret = newWebhookSecret();
  await tx`select private.set_webhook_secret(${id}::uuid, ${secret})`;
  const [{ until }] = await tx<{ until: string }[]>`
    select ${isoUtc(tx, "w.previous_secret_expires_at")} as until from public.webhooks w where w.id = ${id}::uuid`;
  return { id, secret, previous_valid_until: until };
}

/** Remove a webhook (its secret and delivery log go with it). */
export async function deleteWebhook(tx: Tx, id: string): Promise<{ id: string; deleted: true }> {
  await getWebhook(tx, id);
  await tx`delete from public.webhooks where id = ${id}::uuid`;
  return { id, deleted: true };
}

/** A delivery as the API shows it. */
export interface WebhookDelivery {
  id: string;
  event_type: string;
  message_id: string | null;
  created_at: string;
  attempts: number;
  next_attempt_at: string | null;
  delivered_at: string | null;
  failed_at: string | null;
  last_status: number | null;
  last_error: string | null;
}

/** A webhook's latest deliveries, newest first. */
export async function listDeliveries(tx: Tx, id: string, limit: number): Promise<WebhookDelivery[]> {
  await getWebhook(tx, id);
  return await tx<WebhookDelivery[]>`
    select d.id, d.event_type, d.audit_id as message_id, ${isoUtc(tx, "d.created_at")} as created_at, d.attempts,
           case when d.delivered_at is null and d.failed_at is null then ${isoUtc(tx, "d.next_attempt_at")} end
             as next_attempt_at,
           ${isoUtc(tx, "d.delivered_at")} as delivered_at, ${isoUtc(tx, "d.failed_at")} as failed_at,
           d.last_status, d.last_error
      from public.webhook_deliveries d
     where d.webhook_id = ${id}::uuid
     order by d.created_at desc, d.id
     limit ${limit}`;
}

/** Queue a `webhook.test` event for a webhook now. */
export async function queueTest(tx: Tx, id: string): Promise<{ id: string; event_type: "webhook.test" }> {
  await getWebhook(tx, id);
  const [{ delivery }] = await tx<{ delivery: string }[]>`select private.queue_webhook_test(${id}::uuid) as delivery`;
  return { id: delivery, event_type: "webhook.test" };
}
