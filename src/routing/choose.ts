import type { AppRoute, PoolRoute } from './snapshot.ts';
import { BUCKETS, bucketOf } from './hash.ts';
import { signatureMatches } from './safe-equal.ts';

/** The pool that owns `bucket` (0..9999) under the app's current weights. */
export function poolForBucket(app: AppRoute, bucket: number): PoolRoute {
  const weighted = app.weighted;
  // two or three pools: a linear scan beats anything cleverer
  for (let i = 0; i < weighted.length; i++) {
    const p = weighted[i] as PoolRoute;
    if (bucket < p.hi) return p;
  }
  return weighted[weighted.length - 1] as PoolRoute;
}

/** A bucket from a random number in [0, 1). */
export function randomBucket(random: number): number {
  return Math.floor(random * BUCKETS);
}

export function stickyBucket(app: AppRoute, key: string): number {
  return bucketOf(app.salt, key);
}

/** `POOL.SIG` → the pool, when the signature is right; null otherwise (the caller counts rejections). */
export function previewPool(app: AppRoute, value: string): PoolRoute | null {
  const dot = value.indexOf('.');
  if (dot <= 0) return null;
  const pool = app.poolsByName.get(value.slice(0, dot));
  if (pool === undefined || pool.previewValue === null) return null;
  return signatureMatches(pool.previewValue, value) ? pool : null;
}

