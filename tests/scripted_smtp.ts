// A scripted SMTP peer over a real socket, for the failure modes no well-behaved server
// produces on demand: going silent or hanging up at a chosen point of the session.
import net from "node:net";

/** Where the server stops cooperating. */
export type Misbehaviour = "silent-after-ehlo" | "close-after-dot" | "silent-after-dot";

/** A running scripted server. */
export interface ScriptedSmtp {
  port: number;
  /** Whether a complete message (up to the final dot) arrived. */
  receivedMessage(): boolean;
  close(): Promise<void>;
}

/** Start a plaintext SMTP server on loopback that misbehaves as told. */
export function startScriptedSmtp(misbehaviour: Misbehaviour): Promise<ScriptedSmtp> {
  const sockets = new Set<net.Socket>();
  let gotMessage = false;
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => {});
    let inData = false;
    let buffer = "";
    const reply = (line: string) => socket.write(`${line}\r\n`);
    reply("220 scripted.example ESMTP");
    socket.on("data", (chunk) => {
      buffer += chunk.toString("latin1");
      if (inData) {
        const end = buffer.indexOf("\r\n.\r\n");
        if (end < 0) return;
        gotMessage = true;
        inData = false;
        buffer = buffer.slice(end + 5);
        if (misbehaviour === "close-after-dot") socket.destroy();
        return; // silent-after-dot: never confirm
      }
      let newline: number;
      while ((newline = buffer.indexOf("\r\n")) >= 0) {
        const line = buffer.slice(0, newline);
        buffer = buffer.slice(newline + 2);
        const verb = line.slice(0, 4).toUpperCase();
        if (verb === "EHLO" || verb === "HELO") {
          reply("250 scripted.example");
        } else if (misbehaviour === "silent-after-ehlo") {
          continue;
        } else if (verb === "DATA") {
          inData = true;
          reply("354 go ahead");
          return;
        } else if (verb === "QUIT") {
          reply("221 bye");
          socket.end();
        } else {
          reply("250 OK");
        }
      }
    });
  });
  return new Promise((resolve) => {
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo;
      resolve({
        port,
        receivedMessage: () => gotMessage,
        close: () =>
          new Promise<void>((done) => {
            for (const socket of sockets) socket.destroy();
            server.close(() => done());
          }),
      });
    });
  });
}
