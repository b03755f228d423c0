import type { Controller } from '../control/controller.ts';
import { drainVerdict, type CountsSource, type InstancesFigure, type PoolCounts } from '../control/counts.ts';
import type { AppConfig } from '../config/schema.ts';
import { SwitchyardError } from '../errors.ts';
import type { DiscoveryStatus } from '../discovery/discovery.ts';
import type { HealthSource, PoolHealth, TargetStateView } from '../health/monitor.ts';
import type { TargetFigure } from '../control/target-figures.ts';
import { routingHolds } from '../routing/rules.ts';
import type { HistoryEntry, RoutingState } from '../state/types.ts';

/** This instance's per-target figures of a pool, or null where they are not known here. */
export type TargetFiguresSource = (app: string, pool: string) => TargetFigure[] | null;
import { activePool, bpToPct, ownOf, weightsToPct } from '../config/weights.ts';
import { drainBlock, type DrainBlock } from '../control/drain-deadline.ts';
import { describeEntry } from '../control/history-words.ts';
import { revertOf } from '../control/rollback-plan.ts';

/**
 * The JSON the admin API answers with, built from the controller's state and the live counts.
 * Pure functions of their arguments (time is passed in), so each view is unit-testable alone.
 */

export interface PoolView {
  version: string;
  targets: string[];
  /** percent */
  weight: number;
  inflight: number;
  upgraded: number;
  /** requests routed to the pool by an affinity pin in the last 60 s, summed over the fleet */
  pinned: number;
  drained: boolean;
  /** the health gate's verdict (true without health checks); with a health source only */
  healthy?: boolean;
  health?: PoolHealth;
  /** per target, in `targets` order: `{ url, state: up|down|ejected, reportedVersion?, ejectedUntil?, lastCheck? }` */
  targetStates?: TargetStateView[];
  /** the pool's DNS discovery (`discover`): its lookup, the answer in use, the latest lookup's result */
  discovery?: DiscoveryStatus;
  /** this instance's per-target figures, serving targets then retiring ones (removed, finishing what they carry) */
  targetFigures?: TargetFigure[];
}

/** `AppState` (docs/admin-api.md §2). */
export interface AppStateView {
  app: string;
  revision: number;
  /** pool → percent, in the configured pool order */
  weights: Record<string, number>;
  /** the pool at 100 %, or null during a split */
  active: string | null;
  updatedAt: string;
  updatedBy: string;
  reason: string | null;
  pools: Record<string, PoolView>;
  /** the cohort rules, in order, as written (docs/cohorts.md §2); [] when none */
  rules: unknown[];
  /** the mirror as written, or null */
  mirror: unknown;
  /** `total` is null (with `unknown: true` and the reason) while the fleet's figures cannot be read */
  instances: InstancesFigure;
}

export interface DrainView {
  pool: string;
  /** percent */
  weight: number;
  inflight: number;
  upgraded: number;
  pinned: number;
  /** ISO time the pool's weight became 0, or null while it has weight */
  drainingSince: string | null;
  /** drainingSince + the app's drain.timeout, as ISO, or null */
  deadline: string | null;
  /** ms left until `deadline` by the server's clock (0 once passed), or null; spares the CLI a clock-skew guess */
  remainingMs: number | null;
  drained: boolean;
  /** why it is not drained (null once drained) */
  reason: string | null;
  /** while not drained: the deadline it waits for (`affinity` window or `drain-timeout`) and when it ends, or `weight` */
  blockedBy?: DrainBlock;
  /** set while the other instances' figures cannot be read: the counts above are a lower bound */
  unknown?: true;
  /** per-instance counts, only when asked for (`?instances=1`) */
  instances?: Record<string, PoolCounts>;
  /** this instance's per-target figures (serving, then retiring targets); absent where the instance carries no traffic (a primary of workers) */
  targets?: TargetFigure[];
}

export interface HistoryEntryView {
  revision: number;
  /** pool → percent */
  weights: Record<string, number>;
  action: string;
  by: string;
  reason: string | null;
  at: string;
  /** a definition change: the key paths it changed (`pools.green.targets`) */
  changes?: string[];
  /** what the entry did, in words (`green → 3.0.0 on 2 targets`, `switch to green`) */
  summary: string;
  /** each pool's version and target count at this revision (absent in older entries) */
  pools?: Record<string, { version: string; targets: number }>;
  /** set when the entry took traffic back: `rollback`, `analysis` (a rollout's automatic rollback), `abort` */
  revert?: string;
  /** the cohort rules and mirror in force after this revision (absent: none) */
  rules?: unknown[];
  mirror?: unknown;
}

/**
 * Until when affinity pins to `pool` can route (epoch ms), or null: only a pool at weight 0 with
 * affinity configured and targets left holds pins, for `affinity.window` after its weight became
 * 0, and only once a later revision than the seed drained it.
 */
export function pinsUntil(cfg: AppConfig, state: RoutingState, pool: string): number | null {
  const since = (state.weights[pool] ?? 0) === 0 ? state.drainingSince[pool] : undefined;
  // revision 1 (the seed): no pin older than the current revision exists, so none can route (see affinity.ts)
  if (cfg.affinity === undefined || since === undefined || state.revision <= 1 || ((cfg.pools[pool]?.targets.length ?? 0) === 0 && cfg.pools[pool]?.discover === undefined)) return null;
  // a pool a rollback drained holds no pins (as in the snapshot, routing/snapshot.ts)
  if (state.unpinned?.includes(pool) === true) return null;
  const ms = Date.parse(since);
  return Number.isFinite(ms) ? ms + cfg.affinity.window : null;
}

/** `state`: the one to show (a write answers the state it wrote, not whatever is current by now) @default the current state */
export function appStateView(controller: Controller, counts: CountsSource, app: string, health?: HealthSource, state: RoutingState = controller.state(app), now: number = Date.now(), figures?: TargetFiguresSource): AppStateView {
  const cfg = controller.appConfig(app);
  const names = Object.keys(cfg.pools);
  const pools: Record<string, PoolView> = {};
  const unknown = counts.figuresUnknown?.() ?? null;
  for (const name of names) {
    const pool = cfg.pools[name];
    if (pool === undefined) continue;
    const bp = ownOf(state.weights, name) ?? 0;
    const c = counts.poolCounts(app, name);
    const verdict = drainVerdict({ weightBp: bp, counts: c, pinsUntil: pinsUntil(cfg, state, name), now, holds: routingHolds(cfg, name) });
    const held = verdict.drained && (counts.drainUnknown?.(app, name).length ?? 0) > 0;
    const view: PoolView = { version: pool.version, targets: [...pool.targets], weight: bpToPct(bp), inflight: c.inflight, upgraded: c.upgraded, pinned: c.pinned, drained: unknown === null && verdict.drained && !held };
    if (health !== undefined) {
      const h = health.poolHealth(app, name);
      view.healthy = h.healthy;
      view.health = h.health;
      view.targetStates = h.targets;
      if (h.discovery !== undefined) view.discovery = h.discovery;
    }
    const f = figures?.(app, name);
    if (f !== undefined && f !== null) view.targetFigures = f;
    pools[name] = view;
  }
  return {
    app,
    revision: state.revision,
    weights: weightsToPct(state.weights, names),
    active: activePool(state.weights),
    updatedAt: state.updatedAt,
    updatedBy: state.updatedBy,
    reason: state.reason,
    pools,
    rules: [...((state.definition?.rules as unknown[] | undefined) ?? [])],
    mirror: state.definition?.mirror ?? null,
    instances: counts.instances(app, state.revision),
  };
}

export interface DrainViewOptions {
  /** add the per-instance breakdown @default false */
  byInstance?: boolean;
  /** adds `targets` */
  figures?: TargetFiguresSource | undefined;
}

/** Drain figures of one pool, summed over the fleet; throws UNKNOWN_APP / UNKNOWN_POOL (404). */
export function drainView(controller: Controller, counts: CountsSource, app: string, pool: string, now: number, opts: DrainViewOptions = {}): DrainView {
  const cfg = controller.appConfig(app);
  if (!Object.hasOwn(cfg.pools, pool)) {
    throw new SwitchyardError('UNKNOWN_POOL', `app "${app}" has no pool "${pool}"`, { details: [{ path: 'pool', message: `unknown pool (pools: ${Object.keys(cfg.pools).join(', ')})` }] });
  }
  const state = controller.state(app);
  const bp = ownOf(state.weights, pool) ?? 0;
  const c = counts.poolCounts(app, pool);
  // drainingSince is only meaningful while the pool is at 0; a stale entry is ignored
  const since = bp === 0 ? (ownOf(state.drainingSince, pool) ?? null) : null;
  const sinceMs = since === null ? NaN : Date.parse(since);
  // no cut is due while a rule or the mirror still sends to the pool (src/routing/snapshot.ts)
  const deadlineMs = Number.isFinite(sinceMs) && routingHolds(cfg, pool).length === 0 ? sinceMs + cfg.drain.timeout : null;
  const view: DrainView = {
    pool,
    weight: bpToPct(bp),
    inflight: c.inflight,
    upgraded: c.upgraded,
    pinned: c.pinned,
    drainingSince: since,
    deadline: deadlineMs === null ? null : new Date(deadlineMs).toISOString(),
    remainingMs: deadlineMs === null ? null : Math.max(0, deadlineMs - now),
    ...drainVerdict({ weightBp: bp, counts: c, pinsUntil: pinsUntil(cfg, state, pool), now, holds: routingHolds(cfg, pool) }),
  };
  // which deadline it waits for (affinity window or drain timeout), so no one waits on the wrong one
  const block = view.drained ? null : drainBlock({ weightBp: bp, counts: c, pinsUntil: pinsUntil(cfg, state, pool), drainDeadline: deadlineMs, now });
  if (block !== null) view.blockedBy = block;
  const unknown = counts.figuresUnknown?.() ?? null;
  // drained only when every instance has applied the revision that emptied the pool, and none that went silent may still route there
  const held = counts.drainUnknown?.(app, pool) ?? [];
  if (held.length > 0) Object.assign(view, { drained: false, reason: [...(view.reason === null ? [] : [view.reason]), ...held].join('; ') });
  if (held.some((r) => r.startsWith('unknown:'))) view.unknown = true;
  // drained only when every live instance's figures were read: an unreadable peer may still carry requests
  if (unknown !== null) Object.assign(view, { drained: false, unknown: true, reason: `fleet figures unknown: ${unknown}${view.reason === null ? '' : `; ${view.reason}`}` });
  if (opts.byInstance === true) view.instances = counts.poolCountsByInstance(app, pool);
  const targets = opts.figures?.(app, pool);
  if (targets !== undefined && targets !== null) view.targets = targets;
  return view;
}

/**
 * History entries with percentages: configured pools first, in config order, then any pool an
 * old entry still names that the config no longer has (so history never hides what was routed).
 */
export function historyView(entries: readonly HistoryEntry[], poolNames: readonly string[]): { entries: HistoryEntryView[] } {
  return {
    entries: entries.map((e, i) => {
      const extra = Object.keys(e.weights).filter((p) => !poolNames.includes(p));
      const summary = describeEntry(e, entries[i + 1], poolNames);
      const view: HistoryEntryView = { revision: e.revision, weights: weightsToPct(e.weights, [...poolNames, ...extra]), action: e.action, by: e.by, reason: e.reason, at: e.at, summary };
      if (e.changes !== undefined) view.changes = [...e.changes];
      if (e.pools !== undefined) view.pools = structuredClone(e.pools) as Record<string, { version: string; targets: number }>;
      const revert = revertOf(e);
      if (revert !== null) view.revert = revert;
      if (e.rules !== undefined) view.rules = [...e.rules];
      if (e.mirror !== undefined) view.mirror = e.mirror;
      return view;
    }),
  };
}
