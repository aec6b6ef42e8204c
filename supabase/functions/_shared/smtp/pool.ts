// SMTP sessions kept open and reused, so a config's messages share a connection (and its TLS
// handshake and login) instead of opening one each: within one outbox worker run, and across
// send-email requests within one function instance.
//
// Sessions never cross configs or credentials: the key is the config, the host name, the checked
// address and the exact credentials (held in this process's memory only, as the open session itself is).
// A config's changed password or destination makes a new key, and the config's sessions under
// any other key are closed at once; a deactivated or deleted config sends nothing more, and
// its idle sessions close after `idleMs`. At most `maxPerKey` connections per key are open at
// once, fewer when the config says so (providers limit concurrent connections: Gmail about 15,
// Microsoft 365 about 3 per mailbox); more senders wait for one to come back. A server that
// answers a new connection with 421 while we hold others ("too many connections") has told us
// its limit: that key opens no more than it holds, and the sender waits for one of them instead
// of failing. A session is retired after `maxMessages`.
import type { ResolvedTarget } from "./egress.ts";
import { refusedForLoad, type SmtpServer, type SmtpSession, type SmtpSettings } from "./session.ts";

/** A session's pool identity: its config (what stale sessions are closed by) and the full key. */
export interface PoolKey {
  config: string;
  id: string;
  /** The config's own limit on connections at once (below the pool's `maxPerKey`). */
  maxConnections?: number;
}

/** Where `deliver` takes its session from when given a pool. */
export interface SessionPool {
  /** An open session for this key, reused when one is idle and still alive. */
  take(key: PoolKey, open: () => Promise<SmtpSession>): Promise<{ session: SmtpSession; reused: boolean }>;
  /** Give a session back for the next message (`healthy`), or drop a broken one. */
  give(key: PoolKey, session: SmtpSession, healthy: boolean): void;
  /** Quit every idle session; sessions in use are quit when given back. */
  close(): void;
}

/** How a pool treats its sessions. */
export interface PoolOptions {
  /** Most connections open at once per key; more takers wait. */
  maxPerKey: number;
  /** An idle session is closed after this long unused. */
  idleMs: number;
  /** A session is closed after this many messages (nodemailer's pool default: 100). */
  maxMessages: number;
  /** How long a sender waits for a session after the server refused another connection (421). */
  busyWaitMs: number;
}

/**
 * The defaults: 10 connections per key (the most a config's max_connections may ask for; each
 * config's own setting, default 3, is what binds), 30 s idle, 100 messages, 30 s wait.
 */
export const DEFAULT_POOL_OPTIONS: PoolOptions = {
  maxPerKey: 10,
  idleMs: 30_000,
  maxMessages: 100,
  busyWaitMs: 30_000,
};

/** The pool key of a server as a config reaches it: never shared across configs, names, addresses or credentials. */
export function poolKey(
  configId: string,
  server: SmtpServer,
  target: ResolvedTarget,
  maxConnections?: number,
): PoolKey {
  return {
    config: configId,
    maxConnections,
    id: JSON.stringify([
      configId,
      // The name too: a session's TLS was verified for it, and one address can serve several names.
      target.servername ?? server.host,
      target.address,
      server.port,
      server.security,
      server.username,
      server.password,
      // An OAuth login: sessions of one grant (its access token may change; the session stays valid).
      server.xoauth2 ? "xoauth2" : null,
    ]),
  };
}

interface Entry {
  config: string;
  idle: { session: SmtpSession; timer: ReturnType<typeof setTimeout> }[];
  /** Sessions of this key that exist: idle, in use, or being opened. */
  open: number;
  /** What the server showed its limit to be (it refused one more with 421), while this entry lives. */
  learnedLimit?: number;
  /**
   * Takers waiting, first come first served: a session given back goes straight to the first
   * (so a taker arriving meanwhile cannot take it first); `null` says a slot freed up instead.
   */
  waiters: ((handed: SmtpSession | null) => void)[];
}

/** A pool of SMTP sessions (see the module comment). */
export function createSessionPool(options: Partial<PoolOptions> = {}): SessionPool {
  const { maxPerKey, idleMs, maxMessages, busyWaitMs } = { ...DEFAULT_POOL_OPTIONS, ...options };
  const entries = new Map<string, Entry>();
  const uses = new WeakMap<SmtpSession, number>();
  let closed = false;

  const entryOf = (key: PoolKey): Entry => {
    let entry = entries.get(key.id);
    if (!entry) {
      entry = { config: key.config, idle: [], open: 0, waiters: [] };
      entries.set(key.id, entry);
    }
    return entry;
  };
  const forget = (id: string, entry: Entry) => {
    if (entry.open === 0 && entry.waiters.length === 0 && entries.get(id) === entry) entries.delete(id);
  };
  const retire = (id: string, entry: Entry, session: SmtpSession) => {
    session.quit();
    entry.open--;
    entry.waiters.shift()?.(null);
    forget(id, entry);
  };
  // The config's sessions under another key (an old password, an old address) are never used again.
  const closeStale = (key: PoolKey) => {
    for (const [id, entry] of entries) {
      if (entry.config !== key.config || id === key.id) continue;
      for (const { session, timer } of entry.idle.splice(0)) {
        clearTimeout(timer);
        retire(id, entry, session);
      }
    }
  };

  return {
    async take(key, open) {
      closeStale(key);
      while (true) {
        // Looked up again after each wait: the entry may have been dropped and made anew meanwhile.
        const entry = entryOf(key);
        const idle = entry.idle.pop();
        if (idle) {
          clearTimeout(idle.timer);
          if (await idle.session.prepareForReuse()) return { session: idle.session, reused: true };
          retire(key.id, entry, idle.session);
          continue;
        }
        const limit = Math.min(maxPerKey, key.maxConnections ?? maxPerKey, entry.learnedLimit ?? maxPerKey);
        if (entry.open < Math.max(1, limit)) {
          entry.open++;
          try {
            return { session: await open(), reused: false };
          } catch (error) {
            entry.open--;
            if (refusedForLoad(error) && entry.open > 0) {
              // The server takes no more connections from us than we hold: wait for one of ours.
              entry.learnedLimit = entry.open;
              const handed = await waitForSession(entry, busyWaitMs);
              if (handed === "timeout") throw error;
              if (handed && !(await handed.prepareForReuse())) retire(key.id, entry, handed);
              else if (handed) return { session: handed, reused: true };
              continue;
            }
            entry.waiters.shift()?.(null);
            forget(key.id, entry);
            throw error;
          }
        }
        const handed = await new Promise<SmtpSession | null>((resolve) => entry.waiters.push(resolve));
        if (handed) {
          if (await handed.prepareForReuse()) return { session: handed, reused: true };
          retire(key.id, entry, handed);
        }
      }
    },
    give(key, session, healthy) {
      const entry = entryOf(key);
      const used = (uses.get(session) ?? 0) + 1;
      uses.set(session, used);
      if (closed || !healthy || !session.alive || used >= maxMessages) return retire(key.id, entry, session);
      session.rest();
      const waiter = entry.waiters.shift();
      if (waiter) return waiter(session);
      const timer = setTimeout(() => {
        const at = entry.idle.findIndex((i) => i.session === session);
        if (at >= 0) {
          entry.idle.splice(at, 1);
          retire(key.id, entry, session);
        }
      }, idleMs);
      unref(timer);
      entry.idle.push({ session, timer });
    },
    close() {
      closed = true;
      for (const [id, entry] of entries) {
        for (const { session, timer } of entry.idle.splice(0)) {
          clearTimeout(timer);
          retire(id, entry, session);
        }
        for (const wake of entry.waiters.splice(0)) wake(null);
      }
    },
  };
}

/** Wait in line for a session given back (or a freed slot: null), at most `ms`. */
function waitForSession(entry: Entry, ms: number): Promise<SmtpSession | null | "timeout"> {
  return new Promise((resolve) => {
    const waiter = (handed: SmtpSession | null) => {
      clearTimeout(timer);
      resolve(handed);
    };
    const timer = setTimeout(() => {
      const at = entry.waiters.indexOf(waiter);
      if (at >= 0) entry.waiters.splice(at, 1);
      resolve("timeout");
    }, ms);
    entry.waiters.push(waiter);
  });
}

/** An idle session does not keep the process alive (where the runtime can say so). */
function unref(timer: unknown): void {
  if (typeof timer === "number" && typeof Deno.unrefTimer === "function") Deno.unrefTimer(timer);
  else (timer as { unref?: () => void }).unref?.();
}

export type { SmtpSettings };
