// Human oversight: the guardrails every send passes and the stop button (migration
// 20261206160000_sending_guardrails.sql holds the rules; this is how the functions reach them).
//
// Every send path calls checkSendGuardrails in its own transaction, as the sender: send-email
// (immediate and scheduled), send-bulk at accept, and the outbox worker again before it builds
// each message. The worker's in-flight mark also refuses a stopped config's rows, so a stop
// holds a draining batch between two messages. Loosening a guardrail or lifting a stop needs
// the owner's first-party session: a token with `client_id` (an OAuth client: an agent) gets
// 403 `first_party_session_required`, in the database, whichever way it comes.
import { z } from "zod";
import type { Tx } from "../db.ts";
import { ApiError } from "../http.ts";
import { findConfig } from "../store/smtp_configs.ts";

/** A recipient pattern: `ana@example.com`, `example.com`, or `*.example.com` (its subdomains). */
const ADDRESS_PATTERN = /^[^@\s]+@([^.@*\s]+\.)*[^.@*\s]+$/;
const DOMAIN_PATTERN = /^(\*\.)?([^.@*\s]+\.)+[^.@*\s]+$/;

const recipientPattern = z.string().min(1).max(320).transform((value) => value.trim().toLowerCase()).refine(
  (value) => ADDRESS_PATTERN.test(value) || DOMAIN_PATTERN.test(value),
  "must be an address (ana@example.com), a domain (example.com) or its subdomains (*.example.com)",
);

/** `PUT /oversight/guardrails`: the whole set for the account, or for one config. */
export const guardrailsRequest = z.strictObject({
  config: z.string().min(1).max(200).optional().describe(
    "A config's name or id; without it, the account's guardrails (which every config inherits)",
  ),
  allow_recipients: z.array(recipientPattern).max(1000).nullable().optional().describe(
    "Only these may be mailed (addresses, domains, *.subdomains); null or absent: no allow list",
  ),
  deny_recipients: z.array(recipientPattern).max(1000).optional().describe(
    "Never mail these (addresses, domains, *.subdomains); the account's and the config's both apply",
  ),
  max_recipients_per_request: z.number().int().min(1).max(100_000).nullable().optional().describe(
    "At most this many recipients (to, cc and bcc) per message, and per send-bulk request",
  ),
});

/** `POST /oversight/stop` and `/oversight/resume`. */
export const stopRequest = z.strictObject({
  config: z.string().min(1).max(200).optional().describe("A config's name or id; without it, the whole account"),
  reason: z.string().max(500).optional().describe("Why (shown to whoever tries to send meanwhile)"),
});

/** One scope's guardrails as the API shows them. */
export interface Guardrails {
  config_id: string | null;
  allow_recipients: string[] | null;
  deny_recipients: string[];
  max_recipients_per_request: number | null;
  stopped_at: string | null;
  stop_reason: string | null;
  updated_at: string;
}

const COLUMNS = "config_id, allow_recipients, deny_recipients, max_recipients_per_request, stopped_at, stop_reason, " +
  "updated_at";

function shown(row: Record<string, unknown>): Guardrails {
  const iso = (value: unknown) => value instanceof Date ? value.toISOString() : value === null ? null : String(value);
  return {
    config_id: (row.config_id as string | null) ?? null,
    allow_recipients: (row.allow_recipients as string[] | null) ?? null,
    deny_recipients: (row.deny_recipients as string[] | null) ?? [],
    max_recipients_per_request: (row.max_recipients_per_request as number | null) ?? null,
    stopped_at: iso(row.stopped_at ?? null),
    stop_reason: (row.stop_reason as string | null) ?? null,
    updated_at: iso(row.updated_at) ?? new Date(0).toISOString(),
  };
}

/** The config a request names (404 for anyone else's), or null for the account. */
async function scopeOf(tx: Tx, ref: string | undefined): Promise<string | null> {
  return ref === undefined ? null : (await findConfig(tx, ref)).id;
}

/** The account's guardrails (as they stand, or the defaults: none) and every config's own. */
export async function listGuardrails(tx: Tx): Promise<{ account: Guardrails; configs: Guardrails[] }> {
  const rows = await tx<Record<string, unknown>[]>`
    select ${tx.unsafe(COLUMNS)} from public.sending_guardrails order by config_id nulls first`;
  const account = rows.find((row) => row.config_id === null);
  return {
    account: account ? shown(account) : shown({ config_id: null, deny_recipients: [] }),
    configs: rows.filter((row) => row.config_id !== null).map(shown),
  };
}

/** Replace one scope's guardrails (an agent may only tighten them). */
export async function setGuardrails(tx: Tx, req: z.infer<typeof guardrailsRequest>): Promise<Guardrails> {
  const configId = await scopeOf(tx, req.config);
  const [row] = await tx<Record<string, unknown>[]>`
    select ${tx.unsafe(COLUMNS)} from private.set_sending_guardrails(
      ${configId}::uuid, ${req.allow_recipients ?? null}::text[], ${req.deny_recipients ?? []}::text[],
      ${req.max_recipients_per_request ?? null}::integer)`;
  return shown(row);
}

/** Press the stop button for the account or one config. */
export async function stopSending(tx: Tx, req: z.infer<typeof stopRequest>): Promise<Guardrails> {
  const configId = await scopeOf(tx, req.config);
  const [row] = await tx<Record<string, unknown>[]>`
    select ${tx.unsafe(COLUMNS)} from private.stop_sending(${configId}::uuid, ${req.reason ?? null})`;
  return shown(row);
}

/** Lift a stop (the owner's first-party session only); 409 `not_stopped` when there is none. */
export async function resumeSending(tx: Tx, req: z.infer<typeof stopRequest>): Promise<Guardrails> {
  const configId = await scopeOf(tx, req.config);
  const [row] = await tx<Record<string, unknown>[]>`
    select ${tx.unsafe(COLUMNS)} from private.resume_sending(${configId}::uuid)`;
  // Nothing was stopped: the function's row is all nulls.
  if (!row || row.updated_at === null) {
    throw new ApiError(
      409,
      "not_stopped",
      configId ? "Sending through this config is not stopped" : "Sending is not stopped",
    );
  }
  return shown(row);
}

/** One recorded change: who (user, session, OAuth client) did what, when. */
export interface OversightEvent {
  id: number;
  config_id: string | null;
  action: "guardrails_changed" | "sending_stopped" | "sending_resumed";
  actor: { user_id?: string; session_id?: string; client_id?: string; aal?: string };
  details: Record<string, unknown>;
  created_at: string;
}

/** The newest events first, `limit` at a time, before the event id `before` (keyset). */
export async function listEvents(tx: Tx, before: number | undefined, limit: number): Promise<OversightEvent[]> {
  const rows = await tx<(Omit<OversightEvent, "created_at" | "id"> & { id: string; created_at: Date })[]>`
    select id, config_id, action, actor, details, created_at from public.oversight_events
     where ${before === undefined ? tx`true` : tx`id < ${before}`}
     order by id desc limit ${limit}`;
  return rows.map((row) => ({ ...row, id: Number(row.id), created_at: row.created_at.toISOString() }));
}

/**
 * Refuse a send the owner's guardrails do not allow, in the sender's transaction: 409
 * `sending_stopped`, 422 `recipient_denied` (`details.recipients`), 422
 * `recipient_cap_exceeded`. Without recipients only the stop is checked.
 *
 * @example
 * ```ts
 * await checkSendGuardrails(tx, config.id, message.envelope.to);
 * ```
 */
export async function checkSendGuardrails(tx: Tx, configId: string, recipients: string[] = []): Promise<void> {
  await tx`select private.check_send_guardrails(${configId}::uuid, ${recipients}::text[])`;
}

/**
 * The guardrails' refusals for several messages through one config, in one statement: each
 * refused message's index (in `recipientLists`) and its error.
 */
export async function guardrailRefusals(
  tx: Tx,
  configId: string,
  recipientLists: string[][],
): Promise<{ at: number; error: ApiError }[]> {
  if (recipientLists.length === 0) return [];
  const rows = await tx<
    { at: number; refusal: { status: number; code: string; message: string; details?: Record<string, unknown> } }[]
  >`
    select (r.n - 1)::integer as at, private.guardrail_refusal(${configId}::uuid,
             array(select jsonb_array_elements_text(r.v))) as refusal
      from jsonb_array_elements(${tx.json(recipientLists as never)}::jsonb) with ordinality as r (v, n)`;
  return rows.filter((row) => row.refusal !== null).map(({ at, refusal }) => ({
    at,
    error: new ApiError(refusal.status, refusal.code, refusal.message, refusal.details),
  }));
}
