import { randomBytes } from 'node:crypto';
import type { AppDefinition } from '../config/definition.ts';
import type { Action, RevertKind, RoutingState } from '../state/types.ts';
import { activePool, ownOf, type Weights } from '../config/weights.ts';

export function newSalt(): string {
  return randomBytes(8).toString('hex');
}

export interface Change {
  readonly weights: Weights;
  readonly action: Action;
  readonly by: string;
  readonly reason: string | null;
  readonly now: number;
  /** a new definition (omitted: the previous one is kept) */
  readonly definition?: AppDefinition | undefined;
  /** the app is deleted: a tombstone */
  readonly deleted?: boolean | undefined;
  /** the definition's key paths changed, for the history */
  readonly changes?: readonly string[] | undefined;
  /** a rollback: the pools this change drains lose their affinity pins (RoutingState.unpinned) */
  readonly unpin?: boolean | undefined;
  /** the change takes traffic back (RoutingState.revert) */
  readonly revert?: RevertKind | undefined;
}

/**
 * The state that follows `prev` after a change: revision + 1, drain clocks started for pools
 * that just reached 0 (and kept for pools that were already at 0), and a fresh sticky salt only
 * when one pool has just reached 100 % — never during a ramp, so no user moves backwards, and
 * the next release's canaries are not the same users as this one's.
 */
export function nextState(prev: RoutingState, change: Change): RoutingState {
  const at = new Date(change.now).toISOString();
  const drainingSince: Record<string, string> = {};
  const unpinned: string[] = [];
  for (const [pool, bp] of Object.entries(change.weights)) {
    if (bp !== 0) continue;
    const wasZero = (ownOf(prev.weights, pool) ?? 0) === 0;
    const since = ownOf(prev.drainingSince, pool);
    drainingSince[pool] = wasZero && since !== undefined ? since : at;
    // a pool keeps whatever its drain began with: unpinned if a rollback drained it
    if (wasZero ? (prev.unpinned ?? []).includes(pool) : change.unpin === true) unpinned.push(pool);
  }
  const active = activePool(change.weights);
  const salt = active !== null && activePool(prev.weights) !== active ? newSalt() : prev.salt;
  return {
    app: prev.app,
    revision: prev.revision + 1,
    weights: { ...change.weights },
    salt,
    drainingSince,
    action: change.action,
    updatedAt: at,
    updatedBy: change.by,
    reason: change.reason,
    ...withDefinition(change.definition ?? prev.definition),
    ...(change.deleted === true ? { deleted: true } : {}),
    ...(unpinned.length === 0 ? {} : { unpinned }),
    ...(change.changes === undefined || change.changes.length === 0 ? {} : { changes: [...change.changes] }),
    ...(change.revert === undefined ? {} : { revert: change.revert }),
  };
}

function withDefinition(definition: AppDefinition | undefined): { definition?: AppDefinition } {
  return definition === undefined ? {} : { definition };
}

/** The first state of an app (revision 1), written when the store has none. */
export function initialState(app: string, weights: Weights, now: number, definition?: AppDefinition): RoutingState {
  const at = new Date(now).toISOString();
  const drainingSince: Record<string, string> = {};
  for (const [pool, bp] of Object.entries(weights)) if (bp === 0) drainingSince[pool] = at;
  return { app, revision: 1, weights: { ...weights }, salt: newSalt(), drainingSince, action: 'initial', updatedAt: at, updatedBy: 'switchyard', reason: 'initial weights from the config', ...withDefinition(definition) };
}
