// Access tokens kept in this instance's memory until shortly before they expire: never in a
// table, a response or a log. Concurrent sends through one mailbox share one refresh.

/** A token and when it stops working (epoch ms). */
export interface CachedToken {
  accessToken: string;
  expiresAt: number;
}

/** Refresh this long before the provider's expiry, so a token never expires mid-send. */
export const EXPIRY_MARGIN_MS = 60_000;

/**
 * Per-instance access tokens by key (a config and the version of its stored grant), with one
 * refresh in flight per key however many sends ask at once.
 *
 * @example
 * ```ts
 * const tokens = new AccessTokenCache();
 * const token = await tokens.get(`${config.id}:${config.oauth_version}`, () => refresh());
 * // on a 401 from the provider: tokens.invalidate(key, token); then get() once more
 * ```
 */
export class AccessTokenCache {
  readonly #tokens = new Map<string, CachedToken>();
  readonly #refreshing = new Map<string, Promise<CachedToken>>();

  constructor(private readonly now: () => number = Date.now, private readonly marginMs = EXPIRY_MARGIN_MS) {}

  /** The cached token for `key`, or the one `refresh` gives (shared by concurrent callers). */
  async get(key: string, refresh: () => Promise<CachedToken>): Promise<string> {
    const cached = this.#tokens.get(key);
    if (cached && cached.expiresAt - this.marginMs > this.now()) return cached.accessToken;
    let pending = this.#refreshing.get(key);
    if (!pending) {
      pending = refresh().finally(() => this.#refreshing.delete(key));
      this.#refreshing.set(key, pending);
    }
    const fresh = await pending;
    this.#tokens.set(key, fresh);
    return fresh.accessToken;
  }

  /**
   * Forget `key`'s token after the provider refused it, unless a newer one replaced it
   * meanwhile (then the caller simply asks again).
   */
  invalidate(key: string, accessToken?: string): void {
    const cached = this.#tokens.get(key);
    if (cached && (accessToken === undefined || cached.accessToken === accessToken)) this.#tokens.delete(key);
  }

  /** Forget every token of keys starting with `prefix` (a config deleted or re-authorised). */
  forget(prefix: string): void {
    for (const key of this.#tokens.keys()) if (key.startsWith(prefix)) this.#tokens.delete(key);
  }
}
