import type { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.ts';
import { DrainDeadlines } from '../dataplane/drain.ts';
import { TrustedProxies } from '../dataplane/headers.ts';
import { processLimits } from '../dataplane/limits.ts';
import type { Runtime } from '../dataplane/runtime.ts';
import { DataPlane } from '../dataplane/server.ts';
import type { DataPlaneOptions, RequestRecord } from '../dataplane/types.ts';
import type { Telemetry } from '../metrics/telemetry.ts';
import type { Snapshot } from '../routing/snapshot.ts';
import type { Tracing } from '../tracing/types.ts';

export interface DataPlaneDeps {
  /** what holds the current routing snapshot and says 'applied' when it changed: the Controller, or a worker's StateMirror */
  readonly source: EventEmitter & { readonly snapshot: Snapshot };
  /** the pools' targets and their connection pools, kept in step with the snapshots by the caller */
  readonly runtime: Runtime;
  readonly telemetry: Telemetry;
  readonly logger: Logger;
  readonly now: () => number;
  /** routing's random draw @default Math.random */
  readonly random?: () => number;
  /** told of every finished request before telemetry (a worker counts what it served) */
  readonly onRequest?: (record: RequestRecord) => void;
  /** answers a request itself before routing (the TLS edge's 308 to https), when `listen.tls` is on */
  readonly intercept?: DataPlaneOptions['intercept'];
  /** OpenTelemetry, when loaded before the plane is built (a worker sets it later, `setTracing`) @default null */
  readonly tracing?: Tracing | null;
}

/**
 * The data plane: the proxy listener that routes every request on the current snapshot and
 * forwards it, and the drain deadlines that cut what is left on a drained pool. The single
 * process and each worker build it alike; nothing listens yet.
 */
export interface DataPlaneParts {
  readonly dataPlane: DataPlane;
  /** per-pool drain deadlines: cuts a pool's open streams and WebSockets once its drain.timeout passed */
  readonly drains: DrainDeadlines;
}

export function buildDataPlane(config: Config, deps: DataPlaneDeps): DataPlaneParts {
  const { telemetry, runtime, logger, now, source } = deps;
  const own = deps.onRequest;
  const dataPlane = new DataPlane({
    source,
    runtime,
    trust: new TrustedProxies(config.trustedProxies),
    now,
    ...(deps.random === undefined ? {} : { random: deps.random }),
    onRequest:
      own === undefined
        ? telemetry.onRequest
        : (rec) => {
            own(rec);
            telemetry.onRequest(rec);
          },
    onPreviewRejected: telemetry.onPreviewRejected,
    onMirror: telemetry.onMirror,
    limits: processLimits(config, logger, runtime),
    ...(deps.tracing === undefined ? {} : { tracing: deps.tracing }),
    ...(config.listen.tls === undefined || deps.intercept === undefined ? {} : { intercept: deps.intercept }),
  });
  telemetry.metrics.addLimits(dataPlane.limits);
  const drains = new DrainDeadlines({
    runtime,
    source,
    now,
    onDeadline: (app, pool, open) => {
      if (open > 0) logger.info({ app, pool, open }, 'drain deadline passed: closing what is still open on the pool');
    },
  });
  drains.update();
  source.on('applied', () => drains.update());
  return { dataPlane, drains };
}

/** `listen.h2c` (README "gRPC"): node:http2 is loaded only when it is on. */
export async function enableH2c(config: Config, dataPlane: DataPlane): Promise<void> {
  if (!config.listen.h2c) return;
  dataPlane.enableH2c((await import('../edge/h2.ts')).createH2Server({ limits: dataPlane.limits, handle: (req, res) => dataPlane.handle(req, res) }));
}

/** `tracing:` on: the OpenTelemetry SDK, loaded on demand (without it nothing of the SDK is loaded). */
export async function loadTracing(config: Config, logger: Logger, instanceId: string): Promise<Tracing | null> {
  if (config.tracing === undefined) return null;
  return (await import('../tracing/otel.ts')).createOtelTracing(config.tracing, { logger: logger.child({ component: 'tracing' }), instanceId });
}
