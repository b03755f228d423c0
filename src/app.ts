import { once } from 'node:events';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { canaryRoutes } from './admin/canary-routes.ts';
import { loadDashboard } from './admin/dashboard.ts';
import { createAdminServer } from './admin/server.ts';
import { rolloutRoutes } from './admin/rollout-routes.ts';
import { statsRoutes } from './admin/stats-routes.ts';
import type { Config } from './config/schema.ts';
import { Controller } from './control/controller.ts';
import type { CountsSource } from './control/counts.ts';
import { Fleet, fleetCounts } from './control/fleet.ts';
import { DrainDeadlines } from './dataplane/drain.ts';
import { TrustedProxies } from './dataplane/headers.ts';
import { localCounts, Runtime } from './dataplane/runtime.ts';
import { DataPlane, type DataPlaneOptions } from './dataplane/server.ts';
import type { Edge } from './edge/edge.ts';
import { HealthMonitor } from './health/monitor.ts';
import { createTelemetry, fleetPeerWindows, type Telemetry } from './metrics/telemetry.ts';
import type { Rollouts } from './rollout/rollouts.ts';
import { createRollouts, type RolloutTuning } from './rollout/setup.ts';
import { FileStore } from './state/file-store.ts';
import { isRedisStore, type StateStore } from './state/types.ts';

export interface BuildDeps {
  readonly logger: Logger;
  /** a store to use instead of the one the config names (tests) */
  readonly store?: StateStore;
  /** @default Date.now */
  readonly now?: () => number;
  /** @default Math.random */
  readonly random?: () => number;
  /** @default `${hostname()}:${pid}` */
  readonly instanceId?: string;
  /** the access log's sampling draw, apart from routing's `random` @default Math.random */
  readonly sampleRandom?: () => number;
  /** the rollout driver's round interval, lease TTL, clock and timers (tests) */
  readonly rollouts?: RolloutTuning;
  /** certificate file polling and ACME store sync intervals, ms (tests) */
  readonly edge?: { readonly certPollMs?: number; readonly acmeSyncMs?: number };
}

export interface Switchyard {
  readonly config: Config;
  readonly controller: Controller;
  readonly runtime: Runtime;
  readonly dataPlane: DataPlane;
  readonly admin: Server;
  readonly counts: CountsSource;
  /** active and passive health checks, the 409 write gate, `healthFigures` for metrics */
  readonly health: HealthMonitor;
  /** Prometheus metrics and live per-pool stats (`telemetry.stats.window(app, 60)` for rollouts) */
  readonly telemetry: Telemetry;
  /** per-pool drain deadlines: cuts a pool's open streams and WebSockets once its drain.timeout passed */
  readonly drains: DrainDeadlines;
  /** progressive rollouts: the API's commands, and the driver on the lease holder */
  readonly rollouts: Rollouts;
  /** the TLS port, certificates and ACME (`listen.tls`), or null */
  readonly edge: Edge | null;
  /** binds the listeners; returns the ports actually bound (tlsPort with `listen.tls`) */
  listen(): Promise<{ proxyPort: number; adminPort: number; tlsPort?: number }>;
  /** graceful stop (SIGTERM): readyz 503, drain in-flight within grace, cut at hardStop */
  shutdown(): Promise<{ cut: number }>;
  /** immediate stop, for tests */
  close(): Promise<void>;
}

export async function openStore(config: Config, logger?: Logger): Promise<StateStore> {
  const s = config.store;
  if (s.kind === 'file') return FileStore.open({ path: s.path, historyLimit: s.historyLimit });
  const { kind: _kind, ...redis } = s;
  // loaded on demand, so a file-store deployment never pays for ioredis
  const { RedisStore } = await import('./state/redis-store.ts');
  return RedisStore.open({ ...redis, logger: logger?.child({ component: 'redis-store' }) });
}

/** Builds a whole proxy from a validated config. Touches no process state: main.ts does that. */
export async function build(config: Config, deps: BuildDeps): Promise<Switchyard> {
  const { logger } = deps;
  const now = deps.now ?? Date.now;
  const instanceId = deps.instanceId ?? `${hostname()}:${process.pid}`;
  const store = deps.store ?? (await openStore(config, logger));
  // the runtime comes first: the health gate on writes reads its targets
  const runtime = new Runtime(config);
  const health = new HealthMonitor({ config, runtime, logger: logger.child({ component: 'health' }), now });
  const controller = await Controller.start({ config, store, logger, now, guard: health.guard }).catch(async (err: unknown) => {
    // a Redis store keeps reconnecting (and the process alive) until closed
    if (deps.store === undefined) await store.close();
    await runtime.close();
    throw err;
  });
  const telemetry = createTelemetry({ config, controller, runtime, store, logger, now, ...(deps.sampleRandom === undefined ? {} : { sampleRandom: deps.sampleRandom }) });
  // on Redis: heartbeats, fleet-wide counts, re-seeding an empty Redis, regression reports
  const fleet = isRedisStore(store) ? new Fleet({ store, controller, runtime, instanceId, logger: logger.child({ component: 'fleet' }), now, stats: () => telemetry.stats.exportWindows() }) : null;
  if (fleet !== null) telemetry.stats.attachFleet(fleetPeerWindows(fleet));
  const counts = fleet === null ? localCounts(runtime, instanceId, now) : fleetCounts(fleet);
  const rollouts = await createRollouts({ config, store, controller, stats: telemetry.stats, registry: telemetry.metrics.registry, logger, instanceId, now, tuning: deps.rollouts });
  let ready = true;
  let shuttingDown = false;

  const dpOpts: DataPlaneOptions = {
    source: controller,
    runtime,
    trust: new TrustedProxies(config.trustedProxies),
    now,
    ...(deps.random === undefined ? {} : { random: deps.random }),
    onRequest: telemetry.onRequest,
    onPreviewRejected: telemetry.onPreviewRejected,
    ...(config.listen.tls === undefined ? {} : { intercept: (req, res) => edge?.intercept(req, res) ?? false }),
  };
  const dataPlane = new DataPlane(dpOpts);
  const tlsConfig = config.listen.tls;
  // loaded on demand: node:http2, the TLS setup and acme-client (whose axios touches the global
  // fetch, which loads Node's bundled undici: see src/node-http.ts) cost nothing without listen.tls
  const edge: Edge | null = tlsConfig === undefined ? null : await (await import('./edge/edge.ts')).Edge.create({ config, tls: tlsConfig, dataPlane, logger, registry: telemetry.metrics.registry, store, instanceId, now, certPollMs: deps.edge?.certPollMs, acmeSyncMs: deps.edge?.acmeSyncMs });
  const adminLoopback = ['127.0.0.1', '::1', 'localhost'].includes(config.admin.host);
  if (!adminLoopback && config.admin.tls === undefined) {
    logger.warn({ admin: config.admin.host }, 'INSECURE: the admin API listens off loopback without admin.tls; bearer tokens cross the network in clear text');
  }
  const admin = createAdminServer({
    config,
    controller,
    counts,
    health,
    logger,
    now,
    ready: () => ready && !shuttingDown,
    readyDetails: () => ({ shuttingDown, store: store.kind, revisions: Object.fromEntries(controller.allStates().map((s) => [s.app, s.revision])), ...fleet?.details(), ...edge?.details() }),
    routes: [...canaryRoutes(controller), ...statsRoutes(telemetry.stats), ...rolloutRoutes(rollouts, (app) => Object.keys(controller.appConfig(app).pools))],
    metrics: telemetry.metrics,
    fallback: await loadDashboard(),
  });

  controller.on('applied', (state: { app: string; revision: number }) => logger.info({ app: state.app, revision: state.revision }, 'routing state applied'));
  health.start();
  const drains = new DrainDeadlines({ runtime, source: controller, now, onDeadline: (app, pool, open) => {
      if (open > 0) logger.info({ app, pool, open }, 'drain deadline passed: closing what is still open on the pool');
    } });
  drains.update();
  controller.on('applied', () => drains.update());

  async function listen(): Promise<{ proxyPort: number; adminPort: number; tlsPort?: number }> {
    admin.listen(config.admin.port, config.admin.host);
    let proxyPort: number;
    let tlsPort: number | undefined;
    try {
      [proxyPort, , tlsPort] = await Promise.all([dataPlane.listen(config.listen.host, config.listen.port, config.listen.acceptors), once(admin, 'listening'), edge?.listen(config.listen.host)]);
    } catch (err) {
      // a port taken: release whichever listener did bind, so the failed start holds nothing
      dataPlane.stopListening();
      edge?.stopListening();
      admin.close();
      throw err;
    }
    const adminPort = (admin.address() as AddressInfo).port;
    logger.info({ proxy: `${config.listen.host}:${proxyPort}`, ...(tlsPort === undefined ? {} : { tls: `${config.listen.host}:${tlsPort}` }), admin: `${config.admin.host}:${adminPort}`, store: store.kind, apps: config.apps.map((a) => a.name) }, 'switchyard listening');
    return tlsPort === undefined ? { proxyPort, adminPort } : { proxyPort, adminPort, tlsPort };
  }

  const inflight = (): number => runtime.allPools().reduce((n, p) => n + p.inflight + p.upgraded, 0);

  async function shutdown(): Promise<{ cut: number }> {
    if (shuttingDown) return { cut: 0 };
    shuttingDown = true;
    ready = false;
    dataPlane.closing = true;
    const { delay, grace, hardStop } = config.shutdown;
    const started = now();
    logger.info({ inflight: inflight(), delay, grace, hardStop }, 'shutting down: readyz is 503, draining');
    // keep accepting for `delay` so a load balancer notices readyz before connections are refused
    if (delay > 0) await sleep(delay);
    dataPlane.stopListening();
    edge?.stopListening();
    edge?.listener.closeIdle();
    dataPlane.server.closeIdleConnections();
    for (const p of runtime.allPools()) for (const c of p.open) if (isUpgrade(c)) c.cut('shutdown');
    let warned = false;
    while (inflight() > 0 && now() - started < hardStop) {
      if (!warned && now() - started >= grace) {
        warned = true;
        logger.warn({ inflight: inflight() }, 'shutdown grace passed with requests still in flight; cutting at hardStop');
      }
      dataPlane.server.closeIdleConnections();
      await sleep(25);
    }
    const cut = inflight();
    if (cut > 0) {
      for (const p of runtime.allPools()) for (const c of [...p.open]) c.cut('shutdown');
      dataPlane.server.closeAllConnections();
      edge?.listener.closeAll();
      logger.warn({ cut }, 'hard stop: cut connections still open');
      telemetry.metrics.shutdownCut(cut);
    }
    await closeParts();
    logger.info({ cut, ms: now() - started }, 'stopped');
    return { cut };
  }

  async function close(): Promise<void> {
    shuttingDown = true;
    dataPlane.stopListening();
    edge?.stopListening();
    dataPlane.server.closeAllConnections();
    edge?.listener.closeAll();
    for (const p of runtime.allPools()) for (const c of [...p.open]) c.cut('shutdown');
    await closeParts();
  }

  /** Everything but the proxy listener, in dependency order: the last step of both stops. */
  async function closeParts(): Promise<void> {
    admin.close();
    admin.closeAllConnections();
    await edge?.close();
    drains.close();
    await health.close();
    await rollouts.close();
    await fleet?.close();
    await controller.close();
    await store.close();
    await runtime.close();
  }

  return { config, controller, runtime, dataPlane, edge, admin, counts, health, telemetry, drains, rollouts, listen, shutdown, close };
}

function isUpgrade(c: unknown): boolean {
  return typeof c === 'object' && c !== null && (c as { upgraded?: boolean }).upgraded === true;
}
