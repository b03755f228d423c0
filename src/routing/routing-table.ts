import type { Logger } from 'pino';
import { compileDefinition, type AppDefinition } from '../config/definition.ts';
import type { AppConfig } from '../config/schema.ts';
import { canonicalJson } from '../state/digest.ts';
import type { RoutingState } from '../state/types.ts';
import { buildAppRoute, buildSnapshot, type AppRoute, type Snapshot } from './snapshot.ts';
import { SwitchyardError } from '../errors.ts';

export interface RoutingTableOptions {
  /**
   * Called with every new snapshot, synchronously, before it is the current one: the Runtime
   * follows it here (new targets get their connection pools before a request can pick them).
   */
  readonly onSnapshot?: (snapshot: Snapshot) => void;
}

/** What `apply` replaced: the app's previous state, or null for an app this table did not route. */
export interface Applied {
  readonly previous: RoutingState | null;
}

/**
 * Every app's current routing state and the snapshot compiled from the states' definitions, with
 * the one rule both the controller and a worker's mirror follow: a state is applied only if its
 * revision is newer, and then a whole new snapshot replaces the old one in one assignment.
 *
 * Slots: each app and each pool gets an index the first time this table sees it, never reused
 * (a deleted pool keeps its slot, a re-added one gets it back), which is how the Runtime, the
 * metrics and the data plane find their counters without a map lookup per request.
 */
export class RoutingTable {
  /** The data plane reads this on every request; it is replaced, never mutated. */
  snapshot: Snapshot;
  /** every app's newest state, deleted ones (tombstones) included */
  private readonly states = new Map<string, RoutingState>();
  private readonly compiled = new Map<string, { readonly json: string; readonly config: AppConfig }>();
  /** each live app's definition: its state's own, or the one kept from before for a state written without one */
  private readonly definitions = new Map<string, AppDefinition>();
  /** live apps only */
  private readonly routes = new Map<string, AppRoute>();
  private readonly appSlots = new Map<string, number>();
  private readonly poolSlots = new Map<string, Map<string, number>>();
  private readonly onSnapshot: ((snapshot: Snapshot) => void) | undefined;

  /** Every state must carry a definition (or be a tombstone); throws naming the first that does not. */
  constructor(states: Iterable<RoutingState>, opts: RoutingTableOptions = {}) {
    this.onSnapshot = opts.onSnapshot;
    for (const state of states) {
      this.states.set(state.app, state);
      if (state.deleted === true) continue;
      if (state.definition === undefined) throw new SwitchyardError('INVALID_STATE', `no definition in the routing state of app ${state.app}`);
      this.routes.set(state.app, this.route(state, state.definition));
      this.definitions.set(state.app, state.definition);
    }
    this.snapshot = this.rebuild();
  }

  /** The state of a live app (undefined for an unknown or deleted one). */
  state(app: string): RoutingState | undefined {
    const s = this.states.get(app);
    return s === undefined || s.deleted === true ? undefined : s;
  }

  /** The newest state of an app, a tombstone included. */
  stateOrTombstone(app: string): RoutingState | undefined {
    return this.states.get(app);
  }

  /** The definition a live app is routed on (as stored). */
  definition(app: string): AppDefinition | undefined {
    return this.routes.has(app) ? this.definitions.get(app) : undefined;
  }

  /** The compiled definition of a live app. */
  appConfig(app: string): AppConfig | undefined {
    return this.routes.get(app)?.config;
  }

  /** Live apps' states, in slot order. */
  allStates(): RoutingState[] {
    return this.snapshot.apps.map((a) => this.states.get(a.name) as RoutingState);
  }

  /**
   * Applies `state` if it is newer than the one held for its app and returns what it replaced;
   * null when it is not newer. A state without a definition keeps the app's current one (written
   * by a version before live definitions). Throws, changing nothing, when the state cannot be
   * routed on (weights not summing to 100 %, no definition at all).
   */
  apply(state: RoutingState): Applied | null {
    const current = this.states.get(state.app);
    if (current !== undefined && state.revision <= current.revision) return null;
    if (state.deleted === true) {
      this.states.set(state.app, state);
      if (!this.routes.delete(state.app)) return { previous: null };
      this.snapshot = this.rebuild();
      return { previous: current ?? null };
    }
    // a state written without a definition (by a version before live definitions) keeps the app's
    // current one; the state itself is kept as written, so its digest matches the store's
    const definition = state.definition ?? (current?.deleted === true ? undefined : this.definitions.get(state.app));
    if (definition === undefined) throw new SwitchyardError('INVALID_STATE', `app ${state.app}: revision ${state.revision} carries no definition and none is known`);
    const route = this.route(state, definition);
    this.states.set(state.app, state);
    this.definitions.set(state.app, definition);
    this.routes.set(state.app, route);
    this.snapshot = this.rebuild();
    return { previous: current === undefined || current.deleted === true ? null : current };
  }

  /**
   * `apply`, for the controller and a worker's mirror: a state that cannot be routed on is
   * logged and refused (null), and routing goes on with the current snapshot.
   */
  applyOrRefuse(state: RoutingState, logger: Pick<Logger, 'error'>): Applied | null {
    try {
      return this.apply(state);
    } catch (err) {
      logger.error({ err, app: state.app, revision: state.revision }, 'refusing a routing state that cannot be routed on');
      return null;
    }
  }

  private route(state: RoutingState, definition: AppDefinition): AppRoute {
    const config = this.compile(state.app, definition);
    let slot = this.appSlots.get(state.app);
    if (slot === undefined) {
      slot = this.appSlots.size;
      this.appSlots.set(state.app, slot);
    }
    let pools = this.poolSlots.get(state.app);
    if (pools === undefined) this.poolSlots.set(state.app, (pools = new Map()));
    const slots = pools;
    const route = buildAppRoute(slot, config, state, (pool) => {
      let i = slots.get(pool);
      if (i === undefined) slots.set(pool, (i = slots.size));
      return i;
    });
    return route;
  }

  /** The compiled definition, reused while the definition is unchanged (most writes change weights only). */
  private compile(app: string, definition: AppDefinition): AppConfig {
    const json = canonicalJson(definition);
    const cached = this.compiled.get(app);
    if (cached !== undefined && cached.json === json) return cached.config;
    const config = compileDefinition(definition, app);
    this.compiled.set(app, { json, config });
    return config;
  }

  private rebuild(): Snapshot {
    const apps = [...this.routes.values()].sort((a, b) => a.index - b.index);
    const snapshot = buildSnapshot(apps);
    this.onSnapshot?.(snapshot);
    return snapshot;
  }
}
