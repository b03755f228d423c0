import type { PoolRuntime } from '../dataplane/pool-runtime.ts';
import type { Runtime } from '../dataplane/runtime.ts';
import type { Target } from '../dataplane/target.ts';

/** One target's drain figures on this instance: the ones serving, then the ones retiring after a removal. */
export interface TargetFigure {
  url: string;
  /** `serving`: in the pool; `retiring`: removed, finishing what it carries */
  phase: 'serving' | 'retiring';
  /** requests and upgraded connections on it (this instance) */
  inflight: number;
  /** upgraded connections (WebSocket) on it (this instance) */
  upgraded: number;
  /** retiring only: ISO time of the removal, and when what is still open on it is cut */
  removedAt?: string;
  deadline?: string;
}

function upgradedOn(pool: PoolRuntime, target: Target): number {
  return pool.openOn(target).filter((c) => (c as { upgraded?: boolean }).upgraded === true).length;
}

/**
 * Per-target figures of one pool, from this instance's Runtime; null for an unknown pool. A
 * retiring target is listed until its connection pool is closed (nothing left on it).
 */
export function targetFigures(runtime: Runtime, app: string, pool: string): TargetFigure[] | null {
  const p = runtime.pool(app, pool);
  if (p === undefined) return null;
  const serving: TargetFigure[] = p.targets.map((t) => ({ url: t.url, phase: 'serving', inflight: t.inflight, upgraded: upgradedOn(p, t) }));
  const retiring: TargetFigure[] = runtime.retiringOf(app, pool).map((r) => ({
    url: r.target.url,
    phase: 'retiring',
    inflight: r.target.inflight,
    upgraded: upgradedOn(p, r.target),
    removedAt: new Date(r.since).toISOString(),
    deadline: new Date(r.deadline).toISOString(),
  }));
  return [...serving, ...retiring];
}
