import type { PoolCounts } from '../control/counts.ts';
import { Fleet, type FleetOptions, type Heartbeat } from '../control/fleet.ts';
import type { WorkerGroup } from './group.ts';

/**
 * Fleet membership (Redis) of a process group: one heartbeat for the whole group, carrying
 * the workers' summed counts and the revision every process of the group routes on. The
 * primary's own Runtime serves no traffic, so the base class's figures would all be zero.
 */
export class GroupFleet extends Fleet {
  // `declare`: no initializer, so it is set after super() returns; the base constructor's
  // first heartbeat runs before that and reports the primary's own (zero) figures
  declare private group: WorkerGroup | undefined;

  constructor(opts: FleetOptions, group: WorkerGroup) {
    super(opts);
    this.group = group;
  }

  override own(): Heartbeat {
    // applied and digests already come through ownRevision (below): the group's lowest revision
    const hb = super.own();
    const group = this.group;
    return group === undefined ? hb : { ...hb, pools: group.pools() };
  }

  override ownCounts(app: string, pool: string): PoolCounts {
    return this.group?.counts(app, pool) ?? super.ownCounts(app, pool);
  }

  override ownRevision(app: string): number {
    const revision = super.ownRevision(app);
    return this.group?.revision(app, revision) ?? revision;
  }
}
