import { Gauge, type Registry } from 'prom-client';
import type { Runtime } from '../dataplane/runtime.ts';
import type { Target } from '../dataplane/target.ts';
import { targetState } from '../health/monitor.ts';
import type { Snapshot } from '../routing/snapshot.ts';

/**
 * Target health as Prometheus gauges, read from the Runtime's targets at scrape time (nothing on
 * the request path): `switchyard_target_up{app,pool,target}` and, per pool, how many targets it
 * has and how many are up, so "a pool has no healthy target" can be alerted on
 * (deploy/prometheus/switchyard-rules.yaml). `target` is a URL of the definition or of discovery:
 * bounded by what the operator defines, like the app and pool labels.
 *
 * Up means what routing means by it: the active checks pass (or the app has none) and passive
 * checks have not ejected it. With `workers: N` the primary runs the active checks and each
 * process its own passive ones, so the group's value is the lowest (`min`): a target ejected by
 * one worker is reported down, as that worker routes around it.
 */
export function registerHealthMetrics(registry: Registry, runtime: Runtime, snapshot: () => Snapshot, now: () => number): void {
  /** The pools the routing snapshot defines now: the Runtime keeps a removed pool's slot, with no target. */
  function* livePools(): Generator<{ app: string; pool: string; targets: readonly Target[] }> {
    for (const a of snapshot().apps) {
      const app = runtime.apps[a.index];
      if (app?.name !== a.name) continue;
      for (const p of a.pools) {
        const pool = app.pools[p.index];
        if (pool !== undefined) yield { app: a.name, pool: p.name, targets: pool.targets };
      }
    }
  }
  new Gauge({
    name: 'switchyard_target_up',
    help: '1 while the target takes traffic as far as health checks go (active checks pass, not ejected by passive checks), else 0.',
    labelNames: ['app', 'pool', 'target'],
    registers: [registry],
    aggregator: 'min',
    collect() {
      // reset: a target that left its pool (or a deleted app) disappears from the scrape
      this.reset();
      const t0 = now();
      for (const p of livePools()) for (const t of p.targets) this.set({ app: p.app, pool: p.pool, target: t.url }, targetState(t, t0) === 'up' ? 1 : 0);
    },
  });
  new Gauge({
    name: 'switchyard_pool_healthy_targets',
    help: 'Targets of the pool that are up (switchyard_target_up summed per pool); 0 means the pool cannot serve.',
    labelNames: ['app', 'pool'],
    registers: [registry],
    aggregator: 'min',
    collect() {
      this.reset();
      const t0 = now();
      for (const p of livePools()) this.set({ app: p.app, pool: p.pool }, p.targets.reduce((n, t) => n + (targetState(t, t0) === 'up' ? 1 : 0), 0));
    },
  });
  new Gauge({
    name: 'switchyard_pool_targets',
    help: 'Targets the pool has (defined or discovered), up or not.',
    labelNames: ['app', 'pool'],
    registers: [registry],
    aggregator: 'max',
    collect() {
      this.reset();
      for (const p of livePools()) this.set({ app: p.app, pool: p.pool }, p.targets.length);
    },
  });
}
