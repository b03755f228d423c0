import { createHash } from 'node:crypto';
import type { RoutingState } from './types.ts';

/**
 * A short hash of what routing depends on in a state (weights, sticky salt, drain starts), so
 * two instances on the same revision can tell whether they route on the same state: after a
 * Redis that lost its data was re-seeded, one revision number can name two different states.
 * Who wrote it and why (updatedBy, reason, action) is left out: a re-seed copies a state under
 * a new author without changing where any request goes.
 */
export function stateDigest(state: RoutingState): string {
  const sorted = (r: Readonly<Record<string, unknown>>): [string, unknown][] => Object.entries(r).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const canonical = JSON.stringify([state.app, state.revision, sorted(state.weights), state.salt, sorted(state.drainingSince ?? {})]);
  return createHash('sha256').update(canonical).digest('hex').slice(0, 16);
}
