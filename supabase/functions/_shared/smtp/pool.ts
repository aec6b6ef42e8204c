// SMTP sessions kept open within one worker run, one per server and credentials, so a
// config's queued messages share a connection (and its TLS handshake and login) instead of
// opening one each. Sessions never cross configs or credentials: the key is the config, the
// checked address and the exact credentials. Everything is closed at the end of the run.
import type { ResolvedTarget } from "./egress.ts";
import type { SmtpServer, SmtpSession, SmtpSettings } from "./session.ts";

/** Where `deliver` takes its session from when given a pool. */
export interface SessionPool {
  /** An open session for this server, reused when one is idle and still alive. */
  take(key: string, open: () => Promise<SmtpSession>): Promise<{ session: SmtpSession; reused: boolean }>;
  /** Give a healthy session back for the next message, or drop a broken one. */
  give(key: string, session: SmtpSession, healthy: boolean): void;
  /** Quit every session. */
  close(): void;
}

/** The pool key of a server as a config reaches it: never shared across credentials. */
export function poolKey(configId: string, server: SmtpServer, target: ResolvedTarget): string {
  return JSON.stringify([configId, target.address, server.port, server.security, server.username, server.password]);
}

/** A pool for one sequential worker run. */
export function createSessionPool(): SessionPool {
  const idle = new Map<string, SmtpSession>();
  return {
    async take(key, open) {
      const session = idle.get(key);
      idle.delete(key);
      if (session && await session.prepareForReuse()) return { session, reused: true };
      session?.quit();
      return { session: await open(), reused: false };
    },
    give(key, session, healthy) {
      if (!healthy || !session.alive) return session.quit();
      idle.get(key)?.quit();
      idle.set(key, session);
    },
    close() {
      for (const session of idle.values()) session.quit();
      idle.clear();
    },
  };
}

export type { SmtpSettings };
