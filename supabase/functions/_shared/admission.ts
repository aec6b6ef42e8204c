// Admission by bytes: how much request body one function instance holds at once. A hosted
// function has 256 MB for everything, and a large body costs several times its size while it
// is parsed, validated and turned into a message; twelve concurrent 13 MB sends took 476 MB.
// A request whose body would pass the budget waits briefly for others to finish, then is
// turned away (503 `server_busy` with Retry-After) before its body is read: it stays in the
// socket, not in memory. One request is always admitted when nothing else is held, so the
// largest body the API accepts still goes through, alone.

/** Request bodies one instance holds at once, by default (`MAILROOM_BODY_BUDGET_BYTES`). */
export const DEFAULT_BODY_BUDGET_BYTES = 24 * 1024 * 1024;

/** A body's share of the budget; give it back when the request is done. */
export type Release = () => void;

/** The budget could not take the body within the wait. */
export class AdmissionRefused extends Error {
  constructor(readonly retryAfterSeconds: number) {
    super("request bodies in this instance are at their budget");
  }
}

/** The instance's budget: `limitBytes` of bodies at once, waiting at most `waitMs` for room. */
export class ByteBudget {
  #held = 0;
  #waiters: { bytes: number; own: number; admit: (release: Release) => void }[] = [];

  constructor(readonly limitBytes: number, readonly waitMs: number) {}

  /** Bytes held now. */
  get held(): number {
    return this.#held;
  }

  /**
   * Hold `bytes` (at once when they fit, or when nothing but the caller's own `own` bytes is
   * held), waiting in line for room.
   *
   * @throws AdmissionRefused when no room came within `waitMs`.
   * @example
   * ```ts
   * const release = await budget.admit(declaredLength);
   * try { ... } finally { release(); }
   * ```
   */
  admit(bytes: number, own = 0): Promise<Release> {
    if (this.#waiters.length === 0 && this.#fits(bytes, own)) return Promise.resolve(this.#take(bytes));
    return new Promise<Release>((resolve, reject) => {
      const timer = setTimeout(() => {
        const at = this.#waiters.indexOf(waiter);
        if (at >= 0) this.#waiters.splice(at, 1);
        reject(new AdmissionRefused(Math.max(1, Math.ceil(this.waitMs / 1000))));
      }, this.waitMs);
      const waiter = {
        bytes,
        own,
        admit: (release: Release) => {
          clearTimeout(timer);
          resolve(release);
        },
      };
      this.#waiters.push(waiter);
    });
  }

  #fits(bytes: number, own = 0): boolean {
    return this.#held - own === 0 || this.#held + bytes <= this.limitBytes;
  }

  /** Count `bytes` as held now; the release gives them back and lets the next in line in. */
  #take(bytes: number): Release {
    this.#held += bytes;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#held -= bytes;
      // First come, first served: those in line go, in order, while they fit.
      while (this.#waiters.length > 0 && this.#fits(this.#waiters[0].bytes, this.#waiters[0].own)) {
        const next = this.#waiters.shift()!;
        next.admit(this.#take(next.bytes));
      }
    };
  }
}
