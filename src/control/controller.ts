import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import type { AppConfig, Config } from '../config/schema.ts';
import { ConfigError, SwitchyardError } from '../errors.ts';
import { RoutingTable } from '../routing/routing-table.ts';
import type { Snapshot } from '../routing/snapshot.ts';
import type { Action, HistoryEntry, RoutingState, StateStore } from '../state/types.ts';
import { parseWeights, TOTAL_BP, type Weights } from '../state/weights.ts';
import { initialState, nextState } from './next-state.ts';

export interface WriteOptions {
  /** token name of the caller, for the audit trail */
  readonly by: string;
  readonly reason?: string | null | undefined;
  /** If-Match: the revision the caller saw; a different current revision is a 412 */
  readonly expectedRevision?: number | undefined;
  readonly force?: boolean | undefined;
}

/**
 * Refuses a write (throws) that would send traffic to a pool with no healthy target
 * (src/health/monitor.ts). Returns a note when `force` overrode a refusal: it is appended to the
 * reason in the history and the audit line, so a forced write is visible afterwards.
 */
export type WriteGuard = (app: AppConfig, weights: Weights, opts: WriteOptions, current: Weights) => string | undefined;

export interface ControllerOptions {
  readonly config: Config;
  readonly store: StateStore;
  readonly logger: Logger;
  /** @default Date.now */
  readonly now?: () => number;
  readonly guard?: WriteGuard;
}

/** How many times a write without If-Match re-reads and retries when another instance wrote first. */
const CAS_RETRIES = 5;

/**
 * The control plane: owns the current routing state of every app, writes changes through the
 * store (compare-and-set on the revision), and swaps a new immutable snapshot into place for the
 * data plane whenever a newer state arrives — from this instance or from the store's watch.
 *
 * Events: `applied` (state: RoutingState, previous: RoutingState) after a snapshot swap.
 */
export class Controller extends EventEmitter {
  readonly config: Config;
  readonly store: StateStore;
  private readonly logger: Logger;
  private readonly now: () => number;
  private readonly guard: WriteGuard | undefined;
  private readonly table: RoutingTable;
  private readonly appIndex = new Map<string, number>();
  private unwatch: (() => void) | null = null;

  private constructor(opts: ControllerOptions, states: Map<string, RoutingState>) {
    super();
    this.config = opts.config;
    this.store = opts.store;
    this.logger = opts.logger;
    this.now = opts.now ?? Date.now;
    this.guard = opts.guard;
    opts.config.apps.forEach((a, i) => this.appIndex.set(a.name, i));
    this.table = new RoutingTable(opts.config, states);
  }

  /** The data plane reads this on every request; it is replaced, never mutated. */
  get snapshot(): Snapshot {
    return this.table.snapshot;
  }

  /**
   * Loads every app's state (writing `initial` weights for apps the store does not know yet),
   * checks it against the config, and starts watching the store.
   */
  static async start(opts: ControllerOptions): Promise<Controller> {
    const { config, store } = opts;
    const now = opts.now ?? Date.now;
    const names = config.apps.map((a) => a.name);
    const states = await store.getMany(names);
    for (const app of config.apps) {
      if (states.has(app.name)) continue;
      const seeded = await store.compareAndSet(initialState(app.name, initialWeights(app), now()), null);
      // another instance may have seeded it first: take theirs
      const state = seeded.ok ? seeded.state : seeded.current;
      if (state === null) throw new Error(`app ${app.name}: could not write its initial state`);
      states.set(app.name, state);
    }
    const problems: string[] = [];
    for (const app of config.apps) {
      const state = states.get(app.name) as RoutingState;
      const unknown = Object.keys(state.weights).filter((p) => !(p in app.pools) && (state.weights[p] ?? 0) > 0);
      if (unknown.length > 0) {
        problems.push(`apps.${app.name}: the stored routing state (revision ${state.revision}) sends traffic to pool(s) ${unknown.join(', ')} that the config no longer has; put them back in the config, or switch the app to a configured pool first`);
      }
    }
    if (problems.length > 0) throw new ConfigError(problems);
    const controller = new Controller(opts, states);
    controller.unwatch = store.watch((state) => controller.apply(state));
    return controller;
  }

  appConfig(app: string): AppConfig {
    const i = this.appIndex.get(app);
    if (i === undefined) throw new SwitchyardError('UNKNOWN_APP', `unknown app "${app}"`);
    return this.config.apps[i] as AppConfig;
  }

  state(app: string): RoutingState {
    const s = this.table.state(app);
    if (s === undefined) throw new SwitchyardError('UNKNOWN_APP', `unknown app "${app}"`);
    return s;
  }

  allStates(): RoutingState[] {
    return this.config.apps.map((a) => this.state(a.name));
  }

  /**
   * Applies a state if it is newer than the one routed on; never moves to a lower revision.
   * Returns whether the snapshot changed.
   */
  apply(state: RoutingState): boolean {
    const previous = this.table.applyOrRefuse(state, this.logger);
    if (previous === null) return false;
    this.emit('applied', state, previous);
    return true;
  }


  /** Parses API percentages for an app, throwing a 400 that names the field. */
  parseWeights(app: string, input: Readonly<Record<string, number>>): Record<string, number> {
    const r = parseWeights(input, Object.keys(this.appConfig(app).pools));
    if (!r.ok) {
      const details = r.issues.map((i) => ({ path: i.path.join('.'), message: i.message }));
      throw new SwitchyardError('BAD_REQUEST', details.map((d) => `${d.path}: ${d.message}`).join('; '), { details });
    }
    return r.weights;
  }

  async switchTo(app: string, to: string, opts: WriteOptions): Promise<RoutingState> {
    const cfg = this.appConfig(app);
    if (!(to in cfg.pools)) throw new SwitchyardError('UNKNOWN_POOL', `app "${app}" has no pool "${to}"`, { details: [{ path: 'to', message: `unknown pool (pools: ${Object.keys(cfg.pools).join(', ')})` }] });
    const weights: Record<string, number> = {};
    for (const p of Object.keys(cfg.pools)) weights[p] = p === to ? TOTAL_BP : 0;
    return this.write(app, 'switch', () => weights, opts);
  }

  async setWeights(app: string, weights: Weights, opts: WriteOptions, action: Action = 'weights'): Promise<RoutingState> {
    return this.write(app, action, () => weights, opts);
  }

  /** Writes, as a new revision, the weights of the revision before the current one. */
  async rollback(app: string, opts: WriteOptions): Promise<RoutingState> {
    return this.write(app, 'rollback', async (cur) => {
      const entries = await this.store.history(app, 2);
      const previous = entries.find((e) => e.revision === cur.revision - 1);
      if (previous === undefined) throw new SwitchyardError('NO_EARLIER_REVISION', `app "${app}" has no revision before ${cur.revision} in its history`);
      const names = Object.keys(this.appConfig(app).pools);
      const weights: Record<string, number> = {};
      for (const p of names) weights[p] = previous.weights[p] ?? 0;
      return weights;
    }, opts);
  }

  async history(app: string, limit: number): Promise<HistoryEntry[]> {
    this.appConfig(app);
    return this.store.history(app, limit);
  }

  private async write(app: string, action: Action, weightsOf: (cur: RoutingState) => Weights | Promise<Weights>, opts: WriteOptions): Promise<RoutingState> {
    const cfg = this.appConfig(app);
    for (let attempt = 0; ; attempt++) {
      const cur = this.state(app);
      if (opts.expectedRevision !== undefined && opts.expectedRevision !== cur.revision) {
        throw new SwitchyardError('STALE_REVISION', `revision ${opts.expectedRevision} is stale; the current revision is ${cur.revision}`, { details: { currentRevision: cur.revision } });
      }
      const weights = await weightsOf(cur);
      const forced = this.guard?.(cfg, weights, opts, cur.weights);
      const reason = forced === undefined ? (opts.reason ?? null) : opts.reason ? `${opts.reason} (${forced})` : forced;
      const next = nextState(cur, { weights, action, by: opts.by, reason, now: this.now() });
      const result = await this.store.compareAndSet(next, cur.revision);
      if (result.ok) {
        this.apply(result.state);
        this.logger[forced === undefined ? 'info' : 'warn']({ audit: true, app, action, actor: opts.by, reason: next.reason, forced: forced !== undefined, before: { revision: cur.revision, weights: cur.weights }, after: { revision: next.revision, weights: next.weights } }, `${action} ${app} by ${opts.by}`);
        return result.state;
      }
      // someone else wrote first: route on theirs, then either report it (If-Match) or retry
      if (result.current !== null) this.apply(result.current);
      if (opts.expectedRevision !== undefined || attempt >= CAS_RETRIES) {
        const current = this.state(app);
        throw new SwitchyardError('STALE_REVISION', `another write got there first; the current revision is ${current.revision}`, { details: { currentRevision: current.revision } });
      }
      if (result.current === null) throw new SwitchyardError('STORE_UNAVAILABLE', `the store holds no state for app "${app}"`);
    }
  }

  async close(): Promise<void> {
    this.unwatch?.();
    this.unwatch = null;
  }
}

/** `initial` from the config, or the first configured pool at 100 %. */
export function initialWeights(app: AppConfig): Weights {
  const names = Object.keys(app.pools);
  if (app.initial !== undefined) {
    const r = parseWeights(app.initial, names, ['initial']);
    if (r.ok) return r.weights;
  }
  const w: Record<string, number> = {};
  names.forEach((n, i) => (w[n] = i === 0 ? TOTAL_BP : 0));
  return w;
}
