import { EventEmitter } from 'node:events';
import type { AppConfig } from '../config/schema.ts';
import type { Snapshot } from '../routing/snapshot.ts';
import type { EngineKind } from './engine/upstream.ts';
import { AppRuntime, PoolRuntime } from './pool-runtime.ts';
import { RetiringTargets, type RetireListener, type RetiringTarget } from './retiring.ts';
import { Target } from './target.ts';
import { engineFor } from './engine/internals.ts';

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
