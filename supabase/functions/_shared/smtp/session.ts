// One SMTP session with the user's server, on nodemailer's SMTPConnection directly: we
// hand it the envelope we built (no mail-level layer re-parses addresses), see which
// extensions the server offers, authenticate only when it offers AUTH, and keep the
// server's own lines to tell how far a transaction got.
import { rootCertificates } from "node:tls";
import SMTPConnection from "nodemailer/lib/smtp-connection";
import { Buffer } from "node:buffer";
import { Readable } from "node:stream";
import { setImmediate } from "node:timers";
import type { ResolvedTarget } from "./egress.ts";
import type { CertificateFacts } from "./certificate.ts";

/** A message up to this size goes to the socket in one write with its final dot. */
const WHOLE_WRITE_BYTES = 256 * 1024;
/** Larger messages go in slices of this size. */
const SLICE_BYTES = 64 * 1024;

/** How to reach and authenticate to an SMTP server. */
export interface SmtpServer {
  host: string;
  port: number;
  security: "tls" | "starttls" | "none";
  username?: string | null;
  password?: string | null;
  /**
   * An OAuth mailbox: log in with SASL XOAUTH2 as `username` with an access token from here
   * (`current` first; after the server refuses it, `fresh()` once) instead of a password.
   */
  xoauth2?: { current: string; fresh: () => Promise<string> };
}

/** Timeouts, trust and identity of our side of every session. */
export interface SmtpSettings {
  connectTimeoutMs: number;
  greetingTimeoutMs: number;
  socketTimeoutMs: number;
  /** The name we announce in EHLO: ours, never the function's internal host name. */
  ehloName: string;
  /**
   * The whole session (connect, every transaction, QUIT) ends by then, however slowly a server
   * drips its replies; it stays well inside the platform's wall-clock limit.
   */
  sessionTimeoutMs?: number;
  /** Extra trusted CA certificates (PEM), e.g. the local catcher's. Never disables verification. */
  caCerts?: string;
}

/** How far a transaction got: until the body starts to flow (after 354) nothing can have been delivered. */
export type SessionStage = "connecting" | "session" | "data";

/** A failure with the stage the session had reached when it happened. */
export class SessionFailure extends Error {
  override name = "SessionFailure";
  constructor(
    override readonly cause: unknown,
    readonly stage: SessionStage,
    /** The server's greeting, when one arrived before the failure. */
    readonly banner: string | null = null,
    /** For an untrusted certificate: what it says about itself (see ./certificate.ts). */
    public certificate: CertificateFacts | null = null,
  ) {
    super("SMTP session failed");
  }
}

/**
 * Whether opening a session failed because the server is at its limit for us now: a 421 at the
 * greeting or any command before a transaction ("too many connections", "service not available").
 */
export function refusedForLoad(error: unknown): boolean {
  const cause = error instanceof SessionFailure ? error.cause : error;
  return (cause as { responseCode?: unknown } | null)?.responseCode === 421;
}

/** One recipient's reply as nodemailer reports it. */
export interface RcptReply {
  recipient: string;
  responseCode?: number;
  response?: string;
}

/** What the server answered to one transaction that reached the end of DATA. */
export interface TransactionReply {
  accepted: string[];
  rejected: RcptReply[];
  response: string;
}

type Callback<T> = (error: Error | null, value?: T) => void;

/** nodemailer connection options for a server reached at a checked address. */
export function connectionOptions(
  server: SmtpServer,
  target: ResolvedTarget,
  smtp: SmtpSettings,
): SMTPConnection.Options {
  return {
    host: target.address,
    servername: target.servername,
    port: server.port,
    secure: server.security === "tls",
    requireTLS: server.security === "starttls",
    ignoreTLS: server.security === "none",
    name: smtp.ehloName,
    connectionTimeout: smtp.connectTimeoutMs,
    greetingTimeout: smtp.greetingTimeoutMs,
    socketTimeout: smtp.socketTimeoutMs,
    dnsTimeout: smtp.connectTimeoutMs,
    tls: {
      rejectUnauthorized: true,
      minVersion: "TLSv1.2",
      servername: target.servername,
      // Extra CAs add to the system's: `ca` alone would replace them.
      ...(smtp.caCerts ? { ca: [...rootCertificates, smtp.caCerts] } : {}),
    },
  };
}

/** An error with nodemailer's `code`, for conditions we detect ourselves. */
export function smtpError(code: string, message: string): Error & { code: string } {
  return Object.assign(new Error(message), { code });
}

/**
 * An open, greeted and (when the config has credentials) authenticated session.
 *
 * @example
 * ```ts
 * const session = await SmtpSession.open(server, target, settings);
 * try {
 *   const reply = await session.send({ from, to }, raw);
 * } finally {
 *   session.quit();
 * }
 * ```
 */
export class SmtpSession {
  /** The server's greeting line, when one arrived. */
  banner: string | null = null;
  #stage: SessionStage = "connecting";
  #failure: Error | null = null;
  /** A transaction was begun and did not end with the server's final reply: RSET before the next. */
  #unfinished = false;
  #waiters = new Set<(error: Error) => void>();

  private constructor(readonly connection: SMTPConnection) {}

  /** Connect, negotiate TLS as the config says and authenticate; nothing is sent. */
  static async open(server: SmtpServer, target: ResolvedTarget, smtp: SmtpSettings): Promise<SmtpSession> {
    let session: SmtpSession | undefined = undefined;
    const banner: { line: string | null } = { line: null };
    const connection = new SMTPConnection({
      ...connectionOptions(server, target, smtp),
      logger: serverLineLogger((line) => {
        if (banner.line === null) banner.line = line.slice(0, 200);
        session?.onServerLine(line);
      }),
      debug: true,
    });
    session = new SmtpSession(connection);
    const opened = session;
    if (smtp.sessionTimeoutMs) opened.startDeadline(smtp.sessionTimeoutMs);
    connection.on("error", (error: Error) => opened.fail(error));
    /** Why a refused token could not be replaced, when that is why the login failed. */
    let renewal: unknown;
    connection.on("end", () => opened.fail(smtpError("ECONNECTION", "Connection closed by the server")));
    try {
      // nodemailer hands a close before the greeting to this callback only.
      await opened.call<void>((done) => connection.connect((error?: Error) => done(error ?? null)));
      opened.banner = banner.line;
      if (server.username) {
        if (!connection.allowsAuth) {
          throw smtpError("ENOAUTHOFFERED", "The server offers no AUTH mechanism, but the config has credentials");
        }
        const user = server.username;
        const oauth = server.xoauth2;
        await opened.call<void>((done) =>
          connection.login(
            oauth
              ? {
                user,
                method: "XOAUTH2",
                // nodemailer asks again with isRetry after the server refused the first token.
                oauth2: {
                  getToken: (isRetry: boolean, callback: (error: Error | null, token?: string) => void) => {
                    if (!isRetry) return callback(null, oauth.current);
                    oauth.fresh().then((token) => callback(null, token), (error) => {
                      // nodemailer re-codes what it is given as EAUTH (a failed login): it gets a
                      // stand-in, and the session fails with the refresh's own error (a revoked
                      // grant is oauth_reauth_required, not a refused password).
                      renewal = error;
                      callback(new Error("The access token could not be renewed"));
                    });
                  },
                  buildXOAuth2Token: (token: string) =>
                    Buffer.from(`user=${user}\x01auth=Bearer ${token}\x01\x01`, "utf8").toString("base64"),
                },
              } as never
              : { user, pass: server.password ?? "" },
            (e) => done(e ?? null),
          )
        );
      }
      // The server's lines were needed for the greeting only. From here nodemailer's debug mode
      // would copy every message through a logging stream and format every reply for nothing.
      (connection as unknown as { options: { debug?: boolean } }).options.debug = false;
      return opened;
    } catch (error) {
      connection.close();
      throw new SessionFailure(renewal ?? error, opened.#stage, banner.line);
    }
  }

  /** Whether the server announced an ESMTP extension (e.g. "SMTPUTF8", "SIZE", "PIPELINING"). */
  supports(extension: string): boolean {
    const offered = (this.connection as unknown as { _supportedExtensions?: string[] })._supportedExtensions ?? [];
    return offered.includes(extension.toUpperCase());
  }

  /** What the server said to the last transaction's RCPT commands, also when it failed later. */
  envelopeState(): { accepted: string[]; rejected: RcptReply[] } {
    const envelope = (this.connection as unknown as {
      _envelope?: { accepted?: string[]; rejectedErrors?: unknown[] };
    })._envelope;
    return {
      accepted: (envelope?.accepted ?? []).map(String),
      rejected: (envelope?.rejectedErrors ?? []).map(rcptReply),
    };
  }

  /** The server's SIZE limit in bytes, when it announced one. */
  get maxMessageSize(): number | undefined {
    const size = (this.connection as unknown as { _maxAllowedSize?: number })._maxAllowedSize;
    return size && size > 0 ? size : undefined;
  }

  /**
   * One mail transaction: MAIL FROM, RCPT TO for each address exactly as given, DATA.
   *
   * @throws SessionFailure with the stage reached (`data` once the server said 354).
   */
  async send(envelope: { from: string; to: string[] }, raw: Buffer): Promise<TransactionReply> {
    this.#stage = "session";
    // The body is handed over as a stream that nodemailer reads only once the server has
    // accepted DATA: the first read is the moment the message can have been delivered.
    // A large message goes in slices, so dot-stuffing and the socket hold a slice at a time
    // rather than another copy of the whole message.
    let offset = 0;
    const body = new Readable({
      read: () => {
        this.#stage = "data";
        if (raw.length - offset > WHOLE_WRITE_BYTES) {
          const end = Math.min(offset + SLICE_BYTES, raw.length);
          body.push(raw.subarray(offset, end));
          offset = end;
          return;
        }
        // The body (or its last slice) and the final dot leave in one write, not two: the
        // socket buffers both and sends them once this turn of the event loop is done.
        const socket = (this.connection as unknown as { _socket?: { cork?(): void; uncork?(): void } })._socket;
        if (socket?.cork && socket.uncork) {
          socket.cork();
          setImmediate(() => socket.uncork!());
        }
        body.push(offset === 0 ? raw : raw.subarray(offset));
        body.push(null);
      },
    });
    this.#unfinished = true;
    // nodemailer refuses a send on a connection the server closed before it resets the envelope:
    // clear the last transaction's, so envelopeState() never reports its recipients as this one's.
    (this.connection as unknown as { _envelope?: unknown })._envelope = undefined;
    try {
      const info = await this.call<SMTPConnection.SentMessageInfo>((done) =>
        this.connection.send({ from: envelope.from, to: envelope.to, size: raw.length }, body, done)
      );
      // The final reply ended the transaction (RFC 5321 4.1.1.4): the next one needs no RSET.
      this.#unfinished = false;
      const rejected = (info.rejectedErrors ?? []).map(rcptReply);
      return { accepted: info.accepted.map(String), rejected, response: info.response ?? "" };
    } catch (error) {
      throw new SessionFailure(error, this.#stage);
    } finally {
      this.#stage = "session";
    }
  }

  /** Stop the session's deadline while it waits unused in a pool; `prepareForReuse` restarts it. */
  rest(): void {
    clearTimeout(this.#deadline);
  }

  /** Say QUIT and close; never throws. */
  quit(): void {
    clearTimeout(this.#deadline);
    try {
      this.connection.quit();
    } catch {
      this.connection.close();
    }
  }

  #deadline: ReturnType<typeof setTimeout> | undefined;
  #deadlineMs = 0;

  /** Whether the connection is still usable (no error, not closed). */
  get alive(): boolean {
    return this.#failure === null;
  }

  /**
   * Make the session ready for another message (a pooled connection): RSET when the last
   * transaction did not end cleanly, and a fresh deadline for the new use. False when the
   * connection did not survive.
   */
  async prepareForReuse(): Promise<boolean> {
    if (!this.alive) return false;
    if (this.#unfinished) {
      try {
        await this.call<void>((done) => this.connection.reset((error) => done(error ?? null)));
      } catch {
        return false;
      }
      this.#unfinished = false;
    }
    clearTimeout(this.#deadline);
    if (this.#deadlineMs) this.startDeadline(this.#deadlineMs);
    return this.alive;
  }

  private startDeadline(ms: number): void {
    this.#deadlineMs = ms;
    this.#deadline = setTimeout(() => {
      const error = Object.assign(smtpError("ETIMEDOUT", `The SMTP session took longer than ${ms} ms`), {
        timeoutType: "SESSION_TIMEOUT",
      });
      this.fail(error);
      this.connection.close();
    }, ms);
  }

  private onServerLine(line: string): void {
    if (this.#stage === "connecting" && line.startsWith("220")) this.#stage = "session";
  }

  private fail(error: Error): void {
    this.#failure ??= error;
    for (const reject of this.#waiters) reject(error);
    this.#waiters.clear();
  }

  /** Run one callback-style operation, failing early when the connection errors or ends. */
  private call<T>(start: (done: Callback<T>) => void): Promise<T> {
    if (this.#failure) return Promise.reject(this.#failure);
    return new Promise<T>((resolve, reject) => {
      const onFailure = (error: Error) => reject(error);
      this.#waiters.add(onFailure);
      start((error, value) => {
        this.#waiters.delete(onFailure);
        if (error) reject(error);
        else resolve(value as T);
      });
    });
  }
}

function rcptReply(error: unknown): RcptReply {
  const e = error as { recipient?: string; responseCode?: number; response?: string };
  return { recipient: String(e.recipient ?? ""), responseCode: e.responseCode, response: e.response };
}

/**
 * A nodemailer logger that only hands the server's own lines to `onServerLine` (never the
 * client's, which carry credentials, nor message content) and prints nothing.
 */
function serverLineLogger(onServerLine: (line: string) => void) {
  const noop = () => {};
  const debug = (entry: { tnx?: string }, ...args: unknown[]) => {
    if (entry?.tnx === "server" && typeof args[0] === "string") onServerLine(args[0]);
  };
  return { level: noop, trace: noop, debug, info: noop, warn: noop, error: noop, fatal: noop };
}
