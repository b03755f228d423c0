import { once } from 'node:events';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import { loadDashboard } from './admin/dashboard.ts';
import { createAdminServer } from './admin/server.ts';
import type { Config } from './config/schema.ts';
import type { Controller } from './control/controller.ts';

import { fleetCounts } from './control/fleet.ts';
import { localCounts, type CountsSource } from './control/counts.ts';
import { targetFigures } from './control/target-figures.ts';
import type { DrainDeadlines } from './dataplane/drain.ts';
import type { Runtime } from './dataplane/runtime.ts';
import type { DataPlane } from './dataplane/server.ts';
import { stopDataPlane } from './dataplane/shutdown.ts';
import type { Discovery } from './discovery/discovery.ts';
import { withDiscovery } from './discovery/view.ts';
import type { Edge } from './edge/edge.ts';
import type { HealthMonitor } from './health/monitor.ts';
import type { LogSink } from './logger.ts';
import { fleetPeerWindows, type Telemetry } from './metrics/telemetry.ts';
import { adminRoutes } from './planes/admin-routes.ts';
import { buildControlPlane } from './planes/control-plane.ts';
import { buildDataPlane, enableH2c, loadTracing } from './planes/data-plane.ts';
import type { Rollouts } from './rollout/rollouts.ts';
import type { RolloutTuning } from './rollout/setup.ts';
import type { StateStore } from './state/types.ts';
import { storeHealth } from './state/writability.ts';
import { adopt, handleOf, HANDOVER_SETTLE_MS, matches, type InheritedListener } from './upgrade/handles.ts';
import { claimPort } from './dataplane/port-claim.ts';
import { internalsWarnings, onPoolFallback } from './dataplane/engine/internals.ts';
import { createServer as createNetServer, type Server as NetServer } from 'node:net';

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
  /** the log's destination (main.ts): its write errors go to /metrics and /readyz */
  readonly logSink?: LogSink;
  /** the config file's app definitions win over the store's at start (`serve --apply-config`) @default false */
  readonly applyConfig?: boolean;
  /** listening sockets a previous Switchyard handed over (src/upgrade): accepted on instead of binding */
  readonly inherited?: readonly InheritedListener[];
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
  /** DNS discovery of the pools with `discover` (src/discovery/) */
  readonly discovery: Discovery;
  /** the TLS port, certificates and ACME (`listen.tls`), or null */
  readonly edge: Edge | null;
  /** binds the listeners; returns the ports actually bound (tlsPort with `listen.tls`) */
  listen(): Promise<{ proxyPort: number; adminPort: number; tlsPort?: number }>;
  /** graceful stop (SIGTERM): readyz 503, drain in-flight within grace, cut at hardStop; `handedOver`: no `delay`, the listeners are closed already */
  shutdown(opts?: { handedOver?: boolean }): Promise<{ cut: number }>;
  /** the listening sockets, for a hand-over to a new process (src/upgrade); this process owns them (not `carried`) */
  listeningSockets(): Promise<InheritedListener[]>;
  /** stops accepting on every listener (the new process accepts on the same sockets) */
  stopAccepting(): Promise<void>;
  /** after a hand-over: takes the proxy port's claim the old process released */
  takeClaim(): Promise<void>;
  /** SIGHUP (src/reload.ts) */
  setLogLevel(level: Config['log']['level']): void;
  reloadCertificates(): { reloaded: number; failed: number } | null;
  /** immediate stop, for tests */
  close(): Promise<void>;
}

/** Builds a whole proxy from a validated config: both planes in one process. Touches no process state: main.ts does that. */
export async function build(config: Config, deps: BuildDeps): Promise<Switchyard> {
  const { logger } = deps;
  const now = deps.now ?? Date.now;
  const instanceId = deps.instanceId ?? `${hostname()}:${process.pid}`;
  for (const line of internalsWarnings(config.engine)) logger.warn(line);
  // undici's Pool loads with the first target that needs it (engine: undici, h2 pools), maybe later than this
  onPoolFallback((line) => logger.warn(line));
  const control = await buildControlPlane(config, {
    logger,
    now,
    instanceId,
    logRetired: true,
    ...(deps.store === undefined ? {} : { store: deps.store }),
    ...(deps.applyConfig === undefined ? {} : { applyConfig: deps.applyConfig }),
    ...(deps.rollouts === undefined ? {} : { rollouts: deps.rollouts }),
    ...(deps.sampleRandom === undefined ? {} : { sampleRandom: deps.sampleRandom }),
    ...(deps.logSink === undefined ? {} : { logSink: deps.logSink }),
  });
  const { store, controller, runtime, health, telemetry, fleet, rollouts, discovery } = control;
  if (fleet !== null) telemetry.stats.attachFleet(fleetPeerWindows(fleet));
  const counts = fleet === null ? localCounts(runtime, instanceId, now) : fleetCounts(fleet);
  let ready = true;
  let shuttingDown = false;
  const tracing = await loadTracing(config, logger, instanceId);
  const { dataPlane, drains } = buildDataPlane(config, { source: controller, runtime, telemetry, logger, now, tracing, ...(deps.random === undefined ? {} : { random: deps.random }), intercept: (req, res) => edge?.intercept(req, res) ?? false });
  await enableH2c(config, dataPlane);
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
    health: withDiscovery(health, discovery),
    logger,
    now,
    ready: () => ready && !shuttingDown,
    readyDetails: () => ({ shuttingDown, store: store.kind, ...storeHealth(store), ...(deps.logSink === undefined ? {} : { log: deps.logSink.view() }), revisions: Object.fromEntries(controller.allStates().map((s) => [s.app, s.revision])), brokenStates: controller.brokenStates(), drift: controller.drift(), ...fleet?.details(), ...edge?.details() }),
    routes: adminRoutes({ controller, stats: telemetry.stats, rollouts, now, certificates: () => (edge === null ? null : { certificates: () => edge.certs.all(), acme: () => edge.acme?.status() ?? null }) }),
    metrics: telemetry.metrics,
    fallback: await loadDashboard(),
    targetFigures: (app, pool) => targetFigures(runtime, app, pool),
  });

  controller.on('applied', (state: { app: string; revision: number }) => logger.info({ app: state.app, revision: state.revision }, 'routing state applied'));
  health.start();

  /** TLS sockets beyond the first one inherited (several workers' groups) */
  const tlsExtra: NetServer[] = [];

  async function listen(): Promise<{ proxyPort: number; adminPort: number; tlsPort?: number }> {
    // a pool fed by discovery serves its discovered targets from the first request (each first lookup is bounded)
    await discovery.settled();
    const inherited = deps.inherited ?? [];
    const { host, port, acceptors } = config.listen;
    const mine = (l: InheritedListener): boolean => matches(l, host, l.role === 'tls' ? (config.listen.tls?.port ?? -1) : port);
    const adminHandle = inherited.find((l) => l.role === 'admin' && matches(l, config.admin.host, config.admin.port));
    const proxyHandles = inherited.filter((l) => l.role === 'proxy' && mine(l)).map((l) => l.handle);
    const [tlsFirst, ...tlsMore] = inherited.filter((l) => l.role === 'tls' && mine(l)).map((l) => l.handle);
    if (adminHandle === undefined) admin.listen(config.admin.port, config.admin.host);
    let proxyPort: number;
    let tlsPort: number | undefined;
    try {
      [proxyPort, , tlsPort] = await Promise.all([
        proxyHandles.length > 0 ? dataPlane.adopt(proxyHandles) : dataPlane.listen(host, port, acceptors),
        adminHandle === undefined ? once(admin, 'listening') : adopt(admin, adminHandle.handle),
        edge?.listen(host, tlsFirst === undefined ? undefined : (server) => adopt(server, tlsFirst)),
      ]);
      // TLS sockets of several workers' groups: each one accepted on, its connections to the TLS server
      for (const h of tlsMore) {
        const extra = createNetServer((socket) => edge?.listener.server.emit('connection', socket));
        await adopt(extra, h);
        tlsExtra.push(extra);
      }
    } catch (err) {
      // a port taken: release whichever listener did bind, so the failed start holds nothing
      dataPlane.stopListening();
      edge?.stopListening();
      for (const x of tlsExtra) x.close();
      admin.close();
      throw err;
    }
    const adminPort = (admin.address() as AddressInfo).port;
    logger.info({ proxy: `${config.listen.host}:${proxyPort}`, ...(tlsPort === undefined ? {} : { tls: `${config.listen.host}:${tlsPort}` }), admin: `${config.admin.host}:${adminPort}`, store: store.kind, apps: controller.appNames() }, 'switchyard listening');
    return tlsPort === undefined ? { proxyPort, adminPort } : { proxyPort, adminPort, tlsPort };
  }

  const inflight = (): number => runtime.allPools().reduce((n, p) => n + p.inflight + p.upgraded, 0);

  async function listeningSockets(): Promise<InheritedListener[]> {
    const out: InheritedListener[] = [];
    const add = (role: InheritedListener['role'], server: NetServer, h: string, p: number): void => {
      const handle = handleOf(server);
      if (handle !== null) out.push({ role, group: 0, host: h, port: p, handle });
    };
    const port = (server: NetServer): number => (server.address() as AddressInfo).port;
    for (const s of dataPlane.listeners()) add('proxy', s, config.listen.host, port(s));
    if (edge !== null && edge.listener.server.listening) for (const s of [edge.listener.server, ...tlsExtra]) add('tls', s, config.listen.host, port(s));
    if (admin.listening) add('admin', admin, config.admin.host, port(admin));
    return out;
  }

  async function stopAccepting(): Promise<void> {
    dataPlane.stopListening();
    edge?.stopListening();
    for (const x of tlsExtra) x.close();
    admin.close();
  }

  async function takeClaim(): Promise<void> {
    dataPlane.holdClaim(await claimPort(config.listen.host, config.listen.port, { probe: false }));
  }

  async function shutdown(opts: { handedOver?: boolean } = {}): Promise<{ cut: number }> {
    if (shuttingDown) return { cut: 0 };
    shuttingDown = true;
    ready = false;
    const started = now();
    // after a hand-over the new process accepts on the same sockets: no `delay` to wait for a load balancer
    const plan = opts.handedOver === true ? { ...config.shutdown, delay: 0 } : config.shutdown;
    logger.info({ inflight: inflight(), ...plan }, opts.handedOver === true ? 'handed over: draining what this process still serves' : 'shutting down: readyz is 503, draining');
    const { answered, cut } = await stopDataPlane({ dataPlane, runtime, shutdown: plan, logger, now, listener: edge?.listener ?? null, ...(opts.handedOver === true ? { settleMs: HANDOVER_SETTLE_MS } : {}) });
    if (cut > 0) telemetry.metrics.shutdownCut(cut);
    await closeParts();
    logger.info({ answered, cut, ms: now() - started }, 'stopped');
    return { cut };
  }

  async function close(): Promise<void> {
    shuttingDown = true;
    dataPlane.stopListening();
    edge?.stopListening();
    for (const x of tlsExtra) x.close();
    dataPlane.closeAllConnections();
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
    // the limits' log, burst and stream-budget timers (nothing else stopped them)
    dataPlane.limits.stop();
    await control.close();
    // last: the spans of the requests the stop let finish are exported
    await tracing?.shutdown();
  }

  return { config, controller, runtime, dataPlane, admin, counts, health, telemetry, drains, rollouts, discovery, edge, listen, shutdown, close, listeningSockets, stopAccepting, takeClaim, setLogLevel: (level) => void (logger.level = level), reloadCertificates: () => edge?.certs.reloadAll() ?? null };
}
