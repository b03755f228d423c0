import type { Logger } from 'pino';
import { compileDefinition, configDefinitions, definitionChanges, type AppDefinition } from '../config/definition.ts';
import type { AppConfig, Config } from '../config/schema.ts';
import { ConfigError, ProcessError, SwitchyardError } from '../errors.ts';
import type { InvalidStateError } from '../state/invariants.ts';
import type { RoutingState, StateStore } from '../state/types.ts';
import { ownOf, parseWeights, TOTAL_BP, type Weights } from '../config/weights.ts';
import { initialState, nextState } from './next-state.ts';

/** An app whose stored state cannot be loaded: routed on its config's `initial` weights until a write replaces it. */
export interface BrokenApp {
  readonly message: string;
  /** what the store counts the bad state as (its readable revision, else 0), for the compare-and-set that replaces it */
  readonly expected: number;
}

export interface LoadOptions {
  readonly config: Config;
  readonly store: StateStore;
  readonly logger: Logger;
  readonly now: () => number;
  /** the file's definitions win (`serve --apply-config`) */
  readonly applyConfig: boolean;
}

/**
 * The start of live definitions (docs/definitions.md §3): the config file seeds, the store wins.
 * - an app the store does not hold is written from the file (revision 1, `initial` weights);
 * - an app the store holds is served from the store — unless `applyConfig`, which writes the
 *   file's definition over it as a new revision (action `define`);
 * - a state written before live definitions (no definition) gets the file's attached, once;
 * - an app only the store holds (created by the API) is served too.
 * Resolves with every live app's state, the file's apps first in their order.
 */
export async function loadStates(opts: LoadOptions): Promise<{ states: RoutingState[]; broken: Map<string, BrokenApp> }> {
  const { config, store, logger, now } = opts;
  const defs = configDefinitions(config);
  let stored: string[] = [];
  try {
    stored = await store.listApps();
  } catch (err) {
    logger.warn({ err }, 'cannot list the apps the store holds; starting with the config file\'s apps (the others join once the store answers)');
  }
  const extra = stored.filter((a) => !defs.has(a));
  const invalid = new Map<string, InvalidStateError>();
  const states = await store.getMany([...defs.keys(), ...extra], (err) => invalid.set(err.app, err));
  const out: RoutingState[] = [];
  const broken = new Map<string, BrokenApp>();
  const problems: string[] = [];
  for (const app of config.apps) {
    const def = defs.get(app.name) as AppDefinition;
    const bad = invalid.get(app.name);
    let state = states.get(app.name);
    if (state === undefined && bad !== undefined) {
      const reason = `the stored routing state cannot be loaded (${bad.message}); routing on the config's definition and initial weights until a write replaces it`;
      out.push({ ...initialState(app.name, initialWeights(app), now(), def), revision: bad.revision ?? 0, reason });
      broken.set(app.name, { message: bad.message, expected: bad.revision ?? 0 });
      logger.error({ err: bad, app: app.name }, `app ${app.name}: ${reason}`);
      continue;
    }
    if (state === undefined) {
      state = await writeOrTake(store, initialState(app.name, initialWeights(app), now(), def), null, logger);
    } else if (state.definition === undefined && state.deleted !== true) {
      const weights = weightsOver(state.weights, Object.keys(app.pools));
      if (weights === null) {
        problems.push(`apps.${app.name}: the stored routing state (revision ${state.revision}) sends traffic to pool(s) ${unknownPools(state.weights, app)} that the config no longer has; put them back in the config, or switch the app to a configured pool first`);
        continue;
      }
      state = await writeOrTake(store, nextState(state, { weights, action: 'define', by: 'switchyard', reason: 'definition attached from the config file (first start with live definitions)', now: now(), definition: def }), state.revision, logger);
    } else if (opts.applyConfig) {
      state = await applyFile(store, state, app, def, now(), problems, logger);
    }
    if (state.deleted !== true) out.push(state);
  }
  if (problems.length > 0) throw new ConfigError(problems);
  for (const app of extra) {
    const state = states.get(app);
    if (state === undefined || state.deleted === true) continue;
    if (state.definition === undefined) {
      logger.warn({ app }, `app ${app}: the store holds a state without a definition and the config file does not name it; not served (add it to the config file or delete it)`);
      continue;
    }
    out.push(state);
  }
  return { states: out, broken };
}

/** `serve --apply-config`: the file's definition as a new revision over the store's (re-creating a deleted app). */
async function applyFile(store: StateStore, state: RoutingState, app: AppConfig, def: AppDefinition, now: number, problems: string[], logger: Logger): Promise<RoutingState> {
  if (state.deleted === true) {
    const fresh = { ...initialState(app.name, initialWeights(app), now, def), revision: state.revision + 1, action: 'define' as const, reason: 'serve --apply-config: re-created from the config file' };
    return writeOrTake(store, fresh, state.revision, logger);
  }
  const changes = definitionChanges(compileDefinition(state.definition as AppDefinition, app.name), app);
  if (changes.length === 0) return state;
  const weights = weightsOver(state.weights, Object.keys(app.pools));
  if (weights === null) {
    problems.push(`apps.${app.name}: --apply-config would remove pool(s) ${unknownPools(state.weights, app)} that still have weight; switch the app away from them first`);
    return state;
  }
  const next = nextState(state, { weights, action: 'define', by: 'switchyard', reason: 'serve --apply-config: the config file wins', now, definition: def, changes: changes.map((c) => c.path) });
  return writeOrTake(store, next, state.revision, logger);
}

/**
 * Writes `next` unless someone got there first, then takes theirs (another instance seeding at the same time).
 * A write the primary took but too few replicas confirmed in `store.replicaTimeout` (a slow replica, a busy
 * host) is taken as written: it is on the primary, which every instance reads, and it was answered to no
 * client; should a failover lose it, the next start writes it again (docs/fleet.md §4). Starting anyway
 * beats a process that fails to start over a late acknowledgement.
 */
async function writeOrTake(store: StateStore, next: RoutingState, expected: number | null, logger: Logger): Promise<RoutingState> {
  let r;
  try {
    r = await store.compareAndSet(next, expected);
  } catch (err) {
    if (!(err instanceof SwitchyardError) || err.code !== 'WRITE_OUTCOME_UNKNOWN' || !onPrimary(err.details)) throw err;
    logger.warn({ err, app: next.app, revision: next.revision }, `app ${next.app}: revision ${next.revision} was written to the redis primary but not confirmed by the replicas store.replicas asks for; starting on it`);
    return next;
  }
  const state = r.ok ? r.state : r.current;
  if (state === null) throw new ProcessError('SEED_FAILED', `app ${next.app}: could not write its state`);
  return state;
}

/** Whether a WRITE_OUTCOME_UNKNOWN is the replicas' (the primary took the write), not a write with no answer. */
function onPrimary(details: unknown): boolean {
  return typeof details === 'object' && details !== null && 'acknowledged' in details;
}

/** `weights` over `pools` (others dropped), or null when a dropped pool has weight. */
function weightsOver(weights: Weights, pools: readonly string[]): Weights | null {
  const out: Record<string, number> = {};
  let sum = 0;
  for (const p of pools) sum += out[p] = ownOf(weights, p) ?? 0;
  return sum === TOTAL_BP ? out : null;
}

function unknownPools(weights: Weights, app: AppConfig): string {
  return Object.entries(weights).filter(([p, bp]) => !Object.hasOwn(app.pools, p) && bp > 0).map(([p]) => p).join(', ');
}

/** `initial` from the definition, or the first pool at 100 %. */
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
