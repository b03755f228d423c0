import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import type { AppConfig, Config } from '../config/schema.ts';
import { ConfigError, SwitchyardError } from '../errors.ts';
import { RoutingTable } from '../routing/routing-table.ts';
import type { Snapshot } from '../routing/snapshot.ts';
import type { InvalidStateError } from '../state/invariants.ts';
import type { Action, HistoryEntry, RoutingState, StateStore } from '../state/types.ts';
import { ownOf, parseWeights, TOTAL_BP, type Weights } from '../state/weights.ts';
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
  /**
   * How long a write without If-Match keeps re-reading and retrying while other writers win the
   * compare-and-set, before it gives up with 409 WRITE_CONFLICT.
   * @default 5000
   */
  readonly writeDeadlineMs?: number;
}

export const WRITE_DEADLINE_MS = 5000;

/** An app whose stored state cannot be loaded: routed on its config's `initial` weights until a write replaces it. */
interface BrokenApp {
  readonly message: string;
  /** what the store counts the bad state as, for the compare-and-set that replaces it */
  readonly expected: number | null;
}

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
  private readonly writeDeadlineMs: number;
  private readonly broken: Map<string, BrokenApp>;
  private unwatch: (() => void) | null = null;

  private constructor(opts: ControllerOptions, states: Map<string, RoutingState>, broken: Map<string, BrokenApp>) {
    super();
    this.config = opts.config;
    this.store = opts.store;
    this.logger = opts.logger;
    this.now = opts.now ?? Date.now;
    this.guard = opts.guard;
    this.writeDeadlineMs = opts.writeDeadlineMs ?? WRITE_DEADLINE_MS;
    this.broken = broken;
    opts.config.apps.forEach((a, i) => this.appIndex.set(a.name, i));
    this.table = new RoutingTable(opts.config, states);
  }

  /** The data plane reads this on every request; it is replaced, never mutated. */
  get snapshot(): Snapshot {
    return this.table.snapshot;
  }

  /**
   * Loads every app's state (writing `initial` weights for apps the store does not know yet),
   * checks it against the config, and starts watching the store. An app whose stored state
   * cannot be loaded does not stop the others: it is logged, listed by `brokenStates()`, and
   * routed on its `initial` weights (nothing written) until a write replaces the bad state.
   */
  static async start(opts: ControllerOptions): Promise<Controller> {
    const { config, store, logger } = opts;
    const now = opts.now ?? Date.now;
    const names = config.apps.map((a) => a.name);
    const invalid = new Map<string, InvalidStateError>();
    const states = await store.getMany(names, (err) => invalid.set(err.app, err));
    const broken = new Map<string, BrokenApp>();
    for (const app of config.apps) {
      if (states.has(app.name)) continue;
      const bad = invalid.get(app.name);
      if (bad !== undefined) {
        const placeholder = initialState(app.name, initialWeights(app), now());
        const reason = `the stored routing state cannot be loaded (${bad.message}); routing on the config's initial weights until a write replaces it`;
        states.set(app.name, { ...placeholder, revision: bad.revision ?? 0, reason });
        broken.set(app.name, { message: bad.message, expected: bad.revision });
        logger.error({ err: bad, app: app.name }, `app ${app.name}: ${reason}`);
        continue;
      }
      const seeded = await store.compareAndSet(initialState(app.name, initialWeights(app), now()), null);
      // another instance may have seeded it first: take theirs
      const state = seeded.ok ? seeded.state : seeded.current;
      if (state === null) throw new Error(`app ${app.name}: could not write its initial state`);
      states.set(app.name, state);
    }
    const problems: string[] = [];
    for (const app of config.apps) {
      const state = states.get(app.name) as RoutingState;
      const unknown = Object.entries(state.weights).filter(([p, bp]) => !Object.hasOwn(app.pools, p) && bp > 0).map(([p]) => p);
      if (unknown.length > 0) {
        problems.push(`apps.${app.name}: the stored routing state (revision ${state.revision}) sends traffic to pool(s) ${unknown.join(', ')} that the config no longer has; put them back in the config, or switch the app to a configured pool first`);
      }
    }
    if (problems.length > 0) throw new ConfigError(problems);
    const controller = new Controller(opts, states, broken);
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

  /** App → why its stored state could not be loaded, for the apps routed on `initial` weights meanwhile (/readyz). */
  brokenStates(): Record<string, string> {
    return Object.fromEntries([...this.broken].map(([app, b]) => [app, b.message]));
  }

  /**
   * Applies a state if it is newer than the one routed on; never moves to a lower revision.
   * Returns whether the snapshot changed.
   */
  apply(state: RoutingState): boolean {
    const previous = this.table.applyOrRefuse(state, this.logger);
    if (previous === null) return false;
    if (this.broken.delete(state.app)) this.logger.info({ app: state.app, revision: state.revision }, `app ${state.app}: its routing state was replaced by a valid one`);
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
    if (!Object.hasOwn(cfg.pools, to)) throw new SwitchyardError('UNKNOWN_POOL', `app "${app}" has no pool "${to}"`, { details: [{ path: 'to', message: `unknown pool (pools: ${Object.keys(cfg.pools).join(', ')})` }] });
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
      for (const p of names) weights[p] = ownOf(previous.weights, p) ?? 0;
      return weights;
    }, opts);
  }

  async history(app: string, limit: number): Promise<HistoryEntry[]> {
    this.appConfig(app);
    return this.store.history(app, limit);
  }

  /**
   * One write: re-read, compute, compare-and-set. With If-Match, a lost compare-and-set is a 412;
   * without, it retries (after a short random pause, so racing writers spread out) until it wins
   * or `writeDeadlineMs` passes (409 WRITE_CONFLICT). Weights equal to the current ones write
   * nothing and answer the current state. Resolves with the state this call wrote.
   */
  private async write(app: string, action: Action, weightsOf: (cur: RoutingState) => Weights | Promise<Weights>, opts: WriteOptions): Promise<RoutingState> {
    const cfg = this.appConfig(app);
    const pools = Object.keys(cfg.pools);
    // monotonic, not the injected clock: a test's frozen `now` must not make a write retry forever
    const deadline = performance.now() + this.writeDeadlineMs;
    for (let attempt = 1; ; attempt++) {
      const cur = this.state(app);
      if (opts.expectedRevision !== undefined && opts.expectedRevision !== cur.revision) {
        throw new SwitchyardError('STALE_REVISION', `revision ${opts.expectedRevision} is stale; the current revision is ${cur.revision}`, { details: { currentRevision: cur.revision } });
      }
      const weights = onPools(await weightsOf(cur), pools);
      const broken = this.broken.get(app);
      if (broken === undefined && sameWeights(weights, cur.weights, pools)) {
        this.logger.info({ audit: true, app, action, actor: opts.by, reason: opts.reason ?? null, noop: true, revision: cur.revision }, `${action} ${app} by ${opts.by}: no change, nothing written`);
        return cur;
      }
      const forced = this.guard?.(cfg, weights, opts, cur.weights);
      const reason = forced === undefined ? (opts.reason ?? null) : opts.reason ? `${opts.reason} (${forced})` : forced;
      const next = nextState(cur, { weights, action, by: opts.by, reason, now: this.now() });
      const result = await this.store.compareAndSet(next, broken === undefined ? cur.revision : broken.expected);
      if (result.ok) {
        this.apply(result.state);
        this.logger[forced === undefined ? 'info' : 'warn']({ audit: true, app, action, actor: opts.by, reason: next.reason, forced: forced !== undefined, before: { revision: cur.revision, weights: cur.weights }, after: { revision: next.revision, weights: next.weights } }, `${action} ${app} by ${opts.by}`);
        return result.state;
      }
      // someone else wrote first: route on theirs, then either report it (If-Match) or retry
      if (result.current === null) throw new SwitchyardError('STORE_UNAVAILABLE', `the store holds no state for app "${app}"`);
      this.apply(result.current);
      if (opts.expectedRevision !== undefined) {
        const current = this.state(app);
        throw new SwitchyardError('STALE_REVISION', `another write got there first; the current revision is ${current.revision}`, { details: { currentRevision: current.revision } });
      }
      if (result.current.revision <= cur.revision) {
        // retrying cannot help: the store is behind this instance (see the fleet's regression report in /readyz)
        throw new SwitchyardError('WRITE_CONFLICT', `the store holds revision ${result.current.revision} of app "${app}", not newer than the ${cur.revision} this instance routes on; writes fail until that is repaired`);
      }
      if (performance.now() >= deadline) {
        throw new SwitchyardError('WRITE_CONFLICT', `other writers to app "${app}" kept getting there first: gave up after ${attempt} attempts in ${this.writeDeadlineMs} ms; try again`, { details: { attempts: attempt, currentRevision: this.state(app).revision } });
      }
      await sleep(Math.random() * Math.min(50, 2 * attempt));
    }
  }

  async close(): Promise<void> {
    this.unwatch?.();
    this.unwatch = null;
  }
}

/**
 * The weights over the configured pools, in their order, own properties only. A pool the config
 * no longer has is dropped at 0 (a rollout's starting weights may still name one) and kept with
 * weight, so the store's invariant check refuses the write loudly.
 */
function onPools(weights: Weights, pools: readonly string[]): Weights {
  const entries: [string, number][] = pools.map((p) => [p, ownOf(weights, p) ?? 0]);
  for (const [p, bp] of Object.entries(weights)) if (!pools.includes(p) && bp !== 0) entries.push([p, bp]);
  // fromEntries defines own properties: even a `__proto__` key stays a key, for the store to refuse
  return Object.fromEntries(entries);
}

/** Whether `next` gives every configured pool the weight it has in `cur` (own properties only). */
function sameWeights(next: Weights, cur: Weights, pools: readonly string[]): boolean {
  const bp = (w: Weights, p: string): number => ownOf(w, p) ?? 0;
  return pools.every((p) => bp(next, p) === bp(cur, p)) && Object.keys(cur).every((p) => pools.includes(p) || bp(cur, p) === 0);
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
