import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseConfig } from '../../src/config/load.ts';
import { nextState, initialState } from '../../src/control/next-state.ts';
import { makePin, pinnedPool } from '../../src/routing/affinity.ts';
import { poolForBucket, previewPool, randomBucket, stickyBucket } from '../../src/routing/choose.ts';
import { bucketOf, BUCKETS } from '../../src/routing/hash.ts';
import { buildAppRoute, previewSignature, type AppRoute } from '../../src/routing/snapshot.ts';
import type { RoutingState } from '../../src/state/types.ts';
import { parseWeights, pctToBp } from '../../src/config/weights.ts';

const config = parseConfig({
  apps: [
    {
      name: 'shop',
      hosts: ['*'],
      pools: { blue: { version: '1', targets: ['http://127.0.0.1:1'] }, green: { version: '2', targets: ['http://127.0.0.1:2'] } },
      sticky: { key: ['header:x-user-id'] },
      preview: { secret: 'preview-secret-0123456789' },
      affinity: { secret: 'affinity-secret-0123456789', window: '10m' },
    },
  ],
});
const appCfg = config.apps[0]!;

function stateWith(weights: Record<string, number>, extra: Partial<RoutingState> = {}): RoutingState {
  return { ...initialState('shop', weights, Date.parse('2026-01-01T00:00:00Z')), salt: 'fixed-salt', ...extra };
}
function route(weights: Record<string, number>, extra: Partial<RoutingState> = {}): AppRoute {
  return buildAppRoute(0, appCfg, stateWith(weights, extra));
}

/** A deterministic random source (mulberry32), so property tests are repeatable. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('weights', () => {
  it('are percentages with at most two decimals held as basis points', () => {
    assert.equal(pctToBp(0.01), 1);
    assert.equal(pctToBp(12.34), 1234);
    assert.equal(pctToBp(0.29), 29);
    assert.equal(pctToBp(100), 10000);
    assert.equal(pctToBp(0.001), 'at most two decimals');
    assert.equal(pctToBp(-1), 'must be between 0 and 100');
    assert.equal(pctToBp(101), 'must be between 0 and 100');
  });

  it('name the field in every validation error', () => {
    const pools = ['blue', 'green'];
    const err = (w: Record<string, number>) => {
      const r = parseWeights(w, pools);
      assert.equal(r.ok, false);
      return r.ok ? [] : r.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
    };
    assert.deepEqual(err({ blue: 90, green: 20 }), ['weights: must sum to 100, got 110']);
    assert.deepEqual(err({ blue: 99.995, green: 0.005 }), ['weights.blue: at most two decimals', 'weights.green: at most two decimals']);
    assert.deepEqual(err({ blue: 100, purple: 0 }), ['weights.purple: unknown pool (pools: blue, green)']);
    assert.deepEqual(err({ blue: Number.NaN, green: 100 }), ['weights.blue: must be a number']);
    assert.deepEqual(parseWeights({ blue: 99.99, green: 0.01 }, pools), { ok: true, weights: { blue: 9999, green: 1 } });
    assert.deepEqual(parseWeights({ green: 100 }, pools), { ok: true, weights: { blue: 0, green: 10000 } });
  });
});

describe('random split', () => {
  it('gives exact counts with an injected random source', () => {
    const app = route({ blue: 9000, green: 1000 });
    const counts = { blue: 0, green: 0 };
    // every bucket exactly once: the split is exactly the weights
    for (let b = 0; b < BUCKETS; b++) counts[poolForBucket(app, randomBucket(b / BUCKETS)).name as 'blue' | 'green']++;
    assert.deepEqual(counts, { blue: 9000, green: 1000 });
    const tiny = route({ blue: 9999, green: 1 });
    assert.equal(poolForBucket(tiny, randomBucket(0.9999)).name, 'green');
    assert.equal(poolForBucket(tiny, randomBucket(0.99989999)).name, 'blue');
    assert.equal(poolForBucket(route({ blue: 0, green: 10000 }), 0).name, 'green');
  });
});

describe('sticky cohorts', () => {
  it('spread 100k keys within ±1 % of each weight', () => {
    for (const pct of [0.01, 1, 10, 50]) {
      const bp = Math.round(pct * 100);
      const app = route({ blue: 10000 - bp, green: bp });
      let green = 0;
      for (let i = 0; i < 100_000; i++) if (poolForBucket(app, stickyBucket(app, `user-${i}`)).name === 'green') green++;
      const share = (green / 100_000) * 100;
      assert.ok(Math.abs(share - pct) <= 1, `at ${pct} %: green got ${share.toFixed(3)} %`);
    }
  });

  it('keep every bucket equally likely (chi-square over 100 cells)', () => {
    const cells = new Array<number>(100).fill(0);
    for (let i = 0; i < 100_000; i++) (cells[Math.floor(bucketOf('salt', `k${i}`) / 100)] as number)++;
    const chi = cells.reduce((s, c) => s + (c - 1000) ** 2 / 1000, 0);
    assert.ok(chi < 150, `chi-square ${chi.toFixed(1)} over 99 degrees of freedom`);
  });

  it('a ramp toward a pool never moves a key away from it (property test)', () => {
    const r = rng(42);
    let movedBack = 0;
    for (let trial = 0; trial < 500; trial++) {
      const a = Math.floor(r() * 10001);
      const b = Math.floor(r() * 10001);
      const [lo, hi] = a <= b ? [a, b] : [b, a];
      const before = route({ blue: 10000 - lo, green: lo });
      const after = route({ blue: 10000 - hi, green: hi });
      for (let k = 0; k < 200; k++) {
        const key = `u${Math.floor(r() * 1e9)}`;
        if (poolForBucket(before, stickyBucket(before, key)).name === 'green' && poolForBucket(after, stickyBucket(after, key)).name !== 'green') movedBack++;
      }
    }
    assert.equal(movedBack, 0);
  });

  it('change the salt only when one pool reaches 100 %, never during a ramp', () => {
    const now = Date.parse('2026-01-01T00:00:00Z');
    const s1 = stateWith({ blue: 10000, green: 0 });
    const s2 = nextState(s1, { weights: { blue: 9500, green: 500 }, action: 'weights', by: 't', reason: null, now });
    const s3 = nextState(s2, { weights: { blue: 7500, green: 2500 }, action: 'weights', by: 't', reason: null, now });
    const s4 = nextState(s3, { weights: { blue: 0, green: 10000 }, action: 'switch', by: 't', reason: null, now });
    const s5 = nextState(s4, { weights: { blue: 0, green: 10000 }, action: 'switch', by: 't', reason: null, now });
    assert.equal(s2.salt, s1.salt);
    assert.equal(s3.salt, s1.salt);
    assert.notEqual(s4.salt, s1.salt);
    assert.equal(s5.salt, s4.salt);
  });

  it('record when a pool reaches weight 0 and forget it when the pool gets weight back', () => {
    const t0 = Date.parse('2026-01-01T00:00:00Z');
    const s1 = stateWith({ blue: 10000, green: 0 }, { drainingSince: {} });
    const s2 = nextState(s1, { weights: { blue: 0, green: 10000 }, action: 'switch', by: 't', reason: null, now: t0 });
    assert.equal(s2.drainingSince['blue'], new Date(t0).toISOString());
    const s3 = nextState(s2, { weights: { blue: 0, green: 10000 }, action: 'switch', by: 't', reason: null, now: t0 + 5000 });
    assert.equal(s3.drainingSince['blue'], new Date(t0).toISOString(), 'an unchanged 0 keeps its clock');
    const s4 = nextState(s3, { weights: { blue: 5000, green: 5000 }, action: 'weights', by: 't', reason: null, now: t0 + 6000 });
    assert.equal(s4.drainingSince['blue'], undefined);
  });
});

describe('preview', () => {
  it('routes a correctly signed header to its pool and ignores a forged one', () => {
    const app = route({ blue: 10000, green: 0 });
    const good = `green.${previewSignature('preview-secret-0123456789', 'shop', 'green')}`;
    assert.equal(previewPool(app, good)?.name, 'green');
    assert.equal(previewPool(app, `green.${'0'.repeat(64)}`), null);
    assert.equal(previewPool(app, `blue.${previewSignature('preview-secret-0123456789', 'shop', 'green')}`), null);
    assert.equal(previewPool(app, 'green'), null);
    assert.equal(previewPool(app, `purple.${previewSignature('preview-secret-0123456789', 'shop', 'purple')}`), null);
  });
});

describe('affinity pins', () => {
  const secret = 'affinity-secret-0123456789';
  const t0 = Date.parse('2026-01-01T00:00:00Z');
  it('never override the weights of a pool that has weight, and hold a session on a draining pool until the window closes', () => {
    const pin = makePin(secret, 'shop', 'blue', 1, t0 / 1000 - 60);
    assert.equal(pinnedPool(route({ blue: 5000, green: 5000 }), pin, t0), null, 'a pool with weight: the weights decide');
    assert.equal(pinnedPool(route({ blue: 10000, green: 0 }), pin, t0), null);
    const draining = route({ blue: 0, green: 10000 }, { revision: 2, drainingSince: { blue: new Date(t0).toISOString() } });
    assert.equal(pinnedPool(draining, pin, t0 + 9 * 60_000)?.name, 'blue');
    assert.equal(pinnedPool(draining, makePin(secret, 'shop', 'blue', 2, t0 / 1000 - 60), t0), null, 'a pin from the draining revision or later (a wiped store) is not one a drain holds');
    assert.equal(pinnedPool(draining, pin, t0 + 10 * 60_000), null);
  });
  it('ignore forged, malformed and unknown-pool pins, and pins issued after the drain began', () => {
    const app = route({ blue: 0, green: 10000 }, { revision: 2, drainingSince: { blue: new Date(t0).toISOString() } });
    const pin = makePin(secret, 'shop', 'blue', 1, t0 / 1000);
    assert.equal(pinnedPool(app, pin, t0)?.name, 'blue');
    assert.equal(pinnedPool(app, pin.slice(0, -2) + 'xx', t0), null);
    assert.equal(pinnedPool(app, 'garbage', t0), null);
    assert.equal(pinnedPool(app, makePin('another-secret-0123456789', 'shop', 'blue', 1, t0 / 1000), t0), null);
    assert.equal(pinnedPool(app, makePin(secret, 'shop', 'purple', 1, t0 / 1000), t0), null);
    assert.equal(pinnedPool(app, makePin(secret, 'shop', 'blue', 1, t0 / 1000 + 60), t0 + 61_000), null);
  });
});
