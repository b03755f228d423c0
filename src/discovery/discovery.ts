import type { Logger } from 'pino';
import type { AppConfig, DiscoverConfig, DiscoveryConfig } from '../config/schema.ts';
import { unusableTarget } from './addresses.ts';
import { createResolver, describe, lookup as dnsLookup, LookupError } from './resolve.ts';

/** One lookup of a pool's `discover` (resolve.ts's `lookup` bound to a resolver; tests pass their own). */
export type Lookup = (spec: DiscoverConfig) => Promise<string[]>;

/** Where discovered targets go: `Runtime.setDiscoveredTargets` (src/dataplane/runtime.ts). */
export interface DiscoveredTargetsSink {
  setDiscoveredTargets(app: string, pool: string, urls: readonly string[]): boolean;
}

/** What the admin views show of one pool's discovery (AppState `pools.NAME.discovery`). */
export interface DiscoveryStatus {
  /** `A/AAAA NAME:PORT` or `SRV NAME` */
  lookup: string;
  /** ms between lookups */
  interval: number;
  /** the answer in use: the last successful lookup's targets (sorted), [] before the first one */
  targets: string[];
  /** ISO time of the last successful lookup, or null */
  answeredAt: string | null;
  /** the latest lookup: null before the first one ends */
  lastLookup: { at: string; ok: boolean; error: string | null } | null;
  /** the latest lookup failed: `targets` is an older answer, kept */
  failing: boolean;
  /** failed lookups in a row */
  consecutiveFailures: number;
  /** what the last answer named that cannot be a target (0.0.0.0, multicast, link-local, port 0…), with why: never used */
  dropped: { url: string; reason: string }[];
}

/** On each discovered target in `targetStates`: whether the answer that names it is current. */
export interface TargetDiscoveryView {
  /** `A/AAAA NAME:PORT` or `SRV NAME` */
  lookup: string;
  /** the latest lookup failed: the target stays from the last answer (answeredAt) */
  stale: boolean;
  /** ISO time of the answer that names it */
  answeredAt: string | null;
  /** why the latest lookup failed, or null */
  error: string | null;
  /** set on a target the answer named and discovery dropped: why it cannot be a target */
  dropped?: string;
}

export interface DiscoveryOptions {
  readonly config: DiscoveryConfig;
  /** the apps' current definitions (the routing snapshot's); a pool with `discover` gets a poller */
  readonly definitions: () => Iterable<AppConfig>;
  readonly sink: DiscoveredTargetsSink;
  readonly logger: Logger;
  /** @default Date.now */
  readonly now?: () => number;
  /** @default node:dns lookups on `config.servers` (resolve.ts) */
  readonly lookup?: Lookup;
  /** told after each lookup, to count it (metrics.ts) */
  readonly onLookup?: (app: string, pool: string, ok: boolean) => void;
  /** told when a pool's discovered targets changed (the primary of a worker group forwards them) */
  readonly onTargets?: (app: string, pool: string, urls: readonly string[]) => void;
}

/** One pool's poller: a lookup every `interval`, the last good answer kept. */
class PoolPoller {
  readonly app: string;
  readonly pool: string;
  readonly spec: DiscoverConfig;
  readonly key: string;
  timer: NodeJS.Timeout | null = null;
  stopped = false;
  /** the first lookup ended (answered or failed): `settled()` waits for it */
  readonly first = Promise.withResolvers<void>();
  targets: string[] = [];
  answeredAt: number | null = null;
  lastLookup: { at: number; ok: boolean; error: string | null } | null = null;
  consecutiveFailures = 0;
  dropped: { url: string; reason: string }[] = [];

  constructor(app: string, pool: string, spec: DiscoverConfig) {
    this.app = app;
    this.pool = pool;
    this.spec = spec;
    this.key = JSON.stringify(spec);
  }
}

/**
 * What an answer gives the pool: its usable addresses, at most `max` of them, the first in the
 * answer's order (lookup() sorts it, so every instance of a fleet keeps the same ones); every
 * other address is dropped, with why.
 */
export function takeTargets(answer: readonly string[], max: number): { urls: string[]; dropped: { url: string; reason: string }[] } {
  const urls: string[] = [];
  const dropped: { url: string; reason: string }[] = [];
  for (const url of answer) {
    const reason = unusableTarget(url);
    if (reason !== null) dropped.push({ url, reason });
    else if (urls.length < max) urls.push(url);
    else dropped.push({ url, reason: `beyond discover.maxTargets (${max})` });
  }
  return { urls, dropped };
}

/**
 * DNS discovery of every pool with `discover` (README "Discovery"): each process resolves for
 * itself, every `interval`, one lookup at a time per pool. A lookup's targets go to the runtime,
 * which adds new ones and retires vanished ones with the zero-loss rules of `DELETE …/targets`; a
 * failed lookup changes nothing (the last answer keeps serving) and is shown and counted.
 * Follows the definitions: `follow()` after each change starts, restarts or stops pollers.
 */
export class Discovery {
  private readonly opts: DiscoveryOptions;
  private readonly now: () => number;
  private readonly lookup: Lookup;
  private readonly pollers = new Map<string, PoolPoller>();
  private closed = false;

  constructor(opts: DiscoveryOptions) {
    this.opts = opts;
    this.now = opts.now ?? Date.now;
    if (opts.lookup !== undefined) {
      this.lookup = opts.lookup;
    } else {
      const resolver = createResolver(opts.config);
      this.lookup = (spec) => dnsLookup(resolver, spec);
    }
  }

  /** The current `discover` spec of app/pool in the definitions, or undefined. */
  private specOf(app: string, pool: string): DiscoverConfig | undefined {
    for (const a of this.opts.definitions()) if (a.name === app) return Object.hasOwn(a.pools, pool) ? a.pools[pool]?.discover : undefined;
    return undefined;
  }

  /** Makes the pollers match the definitions: new `discover` starts one, a changed one restarts it, a removed one stops it. */
  follow(): void {
    if (this.closed) return;
    const wanted = new Map<string, { app: string; pool: string; spec: DiscoverConfig }>();
    for (const a of this.opts.definitions()) {
      for (const [pool, p] of Object.entries(a.pools)) if (p.discover !== undefined) wanted.set(`${a.name}\0${pool}`, { app: a.name, pool, spec: p.discover });
    }
    const replaced = new Map<string, PoolPoller>();
    for (const [k, poller] of this.pollers) {
      const w = wanted.get(k);
      if (w !== undefined && JSON.stringify(w.spec) === poller.key) continue;
      this.stop(poller);
      this.pollers.delete(k);
      // no discover any more: its targets leave (retire); a changed spec keeps them until its first answer
      if (w === undefined) this.apply(poller, []);
      else replaced.set(k, poller);
    }
    for (const [k, w] of wanted) {
      if (this.pollers.has(k)) continue;
      const poller = new PoolPoller(w.app, w.pool, w.spec);
      const old = replaced.get(k);
      if (old !== undefined) {
        // the old answer still serves: the views show it (and its time) until the new name answers
        poller.targets = old.targets;
        poller.answeredAt = old.answeredAt;
      }
      this.pollers.set(k, poller);
      this.opts.logger.info({ app: w.app, pool: w.pool, lookup: describe(w.spec), interval: w.spec.interval }, 'discovery: resolving the pool\'s targets');
      this.schedule(poller, 0);
    }
  }

  private schedule(poller: PoolPoller, ms: number): void {
    if (poller.stopped || this.closed) return;
    poller.timer = setTimeout(() => {
      poller.timer = null;
      void this.poll(poller).finally(() => {
        poller.first.resolve();
        this.schedule(poller, poller.spec.interval);
      });
    }, ms);
    poller.timer.unref();
  }

  private async poll(poller: PoolPoller): Promise<void> {
    const where = { app: poller.app, pool: poller.pool, lookup: describe(poller.spec) };
    let urls: string[];
    try {
      const answer = await this.withDeadline(this.lookup(poller.spec));
      let dropped: { url: string; reason: string }[];
      ({ urls, dropped } = takeTargets(answer, poller.spec.maxTargets));
      const changed = JSON.stringify(dropped) !== JSON.stringify(poller.dropped);
      if (!poller.stopped) poller.dropped = dropped;
      // once per change of what is dropped, not at every lookup
      // (the first 20 of them: an answer beyond maxTargets may drop thousands; the views list them all)
      if (dropped.length > 0 && changed) this.opts.logger.warn({ ...where, dropped: dropped.slice(0, 20), droppedCount: dropped.length }, 'discovery: addresses of the answer are not used: they cannot be targets, or are beyond discover.maxTargets');
      // an answer of nothing but such addresses is no answer: the pool keeps its last one, as for an empty answer
      if (urls.length === 0 && dropped.length > 0) throw new LookupError(`every address of the answer is unusable (${dropped.map((d) => d.url).join(', ')})`);
    } catch (err) {
      if (poller.stopped) return;
      const error = err instanceof Error ? err.message : String(err);
      poller.lastLookup = { at: this.now(), ok: false, error };
      poller.consecutiveFailures++;
      this.opts.onLookup?.(poller.app, poller.pool, false);
      // once per failure streak at warn, then quietly: a DNS outage must not flood the log
      if (poller.consecutiveFailures === 1) this.opts.logger.warn({ ...where, error, kept: poller.targets }, 'discovery: lookup failed, the pool keeps its last answer');
      else this.opts.logger.debug({ ...where, error, failures: poller.consecutiveFailures }, 'discovery: lookup failed again');
      return;
    }
    if (poller.stopped) return;
    if (poller.consecutiveFailures > 0) this.opts.logger.info({ ...where, failures: poller.consecutiveFailures }, 'discovery: lookups answer again');
    poller.lastLookup = { at: this.now(), ok: true, error: null };
    poller.answeredAt = poller.lastLookup.at;
    poller.consecutiveFailures = 0;
    this.opts.onLookup?.(poller.app, poller.pool, true);
    // a definition change may have removed the pool meanwhile: never resurrect it
    if (JSON.stringify(this.specOf(poller.app, poller.pool)) !== poller.key) return;
    this.apply(poller, urls);
  }

  /** A lookup that c-ares has not settled by twice the timeout (its retries) fails here; it ends on its own. */
  private withDeadline<T>(p: Promise<T>): Promise<T> {
    const ms = this.opts.config.timeout * 2;
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
      timer.unref();
    });
    return Promise.race([p, deadline]).finally(() => clearTimeout(timer));
  }

  private apply(poller: PoolPoller, urls: string[]): void {
    const before = poller.targets;
    poller.targets = urls;
    const added = urls.filter((u) => !before.includes(u));
    const removed = before.filter((u) => !urls.includes(u));
    if (added.length === 0 && removed.length === 0) return;
    this.opts.logger.info({ app: poller.app, pool: poller.pool, added, removed, targets: urls }, 'discovery: the pool\'s discovered targets changed');
    this.opts.sink.setDiscoveredTargets(poller.app, poller.pool, urls);
    this.opts.onTargets?.(poller.app, poller.pool, urls);
  }

  private stop(poller: PoolPoller): void {
    poller.stopped = true;
    if (poller.timer !== null) clearTimeout(poller.timer);
    poller.timer = null;
    poller.first.resolve();
  }

  /** Resolves once every pool's first lookup ended (answered or failed), so an instance starts with its discovered targets. */
  async settled(): Promise<void> {
    await Promise.all([...this.pollers.values()].map((p) => p.first.promise));
  }

  /** The pool's discovery, or undefined when it has no `discover`. */
  status(app: string, pool: string): DiscoveryStatus | undefined {
    const p = this.pollers.get(`${app}\0${pool}`);
    if (p === undefined) return undefined;
    const iso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString());
    return {
      lookup: describe(p.spec),
      interval: p.spec.interval,
      targets: [...p.targets],
      answeredAt: iso(p.answeredAt),
      lastLookup: p.lastLookup === null ? null : { at: iso(p.lastLookup.at) as string, ok: p.lastLookup.ok, error: p.lastLookup.error },
      failing: p.lastLookup?.ok === false,
      consecutiveFailures: p.consecutiveFailures,
      dropped: p.dropped.map((d) => ({ ...d })),
    };
  }

  /** Every pool with discovery, for metrics. */
  all(): { app: string; pool: string; status: DiscoveryStatus }[] {
    return [...this.pollers.values()].map((p) => ({ app: p.app, pool: p.pool, status: this.status(p.app, p.pool) as DiscoveryStatus }));
  }

  /** Stops every poller; a lookup under way ends on its own (its timers hold no process open) and its answer is dropped. */
  close(): void {
    this.closed = true;
    for (const p of this.pollers.values()) this.stop(p);
  }
}
