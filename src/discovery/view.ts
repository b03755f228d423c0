import type { HealthSource } from '../health/monitor.ts';
import type { Discovery } from './discovery.ts';

/**
 * The admin API's health source with discovery added: a pool with `discover` gets its
 * `discovery` status, and each target its answer named gets `discovery` in `targetStates`
 * (`stale: true` with the error while lookups fail and the last answer is kept).
 */
export function withDiscovery(health: HealthSource, discovery: Discovery): HealthSource {
  return {
    poolHealth(app, pool) {
      const view = health.poolHealth(app, pool);
      const d = discovery.status(app, pool);
      if (d === undefined) return view;
      const mark = { lookup: d.lookup, stale: d.failing, answeredAt: d.answeredAt, error: d.failing ? (d.lastLookup?.error ?? null) : null };
      return { ...view, discovery: d, targets: view.targets.map((t) => (d.targets.includes(t.url) ? { ...t, discovery: mark } : t)) };
    },
    verifyVersion: (app, pool, expected) => health.verifyVersion(app, pool, expected),
  };
}
