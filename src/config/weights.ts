/**
 * Weights are percentages with at most two decimals on the outside and integer basis points
 * (1 % = 100 bp, 100 % = 10 000 bp) on the inside, so a ramp never accumulates float error
 * and 0.01 % is exactly one bucket out of 10 000.
 */
export const TOTAL_BP = 10_000;

export type Weights = Readonly<Record<string, number>>;

/** A percentage (number) into basis points, or an error message naming what is wrong. */
export function pctToBp(pct: number): number | string {
  if (typeof pct !== 'number' || !Number.isFinite(pct)) return 'must be a number';
  if (pct < 0 || pct > 100) return 'must be between 0 and 100';
  const bp = Math.round(pct * 100);
  // 0.29 * 100 = 28.999999999999996: compare with a tolerance far below one basis point
  if (Math.abs(bp - pct * 100) > 1e-6) return 'at most two decimals';
  return bp;
}

export function bpToPct(bp: number): number {
  return bp / 100;
}

export interface WeightIssue { path: (string | number)[]; message: string }

/**
 * Validates `{ pool: pct }` against the app's pools. Pools left out get 0. Returns basis points
 * in the pools' configured order, or the issues with their field paths.
 */
export function parseWeights(
  input: Readonly<Record<string, number>>,
  pools: readonly string[],
  prefix: (string | number)[] = ['weights'],
): { ok: true; weights: Record<string, number> } | { ok: false; issues: WeightIssue[] } {
  const issues: WeightIssue[] = [];
  const out: Record<string, number> = {};
  for (const pool of pools) out[pool] = 0;
  let sum = 0;
  for (const [pool, pct] of Object.entries(input)) {
    if (!pools.includes(pool)) {
      issues.push({ path: [...prefix, pool], message: `unknown pool (pools: ${pools.join(', ')})` });
      continue;
    }
    const bp = pctToBp(pct);
    if (typeof bp === 'string') {
      issues.push({ path: [...prefix, pool], message: bp });
      continue;
    }
    out[pool] = bp;
    sum += bp;
  }
  if (issues.length === 0 && sum !== TOTAL_BP) {
    issues.push({ path: prefix, message: `must sum to 100, got ${bpToPct(sum)}` });
  }
  return issues.length > 0 ? { ok: false, issues } : { ok: true, weights: out };
}

/**
 * A pool's entry in a pool-keyed record, own properties only: a pool named `constructor` must
 * not read `Object.prototype.constructor` from a record that lacks it.
 */
export function ownOf<T>(record: Readonly<Record<string, T>>, pool: string): T | undefined {
  return Object.hasOwn(record, pool) ? record[pool] : undefined;
}

/** Basis points to the API's percentages, in the given pool order. */
export function weightsToPct(weights: Weights, pools: readonly string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const pool of pools) out[pool] = bpToPct(ownOf(weights, pool) ?? 0);
  return out;
}

/** The pool at 100 %, or null during a split. */
export function activePool(weights: Weights): string | null {
  for (const [pool, bp] of Object.entries(weights)) if (bp === TOTAL_BP) return pool;
  return null;
}
