import type { Logger } from 'pino';
import type { Runtime } from '../dataplane/runtime.ts';
import { stateDigest } from '../state/digest.ts';
import type { RedisStore } from '../state/redis-store.ts';
import type { RoutingState } from '../state/types.ts';
import type { Controller } from './controller.ts';
import type { PoolCounts } from './counts.ts';
import { HeartbeatRegistry, type FleetRead, type Heartbeat, type Member } from './heartbeats.ts';

export type { Heartbeat } from './heartbeats.ts';

/** Redis holds an older revision than this instance routes on (a failover lost a write). */
export interface Regression {
  readonly local: number;
  readonly remote: number;
  readonly since: string;
}

/** An instance that stopped heartbeating without leaving: its figures are its last ones, and may be wrong. */
export interface Unaccounted {
  readonly id: string;
  /** ISO time of its last heartbeat */
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
  /** ms after its last heartbeat an instance counts as silent (unaccounted). @default 5000 */
  readonly ttl?: number;
  /** ms between reads of the fleet. @default 500 */
  readonly refreshInterval?: number;
  /** extra heartbeat payload: this instance's live stats windows (`LiveStats.exportWindows`) */
  readonly stats?: () => unknown;
}

/** Someone asked for the fleet's figures this recently (ms): the heartbeat hash is read whenever it changes. */
const WANTED_FOR_MS = 30_000;

/** The heartbeat that reports a newly applied revision goes out within this (ms), at a random moment: a fleet's are spread. */
const BEAT_AFTER_APPLY_MS = 100;

/**
 * One instance's membership in a fleet sharing a RedisStore: it heartbeats its applied
 * revisions and pool counts into one hash (heartbeats.ts), keeps an in-memory view of the other
 * instances (refreshed in the background, so no request or API call ever waits on Redis),
 * re-seeds an empty Redis from the state it routes on, and reports when Redis went back to an
 * older revision.
 *
 * Absence is never taken as an answer: an instance that stops heartbeating without leaving (a
 * crash, a partition) stays in the figures, *unaccounted*, until it leaves, is seen again or
 * `store.unaccountedWindow` passes; a registry Redis re-created (it restarted empty) makes the
 * figures unknown until every live instance had a heartbeat's time to report again.
 */
export class Fleet {
  readonly instanceId: string;
  readonly #store: RedisStore;
  readonly #controller: Controller;
  readonly #runtime: Runtime;
  readonly #logger: Logger;
  readonly #now: () => number;
  readonly #ttl: number;
  readonly #heartbeatInterval: number;
  readonly #refreshInterval: number;
  readonly #stats: (() => unknown) | undefined;
  readonly #registry: HeartbeatRegistry;
  /** the other instances (live or silent), as last read */
  #members: ReadonlyMap<string, Member> = new Map();
  /** local time of the last successful read of the fleet */
  #peersReadAt = 0;
  /** local time the last read started */
  #readStartedAt = 0;
  /** Redis's clock minus ours at the last read */
  #offset = 0;
  /** Redis's time when the registry was created, as last read */
  #born = 0;
  /** the ids reported silent, so each is logged once */
  readonly #reportedSilent = new Set<string>();
  #wantedUntil = 0;
  /** a read of the fleet older than this (ms) no longer vouches for its figures */
  readonly #staleAfter: number;
  /** app → pool → the revision since which the pool has been at weight 0 (as this instance saw it: never too low) */
  readonly #emptied = new Map<string, Map<string, number>>();
  readonly #regressions = new Map<string, Regression>();
  readonly #reseeding = new Set<string>();
  readonly #timers: NodeJS.Timeout[] = [];
  #beatSoon: NodeJS.Timeout | null = null;
  /** local time the last early (post-apply) beat was scheduled */
  #beatSoonAt = Number.NEGATIVE_INFINITY;
  #closed = false;
  readonly #onSync = (remote: ReadonlyMap<string, RoutingState | null>): void => this.#reconcile(remote);
  readonly #onApplied = (state: RoutingState, previous: RoutingState | null): void => {
    this.#auditObserved(state, previous);
    this.#noteEmptied(state, previous);
    // tell the fleet soon rather than at the next tick, so `instances.applied` converges fast; but
    // not at once: every instance gets the change at the same moment, and n heartbeats sent right
    // away take the CPU (on a host running many instances) from the ones still applying it
    // At most one such early beat per heartbeat interval: in a burst of writes (a rollout's steps,
    // a script) the later ones ride on the next periodic beat, within an interval. Each beat costs
    // an instance a timer wake-up, a Redis round trip and a reply wake-up (about 0.6 ms of CPU on a
    // loaded 2-core host, measured with and without it), and every instance pays it.
    const now = this.#now();
    if (this.#beatSoon !== null || now - this.#beatSoonAt < this.#heartbeatInterval) return;
    this.#beatSoonAt = now;
    this.#beatSoon = setTimeout(() => {
      this.#beatSoon = null;
      void this.heartbeat();
    }, Math.floor(Math.random() * BEAT_AFTER_APPLY_MS)).unref();
  };

  constructor(opts: FleetOptions) {
    this.instanceId = opts.instanceId;
    this.#store = opts.store;
    this.#controller = opts.controller;
    this.#runtime = opts.runtime;
    this.#logger = opts.logger;
    this.#now = opts.now ?? Date.now;
    this.#ttl = opts.ttl ?? 5000;
    this.#heartbeatInterval = opts.heartbeatInterval ?? 1000;
    this.#refreshInterval = opts.refreshInterval ?? 500;
    this.#stats = opts.stats;
    this.#registry = new HeartbeatRegistry(this.#store.client, this.#store.keys, { id: this.instanceId, ttl: this.#ttl, window: Math.max(this.#store.unaccountedWindow, this.#ttl) });
    for (const s of this.#controller.allStates()) this.#noteEmptied(s, null);
    this.#store.on('sync', this.#onSync);
    this.#controller.on('applied', this.#onApplied);
    this.#timers.push(setInterval(() => void this.heartbeat(), this.#heartbeatInterval).unref());
    this.#timers.push(setInterval(() => void this.refresh(), this.#refreshInterval).unref());
    // idle, each heartbeat reads the fleet: two of them without a read is a Redis that does not answer
    this.#staleAfter = Math.max(4 * this.#refreshInterval, 2 * this.#heartbeatInterval);
    this.#wantedUntil = this.#now() + WANTED_FOR_MS;
    void this.heartbeat();
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

  /** The fleet's figures are being looked at: read the heartbeat hash whenever it changes, for a while. */
  want(): void {
    const now = this.#now();
    const idle = now >= this.#wantedUntil;
    this.#wantedUntil = now + WANTED_FOR_MS;
    if (idle) void this.refresh();
  }

  /**
   * Why the fleet-wide figures cannot be known now (Redis unreachable, the heartbeats not read
   * lately, a registry Redis just re-created), or null when every instance's last heartbeat was
   * read. While unknown, a sum over "the peers we could read" would be a guess that looks like an answer.
   */
  figuresUnknown(): string | null {
    if (!this.#store.connected) return "redis is unreachable: the other instances' figures cannot be read";
    const now = this.#now();
    const age = now - this.#peersReadAt;
    if (age > this.#staleAfter) return this.#peersReadAt === 0 ? "the other instances' heartbeats have not been read yet" : `the other instances' heartbeats could not be read for ${(age / 1000).toFixed(1)} s`;
    // every live instance heartbeats within an interval of the registry's birth; until then an empty read means nothing
    const bornAgo = now + this.#offset - this.#born;
    if (bornAgo < this.#heartbeatInterval * 1.5) return `the fleet's heartbeat registry in redis is new (created ${new Date(this.#born - this.#offset).toISOString()}: a new fleet, or a redis that restarted empty); waiting for every instance to report`;
    return null;
  }

  /** The other instances as last read, however old, silent ones included (pair with `figuresUnknown`). */
  lastPeers(): ReadonlyMap<string, Heartbeat> {
    return new Map([...this.#members].map(([id, m]) => [id, m.hb]));
  }

  /**
   * The other instances heartbeating now: as last read, without the silent ones, and none once no
   * read succeeded for a TTL (Redis down). Asking marks the figures wanted (read whenever they
   * change, for a while), unless `passive`: a background job (the stats sampler) takes what the
   * heartbeats brought, at most a few seconds old, without making every instance read every
   * other's heartbeat on every change (quadratic in the fleet).
   */
  peers(opts: { passive?: boolean } = {}): ReadonlyMap<string, Heartbeat> {
    if (opts.passive !== true) this.want();
    const now = this.#now();
    if (now - this.#peersReadAt > this.#ttl) return new Map();
    return new Map([...this.#members].filter(([, m]) => this.#silentSince(m, now) === null).map(([id, m]) => [id, m.hb]));
  }

  /** Instances that stopped heartbeating without leaving, oldest silence first. */
  unaccounted(): Unaccounted[] {
    const now = this.#now();
    const out: { id: string; since: number }[] = [];
    for (const [id, m] of this.#members) {
      const since = this.#silentSince(m, now);
      if (since !== null) out.push({ id, since });
    }
    return out.sort((a, b) => a.since - b.since).map((u) => ({ id: u.id, since: new Date(u.since).toISOString() }));
  }

  /**
   * Why `pool` of `app` cannot be called drained whatever the counts say: an instance that has
   * not applied the revision that emptied it (it may still send requests there), or one that is
   * silent and either had not applied it or still carried requests there when last heard of.
   */
  drainUnknown(app: string, pool: string): string[] {
    let state: RoutingState;
    try {
      state = this.#controller.state(app);
    } catch {
      return [];
    }
    if ((state.weights[pool] ?? 0) > 0) return [];
    const emptied = this.#emptied.get(app)?.get(pool) ?? state.revision;
    const out: string[] = [];
    const own = this.ownRevision(app);
    if (own < emptied) out.push(`instance ${this.instanceId} has not applied revision ${emptied}, which emptied the pool (it routes on ${own})`);
    const now = this.#now();
    for (const [id, m] of this.#members) {
      const revision = m.hb.applied[app];
      if (revision === undefined) continue; // it does not route this app
      const c = m.hb.pools[app]?.[pool];
      const busy = c !== undefined && (c.inflight > 0 || c.upgraded > 0);
      const since = this.#silentSince(m, now);
      if (since !== null) {
        if (revision < emptied || busy) out.push(`unknown: instance ${id} unreachable since ${new Date(since).toISOString()} (${revision < emptied ? `it routed on revision ${revision}, before revision ${emptied} emptied the pool` : 'it still carried requests there'})`);
      } else if (revision < emptied) {
        out.push(`instance ${id} has not applied revision ${emptied}, which emptied the pool (it routes on ${revision})`);
      }
    }
    return out;
  }

  regressions(): ReadonlyMap<string, Regression> {
    return this.#regressions;
  }

  /** Writes this instance's heartbeat and takes in the glance of the fleet it brings back; never rejects (a miss is retried on the next tick). */
  async heartbeat(): Promise<void> {
    if (this.#closed || !this.#store.connected) return;
    const started = this.#now();
    try {
      this.#took(await this.#registry.beat(this.own(), started < this.#wantedUntil), started);
    } catch (err) {
      this.#logger.debug({ err }, 'heartbeat failed');
    }
  }

  /**
   * Re-reads the fleet between heartbeats (a glance, the heartbeat hash only when it changed) while
   * the figures are wanted — otherwise each heartbeat's glance is the read; never rejects (the
   * last view stands until it ages out).
   */
  async refresh(): Promise<void> {
    if (this.#closed || !this.#store.connected) return;
    const started = this.#now();
    const wanted = started < this.#wantedUntil;
    // nobody looking: the heartbeats read the fleet, unless they stopped coming back
    if (!wanted && started - this.#readStartedAt < 1.5 * this.#heartbeatInterval) return;
    try {
      this.#took(await this.#registry.read(wanted), started);
    } catch (err) {
      this.#logger.debug({ err }, 'reading the fleet heartbeats failed');
    }
  }

  #took(read: FleetRead, started: number): void {
    if (this.#closed) return;
    const now = this.#now();
    this.#readStartedAt = Math.max(this.#readStartedAt, started);
    this.#members = read.members;
    this.#offset = read.now - now;
    this.#born = read.born;
    this.#peersReadAt = now;
    this.#reportSilence(now);
  }

  /** For `/readyz` details. */
  details(): Record<string, unknown> {
    const unaccounted = this.unaccounted();
    return {
      instance: this.instanceId,
      redis: { connected: this.#store.connected, subscribed: this.#store.subscribed },
      // null while the other instances cannot be read: a count of the ones we happen to know would look like an answer
      instances: this.figuresUnknown() === null ? 1 + this.#members.size : null,
      ...(unaccounted.length === 0 ? {} : { unaccounted }),
      regressions: Object.fromEntries(this.#regressions),
    };
  }

  /** Stops the timers and removes this instance from the fleet, so the others count it gone at once (not silent). */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const t of this.#timers) clearInterval(t);
    if (this.#beatSoon !== null) clearTimeout(this.#beatSoon);
    this.#store.off('sync', this.#onSync);
    this.#controller.off('applied', this.#onApplied);
    if (!this.#store.connected) return;
    await this.#registry.leave().catch(() => undefined);
  }

  /** Local time since which `m` has been silent, or null while it heartbeats. */
  #silentSince(m: Member, now: number): number | null {
    return now + this.#offset - m.lastSeen > this.#ttl ? m.lastSeen - this.#offset : null;
  }

  #reportSilence(now: number): void {
    for (const [id, m] of this.#members) {
      const since = this.#silentSince(m, now);
      if (since === null) {
        if (this.#reportedSilent.delete(id)) this.#logger.info({ instance: id }, 'instance heartbeats again: its figures count again');
      } else if (!this.#reportedSilent.has(id)) {
        this.#reportedSilent.add(id);
        this.#logger.warn({ instance: id, since: new Date(since).toISOString(), lost: m.lost === true }, 'instance stopped heartbeating without leaving (a crash or a partition): unaccounted, so the pools it could route to are not called drained, until it is seen again, leaves or store.unaccountedWindow passes');
      }
    }
    for (const id of this.#reportedSilent) if (!this.#members.has(id)) this.#reportedSilent.delete(id);
  }

  /** Keeps, per pool at weight 0, the revision since which it has been there (a later one when unsure: stricter, never looser). */
  #noteEmptied(state: RoutingState, previous: RoutingState | null): void {
    let pools = this.#emptied.get(state.app);
    if (pools === undefined) this.#emptied.set(state.app, (pools = new Map()));
    for (const [pool, bp] of Object.entries(state.weights)) {
      if (bp > 0) pools.delete(pool);
      else if (previous === null || (previous.weights[pool] ?? 0) > 0 || !pools.has(pool)) pools.set(pool, state.revision);
    }
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

export { fleetCounts } from './fleet-counts.ts';
