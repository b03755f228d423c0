import type { AppDefinition } from '../config/definition.ts';
import type { MirrorConfig, RuleConfig } from '../config/routing-schema.ts';
import type { InvalidStateError } from './invariants.ts';
import type { Weights } from '../config/weights.ts';

/**
 * The routing state of one app as the store keeps it. Weights are basis points (see
 * weights.ts). Every change writes a whole new state with `revision + 1`.
 */
export interface RoutingState {
  readonly app: string;
  readonly revision: number;
  /** pool → basis points, summing to 10 000 */
  readonly weights: Weights;
  /** Sticky-cohort salt: changes only when one pool reaches 100 %, never during a ramp. */
  readonly salt: string;
  /** pool → ISO time at which its weight became 0; absent while the pool has weight. */
  readonly drainingSince: Readonly<Record<string, string>>;
  readonly action: Action;
  readonly updatedAt: string;
  readonly updatedBy: string;
  readonly reason: string | null;
  /**
   * The app's definition (hosts, pools with version and targets, settings), under the same
   * revision as the weights: what the snapshot is compiled from. Absent only in states written by
   * a version before live definitions (the config's definition is attached at the next start).
   */
  readonly definition?: AppDefinition;
  /**
   * Pools a rollback drained (at weight 0 since that rollback): the version is bad, so affinity
   * pins to them are not honoured (those browsers go by weight at once); their drain deadline for
   * upgraded connections runs as for any drain. Absent: none. Kept while the pool stays at 0.
   */
  readonly unpinned?: readonly string[];
  /** true: the app was deleted (a tombstone, so its revision keeps growing if it is created again) */
  readonly deleted?: boolean;
  /** the definition's key paths this revision changed (`pools.green.targets`), for the history */
  readonly changes?: readonly string[];
  /** this revision took traffic back: a rollback, a rollout's automatic rollback, an abort (src/control/rollback-plan.ts) */
  readonly revert?: RevertKind;
}

/** How a revision took traffic back: `rollback`, `analysis` (a rollout's automatic rollback), `abort` (a rollout aborted). */
export type RevertKind = 'rollback' | 'analysis' | 'abort';

/** A pool as a history entry records it: its version and how many targets it had at that revision. */
export interface PoolRecord {
  readonly version: string;
  readonly targets: number;
}

export type Action = 'initial' | 'switch' | 'weights' | 'rollback' | 'reseed' | 'rollout' | 'pool' | 'targets' | 'define' | 'delete' | 'rules' | 'mirror';

/** One line of an app's audit history, as `GET /history` shows it (weights in basis points here). */
export interface HistoryEntry {
  readonly revision: number;
  readonly weights: Weights;
  readonly action: Action;
  readonly by: string;
  readonly reason: string | null;
  readonly at: string;
  /** for definition changes: the key paths changed */
  readonly changes?: readonly string[];
  /** each pool's version and target count at this revision (absent in entries written before they were recorded) */
  readonly pools?: Readonly<Record<string, PoolRecord>>;
  /** this revision took traffic back (see RoutingState.revert) */
  readonly revert?: RevertKind;
  /**
   * The app's cohort rules and mirror in force after this revision (as written; absent: none),
   * so the history holds each revision's whole routing (weights, rules, mirror: docs/cohorts.md §6)
   * for a rollback to restore.
   */
  readonly rules?: readonly RuleConfig[];
  readonly mirror?: MirrorConfig;
}

export function historyEntryOf(state: RoutingState): HistoryEntry {
  const pools = poolRecords(state);
  const rules = state.definition?.rules;
  const mirror = state.definition?.mirror;
  return {
    revision: state.revision,
    weights: state.weights,
    action: state.action,
    by: state.updatedBy,
    reason: state.reason,
    at: state.updatedAt,
    ...(state.changes === undefined || state.changes.length === 0 ? {} : { changes: state.changes }),
    ...(pools === undefined ? {} : { pools }),
    ...(state.revert === undefined ? {} : { revert: state.revert }),
    ...(Array.isArray(rules) && rules.length > 0 ? { rules: rules as RuleConfig[] } : {}),
    ...(mirror === undefined || mirror === null ? {} : { mirror: mirror as MirrorConfig }),
  };
}

/** Each pool's version and target count in a state's definition: what rollback compares and history describes. */
function poolRecords(state: RoutingState): Record<string, PoolRecord> | undefined {
  const pools = state.definition?.pools;
  if (typeof pools !== 'object' || pools === null) return undefined;
  const out: Record<string, PoolRecord> = {};
  for (const [name, p] of Object.entries(pools as Record<string, { version?: unknown; targets?: unknown }>)) {
    out[name] = { version: String(p.version), targets: Array.isArray(p.targets) ? p.targets.length : 0 };
  }
  return out;
}

export type InvalidListener = (app: string, err: InvalidStateError | null) => void;

export interface CasOptions {
  /**
   * The stored state is invalid and counted as `expected` (its readable revision, else 0): `next`
   * may then skip revisions (`next.revision > expected`), so the repair is newer than the last
   * good state the instances route on, whatever revision the bad state carries.
   */
  readonly repair?: boolean;
}

export type CasResult = { readonly ok: true; readonly state: RoutingState } | { readonly ok: false; readonly current: RoutingState | null };

export type Unsubscribe = () => void;

/**
 * Where routing state lives: a file on one machine or Redis for a fleet. Both implementations
 * pass the one contract suite in test/helpers/store-contract.ts.
 *
 * Errors: an operation that cannot reach its backend rejects with
 * `SwitchyardError('STORE_UNAVAILABLE')`, never hangs past its command timeout.
 */
export interface StateStore {
  readonly kind: 'file' | 'redis';
  /**
   * Current state of one app, or null if the store has none. A stored state that breaks an
   * invariant (src/state/invariants.ts) rejects with InvalidStateError naming the key paths.
   */
  get(app: string): Promise<RoutingState | null>;
  /**
   * Current states of the given apps (missing ones left out). An app whose stored state breaks
   * an invariant is left out too and handed to `onInvalid`, so one bad app never hides the others.
   */
  getMany(apps: readonly string[], onInvalid?: (err: InvalidStateError) => void): Promise<Map<string, RoutingState>>;
  /**
   * Writes `next` only if the stored revision is `expected` (`null`: no state stored yet), and
   * appends its history entry in the same atomic step. `next.revision` must be `expected + 1`
   * (or any revision ≥ 1 when `expected` is null, for re-seeding), and `next` must keep every
   * invariant (`checkWrite` in invariants.ts: weights summing to 10 000 bp over the app's known
   * pools): otherwise it rejects with INVALID_STATE and writes nothing. A stored state that is
   * itself invalid counts as revision `InvalidStateError.revision` (0 when unreadable), so a
   * write can replace it.
   */
  compareAndSet(next: RoutingState, expected: number | null, opts?: CasOptions): Promise<CasResult>;
  /** Newest first, at most `limit` entries. */
  /** newest first: `limit` entries from the `offset`-th newest (paging) @default offset 0 */
  history(app: string, limit: number, offset?: number): Promise<HistoryEntry[]>;
  /** Every app the store holds a state for (deleted ones included: their state is a tombstone). */
  listApps(): Promise<string[]>;
  /**
   * Called with every state written, by this or (for shared stores) another instance; and, for a
   * shared store, `onInvalid(app, err)` when a stored state read while running breaks an invariant
   * (once per bad value; `listener` is not told of it), then `onInvalid(app, null)` once the app's
   * stored state reads valid again.
   */
  watch(listener: (state: RoutingState) => void, onInvalid?: InvalidListener): Unsubscribe;
  close(): Promise<void>;
}
