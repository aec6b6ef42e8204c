// Talking to the user's SMTP server with nodemailer: transport options with explicit
// timeouts and verified TLS, and the mapping of nodemailer's error codes to ours.
import nodemailer from "nodemailer";
import type SMTPTransport from "nodemailer/lib/smtp-transport";
import type { Config } from "../config.ts";
import type { BuiltMessage } from "../mail/message.ts";
import type { ResolvedTarget } from "./egress.ts";
import { ApiError } from "../http.ts";

/** How to reach and authenticate to an SMTP server. */
export interface SmtpServer {
  host: string;
  port: number;
  security: "tls" | "starttls" | "none";
  username?: string | null;
  password?: string | null;
}

/** What the server told us about an accepted message. */
export interface SmtpDelivery {
  messageId: string;
  accepted: string[];
  rejected: string[];
  response: string;
}

/**
 * nodemailer transport options for a server reached at a checked address, with our
 * timeouts and TLS policy. TLS is verified against the host name, not the address.
 */
export function transportOptions(
  server: SmtpServer,
  target: ResolvedTarget,
  smtp: Config["smtp"],
): SMTPTransport.Options {
  return {
    host: target.address,
    servername: target.servername,
    port: server.port,
    secure: server.security === "tls",
    requireTLS: server.security === "starttls",
    ignoreTLS: server.security === "none",
    auth: server.username ? { user: server.username, pass: server.password ?? "" } : undefined,
    connectionTimeout: smtp.connectTimeoutMs,
    greetingTimeout: smtp.greetingTimeoutMs,
    socketTimeout: smtp.socketTimeoutMs,
    dnsTimeout: smtp.connectTimeoutMs,
    // Callers never reach the file system or the network through message fields.
    disableFileAccess: true,
    disableUrlAccess: true,
    tls: {
      rejectUnauthorized: true,
      minVersion: "TLSv1.2",
      servername: target.servername,
      ...(smtp.caCerts ? { ca: smtp.caCerts } : {}),
    },
  };
}

/** How far an SMTP session got: until the server accepts DATA (354) nothing can have been delivered. */
export type SessionStage = "connecting" | "session" | "data";

/** A delivery failure with the stage the session had reached. */
export class DeliveryFailure extends Error {
  override name = "DeliveryFailure";
  constructor(override readonly cause: unknown, readonly stage: SessionStage) {
    super("SMTP delivery failed");
  }
}

type ServerLineListener = (line: string) => void;

/**
 * A nodemailer logger that only hands the server's own lines to `onServerLine` (never the
 * client's, which carry credentials, nor message content) and prints nothing.
 */
function serverLineLogger(onServerLine: ServerLineListener) {
  const noop = () => {};
  const debug = (entry: { tnx?: string }, ...args: unknown[]) => {
    if (entry?.tnx === "server" && typeof args[0] === "string") onServerLine(args[0]);
  };
  return { level: noop, trace: noop, debug, info: noop, warn: noop, error: noop, fatal: noop };
}

/**
 * Send one built message (its raw bytes and envelope) over a fresh connection and close it.
 *
 * @throws DeliveryFailure wrapping nodemailer's error, with the stage the session reached.
 */
export async function deliver(
  server: SmtpServer,
  target: ResolvedTarget,
  message: Pick<BuiltMessage, "raw" | "envelope" | "messageId">,
  smtp: Config["smtp"],
): Promise<SmtpDelivery> {
  let stage: SessionStage = "connecting";
  const logger = serverLineLogger((line) => {
    if (stage === "connecting" && line.startsWith("220")) stage = "session";
    if (line.startsWith("354")) stage = "data";
  });
  const transport = nodemailer.createTransport({ ...transportOptions(server, target, smtp), logger, debug: true });
  try {
    const info = await transport.sendMail({ envelope: message.envelope, raw: message.raw });
    const addr = (x: string | { address: string }) => (typeof x === "string" ? x : x.address);
    return {
      messageId: message.messageId,
      accepted: info.accepted.map(addr),
      rejected: info.rejected.map(addr),
      response: info.response,
    };
  } catch (error) {
    throw new DeliveryFailure(error, stage);
  } finally {
    transport.close();
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
 * @throws the nodemailer error; classify it with `classifySmtpError`.
 */
export async function verifyServer(
  server: SmtpServer,
  target: ResolvedTarget,
  smtp: Config["smtp"],
): Promise<SmtpVerification> {
  let banner: string | null = null;
  // The first line the server sends is its greeting.
  const logger = serverLineLogger((line) => {
    if (banner === null) banner = line.slice(0, 200);
  });
  const transport = nodemailer.createTransport({ ...transportOptions(server, target, smtp), logger, debug: true });
  const started = performance.now();
  try {
    await transport.verify();
  } finally {
    transport.close();
  }
  return {
    ok: true,
    tls: server.security !== "none",
    auth: Boolean(server.username),
    latency_ms: Math.round(performance.now() - started),
    server_banner: banner,
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
  const stage = error instanceof DeliveryFailure ? error.stage : "connecting";
  const e = ((error instanceof DeliveryFailure ? error.cause : error) ?? {}) as NodemailerError;
  const base = { responseCode: e.responseCode, response: e.response?.slice(0, 500) };
  const failed = (code: string, message: string): SmtpFailure => ({ ...base, code, outcome: "failed", message });

  // An explicit reply from the server is a definite answer, whatever the stage.
  switch (e.code) {
    case "EAUTH":
    case "ENOAUTH":
      return failed("smtp_auth_failed", "The SMTP server rejected the credentials");
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
