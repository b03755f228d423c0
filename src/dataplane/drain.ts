import type { Snapshot } from '../routing/snapshot.ts';
import type { Cuttable } from './open-set.ts';
import type { Runtime } from './runtime.ts';

/** The timer functions the scheduler uses; injectable so tests drive the clock. */
export interface Timers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/** Real timers, unref'd: a pending drain deadline never keeps the process alive. */
export const realTimers: Timers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms).unref(),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

/** Longest delay setTimeout takes (about 24.8 days); longer deadlines are re-armed in steps. */
const MAX_DELAY_MS = 2 ** 31 - 1;
/** Cuts are made in batches at most this often during the spread window. */
const BATCH_EVERY_MS = 50;

/**
 * The window over which a pool's open connections are cut once its deadline passes:
 * min(5 s, 10 % of drain.timeout), so thousands of WebSockets do not reconnect in one burst.
 */
export function spreadWindow(drainTimeoutMs: number): number {
  return Math.min(5_000, Math.floor(drainTimeoutMs / 10));
}

export interface DrainDeadlinesOptions {
  readonly runtime: Runtime;
  /** anything holding the current snapshot (the Controller) */
  readonly source: { readonly snapshot: Snapshot };
  /** @default Date.now */
  readonly now?: () => number;
  /** @default realTimers */
  readonly timers?: Timers;
  /** called when a pool's deadline passes, with how many open connections it is about to cut */
  readonly onDeadline?: (app: string, pool: string, open: number) => void;
}

interface Entry {
  readonly deadline: number;
  /** the deadline timer, then the next batch's; null once all cuts are made */
  handle: unknown;
}

/**
 * Per-pool drain deadlines. On every applied snapshot (`update`), each pool at weight 0 has a
 * deadline, `drainingSince + drain.timeout`, taken from the routing state — so every instance,
 * and an instance restarted meanwhile, agrees on it. When it passes, the pool's open streams
 * and upgraded connections (`pool.open` at that moment) are cut, spread over `spreadWindow`.
 * A pool whose weight rises above 0 first is no longer draining: its timer, or what is left
 * of its spread, is cancelled.
 */
export class DrainDeadlines {
  private readonly runtime: Runtime;
  private readonly source: { readonly snapshot: Snapshot };
  private readonly now: () => number;
  private readonly timers: Timers;
  private readonly onDeadline: DrainDeadlinesOptions['onDeadline'];
  /** `app/pool` → its deadline timer */
  private readonly entries = new Map<string, Entry>();

  constructor(opts: DrainDeadlinesOptions) {
    this.runtime = opts.runtime;
    this.source = opts.source;
    this.now = opts.now ?? Date.now;
    this.timers = opts.timers ?? realTimers;
    this.onDeadline = opts.onDeadline;
  }

  /** Re-reads the current snapshot: arms new deadlines, cancels those of pools back in service. */
  update(): void {
    const live = new Set<string>();
    for (const app of this.source.snapshot.apps) {
      for (const pool of app.pools) {
        if (pool.drainDeadline === null) continue;
        const key = `${app.name}/${pool.name}`;
        live.add(key);
        const entry = this.entries.get(key);
        // the same drain period seen again (a later revision that kept the pool at 0)
        if (entry !== undefined && entry.deadline === pool.drainDeadline) continue;
        if (entry !== undefined) this.cancel(key);
        const e: Entry = { deadline: pool.drainDeadline, handle: null };
        this.entries.set(key, e);
        this.arm(key, e, app.name, pool.name, spreadWindow(app.config.drain.timeout));
      }
    }
    for (const key of [...this.entries.keys()]) if (!live.has(key)) this.cancel(key);
  }

  /** Pools whose deadline timer is armed or whose cuts are under way, as `app/pool` (for tests and logs). */
  pending(): string[] {
    return [...this.entries].filter(([, e]) => e.handle !== null).map(([k]) => k);
  }

  close(): void {
    for (const key of [...this.entries.keys()]) this.cancel(key);
  }

  private cancel(key: string): void {
    const e = this.entries.get(key);
    if (e === undefined) return;
    if (e.handle !== null) this.timers.clearTimeout(e.handle);
    this.entries.delete(key);
  }

  private arm(key: string, e: Entry, app: string, pool: string, window: number): void {
    const delay = Math.max(0, e.deadline - this.now());
    e.handle = this.timers.setTimeout(() => {
      if (this.entries.get(key) !== e) return;
      if (delay > MAX_DELAY_MS) return this.arm(key, e, app, pool, window);
      this.expire(key, e, app, pool, window);
    }, Math.min(delay, MAX_DELAY_MS));
  }

  private expire(key: string, e: Entry, app: string, pool: string, window: number): void {
    e.handle = null;
    const victims: Cuttable[] = [...(this.runtime.pool(app, pool)?.open ?? [])];
    this.onDeadline?.(app, pool, victims.length);
    const n = victims.length;
    if (n === 0) return;
    const batches = Math.min(n, Math.max(1, Math.floor(window / BATCH_EVERY_MS)));
    const step = (b: number): void => {
      e.handle = null;
      if (this.entries.get(key) !== e) return;
      const from = Math.floor((b * n) / batches);
      const to = Math.floor(((b + 1) * n) / batches);
      for (let i = from; i < to; i++) (victims[i] as Cuttable).cut('drain');
      if (b + 1 < batches) e.handle = this.timers.setTimeout(() => step(b + 1), window / batches);
    };
    step(0);
  }
}
