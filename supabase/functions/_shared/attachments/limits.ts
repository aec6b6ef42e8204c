// The limits of stored attachments, read once from the environment (no heavy imports: the
// configuration loads this module in every function).

/** What a user may store, for how long, and how a file given by URL is fetched. */
export interface AttachmentLimits {
  /** Largest file (decoded bytes): by default what one message may carry in attachments. */
  maxFileBytes: number;
  /** All of one user's stored files together. */
  storageBytesPerUser: number;
  /** Days a file is kept after its upload (a send that references it keeps it longer). */
  retentionDays: number;
  /** How long fetching a file given by URL may take, redirects included. */
  urlTimeoutMs: number;
}

/** Defaults of {@linkcode AttachmentLimits} (the largest file: `MAILROOM_MAX_ATTACHMENT_BYTES`'s default). */
export const DEFAULT_ATTACHMENT_LIMITS: Readonly<AttachmentLimits> = Object.freeze({
  maxFileBytes: 7 * 1024 * 1024,
  storageBytesPerUser: 100 * 1024 * 1024,
  retentionDays: 30,
  urlTimeoutMs: 15_000,
});

/** The database's own ceiling on one file (`attachments_size`). */
export const MAX_FILE_BYTES_CEILING = 25 * 1024 * 1024;

const VARIABLES: Record<keyof AttachmentLimits, { name: string; max: number }> = {
  maxFileBytes: { name: "MAILROOM_ATTACHMENT_MAX_BYTES", max: MAX_FILE_BYTES_CEILING },
  storageBytesPerUser: { name: "MAILROOM_ATTACHMENT_STORAGE_BYTES", max: Number.MAX_SAFE_INTEGER },
  retentionDays: { name: "MAILROOM_ATTACHMENT_RETENTION_DAYS", max: 3650 },
  urlTimeoutMs: { name: "MAILROOM_ATTACHMENT_URL_TIMEOUT_MS", max: 120_000 },
};

/**
 * Attachment limits from the environment, each falling back to {@linkcode DEFAULT_ATTACHMENT_LIMITS}
 * (the largest file falls back to `maxAttachmentBytes`, what one message may carry, when given):
 *
 * | variable                              | limit                 | default |
 * | ------------------------------------- | --------------------- | ------- |
 * | `MAILROOM_ATTACHMENT_MAX_BYTES`       | `maxFileBytes`        | 7 MiB   |
 * | `MAILROOM_ATTACHMENT_STORAGE_BYTES`   | `storageBytesPerUser` | 100 MiB |
 * | `MAILROOM_ATTACHMENT_RETENTION_DAYS`  | `retentionDays`       | 30      |
 * | `MAILROOM_ATTACHMENT_URL_TIMEOUT_MS`  | `urlTimeoutMs`        | 15000   |
 *
 * @throws Error naming the variable when a value is not a positive integer within its ceiling.
 * @example
 * ```ts
 * loadAttachmentLimits({ MAILROOM_ATTACHMENT_RETENTION_DAYS: "7" }).retentionDays; // 7
 * ```
 */
export function loadAttachmentLimits(
  env: Record<string, string | undefined>,
  maxAttachmentBytes = DEFAULT_ATTACHMENT_LIMITS.maxFileBytes,
): AttachmentLimits {
  const limits: AttachmentLimits = {
    ...DEFAULT_ATTACHMENT_LIMITS,
    maxFileBytes: Math.min(maxAttachmentBytes, MAX_FILE_BYTES_CEILING),
  };
  for (
    const [key, { name, max }] of Object.entries(VARIABLES) as [
      keyof AttachmentLimits,
      typeof VARIABLES[keyof AttachmentLimits],
    ][]
  ) {
    const raw = env[name]?.trim();
    if (!raw) continue;
    const value = /^\d+$/.test(raw) ? Number(raw) : NaN;
    if (!Number.isSafeInteger(value) || value <= 0 || value > max) {
      throw new Error(`${name} must be an integer from 1 to ${max}, got "${raw}"`);
    }
    limits[key] = value;
  }
  return limits;
}
