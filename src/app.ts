import { once } from 'node:events';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import { canaryRoutes } from './admin/canary-routes.ts';
import { loadDashboard } from './admin/dashboard.ts';
import { createAdminServer } from './admin/server.ts';
import { rolloutRoutes } from './admin/rollout-routes.ts';
import { statsRoutes } from './admin/stats-routes.ts';
import { certificateRoutes } from './edge/certificates-route.ts';
import type { Config } from './config/schema.ts';
import { Controller } from './control/controller.ts';
import type { CountsSource } from './control/counts.ts';
import { Fleet, fleetCounts } from './control/fleet.ts';
import { targetFigures } from './control/target-figures.ts';
import { DrainDeadlines } from './dataplane/drain.ts';
import { TrustedProxies } from './dataplane/headers.ts';
import { localCounts, Runtime } from './dataplane/runtime.ts';
import { processLimits } from './dataplane/limits.ts';
import { DataPlane, type DataPlaneOptions } from './dataplane/server.ts';
import { stopDataPlane } from './dataplane/shutdown.ts';
import { Discovery } from './discovery/discovery.ts';
import { discoveryMetrics } from './discovery/metrics.ts';
import { withDiscovery } from './discovery/view.ts';
import type { Edge } from './edge/edge.ts';
import { HealthMonitor } from './health/monitor.ts';
import { registerLogMetrics, type LogSink } from './logger.ts';
import { createTelemetry, fleetPeerWindows, type Telemetry } from './metrics/telemetry.ts';
import type { Rollouts } from './rollout/rollouts.ts';
import { createRollouts, type RolloutTuning } from './rollout/setup.ts';
import { FileStore } from './state/file-store.ts';
import { isRedisStore, type StateStore } from './state/types.ts';
import { storeHealth } from './state/writability.ts';
import { adopt, handleOf, HANDOVER_SETTLE_MS, matches, type InheritedListener } from './upgrade/handles.ts';
import { claimPort } from './dataplane/port-claim.ts';
import { internalsWarnings } from './dataplane/engine/internals.ts';
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

export async function openStore(config: Config, logger?: Logger): Promise<StateStore> {
  const s = config.store;
  // no `pools` option: each state's own definition names the pools its weights may use (src/state/invariants.ts)
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
  for (const line of internalsWarnings(config.engine)) logger.warn(line);
  const runtime = new Runtime({ now, engine: config.engine, onRetire: (e) => logger.info(e, e.what === 'closed' ? 'removed target closed: nothing left on it' : 'removed target: its drain deadline passed, closing what is still open on it') });
  const health = new HealthMonitor({ config, runtime, logger: logger.child({ component: 'health' }), now });
  // every snapshot reaches the runtime before it serves: new targets get connection pools, removed ones retire
  const controller = await Controller.start({ config, store, logger, now, guard: health.guard, onSnapshot: (s) => runtime.sync(s), applyConfig: deps.applyConfig === true }).catch(async (err: unknown) => {
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
  // each instance resolves the pools' `discover` itself; what it finds joins the runtime's pools
  const discovery: Discovery = new Discovery({
    config: config.discovery,
    definitions: () => controller.snapshot.apps.map((a) => a.config),
    sink: runtime,
    logger: logger.child({ component: 'discovery' }),
    now,
    onLookup: discoveryMetrics(telemetry.metrics.registry, () => discovery).onLookup,
  });
  discovery.follow();
  controller.on('applied', () => discovery.follow());
  let ready = true;
  let shuttingDown = false;
  // loaded on demand: without `tracing:` nothing of the OpenTelemetry SDK is loaded
  const tracing = config.tracing === undefined ? null : (await import('./tracing/otel.ts')).createOtelTracing(config.tracing, { logger: logger.child({ component: 'tracing' }), instanceId });

  const dpOpts: DataPlaneOptions = {
    source: controller,
    runtime,
    trust: new TrustedProxies(config.trustedProxies),
    now,
    ...(deps.random === undefined ? {} : { random: deps.random }),
    onRequest: telemetry.onRequest,
    onPreviewRejected: telemetry.onPreviewRejected,
    onMirror: telemetry.onMirror,
    limits: processLimits(config, logger, runtime),
    tracing,
    ...(config.listen.tls === undefined ? {} : { intercept: (req, res) => edge?.intercept(req, res) ?? false }),
  };
  const dataPlane = new DataPlane(dpOpts);
  // h2c (README "gRPC"): node:http2 is loaded only when it is on, as for listen.tls below
  if (config.listen.h2c) dataPlane.enableH2c((await import('./edge/h2.ts')).createH2Server({ limits: dataPlane.limits, handle: (req, res) => dataPlane.handle(req, res) }));
  telemetry.metrics.addLimits(dataPlane.limits);
  if (deps.logSink !== undefined) registerLogMetrics(telemetry.metrics.registry, deps.logSink);
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
    routes: [...canaryRoutes(controller), ...statsRoutes(telemetry.stats), ...certificateRoutes(() => (edge === null ? null : { certificates: () => edge.certs.all(), acme: () => edge.acme?.status() ?? null }), now), ...rolloutRoutes(rollouts, (app) => Object.keys(controller.appConfig(app).pools))],
    metrics: telemetry.metrics,
    fallback: await loadDashboard(),
    targetFigures: (app, pool) => targetFigures(runtime, app, pool),
  });

  controller.on('applied', (state: { app: string; revision: number }) => logger.info({ app: state.app, revision: state.revision }, 'routing state applied'));
  health.start();
  const drains = new DrainDeadlines({ runtime, source: controller, now, onDeadline: (app, pool, open) => {
      if (open > 0) logger.info({ app, pool, open }, 'drain deadline passed: closing what is still open on the pool');
    } });
  drains.update();
  controller.on('applied', () => drains.update());

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
    discovery.close();
    await edge?.close();
    drains.close();
    telemetry.stats.close();
    await health.close();
    await rollouts.close();
    await fleet?.close();
    await controller.close();
    await store.close();
    await runtime.close();
    // last: the spans of the requests the stop let finish are exported
    await tracing?.shutdown();
  }

  return { config, controller, runtime, dataPlane, admin, counts, health, telemetry, drains, rollouts, discovery, edge, listen, shutdown, close, listeningSockets, stopAccepting, takeClaim, setLogLevel: (level) => void (logger.level = level), reloadCertificates: () => edge?.certs.reloadAll() ?? null };
}
