import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { Config } from '../config/schema.ts';
import type { Controller } from '../control/controller.ts';
import { isRedisStore } from '../state/is-redis.ts';
import type { StateStore } from '../state/types.ts';
import type { StatsSource } from './analysis.ts';
import { LocalLease, RedisLease, type Lease, type Scheduler } from '../state/lease.ts';
import { RedisRolloutStore } from './redis.ts';
import { Rollouts, type RolloutsOptions } from './rollouts.ts';
import { FileRolloutStore, MemoryRolloutStore, rolloutsPathBeside, type RolloutStore } from './store.ts';

/** Tuning of the rollout driver (tests shorten everything). */
export interface RolloutTuning {
  /** ms between the driver's rounds @default 1000 */
  readonly tickMs?: number;
  /** ms the fleet lease lives without renewal (renewed every third) @default 10000 */
  readonly leaseTtlMs?: number;
  /** the driver's clock, apart from the proxy's @default the proxy's `now` */
  readonly now?: () => number;
  readonly schedule?: Scheduler;
  /** notification retries and deadlines */
  readonly notify?: RolloutsOptions['notify'];
}

export interface RolloutDeps {
  readonly config: Config;
  readonly store: StateStore;
  readonly controller: Controller;
  readonly stats: StatsSource;
  readonly registry: Registry;
  readonly logger: Logger;
  readonly instanceId: string;
  readonly now: () => number;
  readonly tuning?: RolloutTuning | undefined;
}

/**
 * Rollouts on the store the proxy uses: on Redis the records sit beside the routing state and a
 * lease elects the one driver; on the file store the records go to a file beside the state file
 * and this (single) instance drives.
 */
export async function createRollouts(deps: RolloutDeps): Promise<Rollouts> {
  const logger = deps.logger.child({ component: 'rollouts' });
  const now = deps.tuning?.now ?? deps.now;
  const schedule = deps.tuning?.schedule;
  let records: RolloutStore;
  let lease: Lease;
  let instanceId = deps.instanceId;
  if (isRedisStore(deps.store)) {
    const { client, keys } = deps.store;
    records = new RedisRolloutStore(client, keys.rollout);
    // unique per process start: a restarted instance must not renew the lease of its previous life
    const id = `${deps.instanceId}/${randomBytes(3).toString('hex')}`;
    instanceId = id;
    lease = new RedisLease({ client, key: keys.rolloutLease, id, ttlMs: deps.tuning?.leaseTtlMs, logger, now, ...(schedule === undefined ? {} : { schedule }) });
  } else {
    records = deps.config.store.kind === 'file' ? await FileRolloutStore.open(rolloutsPathBeside(deps.config.store.path)) : new MemoryRolloutStore();
    lease = new LocalLease(deps.instanceId);
  }
  const prometheus = deps.config.analysis.prometheus ?? null;
  const rollouts = new Rollouts({ controller: deps.controller, stats: deps.stats, store: records, lease, logger, registry: deps.registry, now, schedule, tickMs: deps.tuning?.tickMs, instanceId, prometheus, notify: deps.tuning?.notify });
  rollouts.start();
  return rollouts;
}
