import { hostname } from 'node:os';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.ts';
import type { PoolCounts } from '../control/counts.ts';
import type { DrainDeadlines } from '../dataplane/drain.ts';
import { Runtime } from '../dataplane/runtime.ts';
import type { DataPlane } from '../dataplane/server.ts';
import { stopDataPlane } from '../dataplane/shutdown.ts';
import { HealthMonitor, type HealthChange } from '../health/monitor.ts';
import { registerLogMetrics, type LogSink } from '../logger.ts';
import type { Probe } from '../health/probe.ts';
import { createTelemetry, type Telemetry } from '../metrics/telemetry.ts';
import { buildDataPlane, enableH2c, loadTracing } from '../planes/data-plane.ts';
import type { RoutingState } from '../state/types.ts';
import type { DiscoveredTargets, HealthTable, ListenMode, PrometheusJson, ToWorker, WorkerChannel, WorkerReport } from './ipc.ts';
import { listenWorker } from './listen.ts';
import { StateMirror } from './state-mirror.ts';
import type { Edge } from '../edge/edge.ts';
import { WorkerAcme } from './worker-acme.ts';
import { releaseStartupMemory } from '../memory.ts';
import { adopt, handleOf, HANDOVER_SETTLE_MS, matches, type InheritedListener } from '../upgrade/handles.ts';
import { createServer as createNetServer, type AddressInfo, type Server as NetServer } from 'node:net';
import type { Tracing } from '../tracing/types.ts';
import { internalsWarnings, onPoolFallback } from '../dataplane/engine/internals.ts';

export interface WorkerOptions {
  readonly channel: WorkerChannel;
  /** the worker's logger, made once the primary sent the config (and with it the log level) */
  readonly logger: (config: Config) => Logger;
  /** @default Date.now */
  readonly now?: () => number;
  /** the log's destination (main.ts): its write errors go to the worker's metrics */
  readonly logSink?: LogSink;
  /** ms between reports to the primary @default 500 */
  readonly reportInterval?: number;
}

export interface WorkerProcess {
  /** Settles once the worker stopped: resolves after a graceful shutdown, rejects when it could not start. */
  readonly stopped: Promise<{ cut: number }>;
  /** Graceful stop (the primary asks, or a signal reached this process): idempotent. */
  shutdown(): Promise<{ cut: number }>;
}

/** Active checks run in the primary alone; a worker's HealthMonitor only wires the passive ones. */
const noProbe: Probe = () => Promise.resolve({ ok: true, status: null, version: null, error: null });

/**
 * A data-plane worker: says hello, builds its data plane from the primary's `init` (config,
 * every app's routing state, target health), listens, then follows the primary's states and
 * health and reports its figures. Touches no process state; main.ts hands it a channel.
 */
export function startWorker(opts: WorkerOptions): WorkerProcess {
  const { channel } = opts;
  let plane: WorkerPlane | null = null;
  let stopping: Promise<{ cut: number }> | null = null;
  const stopped = Promise.withResolvers<{ cut: number }>();
  // main.ts exits on it; never an unhandled rejection meanwhile
  stopped.promise.catch(() => undefined);

  const fail = (err: unknown): void => {
    channel.send({ type: 'sy:fatal', message: err instanceof Error ? err.message : String(err) });
    stopped.reject(err);
  };

  // sockets a previous Switchyard handed over, for this worker's slot (they arrive before `init`)
  const inherited: InheritedListener[] = [];

  function shutdown(opts: { handedOver?: boolean } = {}): Promise<{ cut: number }> {
    stopping ??= (plane === null ? Promise.resolve({ cut: 0 }) : plane.shutdown(opts)).then(
      (r) => {
        channel.send({ type: 'sy:stopped', cut: r.cut });
        stopped.resolve(r);
        return r;
      },
      (err: unknown) => {
        fail(err);
        return { cut: 0 };
      },
    );
    return stopping;
  }

  channel.onMessage((msg: ToWorker, handle) => {
    switch (msg.type) {
      case 'sy:listener':
        if (handle !== undefined) inherited.push({ role: msg.role, group: msg.group, host: msg.host, port: msg.port, handle });
        return;
      case 'sy:sockets': {
        const sockets = plane?.listeningSockets() ?? [];
        for (const { handle: h, ...info } of sockets) channel.send({ type: 'sy:socket', ...info }, h);
        channel.send({ type: 'sy:sockets-done', count: sockets.length });
        return;
      }
      case 'sy:reload':
        plane?.reload(msg);
        return;
      case 'sy:stop-accepting':
        plane?.stopAccepting();
        return;
      case 'sy:init': {
        if (plane !== null || stopping !== null) return;
        try {
          plane = new WorkerPlane(msg, opts, inherited);
        } catch (err) {
          fail(err);
          return;
        }
        const p = plane;
        p.listen().then((mode) => {
          channel.send({ type: 'sy:ready', pid: process.pid, listen: mode, applied: p.routing.revisions() });
          p.report();
          releaseStartupMemory();
        }, fail);
        return;
      }
      case 'sy:state':
        plane?.routing.apply(msg.state);
        return;
      case 'sy:health':
        plane?.applyHealth(msg.health);
        return;
      case 'sy:discovered':
        plane?.applyDiscovered(msg);
        return;
      case 'sy:metrics':
        void plane?.metricsJson().then((metrics) => channel.send({ type: 'sy:metrics', id: msg.id, metrics }));
        return;
      case 'sy:shutdown':
        void shutdown(msg.handedOver === true ? { handedOver: true } : {});
        return;
      case 'sy:acme-cert':
        plane?.acme?.certificate(msg);
        return;
      case 'sy:acme-alpn':
      case 'sy:http01':
        plane?.acme?.onMessage(msg);
        return;
    }
  });
  // the primary died or was killed: finish what is in flight rather than orphan the port
  channel.onDisconnect(() => void shutdown());
  channel.send({ type: 'sy:hello' });
  return { stopped: stopped.promise, shutdown };
}

/** Everything a worker runs: the single-process data plane, fed by the primary instead of a store. */
class WorkerPlane {
  readonly routing: StateMirror;
  private readonly config: Config;
  private readonly channel: WorkerChannel;
  private readonly logger: Logger;
  private readonly now: () => number;
  private readonly runtime: Runtime;
  private readonly health: HealthMonitor;
  private readonly telemetry: Telemetry;
  private readonly dataPlane: DataPlane;
  private readonly drains: DrainDeadlines;
  private readonly timer: NodeJS.Timeout;
  /** the TLS port (`listen.tls`), built in listen(): its modules load on demand, as in app.ts */
  private edge: Edge | null = null;
  /** with `tracing:`, loaded in listen() (on demand, as in app.ts) */
  private tracing: Tracing | null = null;
  /** with `listen.tls.acme`: the certificates and challenges the primary's ACME sends */
  readonly acme: WorkerAcme | null;
  private served = 0;
  private reportSoon: NodeJS.Immediate | null = null;
  private readonly inherited: readonly InheritedListener[];
  private readonly slot: number;
  /** TLS sockets beyond the first one inherited */
  private readonly tlsExtra: NetServer[] = [];

  constructor(init: Extract<ToWorker, { type: 'sy:init' }>, opts: WorkerOptions, inherited: readonly InheritedListener[] = []) {
    this.inherited = inherited;
    this.slot = init.slot;
    const config = (this.config = init.config);
    this.channel = opts.channel;
    const logger = (this.logger = opts.logger(config).child({ worker: init.slot }));
    const now = (this.now = opts.now ?? Date.now);
    if (init.slot === 0) for (const line of internalsWarnings(config.engine)) logger.warn(line);
    // undici's Pool loads with the first target that needs it; said once, by the first worker, like the lines above
    onPoolFallback(init.slot === 0 ? (line) => logger.warn(line) : () => {});
    this.runtime = new Runtime({ now, engine: config.engine });
    this.routing = new StateMirror(init.states, logger, (s) => this.runtime.sync(s));
    // the primary's targets first: its health table is applied to the targets the worker has
    for (const d of init.discovered) this.applyDiscovered(d);
    this.applyHealth(init.health);
    this.health = new HealthMonitor({ config, runtime: this.runtime, logger: logger.child({ component: 'health' }), now, probe: noProbe });
    this.health.on('change', (c: HealthChange) => this.onEjected(c));
    this.telemetry = createTelemetry({ config, controller: this.routing, runtime: this.runtime, store: {}, logger, now });
    const telemetry = this.telemetry;
    if (opts.logSink !== undefined) registerLogMetrics(telemetry.metrics.registry, opts.logSink);
    ({ dataPlane: this.dataPlane, drains: this.drains } = buildDataPlane(config, {
      source: this.routing,
      runtime: this.runtime,
      telemetry,
      logger,
      now,
      onRequest: () => void this.served++,
      intercept: (req, res) => this.edge?.intercept(req, res) ?? false,
    }));
    this.acme = config.listen.tls?.acme === undefined ? null : new WorkerAcme((m) => this.channel.send(m), logger.child({ component: 'acme' }));
    for (const pem of init.acme ?? []) this.acme?.certificate(pem);
    this.routing.on('applied', (state: RoutingState) => {
      logger.debug({ app: state.app, revision: state.revision }, 'routing state applied');
      this.channel.send({ type: 'sy:applied', applied: this.routing.revisions() });
      // the drain figures move with a switch: report them now rather than within an interval
      this.reportSoon ??= setImmediate(() => {
        this.reportSoon = null;
        this.report();
      });
    });
    this.timer = setInterval(() => this.report(), opts.reportInterval ?? 500).unref();
  }

  async listen(): Promise<ListenMode> {
    const { host, port, acceptors, tls } = this.config.listen;
    this.tracing = await loadTracing(this.config, this.logger, `${hostname()}:${process.pid}`);
    if (this.tracing !== null) this.dataPlane.setTracing(this.tracing);
    await enableH2c(this.config, this.dataPlane);
    if (tls !== undefined) {
      this.edge = await (await import('../edge/edge.ts')).Edge.create({ config: this.config, tls, dataPlane: this.dataPlane, logger: this.logger, registry: this.telemetry.metrics.registry, ...(this.acme === null ? {} : { remoteAcme: this.acme }) });
      this.acme?.attach(this.edge);
    }
    const proxy = this.inherited.filter((l) => l.role === 'proxy' && matches(l, host, port)).map((l) => l.handle);
    const [tlsFirst, ...tlsMore] = this.inherited.filter((l) => l.role === 'tls' && matches(l, host, tls?.port ?? -1)).map((l) => l.handle);
    // sockets handed over by the previous Switchyard: accepted on as they are (src/upgrade)
    const mode: ListenMode = proxy.length > 0 ? (await this.dataPlane.adopt(proxy), 'inherited') : await listenWorker(this.dataPlane.server, host, port);
    // the TLS port as the plain one: a reuse-port socket of its own, or node:cluster's distribution
    await this.edge?.listen(host, tlsFirst === undefined ? listenWorker : (server) => adopt(server, tlsFirst));
    for (const h of tlsMore) {
      const extra = createNetServer((socket) => this.edge?.listener.server.emit('connection', socket));
      await adopt(extra, h);
      this.tlsExtra.push(extra);
    }
    // more listeners in the worker's reuse-port group: more connections accepted per turn
    if (mode === 'reuseport') await this.dataPlane.addAcceptors(host, port, acceptors);
    return mode;
  }

  /** Its listening sockets, for an upgrade; none in node:cluster's shared mode, where the primary owns the socket. */
  listeningSockets(): InheritedListener[] {
    const { host, tls } = this.config.listen;
    const out: InheritedListener[] = [];
    const add = (role: 'proxy' | 'tls', server: NetServer): void => {
      const handle = handleOf(server);
      if (handle !== null) out.push({ role, group: this.slot, host, port: (server.address() as AddressInfo).port, handle });
    };
    for (const s of this.dataPlane.listeners()) add('proxy', s);
    if (tls !== undefined && this.edge !== null && this.edge.listener.server.listening) for (const s of [this.edge.listener.server, ...this.tlsExtra]) add('tls', s);
    return out;
  }

  /** SIGHUP, as the primary passes it on: the log level, the certificate files */
  reload(msg: { readonly level?: Config['log']['level']; readonly certificates?: boolean }): void {
    if (msg.level !== undefined) this.logger.level = msg.level;
    if (msg.certificates === true) this.edge?.certs.reloadAll();
  }

  /** An upgrade handed the sockets over: no more accepting here (they stay open in the new process). */
  stopAccepting(): void {
    this.dataPlane.stopListening();
    this.edge?.stopListening();
    for (const x of this.tlsExtra) x.close();
  }

  /** The primary's view of every target: its active checks' verdict, and ejections by any worker. */
  applyHealth(table: HealthTable): void {
    this.runtime.apps.forEach((app) =>
      app.pools.forEach((pool) =>
        pool.targets.forEach((t) => {
          const h = table[app.name]?.[pool.name]?.[t.url];
          if (h === undefined) return;
          t.healthy = h.healthy;
          t.ejectedUntil = Math.max(t.ejectedUntil, h.ejectedUntil);
        }),
      ),
    );
  }

  /** The primary's discovery changed a pool's targets: the same zero-loss add and retire as in one process. */
  applyDiscovered(d: DiscoveredTargets): void {
    this.runtime.setDiscoveredTargets(d.app, d.pool, d.urls);
  }

  /** This worker's passive checks ejected a target: the primary passes it on to the others. */
  private onEjected(c: HealthChange): void {
    if (c.state !== 'ejected') return;
    const now = this.now();
    const t = this.runtime.pool(c.app, c.pool)?.targets.find((x) => x.url === c.target && x.ejectedUntil > now);
    if (t !== undefined) this.channel.send({ type: 'sy:ejected', app: c.app, pool: c.pool, target: t.url, until: t.ejectedUntil });
  }

  report(): void {
    const now = this.now();
    const pools: Record<string, Record<string, PoolCounts>> = {};
    for (const app of this.runtime.apps) {
      const byPool: Record<string, PoolCounts> = {};
      for (const p of app.pools) byPool[p.name] = p.counts(now);
      pools[app.name] = byPool;
    }
    const report: WorkerReport = { applied: this.routing.revisions(), pools, stats: this.telemetry.stats.exportWindows(), served: this.served, at: Date.now() };
    this.channel.send({ type: 'sy:report', report });
  }

  metricsJson(): Promise<PrometheusJson> {
    return this.telemetry.metrics.registry.getMetricsAsJSON();
  }

  private inflight(): number {
    return this.runtime.allPools().reduce((n, p) => n + p.inflight + p.upgraded, 0);
  }

  /** As the single process's shutdown (app.ts, src/dataplane/shutdown.ts): delay, grace, hardStop. */
  async shutdown(opts: { handedOver?: boolean } = {}): Promise<{ cut: number }> {
    const started = this.now();
    // handed over: the new process accepts on the same sockets, so no `delay` to wait for a load balancer
    const plan = opts.handedOver === true ? { ...this.config.shutdown, delay: 0 } : this.config.shutdown;
    this.logger.info({ inflight: this.inflight(), ...plan }, 'worker shutting down: draining');
    if (opts.handedOver === true) this.stopAccepting();
    const { answered, cut } = await stopDataPlane({ dataPlane: this.dataPlane, runtime: this.runtime, shutdown: plan, logger: this.logger, now: this.now, listener: this.edge?.listener ?? null, ...(opts.handedOver === true ? { settleMs: HANDOVER_SETTLE_MS } : {}) });
    for (const x of this.tlsExtra) x.close();
    await this.edge?.close();
    clearInterval(this.timer);
    if (this.reportSoon !== null) clearImmediate(this.reportSoon);
    this.drains.close();
    this.dataPlane.limits.stop();
    await this.health.close();
    await this.runtime.close();
    await this.tracing?.shutdown();
    this.logger.info({ answered, cut, ms: this.now() - started }, 'worker stopped');
    return { cut };
  }
}
