import type { Redis } from 'ioredis';
import type { Logger } from 'pino';

/** Runs `fn` once after `ms`; returns a cancel function. */
export type Scheduler = (fn: () => void, ms: number) => () => void;

export const realScheduler: Scheduler = (fn, ms) => {
  const t = setTimeout(fn, ms);
  t.unref();
  return () => clearTimeout(t);
};

/** One instance of a fleet at a time: who drives rollouts (src/rollout), who orders ACME certificates (src/edge). */
export interface Lease {
  /** whether this instance holds it now */
  held(): boolean;
  /** the holder's id, as far as this instance knows (null: nobody) */
  holder(): Promise<string | null>;
  /** starts acquiring/renewing; `onChange` hears every gain and loss */
  start(onChange: (held: boolean) => void): void;
  /** stops renewing and gives the lease up, so another instance takes over at once */
  close(): Promise<void>;
}

/** The file store: one instance, always the driver. */
export class LocalLease implements Lease {
  readonly #id: string;
  #open = true;
  constructor(id: string) {
    this.#id = id;
  }
  held(): boolean {
    return this.#open;
  }
  async holder(): Promise<string | null> {
    return this.#open ? this.#id : null;
  }
  start(onChange: (held: boolean) => void): void {
    onChange(true);
  }
  async close(): Promise<void> {
    this.#open = false;
  }
}

/**
 * Extends the lease only if this instance still holds it, or takes it back if the key is gone
 * (a Redis restarted without persistence), so the driver does not change over a restart.
 * KEYS: lease. ARGV: id, ttl ms. Answers 1 when held, 0 when another instance holds it.
 */
const RENEW = `
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if not holder then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end
return 0
`;
/** Deletes the lease only if this instance holds it. */
const RELEASE = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end`;

export interface RedisLeaseOptions {
  readonly client: Redis;
  readonly key: string;
  /** unique per running instance */
  readonly id: string;
  /** how long a lease lives without renewal; a dead driver is replaced within about this. @default 10000 */
  readonly ttlMs?: number | undefined;
  readonly logger: Logger;
  /** @default Date.now */
  readonly now?: () => number;
  readonly schedule?: Scheduler;
  /** what holding it means, for the log @default 'drives rollouts' */
  readonly role?: string;
}

/**
 * A lease in Redis: `SET key id NX PX ttl` to take it, a compare-and-extend script every ttl/3 to
 * keep it, a compare-and-delete on close. The holder counts it as held only until the ttl it
 * last secured (measured from before the command was sent) runs out, so when renewals fail —
 * Redis unreachable, the process stalled — it stops driving no later than the key expires and
 * another instance may take over.
 */
export class RedisLease implements Lease {
  readonly #client: Redis;
  readonly #key: string;
  readonly #id: string;
  readonly #ttl: number;
  readonly #logger: Logger;
  readonly #now: () => number;
  readonly #schedule: Scheduler;
  #heldUntil = 0;
  #wasHeld = false;
  #cancel: (() => void) | null = null;
  #closed = false;
  #onChange: (held: boolean) => void = () => undefined;
  #attempt: Promise<void> | null = null;
  readonly #role: string;

  constructor(opts: RedisLeaseOptions) {
    this.#client = opts.client;
    this.#key = opts.key;
    this.#id = opts.id;
    this.#ttl = opts.ttlMs ?? 10_000;
    this.#logger = opts.logger;
    this.#now = opts.now ?? Date.now;
    this.#schedule = opts.schedule ?? realScheduler;
    this.#role = opts.role ?? 'drives rollouts';
  }

  held(): boolean {
    return !this.#closed && this.#now() < this.#heldUntil;
  }

  async holder(): Promise<string | null> {
    if (this.held()) return this.#id;
    try {
      return await this.#client.get(this.#key);
    } catch {
      return null;
    }
  }

  start(onChange: (held: boolean) => void): void {
    this.#onChange = onChange;
    this.#loop();
  }

  #loop(): void {
    if (this.#closed) return;
    this.#attempt = this.#tryOnce().finally(() => {
      this.#attempt = null;
    });
    void this.#attempt.then(() => {
      if (!this.#closed) this.#cancel = this.#schedule(() => this.#loop(), Math.max(10, Math.floor(this.#ttl / 3)));
    });
  }

  async #tryOnce(): Promise<void> {
    const t0 = this.#now();
    try {
      if (this.held()) {
        const ok = Number(await this.#client.eval(RENEW, 1, this.#key, this.#id, String(this.#ttl)));
        if (ok === 1) this.#heldUntil = t0 + this.#ttl;
        else {
          this.#heldUntil = 0;
          this.#logger.warn({ key: this.#key }, `lease lost to another instance (${this.#role})`);
        }
      } else {
        const ok = await this.#client.set(this.#key, this.#id, 'PX', this.#ttl, 'NX');
        if (ok === 'OK') this.#heldUntil = t0 + this.#ttl;
      }
    } catch (err) {
      // keep what was secured: it runs out by itself at #heldUntil
      this.#logger.debug({ err }, 'rollout lease: redis command failed');
    }
    this.#report();
  }

  #report(): void {
    const held = this.held();
    if (held === this.#wasHeld) return;
    this.#wasHeld = held;
    this.#logger.info({ key: this.#key, id: this.#id }, held ? `this instance now ${this.#role}` : `this instance no longer ${this.#role}`);
    this.#onChange(held);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    const wasHeld = this.held();
    this.#closed = true;
    this.#cancel?.();
    await this.#attempt?.catch(() => undefined);
    if (wasHeld || this.#heldUntil > 0) {
      try {
        await this.#client.eval(RELEASE, 1, this.#key, this.#id);
      } catch (err) {
        this.#logger.debug({ err }, 'rollout lease: could not release; it expires by itself');
      }
    }
    this.#heldUntil = 0;
  }
}
