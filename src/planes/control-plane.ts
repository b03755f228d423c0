import type { Logger } from 'pino';
import type { Config } from '../config/schema.ts';
import { Controller } from '../control/controller.ts';
import { Fleet, type FleetOptions } from '../control/fleet.ts';
import { Runtime } from '../dataplane/runtime.ts';
import { Discovery } from '../discovery/discovery.ts';
import { discoveryMetrics } from '../discovery/metrics.ts';
import { HealthMonitor } from '../health/monitor.ts';
import { registerLogMetrics, type LogSink } from '../logger.ts';
import { createTelemetry, type Telemetry } from '../metrics/telemetry.ts';
import type { Rollouts } from '../rollout/rollouts.ts';
import { createRollouts, type RolloutTuning } from '../rollout/setup.ts';
import { FileStore } from '../state/file-store.ts';
import { isRedisStore } from '../state/is-redis.ts';
import type { StateStore } from '../state/types.ts';

export interface ControlPlaneDeps {
  readonly logger: Logger;
  readonly now: () => number;
  readonly instanceId: string;
  /** a store to use instead of the one the config names (tests); left open when the start fails */
  readonly store?: StateStore;
  /** the config file's app definitions win over the store's at start (`serve --apply-config`) @default false */
  readonly applyConfig?: boolean;
  /** the rollout driver's round interval, lease TTL, clock and timers (tests) */
  readonly rollouts?: RolloutTuning;
  /** the access log's sampling draw @default Math.random */
  readonly sampleRandom?: () => number;
  /** the log's destination (main.ts): its write errors go to /metrics and /readyz */
  readonly logSink?: LogSink;
  /** log each removed target as it retires (a Runtime that carries traffic) @default false */
  readonly logRetired?: boolean;
  /**
   * The fleet membership on a Redis store (heartbeats, fleet-wide counts, re-seeding): a process
   * group's primary makes a `GroupFleet`. @default `new Fleet(opts)` with this instance's stats windows
   */
  readonly fleet?: (opts: FleetOptions) => Fleet;
  /** told when discovery changed a pool's targets (the primary passes it on to its workers) */
  readonly onDiscovered?: (app: string, pool: string, urls: readonly string[]) => void;
}

/**
 * The control plane: the store, the Controller that turns its states into routing snapshots,
 * the targets' Runtime and their health checks, telemetry, the fleet (Redis), rollouts and
 * discovery. The single process and a group's primary build it alike; the admin API reads it.
 */
export interface ControlPlane {
  readonly store: StateStore;
  readonly controller: Controller;
  /** every pool's targets: the data plane's own in one process, a view with no traffic in the primary */
  readonly runtime: Runtime;
  /** active and passive health checks, the 409 write gate; the caller starts them once its parts are wired */
  readonly health: HealthMonitor;
  readonly telemetry: Telemetry;
  /** on a Redis store, else null */
  readonly fleet: Fleet | null;
  readonly rollouts: Rollouts;
  readonly discovery: Discovery;
  /** closes what it built, in dependency order (the store last but the runtime) */
  close(): Promise<void>;
}

export async function openStore(config: Config, logger?: Logger): Promise<StateStore> {
  const s = config.store;
  // no `pools` option: each state's own definition names the pools its weights may use (src/state/invariants.ts)
  if (s.kind === 'file') return FileStore.open({ path: s.path, historyLimit: s.historyLimit });
  const { kind: _kind, ...redis } = s;
  // loaded on demand, so a file-store deployment never pays for ioredis
  const { RedisStore } = await import('../state/redis-store.ts');
  return RedisStore.open({ ...redis, logger: logger?.child({ component: 'redis-store' }) });
}

/** Builds the control plane from a validated config; nothing listens yet. */
export async function buildControlPlane(config: Config, deps: ControlPlaneDeps): Promise<ControlPlane> {
  const { logger, now, instanceId } = deps;
  const store = deps.store ?? (await openStore(config, logger));
  // the runtime comes first: the health gate on writes reads its targets
  const runtime = new Runtime({
    now,
    engine: config.engine,
    ...(deps.logRetired === true ? { onRetire: (e) => logger.info(e, e.what === 'closed' ? 'removed target closed: nothing left on it' : 'removed target: its drain deadline passed, closing what is still open on it') } : {}),
  });
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
  const makeFleet = deps.fleet ?? ((o: FleetOptions) => new Fleet(o));
  const fleet = isRedisStore(store) ? makeFleet({ store, controller, runtime, instanceId, logger: logger.child({ component: 'fleet' }), now, stats: () => telemetry.stats.exportWindows() }) : null;
  const rollouts = await createRollouts({ config, store, controller, stats: telemetry.stats, registry: telemetry.metrics.registry, logger, instanceId, now, tuning: deps.rollouts });
  // each instance (a group: its primary) resolves the pools' `discover` itself; what it finds joins the runtime's pools
  const discovery: Discovery = new Discovery({
    config: config.discovery,
    definitions: () => controller.snapshot.apps.map((a) => a.config),
    sink: runtime,
    logger: logger.child({ component: 'discovery' }),
    now,
    onLookup: discoveryMetrics(telemetry.metrics.registry, () => discovery).onLookup,
    ...(deps.onDiscovered === undefined ? {} : { onTargets: deps.onDiscovered }),
  });
  discovery.follow();
  controller.on('applied', () => discovery.follow());
  if (deps.logSink !== undefined) registerLogMetrics(telemetry.metrics.registry, deps.logSink);

  async function close(): Promise<void> {
    discovery.close();
    telemetry.stats.close();
    await health.close();
    await rollouts.close();
    await fleet?.close();
    await controller.close();
    await store.close();
    await runtime.close();
  }

  return { store, controller, runtime, health, telemetry, fleet, rollouts, discovery, close };
}
