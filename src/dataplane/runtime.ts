import type { Pool } from 'undici';
// Only the Pool class (./engine/internals.ts): the package index also loads fetch, WebSocket,
// caches and a second copy of its parser, ~14 MB of RSS a proxy never uses (measured: 29 MB vs
// 15 MB on import)
import { engineFor, undiciPool } from './engine/internals.ts';
import { EventEmitter } from 'node:events';
import type { AppConfig } from '../config/schema.ts';
import type { Snapshot } from '../routing/snapshot.ts';
import type { CountsSource, PoolCounts } from '../control/counts.ts';
import { pinServerName, targetConnector } from './engine/tls-name.ts';
import { createH2Client, H2_SESSIONS, H2_STREAMS, type PoolProtocol } from './engine/h2-client.ts';
import { Http1Pool } from './engine/http1-pool.ts';
import type { EngineKind, Upstream } from './engine/upstream.ts';
import { RetiringTargets, type RetireListener, type RetiringTarget } from './retiring.ts';

/** How long a target that refused a connection is skipped when its pool has another one up. */
export const REFUSED_BACKOFF_MS = 1000;

/**
 * One upstream `http://host:port`: its undici connection pool and whether it is believed up.
 * Long-lived: created when it joins a pool's definition, shared by every snapshot until it leaves.
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
  /** `h2`: its engine is the HTTP/2 client (src/dataplane/engine/h2-client.ts), whatever `engine` says */
  readonly protocol: PoolProtocol;

  constructor(url: string, timeouts: AppConfig['timeouts'], maxConnections: number | null = null, engine: EngineKind = 'native', protocol: PoolProtocol = 'http1') {
    const u = new URL(url);
    this.engine = u.protocol === 'http:' && protocol === 'http1' ? engine : 'undici';
    this.protocol = protocol;
    this.url = url;
    // h2: sessions × streams may be in flight before requests queue
    this.maxConnections = protocol === 'h2' ? (maxConnections ?? H2_SESSIONS) * H2_STREAMS : (maxConnections ?? Infinity);
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
    return pinServerName(this.origin, this.newEngine());
  }

  private newEngine(): Upstream {
    const o = this.poolOptions;
    const connectTimeout = (o.connect as { timeout: number }).timeout;
    if (this.protocol === 'h2') return createH2Client(this.origin, { connectTimeout, headersTimeout: o.headersTimeout as number, bodyTimeout: o.bodyTimeout as number, sessions: o.connections ?? null });
    // https: the certificate is checked for the target's own name (./engine/tls-name.ts)
    if (this.engine === 'undici') return new undiciPool.Pool(this.origin, this.origin.startsWith('https:') ? { ...o, connect: targetConnector({ timeout: connectTimeout, allowH2: false }) } : o);
    return new Http1Pool(this.origin, {
      connectTimeout,
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
  /** its target left rotation: move to another if that is harmless (forward.ts); true when it moved */
  leaveTarget?(): boolean;
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
  /** Takes back one `add(at)`: a pinned request the pool did not serve after all (DataPlane.reroute). */
  remove(at: number): void {
    const sec = Math.floor(at / 1000);
    const i = sec % 60;
    if (this.stamps[i] === sec && (this.slots[i] ?? 0) > 0) this.slots[i] = (this.slots[i] as number) - 1;
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
  /**
   * The targets new requests may pick, in the definition's order. Replaced (never mutated) when
   * the definition changes (Runtime.sync); a removed target leaves this list at once and finishes
   * what it carries as a retiring target.
   */
  targets: readonly Target[];
  /** the definition's target URLs (Runtime.sync) */
  defined: readonly string[] = [];
  /** this instance's discovered target URLs (Runtime.setDiscoveredTargets), added after the defined ones */
  discovered: readonly string[] = [];
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
    const targets = this.targets;
    const n = targets.length;
    if (n === 1) {
      const t = targets[0] as Target;
      return t !== exclude && t.isUp(now) ? t : null;
    }
    for (let k = 0; k < n; k++) {
      const t = targets[(this.cursor + k) % n] as Target;
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

  /**
   * `target` was ejected or marked down: the requests waiting on it that can be replayed
   * harmlessly go to another target now, not at the response timeout. Returns how many moved.
   */
  resendFrom(target: Target): number {
    let moved = 0;
    for (const c of this.openOn(target)) if (c.leaveTarget?.() === true) moved++;
    return moved;
  }

  /** What is open on one target (streams and upgraded connections), by the `target` each open item carries. */
  openOn(target: Target): Cuttable[] {
    return [...this.open].filter((c) => (c as { target?: unknown }).target === target);
  }
}

export class AppRuntime {
  readonly name: string;
  /** the app's current definition, compiled (replaced by Runtime.sync) */
  config: AppConfig;
  /** indexed by the pool's slot in the snapshot (PoolRoute.index); a removed pool keeps its slot and its counters */
  readonly pools: PoolRuntime[] = [];
  readonly byName = new Map<string, PoolRuntime>();
  constructor(config: AppConfig) {
    this.name = config.name;
    this.config = config;
  }
}

/** `targets` event: a pool's target list changed (health checks follow it). */
export interface TargetsChange {
  readonly app: AppRuntime;
  readonly pool: PoolRuntime;
  readonly added: readonly Target[];
  readonly removed: readonly Target[];
}

export interface RuntimeOptions {
  /** @default Date.now */
  readonly now?: () => number;
  /** how often retiring targets are looked at (closed when empty, cut at their deadline) @default 250 */
  readonly retireEvery?: number;
  /** told when a retiring target is closed or cut */
  readonly onRetire?: RetireListener;
  /** what forwards to http targets (config `engine`) @default native */
  readonly engine?: EngineKind;
}

/** What makes two targets of one URL the same upstream connection pool: change any, get a new one. */
function settingsKey(config: AppConfig): string {
  return JSON.stringify([config.timeouts, config.maxConnections ?? null]);
}

/**
 * The live side of every app, indexed like the snapshot's app and pool slots (AppRoute.index,
 * PoolRoute.index). Follows the routing snapshot (`sync`): a target added to a definition gets
 * its connection pool, a removed one retires — no new request goes to it, what it carries
 * finishes there, what is still open at the app's drain timeout after the removal is cut, and
 * its connection pool is closed only once nothing is left on it.
 *
 * Events: `targets` (TargetsChange).
 */
export class Runtime extends EventEmitter<{ targets: [TargetsChange] }> {
  readonly apps: AppRuntime[] = [];
  readonly byName = new Map<string, AppRuntime>();
  /** targets removed from their pool, finishing what they carry (retiring.ts) */
  readonly retiring: RetiringTargets;
  private readonly now: () => number;
  readonly engine: EngineKind;

  constructor(opts: RuntimeOptions = {}) {
    super();
    this.now = opts.now ?? Date.now;
    // native only where Node's HTTPParser is there as the engine expects it (./engine/internals.ts)
    this.engine = engineFor(opts.engine ?? 'native').engine;
    this.retiring = new RetiringTargets(this.now, opts.retireEvery ?? 250, opts.onRetire ?? (() => undefined));
  }

  pool(app: string, pool: string): PoolRuntime | undefined {
    return this.byName.get(app)?.byName.get(pool);
  }

  allPools(): PoolRuntime[] {
    return this.apps.flatMap((a) => a.pools);
  }

  /**
   * Follows a new snapshot, synchronously and before it serves a request: creates the runtime of
   * new apps and pools at their slots, and sets each pool's targets to its definition's (a target
   * kept keeps its connection pool and counters). What left a definition retires.
   */
  sync(snapshot: Snapshot): void {
    const live = new Set<PoolRuntime>();
    for (const route of snapshot.apps) {
      let app = this.apps[route.index];
      if (app === undefined || app.name !== route.name) {
        app = new AppRuntime(route.config);
        this.apps[route.index] = app;
        this.byName.set(app.name, app);
      }
      const settingsChanged = settingsKey(app.config) !== settingsKey(route.config);
      // a new definition (health settings, say) is told to the health checks even when no target moved
      const redefined = app.config !== route.config;
      app.config = route.config;
      for (const pr of route.pools) {
        let pool = app.pools[pr.index];
        if (pool === undefined) {
          pool = new PoolRuntime(pr.name, []);
          app.pools[pr.index] = pool;
          app.byName.set(pr.name, pool);
        }
        live.add(pool);
        pool.defined = route.config.pools[pr.name]?.targets ?? [];
        const urls = effectiveUrls(pool);
        // a pool that changes `protocol` needs new connection pools for all its targets, as a settings change
        const protocol = route.config.pools[pr.name]?.protocol ?? 'http1';
        const fresh = settingsChanged || pool.targets.some((t) => t.protocol !== protocol);
        if (fresh || !sameUrls(pool.targets, urls)) this.setTargets(app, pool, urls, fresh);
        else if (redefined) this.emit('targets', { app, pool, added: [], removed: [] });
      }
    }
    for (const app of this.apps) {
      for (const pool of app.pools) {
        if (live.has(pool)) continue;
        pool.defined = [];
        pool.discovered = [];
        if (pool.targets.length > 0) this.setTargets(app, pool, [], false);
      }
    }
  }

  /**
   * The hook for DNS discovery (src/discovery/): sets the targets this instance discovered for a
   * pool, beside the definition's own (a URL in both counts once). Not stored: each instance
   * resolves for itself. A discovered target that disappears leaves the pool with the same
   * zero-loss rules as one removed from the definition (retired: what it carries finishes there,
   * what is still open at the app's drain timeout is cut, its connection pool closed once empty).
   * Returns false, changing nothing, when the app or pool does not exist (now).
   */
  setDiscoveredTargets(app: string, pool: string, urls: readonly string[]): boolean {
    const a = this.byName.get(app);
    const p = a?.byName.get(pool);
    if (a === undefined || p === undefined || !a.config.pools[pool]) return false;
    p.discovered = Object.freeze([...new Set(urls)]);
    const next = effectiveUrls(p);
    if (!sameUrls(p.targets, next)) this.setTargets(a, p, next, false);
    return true;
  }

  private setTargets(app: AppRuntime, pool: PoolRuntime, urls: readonly string[], fresh: boolean): void {
    const cfg = app.config;
    // url → its current targets, taken in order: a URL listed twice keeps its two targets
    const old = new Map<string, Target[]>();
    for (const t of pool.targets) old.set(t.url, [...(old.get(t.url) ?? []), t]);
    const next = urls.map((url) => {
      const kept = fresh ? undefined : old.get(url)?.shift();
      if (kept !== undefined) return kept;
      const back = fresh ? undefined : this.retiring.take(pool, url);
      return back ?? new Target(url, cfg.timeouts, cfg.maxConnections ?? null, this.engine, cfg.pools[pool.name]?.protocol ?? 'http1');
    });
    const removed = pool.targets.filter((t) => !next.includes(t));
    const added = next.filter((t) => !pool.targets.includes(t));
    pool.targets = Object.freeze(next);
    const now = this.now();
    for (const target of removed) this.retiring.add({ app: app.name, pool, target, since: now, deadline: now + cfg.drain.timeout });
    if (added.length > 0 || removed.length > 0) this.emit('targets', { app, pool, added, removed });
  }

  /** Closes retiring targets that carry nothing; cuts what is still open on those past their deadline. */
  retireRound(): void {
    this.retiring.round();
  }

  /** Retiring targets of one pool, for the drain figures. */
  retiringOf(app: string, pool: string): RetiringTarget[] {
    return this.retiring.of(app, pool);
  }

  async close(): Promise<void> {
    const all = [...this.allPools().flatMap((p) => p.targets), ...this.retiring.close()];
    await Promise.all(all.map((t) => t.destroy()));
  }

  /** After a burst of connections: every target gets a fresh connection pool (see Target.renewPool). */
  renewPools(): void {
    for (const p of this.allPools()) for (const t of p.targets) t.renewPool();
  }
}

/** The definition's targets, then the discovered ones it does not already name. */
function effectiveUrls(pool: PoolRuntime): readonly string[] {
  if (pool.discovered.length === 0) return pool.defined;
  return [...pool.defined, ...pool.discovered.filter((u) => !pool.defined.includes(u))];
}

function sameUrls(targets: readonly Target[], urls: readonly string[]): boolean {
  return targets.length === urls.length && targets.every((t, i) => t.url === urls[i]);
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
