// Talking to the user's SMTP server with nodemailer: transport options with explicit
// timeouts and verified TLS, and the mapping of nodemailer's error codes to ours.
import nodemailer from "nodemailer";
import type SMTPTransport from "nodemailer/lib/smtp-transport";
import type { Config } from "./config.ts";
import type { BuiltMessage } from "./message.ts";
import type { ResolvedTarget } from "./egress.ts";

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

/** Send one built message (its raw bytes and envelope) over a fresh connection and close it. */
export async function deliver(
  server: SmtpServer,
  target: ResolvedTarget,
  message: Pick<BuiltMessage, "raw" | "envelope" | "messageId">,
  smtp: Config["smtp"],
): Promise<SmtpDelivery> {
  const transport = nodemailer.createTransport(transportOptions(server, target, smtp));
  try {
    const info = await transport.sendMail({ envelope: message.envelope, raw: message.raw });
    const addr = (x: string | { address: string }) => (typeof x === "string" ? x : x.address);
    return {
      messageId: message.messageId,
      accepted: info.accepted.map(addr),
      rejected: info.rejected.map(addr),
      response: info.response,
    };
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
  // Only the server's own lines are looked at (the first is its greeting); nothing is logged.
  const capture = (entry: { tnx?: string }, ...args: unknown[]) => {
    if (banner === null && entry?.tnx === "server" && typeof args[0] === "string") banner = args[0].slice(0, 200);
  };
  const noop = () => {};
  const logger = { level: noop, trace: noop, debug: capture, info: noop, warn: noop, error: noop, fatal: noop };
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
  const e = (error ?? {}) as NodemailerError;
  const base = { responseCode: e.responseCode, response: e.response?.slice(0, 500) };
  const text = `${e.message ?? ""}`;
  switch (e.code) {
    case "EAUTH":
    case "ENOAUTH":
      return {
        ...base,
        code: "smtp_auth_failed",
        outcome: "failed",
        message: "The SMTP server rejected the credentials",
      };
    case "EENVELOPE":
      return {
        ...base,
        code: "smtp_recipients_rejected",
        outcome: "failed",
        message: "The SMTP server rejected the sender or all recipients",
      };
    case "EMESSAGE":
      return {
        ...base,
        code: "smtp_message_rejected",
        outcome: "failed",
        message: "The SMTP server rejected the message",
      };
    case "EDNS":
      return {
        ...base,
        code: "smtp_host_not_found",
        outcome: "failed",
        message: "The SMTP host name could not be resolved",
      };
    case "ETLS":
      return {
        ...base,
        code: "smtp_tls_failed",
        outcome: "failed",
        message: "TLS could not be negotiated with the SMTP server",
      };
    case "ETIMEDOUT":
      if (e.timeoutType === "SOCKET_TIMEOUT") {
        return {
          ...base,
          code: "smtp_timeout",
          outcome: "unknown",
          message: "The SMTP server stopped answering mid-session; the message may or may not have been accepted",
        };
      }
      return {
        ...base,
        code: "smtp_connect_timeout",
        outcome: "failed",
        message: "Timed out connecting to the SMTP server",
      };
  }
  if (TLS_VERIFY_PATTERN.test(text)) {
    return {
      ...base,
      code: "smtp_tls_verify_failed",
      outcome: "failed",
      message: "The SMTP server's TLS certificate could not be verified",
    };
  }
  if (
    /ECONNREFUSED|ECONNRESET|EHOSTUNREACH|ENETUNREACH/i.test(text) || e.code === "ECONNECTION" || e.code === "ESOCKET"
  ) {
    return { ...base, code: "smtp_connect_failed", outcome: "failed", message: "Could not connect to the SMTP server" };
  }
  return { ...base, code: "smtp_error", outcome: "failed", message: "The SMTP exchange failed" };
}
