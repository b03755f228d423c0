import type { PoolCounts } from '../dataplane/pool-runtime.ts';
import type { Runtime } from '../dataplane/runtime.ts';

export type { PoolCounts } from '../dataplane/pool-runtime.ts';

/**
 * Where AppState and the drain figures get their counts: this instance's own counters on the
 * file store, the sum over live instances' heartbeats on Redis.
 */
export interface CountsSource {
  poolCounts(app: string, pool: string): PoolCounts;
  /** per-instance breakdown, `{ [instanceId]: PoolCounts }` */
  poolCountsByInstance(app: string, pool: string): Record<string, PoolCounts>;
  /**
   * Live proxy instances, and how many of them route on `revision` of the state this instance
   * routes on. While the other instances cannot be read, `total` is null and `unknown` is set
   * with the reason; `applied` then counts only the instances known to route on it.
   */
  instances(app: string, revision: number): InstancesFigure;
  /** Why the fleet-wide figures cannot be known now, or null (always null for one instance). */
  figuresUnknown?(): string | null;
  /**
   * Why `pool` is not drained whatever the counts say (an instance that has not applied the
   * revision that emptied it, or a silent one that may still route there); empty when nothing holds it.
   */
  drainUnknown?(app: string, pool: string): string[];
}

/** An instance that stopped heartbeating without leaving (`since`: ISO time of its last heartbeat). */
export interface UnaccountedInstance {
  readonly id: string;
  readonly since: string;
}

/** `total` counts the unaccounted instances too: they may still be routing. */
export type InstancesFigure = { applied: number; total: number; unaccounted?: UnaccountedInstance[] } | { applied: number; total: null; unknown: true; reason: string };

/** What a drain verdict reads about one pool. */
export interface DrainFacts {
  /** basis points */
  readonly weightBp: number;
  readonly counts: PoolCounts;
  /** epoch ms until which affinity pins to the pool are routable (draining, inside the window, targets left); null: none are */
  readonly pinsUntil: number | null;
  readonly now: number;
  /** what of the app's routing still sends to the pool whatever its weight (`rule NAME`, `mirror`: routing/rules.ts routingHolds) */
  readonly holds?: readonly string[];
}

/**
 * `drained` means nothing will be sent to the pool any more (docs/admin-api.md §4): no
 * weight, no in-flight request, no upgraded connection, and no routable affinity pin. A pin is
 * routable while the pool is inside its affinity window and still has targets, whether or not
 * a pinned browser came back lately: the `pinned` figure only counts those that did. A rule or the
 * mirror that sends to the pool holds it too (`rule NAME`, `mirror`), whatever its weight. Otherwise
 * `reason` says what still holds it.
 */
export function drainVerdict(f: DrainFacts): { drained: boolean; reason: string | null } {
  const why: string[] = [];
  if (f.weightBp > 0) why.push(`weight ${f.weightBp / 100}%`);
  for (const h of f.holds ?? []) why.push(h);
  if (f.counts.inflight > 0) why.push(`${f.counts.inflight} request(s) in flight`);
  if (f.counts.upgraded > 0) why.push(`${f.counts.upgraded} upgraded connection(s) open`);
  if (f.weightBp === 0 && f.pinsUntil !== null && f.now < f.pinsUntil) {
    why.push(`affinity pins are honoured until ${new Date(f.pinsUntil).toISOString()} (${f.counts.pinned} pinned request(s) in the last 60 s)`);
  }
  return why.length === 0 ? { drained: true, reason: null } : { drained: false, reason: why.join('; ') };
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
