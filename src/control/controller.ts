import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { compileDefinition, definitionChanges, formatChange, type AppDefinition, type DefinitionChange } from '../config/definition.ts';
import type { AppConfig, Config } from '../config/schema.ts';
import { SwitchyardError } from '../errors.ts';
import { RoutingTable } from '../routing/routing-table.ts';
import type { Snapshot } from '../routing/snapshot.ts';
import { canonicalJson } from '../state/digest.ts';
import type { InvalidStateError } from '../state/invariants.ts';
import { historyEntryOf, type Action, type HistoryEntry, type RevertKind, type RoutingState, type StateStore } from '../state/types.ts';
import { ownOf, parseWeights, TOTAL_BP, type Weights } from '../config/weights.ts';
import { nextState } from './next-state.ts';
import { planRollback, poolsServing, type RollbackPlan } from './rollback-plan.ts';
import { withRouting } from './routing-writes.ts';
import { loadStates, type BrokenApp } from './seed.ts';

export interface WriteOptions {
  /** token name of the caller, for the audit trail */
  readonly by: string;
  readonly reason?: string | null | undefined;
  /** If-Match: the revision the caller saw; a different current revision is a 412 */
  readonly expectedRevision?: number | undefined;
  readonly force?: boolean | undefined;
  /** the write rolls back (a rollout's failed analysis): pools it drains lose their affinity pins. Always so for action `rollback`. */
  readonly unpinDrained?: boolean | undefined;
  /** the write takes traffic back (rollback, a rollout's automatic rollback, an abort): a later rollback never undoes it */
  readonly revert?: RevertKind | undefined;
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
  /** called with every new snapshot before it serves (the Runtime follows the targets here) */
  readonly onSnapshot?: (snapshot: Snapshot) => void;
  /**
   * At start, write the config file's definition of every app it names over the store's
   * (`serve --apply-config`). @default false: the store wins and differences are reported as drift
   */
  readonly applyConfig?: boolean;
}

export const WRITE_DEADLINE_MS = 5000;
/** History entries a rollback reads to find the last stable routing (the store keeps `historyLimit`, 1000 by default). */
const ROLLBACK_LOOKBACK = 1000;

/** What a write proposes, from the current state and definition. */
export interface Proposal {
  readonly weights: Weights;
  /** a new definition (omitted: unchanged) */
  readonly definition?: AppDefinition | undefined;
  readonly deleted?: boolean | undefined;
}

/**
 * The control plane: owns the current routing state of every app — its weights and its
 * definition, one document and one revision per app — writes changes through the store
 * (compare-and-set on the revision), and swaps a new immutable snapshot into place for the data
 * plane whenever a newer state arrives, from this instance or from the store's watch.
 *
 * Events: `applied` (state: RoutingState, previous: RoutingState | null) after a snapshot swap;
 * `previous` is null for an app this instance did not route on; a deleted app's `state` is its tombstone.
 */
export class Controller extends EventEmitter {
  readonly config: Config;
  readonly store: StateStore;
  private readonly logger: Logger;
  private readonly now: () => number;
  private readonly guard: WriteGuard | undefined;
  private readonly table: RoutingTable;
  private readonly writeDeadlineMs: number;
  private readonly broken: Map<string, BrokenApp>;
  /** the config file's definition of each app it names, compiled: what drift is measured against */
  private fileApps: ReadonlyMap<string, AppConfig>;
  /** app → how the store's definition differs from the file's (empty entries are dropped) */
  private readonly drifts = new Map<string, DefinitionChange[]>();
  private unwatch: (() => void) | null = null;

  private constructor(opts: ControllerOptions, states: RoutingState[], broken: Map<string, BrokenApp>) {
    super();
    this.config = opts.config;
    this.store = opts.store;
    this.logger = opts.logger;
    this.now = opts.now ?? Date.now;
    this.guard = opts.guard;
    this.writeDeadlineMs = opts.writeDeadlineMs ?? WRITE_DEADLINE_MS;
    this.broken = broken;
    this.fileApps = new Map(opts.config.apps.map((a) => [a.name, a]));
    this.table = new RoutingTable(states, opts.onSnapshot === undefined ? {} : { onSnapshot: opts.onSnapshot });
    for (const app of this.fileApps.keys()) this.checkDrift(app);
  }

  /** The data plane reads this on every request; it is replaced, never mutated. */
  get snapshot(): Snapshot {
    return this.table.snapshot;
  }

  /**
   * Loads every app's state — the config file's apps and every app the store holds — seeding the
   * ones the store does not have from the file (src/control/seed.ts), and starts watching the
   * store. An app whose stored state cannot be loaded does not stop the others: it is logged,
   * listed by `brokenStates()`, and routed on the file's definition and `initial` weights
   * (nothing written) until a write replaces the bad state.
   */
  static async start(opts: ControllerOptions): Promise<Controller> {
    const { states, broken } = await loadStates({ config: opts.config, store: opts.store, logger: opts.logger, now: opts.now ?? Date.now, applyConfig: opts.applyConfig === true });
    const controller = new Controller(opts, states, broken);
    controller.unwatch = opts.store.watch((state) => controller.apply(state), (app, err) => controller.invalid(app, err));
    return controller;
  }

  /** The live definition of an app, compiled; throws UNKNOWN_APP (404). */
  appConfig(app: string): AppConfig {
    const cfg = this.table.appConfig(app);
    if (cfg === undefined) throw new SwitchyardError('UNKNOWN_APP', `unknown app "${app}"`);
    return cfg;
  }

  /** Whether the app exists (is routed on) now. */
  has(app: string): boolean {
    return this.table.appConfig(app) !== undefined;
  }

  /** The live apps' names, in slot order. */
  appNames(): string[] {
    return this.table.snapshot.apps.map((a) => a.name);
  }

  state(app: string): RoutingState {
    const s = this.table.state(app);
    if (s === undefined) throw new SwitchyardError('UNKNOWN_APP', `unknown app "${app}"`);
    return s;
  }

  /** The newest state of an app, its tombstone when deleted, undefined when never seen. */
  stateOrTombstone(app: string): RoutingState | undefined {
    return this.table.stateOrTombstone(app);
  }

  /** Every live app's state, in slot order. */
  allStates(): RoutingState[] {
    return this.table.allStates();
  }

  /** The stored definition of an app (as written), for `GET /v1/config`. */
  definition(app: string): AppDefinition {
    const def = this.table.definition(app);
    if (def === undefined) throw new SwitchyardError('UNKNOWN_APP', `unknown app "${app}"`);
    return def;
  }

  /** App → why its stored state could not be loaded, for the apps routed on `initial` weights meanwhile (/readyz). */
  brokenStates(): Record<string, string> {
    return Object.fromEntries([...this.broken].map(([app, b]) => [app, b.message]));
  }

  /**
   * App → the key paths where the config file's definition differs from the store's, for the apps
   * the file names (absent when they agree). Paths only: `/readyz` shows it without a token, and
   * values (target addresses) stay in the log. The fix: `switchyard apply -f FILE`.
   */
  drift(): Record<string, string[]> {
    return Object.fromEntries([...this.drifts].map(([app, changes]) => [app, changes.map((c) => c.path)]));
  }

  /** The config file was read again (SIGHUP): drift is measured against its apps from now on. */
  setFileApps(apps: readonly AppConfig[]): void {
    const before = [...this.fileApps.keys()];
    this.fileApps = new Map(apps.map((a) => [a.name, a]));
    for (const app of before) if (!this.fileApps.has(app)) this.drifts.delete(app);
    for (const app of this.fileApps.keys()) this.checkDrift(app);
  }

  /**
   * Applies a state if it is newer than the one routed on; never moves to a lower revision.
   * Returns whether the snapshot changed.
   */
  apply(state: RoutingState): boolean {
    const applied = this.table.applyOrRefuse(state, this.logger);
    if (applied === null) return false;
    if (this.broken.delete(state.app)) this.logger.info({ app: state.app, revision: state.revision }, `app ${state.app}: its routing state was replaced by a valid one`);
    if (this.fileApps.has(state.app)) this.checkDrift(state.app);
    this.emit('applied', state, applied.previous);
    return true;
  }

  /**
   * The store read an invalid state for an app while running (`err`), or a valid one again (null):
   * the app is listed by `brokenStates()` (logged once per bad value) and keeps routing on its last
   * good state; the next write replaces the bad state, as after a restart (seed.ts).
   */
  invalid(app: string, err: InvalidStateError | null): void {
    if (err === null) {
      if (this.broken.delete(app)) this.logger.info({ app }, `app ${app}: the store holds a valid routing state again`);
      return;
    }
    const cur = this.table.state(app);
    if (cur === undefined || this.broken.get(app)?.message === err.message) return;
    this.broken.set(app, { message: err.message, expected: err.revision ?? 0 });
    this.logger.error({ err, app, revision: cur.revision }, `app ${app}: the store holds a routing state that is not valid (${err.message}); routing on the last good state (revision ${cur.revision}) until a write replaces it`);
  }

  /** Recomputes an app's drift; logs it when it appears or changes (once, not on every write). */
  private checkDrift(app: string): void {
    const file = this.fileApps.get(app);
    if (file === undefined) return;
    const live = this.table.appConfig(app);
    const changes = live === undefined ? [{ path: '(app)', from: 'deleted in the store', to: 'defined in the config file' }] : definitionChanges(live, file);
    const before = this.drifts.get(app);
    if (changes.length === 0) {
      if (before !== undefined) this.logger.info({ app }, `app ${app}: the config file and the store agree again`);
      this.drifts.delete(app);
      return;
    }
    this.drifts.set(app, changes);
    if (before !== undefined && canonicalJson(before) === canonicalJson(changes)) return;
    this.logger.warn({ app, drift: changes.map(formatChange) }, `app ${app}: the config file differs from the store, which wins (${changes.map((c) => c.path).join(', ')}); to make the file win run: switchyard apply -f CONFIG_FILE`);
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
    return this.change(app, 'switch', () => ({ weights }), opts);
  }

  async setWeights(app: string, weights: Weights, opts: WriteOptions, action: Action = 'weights'): Promise<RoutingState> {
    return this.change(app, action, () => ({ weights }), opts);
  }

  /**
   * Back to the last known-good routing (docs/cohorts.md §6, src/control/rollback-plan.ts), written as a
   * new revision. Refused with 409 NOTHING_TO_ROLL_BACK after a revert, NO_EARLIER_REVISION without
   * a stable routing in the history, VERSION_CHANGED (unless `force`) when a pool it would send
   * traffic to runs another version now, CONFLICT when that pool is gone. `onPlan` hears the plan
   * the write was computed from (the last one, when a lost compare-and-set made it compute again).
   */
  async rollback(app: string, opts: WriteOptions, onPlan?: (plan: RollbackPlan) => void): Promise<RoutingState> {
    return this.change(app, 'rollback', async (cur, cfg) => {
      const plan = await this.rollbackPlan(app, cur, cfg);
      onPlan?.(plan);
      if (plan.versionChanged.length > 0 && opts.force !== true) {
        const words = plan.versionChanged.map((p) => `${p} ran ${plan.pools[p]?.versionThen} then and runs ${plan.pools[p]?.versionNow} now`).join('; ');
        throw new SwitchyardError('VERSION_CHANGED', `rolling back to revision ${plan.to.revision} of app "${app}" would send traffic to ${words}; deploy the old version again, or send force: true (CLI --force) to roll back anyway`, { details: { revision: plan.to.revision, pools: plan.versionChanged } });
      }
      const weights: Record<string, number> = {};
      for (const p of Object.keys(cfg.pools)) weights[p] = ownOf(plan.to.routing.weights, p) ?? 0;
      // the whole routing in one write: weights, and the rules and mirror of the same revision
      // (definition keys), so no cohort or copy keeps pointing at the release undone
      const { rules, mirror } = plan.to.routing;
      return { weights, definition: withRouting(this.definition(app), rules ?? [], mirror ?? null) };
    }, { ...opts, revert: 'rollback' });
  }

  /** What `rollback` would restore now (`?dryRun=true`); throws what it would answer when there is nothing to restore. */
  async rollbackPlan(app: string, cur: RoutingState = this.state(app), cfg: AppConfig = this.appConfig(app)): Promise<RollbackPlan> {
    const entries = await this.store.history(app, ROLLBACK_LOOKBACK);
    // the history may lag this instance's view by a write: the current state is its newest entry
    const history = entries[0]?.revision === cur.revision ? entries : [historyEntryOf(cur), ...entries.filter((e) => e.revision < cur.revision)];
    const versions = Object.fromEntries(Object.entries(cfg.pools).map(([p, pool]) => [p, pool.version]));
    const r = planRollback(history, versions);
    if (!r.ok) throw new SwitchyardError(r.code, `app "${app}": ${r.message}`, r.revision === null ? undefined : { details: { revision: r.revision } });
    const gone = poolsServing(r.plan.to.routing).filter((p) => !Object.hasOwn(cfg.pools, p));
    if (gone.length > 0) throw new SwitchyardError('CONFLICT', `revision ${r.plan.to.revision} of app "${app}" sent traffic to pool(s) ${gone.join(', ')}, which the app no longer has; set the weights instead`, { details: { revision: r.plan.to.revision, pools: gone } });
    return r.plan;
  }

  async history(app: string, limit: number, offset = 0): Promise<HistoryEntry[]> {
    if (!this.has(app) && this.stateOrTombstone(app) === undefined) this.appConfig(app);
    return this.store.history(app, limit, offset);
  }

  /**
   * One write to an existing app: re-read, compute, compare-and-set. With If-Match, a lost
   * compare-and-set is a 412; without, it retries (after a short random pause, so racing writers
   * spread out) until it wins or `writeDeadlineMs` passes (409 WRITE_CONFLICT). A proposal equal
   * to the current state (weights and definition) writes nothing and answers the current state.
   * Resolves with the state this call wrote. `propose` sees the current state and its compiled
   * definition, and may throw (a 404, a 409) to refuse.
   */
  async change(app: string, action: Action, propose: (cur: RoutingState, cfg: AppConfig) => Proposal | Promise<Proposal>, opts: WriteOptions): Promise<RoutingState> {
    // monotonic, not the injected clock: a test's frozen `now` must not make a write retry forever
    const deadline = performance.now() + this.writeDeadlineMs;
    for (let attempt = 1; ; attempt++) {
      // one snapshot of the app: `propose` may await (rollback reads the history), and a newer state
      // applied meanwhile must not lend its definition to a write computed from `cur`
      const cur = this.state(app);
      const cfg = this.appConfig(app);
      const curDefinition = this.definition(app);
      if (opts.expectedRevision !== undefined && opts.expectedRevision !== cur.revision) {
        throw new SwitchyardError('STALE_REVISION', `revision ${opts.expectedRevision} is stale; the current revision is ${cur.revision}`, { details: { currentRevision: cur.revision } });
      }
      const proposal = await propose(cur, cfg);
      const definition = proposal.definition;
      const nextCfg = definition === undefined ? cfg : compileDefinition(definition, app);
      const pools = Object.keys(nextCfg.pools);
      const weights = onPools(proposal.weights, pools);
      const broken = this.broken.get(app);
      const sameDefinition = definition === undefined || canonicalJson(definition) === canonicalJson(curDefinition);
      if (broken === undefined && proposal.deleted !== true && sameDefinition && sameWeights(weights, cur.weights, pools)) {
        // "no change" must be true of the store, not only of this instance's view: another
        // instance's newer write may not have reached us yet (then this write is not a no-op)
        const stored = await this.store.get(app);
        if (stored !== null) this.apply(stored); // (a shared store may already have handed it to watch)
        if (this.state(app).revision > cur.revision) continue;
        this.logger.info({ audit: true, app, action, actor: opts.by, reason: opts.reason ?? null, noop: true, revision: cur.revision }, `${action} ${app} by ${opts.by}: no change, nothing written`);
        return cur;
      }
      refuseEmptyPools(app, nextCfg, weights, cur.weights, opts);
      const forced = this.guard?.(nextCfg, weights, opts, cur.weights);
      const reason = forced === undefined ? (opts.reason ?? null) : opts.reason ? `${opts.reason} (${forced})` : forced;
      const changes = sameDefinition ? [] : definitionChanges(cfg, nextCfg);
      // every write carries the definition, so a state written before live definitions gets it back
      const made = nextState(cur, { weights, action, by: opts.by, reason, now: this.now(), definition: definition ?? curDefinition, deleted: proposal.deleted, changes: changes.map((c) => c.path), unpin: action === 'rollback' || opts.unpinDrained === true, revert: opts.revert });
      // replacing an invalid stored state: above both it and the last good state every instance routes on
      const next = broken === undefined ? made : { ...made, revision: Math.max(cur.revision, broken.expected) + 1 };
      const result = broken === undefined ? await this.store.compareAndSet(next, cur.revision) : await this.store.compareAndSet(next, broken.expected, { repair: true });
      if (result.ok) {
        this.apply(result.state);
        this.audit(app, action, opts, forced !== undefined, cur, result.state, changes);
        return result.state;
      }
      await this.lost(app, result.current, cur.revision, opts, attempt, deadline);
    }
  }

  /**
   * Creates an app (or re-creates a deleted one) with `state` as its first revision after what the
   * store holds; when the app exists by the time the write lands, answers null so the caller
   * replaces it instead.
   */
  async create(state: RoutingState, opts: WriteOptions): Promise<RoutingState | null> {
    const tomb = this.table.stateOrTombstone(state.app);
    if (tomb !== undefined && tomb.deleted !== true) return null;
    const expected = tomb?.revision ?? null;
    if (opts.expectedRevision !== undefined && opts.expectedRevision !== (expected ?? 0)) {
      throw new SwitchyardError('STALE_REVISION', `revision ${opts.expectedRevision} is stale; the app does not exist (revision ${expected ?? 0})`, { details: { currentRevision: expected ?? 0 } });
    }
    const next = { ...state, revision: (expected ?? 0) + 1 };
    const result = await this.store.compareAndSet(next, expected);
    if (result.ok) {
      this.apply(result.state);
      this.audit(state.app, 'define', opts, false, tomb ?? null, result.state, definitionChanges(undefined, this.appConfig(state.app)));
      return result.state;
    }
    if (result.current !== null) this.apply(result.current);
    if (opts.expectedRevision !== undefined) throw new SwitchyardError('STALE_REVISION', 'another write got there first', { details: { currentRevision: result.current?.revision ?? 0 } });
    return null;
  }

  private audit(app: string, action: Action, opts: WriteOptions, forced: boolean, cur: RoutingState | null, next: RoutingState, changes: readonly DefinitionChange[]): void {
    const line = {
      audit: true,
      app,
      action,
      actor: opts.by,
      reason: next.reason,
      forced,
      before: cur === null ? null : { revision: cur.revision, weights: cur.weights },
      after: { revision: next.revision, weights: next.weights, ...(next.deleted === true ? { deleted: true } : {}) },
      ...(changes.length === 0 ? {} : { changes: changes.map(formatChange) }),
    };
    this.logger[forced ? 'warn' : 'info'](line, `${action} ${app} by ${opts.by}`);
  }

  /** A lost compare-and-set: route on the winner's state, then report it (If-Match) or let the caller retry. */
  private async lost(app: string, current: RoutingState | null, had: number, opts: WriteOptions, attempt: number, deadline: number): Promise<void> {
    if (current === null) throw new SwitchyardError('STORE_UNAVAILABLE', `the store holds no state for app "${app}"`);
    this.apply(current);
    if (opts.expectedRevision !== undefined) {
      throw new SwitchyardError('STALE_REVISION', `another write got there first; the current revision is ${current.revision}`, { details: { currentRevision: current.revision } });
    }
    if (current.revision <= had) {
      // retrying cannot help: the store is behind this instance (see the fleet's regression report in /readyz)
      throw new SwitchyardError('WRITE_CONFLICT', `the store holds revision ${current.revision} of app "${app}", not newer than the ${had} this instance routes on; writes fail until that is repaired`);
    }
    if (current.deleted === true) throw new SwitchyardError('UNKNOWN_APP', `app "${app}" was deleted meanwhile`);
    if (performance.now() >= deadline) {
      throw new SwitchyardError('WRITE_CONFLICT', `other writers to app "${app}" kept getting there first: gave up after ${attempt} attempts in ${this.writeDeadlineMs} ms; try again`, { details: { attempts: attempt, currentRevision: current.revision } });
    }
    await sleep(Math.random() * Math.min(50, 2 * attempt));
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


/**
 * A pool with no target (and nothing to discover them) answers every request 503: a write that
 * raises its weight is refused, health checks or not, unless forced.
 */
function refuseEmptyPools(app: string, cfg: AppConfig, weights: Weights, current: Weights, opts: WriteOptions): void {
  if (opts.force === true) return;
  const empty = Object.keys(cfg.pools).filter((p) => {
    const pool = cfg.pools[p] as AppConfig['pools'][string] & { discover?: unknown };
    return (ownOf(weights, p) ?? 0) > (ownOf(current, p) ?? 0) && pool.targets.length === 0 && pool.discover === undefined;
  });
  if (empty.length > 0) throw new SwitchyardError('POOL_UNHEALTHY', `app "${app}": pool(s) ${empty.join(', ')} have no targets; to route to them anyway, send force: true (CLI --force; the dashboard asks)`, { details: { pools: empty } });
}
