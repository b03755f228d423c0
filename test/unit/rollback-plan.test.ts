import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isStable, planRollback, poolsServing, revertOf, stablePool, type RevisionRecord, type Routing } from '../../src/control/rollback-plan.ts';
import type { RevertKind } from '../../src/state/types.ts';

const V = { blue: '1.0.0', green: '2.0.0' };
let rev = 0;
/** One history entry; weights in percent. */
function entry(blue: number, green: number, opts: { action?: string; reason?: string; revert?: RevertKind; versions?: Record<string, string>; rules?: Routing['rules']; mirror?: Routing['mirror'] } = {}): RevisionRecord {
  const versions = opts.versions ?? V;
  return {
    revision: ++rev,
    weights: { blue: blue * 100, green: green * 100 },
    action: (opts.action ?? 'weights') as RevisionRecord['action'],
    reason: opts.reason ?? null,
    at: new Date(rev * 1000).toISOString(),
    pools: Object.fromEntries(Object.entries(versions).map(([p, version]) => [p, { version, targets: 1 }])),
    ...(opts.revert === undefined ? {} : { revert: opts.revert }),
    ...(opts.rules === undefined ? {} : { rules: opts.rules }),
    ...(opts.mirror === undefined ? {} : { mirror: opts.mirror }),
  };
}
/** History newest first, from entries given oldest first. */
const history = (...oldestFirst: RevisionRecord[]): RevisionRecord[] => [...oldestFirst].reverse();

describe('rollback plan (docs/cohorts.md §6)', () => {
  it('a routing is stable when one pool has 100 % and no rule or mirror points elsewhere', () => {
    assert.equal(stablePool({ weights: { blue: 10_000, green: 0 } }), 'blue');
    assert.equal(isStable({ weights: { blue: 9_000, green: 1_000 } }), false);
    assert.equal(isStable({ weights: { blue: 10_000, green: 0 }, rules: [{ name: 'beta', to: 'green' }] }), false);
    assert.equal(isStable({ weights: { blue: 10_000, green: 0 }, rules: [{ name: 'staff', to: 'blue' }] }), true);
    assert.equal(isStable({ weights: { blue: 10_000, green: 0 }, mirror: { to: 'green' } }), false);
    assert.deepEqual(poolsServing({ weights: { blue: 10_000, green: 0 }, mirror: { to: 'green' } }).sort(), ['blue', 'green']);
  });

  it('a ramp 5 → 25 → 100 goes back to the old pool at 100 %', () => {
    const h = history(entry(100, 0, { action: 'initial' }), entry(95, 5), entry(75, 25), entry(0, 100, { action: 'switch' }));
    const r = planRollback(h, V);
    assert.ok(r.ok);
    assert.deepEqual(r.plan.to.routing.weights, { blue: 10_000, green: 0 });
    assert.equal(r.plan.to.revision, h[3]?.revision);
    assert.equal(r.plan.releaseFrom, h[2]?.revision);
  });

  it('mid-release goes back to the stable routing before the release; definition-only entries are not routing changes', () => {
    const h = history(entry(0, 100), entry(0, 100, { action: 'pool', versions: { blue: '3.0.0', green: '2.0.0' } }), entry(100, 0, { action: 'switch', versions: { blue: '3.0.0', green: '2.0.0' } }), entry(80, 20, { versions: { blue: '3.0.0', green: '2.0.0' } }));
    const r = planRollback(h, { blue: '3.0.0', green: '2.0.0' });
    assert.ok(r.ok);
    assert.deepEqual(r.plan.to.routing.weights, { blue: 10_000, green: 0 });
    assert.deepEqual(r.plan.versionChanged, []);
  });

  it('never walks back toward what a revert left: NOTHING_TO_ROLL_BACK naming it', () => {
    for (const revert of ['rollback', 'analysis', 'abort'] as const) {
      const back = entry(100, 0, { action: revert === 'rollback' ? 'rollback' : 'rollout', revert });
      const h = history(entry(100, 0), entry(75, 25, { action: 'rollout' }), back, entry(100, 0, { action: 'pool' }));
      const r = planRollback(h, V);
      assert.ok(!r.ok);
      assert.equal(r.code, 'NOTHING_TO_ROLL_BACK');
      assert.equal(r.revision, back.revision);
    }
  });

  it('recognises the reverts of entries written before they were marked, by their reason', () => {
    assert.equal(revertOf({ action: 'rollout', reason: 'rollout r-1a2b3c4d rolled back: green error rate 100% > 5%' }), 'analysis');
    assert.equal(revertOf({ action: 'rollout', reason: 'rollout r-1a2b3c4d aborted by ci: flaky' }), 'abort');
    assert.equal(revertOf({ action: 'rollout', reason: 'rollout r-1a2b3c4d step 2/3: green 50%' }), null);
    assert.equal(revertOf({ action: 'rollback', reason: null }), 'rollback');
  });

  it('names the pools whose version changed since, only those it would send traffic to; unknown versions are not guessed', () => {
    const h = history(entry(100, 0), entry(0, 100, { action: 'switch' }));
    const r = planRollback(h, { blue: '3.0.0', green: '2.5.0' });
    assert.ok(r.ok);
    assert.deepEqual(r.plan.versionChanged, ['blue']);
    assert.deepEqual(r.plan.pools.blue, { weightNow: 0, weightThen: 10_000, versionNow: '3.0.0', versionThen: '1.0.0' });
    const { pools: _unrecorded, ...first } = entry(100, 0);
    const old = history(first, entry(0, 100, { action: 'switch' }));
    const r2 = planRollback(old, { blue: '3.0.0', green: '2.0.0' });
    assert.ok(r2.ok);
    assert.deepEqual(r2.plan.versionChanged, []);
    assert.equal(r2.plan.pools.blue?.versionThen, null);
  });

  it('restores rules and mirror with the weights: a rule to green is a release too', () => {
    const h = history(entry(100, 0), entry(100, 0, { rules: [{ name: 'beta', to: 'green' }] }), entry(100, 0, { rules: [{ name: 'beta', to: 'green' }], mirror: { to: 'green' } }));
    const r = planRollback(h, V);
    assert.ok(r.ok);
    assert.equal(r.plan.to.revision, h[2]?.revision);
    assert.deepEqual(r.plan.to.routing, { weights: { blue: 10_000, green: 0 }, rules: [], mirror: null });
  });

  it('answers NO_EARLIER_REVISION without a stable routing to go back to, and NOTHING_TO_ROLL_BACK when it is the current one', () => {
    const r = planRollback(history(entry(100, 0, { action: 'initial' })), V);
    assert.ok(!r.ok);
    assert.equal(r.code, 'NO_EARLIER_REVISION');
    const r2 = planRollback(history(entry(90, 10), entry(80, 20)), V);
    assert.ok(!r2.ok && r2.code === 'NO_EARLIER_REVISION');
    const r3 = planRollback(history(entry(100, 0), entry(50, 50), entry(100, 0)), V);
    assert.ok(!r3.ok && r3.code === 'NOTHING_TO_ROLL_BACK');
  });
});
