// The one SMTP outcome model every path reports in (send-email, verify, later the outbox):
// per recipient what the server said, per message what that means, and whether a retry
// can succeed. SMTP's own rule decides: 2xx accepted, 4xx temporary, 5xx permanent.

/** What happened to one recipient. `unknown`: accepted at RCPT, then the end of DATA went unanswered. */
export type RecipientStatus = "accepted" | "rejected" | "deferred" | "unknown";

/** One recipient's outcome, as the API returns it and the audit row stores it. */
export interface RecipientOutcome {
  address: string;
  status: RecipientStatus;
  smtp_code: number | null;
  enhanced_code: string | null;
  response: string | null;
}

/**
 * What happened to the message: `sent` (at least one recipient accepted), `deferred`
 * (nothing accepted, and a retry can succeed), `failed` (nothing accepted, permanently) or
 * `unknown` (the session ended after the final dot without a reply: it may have arrived,
 * and SMTP has no idempotency, so it is never resent automatically).
 */
export type MessageStatus = "sent" | "deferred" | "failed" | "unknown";

/** Longest server response text we keep. */
export const MAX_RESPONSE_CHARS = 500;

const MIN_REDACTED_SECRET = 4;

/** A reply split into its parts: `450 4.2.0 Greylisted` -> 450, "4.2.0". */
export function parseReply(response: string | undefined | null): { code: number | null; enhanced: string | null } {
  const match = /^([2-5]\d\d)(?![0-9])(?:[ -]([245]\.\d{1,3}\.\d{1,3})(?![0-9.]))?/.exec(response ?? "");
  if (!match) return { code: null, enhanced: null };
  return { code: Number(match[1]), enhanced: match[2] ?? null };
}

/** A reply code as SMTP defines them (200-599), or null: a server cannot make us store anything else. */
export function replyCode(code: unknown): number | null {
  return typeof code === "number" && Number.isInteger(code) && code >= 200 && code <= 599 ? code : null;
}

/** Whether a reply is a temporary refusal (4xx). */
export function isTemporary(code: number | null | undefined): boolean {
  return typeof code === "number" && code >= 400 && code < 500;
}

/**
 * RFC 5321 4.5.3.1.10: "452 too many recipients" asks for the rest in another transaction.
 * With an enhanced code only 4.5.3 means that (452 4.2.2 is a full mailbox, for instance).
 */
export function isTooManyRecipients(code: number | null, enhanced: string | null): boolean {
  return enhanced ? enhanced === "4.5.3" : code === 452;
}

/**
 * A server's "try again in N seconds/minutes" hint, in seconds (greylisting, rate limits).
 *
 * @example
 * ```ts
 * retryHintSeconds("450 4.2.0 Greylisted, try again in 300 seconds"); // 300
 * ```
 */
export function retryHintSeconds(response: string | null | undefined): number | null {
  const match = /(?:try again|retry|wait)\D{0,20}?(\d{1,6})\s*(s|secs?|seconds?|m|mins?|minutes?)\b/i.exec(
    response ?? "",
  );
  if (!match) return null;
  const value = Number(match[1]);
  return /^m/i.test(match[2]) ? value * 60 : value;
}

/** The message's status from its recipients' (see {@linkcode MessageStatus}). */
export function messageStatus(recipients: RecipientOutcome[]): MessageStatus {
  if (recipients.some((r) => r.status === "accepted")) return "sent";
  if (recipients.some((r) => r.status === "unknown")) return "unknown";
  if (recipients.some((r) => r.status === "deferred")) return "deferred";
  return "failed";
}

/**
 * A server response cut to a bounded, single-line text with the secret removed: as it is, and
 * inside base64 (a server that echoes `AUTH PLAIN <base64 of \0user\0password>` back).
 */
export function cleanResponse(response: string | null | undefined, secret?: string | null): string | null {
  if (!response) return null;
  let text = response.replace(/[\r\n]+/g, " ").trim();
  // Shorter strings would match ordinary text; no real password is that short.
  if (secret && secret.length >= MIN_REDACTED_SECRET) {
    for (const spelling of [secret, JSON.stringify(secret).slice(1, -1), encodeURIComponent(secret)]) {
      text = text.split(spelling).join("[redacted]");
    }
    text = text.replace(/[A-Za-z0-9+/_-]{6,}={0,2}/g, (token) => decodesToSecret(token, secret) ? "[redacted]" : token);
  }
  return text.length > MAX_RESPONSE_CHARS ? `${text.slice(0, MAX_RESPONSE_CHARS)}…` : text;
}

function decodesToSecret(token: string, secret: string): boolean {
  try {
    let standard = token.replace(/-/g, "+").replace(/_/g, "/").replace(/=+$/, "");
    if (standard.length % 4 === 1) standard = standard.slice(0, -1);
    const decoded = new TextDecoder().decode(Uint8Array.fromBase64(standard, { lastChunkHandling: "loose" }));
    if (decoded.includes(secret)) return true;
    // Cut short, an echo still gives away how the password begins.
    for (let k = Math.min(secret.length, decoded.length); k >= MIN_REDACTED_SECRET; k--) {
      if (decoded.endsWith(secret.slice(0, k))) return true;
    }
    return false;
  } catch {
    return false;
  }
}
