/**
 * A real SMTP server that keeps every message it accepts instead of delivering
 * it: the mail sink of the local dev stack and the server integration tests
 * send to. Also a server that never greets, for timeout tests.
 *
 * @module
 */

import { bounceReport, BOUNCING } from "./bounce_report.ts";
import { Buffer } from "node:buffer";
import net from "node:net";
import { join } from "node:path";
import {
  SMTPServer,
  type SMTPServerAuthentication,
  type SMTPServerAuthenticationResponse,
  type SMTPServerDataStream,
  type SMTPServerError,
  type SMTPServerOptions,
  type SMTPServerSession,
} from "smtp-server";

/** A message as the catcher received it. */
export interface CaughtMessage {
  /** Unique id, also the file name stem when the store persists. */
  id: string;
  /** When the message was accepted, ISO 8601. */
  receivedAt: string;
  /** The SMTP envelope; `mailFrom` is `""` for the null sender. */
  envelope: { mailFrom: string; rcptTo: string[] };
  /** The authenticated user name, when the client logged in. Never the password. */
  authUser?: string;
  /** Whether the session ran over TLS (implicit or after STARTTLS). */
  secure: boolean;
  /** The message exactly as received after DATA; see `rawEncoding`. */
  raw: string;
  /**
   * How `raw` maps back to bytes: `"utf8"` when the bytes were valid UTF-8
   * (readable in assertions), otherwise `"latin1"` (one char per byte). Either
   * way {@linkcode rawBytes} returns the exact bytes.
   */
  rawEncoding: "utf8" | "latin1";
  /** Size of the message in bytes. */
  size: number;
}

/** Options for {@linkcode MessageStore}. */
export interface MessageStoreOptions {
  /** Directory to persist messages to (`<id>.eml` and `<id>.json`) and load them from. */
  dir?: string;
}

/** Called with each message as it is added to a store. */
export type MessageListener = (message: CaughtMessage) => void;

const ID_PATTERN = /^[A-Za-z0-9-]+$/;

/**
 * Messages caught so far, in arrival order, optionally persisted to a directory
 * so a restarted dev stack still shows old mail.
 *
 * @example
 * ```ts
 * const store = new MessageStore({ dir: ".local/mail" });
 * const stop = store.onAdd((message) => console.log("caught", message.id));
 * ```
 */
export class MessageStore {
  readonly #dir?: string;
  readonly #messages = new Map<string, CaughtMessage>();
  readonly #listeners = new Set<MessageListener>();
  #version = 0;

  /** Creates a store; with `dir`, creates the directory and loads what it holds. */
  constructor(options: MessageStoreOptions = {}) {
    this.#dir = options.dir;
    if (this.#dir) {
      Deno.mkdirSync(this.#dir, { recursive: true });
      for (const message of loadMessages(this.#dir)) {
        this.#messages.set(message.id, message);
      }
    }
  }

  /** Number of messages held. */
  get size(): number {
    return this.#messages.size;
  }

  /** Goes up with every add, removal and clear: a cheap way for a page to see that anything changed. */
  get version(): number {
    return this.#version;
  }

  /** Adds a message, persists it when the store has a directory, then notifies listeners. */
  add(message: CaughtMessage): void {
    if (!ID_PATTERN.test(message.id)) {
      throw new TypeError(`Invalid message id: ${message.id}`);
    }
    if (this.#dir) persistMessage(this.#dir, message);
    this.#messages.set(message.id, message);
    this.#version++;
    for (const listener of this.#listeners) listener(message);
  }

  /** All messages, oldest first. */
  list(): CaughtMessage[] {
    return [...this.#messages.values()];
  }

  /** The message with this id, if any. */
  get(id: string): CaughtMessage | undefined {
    return this.#messages.get(id);
  }

  /** Forgets one message, deleting its persisted files too; false when there was no such message. */
  remove(id: string): boolean {
    if (!this.#messages.has(id)) return false;
    if (this.#dir) removeFiles(this.#dir, id);
    this.#messages.delete(id);
    this.#version++;
    return true;
  }

  /** Forgets every message, deleting persisted files too. */
  clear(): void {
    if (this.#dir) {
      for (const id of this.#messages.keys()) removeFiles(this.#dir, id);
    }
    this.#messages.clear();
    this.#version++;
  }

  /** Calls `listener` for each message added from now on; returns a function that stops it. */
  onAdd(listener: MessageListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
}

/**
 * The exact bytes of a caught message, e.g. to parse it or serve it as `.eml`.
 *
 * @example
 * ```ts
 * const parsed = await simpleParser(Buffer.from(rawBytes(message)));
 * ```
 */
export function rawBytes(message: CaughtMessage): Uint8Array<ArrayBuffer> {
  if (message.rawEncoding === "utf8") {
    return new TextEncoder().encode(message.raw);
  }
  return Uint8Array.from(message.raw, (char) => char.charCodeAt(0));
}

/** How the catcher speaks TLS. */
export type SmtpCatcherMode = "tls" | "starttls" | "plain";

/** Options for {@linkcode startSmtpCatcher}. */
export interface SmtpCatcherOptions {
  /** Interface to bind; loopback by default so nothing outside the machine can send. */
  host?: string;
  /** Port to listen on; 0 (the default) picks a free one. */
  port?: number;
  /** `tls`: implicit TLS (port 465 style); `starttls`: cleartext upgraded by STARTTLS; `plain`: no TLS at all. */
  mode: SmtpCatcherMode;
  /** Key and certificate (PEM); required for `tls` and `starttls`. */
  tls?: { key: string; cert: string };
  /** When given, AUTH PLAIN/LOGIN is required and checked against these user/password pairs; otherwise any login is accepted and none is required. */
  users?: Record<string, string>;
  /**
   * Neither advertise nor accept STARTTLS, as a middlebox stripping it would,
   * to test that clients requiring TLS refuse to downgrade. (smtp-server's own
   * `hideSTARTTLS` still accepts the command, and nodemailer with `requireTLS`
   * sends it unadvertised, so that alone would not test anything.)
   */
  hideStartTls?: boolean;
  /** Recipients to refuse: RCPT TO is answered 550 for addresses this returns true for. */
  rejectRecipients?: (address: string) => boolean;
  /**
   * Answer like a real server's refusals when the recipient's local part asks for it (see
   * {@linkcode scriptedReply}): `temp-451@…`, `perm-550@…`, `full-452@…`, `data-554@…`, `slow-20@…`.
   */
  replyByAddress?: boolean;
  /** Where caught messages go; a fresh in-memory store by default. */
  store?: MessageStore;
  /** Largest accepted message in bytes; larger ones are answered 552. */
  maxSize?: number;
  /** Told about connection-level failures (e.g. a client aborting the TLS handshake), which are otherwise ignored. */
  onError?: (error: Error) => void;
  /**
   * Accept AUTH XOAUTH2 too, with access tokens this approves (the local OAuth stand-in's, as
   * Gmail's and Microsoft 365's SMTP servers check theirs).
   */
  acceptAccessToken?: (user: string, token: string) => boolean;
  /**
   * Accept `bounce-511@…` recipients (as a submission server accepts any outside address), then
   * hand a Postfix-style bounce for each to this, addressed to the envelope sender: the local
   * stack delivers it into the sender's IMAP mailbox (local/bounce_report.ts).
   */
  onBounce?: (bounce: { sender: string; recipient: string; report: string }) => void | Promise<void>;
}

/** A running catcher. */
export interface SmtpCatcher {
  /** The port it listens on. */
  port: number;
  /** The interface it listens on. */
  host: string;
  /** The store it writes to. */
  store: MessageStore;
  /** Messages caught so far, oldest first. */
  messages(): CaughtMessage[];
  /** Resolves once the store holds `count` messages; rejects after `timeoutMs` (default 5000). */
  waitForMessages(count: number, timeoutMs?: number): Promise<CaughtMessage[]>;
  /** Forgets all messages. */
  clear(): void;
  /** End every open session with 421 (as a provider does when a mailbox's grant is revoked, or idle clients are dropped). */
  dropConnections(): void;
  /** Stops listening and ends open sessions. */
  close(): Promise<void>;
}

/**
 * Starts an SMTP server on loopback that accepts mail into a {@linkcode MessageStore}.
 *
 * @example
 * ```ts
 * const { caCert, cert, key } = await generateCertificates();
 * const catcher = await startSmtpCatcher({
 *   mode: "tls",
 *   tls: { key, cert },
 *   users: { alice: "secret" },
 * });
 * // send with nodemailer to catcher.port, trusting caCert, then:
 * const [message] = await catcher.waitForMessages(1);
 * await catcher.close();
 * ```
 */
export async function startSmtpCatcher(
  options: SmtpCatcherOptions,
): Promise<SmtpCatcher> {
  if (options.mode !== "plain" && !options.tls) {
    throw new TypeError(`SMTP catcher mode "${options.mode}" needs tls.key and tls.cert`);
  }
  const host = options.host ?? "127.0.0.1";
  const store = options.store ?? new MessageStore();
  const server = new SMTPServer(serverOptions(options, store));
  // smtp-server emits connection failures (a client rejecting our certificate,
  // a dropped socket) as server errors; unhandled they would crash the process.
  server.on("error", (error) => options.onError?.(error));

  const port = await listen(server, options.port ?? 0, host);
  let closing: Promise<void> | undefined;

  return {
    port,
    host,
    store,
    messages: () => store.list(),
    waitForMessages: (count, timeoutMs = 5000) => waitForMessages(store, count, timeoutMs),
    clear: () => store.clear(),
    dropConnections: () => {
      for (const connection of server.connections) {
        connection.send(421, "4.7.0 Session ended");
        connection.close();
      }
    },
    close: () => closing ??= closeServer(server),
  };
}

function serverOptions(
  options: SmtpCatcherOptions,
  store: MessageStore,
): SMTPServerOptions {
  const { mode, users } = options;
  return {
    secure: mode === "tls",
    key: options.tls?.key,
    cert: options.tls?.cert,
    name: "localhost",
    banner: "mailroom SMTP catcher",
    logger: false,
    disableReverseLookup: true,
    disabledCommands: mode === "plain" || options.hideStartTls ? ["STARTTLS"] : [],
    authMethods: options.acceptAccessToken ? ["PLAIN", "LOGIN", "XOAUTH2"] : ["PLAIN", "LOGIN"],
    authOptional: !users,
    // Without TLS there is nothing to protect credentials with; a plain catcher
    // is loopback-only and exists to test exactly that kind of server.
    allowInsecureAuth: mode === "plain",
    size: options.maxSize,
    onAuth: (auth, _session, callback) => {
      if (auth.method === "XOAUTH2") {
        const ok = options.acceptAccessToken?.(auth.username ?? "", auth.accessToken ?? "") ?? false;
        // The server's SASL failure for XOAUTH2 (the client then sends an empty line, as Gmail's does).
        return ok
          ? callback(null, { user: auth.username })
          : callback(null, { data: { status: "401", schemes: "bearer" } });
      }
      callback(...authenticate(auth, users));
    },
    onRcptTo: (address, _session, callback) => {
      if (options.rejectRecipients?.(address.address)) {
        return callback(smtpError(550, `Recipient rejected: ${address.address}`));
      }
      const scripted = options.replyByAddress ? scriptedReply(address.address) : undefined;
      if (scripted?.at === "rcpt") return callback(smtpError(scripted.code, scripted.text));
      if (scripted?.at === "delay") return void setTimeout(() => callback(), scripted.seconds * 1000);
      callback();
    },
    onData: (stream, session, callback) => {
      const atData = options.replyByAddress
        ? session.envelope.rcptTo.map((r) => scriptedReply(r.address)).find((r) => r?.at === "data")
        : undefined;
      if (atData?.at === "data") {
        // Read the message, then refuse it at the final dot as the recipient asked.
        return void (async () => {
          for await (const _ of stream) { /* drain */ }
          callback(smtpError(atData.code, atData.text));
        })();
      }
      receive(stream, session)
        .then(async (message) => {
          store.add(message);
          if (options.onBounce) {
            for (const recipient of message.envelope.rcptTo.filter((r) => BOUNCING.test(r))) {
              const report = bounceReport({ sender: message.envelope.mailFrom, recipient, original: message.raw });
              await Promise.resolve(options.onBounce({ sender: message.envelope.mailFrom, recipient, report }))
                .catch((error) => options.onError?.(error as Error));
            }
          }
          return message.id;
        })
        .then(
          (id) => callback(null, `OK: queued as ${id}`),
          (error: Error) => callback(error),
        );
    },
  };
}

/** A refusal (or delay) a recipient address asks the catcher for. */
export type ScriptedReply =
  | { at: "rcpt" | "data"; code: number; text: string }
  | { at: "delay"; seconds: number };

const SCRIPTED = /^(temp|perm|full|data|slow)-(\d{1,3})(?:[.+_-][^@]*)?@/i;

/**
 * What a recipient address asks the catcher to answer, so agent developers can see their
 * handling of real servers' refusals locally:
 *
 * | local part | reply |
 * | --- | --- |
 * | `temp-4NN` (e.g. `temp-451`, `temp-450`) | `4NN` at RCPT TO (temporary: greylisting, rate limits) |
 * | `perm-5NN` (e.g. `perm-550`, `perm-553`) | `5NN` at RCPT TO (permanent: no such user) |
 * | `full-452` (or `full-552`) | mailbox full at RCPT TO |
 * | `data-NNN` (e.g. `data-451`, `data-554`) | `NNN` after the final dot, for the whole message |
 * | `slow-S` | RCPT TO answered after S seconds (at most 120): client timeouts |
 *
 * A suffix after `.`, `+`, `_` or `-` is allowed (`temp-451+jane@example.com`). Anything
 * else, or a code outside 400-599, is delivered normally.
 *
 * @example
 * ```ts
 * scriptedReply("temp-451@example.com"); // { at: "rcpt", code: 451, text: "..." }
 * ```
 */
export function scriptedReply(address: string): ScriptedReply | undefined {
  const match = SCRIPTED.exec(address);
  if (!match) return undefined;
  const kind = match[1].toLowerCase();
  const value = Number(match[2]);
  if (kind === "slow") return { at: "delay", seconds: Math.min(value, 120) };
  if (value < 400 || value > 599) return undefined;
  if (kind === "temp" && value >= 500 || kind === "perm" && value < 500) return undefined;
  const temporary = value < 500;
  const texts: Record<string, string> = {
    temp: "4.2.0 Recipient temporarily unavailable, try again in 60 seconds (catcher: temp-)",
    perm: "5.1.1 Recipient address rejected: User unknown (catcher: perm-)",
    full: `${temporary ? "4.2.2" : "5.2.2"} Mailbox full (catcher: full-)`,
    data: `${temporary ? "4.3.0" : "5.7.1"} Message refused at end of data (catcher: data-)`,
  };
  return { at: kind === "data" ? "data" : "rcpt", code: value, text: texts[kind] };
}

/** Checks a login; the password is compared and dropped, never kept or logged. */
function authenticate(
  auth: SMTPServerAuthentication,
  users: Record<string, string> | undefined,
): [Error | null, SMTPServerAuthenticationResponse?] {
  const username = auth.username ?? "";
  if (!users) return [null, { user: username }];
  const known = Object.hasOwn(users, username) &&
    users[username] === auth.password;
  if (!known) return [smtpError(535, "Authentication credentials invalid")];
  return [null, { user: username }];
}

async function receive(
  stream: SMTPServerDataStream,
  session: SMTPServerSession,
): Promise<CaughtMessage> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  if (stream.sizeExceeded) {
    throw smtpError(552, "Message exceeds fixed maximum message size");
  }
  const bytes = Buffer.concat(chunks);
  const { raw, rawEncoding } = decodeRaw(bytes);
  const mailFrom = session.envelope.mailFrom;
  const message: CaughtMessage = {
    id: crypto.randomUUID(),
    receivedAt: new Date().toISOString(),
    envelope: {
      mailFrom: mailFrom ? mailFrom.address : "",
      rcptTo: session.envelope.rcptTo.map((rcpt) => rcpt.address),
    },
    secure: session.secure,
    raw,
    rawEncoding,
    size: bytes.length,
  };
  // Left out rather than undefined, so a message survives a JSON round trip unchanged.
  if (typeof session.user === "string") message.authUser = session.user;
  return message;
}

/**
 * A message that arrived some other way than SMTP (the local stand-ins of Microsoft Graph and
 * the Gmail API), as the inbox shows it.
 */
export function caughtMessage(bytes: Uint8Array, envelope: CaughtMessage["envelope"]): CaughtMessage {
  const { raw, rawEncoding } = decodeRaw(Buffer.from(bytes));
  return {
    id: crypto.randomUUID(),
    receivedAt: new Date().toISOString(),
    envelope,
    secure: true,
    raw,
    rawEncoding,
    size: bytes.byteLength,
  };
}

const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** UTF-8 when that round-trips exactly, else latin1, which always does. */
function decodeRaw(
  bytes: Uint8Array,
): Pick<CaughtMessage, "raw" | "rawEncoding"> {
  try {
    return { raw: strictUtf8.decode(bytes), rawEncoding: "utf8" };
  } catch {
    return { raw: Buffer.from(bytes).toString("latin1"), rawEncoding: "latin1" };
  }
}

function smtpError(responseCode: number, message: string): SMTPServerError {
  return Object.assign(new Error(message), { responseCode });
}

function listen(server: SMTPServer, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.server.once("error", reject);
    server.listen(port, host, () => {
      server.server.off("error", reject);
      resolve((server.server.address() as net.AddressInfo).port);
    });
  });
}

function closeServer(server: SMTPServer): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    // smtp-server would otherwise give open sessions 30 s to finish on their own.
    for (const connection of server.connections) {
      connection.send(421, "Server shutting down");
      connection.close();
    }
  });
}

function waitForMessages(
  store: MessageStore,
  count: number,
  timeoutMs: number,
): Promise<CaughtMessage[]> {
  if (store.size >= count) return Promise.resolve(store.list());
  return new Promise((resolve, reject) => {
    const stop = store.onAdd(() => {
      if (store.size < count) return;
      finish();
      resolve(store.list());
    });
    const timer = setTimeout(() => {
      finish();
      reject(
        new Error(
          `Timed out after ${timeoutMs} ms waiting for ${count} message(s); ${store.size} received`,
        ),
      );
    }, timeoutMs);
    function finish() {
      clearTimeout(timer);
      stop();
    }
  });
}

function persistMessage(dir: string, message: CaughtMessage): void {
  const { raw: _raw, ...metadata } = message;
  Deno.writeFileSync(join(dir, `${message.id}.eml`), rawBytes(message));
  // The metadata file is written last: its presence marks a complete pair.
  Deno.writeTextFileSync(
    join(dir, `${message.id}.json`),
    JSON.stringify(metadata, null, 2),
  );
}

function loadMessages(dir: string): CaughtMessage[] {
  const messages: CaughtMessage[] = [];
  for (const entry of Deno.readDirSync(dir)) {
    const id = entry.name.endsWith(".json") ? entry.name.slice(0, -5) : "";
    if (!entry.isFile || !ID_PATTERN.test(id)) continue;
    const message = loadMessage(dir, id);
    if (message) messages.push(message);
  }
  return messages.sort((a, b) => a.receivedAt.localeCompare(b.receivedAt));
}

function loadMessage(dir: string, id: string): CaughtMessage | undefined {
  try {
    const metadata = JSON.parse(
      Deno.readTextFileSync(join(dir, `${id}.json`)),
    ) as Omit<CaughtMessage, "raw">;
    const bytes = Deno.readFileSync(join(dir, `${id}.eml`));
    return { ...metadata, id, ...decodeRaw(bytes), size: bytes.length };
  } catch (error) {
    // A half-written or hand-edited pair should not stop the dev stack from starting.
    console.warn(`Skipping stored message ${id}: ${String(error)}`);
    return undefined;
  }
}

function removeFiles(dir: string, id: string): void {
  // The metadata file goes first: without it the pair is not loaded, even if the .eml stays.
  removeIfPresent(join(dir, `${id}.json`));
  removeIfPresent(join(dir, `${id}.eml`));
}

function removeIfPresent(path: string): void {
  try {
    Deno.removeSync(path);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
}

/** A TCP server that accepts connections and never says anything. */
export interface StallingServer {
  /** The loopback port it listens on. */
  port: number;
  /** Stops listening and destroys every open connection. */
  close(): Promise<void>;
}

/**
 * Starts a TCP server on 127.0.0.1 that accepts connections but never sends an
 * SMTP greeting, to exercise clients' connection and greeting timeouts.
 *
 * @example
 * ```ts
 * const stalling = await startStallingServer();
 * // connect with greetingTimeout: 500 and expect ETIMEDOUT
 * await stalling.close();
 * ```
 */
export async function startStallingServer(): Promise<StallingServer> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    // A client that gives up resets the connection; that is expected here.
    socket.on("error", () => {});
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  });
  const port = (server.address() as net.AddressInfo).port;
  let closing: Promise<void> | undefined;
  return {
    port,
    close: () =>
      closing ??= new Promise((resolve) => {
        server.close(() => resolve());
        for (const socket of sockets) socket.destroy();
      }),
  };
}
