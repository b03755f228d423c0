import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import type { AppConfig, Config, HealthConfig } from '../config/schema.ts';
import type { WriteGuard } from '../control/controller.ts';
import type { DiscoveryStatus, TargetDiscoveryView } from '../discovery/discovery.ts';
import type { AppRuntime, PoolRuntime } from '../dataplane/pool-runtime.ts';
import type { Runtime } from '../dataplane/runtime.ts';
import type { Target } from '../dataplane/target.ts';
import { SwitchyardError } from '../errors.ts';
import { ActiveChecker, type CheckedTarget, type LastCheck, type Timers } from './active.ts';
import { OutlierDetector } from './passive.ts';
import { HttpProbe, type Probe } from './probe.ts';

/** `unknown`: the app has no `health` config, so nothing is checked (and nothing refused). */
export type PoolHealth = 'healthy' | 'unhealthy' | 'unknown';
/** `down` by active checks (wins over `ejected`), `ejected` by passive checks, else `up`. */
/** `dropped`: named by a discovery answer but not an address a target can have (src/discovery/addresses.ts); never routed to */
export type TargetState = 'up' | 'down' | 'ejected' | 'dropped';

export interface TargetStateView {
  url: string;
  state: TargetState;
  /** with `health.versionFrom`: the version its health endpoint last reported, or null */
  reportedVersion?: string | null;
  /** ISO time an ejected target returns */
  ejectedUntil?: string;
  /** the last active check; null before the first one ends */
  lastCheck?: LastCheckView | null;
  /** set on a target found by the pool's `discover` (src/discovery/view.ts) */
  discovery?: TargetDiscoveryView;
}

export interface LastCheckView {
  /** ISO time the check ended */
  at: string;
  ok: boolean;
  status: number | null;
  error: string | null;
}

export interface PoolHealthView {
  /** what the 409 gate goes by: false when no target of the pool is up and in rotation */
  healthy: boolean;
  health: PoolHealth;
  /** in the order of the pool's `targets` */
  targets: TargetStateView[];
  /** the pool's DNS discovery, when it has `discover` (src/discovery/view.ts) */
  discovery?: DiscoveryStatus;
}

/** What the admin API reads of the health checks (views, the version check). */
export interface HealthSource {
  /** throws UNKNOWN_APP / UNKNOWN_POOL */
  poolHealth(app: string, pool: string): PoolHealthView;
  /** resolves when every target of `pool` that passes a fresh check reports `expected`; throws VERSION_MISMATCH (409) otherwise */
  verifyVersion(app: string, pool: string, expected: string): Promise<VersionReport>;
}

export interface VersionReport {
  pool: string;
  expected: string;
  targets: { url: string; passed: boolean; reportedVersion: string | null; error: string | null }[];
}

/** `state` of one target by this instance's checks. */
export function targetState(t: Target, now: number): TargetState {
  if (!t.healthy) return 'down';
  return t.ejectedUntil > now ? 'ejected' : 'up';
}

/** A target that takes traffic as far as health checks go (the refused-connection backoff aside). */
function inRotation(t: Target, now: number): boolean {
  return t.healthy && t.ejectedUntil <= now;
}

/** Health figures of one target for metrics: gauges and a counter, read at scrape time. */
export interface HealthFigure {
  app: string;
  pool: string;
  target: string;
  /** whether the app has `health` config at all */
  checked: boolean;
  state: TargetState;
  /** 1 up, 0 down or ejected */
  up: 0 | 1;
  ejected: 0 | 1;
  /** times passive checks ejected it since start */
  ejections: number;
  consecutiveFailures: number;
  reportedVersion: string | null;
}

/**
 * Every target's health for the metrics module, straight from the Runtime's fields: O(targets),
 * no allocation beyond the answer. `target` is the configured URL (bounded cardinality).
 */
export function healthFigures(runtime: Runtime, _config: Config, now: number): HealthFigure[] {
  const out: HealthFigure[] = [];
  runtime.apps.forEach((app) => {
    const checked = app.config.health !== undefined;
    for (const pool of app.pools) {
      for (const t of pool.targets) {
        const state = targetState(t, now);
        out.push({ app: app.name, pool: pool.name, target: t.url, checked, state, up: state === 'up' ? 1 : 0, ejected: t.ejectedUntil > now ? 1 : 0, ejections: t.ejections, consecutiveFailures: t.consecutiveFailures, reportedVersion: t.reportedVersion });
      }
    }
  });
  return out;
}

export interface HealthMonitorOptions {
  readonly config: Config;
  readonly runtime: Runtime;
  readonly logger: Logger;
  /** @default Date.now */
  readonly now?: () => number;
  /** @default HTTP GET of `health.path` (probe.ts) */
  readonly probe?: Probe;
  readonly timers?: Timers;
}

/** `change` event: a target went up, down or was ejected. */
export interface HealthChange {
  app: string;
  pool: string;
  target: string;
  state: TargetState;
  reason: string | null;
}

/**
 * The health of every target of every app with `health` config: active checks (active.ts),
 * passive outlier detection wired into the data plane (passive.ts), the 409 write gate, the
 * version check and the views. Figures are this instance's own: in a fleet every instance checks
 * every target itself, as HAProxy and Envoy do.
 *
 * Events: `change` (HealthChange).
 */
export class HealthMonitor extends EventEmitter implements HealthSource {
  private readonly runtime: Runtime;
  private readonly logger: Logger;
  private readonly now: () => number;
  private readonly http: HttpProbe | null;
  private readonly active: ActiveChecker;
  private readonly checkOf = new Map<Target, CheckedTarget>();
  /** the passive checks' stall sweeps, one per pool (they run from construction, with the data plane) */
  private readonly sweeps: { detector: OutlierDetector; pool: PoolRuntime; every: number }[] = [];
  private readonly sweepTimers: Timers;
  private sweepTimer: unknown = null;
  /** when the last stall sweep ran (`now`), 0 before the first: lets a test wait for a sweep instead of sleeping */
  lastSweepAt = 0;
  private closed = false;

  constructor(opts: HealthMonitorOptions) {
    super();
    this.runtime = opts.runtime;
    this.logger = opts.logger;
    this.now = opts.now ?? Date.now;
    this.http = opts.probe === undefined ? new HttpProbe() : null;
    this.sweepTimers = opts.timers ?? { setTimeout: (fn, ms) => setTimeout(fn, ms).unref(), clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout) };
    const probe = opts.probe ?? (this.http as HttpProbe).probe;
    this.active = new ActiveChecker({
      checks: [],
      probe,
      now: this.now,
      ...(opts.timers === undefined ? {} : { timers: opts.timers }),
      onTransition: ({ check, up, error }) => {
        const where = { app: check.app, pool: check.pool, target: check.target.url };
        if (up) this.logger.info(where, 'target up: health checks pass again');
        else this.logger.warn({ ...where, error }, 'target down: health checks fail');
        this.emit('change', { ...where, state: up ? targetState(check.target, this.now()) : 'down', reason: error } satisfies HealthChange);
        if (!up) this.runtime.pool(check.app, check.pool)?.resendFrom(check.target);
      },
    });
    for (const app of opts.runtime.apps) for (const pool of app.pools) this.follow(app, pool);
    // targets join and leave pools while the process runs (live definitions, discovery)
    opts.runtime.on('targets', ({ app, pool }) => this.follow(app, pool));
  }

  /**
   * Makes one pool's checks match its targets and its app's `health` settings: a target that
   * joined is checked at once (it starts up, as at a fresh start), one that left stops being
   * checked, and the pool's passive detector is rebuilt over the new list.
   */
  private follow(app: AppRuntime, pool: PoolRuntime): void {
    const health = app.config.health;
    const wanted = new Set(health === undefined ? [] : pool.targets);
    for (const [target, c] of this.checkOf) {
      if (c.app !== app.name || c.pool !== pool.name) continue;
      if (wanted.has(target) && c.health === health) continue;
      this.active.remove(c);
      this.checkOf.delete(target);
    }
    if (health !== undefined) {
      for (const target of pool.targets) {
        if (this.checkOf.has(target)) continue;
        const c: CheckedTarget = { app: app.name, pool: pool.name, target, health, passes: 0, failures: 0, last: null };
        this.checkOf.set(target, c);
        this.active.add(c);
      }
    }
    this.followPassive(app, pool, health);
  }

  private followPassive(app: AppRuntime, pool: PoolRuntime, health: HealthConfig | undefined): void {
    const i = this.sweeps.findIndex((s) => s.pool === pool);
    if (i !== -1) this.sweeps.splice(i, 1);
    const passive = health?.passive ?? null;
    if (passive === null || pool.targets.length === 0) {
      for (const t of pool.targets) t.outlier = null;
      return;
    }
    const where = { app: app.name, pool: pool.name };
    const detector = new OutlierDetector(pool.targets, passive, {
      now: this.now,
      onEject: (e) => {
        const reason = e.stalled ? `${e.failures} requests waiting over ${passive.stallAfter} ms, none answered` : `${e.failures} consecutive failures`;
        this.logger.warn({ ...where, target: e.target.url, failures: e.failures, stalled: e.stalled, reason, until: new Date(e.until).toISOString() }, 'target ejected by passive health checks');
        this.emit('change', { ...where, target: e.target.url, state: 'ejected', reason } satisfies HealthChange);
        pool.resendFrom(e.target);
      },
      onHeld: (t) => this.logger.warn({ ...where, target: t.url, maxEjectedShare: passive.maxEjectedShare }, 'target failing but not ejected: the pool is at its ejection limit'),
    });
    for (const t of pool.targets) t.outlier = detector;
    if (passive.stallAfter > 0) {
      this.sweeps.push({ detector, pool, every: stallSweepMs(passive.stallAfter) });
      if (this.sweepTimer === null) this.scheduleSweep();
    }
  }

  /** Starts the active checks (the passive ones run from construction, with the data plane). */
  start(): void {
    this.active.start();
  }

  /** One timer for every pool's stall sweep, at the shortest interval any of them asks. */
  private scheduleSweep(): void {
    this.sweepTimer = null;
    if (this.sweeps.length === 0 || this.closed) return;
    const every = Math.min(...this.sweeps.map((s) => s.every));
    this.sweepTimer = this.sweepTimers.setTimeout(() => {
      for (const s of this.sweeps) s.detector.sweep(s.pool.open);
      this.lastSweepAt = this.now();
      this.scheduleSweep();
    }, every);
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.sweepTimer !== null) this.sweepTimers.clearTimeout(this.sweepTimer);
    this.sweeps.length = 0;
    await this.active.close();
    this.http?.close();
  }

  private pools(app: string, pool: string): { cfg: AppConfig; targets: readonly Target[] } {
    const cfg = this.runtime.byName.get(app)?.config;
    if (cfg === undefined) throw new SwitchyardError('UNKNOWN_APP', `unknown app "${app}"`);
    const p = this.runtime.pool(app, pool);
    if (p === undefined || !Object.hasOwn(cfg.pools, pool)) throw new SwitchyardError('UNKNOWN_POOL', `app "${app}" has no pool "${pool}"`, { details: [{ path: 'pool', message: `unknown pool (pools: ${Object.keys(cfg.pools).join(', ')})` }] });
    return { cfg, targets: p.targets };
  }

  /** A pool is healthy when one of its targets is up and not ejected; always, without `health` config. */
  poolHealthy(app: string, pool: string): boolean {
    const { cfg, targets } = this.pools(app, pool);
    if (cfg.health === undefined) return true;
    const now = this.now();
    return targets.some((t) => inRotation(t, now));
  }

  poolHealth(app: string, pool: string): PoolHealthView {
    const { cfg, targets } = this.pools(app, pool);
    const now = this.now();
    const checked = cfg.health !== undefined;
    const withVersion = cfg.health?.versionFrom !== undefined;
    const views = targets.map((t) => {
      const v: TargetStateView = { url: t.url, state: targetState(t, now) };
      if (withVersion) v.reportedVersion = t.reportedVersion;
      if (t.ejectedUntil > now) v.ejectedUntil = new Date(t.ejectedUntil).toISOString();
      if (checked) v.lastCheck = lastCheckView(this.checkOf.get(t)?.last ?? null);
      return v;
    });
    const healthy = !checked || targets.some((t) => inRotation(t, now));
    return { healthy, health: checked ? (healthy ? 'healthy' : 'unhealthy') : 'unknown', targets: views };
  }

  /**
   * The 409 gate (ControllerOptions.guard): refuses a write that raises the weight of a pool with
   * no healthy target. A write that keeps or lowers such a pool's weight passes, so an operator
   * can always move traffic away from a sick pool without `force`.
   */
  readonly guard: WriteGuard = (app, weights, opts, current) => {
    if (app.health === undefined) return undefined;
    const sick = Object.keys(weights).filter((pool) => (weights[pool] ?? 0) > (current[pool] ?? 0) && !this.poolHealthy(app.name, pool));
    if (sick.length === 0) return undefined;
    const what = `${sick.map((p) => `pool "${p}"`).join(' and ')} ${sick.length === 1 ? 'has' : 'have'} no healthy target`;
    if (opts.force === true) return `forced: ${what}`;
    const details = { pools: Object.fromEntries(sick.map((p) => [p, this.poolHealth(app.name, p).targets])) };
    throw new SwitchyardError('POOL_UNHEALTHY', `app "${app.name}": ${what}; to route to it anyway, send force: true (CLI --force; the dashboard asks)`, { details });
  };

  /**
   * `switch --expect-version`: checks every target of the pool now (the periodic result may be
   * an interval old, and a pipeline calls this right after a deploy). Passes when at least one
   * target passes the check and every target that passes reports `expected`; a target failing
   * its check is ignored (it gets no traffic), one that passes without a version is a mismatch.
   */
  async verifyVersion(app: string, pool: string, expected: string): Promise<VersionReport> {
    const { cfg, targets } = this.pools(app, pool);
    if (cfg.health?.versionFrom === undefined) {
      throw new SwitchyardError('VERSION_MISMATCH', `app "${app}" has no health.versionFrom: the proxy cannot read the version pool "${pool}" runs`, { details: { pool, expected, targets: [] } });
    }
    const checks = targets.map((t) => this.checkOf.get(t) as CheckedTarget);
    const results = await this.active.probeNow(checks);
    const report: VersionReport = {
      pool,
      expected,
      targets: results.map((r, i) => ({ url: (targets[i] as Target).url, passed: r.ok, reportedVersion: r.ok ? r.version : null, error: r.error })),
    };
    const passed = report.targets.filter((t) => t.passed);
    const wrong = passed.filter((t) => t.reportedVersion !== expected);
    if (passed.length > 0 && wrong.length === 0) return report;
    const why =
      passed.length === 0
        ? `no target passes its health check (${report.targets.map((t) => `${t.url}: ${t.error ?? 'failed'}`).join(', ')})`
        : wrong.map((t) => `${t.url} reports ${t.reportedVersion === null ? 'no version' : t.reportedVersion}`).join(', ');
    throw new SwitchyardError('VERSION_MISMATCH', `pool "${pool}" of app "${app}" does not run ${expected}: ${why}`, { details: report });
  }
}

/** A stall is seen at most a quarter of `stallAfter` late, and the sweep never runs more than 20 times a second. */
function stallSweepMs(stallAfter: number): number {
  return Math.min(500, Math.max(50, Math.floor(stallAfter / 4)));
}

function lastCheckView(last: LastCheck | null): LastCheckView | null {
  return last === null ? null : { at: new Date(last.at).toISOString(), ok: last.ok, status: last.status, error: last.error };
}
