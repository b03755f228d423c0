import type { Pool } from 'undici';
// Only the Pool class: the package index also loads fetch, WebSocket, caches and a second
// copy of its parser, ~14 MB of RSS a proxy never uses (measured: 29 MB vs 15 MB on import).
import PoolClass from 'undici/lib/dispatcher/pool.js';
import type { AppConfig, Config } from '../config/schema.ts';
import type { CountsSource, PoolCounts } from '../control/counts.ts';
import { Http1Pool } from './engine/http1-pool.ts';
import type { EngineKind, Upstream } from './engine/upstream.ts';

/** How long a target that refused a connection is skipped when its pool has another one up. */
export const REFUSED_BACKOFF_MS = 1000;

/**
 * One upstream `http://host:port`: its undici connection pool and whether it is believed up.
 * Long-lived: created once from the config, shared by every snapshot.
 */
export class Target {
  readonly url: string;
  readonly origin: string;
  /** replaced by `renewPool()` after a burst; a request keeps the pool it was dispatched on */
  dispatcher: Upstream;
  /** pools replaced by `renewPool()` still finishing their requests */
  private readonly retiring = new Set<Upstream>();
  private readonly poolOptions: Pool.Options;
  /** the forwarding engine of this target (config `engine`; https targets always go through undici) */
  readonly engine: EngineKind;
  /** epoch ms until which a refused target is skipped */
  downUntil = 0;
  /** the active health checks' verdict (src/health/active.ts); up until `fall` checks fail, as HAProxy */
  healthy = true;
  /** epoch ms until which passive checks left it out (src/health/passive.ts) */
  ejectedUntil = 0;
  /** consecutive 5xx responses and upstream errors; any other response resets it */
  consecutiveFailures = 0;
  /** a non-5xx response came since the passive checks' last stall sweep looked (src/health/passive.ts) */
  answered = false;
  /** times passive checks ejected it (a counter for metrics) */
  ejections = 0;
  /** what its health endpoint last reported with `health.versionFrom`, or null */
  reportedVersion: string | null = null;
  /** the passive checks of its pool, or null when the app has none */
  outlier: Outlier | null = null;
  inflight = 0;
  /** the app's `maxConnections`, or Infinity: with more requests than this in flight, the rest queue (limits.queueTimeout) */
  readonly maxConnections: number;

  constructor(url: string, timeouts: AppConfig['timeouts'], maxConnections: number | null = null, engine: EngineKind = 'native') {
    const u = new URL(url);
    this.engine = u.protocol === 'http:' ? engine : 'undici';
    this.url = url;
    this.maxConnections = maxConnections ?? Infinity;
    this.origin = u.origin;
    this.poolOptions = {
      connect: { timeout: timeouts.connect },
      headersTimeout: timeouts.response,
      bodyTimeout: timeouts.idle,
      keepAliveTimeout: 4_000,
      keepAliveMaxTimeout: timeouts.idle,
      // null: as many connections as requests in flight; a cap queues the rest inside undici
      connections: maxConnections,
      pipelining: 1,
    };
    this.dispatcher = this.newPool();
  }

  private newPool(): Upstream {
    if (this.engine === 'undici') return new PoolClass(this.origin, this.poolOptions);
    const o = this.poolOptions;
    return new Http1Pool(this.origin, {
      connectTimeout: (o.connect as { timeout: number }).timeout,
      headersTimeout: o.headersTimeout as number,
      bodyTimeout: o.bodyTimeout as number,
      keepAliveTimeout: o.keepAliveTimeout as number,
      keepAliveMaxTimeout: o.keepAliveMaxTimeout as number,
      connections: o.connections ?? null,
    });
  }

  /**
   * Swaps in a fresh connection pool and closes the old one once its requests are done. Why:
   * an undici Pool keeps every Client it ever created (one per connection at the busiest moment)
   * and has no way to drop idle ones, so after a burst of 8,000 requests 4,600 Clients and their
   * buffers stayed in the heap for good (measured with v8.queryObjects). Called when a burst of
   * connections is over; the next requests open new connections.
   */
  renewPool(): void {
    const old = this.dispatcher;
    this.dispatcher = this.newPool();
    this.retiring.add(old);
    old.close().then(
      () => this.retiring.delete(old),
      () => this.retiring.delete(old),
    );
  }

  /** Destroys its pools, the retiring ones too (runtime close). */
  destroy(): Promise<unknown> {
    return Promise.all([this.dispatcher, ...this.retiring].map((d) => d.destroy().catch(() => undefined)));
  }

  isUp(now: number): boolean {
    return this.healthy && this.downUntil <= now && this.ejectedUntil <= now;
  }

  /** Passive health, once per upstream response or failure: O(1), no allocation until a failure streak. */
  recordResult(ok: boolean): void {
    if (ok) {
      this.consecutiveFailures = 0;
      this.answered = true;
      return;
    }
    this.consecutiveFailures++;
    this.outlier?.failed(this);
  }
}

/** Decides whether a failing target is ejected (src/health/passive.ts). */
export interface Outlier {
  failed(target: Target): void;
}

/** Something that can be cut at a drain deadline or at shutdown: an open stream or WebSocket. */
export interface Cuttable {
  /** close gracefully (WebSocket close 1001, stream end); returns nothing, never throws */
  cut(reason: 'drain' | 'shutdown'): void;
  /** its place in its pool's `OpenSet`, -1 when not in one (owned by OpenSet) */
  openSlot: number;
}

/**
 * What is open on a pool, for the drain deadline and shutdown: O(1) add and delete by a slot
 * index kept on the item (swap with the last, pop).
 *
 * Not a `Set`, on purpose: a Set of short-lived items that churns ~20k times a second replaces
 * its hash table every few dozen operations, and V8 keeps each replaced table (for live
 * iterators) with all its entries. Those dead tables sit in old space, where the scavenger takes
 * their pointers for roots, so every request's objects survived the young generation: 12 MB
 * promoted per scavenge, 15–20 ms scavenges, a mark-compact every 0.6 s (p99 ~20 ms). With
 * this array a scavenge keeps only what is in flight (< 1 ms). `bench/README.md` has the trace.
 */
export class OpenSet<T extends Cuttable> implements Iterable<T> {
  private readonly items: T[] = [];

  get size(): number {
    return this.items.length;
  }

  add(item: T): void {
    if (item.openSlot !== -1) return;
    item.openSlot = this.items.length;
    this.items.push(item);
  }

  delete(item: T): void {
    const i = item.openSlot;
    if (i === -1 || this.items[i] !== item) return;
    const last = this.items.pop() as T;
    if (last !== item) {
      this.items[i] = last;
      last.openSlot = i;
    }
    item.openSlot = -1;
  }

  has(item: T): boolean {
    return item.openSlot !== -1 && this.items[item.openSlot] === item;
  }

  /** Iterates over a copy: cutting an item while iterating (which deletes it) is safe. */
  [Symbol.iterator](): Iterator<T> {
    return this.items.slice()[Symbol.iterator]();
  }
}

/** Per-second ring of counts over the last 60 s, for `pinned`. */
class RollingCount {
  private readonly slots = new Uint32Array(60);
  private readonly stamps = new Float64Array(60);
  add(now: number): void {
    const sec = Math.floor(now / 1000);
    const i = sec % 60;
    if (this.stamps[i] !== sec) {
      this.stamps[i] = sec;
      this.slots[i] = 0;
    }
    this.slots[i] = (this.slots[i] ?? 0) + 1;
  }
  total(now: number): number {
    const sec = Math.floor(now / 1000);
    let sum = 0;
    for (let i = 0; i < 60; i++) if (sec - (this.stamps[i] as number) < 60) sum += this.slots[i] as number;
    return sum;
  }
}

/** The live side of one pool: targets, balancing cursor, and what is in flight on it. */
export class PoolRuntime {
  readonly name: string;
  readonly targets: readonly Target[];
  private cursor = 0;
  inflight = 0;
  upgraded = 0;
  readonly pinned = new RollingCount();
  /** open streams and upgraded connections, cut at the drain deadline or at shutdown */
  readonly open = new OpenSet<Cuttable>();

  constructor(name: string, targets: Target[]) {
    this.name = name;
    this.targets = targets;
  }

  /**
   * Round robin over targets that are up, skipping `exclude` (targets already tried for this
   * request). Returns null when no target is up.
   */
  pick(now: number, exclude: Target | null): Target | null {
    const n = this.targets.length;
    if (n === 1) {
      const t = this.targets[0] as Target;
      return t !== exclude && t.isUp(now) ? t : null;
    }
    for (let k = 0; k < n; k++) {
      const t = this.targets[(this.cursor + k) % n] as Target;
      if (t !== exclude && t.isUp(now)) {
        this.cursor = (this.cursor + k + 1) % n;
        return t;
      }
    }
    return null;
  }

  counts(now: number): PoolCounts {
    return { inflight: this.inflight, upgraded: this.upgraded, pinned: this.pinned.total(now) };
  }
}

export class AppRuntime {
  readonly name: string;
  readonly pools: readonly PoolRuntime[];
  readonly byName: ReadonlyMap<string, PoolRuntime>;
  constructor(config: AppConfig, engine: EngineKind = 'native') {
    this.name = config.name;
    this.pools = Object.entries(config.pools).map(([name, p]) => new PoolRuntime(name, p.targets.map((url) => new Target(url, config.timeouts, config.maxConnections ?? null, engine))));
    this.byName = new Map(this.pools.map((p) => [p.name, p]));
  }
}

/** The live side of every app, indexed like `config.apps` and the snapshot's apps. */
export class Runtime {
  readonly apps: readonly AppRuntime[];
  readonly byName: ReadonlyMap<string, AppRuntime>;
  constructor(config: Config) {
    this.apps = config.apps.map((a) => new AppRuntime(a, config.engine));
    this.byName = new Map(this.apps.map((a) => [a.name, a]));
  }

  pool(app: string, pool: string): PoolRuntime | undefined {
    return this.byName.get(app)?.byName.get(pool);
  }

  allPools(): PoolRuntime[] {
    return this.apps.flatMap((a) => a.pools);
  }

  async close(): Promise<void> {
    await Promise.all(this.allPools().flatMap((p) => p.targets.map((t) => t.destroy())));
  }

  /** After a burst of connections: every target gets a fresh connection pool (see Target.renewPool). */
  renewPools(): void {
    for (const p of this.allPools()) for (const t of p.targets) t.renewPool();
  }
}

/** CountsSource for one instance on the file store: its own counters. */
export function localCounts(runtime: Runtime, instanceId: string, now: () => number = Date.now): CountsSource {
  const zero = (): PoolCounts => ({ inflight: 0, upgraded: 0, pinned: 0 });
  const counts = (app: string, pool: string): PoolCounts => runtime.pool(app, pool)?.counts(now()) ?? zero();
  return {
    poolCounts: counts,
    poolCountsByInstance: (app, pool) => ({ [instanceId]: counts(app, pool) }),
    instances: () => ({ applied: 1, total: 1 }),
  };
}
