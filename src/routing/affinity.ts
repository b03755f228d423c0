import { createHmac, timingSafeEqual } from 'node:crypto';
import type { AppRoute, PoolRoute } from './snapshot.ts';

/**
 * Affinity pins: `POOL.REVISION.ISSUED.SIG`, SIG = base64url HMAC-SHA256 (first 16 bytes) of
 * `APP|POOL|REVISION|ISSUED` under the app's affinity secret. A pin keeps a session on its
 * pool while that pool has weight, and for `affinity.window` after its weight became 0.
 */
const SKEW_S = 5;

function sign(secret: string, app: string, pool: string, revision: number, issued: number): string {
  return createHmac('sha256', secret).update(`${app}|${pool}|${revision}|${issued}`).digest().subarray(0, 16).toString('base64url');
}

export function makePin(secret: string, app: string, pool: string, revision: number, issuedSec: number): string {
  return `${pool}.${revision}.${issuedSec}.${sign(secret, app, pool, revision, issuedSec)}`;
}

/** The pool a pin sends its request to now, or null for a forged, malformed or expired pin. */
export function pinnedPool(app: AppRoute, pin: string, now: number): PoolRoute | null {
  const secret = app.config.affinity?.secret;
  if (secret === undefined) return null;
  const parts = pin.split('.');
  if (parts.length !== 4) return null;
  const [poolName, revS, issuedS, sig] = parts as [string, string, string, string];
  const pool = app.poolsByName.get(poolName);
  if (pool === undefined) return null;
  const revision = Number(revS);
  const issued = Number(issuedS);
  if (!Number.isSafeInteger(revision) || !Number.isSafeInteger(issued)) return null;
  const expected = sign(secret, app.name, poolName, revision, issued);
  if (expected.length !== sig.length || !timingSafeEqual(Buffer.from(expected), Buffer.from(sig))) return null;
  if (pool.weight > 0) return pool;
  // draining: honour pins issued while the pool still had weight, until the window closes
  if (pool.drainingSince === null || pool.pinDeadline === null) return null;
  if (issued > pool.drainingSince / 1000 + SKEW_S) return null;
  return now < pool.pinDeadline ? pool : null;
}

/**
 * Builds the Set-Cookie value for responses routed by weight. Pins only change once a second
 * per pool and revision, so the HMAC is computed once per second, not per response.
 */
export class PinCookies {
  // keyed by the snapshot's pool object: a new revision builds new pool objects, so a cached
  // pin never outlives its revision, and old entries go with the old snapshot
  private readonly cache = new WeakMap<PoolRoute, { sec: number; value: string }>();

  setCookie(app: AppRoute, pool: PoolRoute, now: number): string | null {
    const aff = app.config.affinity;
    if (aff === undefined) return null;
    const sec = Math.floor(now / 1000);
    const hit = this.cache.get(pool);
    if (hit !== undefined && hit.sec === sec) return hit.value;
    const pin = makePin(aff.secret, app.name, pool.name, app.revision, sec);
    // the pin must outlive a pool's weight by the window, so it lives a day longer than that
    const maxAge = Math.ceil(aff.window / 1000) + 86_400;
    const value = `${aff.cookie}=${pin}; Path=/; Max-Age=${maxAge}; HttpOnly; SameSite=Lax`;
    this.cache.set(pool, { sec, value });
    return value;
  }
}
