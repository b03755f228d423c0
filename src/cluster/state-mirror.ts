import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import { RoutingTable } from '../routing/routing-table.ts';
import type { Snapshot } from '../routing/snapshot.ts';
import type { RoutingState } from '../state/types.ts';

/**
 * A worker's copy of the routing states the primary's Controller applied: the same snapshot
 * building and the same rule (never a lower revision), without a store. What the worker's data
 * plane, drain deadlines and metrics read in place of the Controller.
 *
 * Events: `applied` (state: RoutingState) after a snapshot swap.
 */
export class StateMirror extends EventEmitter {
  private readonly logger: Logger;
  private readonly table: RoutingTable;

  /**
   * `states`: every live app's (the primary sends them all, each with its definition);
   * `onSnapshot`: the worker's Runtime follows each new snapshot there, before it serves.
   */
  constructor(states: readonly RoutingState[], logger: Logger, onSnapshot?: (snapshot: Snapshot) => void) {
    super();
    this.logger = logger;
    this.table = new RoutingTable(states, onSnapshot === undefined ? {} : { onSnapshot });
  }

  /** The data plane reads this on every request; it is replaced, never mutated. */
  get snapshot(): Snapshot {
    return this.table.snapshot;
  }

  /** Applies a state if it is newer than the one routed on; returns whether the snapshot changed. */
  apply(state: RoutingState): boolean {
    // a state that does not fit: the primary built the same route already, so only a bug
    if (this.table.applyOrRefuse(state, this.logger) === null) return false;
    this.emit('applied', state);
    return true;
  }

  allStates(): RoutingState[] {
    return this.table.allStates();
  }

  /** app → revision routed on, what the worker acknowledges. */
  revisions(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const s of this.table.allStates()) out[s.app] = s.revision;
    return out;
  }
}
