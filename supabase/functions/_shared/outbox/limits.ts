// The limits of a send-bulk request, read once from the environment (no heavy imports: the
// configuration loads this module in every function).

/** Limits of one bulk request. */
export interface BulkLimits {
  /** Most entries (recipients or messages) per request. */
  maxEntries: number;
}

/**
 * Default of `MAILROOM_OUTBOX_CPU_BUDGET_MS`: the CPU time a worker run spends. The platform
 * stops an invocation at 2 s of CPU, and what is in hand when the budget is spent still has to
 * be sent or put back.
 */
export const DEFAULT_CPU_BUDGET_MS = 1_400;

/** Default of `MAILROOM_BULK_MAX_RECIPIENTS`. */
export const DEFAULT_BULK_MAX_ENTRIES = 10_000;
/** The most the database accepts per batch (`email_batches_total`). */
export const BULK_MAX_ENTRIES_CEILING = 100_000;
/** Largest template data of one recipient, as UTF-8 JSON. */
export const MAX_ENTRY_DATA_BYTES = 16 * 1024;
/** Largest shared content of a batch, as UTF-8 JSON (`email_batches_content`). */
export const MAX_BATCH_CONTENT_BYTES = 4 * 1024 * 1024;
/** Most invalid entries listed in a 422 `invalid_recipients`; `details.invalid_count` has them all. */
export const MAX_LISTED_ERRORS = 100;

/**
 * Bulk limits from the environment: `MAILROOM_BULK_MAX_RECIPIENTS` (default
 * {@linkcode DEFAULT_BULK_MAX_ENTRIES}, at most {@linkcode BULK_MAX_ENTRIES_CEILING}).
 *
 * @throws Error naming the variable when it is not a positive integer within the ceiling.
 * @example
 * ```ts
 * loadBulkLimits({ MAILROOM_BULK_MAX_RECIPIENTS: "5000" }); // { maxEntries: 5000 }
 * ```
 */
export function loadBulkLimits(env: Record<string, string | undefined>): BulkLimits {
  const raw = env.MAILROOM_BULK_MAX_RECIPIENTS?.trim();
  if (!raw) return { maxEntries: DEFAULT_BULK_MAX_ENTRIES };
  const value = /^\d+$/.test(raw) ? Number(raw) : NaN;
  if (!Number.isSafeInteger(value) || value <= 0 || value > BULK_MAX_ENTRIES_CEILING) {
    throw new Error(
      `MAILROOM_BULK_MAX_RECIPIENTS must be an integer from 1 to ${BULK_MAX_ENTRIES_CEILING}, got "${raw}"`,
    );
  }
  return { maxEntries: value };
}
