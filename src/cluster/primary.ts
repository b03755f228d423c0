import { once } from 'node:events';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { availableParallelism, hostname } from 'node:os';
import type { Logger } from 'pino';
import { loadDashboard } from '../admin/dashboard.ts';
import { createAdminServer } from '../admin/server.ts';
import type { Config } from '../config/schema.ts';
import type { Controller } from '../control/controller.ts';
import type { CountsSource } from '../control/counts.ts';
import { fleetCounts } from '../control/fleet.ts';
import { claimPort, type PortClaim } from '../dataplane/port-claim.ts';
import type { Runtime } from '../dataplane/runtime.ts';
import { withDiscovery } from '../discovery/view.ts';
import type { HealthMonitor } from '../health/monitor.ts';
import type { LogSink } from '../logger.ts';
import { fleetPeerWindows, type Telemetry } from '../metrics/telemetry.ts';
import { adminRoutes } from '../planes/admin-routes.ts';
import { buildControlPlane } from '../planes/control-plane.ts';
import type { Rollouts } from '../rollout/rollouts.ts';
import type { RolloutTuning } from '../rollout/setup.ts';
import type { RoutingState } from '../state/types.ts';
import { WorkerGroup, groupCounts } from './group.ts';
import type { PrimaryTls } from './primary-tls.ts';
import { GroupFleet } from './group-fleet.ts';
import { GroupMetrics } from './group-metrics.ts';
import type { DiscoveredTargets, HealthTable, ToPrimary, ToWorker } from './ipc.ts';
import { Supervisor } from './supervisor.ts';
import { storeHealth } from '../state/writability.ts';
import { adopt, closeHandle, handleOf, matches, type InheritedListener } from '../upgrade/handles.ts';

export interface PrimaryDeps {
  readonly logger: Logger;
  /** the config file's app definitions win over the store's at start (`serve --apply-config`) @default false */
  readonly applyConfig?: boolean;
  /** how many data-plane workers to run (≥ 2; one worker is the single-process `build()`) */
  readonly workers: number;
  /** the script workers run: main.ts, which hands a cluster worker to `startWorker` */
  readonly exec: string;
  /** @default Date.now */
  readonly now?: () => number;
  /** @default `${hostname()}:${pid}` */
  readonly instanceId?: string;
  readonly rollouts?: RolloutTuning;
  /** the log's destination (main.ts): its write errors go to /metrics and /readyz */
  readonly logSink?: LogSink;
  /** listening sockets a previous Switchyard handed over (src/upgrade): the admin one here, the others to the workers */
  readonly inherited?: readonly InheritedListener[];
}

export interface Primary {
  readonly config: Config;
  readonly controller: Controller;
  readonly admin: Server;
  readonly counts: CountsSource;
  readonly health: HealthMonitor;
  readonly telemetry: Telemetry;
  readonly group: WorkerGroup;
  readonly supervisor: Supervisor;
  readonly rollouts: Rollouts;
  /** binds the admin listener and starts the workers; resolves once every worker listens */
  listen(): Promise<{ adminPort: number }>;
  /** SIGTERM: readyz 503 at once, every worker drains (delay, grace, hardStop), then everything closes; `handedOver`: no delay */
  shutdown(opts?: { handedOver?: boolean }): Promise<{ cut: number }>;
  /** an upgrade: the admin socket and every worker's (copies this process carries) */
  listeningSockets(): Promise<InheritedListener[]>;
  /** an upgrade handed the sockets over: the admin listener and the workers stop accepting */
  stopAccepting(): Promise<void>;
  /** after a hand-over: takes the proxy port's claim the old process released */
  takeClaim(): Promise<void>;
  /** SIGHUP (src/reload.ts): here and in every worker */
  setLogLevel(level: Config['log']['level']): void;
  reloadCertificates(): { reloaded: number; failed: number } | null;
}

/** How long a write waits for every worker to route on it before answering anyway. */
const WRITE_SETTLE_MS = 1_000;
/** Past `delay + hardStop`, how long a worker may take to exit before it is killed. */
const EXIT_MARGIN_MS = 5_000;

/** Every target's health as the primary's checks see it, for the workers. */
/** Every pool's discovered targets, for a worker's `init`. */
function discoveredTargets(runtime: Runtime): DiscoveredTargets[] {
  return runtime.apps.flatMap((a) => a.pools.filter((p) => p.discovered.length > 0).map((p) => ({ app: a.name, pool: p.name, urls: p.discovered })));
}

export function healthTable(runtime: Runtime): HealthTable {
  return Object.fromEntries(runtime.apps.map((a) => [a.name, Object.fromEntries(a.pools.map((p) => [p.name, Object.fromEntries(p.targets.map((t) => [t.url, { healthy: t.healthy, ejectedUntil: t.ejectedUntil }]))]))]));
}

/**
 * The primary of `workers: N`: everything of a single-process Switchyard but the data plane —
 * the store, the Controller, active health checks, rollouts, the admin API — plus the workers
 * (supervisor.ts), which it feeds every applied routing state and every health change, and whose
 * figures it sums (group.ts) so the API, `/metrics` and the fleet see one instance.
 */
export async function startPrimary(config: Config, deps: PrimaryDeps): Promise<Primary> {
  const { logger } = deps;
  const now = deps.now ?? Date.now;
  const instanceId = deps.instanceId ?? `${hostname()}:${process.pid}`;
  // the workers' group, read by the fleet (its heartbeat) and the admin API (the workers' figures);
  // made before the control plane, whose fleet reads it, so it reads the Controller once there is one
  let started: Controller | null = null;
  const group = new WorkerGroup(() => (started === null ? [] : started.snapshot.apps.map((a) => ({ name: a.name, pools: a.pools.map((p) => p.name) }))));
  // discovery's finds go to the workers once they run (each one starts with them in its `init`)
  let toWorkers: (m: ToWorker) => void = () => undefined;
  // the primary's Runtime holds the targets the active checks and the 409 gate look at; it carries no traffic
  const control = await buildControlPlane(config, {
    logger,
    now,
    instanceId,
    ...(deps.applyConfig === undefined ? {} : { applyConfig: deps.applyConfig }),
    ...(deps.rollouts === undefined ? {} : { rollouts: deps.rollouts }),
    ...(deps.logSink === undefined ? {} : { logSink: deps.logSink }),
    fleet: (opts) => new GroupFleet({ ...opts, stats: () => group.stats() }, group),
    onDiscovered: (app, pool, urls) => toWorkers({ type: 'sy:discovered', app, pool, urls }),
  });
  const { store, controller, runtime, health, telemetry, fleet, rollouts, discovery } = control;
  started = controller;
  const fleetPeers = fleet === null ? null : fleetPeerWindows(fleet);
  // the workers' windows as one export (the group is one instance), then the fleet's
  telemetry.stats.attachFleet(function* peers(passive) {
    const own = group.stats();
    if (own !== null) yield own;
    if (fleetPeers !== null) yield* fleetPeers(passive);
  });
  const revisionOf = (app: string): number => {
    try {
      return controller.state(app).revision;
    } catch {
      return 0;
    }
  };
  const counts = fleet === null ? groupCounts(group, instanceId, revisionOf) : fleetCounts(fleet);
  let listening = false;
  let shuttingDown = false;
  let cut = 0;

  // handed-over sockets: the admin one is ours; the workers' groups are spread over the slots, every group to one
  // slot (a socket nobody accepts on would hold its connections), and stay here for a slot's replacement worker
  const inherited = deps.inherited ?? [];
  const { host, port } = config.listen;
  const forWorkers = inherited.filter((l) => (l.role === 'proxy' && matches(l, host, port)) || (l.role === 'tls' && matches(l, host, config.listen.tls?.port ?? -1)));
  const adminInherited = inherited.find((l) => l.role === 'admin' && matches(l, config.admin.host, config.admin.port));
  // the rest (an address the new config no longer has) is closed: the old process's close then refuses as it should
  for (const l of inherited) if (l !== adminInherited && !forWorkers.includes(l)) closeHandle(l.handle);
  let inheritedOpen = true;
  const releaseInherited = (): void => {
    if (!inheritedOpen) return;
    inheritedOpen = false;
    for (const l of forWorkers) closeHandle(l.handle);
  };
  const supervisor: Supervisor = new Supervisor({
    workers: deps.workers,
    inherited: (slot) => (inheritedOpen ? forWorkers.filter((l) => l.group % deps.workers === slot) : []),
    exec: deps.exec,
    logger: logger.child({ component: 'workers' }),
    init: (slot) => ({ type: 'sy:init', slot, config, states: controller.allStates(), health: healthTable(runtime), discovered: discoveredTargets(runtime), acme: tls?.pems() ?? [] }),
    onMessage: (slot, msg) => onWorkerMessage(slot, msg),
    onGone: (slot) => {
      group.leave(slot);
      metrics.forget(slot);
    },
  });
  // with listen.tls: the certificates (and ACME, the group's one orderer) the workers serve (primary-tls.ts)
  const tlsConfig = config.listen.tls;
  const tls: PrimaryTls | null =
    tlsConfig === undefined
      ? null
      : await (await import('./primary-tls.ts')).PrimaryTls.create({ config, tls: tlsConfig, logger, registry: telemetry.metrics.registry, store, instanceId, now, broadcast: (m) => supervisor.broadcast(m), sendTo: (slot, m) => supervisor.sendTo(slot, m) });
  toWorkers = (m) => supervisor.broadcast(m);
  const metrics = new GroupMetrics({ registry: telemetry.metrics.registry, sendReady: (msg) => supervisor.sendReady(msg) });

  function onWorkerMessage(slot: number, msg: ToPrimary): void {
    switch (msg.type) {
      case 'sy:ready':
        group.join(slot, msg.applied);
        return;
      case 'sy:applied':
        group.acknowledge(slot, msg.applied);
        return;
      case 'sy:report':
        group.report(slot, msg.report);
        return;
      case 'sy:ejected': {
        // keep the admin views and the 409 gate right, and spare the other workers the failures
        const t = runtime.pool(msg.app, msg.pool)?.targets.find((x) => x.url === msg.target);
        if (t === undefined || t.ejectedUntil >= msg.until) return;
        t.ejectedUntil = msg.until;
        t.ejections++;
        supervisor.broadcast({ type: 'sy:health', health: healthTable(runtime) });
        return;
      }
      case 'sy:metrics':
        metrics.answer(slot, msg.id, msg.metrics);
        return;
      case 'sy:stopped':
        cut += msg.cut;
        return;
      case 'sy:http01':
        if (tls === null) supervisor.sendTo(slot, { type: 'sy:http01', id: msg.id, keyAuthorization: null, failed: false });
        else tls.ask(slot, msg.id, msg.token);
        return;
      case 'sy:hello':
      case 'sy:fatal':
        return;
    }
  }

  controller.on('applied', (state: RoutingState) => {
    logger.info({ app: state.app, revision: state.revision }, 'routing state applied');
    supervisor.broadcast({ type: 'sy:state', state });
  });
  health.on('change', () => supervisor.broadcast({ type: 'sy:health', health: healthTable(runtime) }));
  // a target that joined a pool starts with the primary's view of it too
  runtime.on('targets', () => setImmediate(() => supervisor.broadcast({ type: 'sy:health', health: healthTable(runtime) })));
  settleWritesOnWorkers(controller, group, logger);
  if (fleet !== null) {
    // a worker acknowledging a revision changes what the group's heartbeat says: say it now
    let beat: NodeJS.Immediate | null = null;
    group.onChange(() => {
      beat ??= setImmediate(() => {
        beat = null;
        void fleet.heartbeat();
      });
    });
  }

  const admin = createAdminServer({
    config,
    controller,
    counts,
    health: withDiscovery(health, discovery),
    logger,
    now,
    ready: () => listening && !shuttingDown && supervisor.readyCount > 0,
    readyDetails: () => ({
      shuttingDown,
      store: store.kind,
      ...storeHealth(store),
      ...(deps.logSink === undefined ? {} : { log: deps.logSink.view() }),
      revisions: Object.fromEntries(controller.allStates().map((s) => [s.app, s.revision])),
      brokenStates: controller.brokenStates(),
      workers: supervisor.view().map((w) => ({ ...w, ...group.figures(w.slot) })),
      ...fleet?.details(),
      ...tls?.details(),
    }),
    routes: adminRoutes({
      controller,
      stats: telemetry.stats,
      // the workers' merged export is this instance's own figures, not another instance
      statsView: (view) => ({ ...view, fleet: fleet !== null, instances: group.stats() === null ? view.instances : Math.max(1, view.instances - 1), workers: group.size }),
      rollouts,
      certificates: () => tls,
      now,
    }),
    metrics,
    fallback: await loadDashboard(),
  });
  health.start();

  let portClaim: PortClaim | null = null;
  async function closeAll(): Promise<void> {
    portClaim?.release();
    admin.close();
    admin.closeAllConnections();
    await tls?.close();
    await control.close();
  }

  async function listen(): Promise<{ adminPort: number }> {
    if (adminInherited === undefined) {
      admin.listen(config.admin.port, config.admin.host);
      await once(admin, 'listening');
    } else await adopt(admin, adminInherited.handle);
    // workers start with the first answers (each first lookup is bounded)
    await discovery.settled();
    try {
      // the group's claim on the proxy port: its workers bind it, no other Switchyard may
      // after a hand-over the claim is taken once the old process released it (takeClaim)
      if (forWorkers.length === 0) portClaim = await claimPort(config.listen.host, config.listen.port);
      await supervisor.start();
    } catch (err) {
      await closeAll();
      throw err;
    }
    listening = true;
    // ordering starts once the workers' ports answer the CA's challenges
    tls?.start();
    const adminPort = (admin.address() as AddressInfo).port;
    const modes = [...new Set(supervisor.view().map((w) => w.listen))];
    logger.info({ proxy: `${config.listen.host}:${config.listen.port}`, admin: `${config.admin.host}:${adminPort}`, workers: deps.workers, listen: modes, store: store.kind, apps: controller.appNames() }, 'switchyard listening');
    return { adminPort };
  }

  async function listeningSockets(): Promise<InheritedListener[]> {
    const handle = admin.listening ? handleOf(admin) : null;
    const own: InheritedListener[] = handle === null ? [] : [{ role: 'admin', group: 0, host: config.admin.host, port: (admin.address() as AddressInfo).port, handle }];
    return [...own, ...(await supervisor.collectSockets())];
  }

  async function stopAccepting(): Promise<void> {
    // the new process takes the claim once this one released it
    portClaim?.release();
    portClaim = null;
    admin.close();
    supervisor.stopAccepting();
    releaseInherited();
  }

  async function takeClaim(): Promise<void> {
    portClaim?.release();
    portClaim = await claimPort(config.listen.host, config.listen.port, { probe: false });
  }

  async function shutdown(opts: { handedOver?: boolean } = {}): Promise<{ cut: number }> {
    if (shuttingDown) return { cut: 0 };
    shuttingDown = true;
    const { grace, hardStop } = config.shutdown;
    const delay = opts.handedOver === true ? 0 : config.shutdown.delay;
    const started = now();
    logger.info({ workers: supervisor.readyCount, delay, grace, hardStop }, opts.handedOver === true ? 'handed over: workers draining what they still serve' : 'shutting down: readyz is 503, workers draining');
    // the copies of handed-over sockets close when the workers stop accepting, so later connects are refused, not queued
    const release = setTimeout(releaseInherited, delay);
    await supervisor.stop(delay + hardStop + EXIT_MARGIN_MS, opts);
    clearTimeout(release);
    releaseInherited();
    if (cut > 0) telemetry.metrics.shutdownCut(cut);
    await closeAll();
    logger.info({ cut, ms: now() - started }, 'stopped');
    return { cut };
  }

  return { config, controller, admin, counts, health, telemetry, group, supervisor, rollouts, listen, shutdown, listeningSockets, stopAccepting, takeClaim,
    setLogLevel(level) {
      logger.level = level;
      supervisor.broadcast({ type: 'sy:reload', level });
    },
    reloadCertificates() {
      if (tls === null) return null;
      supervisor.broadcast({ type: 'sy:reload', certificates: true });
      return tls.reloadCertificates();
    },
  };
}

/**
 * A write (switch, weights, rollback, a rollout step) answers once every worker routes on it,
 * bounded by WRITE_SETTLE_MS: a 200 then means the whole instance switched, as it does for one
 * process, and its `instances.applied` already counts it. The Controller knows nothing of
 * workers, so its three write methods are wrapped here rather than taught about them.
 */
function settleWritesOnWorkers(controller: Controller, group: WorkerGroup, logger: Logger): void {
  const settle = async (state: RoutingState): Promise<RoutingState> => {
    if (!(await group.settled(state.app, state.revision, WRITE_SETTLE_MS))) {
      logger.warn({ app: state.app, revision: state.revision, ms: WRITE_SETTLE_MS }, 'not every worker acknowledged the new routing state in time; answering anyway');
    }
    return state;
  };
  const switchTo = controller.switchTo.bind(controller);
  const setWeights = controller.setWeights.bind(controller);
  const rollback = controller.rollback.bind(controller);
  controller.switchTo = async (...args) => settle(await switchTo(...args));
  controller.setWeights = async (...args) => settle(await setWeights(...args));
  controller.rollback = async (...args) => settle(await rollback(...args));
}

/** `workers` from the config: a number, or `auto` for one per CPU the process may use. */
export function workerCount(setting: Config['workers'], cores: number = availableParallelism()): number {
  return setting === 'auto' ? cores : setting;
}
