// The suppression list: addresses a user's mail never goes to again (unsubscribed, hard bounce,
// complaint, manual). The table and its rules are in
// supabase/migrations/20261207090000_suppressions.sql; every send path skips these recipients
// (_shared/send.ts: prepareSendGroup). This is how the functions list, add and remove entries,
// all as the caller (RLS): an agent may add an address, never remove one.
import { z } from "zod";
import type { Tx } from "../db.ts";
import { ApiError } from "../http.ts";
import { canonicalAddress } from "../mail/addresses.ts";

/** Why an address is suppressed. */
export const SUPPRESSION_REASONS = ["unsubscribed", "hard_bounce", "complaint", "manual"] as const;

/** Most addresses one request may add. */
export const MAX_ADDRESSES_PER_REQUEST = 1000;

/** One entry, as the API shows it. */
export interface Suppression {
  address: string;
  reason: (typeof SUPPRESSION_REASONS)[number];
  source: string | null;
  /** The message whose outcome added it (a hard bounce), if any. */
  message_id: string | null;
  created_at: string;
}

/** POST /suppressions: one address or a list, why, and a note of where it came from. */
export const addSuppressionsRequest = z.strictObject({
  address: z.string().min(3).max(320).optional().describe("An address to suppress"),
  addresses: z.array(z.string().min(3).max(320)).min(1).max(MAX_ADDRESSES_PER_REQUEST).optional().describe(
    `Several at once (at most ${MAX_ADDRESSES_PER_REQUEST})`,
  ),
  reason: z.enum(SUPPRESSION_REASONS).default("manual").describe(
    "unsubscribed, hard_bounce, complaint or manual (default)",
  ),
  source: z.string().max(500).optional().describe("Where it came from, for your records (a ticket, an import)"),
}).refine((r) => (r.address === undefined) !== (r.addresses === undefined), {
  message: "give address or addresses",
});

/**
 * An address in the canonical form sends use (mail/addresses.ts); the list keeps it in lower case,
 * lowered by Postgres alone (as every lookup is), so no two notions of case can disagree.
 *
 * @throws ApiError 400 `invalid_address` (details.address) for something that is not an address.
 */
export function suppressionAddress(raw: string): string {
  const canonical = canonicalAddress(raw.trim());
  if (typeof canonical !== "string") {
    throw new ApiError(400, "invalid_address", `${JSON.stringify(raw)} ${canonical.error}`, { address: raw });
  }
  return canonical;
}

const COLUMNS = "s.address, s.reason, s.source, s.audit_id as message_id, s.created_at";

/** A page of the caller's list in address order, after `after` (run inside withUser). */
export async function listSuppressions(
  tx: Tx,
  options: { after?: string; limit: number; reason?: string },
): Promise<{ suppressions: Suppression[]; next_after: string | null }> {
  const rows = await tx<Suppression[]>`
    select ${tx.unsafe(COLUMNS)} from public.suppressions s
     where true
       ${options.after ? tx`and s.address > ${options.after}::text` : tx``}
       ${options.reason ? tx`and s.reason = ${options.reason}` : tx``}
     order by s.address
     limit ${options.limit}`;
  return {
    suppressions: rows,
    next_after: rows.length === options.limit ? rows[rows.length - 1].address : null,
  };
}

/** One of the caller's entries, else 404 `suppression_not_found`. */
export async function getSuppression(tx: Tx, address: string): Promise<Suppression> {
  const [row] = await tx<Suppression[]>`
    select ${tx.unsafe(COLUMNS)} from public.suppressions s where s.address = lower(${suppressionAddress(address)})`;
  if (!row) throw notListed(address);
  return row;
}

/** Add addresses (already there: kept as they were); the entries after, and how many are new. */
export async function addSuppressions(
  tx: Tx,
  request: z.infer<typeof addSuppressionsRequest>,
): Promise<{ added: number; suppressions: Suppression[] }> {
  const addresses = [...new Set((request.addresses ?? [request.address!]).map(suppressionAddress))];
  const added = await tx<{ address: string }[]>`
    insert into public.suppressions (address, reason, source)
    select distinct lower(a), ${request.reason}, ${request.source ?? null} from unnest(${addresses}::text[]) a
    on conflict (user_id, address) do nothing
    returning address`;
  const rows = await tx<Suppression[]>`
    select ${tx.unsafe(COLUMNS)} from public.suppressions s
     where s.address = any (select lower(a) from unnest(${addresses}::text[]) a)
     order by s.address`;
  return { added: added.length, suppressions: rows };
}

/**
 * Remove an address (the entry as it was listed is returned): mail may go to it again. The owner's own session only: an agent's token
 * (`client_id`) gets 403 `first_party_session_required` (RLS would quietly delete nothing).
 *
 * @throws ApiError 404 `suppression_not_found`, 403 `first_party_session_required`.
 */
export async function removeSuppression(tx: Tx, address: string, isAgent: boolean): Promise<string> {
  const canonical = suppressionAddress(address);
  if (isAgent) {
    throw new ApiError(
      403,
      "first_party_session_required",
      "Only you, signed in yourself, can lift a suppression: an agent may add addresses, never remove one",
    );
  }
  const deleted = await tx<{ address: string }[]>`
    delete from public.suppressions s where s.address = lower(${canonical}) returning s.address`;
  if (deleted.length === 0) throw notListed(address);
  return deleted[0].address;
}

function notListed(address: string): ApiError {
  return new ApiError(404, "suppression_not_found", `${JSON.stringify(address)} is not on your suppression list`);
}
