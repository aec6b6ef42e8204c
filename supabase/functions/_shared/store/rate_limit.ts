// Per-config sending limits (messages per rolling minute and per rolling 24 hours), reserved
// in O(1) per send by private.reserve_send_slots (a ring of the last N send times per
// window, exact over any rolling window and across concurrent senders).
import type { Tx } from "../db.ts";

/** A config's identity. */
export interface ConfigRef {
  id: string;
}

/**
 * Reserve `count` sends through the config; call inside the transaction that then writes the
 * audit rows, so a send that fails to be recorded does not use up the budget.
 *
 * @throws ApiError 429 `rate_limited` with Retry-After and `details` {config, limit, per,
 *   retry_after_seconds} (raised by the database, mapped in `withUser`).
 */
export async function reserveSendCapacity(tx: Tx, config: ConfigRef, count = 1): Promise<void> {
  await tx`select private.reserve_send_slots(${config.id}::uuid, ${count}::integer)`;
}
