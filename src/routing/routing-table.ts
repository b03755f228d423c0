import type { Logger } from 'pino';
import type { Config } from '../config/schema.ts';
import type { RoutingState } from '../state/types.ts';
import { buildAppRoute, buildSnapshot, type AppRoute, type Snapshot } from './snapshot.ts';

/**
 * Every app's current routing state and the snapshot built from them, with the one rule both
 * the controller and a worker's mirror follow: a state is applied only if its revision is
 * newer, and then a whole new snapshot replaces the old one in one assignment.
 */
export class RoutingTable {
  /** The data plane reads this on every request; it is replaced, never mutated. */
  snapshot: Snapshot;
  private readonly config: Config;
  private readonly index = new Map<string, number>();
  private readonly states = new Map<string, RoutingState>();
  private readonly routes = new Map<string, AppRoute>();

  /** `states` must hold one state per configured app; throws naming the first one missing. */
  constructor(config: Config, states: ReadonlyMap<string, RoutingState>) {
    this.config = config;
    config.apps.forEach((app, i) => {
      this.index.set(app.name, i);
      const state = states.get(app.name);
      if (state === undefined) throw new Error(`no routing state for app ${app.name}`);
      this.states.set(app.name, state);
      this.routes.set(app.name, buildAppRoute(i, app, state));
    });
    this.snapshot = this.rebuild();
  }

  state(app: string): RoutingState | undefined {
    return this.states.get(app);
  }

  allStates(): RoutingState[] {
    return this.config.apps.map((a) => this.states.get(a.name) as RoutingState);
  }

  /**
   * Applies `state` if it is newer than the one routed on and returns the state it replaced;
   * null when it is not newer (or the app is unknown). Throws, changing nothing, when the state
   * does not fit the config (weights not summing to 100 %).
   */
  apply(state: RoutingState): RoutingState | null {
    const current = this.states.get(state.app);
    const i = this.index.get(state.app);
    if (current === undefined || i === undefined || state.revision <= current.revision) return null;
    const route = buildAppRoute(i, this.config.apps[i] as Config['apps'][number], state);
    this.states.set(state.app, state);
    this.routes.set(state.app, route);
    this.snapshot = this.rebuild();
    return current;
  }

  /**
   * `apply`, for the controller and a worker's mirror: a state that does not fit the config is
   * logged and refused (null), and routing goes on with the current snapshot.
   */
  applyOrRefuse(state: RoutingState, logger: Pick<Logger, 'error'>): RoutingState | null {
    try {
      return this.apply(state);
    } catch (err) {
      logger.error({ err, app: state.app, revision: state.revision }, 'refusing a routing state that does not fit the config');
      return null;
    }
  }

  private rebuild(): Snapshot {
    return buildSnapshot(this.config.apps.map((a) => this.routes.get(a.name) as AppRoute));
  }
}
