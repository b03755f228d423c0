import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.ts';
import { buildAppRoute, buildSnapshot, type AppRoute, type Snapshot } from '../routing/snapshot.ts';
import type { RoutingState } from '../state/types.ts';

/**
 * A worker's copy of the routing states the primary's Controller applied: the same snapshot
 * building and the same rule (never a lower revision), without a store. What the worker's data
 * plane, drain deadlines and metrics read in place of the Controller.
 *
 * Events: `applied` (state: RoutingState) after a snapshot swap.
 */
export class StateMirror extends EventEmitter {
  /** The data plane reads this on every request; it is replaced, never mutated. */
  snapshot: Snapshot;
  private readonly config: Config;
  private readonly logger: Logger;
  private readonly states = new Map<string, RoutingState>();
  private readonly routes = new Map<string, AppRoute>();

  /** `states`: one per configured app (the primary sends them all); throws when one is missing. */
  constructor(config: Config, states: readonly RoutingState[], logger: Logger) {
    super();
    this.config = config;
    this.logger = logger;
    const byApp = new Map(states.map((s) => [s.app, s]));
    config.apps.forEach((app, i) => {
      const state = byApp.get(app.name);
      if (state === undefined) throw new Error(`the primary sent no routing state for app ${app.name}`);
      this.states.set(app.name, state);
      this.routes.set(app.name, buildAppRoute(i, app, state));
    });
    this.snapshot = this.rebuild();
  }

  /** Applies a state if it is newer than the one routed on; returns whether the snapshot changed. */
  apply(state: RoutingState): boolean {
    const current = this.states.get(state.app);
    if (current === undefined || state.revision <= current.revision) return false;
    const index = this.config.apps.findIndex((a) => a.name === state.app);
    let route: AppRoute;
    try {
      route = buildAppRoute(index, this.config.apps[index] as Config['apps'][number], state);
    } catch (err) {
      // the primary built the same route already; this can only be a bug, and routing goes on
      this.logger.error({ err, app: state.app, revision: state.revision }, 'refusing a routing state that does not fit the config');
      return false;
    }
    this.states.set(state.app, state);
    this.routes.set(state.app, route);
    this.snapshot = this.rebuild();
    this.emit('applied', state);
    return true;
  }

  allStates(): RoutingState[] {
    return this.config.apps.map((a) => this.states.get(a.name) as RoutingState);
  }

  /** app → revision routed on, what the worker acknowledges. */
  revisions(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [app, s] of this.states) out[app] = s.revision;
    return out;
  }

  private rebuild(): Snapshot {
    return buildSnapshot(this.config.apps.map((a) => this.routes.get(a.name) as AppRoute));
  }
}
