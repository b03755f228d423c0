import type { Logger } from 'pino';
import type { Runtime } from '../dataplane/runtime.ts';
import { stateDigest } from '../state/digest.ts';
import type { RedisStore } from '../state/redis-store.ts';
import type { RoutingState } from '../state/types.ts';
import type { Controller } from './controller.ts';
import type { CountsSource, PoolCounts } from './counts.ts';

/** What each instance writes under `…:{sy}:instance:<id>`, with a TTL. */
export interface Heartbeat {
  readonly id: string;
  /** app → revision the instance routes on */
  readonly applied: Readonly<Record<string, number>>;
  /** app → `stateDigest` of the state it routes on at that revision (absent: not known, e.g. a worker still behind) */
  readonly digests?: Readonly<Record<string, string>>;
  /** app → pool → live counts */
  readonly pools: Readonly<Record<string, Readonly<Record<string, PoolCounts>>>>;
  /** epoch ms, the writer's clock */
  readonly at: number;
  /** live stats windows (a metrics/stats.ts StatsExport), opaque here; validated by whoever merges them */
  readonly stats?: unknown;
}

/** Redis holds an older revision than this instance routes on (a failover lost a write). */
export interface Regression {
  readonly local: number;
  readonly remote: number;
  readonly since: string;
}

export interface FleetOptions {
  readonly store: RedisStore;
  readonly controller: Controller;
  readonly runtime: Runtime;
  readonly instanceId: string;
  readonly logger: Logger;
  /** @default Date.now */
  readonly now?: () => number;
  /** ms between heartbeats. @default 1000 */
  readonly heartbeatInterval?: number;
  /** ms a heartbeat lives; an instance silent this long is gone. @default 5000 */
  readonly ttl?: number;
  /** ms between reads of the other instances' heartbeats. @default 500 */
  readonly refreshInterval?: number;
  /** extra heartbeat payload: this instance's live stats windows (`LiveStats.exportWindows`) */
  readonly stats?: () => unknown;
}

/** Instances are indexed (sorted set) this long after their last heartbeat: far past the TTL, so clock skew between machines never hides a live one. */
const INDEX_HORIZON_MS = 60_000;

/**
 * One instance's membership in a fleet sharing a RedisStore: it heartbeats its applied
 * revisions and pool counts, keeps an in-memory view of the other live instances (refreshed in
 * the background, so no request or API call ever waits on Redis), re-seeds an empty Redis from
 * the state it routes on, and reports when Redis went back to an older revision.
 */
export class Fleet {
  readonly instanceId: string;
  readonly #store: RedisStore;
  readonly #controller: Controller;
  readonly #runtime: Runtime;
  readonly #logger: Logger;
  readonly #now: () => number;
  readonly #ttl: number;
  readonly #stats: (() => unknown) | undefined;
  /** other live instances, as last read */
  #peers: ReadonlyMap<string, Heartbeat> = new Map();
  /** local time of the last successful read of the peers */
  #peersReadAt = 0;
  /** a read of the peers older than this (ms) no longer vouches for the fleet's figures */
  readonly #staleAfter: number;
  readonly #regressions = new Map<string, Regression>();
  readonly #reseeding = new Set<string>();
  readonly #timers: NodeJS.Timeout[] = [];
  #beatSoon: NodeJS.Immediate | null = null;
  #closed = false;
  readonly #onSync = (remote: ReadonlyMap<string, RoutingState | null>): void => this.#reconcile(remote);
  readonly #onApplied = (state: RoutingState, previous: RoutingState | null): void => {
    this.#auditObserved(state, previous);
    // tell the fleet at once rather than at the next tick, so `instances.applied` converges fast
    this.#beatSoon ??= setImmediate(() => {
      this.#beatSoon = null;
      void this.heartbeat();
    });
  };

  constructor(opts: FleetOptions) {
    this.instanceId = opts.instanceId;
    this.#store = opts.store;
    this.#controller = opts.controller;
    this.#runtime = opts.runtime;
    this.#logger = opts.logger;
    this.#now = opts.now ?? Date.now;
    this.#ttl = opts.ttl ?? 5000;
    this.#stats = opts.stats;
    this.#store.on('sync', this.#onSync);
    this.#controller.on('applied', this.#onApplied);
    this.#timers.push(setInterval(() => void this.heartbeat(), opts.heartbeatInterval ?? 1000).unref());
    this.#timers.push(setInterval(() => void this.refresh(), opts.refreshInterval ?? 500).unref());
    this.#staleAfter = 3 * (opts.refreshInterval ?? 500);
    void this.heartbeat().then(() => this.refresh());
    // reconcile against Redis now rather than at the first poll
    void this.#store.sync();
  }

  /** This instance's heartbeat, with live counts. */
  own(): Heartbeat {
    const now = this.#now();
    const applied: Record<string, number> = {};
    const digests: Record<string, string> = {};
    for (const s of this.#controller.allStates()) {
      applied[s.app] = this.ownRevision(s.app);
      const digest = this.ownDigest(s.app);
      if (digest !== null) digests[s.app] = digest;
    }
    const pools: Record<string, Record<string, PoolCounts>> = {};
    for (const app of this.#runtime.apps) {
      const byPool: Record<string, PoolCounts> = {};
      for (const p of app.pools) byPool[p.name] = p.counts(now);
      pools[app.name] = byPool;
    }
    return { id: this.instanceId, applied, digests, pools, at: now, ...(this.#stats === undefined ? {} : { stats: this.#stats() }) };
  }

  /** This instance's live counts for one pool. */
  ownCounts(app: string, pool: string): PoolCounts {
    return this.#runtime.pool(app, pool)?.counts(this.#now()) ?? { inflight: 0, upgraded: 0, pinned: 0 };
  }

  /** The revision this instance routes `app` on (0 for an app it does not have). */
  ownRevision(app: string): number {
    try {
      return this.#controller.state(app).revision;
    } catch {
      return 0;
    }
  }

  /** Digest of the state this instance routes `app` on, or null when it does not route on one state yet (a worker behind). */
  ownDigest(app: string): string | null {
    try {
      const state = this.#controller.state(app);
      return this.ownRevision(app) === state.revision ? stateDigest(state) : null;
    } catch {
      return null;
    }
  }

  /**
   * Why the fleet-wide figures cannot be known now (Redis unreachable, the heartbeats not read
   * lately), or null when every live instance's last heartbeat was read. While unknown, a sum
   * over "the peers we could read" would be a guess that looks like an answer.
   */
  figuresUnknown(): string | null {
    if (!this.#store.connected) return "redis is unreachable: the other instances' figures cannot be read";
    const age = this.#now() - this.#peersReadAt;
    if (age > this.#staleAfter) return this.#peersReadAt === 0 ? "the other instances' heartbeats have not been read yet" : `the other instances' heartbeats could not be read for ${(age / 1000).toFixed(1)} s`;
    return null;
  }

  /** The other instances as last read, however old (pair with `figuresUnknown`). */
  lastPeers(): ReadonlyMap<string, Heartbeat> {
    return this.#peers;
  }

  /** The other instances believed live: as last read, and dropped once no read succeeded for a TTL (Redis down). */
  peers(): ReadonlyMap<string, Heartbeat> {
    return this.#now() - this.#peersReadAt <= this.#ttl ? this.#peers : new Map();
  }

  regressions(): ReadonlyMap<string, Regression> {
    return this.#regressions;
  }

  /** Writes this instance's heartbeat; never rejects (a miss is retried on the next tick). */
  async heartbeat(): Promise<void> {
    if (this.#closed || !this.#store.connected) return;
    const hb = this.own();
    const k = this.#store.keys;
    try {
      await this.#store.client
        .multi()
        .set(k.instance(hb.id), JSON.stringify(hb), 'PX', this.#ttl)
        .zadd(k.instances, hb.at, hb.id)
        .zremrangebyscore(k.instances, '-inf', hb.at - INDEX_HORIZON_MS)
        .exec();
    } catch (err) {
      this.#logger.debug({ err }, 'heartbeat failed');
    }
  }

  /** Re-reads the other instances' heartbeats; never rejects (the last view stands until it ages out). */
  async refresh(): Promise<void> {
    if (this.#closed || !this.#store.connected) return;
    const k = this.#store.keys;
    const client = this.#store.client;
    try {
      const ids = await client.zrangebyscore(k.instances, this.#now() - INDEX_HORIZON_MS, '+inf');
      const others = ids.filter((id) => id !== this.instanceId);
      // the key's TTL decides liveness; the index only lists candidates
      const texts = others.length === 0 ? [] : await client.mget(others.map((id) => k.instance(id)));
      const peers = new Map<string, Heartbeat>();
      for (const text of texts) {
        const hb = text === null || text === undefined ? null : parseHeartbeat(text);
        if (hb !== null && hb.id !== this.instanceId) peers.set(hb.id, hb);
      }
      this.#peers = peers;
      this.#peersReadAt = this.#now();
    } catch (err) {
      this.#logger.debug({ err }, 'reading the fleet heartbeats failed');
    }
  }

  /** For `/readyz` details. */
  details(): Record<string, unknown> {
    return {
      instance: this.instanceId,
      redis: { connected: this.#store.connected, subscribed: this.#store.subscribed },
      // null while the other instances cannot be read: a count of the ones we happen to know would look like an answer
      instances: this.figuresUnknown() === null ? 1 + this.peers().size : null,
      regressions: Object.fromEntries(this.#regressions),
    };
  }

  /** Stops the timers and removes this instance's heartbeat, so the others count it gone at once. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const t of this.#timers) clearInterval(t);
    if (this.#beatSoon !== null) clearImmediate(this.#beatSoon);
    this.#store.off('sync', this.#onSync);
    this.#controller.off('applied', this.#onApplied);
    if (!this.#store.connected) return;
    const k = this.#store.keys;
    await this.#store.client.multi().del(k.instance(this.instanceId)).zrem(k.instances, this.instanceId).exec().catch(() => undefined);
  }

  /** After every read of all apps: re-seed the ones Redis lost, and flag the ones where it went back. */
  #reconcile(remote: ReadonlyMap<string, RoutingState | null>): void {
    if (this.#closed) return;
    for (const [app, theirs] of remote) {
      let mine: RoutingState;
      try {
        mine = this.#controller.state(app);
      } catch {
        continue; // an app of another config sharing the prefix
      }
      if (theirs === null) {
        void this.#reseed(mine, theirs);
      } else if (theirs.revision < mine.revision) {
        // A stale instance re-seeded an empty Redis first, or a failover lost a write: lift Redis
        // to ours, so the fleet settles on the highest revision any live instance holds.
        const known = this.#regressions.get(app);
        if (known?.remote !== theirs.revision || known.local !== mine.revision) {
          this.#regressions.set(app, { local: mine.revision, remote: theirs.revision, since: known?.since ?? new Date(this.#now()).toISOString() });
          this.#logger.error({ app, local: mine.revision, remote: theirs.revision }, 'redis holds an older revision than this instance routes on (a stale instance re-seeded it, or a failover lost a write); re-seeding it with ours');
        }
        void this.#reseed(mine, theirs);
      } else {
        if (this.#regressions.delete(app)) this.#logger.info({ app, revision: theirs.revision }, 'redis caught up with the revision this instance routes on');
        if (theirs.revision === mine.revision && stateDigest(theirs) !== stateDigest(mine)) void this.#reissue(theirs);
      }
    }
  }

  /**
   * Writes the state we route on into a Redis that has none or an older revision; the script
   * never overwrites the same or a newer revision, so of racing instances the highest wins.
   */
  async #reseed(mine: RoutingState, theirs: RoutingState | null): Promise<void> {
    if (this.#reseeding.has(mine.app)) return;
    this.#reseeding.add(mine.app);
    try {
      const state: RoutingState = {
        ...mine,
        action: 'reseed',
        updatedAt: new Date(this.#now()).toISOString(),
        updatedBy: 'switchyard',
        reason: `redis had no state for the app, or an older revision; re-seeded by ${this.instanceId} from the revision it routes on`,
      };
      const r = await this.#store.reseed(state);
      // an audit line: the stored state changed (the instances that apply it log it as observed)
      if (r.ok) this.#logger.warn({ audit: true, app: mine.app, action: 'reseed', actor: 'switchyard', reason: state.reason, before: { revision: theirs?.revision ?? null }, after: { revision: mine.revision, weights: mine.weights } }, 'redis had lost the routing state (or held an older revision); re-seeded it from this instance');
      else if (r.current !== null) this.#controller.apply(r.current); // Redis had the same or newer: take theirs if newer
    } catch (err) {
      this.#logger.warn({ err, app: mine.app }, 're-seeding redis failed; retrying at the next poll');
    } finally {
      this.#reseeding.delete(mine.app);
    }
  }

  /**
   * One revision number names two states (a write lost by a failover, then another write on the
   * same number): no instance moves sideways on its revision, so what Redis holds is written
   * again as the next revision, which every instance applies. Redis's state wins: it is the one
   * the compare-and-set chain goes on from.
   */
  async #reissue(theirs: RoutingState): Promise<void> {
    if (this.#reseeding.has(theirs.app)) return;
    this.#reseeding.add(theirs.app);
    try {
      const next: RoutingState = {
        ...theirs,
        revision: theirs.revision + 1,
        action: 'reseed',
        updatedAt: new Date(this.#now()).toISOString(),
        updatedBy: 'switchyard',
        reason: `revision ${theirs.revision} named two states in the fleet; ${this.instanceId} re-issued the one redis holds`,
      };
      this.#logger.error({ app: theirs.app, revision: theirs.revision }, 'this instance routes on another state than redis holds at the same revision; re-issuing redis\'s as the next revision');
      const r = await this.#store.compareAndSet(next, theirs.revision);
      if (r.ok) this.#logger.warn({ audit: true, app: next.app, action: 'reseed', actor: 'switchyard', reason: next.reason, before: { revision: theirs.revision }, after: { revision: next.revision, weights: next.weights } }, 're-issued the state redis holds as the next revision');
      else if (r.current !== null) this.#controller.apply(r.current);
    } catch (err) {
      this.#logger.warn({ err, app: theirs.app }, 're-issuing the state failed; retrying at the next poll');
    } finally {
      this.#reseeding.delete(theirs.app);
    }
  }

  /** Every change this instance routes on that it did not write itself gets an audit line too: the trail never depends on the writer's log alone. */
  #auditObserved(state: RoutingState, previous: RoutingState | null): void {
    if (this.#store.wroteHere(state.app, state.revision)) return;
    this.#logger.info(
      { audit: true, observed: true, app: state.app, action: state.action, actor: state.updatedBy, reason: state.reason, before: previous === null ? null : { revision: previous.revision, weights: previous.weights }, after: { revision: state.revision, weights: state.weights, ...(state.changes === undefined ? {} : { changes: state.changes }) } },
      `${state.action} ${state.app} by ${state.updatedBy} (observed by ${this.instanceId})`,
    );
  }
}

/**
 * CountsSource over the fleet: this instance's own counts, live, plus the other live instances'
 * last heartbeats. Answers from memory only.
 */
export function fleetCounts(fleet: Fleet): CountsSource {
  const zero = (): PoolCounts => ({ inflight: 0, upgraded: 0, pinned: 0 });
  const byInstance = (app: string, pool: string): Record<string, PoolCounts> => {
    const out: Record<string, PoolCounts> = { [fleet.instanceId]: fleet.ownCounts(app, pool) };
    // every instance last read, not only the fresh ones: while the figures are unknown the sum is a lower bound, flagged by figuresUnknown
    for (const hb of fleet.lastPeers().values()) out[hb.id] = hb.pools[app]?.[pool] ?? zero();
    return out;
  };
  return {
    poolCounts(app, pool) {
      const sum = zero();
      for (const c of Object.values(byInstance(app, pool))) {
        sum.inflight += c.inflight;
        sum.upgraded += c.upgraded;
        sum.pinned += c.pinned;
      }
      return sum;
    },
    poolCountsByInstance: byInstance,
    // applied: on this very revision *and* the same state (digest); a peer on a higher revision, or on this
    // revision of another state (Redis lost data and was re-seeded), does not route as this answer says
    instances(app, revision) {
      const digest = fleet.ownRevision(app) === revision ? fleet.ownDigest(app) : null;
      const same = (rev: number | undefined, d: string | undefined | null): boolean => rev === revision && digest !== null && d === digest;
      let applied = same(fleet.ownRevision(app), digest) ? 1 : 0;
      const unknown = fleet.figuresUnknown();
      if (unknown !== null) return { applied, total: null, unknown: true, reason: unknown };
      const peers = fleet.peers();
      // a heartbeat without digests comes from an older version (a rolling upgrade): its revision is all it says
      for (const hb of peers.values()) if (same(hb.applied[app], hb.digests === undefined ? digest : hb.digests[app])) applied++;
      return { applied, total: 1 + peers.size };
    },
    figuresUnknown: () => fleet.figuresUnknown(),
  };
}

function parseHeartbeat(text: string): Heartbeat | null {
  try {
    const hb = JSON.parse(text) as Heartbeat;
    if (typeof hb?.id !== 'string' || typeof hb.applied !== 'object' || typeof hb.pools !== 'object' || hb.applied === null || hb.pools === null) return null;
    const pools: Record<string, Record<string, PoolCounts>> = {};
    for (const [app, byPool] of Object.entries(hb.pools)) {
      pools[app] = {};
      for (const [pool, c] of Object.entries(byPool ?? {})) pools[app][pool] = { inflight: num(c?.inflight), upgraded: num(c?.upgraded), pinned: num(c?.pinned) };
    }
    const digests = typeof hb.digests === 'object' && hb.digests !== null ? hb.digests : undefined;
    return { id: hb.id, applied: hb.applied, ...(digests === undefined ? {} : { digests }), pools, at: num(hb.at), ...(hb.stats === undefined ? {} : { stats: hb.stats }) };
  } catch {
    return null;
  }
}

function num(v: unknown): number {
  return typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : 0;
}
