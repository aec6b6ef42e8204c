// Why a server's certificate was not trusted. Deno's TLS stack reports an expired, a
// self-signed and an unknown-issuer certificate alike ("unable to verify the first
// certificate"), so after such a failure one more handshake, with verification off and
// nothing sent (no AUTH, no mail), fetches the certificate to tell the user which it is.
import SMTPConnection from "nodemailer/lib/smtp-connection";
import type { ResolvedTarget } from "./egress.ts";
import { connectionOptions, type SmtpServer, type SmtpSettings } from "./session.ts";

/** What the certificate says about itself. */
export interface CertificateFacts {
  subject: string | null;
  issuer: string | null;
  valid_from: string | null;
  valid_to: string | null;
  /** Issued by itself (subject = issuer). */
  self_signed: boolean;
  /** Outside its validity window now. */
  expired: boolean;
  not_yet_valid: boolean;
}

interface PeerCertificate {
  subject?: { CN?: string };
  issuer?: { CN?: string };
  valid_from?: string;
  valid_to?: string;
}

/** Fetch the server's certificate without trusting or sending anything; null when that fails too. */
export async function probeCertificate(
  server: SmtpServer,
  target: ResolvedTarget,
  smtp: SmtpSettings,
): Promise<CertificateFacts | null> {
  const options = connectionOptions({ ...server, username: null, password: null }, target, {
    ...smtp,
    // A diagnosis, not a session: it gets a short budget of its own.
    connectTimeoutMs: Math.min(smtp.connectTimeoutMs, PROBE_TIMEOUT_MS),
    greetingTimeoutMs: Math.min(smtp.greetingTimeoutMs, PROBE_TIMEOUT_MS),
    socketTimeoutMs: Math.min(smtp.socketTimeoutMs, PROBE_TIMEOUT_MS),
  });
  const connection = new SMTPConnection({ ...options, tls: { ...options.tls, rejectUnauthorized: false } });
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const peer = await new Promise<PeerCertificate | null>((resolve) => {
      timer = setTimeout(() => resolve(null), PROBE_TIMEOUT_MS);
      connection.once("error", () => resolve(null));
      connection.connect((error?: Error) => {
        if (error) return resolve(null);
        const socket = (connection as unknown as { _socket?: { getPeerCertificate?: () => PeerCertificate } })._socket;
        resolve(socket?.getPeerCertificate?.() ?? null);
      });
    });
    return peer && peer.valid_to ? facts(peer) : null;
  } finally {
    clearTimeout(timer);
    connection.close();
  }
}

/** The most a probe may take, all in. */
const PROBE_TIMEOUT_MS = 5_000;

function facts(peer: PeerCertificate, now = Date.now()): CertificateFacts {
  const from = peer.valid_from ? Date.parse(peer.valid_from) : NaN;
  const to = peer.valid_to ? Date.parse(peer.valid_to) : NaN;
  // The server chooses these strings: keep them short and single-line.
  const name = (value: unknown) => typeof value === "string" ? value.replace(/[\p{Cc}]/gu, " ").slice(0, 200) : null;
  const subject = name(peer.subject?.CN);
  const issuer = name(peer.issuer?.CN);
  return {
    subject,
    issuer,
    valid_from: Number.isNaN(from) ? null : new Date(from).toISOString(),
    valid_to: Number.isNaN(to) ? null : new Date(to).toISOString(),
    self_signed: subject !== null && subject === issuer,
    expired: to < now,
    not_yet_valid: from > now,
  };
}
