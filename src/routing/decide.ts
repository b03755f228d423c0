import { pinnedPool } from './affinity.ts';
import { poolForBucket, previewPool, stickyBucket } from './choose.ts';
import { BUCKETS } from './hash.ts';
import type { MirrorRoute, RequestFacts } from './rules.ts';
import type { AppRoute, PoolRoute } from './snapshot.ts';

/** Which step routed a request (docs/cohorts.md §7): what `whereis` answers and the access log carries. */
export type RoutedBy = 'preview' | 'pin' | 'weights' | `rule:${string}`;

export interface RouteDecision {
  readonly pool: PoolRoute;
  readonly by: RoutedBy;
  /** the bucket the weights (or a rule's share) read: the sticky key's, else the random one; null for preview and pin */
  readonly bucket: number | null;
  /** the request carried a preview header with a bad signature (routed as if it had none; the caller counts it) */
  readonly previewRejected: boolean;
  /** the sticky key that placed it (null: none, its position was the random draw) */
  readonly key: string | null;
}

/** Whether a pool has a target up now: the caller's Runtime (an object, so the data plane passes its per-request facts without a closure). */
export interface Serving {
  serves(pool: PoolRoute): boolean;
}

export interface DecideOptions {
  /** leave the affinity pin out (a pinned request whose pool failed it is routed again without) @default false */
  readonly skipPin?: boolean;
  /** the sticky key, when the caller names it rather than the request carrying it (`whereis?key=K`) */
  readonly key?: string;
}

/** The sticky key of a request: the first of the app's `sticky.key` sources it carries, or undefined. */
export function stickyKey(app: AppRoute, facts: RequestFacts): string | undefined {
  if (app.sticky === null) return undefined;
  for (const src of app.sticky) {
    const key = src.kind === 'ip' ? facts.clientIp : src.kind === 'header' ? facts.header(src.name) : facts.cookie(src.name);
    if (key !== undefined && key !== '') return key;
  }
  return undefined;
}

/**
 * The routing decision, for HTTP/1.1, h2, upgrades and `whereis` alike (docs/cohorts.md §1): a valid
 * preview header, then the first rule whose match holds and whose pool can serve, then a valid
 * affinity pin, then the weights. Pure: `rand` (in [0, 1)) is the request's random draw, `now`
 * the clock, and `serving.serves(pool)` whether the pool has a target up now (the caller's Runtime).
 *
 * Shares. A request's position `b` in [0, 10000) is its sticky bucket (when the app is sticky
 * and the request carries a key) or `rand × 10000`. A matching rule takes it when `b < share`;
 * one that does not is passed on with `b` stretched over the full range again,
 * `(b − share) × 10000 / (10000 − share)`, so the requests a rule leaves are split by the next
 * rules and the weights exactly as if the rule were not there (its cohort is not carved out of
 * any pool's buckets). A request no rule matches keeps its own bucket: `whereis` and every
 * sticky user are unaffected by rules they do not meet, and a ramp of the weights only moves
 * users toward the growing pool.
 */
export function decide(app: AppRoute, facts: RequestFacts, rand: number, now: number, serving: Serving, opts: DecideOptions = {}): RouteDecision {
  let previewRejected = false;
  const preview = app.config.preview;
  if (preview !== undefined) {
    const value = facts.header(preview.header);
    if (value !== undefined) {
      const pool = previewPool(app, value);
      if (pool !== null) return { pool, by: 'preview', bucket: null, previewRejected: false, key: null };
      previewRejected = true;
    }
  }
  const key = app.sticky === null ? undefined : (opts.key ?? stickyKey(app, facts));
  const sticky = key !== undefined;
  const k = key ?? null;
  let b = sticky ? stickyBucket(app, key) : rand * BUCKETS;
  const rules = app.rules;
  for (let i = 0; i < rules.length; i++) {
    const rule = rules[i] as AppRoute['rules'][number];
    if (!rule.matches(facts)) continue;
    const pool = app.poolsByName.get(rule.to);
    // a rule never causes a 503 another pool could have avoided
    if (pool === undefined || !serving.serves(pool)) continue;
    if (b < rule.share) return { pool, by: rule.by, bucket: Math.floor(b), previewRejected, key: k };
    b = ((b - rule.share) * BUCKETS) / (BUCKETS - rule.share);
    if (sticky) b = Math.floor(b);
  }
  const affinity = app.config.affinity;
  if (affinity !== undefined && opts.skipPin !== true) {
    const pin = facts.cookie(affinity.cookie);
    if (pin !== undefined) {
      const pool = pinnedPool(app, pin, now);
      // a pin to a draining pool with no target up is ignored: the weights route it, never a 503
      if (pool !== null && serving.serves(pool)) return { pool, by: 'pin', bucket: null, previewRejected, key: k };
    }
  }
  const bucket = Math.min(BUCKETS - 1, Math.floor(b));
  return { pool: poolForBucket(app, bucket), by: 'weights', bucket, previewRejected, key: k };
}

/**
 * Whether a request routed to `pool` is copied to the app's mirror pool, and which: only
 * requests routed to another pool, with a mirrored method, inside the share (`rand`: a draw of
 * its own, independent of the routing one).
 */
export function mirrorFor(app: AppRoute, pool: PoolRoute, method: string, rand: number): MirrorRoute | null {
  const m = app.mirror;
  if (m === null || pool.name === m.to || !m.methods.has(method)) return null;
  return rand * BUCKETS < m.share ? m : null;
}
