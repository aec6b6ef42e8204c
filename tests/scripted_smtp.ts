// A scripted SMTP peer over a real socket (plaintext, or implicit TLS when given a key), for what no well-behaved server
// produces on demand: replies chosen per recipient, extensions offered or withheld, going
// silent or hanging up at a chosen point. It records every line the client sent, exactly as
// the bytes arrived, so tests can assert on the real envelope and AUTH exchange.
import net from "node:net";
import tls from "node:tls";
import { Buffer } from "node:buffer";

/** Where the server stops cooperating. */
export type Misbehaviour =
  | "close-before-greeting"
  | "drip-after-ehlo"
  | "silent-after-ehlo"
  | "close-after-dot"
  | "silent-after-dot";

/** How the scripted server answers. */
export interface ScriptOptions {
  misbehaviour?: Misbehaviour;
  /** ESMTP keywords after the EHLO greeting line, e.g. `["PIPELINING", "SIZE 1000", "SMTPUTF8", "AUTH PLAIN"]`. */
  extensions?: string[];
  /** The reply to `RCPT TO` for an address (as sent, between the brackets) and its index; `null` hangs up. */
  rcpt?: (address: string, index: number) => string | null;
  /** The reply to `MAIL FROM`; `null` sends none (a server that stopped answering). */
  mail?: (line: string) => string | null;
  /** The greeting (default `220 scripted.example ESMTP`). */
  greeting?: string;
  /** Connections served at once; one more is greeted with 421 and closed (as Postfix's connection limit does). */
  maxConnections?: number;
  /** The reply to an AUTH command, instead of checking `users` (e.g. one that echoes the command). */
  authReply?: (line: string) => string;
  /** The reply to the DATA command itself (default 354, or 554 without accepted recipients). */
  dataCommandReply?: string;
  /** The reply after the final dot; a function gets the message's index, and `null` hangs up instead. */
  dataReply?: string | ((index: number) => string | null);
  /** Wait this long before that reply (a slow server). */
  dataReplyDelayMs?: number;
  /** Hang up right after confirming this many messages on one connection (idle connections closed). */
  closeAfterMessages?: number;
  /** Accepted AUTH PLAIN credentials; any other pair gets 535. */
  users?: Record<string, string>;
  /** Speak implicit TLS (as on port 465) with this key and certificate, PEM. */
  tls?: { key: string; cert: string };
}

/** A message that reached the final dot. */
export interface ScriptedMessage {
  mailFrom: string;
  /** Recipients the server accepted (250), as sent between the brackets, decoded as UTF-8. */
  rcptTo: string[];
  data: string;
}

/** A running scripted server. */
export interface ScriptedSmtp {
  port: number;
  /** Whether a complete message (up to the final dot) arrived. */
  receivedMessage(): boolean;
  /** Every message that reached the final dot, in order. */
  messages(): ScriptedMessage[];
  /** Every command line the client sent (outside DATA), decoded as UTF-8, in order. */
  transcript(): string[];
  /** How many connections were opened. */
  connections(): number;
  /** How many connections were refused with 421 for the connection limit. */
  refusedConnections(): number;
  /** How many connections are open now. */
  openConnections(): number;
  /** The most connections that were open at the same time. */
  peakConnections(): number;
  /** Hang up every open connection now (as a server that drops idle clients does). */
  dropConnections(): void;
  close(): Promise<void>;
}

/** Start an SMTP server on loopback (plaintext, or implicit TLS with `tls`) that answers as scripted. */
export function startScriptedSmtp(script: Misbehaviour | ScriptOptions = {}): Promise<ScriptedSmtp> {
  const options: ScriptOptions = typeof script === "string" ? { misbehaviour: script } : script;
  const sockets = new Set<net.Socket>();
  const transcript: string[] = [];
  const messages: ScriptedMessage[] = [];
  let connections = 0;
  let peak = 0;
  let refused = 0;
  const serve = (socket: net.Socket) => {
    connections++;
    if (options.maxConnections !== undefined && sockets.size >= options.maxConnections) {
      refused++;
      socket.on("error", () => {});
      return void socket.end("421 4.7.0 scripted.example Error: too many connections from your host\r\n");
    }
    peak = Math.max(peak, sockets.size + 1);
    let confirmed = 0;
    // Replies go out at once (no Nagle delay), as a real MTA's do: the peer is never the bottleneck.
    socket.setNoDelay(true);
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => {});
    let inData = false;
    let buffer = Buffer.alloc(0);
    let scanned = 0;
    let current: ScriptedMessage | null = null;
    let rcptIndex = 0;
    let upgrading = false;
    const reply = (line: string) => socket.write(`${line}\r\n`);
    if (options.misbehaviour === "close-before-greeting") return void socket.destroy();
    reply(options.greeting ?? "220 scripted.example ESMTP");

    const command = (line: string) => {
      transcript.push(line);
      const verb = line.split(" ", 1)[0].toUpperCase();
      if ((verb === "EHLO" || verb === "HELO") && options.misbehaviour === "drip-after-ehlo") {
        // A continuation line now and then, never the last one: each read resets the client's idle timer.
        const drip = setInterval(() => socket.writable ? reply("250-still thinking") : clearInterval(drip), 300);
        socket.on("close", () => clearInterval(drip));
        return;
      }
      if (verb === "EHLO" || verb === "HELO") {
        const extensions = options.extensions ?? [];
        if (extensions.length === 0) return reply("250 scripted.example");
        reply("250-scripted.example");
        extensions.forEach((ext, i) => reply(`250${i === extensions.length - 1 ? " " : "-"}${ext}`));
        return;
      }
      if (options.misbehaviour === "silent-after-ehlo") return;
      if (verb === "STARTTLS") {
        // Agrees to TLS, then speaks anything but (a broken middlebox, a misconfigured server).
        reply("220 2.0.0 Ready to start TLS");
        // The client's TLS hello is answered with plain text.
        upgrading = true;
        return;
      }
      if (verb === "AUTH" && options.authReply) return reply(options.authReply(line));
      if (verb === "AUTH") {
        const [, mechanism, initial] = line.split(" ");
        if (mechanism?.toUpperCase() !== "PLAIN" || !initial) return reply("504 5.5.4 Only AUTH PLAIN with a response");
        const [, user, pass] = Buffer.from(initial, "base64").toString("utf8").split("\0");
        const ok = options.users !== undefined && options.users[user] === pass;
        return reply(ok ? "235 2.7.0 Authentication successful" : "535 5.7.8 Authentication credentials invalid");
      }
      if (verb === "MAIL") {
        const scripted = options.mail ? options.mail(line) : "250 2.1.0 OK";
        if (scripted === null) return;
        const answer = scripted;
        if (answer.startsWith("250")) {
          current = { mailFrom: between(line), rcptTo: [], data: "" };
          rcptIndex = 0;
        }
        return reply(answer);
      }
      if (verb === "RCPT") {
        const address = between(line);
        const scripted = options.rcpt ? options.rcpt(address, rcptIndex++) : "250 2.1.5 OK";
        if (scripted === null) return void socket.destroy();
        const answer = scripted;
        if (answer.startsWith("250")) current?.rcptTo.push(address);
        return reply(answer);
      }
      if (verb === "DATA") {
        if (options.dataCommandReply) {
          inData = options.dataCommandReply.startsWith("354");
          return reply(options.dataCommandReply);
        }
        if (!current || current.rcptTo.length === 0) return reply("554 5.5.1 No valid recipients");
        inData = true;
        return reply("354 go ahead");
      }
      if (verb === "RSET") {
        current = null;
        return reply("250 2.0.0 OK");
      }
      if (verb === "QUIT") {
        reply("221 2.0.0 bye");
        socket.end();
        return;
      }
      reply("250 OK");
    };

    socket.on("data", (chunk: Buffer) => {
      if (upgrading) return void socket.write("this is not a TLS handshake\r\n");
      buffer = Buffer.concat([buffer, chunk]);
      while (buffer.length > 0) {
        if (inData) {
          // Only the new bytes (and the four before them) can complete the terminator: a large
          // message is searched once, not again at every chunk.
          const end = buffer.indexOf("\r\n.\r\n", scanned);
          if (end < 0) {
            scanned = Math.max(0, buffer.length - 4);
            return;
          }
          scanned = 0;
          const message = current ?? { mailFrom: "", rcptTo: [], data: "" };
          message.data = buffer.subarray(0, end).toString("utf8");
          messages.push(message);
          current = null;
          inData = false;
          buffer = buffer.subarray(end + 5);
          if (options.misbehaviour === "close-after-dot") return void socket.destroy();
          if (options.misbehaviour === "silent-after-dot") return;
          const answer = typeof options.dataReply === "function"
            ? options.dataReply(messages.length - 1)
            : options.dataReply ?? "250 2.0.0 Ok: queued as SCRIPTED";
          if (answer === null) return void socket.destroy();
          // Hang up right after the confirmation (once it is written, however late it comes).
          const last = options.closeAfterMessages !== undefined && ++confirmed >= options.closeAfterMessages;
          const confirm = () => {
            if (!socket.writable) return;
            reply(answer);
            if (last) socket.end();
          };
          if (options.dataReplyDelayMs) setTimeout(confirm, options.dataReplyDelayMs);
          else confirm();
          if (last) return;
          continue;
        }
        const newline = buffer.indexOf("\r\n");
        if (newline < 0) return;
        const line = buffer.subarray(0, newline).toString("utf8");
        buffer = buffer.subarray(newline + 2);
        command(line);
      }
    });
  };
  const server = options.tls ? tls.createServer(options.tls, serve) : net.createServer(serve);
  return new Promise((resolve) => {
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo;
      resolve({
        port,
        receivedMessage: () => messages.length > 0,
        messages: () => [...messages],
        transcript: () => [...transcript],
        connections: () => connections,
        refusedConnections: () => refused,
        openConnections: () => sockets.size,
        peakConnections: () => peak,
        dropConnections: () => {
          for (const socket of sockets) socket.destroy();
        },
        close: () =>
          new Promise<void>((done) => {
            for (const socket of sockets) socket.destroy();
            server.close(() => done());
          }),
      });
    });
  });
}

/** What stands between the first `<` and the last `>` of a MAIL/RCPT line. */
function between(line: string): string {
  const open = line.indexOf("<");
  const close = line.lastIndexOf(">");
  return open >= 0 && close > open ? line.slice(open + 1, close) : "";
}
