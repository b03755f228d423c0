import type { Logger } from 'pino';
import type { Config } from '../config/schema.ts';
import type { Runtime } from '../dataplane/runtime.ts';
import type { MirrorRecord, RequestRecord } from '../dataplane/types.ts';
import type { AppRoute } from '../routing/snapshot.ts';
import { createAccessLog } from './access-log.ts';
import { registerHealthMetrics } from './health-metrics.ts';
import { Metrics, type MetricsDeps } from './metrics.ts';
import { LiveStats, type PeerWindows, type StatsExport } from './stats.ts';

export interface TelemetryDeps {
  readonly config: Config;
  readonly controller: MetricsDeps['controller'];
  readonly runtime: Runtime;
  readonly store: object;
  readonly logger: Logger;
  /** @default Date.now */
  readonly now?: () => number;
  /** the access log's sampling draw @default Math.random */
  readonly sampleRandom?: () => number;
  /** register prom-client's process metrics @default true */
  readonly defaultMetrics?: boolean;
}

/** Everything that watches finished requests: metrics, live stats, the access log. */
export interface Telemetry {
  readonly metrics: Metrics;
  readonly stats: LiveStats;
  /** DataPlaneOptions.onRequest: O(1), no await, no I/O but the (buffered) log line */
  readonly onRequest: (rec: RequestRecord) => void;
  /** DataPlaneOptions.onPreviewRejected */
  readonly onPreviewRejected: (app: AppRoute) => void;
  /** DataPlaneOptions.onMirror: a mirrored copy's end or skip, a compared pair */
  readonly onMirror: (rec: MirrorRecord) => void;
}

export function createTelemetry(deps: TelemetryDeps): Telemetry {
  const now = deps.now ?? Date.now;
  const metrics = new Metrics({ config: deps.config, controller: deps.controller, runtime: deps.runtime, store: deps.store, now, ...(deps.defaultMetrics === undefined ? {} : { defaultMetrics: deps.defaultMetrics }) });
  registerHealthMetrics(metrics.registry, deps.runtime, () => deps.controller.snapshot, now);
  const stats = new LiveStats(deps.config, { now, snapshot: () => deps.controller.snapshot });
  const access = createAccessLog(deps.logger, { sample: deps.config.log.accessSample, ...(deps.sampleRandom === undefined ? {} : { random: deps.sampleRandom }) });
  return {
    metrics,
    stats,
    onRequest(rec) {
      metrics.record(rec);
      stats.record(rec);
      access(rec);
    },
    onPreviewRejected: (app) => metrics.previewRejected(app),
    onMirror(rec) {
      metrics.mirror(rec);
      stats.recordMirror(rec);
    },
  };
}

/** The fleet's other instances' stats windows, from their last heartbeats (see `Fleet` option `stats`); `passive`: see `Fleet.peers`. */
export function fleetPeerWindows(fleet: { peers(opts?: { passive?: boolean }): ReadonlyMap<string, { readonly stats?: unknown }> }): PeerWindows {
  return function* peers(passive) {
    for (const hb of fleet.peers({ passive: passive === true }).values()) if (typeof hb.stats === 'object' && hb.stats !== null) yield hb.stats as StatsExport;
  };
}
