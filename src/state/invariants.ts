import { z } from 'zod';
import { parseDefinition } from '../config/definition.ts';
import { deepFreeze, formatPath } from '../config/load.ts';
import { NAME_RE } from '../config/schema.ts';
import { SwitchyardError } from '../errors.ts';
import type { RoutingState } from './types.ts';
import { TOTAL_BP } from '../config/weights.ts';

// What every stored routing state must satisfy, checked in one place for both stores: before
// each compare-and-set (so no store ever holds a state that cannot be routed on) and on every
// read (so a state written by hand or by an older version is named, not a TypeError).

/**
 * The pools each app may weigh, for states that carry no definition (written before live
 * definitions); `undefined` for an app the caller does not know (then only the shape is checked).
 * A state with a definition is checked against the definition's own pools.
 */
export type PoolsOf = (app: string) => readonly string[] | undefined;

const stateSchema = z.object({
  app: z.string().regex(NAME_RE, 'must match [a-z0-9-]{1,63}'),
  revision: z.number().int().min(1),
  weights: z.record(z.string(), z.number().int().min(0).max(TOTAL_BP)),
  salt: z.string(),
  drainingSince: z.record(z.string(), z.string()),
  // any non-empty action, so a newer version's actions do not make a state unreadable
  action: z.string().min(1),
  updatedAt: z.string(),
  updatedBy: z.string(),
  reason: z.string().nullable(),
  definition: z.record(z.string(), z.unknown()).optional(),
  deleted: z.boolean().optional(),
  unpinned: z.array(z.string()).optional(),
  changes: z.array(z.string()).optional(),
  revert: z.enum(['rollback', 'analysis', 'abort']).optional(),
});

export interface StateIssue {
  /** key path inside the state, e.g. `weights.green` */
  readonly path: string;
  readonly message: string;
}

/**
 * Every way `value` fails to be a routing state: the shape, pool names (own keys matching the
 * config's pool-name rule, so `__proto__` or `toString` never get in), weights summing to exactly
 * 10 000 bp, a definition the config's schema accepts, and only pools the app has: the
 * definition's, or `callerPools` for a state without one.
 */
export function stateIssues(value: unknown, callerPools?: readonly string[]): StateIssue[] {
  let pools = callerPools;
  const r = stateSchema.safeParse(value);
  if (!r.success) return r.error.issues.map((i) => ({ path: formatPath(i.path) || '(root)', message: i.message }));
  const s = value as RoutingState;
  const issues: StateIssue[] = [];
  if (s.definition !== undefined) {
    // the definition is checked by the config's own schema, so a stored one always compiles
    const d = parseDefinition(s.definition, s.app, ['definition']);
    if (!d.ok) issues.push(...d.issues);
    else pools = Object.keys(d.config.pools);
  }
  let sum = 0;
  for (const [pool, bp] of Object.entries(s.weights)) {
    sum += typeof bp === 'number' ? bp : Number.NaN; // zod skips an own `__proto__` key, so its value is unchecked
    if (!NAME_RE.test(pool)) issues.push({ path: `weights.${pool}`, message: 'not a pool name ([a-z0-9-]{1,63})' });
    else if (pools !== undefined && !pools.includes(pool)) issues.push({ path: `weights.${pool}`, message: `unknown pool (pools: ${pools.join(', ')})` });
  }
  if (sum !== TOTAL_BP) issues.push({ path: 'weights', message: `must sum to ${TOTAL_BP} bp, got ${sum}` });
  for (const pool of Object.keys(s.drainingSince)) {
    if (!NAME_RE.test(pool)) issues.push({ path: `drainingSince.${pool}`, message: 'not a pool name ([a-z0-9-]{1,63})' });
  }
  return issues;
}

/** A stored state that breaks an invariant: names the app, where it was read, and the key paths. */
export class InvalidStateError extends SwitchyardError {
  readonly app: string;
  /** the bad state's revision when that much of it is readable, else null */
  readonly revision: number | null;
  readonly issues: readonly StateIssue[];
  constructor(app: string, where: string, issues: readonly StateIssue[], revision: number | null) {
    super('INVALID_STATE', `${where}: the routing state of app "${app}" is not valid: ${issues.map((i) => `${i.path}: ${i.message}`).join('; ')}`, { details: issues });
    this.name = 'InvalidStateError';
    this.app = app;
    this.revision = revision;
    this.issues = issues;
  }
}

/** The revision of a value that may not be a valid state, when it has a readable one. */
export function readableRevision(value: unknown): number | null {
  const rev = typeof value === 'object' && value !== null ? (value as { revision?: unknown }).revision : undefined;
  return typeof rev === 'number' && Number.isInteger(rev) && rev >= 1 ? rev : null;
}

/**
 * A state read from a store (file, Redis, a message, the disk cache), checked and frozen, or an
 * InvalidStateError naming the app and the key paths. `where` says where it was read
 * (`state file /x/state.json, apps.shop.state`), `app` which app it was stored for.
 */
export function parseStoredState(value: unknown, app: string, where: string): RoutingState {
  const issues = stateIssues(value);
  if (issues.length === 0 && (value as RoutingState).app !== app) issues.push({ path: 'app', message: `must be "${app}", the app it is stored for` });
  if (issues.length > 0) throw new InvalidStateError(app, where, issues, readableRevision(value));
  return freezeState(value as RoutingState);
}

/**
 * The compare-and-set precondition, shared by both stores: `next.revision` must be
 * `expected + 1` (any revision ≥ 1 when `expected` is null: a re-seed), and `next` must be a
 * valid state of the app's known pools. A violation is a caller's bug, never a conflict: it
 * throws (INVALID_STATE, 500) and nothing is written.
 */
export function checkWrite(next: RoutingState, expected: number | null, poolsOf?: PoolsOf, repair = false): void {
  const app = typeof next?.app === 'string' ? next.app : '?';
  if (expected !== null && !(Number.isInteger(expected) && expected >= 0)) {
    throw new InvalidStateError(app, 'compareAndSet', [{ path: 'expected', message: `must be null or an integer >= 0, got ${String(expected)}` }], null);
  }
  const issues = stateIssues(next, poolsOf?.(app));
  if (repair && expected !== null) {
    if (!(typeof next?.revision === 'number' && next.revision > expected)) issues.unshift({ path: 'revision', message: `must be over ${expected} (the invalid state it repairs), got ${String(next?.revision)}` });
  } else if (expected !== null && next?.revision !== expected + 1) issues.unshift({ path: 'revision', message: `must be ${expected + 1} (expected ${expected} + 1), got ${String(next?.revision)}` });
  if (issues.length > 0) throw new InvalidStateError(app, 'compareAndSet refused to store it', issues, null);
}

/** A deep, frozen copy: what a store hands out can be shared with every reader. */
export function freezeState(state: RoutingState): RoutingState {
  return deepFreeze(structuredClone(state));
}
