import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';

/** Whoever makes a request when no tokens are configured (the schema allows that on loopback only). */
export const ANONYMOUS = 'anonymous';

const WINDOW_MS = 60_000;
/** Addresses whose failures are remembered at once; beyond this the oldest are forgotten. */
const MAX_TRACKED = 10_000;

export type AuthResult =
  | { readonly ok: true; readonly actor: string }
  | { readonly ok: false; readonly code: 'UNAUTHORIZED'; readonly message: string }
  | { readonly ok: false; readonly code: 'TOO_MANY_FAILED_LOGINS'; readonly message: string; readonly retryAfterS: number };

export interface AuthenticatorOptions {
  readonly tokens: readonly { readonly name: string; readonly token: string }[];
  /** failed logins one address may make in a sliding minute; the next one is a 429 */
  readonly maxFailedLogins: number;
  /** @default Date.now */
  readonly now?: () => number;
  /** @default 10 000 */
  readonly maxTracked?: number;
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

/**
 * Bearer-token check with a per-address failed-login limit. Tokens are compared as sha256
 * digests with `timingSafeEqual`, so neither the token's content nor its length leaks through
 * timing, and every configured token is compared so the position of the match does not either.
 */
export class Authenticator {
  readonly #tokens: readonly { name: string; digest: Buffer }[];
  readonly #max: number;
  readonly #now: () => number;
  readonly #maxTracked: number;
  /** address → times of its latest failures, oldest first, at most max + 1 of them */
  readonly #failures = new Map<string, number[]>();

  constructor(opts: AuthenticatorOptions) {
    this.#tokens = opts.tokens.map((t) => ({ name: t.name, digest: digest(t.token) }));
    this.#max = opts.maxFailedLogins;
    this.#now = opts.now ?? Date.now;
    this.#maxTracked = opts.maxTracked ?? MAX_TRACKED;
  }

  /** Number of addresses currently tracked (for tests of the memory bound). */
  get tracked(): number {
    return this.#failures.size;
  }

  authenticate(req: IncomingMessage): AuthResult {
    if (this.#tokens.length === 0) return { ok: true, actor: ANONYMOUS };
    const header = req.headers.authorization;
    const m = header === undefined ? null : /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header);
    const actor = m?.[1] === undefined ? null : this.#match(m[1]);
    // a valid token is always accepted, even from a throttled address: the limit slows down
    // guessing, it must not let any local process lock the operators out
    if (actor !== null) return { ok: true, actor };
    const address = req.socket.remoteAddress ?? 'unknown';
    const now = this.#now();
    const blocked = this.#retryAfter(address, now);
    if (blocked !== null) return tooMany(blocked);
    if (header === undefined || header === '') return { ok: false, code: 'UNAUTHORIZED', message: 'missing token: send Authorization: Bearer TOKEN' };
    this.#recordFailure(address, now);
    const after = this.#retryAfter(address, now);
    if (after !== null) return tooMany(after);
    return { ok: false, code: 'UNAUTHORIZED', message: m === null ? 'malformed Authorization header: send Authorization: Bearer TOKEN' : 'unknown token' };
  }

  #match(token: string): string | null {
    const d = digest(token);
    let found: string | null = null;
    for (const t of this.#tokens) if (timingSafeEqual(d, t.digest) && found === null) found = t.name;
    return found;
  }

  /** Seconds until the address may try again, or null when it is not over the limit. */
  #retryAfter(address: string, now: number): number | null {
    const times = this.#failures.get(address);
    if (times === undefined) return null;
    while (times.length > 0 && (times[0] as number) <= now - WINDOW_MS) times.shift();
    if (times.length === 0) {
      this.#failures.delete(address);
      return null;
    }
    if (times.length <= this.#max) return null;
    // once the oldest remembered failure leaves the window the count is back to the limit
    return Math.max(1, Math.ceil(((times[0] as number) + WINDOW_MS - now) / 1000));
  }

  #recordFailure(address: string, now: number): void {
    let times = this.#failures.get(address);
    if (times === undefined) {
      if (this.#failures.size >= this.#maxTracked) this.#evict(now);
      times = [];
      this.#failures.set(address, times);
    }
    times.push(now);
    if (times.length > this.#max + 1) times.splice(0, times.length - (this.#max + 1));
  }

  /**
   * Drops expired entries, then forgets the addresses tracked longest until a tenth of the room
   * is free, so a flood of new addresses costs one scan per many failures, not one each.
   */
  #evict(now: number): void {
    for (const [address, times] of this.#failures) {
      const last = times[times.length - 1];
      if (last === undefined || last <= now - WINDOW_MS) this.#failures.delete(address);
    }
    const keep = Math.floor(this.#maxTracked * 0.9);
    for (const address of this.#failures.keys()) {
      if (this.#failures.size <= keep) break;
      this.#failures.delete(address);
    }
  }
}

function tooMany(retryAfterS: number): AuthResult {
  return { ok: false, code: 'TOO_MANY_FAILED_LOGINS', message: `too many failed logins from this address; retry in ${retryAfterS}s`, retryAfterS };
}
