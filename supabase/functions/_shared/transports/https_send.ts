// Sending the MIME message we built over a provider's HTTPS API, where SMTP cannot go (Microsoft
// 365 submits only on port 587, which hosted Edge Functions cannot reach): Microsoft Graph
// `POST /v1.0/me/sendMail` with the MIME as base64 `text/plain`, and the Gmail API
// `users.messages.send` (`raw`, or the media upload for larger messages). The provider's answer
// becomes the same DeliveryReport an SMTP delivery gives, so the outbox, retries, analytics and
// tools need no special case.
import { Buffer } from "node:buffer";
import type { DeliveryReport, SmtpFailure } from "../smtp/smtp.ts";
import type { RecipientOutcome } from "../smtp/outcome.ts";
import { retryAfterSeconds } from "../oauth/mod.ts";

/** An HTTPS send API. */
export type HttpsTransport = "graph" | "gmail_api";

/** Where the APIs live (the local stand-in replaces them in development and tests). */
export interface HttpsEndpoints {
  graphUrl: string;
  gmailUrl: string;
}

export const DEFAULT_ENDPOINTS: HttpsEndpoints = {
  graphUrl: "https://graph.microsoft.com",
  gmailUrl: "https://gmail.googleapis.com",
};

/**
 * Largest message Graph's sendMail takes: its request is limited to about 4 MB, and the MIME
 * goes base64-encoded (4/3 of its size).
 */
export const GRAPH_MAX_MESSAGE_BYTES = 3 * 1024 * 1024;

/** Larger messages go to Gmail's media upload endpoint rather than as `raw` in JSON. */
export const GMAIL_RAW_MAX_BYTES = 3 * 1024 * 1024;

/** What a send needs: the message exactly as built, and who gets it. */
export interface HttpsMessage {
  raw: Uint8Array;
  messageId: string;
  envelope: { from: string; to: string[] };
  /**
   * Bcc recipients: the APIs take recipients from the headers, so these go in a Bcc header the
   * provider removes before delivery (our built message never carries one).
   */
  bcc: string[];
}

export interface HttpsSendOptions {
  endpoints?: Partial<HttpsEndpoints>;
  timeoutMs?: number;
}

/** A token source for one mailbox: `get` gives a current token, `invalidate` drops a refused one. */
export interface TokenSource {
  get(): Promise<string>;
  /** Resolves once the next `get` cannot return this token again. */
  invalidate(accessToken: string): void | Promise<void>;
}

/**
 * Send one message over `transport` with a token from `tokens`. A token the API refuses (401)
 * is dropped and a fresh one tried once; a second refusal is `oauth_token_rejected`, which
 * pauses the config like a refused SMTP login. Never throws for what the provider did (a
 * failed refresh throws the OAuthError from `tokens.get()`).
 *
 * @example
 * ```ts
 * const report = await sendOverHttps("graph", { raw, messageId, envelope, bcc: [] }, tokens);
 * if (report.status === "deferred") console.log(report.failure?.retryAfterSeconds);
 * ```
 */
export async function sendOverHttps(
  transport: HttpsTransport,
  message: HttpsMessage,
  tokens: TokenSource,
  options: HttpsSendOptions = {},
): Promise<DeliveryReport> {
  if (transport === "graph" && message.raw.byteLength > GRAPH_MAX_MESSAGE_BYTES) {
    return report(
      message,
      failure(
        "provider_message_too_large",
        "failed",
        "message",
        false,
        `Microsoft Graph takes messages up to ${GRAPH_MAX_MESSAGE_BYTES / 1048576} MiB ` +
          `(this one is ${message.raw.byteLength} bytes); send fewer or smaller attachments`,
      ),
    );
  }
  const body = withBccHeader(message.raw, message.bcc);
  for (let attempt = 1;; attempt++) {
    const token = await tokens.get();
    const answer = await post(transport, body, token, options);
    if (answer.kind === "token_rejected" && attempt === 1) {
      await tokens.invalidate(token);
      continue;
    }
    return reportOf(transport, message, answer);
  }
}

/** Failures that happen before a connection exists: nothing can have been sent. */
const NOT_CONNECTED =
  /connection refused|ECONNREFUSED|dns error|failed to lookup|Name or service not known|tcp connect error/i;

/** Graph's 403 codes that concern one message, not the mailbox's permission. */
const MESSAGE_REFUSALS = /SendAsDenied|SendOnBehalf|InvalidRecipients|ErrorMessageSubmissionBlocked|QuotaExceeded/i;

type Answer =
  | { kind: "accepted"; status: number; id?: string }
  | { kind: "token_rejected"; status: number; text: string }
  | { kind: "refused"; status: number; code: string; text: string; retryAfter?: number }
  | { kind: "unreachable"; text: string }
  | { kind: "no_answer"; text: string };

async function post(
  transport: HttpsTransport,
  body: Uint8Array,
  token: string,
  options: HttpsSendOptions,
): Promise<Answer> {
  const endpoints = { ...DEFAULT_ENDPOINTS, ...options.endpoints };
  let request: { url: string; contentType: string; body: BodyInit };
  if (transport === "graph") {
    request = { url: `${endpoints.graphUrl}/v1.0/me/sendMail`, contentType: "text/plain", body: base64(body) };
  } else if (body.byteLength <= GMAIL_RAW_MAX_BYTES) {
    request = {
      url: `${endpoints.gmailUrl}/gmail/v1/users/me/messages/send`,
      contentType: "application/json",
      body: JSON.stringify({ raw: base64(body, true) }),
    };
  } else {
    request = {
      url: `${endpoints.gmailUrl}/upload/gmail/v1/users/me/messages/send?uploadType=media`,
      contentType: "message/rfc822",
      body: body as Uint8Array<ArrayBuffer>,
    };
  }
  let response: Response;
  try {
    response = await fetch(request.url, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": request.contentType },
      body: request.body,
      signal: AbortSignal.timeout(options.timeoutMs ?? 60_000),
    });
  } catch (error) {
    const e = error as Error & { cause?: unknown };
    const said = `${e?.message ?? error}${e?.cause ? `: ${e.cause}` : ""}`;
    const text = said.split(token).join("[redacted]").slice(0, 300);
    // Refused before any byte left (no connection): nothing was sent. Otherwise the request may
    // have reached the provider, and resending could deliver twice.
    return NOT_CONNECTED.test(text) ? { kind: "unreachable", text } : { kind: "no_answer", text };
  }
  const text = (await response.text().catch(() => "")).slice(0, 2_000);
  if (response.ok) {
    const id = (() => {
      try {
        return (JSON.parse(text) as { id?: string }).id;
      } catch {
        return undefined;
      }
    })();
    return { kind: "accepted", status: response.status, id };
  }
  if (response.status === 401) return { kind: "token_rejected", status: 401, text };
  return {
    kind: "refused",
    status: response.status,
    code: providerCode(text),
    text,
    retryAfter: retryAfterSeconds(response.headers.get("retry-after")),
  };
}

/** The provider's error code from its JSON error (Graph `error.code`, Gmail `error.errors[0].reason` or `error.status`). */
function providerCode(text: string): string {
  try {
    const error = (JSON.parse(text) as { error?: Record<string, unknown> }).error ?? {};
    const reasons = error.errors as { reason?: string }[] | undefined;
    return String(reasons?.[0]?.reason ?? (typeof error.code === "string" ? error.code : error.status ?? ""));
  } catch {
    return "";
  }
}

const RATE_LIMIT_REASONS =
  /rateLimitExceeded|userRateLimitExceeded|dailyLimitExceeded|quotaExceeded|RESOURCE_EXHAUSTED|ApplicationThrottled|MailboxConcurrency/i;

function reportOf(transport: HttpsTransport, message: HttpsMessage, answer: Answer): DeliveryReport {
  const api = transport === "graph" ? "Microsoft Graph" : "the Gmail API";
  switch (answer.kind) {
    case "accepted":
      return report(message, undefined, `${answer.status} accepted by ${api}${answer.id ? ` (id ${answer.id})` : ""}`);
    case "token_rejected":
      return report(
        message,
        failure(
          "oauth_token_rejected",
          "failed",
          "session",
          false,
          `${api} refused a freshly refreshed access token; connect the mailbox again`,
          answer.status,
          answer.text,
        ),
      );
    case "unreachable":
      return report(
        message,
        failure("provider_unreachable", "deferred", "session", true, `${api} could not be reached: ${answer.text}`),
      );
    case "no_answer":
      return report(
        message,
        failure(
          "provider_outcome_unknown",
          "unknown",
          "message",
          false,
          `${api} did not answer after the message was sent (${answer.text}); it may have been delivered, ` +
            "so it is not sent again automatically",
        ),
      );
    case "refused": {
      const { status, code, text } = answer;
      const said = code ? ` (${code})` : "";
      // 500, 502 and 504 may come after the provider took the message (a gateway timing out on a
      // send that went through): like silence after SMTP's final dot, never resent automatically.
      if (status === 500 || status === 502 || status === 504) {
        return report(
          message,
          failure(
            "provider_outcome_unknown",
            "unknown",
            "message",
            false,
            `${api} answered ${status}${said} after the message was sent; it may have been delivered, so it is ` +
              "not sent again automatically",
            status,
            text,
          ),
        );
      }
      if (status === 429 || status >= 500 || (status === 403 && RATE_LIMIT_REASONS.test(code))) {
        return report(message, {
          ...failure(
            status >= 500 ? "provider_unavailable" : "provider_throttled",
            "deferred",
            "session",
            true,
            `${api} answered ${status}${said}; sent again later`,
            status,
            text,
          ),
          ...(answer.retryAfter !== undefined ? { retryAfterSeconds: answer.retryAfter } : {}),
        });
      }
      // A 403 about this message (its From, its recipients) is the message's failure, not the mailbox's.
      if (status === 403 && MESSAGE_REFUSALS.test(code)) {
        return report(
          message,
          failure(
            "provider_rejected_message",
            "failed",
            "message",
            false,
            `${api} refused the message${said}`,
            status,
            text,
          ),
        );
      }
      if (status === 403) {
        return report(
          message,
          failure(
            "oauth_permission_missing",
            "failed",
            "session",
            false,
            `${api} refused to send for this mailbox${said}: the authorisation lacks the send permission ` +
              `(${transport === "graph" ? "Mail.Send" : "gmail.send"}); connect the mailbox again and grant it`,
            status,
            text,
          ),
        );
      }
      if (status === 413) {
        return report(
          message,
          failure(
            "provider_message_too_large",
            "failed",
            "message",
            false,
            `${api} refused the message as too large${said}`,
            status,
            text,
          ),
        );
      }
      return report(
        message,
        failure(
          "provider_rejected_message",
          "failed",
          "message",
          false,
          `${api} refused the message with ${status}${said}`,
          status,
          text,
        ),
      );
    }
  }
}

function failure(
  code: string,
  outcome: SmtpFailure["outcome"],
  scope: SmtpFailure["scope"],
  retryable: boolean,
  message: string,
  httpStatus?: number,
  response?: string,
): SmtpFailure {
  return {
    code,
    outcome,
    scope,
    retryable,
    message,
    ...(response ? { response: `HTTP ${httpStatus} ${response}`.slice(0, 500) } : {}),
  };
}

/** Every recipient with the message's outcome: these APIs accept or refuse a message whole. */
function report(message: HttpsMessage, failed: SmtpFailure | undefined, accepted?: string): DeliveryReport {
  const status = failed ? failed.outcome : "sent";
  const recipients: RecipientOutcome[] = message.envelope.to.map((address) => ({
    address,
    status: failed
      ? (failed.outcome === "unknown" ? "unknown" : failed.outcome === "deferred" ? "deferred" : "rejected")
      : "accepted",
    smtp_code: null,
    enhanced_code: null,
    response: failed ? failed.message.slice(0, 500) : accepted ?? null,
  }));
  return {
    messageId: message.messageId,
    status,
    recipients,
    response: accepted ?? failed?.response ?? null,
    ...(failed ? { failure: failed } : {}),
  };
}

/** The message with a Bcc header first, when it has Bcc recipients. */
export function withBccHeader(raw: Uint8Array, bcc: string[]): Uint8Array {
  if (bcc.length === 0) return raw;
  const header = new TextEncoder().encode(`Bcc: ${bcc.join(", ")}\r\n`);
  const out = new Uint8Array(header.byteLength + raw.byteLength);
  out.set(header);
  out.set(raw, header.byteLength);
  return out;
}

function base64(bytes: Uint8Array, urlSafe = false): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString(urlSafe ? "base64url" : "base64");
}
