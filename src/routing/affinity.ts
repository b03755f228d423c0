import { createHmac } from 'node:crypto';
import { signatureMatches } from './safe-equal.ts';
import type { AppRoute, PoolRoute } from './snapshot.ts';

/**
 * Affinity pins: `POOL.REVISION.ISSUED.SIG`, SIG = base64url HMAC-SHA256 (first 16 bytes) of
 * `APP|POOL|REVISION|ISSUED` under the app's affinity secret.
 *
 * Affinity exists for the drain only (docs/routing.md §3): a pin holds a session on a pool
 * that is *draining* (weight 0 since less than `affinity.window` ago), so a session started on
 * the old version finishes there. A pin never overrides the weights of a pool that has weight —
 * otherwise `whereis`, the canary share and the drain figures would all lie about browsers — and
 * a pin to a pool that cannot serve is ignored by the caller (`decide`), which routes by weight.
 */
const SKEW_S = 5;

function sign(secret: string, app: string, pool: string, revision: number, issued: number): string {
  return createHmac('sha256', secret).update(`${app}|${pool}|${revision}|${issued}`).digest().subarray(0, 16).toString('base64url');
}

/** Whether pins to `pool` can still be honoured at `now` (draining, inside the window); its targets aside. */
export function pinsHeld(pool: PoolRoute, now: number): boolean {
  return pool.weight === 0 && pool.pinDeadline !== null && now < pool.pinDeadline;
}

export function makePin(secret: string, app: string, pool: string, revision: number, issuedSec: number): string {
  return `${pool}.${revision}.${issuedSec}.${sign(secret, app, pool, revision, issuedSec)}`;
}

/**
 * The draining pool a pin holds its request on now, or null: a forged, malformed or expired pin,
 * a pin issued after the drain began, or a pin to a pool that has weight (the weights decide).
 */
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
  // a pin is issued where its pool had weight, so a pin a drain can hold is older than the
  // revision that drained the pool; a pin from a later (or a wiped store's) revision is not
  if (!Number.isSafeInteger(revision) || !Number.isSafeInteger(issued) || revision >= app.revision) return null;
  const expected = sign(secret, app.name, poolName, revision, issued);
  if (!signatureMatches(expected, sig)) return null;
  // a pool with weight: the weights (sticky bucket or random split) decide, never the pin
  if (pool.weight > 0 || pool.drainingSince === null || pool.pinDeadline === null) return null;
  // draining: honour pins issued while the pool still had weight, until the window closes
  if (issued > pool.drainingSince / 1000 + SKEW_S) return null;
  return pinsHeld(pool, now) ? pool : null;
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
