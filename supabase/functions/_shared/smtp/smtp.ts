// Delivering and verifying over one SMTP session (./session.ts), and the mapping of
// what went wrong to our stable error codes.
import type { BuiltMessage } from "../mail/message.ts";
import { needsSmtpUtf8 } from "../mail/addresses.ts";
import type { ResolvedTarget } from "./egress.ts";
import { type CertificateFacts, probeCertificate } from "./certificate.ts";
import type { PoolKey, SessionPool } from "./pool.ts";
import { ApiError } from "../http.ts";
import { OAuthError } from "../oauth/refresh.ts";
import { type RcptReply, SessionFailure, smtpError, SmtpSession, type SmtpSettings } from "./session.ts";

export { SessionFailure, type SmtpServer, type SmtpSettings } from "./session.ts";
import type { SmtpServer } from "./session.ts";
import {
  cleanResponse,
  isTemporary,
  isTooManyRecipients,
  type MessageStatus,
  messageStatus,
  parseReply,
  type RecipientOutcome,
  replyCode,
  retryHintSeconds,
} from "./outcome.ts";

/** What one delivery came to: per recipient, for the message, and why when nothing was accepted. */
export interface DeliveryReport {
  messageId: string;
  status: MessageStatus;
  /** In envelope order. */
  recipients: RecipientOutcome[];
  /** The server's reply to the last completed DATA. */
  response: string | null;
  /** Set unless the message was sent: what went wrong, and whether a retry can succeed. */
  failure?: SmtpFailure;
}

/**
 * Thrown by {@linkcode deliver} when its `beforeFirstByte` said no (false) or failed (`cause`):
 * nothing of the message was sent, and the session went back to its pool.
 */
export class NotStarted extends Error {
  constructor(override readonly cause?: unknown) {
    super("The message was not started");
  }
}

/**
 * Deliver one built message (its raw bytes and envelope, exactly as built) over a fresh
 * session: recipients refused with "452 too many recipients" go in further transactions on
 * the same connection; a non-ASCII address goes only to a server that offers SMTPUTF8; the
 * size is declared (SIZE) so an oversize message is refused before upload. Never throws for
 * what the server did: the report says it.
 *
 * `beforeFirstByte` runs once a session is in hand, right before the first byte of the
 * message (the outbox commits its in-flight mark there, so no row is marked while it waits for
 * a session); false, or a failure, sends nothing and throws {@linkcode NotStarted}.
 */
export async function deliver(
  server: SmtpServer,
  target: ResolvedTarget,
  message: Pick<BuiltMessage, "raw" | "envelope" | "messageId">,
  smtp: SmtpSettings,
  pooled?: { pool: SessionPool; key: PoolKey },
  beforeFirstByte?: () => Promise<boolean>,
): Promise<DeliveryReport> {
  const { envelope } = message;
  const outcomes = new Map<string, RecipientOutcome>();
  const secret = server.password;
  const report = (failure?: SmtpFailure): DeliveryReport => {
    const recipients = envelope.to.map((address) =>
      outcomes.get(address) ?? unattempted(address, failure ?? OUTCOME_MISSING)
    );
    const status = messageStatus(recipients);
    return {
      messageId: message.messageId,
      status,
      recipients,
      response: lastResponse,
      ...(status === "sent" ? {} : { failure: failure ?? summarise(recipients) }),
    };
  };
  let lastResponse: string | null = null;

  let session: SmtpSession;
  let reused = false;
  try {
    if (pooled) ({ session, reused } = await pooled.pool.take(pooled.key, () => openSession(server, target, smtp)));
    else session = await openSession(server, target, smtp);
  } catch (error) {
    return report(classifySmtpError(error, server));
  }
  let healthy = true;
  try {
    const international = [envelope.from, ...envelope.to].some(needsSmtpUtf8);
    if (international && !session.supports("SMTPUTF8")) {
      // RFC 6531: a non-ASCII mailbox may only go to a server that offers SMTPUTF8.
      return report(classifySmtpError(
        new SessionFailure(smtpError("ESMTPUTF8", "no SMTPUTF8"), "session", session.banner),
        server,
      ));
    }
    if (beforeFirstByte) {
      let go: boolean;
      try {
        go = await beforeFirstByte();
      } catch (error) {
        throw new NotStarted(error);
      }
      if (!go) throw new NotStarted();
    }
    let pending = [...envelope.to];
    while (pending.length > 0) {
      const again: RcptReply[] = [];
      let accepted = 0;
      try {
        const reply = await session.send({ from: envelope.from, to: pending }, message.raw);
        lastResponse = cleanResponse(reply.response, secret);
        const { code, enhanced } = parseReply(reply.response);
        for (const address of reply.accepted) {
          outcomes.set(address, outcome(address, "accepted", code, enhanced, lastResponse));
          accepted++;
        }
        for (const refusal of reply.rejected) {
          const parsed = parseReply(refusal.response);
          if (isTooManyRecipients(parsed.code ?? replyCode(refusal.responseCode), parsed.enhanced)) {
            again.push(refusal);
          } else {
            outcomes.set(refusal.recipient, refusalOutcome(refusal, secret));
          }
        }
      } catch (error) {
        const state = session.envelopeState();
        if (
          reused && error instanceof SessionFailure && error.stage !== "data" && !timedOut(error) &&
          state.accepted.length === 0 && state.rejected.length === 0
        ) {
          // A pooled connection that died (or was closed by the server) between messages, with
          // nothing of this one sent: once more, on a fresh connection. Not when the server
          // stopped answering: that one already took its timeout, and a retry would double it.
          session.quit();
          reused = false;
          try {
            session = await openSession(server, target, smtp);
          } catch (openError) {
            healthy = false;
            return report(classifySmtpError(openError, server));
          }
          continue;
        }
        let failure = classifySmtpError(error, server);
        const everyoneRefused = state.accepted.length === 0 &&
          pending.every((address) => state.rejected.some((r) => r.recipient === address));
        if (everyoneRefused && failure.scope !== "sender") {
          // Whatever ended the session afterwards, nothing could be delivered: the recipients'
          // own refusals say what happened (scope "recipients"), never "unknown".
          failure = { ...failure, outcome: failure.retryable ? "deferred" : "failed", scope: "recipients" };
        }
        settleFailedTransaction(session, pending, failure, outcomes, secret);
        healthy = failure.scope !== "session";
        // All recipients refused: the report sums them up; anything else is its own reason.
        if (failure.scope === "recipients") break;
        return report(failure);
      }
      // Another transaction only while the last one made progress (RFC 5321 4.5.3.1.10).
      // Without progress the 452s stand as what they are: temporary refusals.
      if (accepted === 0) {
        for (const refusal of again) outcomes.set(refusal.recipient, refusalOutcome(refusal, secret));
        break;
      }
      pending = again.map((refusal) => refusal.recipient);
    }
    return report();
  } finally {
    if (pooled) pooled.pool.give(pooled.key, session, healthy);
    else session.quit();
  }
}

/** The session ended because the server (or the whole session) took too long, not because it closed. */
function timedOut(failure: SessionFailure): boolean {
  return (failure.cause as { code?: string } | undefined)?.code === "ETIMEDOUT";
}

/**
 * Open a session; when the certificate was not trusted, look at it once more (verification
 * off, nothing sent) so the failure can say whether it expired, is self-signed or unknown.
 */
async function openSession(server: SmtpServer, target: ResolvedTarget, smtp: SmtpSettings): Promise<SmtpSession> {
  try {
    return await SmtpSession.open(server, target, smtp);
  } catch (error) {
    if (error instanceof SessionFailure && classifySmtpError(error).code === "smtp_tls_untrusted") {
      error.certificate = await probeCertificate(server, target, smtp).catch(() => null);
    }
    throw error;
  }
}

/** Record the recipients of a transaction that did not complete, from what the server had said. */
function settleFailedTransaction(
  session: SmtpSession,
  pending: string[],
  failure: SmtpFailure,
  outcomes: Map<string, RecipientOutcome>,
  secret: string | null | undefined,
): void {
  const refused = new Map(session.envelopeState().rejected.map((r) => [r.recipient, r]));
  for (const address of pending) {
    const refusal = failure.scope === "sender" ? undefined : refused.get(address);
    const outcome = refusal ? refusalOutcome(refusal, secret) : unattempted(address, failure);
    // A message refused for good is refused for every recipient: a greylisted or 452-held one
    // would only get the same answer later.
    const refusedForGood = failure.scope === "message" && !failure.retryable && outcome.status === "deferred";
    outcomes.set(address, refusedForGood ? unattempted(address, failure) : outcome);
  }
}

function outcome(
  address: string,
  status: RecipientOutcome["status"],
  code: number | null,
  enhanced: string | null,
  response: string | null,
): RecipientOutcome {
  return { address, status, smtp_code: code, enhanced_code: enhanced, response };
}

function refusalOutcome(refusal: RcptReply, secret: string | null | undefined): RecipientOutcome {
  const parsed = parseReply(refusal.response);
  const code = parsed.code ?? replyCode(refusal.responseCode);
  const status = isTemporary(code) ? "deferred" : "rejected";
  return outcome(refusal.recipient, status, code, parsed.enhanced, cleanResponse(refusal.response, secret));
}

/** A recipient the session never got to (or whose transaction failed): it shares the message's fate. */
function unattempted(address: string, failure: SmtpFailure): RecipientOutcome {
  const status = failure.outcome === "unknown" ? "unknown" : failure.retryable ? "deferred" : "rejected";
  return outcome(address, status, failure.responseCode ?? null, failure.enhancedCode ?? null, failure.response ?? null);
}

const OUTCOME_MISSING: SmtpFailure = {
  code: "smtp_error",
  outcome: "failed",
  scope: "session",
  retryable: false,
  message: "The SMTP exchange ended without an answer for this recipient",
};

/** The failure of a message whose every recipient was refused at RCPT. */
function summarise(recipients: RecipientOutcome[]): SmtpFailure {
  const deferred = recipients.find((r) => r.status === "deferred");
  const first = deferred ?? recipients[0];
  return {
    code: deferred ? "smtp_recipients_deferred" : "smtp_recipients_rejected",
    outcome: deferred ? "deferred" : "failed",
    scope: "recipients",
    retryable: Boolean(deferred),
    message: deferred
      ? "The SMTP server temporarily refused the recipients; a later retry can succeed"
      : "The SMTP server refused every recipient",
    responseCode: first?.smtp_code ?? undefined,
    enhancedCode: first?.enhanced_code ?? undefined,
    response: first?.response ?? undefined,
    retryAfterSeconds: retryHintSeconds(first?.response) ?? undefined,
  };
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
  const session = await openSession(server, target, smtp);
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
  /** The message's status when this is why nothing was accepted. */
  outcome: "deferred" | "failed" | "unknown";
  /** What failed: the whole session, the sender (MAIL FROM), every recipient, or the message (DATA). */
  scope: "session" | "sender" | "recipients" | "message";
  /** Whether sending the same message again can succeed. Never for `unknown`. */
  retryable: boolean;
  message: string;
  responseCode?: number;
  enhancedCode?: string;
  /** The server's reply, bounded and with the password removed. */
  response?: string;
  /** What to change, when the config looks wrong (e.g. port and security swapped). */
  hint?: string;
  /** The server's "try again in N seconds" hint. */
  retryAfterSeconds?: number;
  /** For certificate failures: what the certificate says (subject, issuer, validity). */
  certificate?: CertificateFacts;
}

interface NodemailerError {
  code?: string;
  responseCode?: number;
  response?: string;
  command?: string;
  timeoutType?: string;
  message?: string;
  reason?: string;
}

const CERT_UNTRUSTED =
  /self[- ]signed|unable to (?:verify|get local issuer)|UnknownIssuer|untrusted|CERT_UNTRUSTED|SELF_SIGNED|UNABLE_TO_VERIFY/i;
const CERT_NAME = /altname|hostname|NotValidForName|ERR_TLS_CERT_ALTNAME|does not match/i;
const CERT_EXPIRED = /expired|CERT_HAS_EXPIRED|not yet valid/i;
const TLS_HANDSHAKE =
  /\bssl|\btls|handshake|wrong version number|protocol ?version|InvalidContentType|CorruptMessage|peer is incompatible|\bEPROTO\b/i;

function swappedPortHint(server?: Pick<SmtpServer, "port" | "security">): string | undefined {
  if (!server) return undefined;
  if (server.security === "tls" && [587, 25, 2587, 2525].includes(server.port)) {
    return `port ${server.port} usually expects STARTTLS: try security "starttls" (or port 465 with "tls")`;
  }
  if (server.security === "starttls" && [465, 2465].includes(server.port)) {
    return `port ${server.port} usually expects implicit TLS: try security "tls"`;
  }
  return undefined;
}

/**
 * Map a session failure to a stable code, its scope and whether a retry can succeed. The
 * password is never part of it (`server.password` is removed from the server's reply).
 */
export function classifySmtpError(error: unknown, server?: SmtpServer): SmtpFailure {
  // An XOAUTH2 login whose refused token could not be replaced: the grant's failure, not the server's.
  const oauth = error instanceof SessionFailure ? error.cause : error;
  if (oauth instanceof OAuthError) return oauthFailure(oauth);
  const stage = error instanceof SessionFailure ? error.stage : "connecting";
  const e = ((error instanceof SessionFailure ? error.cause : error) ?? {}) as NodemailerError;
  const parsed = parseReply(e.response);
  const responseCode = parsed.code ?? replyCode(e.responseCode) ?? undefined;
  const base = {
    responseCode,
    enhancedCode: parsed.enhanced ?? undefined,
    response: cleanResponse(e.response, server?.password) ?? undefined,
    retryAfterSeconds: retryHintSeconds(e.response) ?? undefined,
  };
  const temporary = isTemporary(responseCode);
  const make = (
    code: string,
    scope: SmtpFailure["scope"],
    retryable: boolean,
    message: string,
    hint?: string,
  ): SmtpFailure => ({
    ...base,
    code,
    scope,
    retryable,
    outcome: retryable ? "deferred" : "failed",
    message,
    ...(hint ? { hint } : {}),
  });
  const text = `${e.message ?? ""} ${e.reason ?? ""}`;
  // TLS and certificate errors come from the socket, never with a server reply: a reply's text
  // (which the server chooses) must not turn into a TLS verdict.
  const fromTls = responseCode === undefined && e.response === undefined;

  switch (e.code) {
    case "EAUTH":
    case "ENOAUTH": {
      // The reply to our AUTH line is the one place a server has our credentials in hand: keep
      // its code, never its text (a server may echo the command, in base64 or in pieces).
      const withheld = { response: base.responseCode ? `${base.responseCode} [reply text withheld]` : undefined };
      if (temporary) {
        return {
          ...make("smtp_auth_deferred", "session", true, "The SMTP server could not authenticate now"),
          ...withheld,
        };
      }
      // Microsoft 365 with password (Basic) authentication off for SMTP, as it is by default for
      // every tenant from the end of December 2026: a password cannot work however correct it is.
      if (
        base.enhancedCode === "5.7.30" || /basic auth(entication)? is (not supported|disabled)/i.test(e.response ?? "")
      ) {
        return {
          ...make(
            "smtp_basic_auth_disabled",
            "session",
            false,
            "The SMTP server no longer accepts passwords (Microsoft 365 turned Basic authentication off for SMTP)",
            "connect the mailbox with OAuth instead: Microsoft 365 sends from hosted Supabase only through Microsoft " +
              "Graph (transport graph), since its SMTP submission port 587 is blocked there",
          ),
          ...withheld,
        };
      }
      return { ...make("smtp_auth_failed", "session", false, "The SMTP server rejected the credentials"), ...withheld };
    }
    case "ENOAUTHOFFERED":
      return make(
        "smtp_auth_unavailable",
        "session",
        false,
        "The config has credentials but the SMTP server offers no AUTH mechanism (on this port, or before TLS)",
        swappedPortHint(server),
      );
    case "ESMTPUTF8":
      return make(
        "smtp_utf8_unsupported",
        "session",
        false,
        "A recipient or the sender has a non-ASCII local part and the SMTP server does not offer SMTPUTF8",
      );
    case "EPROTOCOL":
      // The server's greeting (or another reply) was not what SMTP allows next: 421/554 greetings.
      if (temporary) {
        return make("smtp_service_unavailable", "session", true, "The SMTP server is not taking connections now");
      }
      if (responseCode !== undefined && responseCode >= 500) {
        return make("smtp_service_refused", "session", false, "The SMTP server refused the session");
      }
      return make("smtp_protocol_error", "session", false, "The SMTP server answered outside the protocol");
    case "EDNS":
      return make("smtp_host_not_found", "session", true, "The SMTP host name could not be resolved");
    case "ETLS":
      return make(
        "smtp_tls_failed",
        "session",
        false,
        "TLS could not be negotiated with the SMTP server (for starttls: the server did not offer STARTTLS)",
        swappedPortHint(server),
      );
    case "EENVELOPE":
      return envelopeFailure(e, make, responseCode, temporary);
    case "EMESSAGE":
      if (responseCode === undefined) {
        return make("smtp_message_too_large", "message", false, "The message is larger than the SMTP server accepts");
      }
      if (responseCode === 552 || base.enhancedCode === "5.3.4") {
        return make("smtp_message_too_large", "message", false, "The SMTP server refused the message as too large");
      }
      return temporary
        ? make("smtp_message_deferred", "message", true, "The SMTP server temporarily refused the message")
        : make("smtp_message_rejected", "message", false, "The SMTP server rejected the message");
  }
  // The server took the message data but never confirmed it: it may have delivered it, and
  // SMTP has no idempotency, so this must never be retried automatically.
  if (stage === "data") {
    return {
      ...make(
        "smtp_outcome_unknown",
        "session",
        false,
        "The connection ended after the message was transmitted but before the server confirmed it; " +
          "it may or may not have been delivered",
      ),
      outcome: "unknown",
    };
  }
  const certificate = error instanceof SessionFailure ? error.certificate : null;
  if (certificate && (certificate.expired || certificate.not_yet_valid)) {
    return {
      ...make(
        "smtp_tls_certificate_expired",
        "session",
        false,
        certificate.expired
          ? `The SMTP server's TLS certificate expired on ${certificate.valid_to}`
          : `The SMTP server's TLS certificate is not valid before ${certificate.valid_from}`,
      ),
      certificate,
    };
  }
  if (certificate && CERT_UNTRUSTED.test(text)) {
    return {
      ...make(
        "smtp_tls_untrusted",
        "session",
        false,
        certificate.self_signed
          ? "The SMTP server's TLS certificate is self-signed"
          : `The SMTP server's TLS certificate is issued by ${
            JSON.stringify(certificate.issuer)
          }, not a trusted authority`,
      ),
      certificate,
    };
  }
  if (fromTls && CERT_EXPIRED.test(text)) {
    return make("smtp_tls_certificate_expired", "session", false, "The SMTP server's TLS certificate has expired");
  }
  if (fromTls && CERT_NAME.test(text)) {
    return make(
      "smtp_tls_name_mismatch",
      "session",
      false,
      "The SMTP server's TLS certificate is not valid for the configured host name",
    );
  }
  if (fromTls && CERT_UNTRUSTED.test(text)) {
    return make(
      "smtp_tls_untrusted",
      "session",
      false,
      "The SMTP server's TLS certificate is not issued by a trusted authority (self-signed or unknown issuer)",
    );
  }
  if (e.code === "ETIMEDOUT") {
    if (e.timeoutType !== "SOCKET_TIMEOUT" && stage === "connecting" && swappedPortHint(server)) {
      return make(
        "smtp_tls_failed",
        "session",
        false,
        "The SMTP server never greeted: the port and the security mode look swapped",
        swappedPortHint(server),
      );
    }
    if (e.timeoutType === "SESSION_TIMEOUT") {
      return make(
        "smtp_timeout",
        "session",
        true,
        "The SMTP session took longer than allowed before the message was sent",
      );
    }
    if (e.timeoutType === "SOCKET_TIMEOUT") {
      return make("smtp_timeout", "session", true, "The SMTP server stopped answering before the message was sent");
    }
    // An implicit-TLS port waits for our TLS hello while we wait for its greeting.
    const hint = e.timeoutType === "GREETING_TIMEOUT" && server && server.security !== "tls"
      ? `no greeting arrived: if port ${server.port} expects implicit TLS, use security "tls"`
      : undefined;
    return make("smtp_connect_timeout", "session", true, "Timed out connecting to the SMTP server", hint);
  }
  if (/ECONNREFUSED|EHOSTUNREACH|ENETUNREACH/i.test(text)) {
    return make("smtp_connect_failed", "session", true, "Could not connect to the SMTP server");
  }
  if (fromTls && TLS_HANDSHAKE.test(text)) {
    return make(
      "smtp_tls_failed",
      "session",
      false,
      "TLS could not be negotiated with the SMTP server (protocol version, or not a TLS endpoint)",
      swappedPortHint(server),
    );
  }
  if (stage === "session" && (e.code === "ECONNECTION" || e.code === "ESOCKET")) {
    return make(
      "smtp_connection_lost",
      "session",
      true,
      "The SMTP server closed the connection before the message was sent",
    );
  }
  if (e.code === "ECONNECTION" || e.code === "ESOCKET" || /ECONNRESET/i.test(text)) {
    return make("smtp_connect_failed", "session", true, "Could not connect to the SMTP server");
  }
  return make("smtp_error", "session", false, "The SMTP exchange failed");
}

type Make = (code: string, scope: SmtpFailure["scope"], retryable: boolean, message: string) => SmtpFailure;

/** A refusal of MAIL FROM, of every RCPT TO, or of the DATA command. */
function envelopeFailure(e: NodemailerError, make: Make, code: number | undefined, temporary: boolean): SmtpFailure {
  if (e.command === "MAIL FROM") {
    if (code === 530 || code === 535) {
      return make(
        "smtp_auth_required",
        "sender",
        false,
        "The SMTP server requires authentication; set a username and password on the config",
      );
    }
    return temporary
      ? make("smtp_sender_deferred", "sender", true, "The SMTP server temporarily refused the sender")
      : make("smtp_sender_rejected", "sender", false, "The SMTP server refused the sender address");
  }
  if (e.command === "DATA") {
    return temporary
      ? make("smtp_message_deferred", "message", true, "The SMTP server temporarily refused the message")
      : make("smtp_message_rejected", "message", false, "The SMTP server refused the message");
  }
  return temporary
    ? make("smtp_recipients_deferred", "recipients", true, "The SMTP server temporarily refused the recipients")
    : make("smtp_recipients_rejected", "recipients", false, "The SMTP server refused every recipient");
}

/** An egress refusal (ApiError) or an SMTP failure, as the audit row and the response describe it. */
export function describeFailure(
  error: unknown,
  server?: SmtpServer,
): { httpStatus: number; failure: SmtpFailure; details?: Record<string, unknown> } {
  const oauth = error instanceof SessionFailure ? error.cause : error;
  if (oauth instanceof OAuthError) return { httpStatus: oauth.status, failure: oauthFailure(oauth) };
  if (error instanceof ApiError) {
    return {
      httpStatus: error.status,
      failure: { code: error.code, outcome: "failed", scope: "session", retryable: false, message: error.message },
      details: error.details,
    };
  }
  return { httpStatus: 502, failure: classifySmtpError(error, server) };
}

/**
 * An OAuth mailbox's grant that gave no access token, as the outcome model says it: for good when
 * the user must act (reconnect, fix the client or the token endpoint), for now when the provider
 * is unreachable or throttling. Nothing reached the mail server.
 */
export function oauthFailure(error: OAuthError): SmtpFailure {
  return {
    code: error.code,
    outcome: error.retryable ? "deferred" : "failed",
    scope: "session",
    retryable: error.retryable,
    message: error.message,
    ...(error.retryAfterSeconds !== undefined ? { retryAfterSeconds: error.retryAfterSeconds } : {}),
  };
}

/** The details every 502 carries: whether to retry, and what the server said. */
export function failureDetails(failure: SmtpFailure): Record<string, unknown> {
  return {
    retryable: failure.retryable,
    smtp_response_code: failure.responseCode ?? null,
    smtp_enhanced_code: failure.enhancedCode ?? null,
    smtp_response: failure.response ?? null,
    ...(failure.hint ? { hint: failure.hint } : {}),
    ...(failure.retryAfterSeconds ? { retry_after_seconds: failure.retryAfterSeconds } : {}),
    ...(failure.certificate ? { certificate: failure.certificate } : {}),
  };
}
