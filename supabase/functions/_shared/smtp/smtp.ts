// Delivering and verifying over one SMTP session (./session.ts), and the mapping of
// what went wrong to our stable error codes.
import type { BuiltMessage } from "../mail/message.ts";
import { needsSmtpUtf8 } from "../mail/addresses.ts";
import type { ResolvedTarget } from "./egress.ts";
import { ApiError } from "../http.ts";
import { type RcptReply, SessionFailure, smtpError, SmtpSession, type SmtpSettings } from "./session.ts";

export { SessionFailure, type SmtpServer, type SmtpSettings } from "./session.ts";
import type { SmtpServer } from "./session.ts";

/** What the server told us about an accepted message. */
export interface SmtpDelivery {
  messageId: string;
  accepted: string[];
  rejected: string[];
  /** The refusals of the rejected recipients, in envelope order. */
  rejections: RcptReply[];
  response: string;
}

/**
 * Send one built message (its raw bytes and envelope, exactly as built) over a fresh
 * session and close it.
 *
 * @throws SessionFailure wrapping nodemailer's error (or ours), with the stage reached.
 */
export async function deliver(
  server: SmtpServer,
  target: ResolvedTarget,
  message: Pick<BuiltMessage, "raw" | "envelope" | "messageId">,
  smtp: SmtpSettings,
): Promise<SmtpDelivery> {
  const session = await SmtpSession.open(server, target, smtp);
  try {
    const { envelope } = message;
    const international = [envelope.from, ...envelope.to].some(needsSmtpUtf8);
    if (international && !session.supports("SMTPUTF8")) {
      // RFC 6531: a non-ASCII mailbox may only go to a server that offers SMTPUTF8.
      throw new SessionFailure(
        smtpError("ESMTPUTF8", "The SMTP server does not offer SMTPUTF8, needed for a non-ASCII address"),
        "session",
      );
    }
    const reply = await session.send(envelope, message.raw);
    return {
      messageId: message.messageId,
      accepted: reply.accepted,
      rejected: reply.rejected.map((r) => r.recipient),
      rejections: reply.rejected,
      response: reply.response,
    };
  } finally {
    session.quit();
  }
}

/** What a successful verification found. */
export interface SmtpVerification {
  ok: true;
  tls: boolean;
  auth: boolean;
  latency_ms: number;
  server_banner: string | null;
}

/**
 * Connect, negotiate TLS, authenticate and quit, sending nothing.
 *
 * @throws SessionFailure; classify it with `classifySmtpError`.
 */
export async function verifyServer(
  server: SmtpServer,
  target: ResolvedTarget,
  smtp: SmtpSettings,
): Promise<SmtpVerification> {
  const started = performance.now();
  const session = await SmtpSession.open(server, target, smtp);
  session.quit();
  return {
    ok: true,
    tls: server.security !== "none",
    auth: Boolean(server.username),
    latency_ms: Math.round(performance.now() - started),
    server_banner: session.banner,
  };
}

/** Our reading of an SMTP failure. */
export interface SmtpFailure {
  /** Stable error code for the API and the audit row's error_class. */
  code: string;
  /** `unknown` when the server may have accepted the message (never resend automatically). */
  outcome: "failed" | "unknown";
  message: string;
  responseCode?: number;
  response?: string;
}

interface NodemailerError {
  code?: string;
  responseCode?: number;
  response?: string;
  command?: string;
  timeoutType?: string;
  message?: string;
}

const TLS_VERIFY_PATTERN = /certificate|self[- ]signed|unable to verify|altnames|CERT_|hostname/i;

/** Map a nodemailer error to a stable code; the password is never part of it. */
export function classifySmtpError(error: unknown): SmtpFailure {
  const stage = error instanceof SessionFailure ? error.stage : "connecting";
  const e = ((error instanceof SessionFailure ? error.cause : error) ?? {}) as NodemailerError;
  const base = { responseCode: e.responseCode, response: e.response?.slice(0, 500) };
  const failed = (code: string, message: string): SmtpFailure => ({ ...base, code, outcome: "failed", message });

  // An explicit reply from the server is a definite answer, whatever the stage.
  switch (e.code) {
    case "EAUTH":
    case "ENOAUTH":
      return failed("smtp_auth_failed", "The SMTP server rejected the credentials");
    case "ENOAUTHOFFERED":
      return failed(
        "smtp_auth_unavailable",
        "The config has credentials but the SMTP server offers no AUTH mechanism (on this port, or before TLS)",
      );
    case "ESMTPUTF8":
      return failed(
        "smtp_utf8_unsupported",
        "A recipient or the sender has a non-ASCII local part and the SMTP server does not offer SMTPUTF8",
      );
    case "EENVELOPE":
      return failed("smtp_recipients_rejected", "The SMTP server rejected the sender or all recipients");
    case "EMESSAGE":
      return failed("smtp_message_rejected", "The SMTP server rejected the message");
    case "EDNS":
      return failed("smtp_host_not_found", "The SMTP host name could not be resolved");
    case "ETLS":
      return failed(
        "smtp_tls_failed",
        "TLS could not be negotiated with the SMTP server (for starttls: the server did not offer STARTTLS)",
      );
  }
  // The server took the message data but never confirmed it: it may have delivered it, and
  // SMTP has no idempotency, so this must never be retried automatically.
  if (stage === "data") {
    return {
      ...base,
      code: "smtp_outcome_unknown",
      outcome: "unknown",
      message: "The connection ended after the message was transmitted but before the server confirmed it; " +
        "it may or may not have been delivered",
    };
  }
  const text = `${e.message ?? ""}`;
  if (e.code === "ETIMEDOUT") {
    return e.timeoutType === "SOCKET_TIMEOUT"
      ? failed("smtp_timeout", "The SMTP server stopped answering before the message was sent")
      : failed("smtp_connect_timeout", "Timed out connecting to the SMTP server");
  }
  if (TLS_VERIFY_PATTERN.test(text)) {
    return failed("smtp_tls_verify_failed", "The SMTP server's TLS certificate could not be verified");
  }
  if (stage === "session" && (e.code === "ECONNECTION" || e.code === "ESOCKET")) {
    return failed("smtp_connection_lost", "The SMTP server closed the connection before the message was sent");
  }
  if (
    /ECONNREFUSED|ECONNRESET|EHOSTUNREACH|ENETUNREACH/i.test(text) || e.code === "ECONNECTION" || e.code === "ESOCKET"
  ) {
    return failed("smtp_connect_failed", "Could not connect to the SMTP server");
  }
  return failed("smtp_error", "The SMTP exchange failed");
}

/** An egress refusal (ApiError) or an SMTP failure, as the audit row and the response describe it. */
export function describeFailure(
  error: unknown,
): { httpStatus: number; failure: SmtpFailure; details?: Record<string, unknown> } {
  if (error instanceof ApiError) {
    return {
      httpStatus: error.status,
      failure: { code: error.code, outcome: "failed", message: error.message },
      details: error.details,
    };
  }
  return { httpStatus: 502, failure: classifySmtpError(error) };
}
