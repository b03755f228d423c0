import { createHash } from 'node:crypto';
import type { RoutingState } from './types.ts';

/**
 * A short hash of what routing depends on in a state (weights, sticky salt, drain starts, the
 * app's definition, whether it is deleted, the pools whose pins a rollback voided), so
 * two instances on the same revision can tell whether they route on the same state: after a
 * Redis that lost its data was re-seeded, one revision number can name two different states.
 * Who wrote it and why (updatedBy, reason, action) is left out: a re-seed copies a state under
 * a new author without changing where any request goes.
 */
export function stateDigest(state: RoutingState): string {
  const sorted = (r: Readonly<Record<string, unknown>>): [string, unknown][] => Object.entries(r).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  // unpinned pools only when there are some, so a state without them hashes as before they existed
  const unpinned = state.unpinned === undefined || state.unpinned.length === 0 ? [] : [[...state.unpinned].sort()];
  const canonical = JSON.stringify([state.app, state.revision, sorted(state.weights), state.salt, sorted(state.drainingSince ?? {}), canonicalJson(state.definition ?? null), state.deleted === true, ...unpinned]);
  return createHash('sha256').update(canonical).digest('hex').slice(0, 16);
}

/** JSON with every object's keys sorted, so two equal definitions written in another key order hash the same. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) return v;
    const rec = v as Record<string, unknown>;
    return Object.fromEntries(Object.keys(rec).sort().map((k) => [k, rec[k]]));
  });
}
