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
      const targets = view.targets.map((t) => (d.targets.includes(t.url) ? { ...t, discovery: mark } : t));
      // what the answer named and discovery refused to use is shown too, with why, never routed to
      for (const x of d.dropped) targets.push({ url: x.url, state: 'dropped', discovery: { ...mark, dropped: x.reason } });
      return { ...view, discovery: d, targets };
    },
    verifyVersion: (app, pool, expected) => health.verifyVersion(app, pool, expected),
  };
}
