import { Counter, Gauge, type Registry } from 'prom-client';
import type { Discovery } from './discovery.ts';

/**
 * Discovery's Prometheus series, in the proxy's registry. Labels are app and pool names from the
 * definitions (bounded); the gauges are read from the pollers at scrape time.
 */
export function discoveryMetrics(registry: Registry, discovery: () => Discovery | null): { onLookup: (app: string, pool: string, ok: boolean) => void } {
  const lookups = new Counter({
    name: 'switchyard_discovery_lookups_total',
    help: 'DNS lookups of pools with discover, by result (failed: the pool kept its last answer).',
    labelNames: ['app', 'pool', 'result'],
    registers: [registry],
  });
  const gauge = (name: string, help: string, value: (s: ReturnType<Discovery['all']>[number]['status']) => number | null): void => {
    new Gauge({
      name,
      help,
      labelNames: ['app', 'pool'],
      registers: [registry],
      collect() {
        this.reset();
        for (const { app, pool, status } of discovery()?.all() ?? []) {
          const v = value(status);
          // a figure that is not known yet (no answer so far) is left out, not shown as 0
          if (v !== null) this.set({ app, pool }, v);
        }
      },
    });
  };
  gauge('switchyard_discovery_targets', 'Targets in the answer the pool uses (the last successful lookup).', (s) => (s.answeredAt === null ? null : s.targets.length));
  gauge('switchyard_discovery_failing', '1 while the latest lookup of the pool failed and an older answer is kept, else 0.', (s) => (s.lastLookup === null ? null : s.failing ? 1 : 0));
  gauge('switchyard_discovery_last_success_timestamp_seconds', 'When the pool\'s lookup last answered (Unix seconds).', (s) => (s.answeredAt === null ? null : Date.parse(s.answeredAt) / 1000));
  return { onLookup: (app, pool, ok) => lookups.inc({ app, pool, result: ok ? 'ok' : 'failed' }) };
}
