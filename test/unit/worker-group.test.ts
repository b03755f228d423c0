import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { groupCounts, WorkerGroup } from '../../src/cluster/group.ts';
import type { WorkerReport } from '../../src/cluster/ipc.ts';
import { workerCount } from '../../src/cluster/primary.ts';
import { StateMirror } from '../../src/cluster/state-mirror.ts';
import { parseConfig } from '../../src/config/load.ts';
import { BUCKET_SCHEME } from '../../src/metrics/stats.ts';
import type { RoutingState } from '../../src/state/types.ts';

const pools = { blue: { version: '1.0.0', targets: ['http://127.0.0.1:9001'] }, green: { version: '2.0.0', targets: ['http://127.0.0.1:9002'] } };
const config = parseConfig({ apps: [{ name: 'shop', hosts: ['*'], pools }], workers: 2 });

function report(revision: number, blueInflight: number, requests = 0): WorkerReport {
  return {
    applied: { shop: revision },
    pools: { shop: { blue: { inflight: blueInflight, upgraded: 1, pinned: 0 }, green: { inflight: 0, upgraded: 0, pinned: 2 } } },
    stats: { v: BUCKET_SCHEME, at: 100, apps: requests === 0 ? {} : { shop: { blue: { '10': [requests, 0, 3, requests] } } } },
    served: requests,
    at: 100,
  };
}

function state(revision: number, weights: Record<string, number>): RoutingState {
  return { app: 'shop', revision, weights, salt: 's', drainingSince: {}, action: 'switch', updatedAt: new Date(0).toISOString(), updatedBy: 't', reason: null, definition: { name: 'shop', hosts: ['*'], pools } };
}

describe('WorkerGroup: one instance made of several workers', () => {
  it('sums the workers’ counts and forgets a worker that left', () => {
    const g = new WorkerGroup(config);
    g.join(0, { shop: 1 });
    g.join(1, { shop: 1 });
    g.report(0, report(1, 3));
    g.report(1, report(1, 4));
    assert.deepEqual(g.counts('shop', 'blue'), { inflight: 7, upgraded: 2, pinned: 0 });
    assert.deepEqual(g.pools().shop?.green, { inflight: 0, upgraded: 0, pinned: 4 });
    g.leave(1);
    assert.deepEqual(g.counts('shop', 'blue'), { inflight: 3, upgraded: 1, pinned: 0 });
  });

  it('routes on a revision once the primary and every worker do; counts as applied only then', () => {
    const g = new WorkerGroup(config);
    let primary = 2;
    const counts = groupCounts(g, 'host:1', () => primary);
    assert.deepEqual(counts.instances('shop', 2), { applied: 0, total: 1 }, 'no worker: nothing routes');
    g.join(0, { shop: 2 });
    g.join(1, { shop: 1 });
    assert.equal(g.revision('shop', primary), 1);
    assert.deepEqual(counts.instances('shop', 2), { applied: 0, total: 1 });
    g.acknowledge(1, { shop: 2 });
    assert.deepEqual(counts.instances('shop', 2), { applied: 1, total: 1 });
    primary = 3;
    assert.equal(g.revision('shop', primary), 2);
    // a report carries the revision too, making good a lost acknowledgement
    g.report(0, report(3, 0));
    g.report(1, report(3, 0));
    assert.equal(g.revision('shop', primary), 3);
  });

  it('settled() waits for every live worker, a leaving one included, and gives up at its timeout', async () => {
    const g = new WorkerGroup(config);
    g.join(0, { shop: 1 });
    g.join(1, { shop: 1 });
    const waiting = g.settled('shop', 2, 5_000);
    g.acknowledge(0, { shop: 2 });
    g.leave(1);
    assert.equal(await waiting, true);
    assert.equal(await g.settled('shop', 3, 20), false);
  });

  it('merges the workers’ stats windows into one export', () => {
    const g = new WorkerGroup(config);
    assert.equal(g.stats(), null);
    g.join(0, { shop: 1 });
    g.join(1, { shop: 1 });
    g.report(0, report(1, 0, 5));
    g.report(1, report(1, 0, 7));
    assert.deepEqual(g.stats()?.apps.shop?.blue?.['10'], [12, 0, 3, 12]);
    assert.deepEqual(g.figures(1), { served: 7, reportedAt: 100, applied: { shop: 1 } });
  });
});

describe('StateMirror: a worker’s copy of the routing states', () => {
  it('swaps in newer states only, and says so', () => {
    const m = new StateMirror([state(1, { blue: 10_000, green: 0 })], pino({ level: 'silent' }));
    const applied: number[] = [];
    m.on('applied', (s: RoutingState) => applied.push(s.revision));
    const first = m.snapshot;
    assert.equal(m.apply(state(3, { blue: 0, green: 10_000 })), true);
    assert.notEqual(m.snapshot, first);
    assert.equal(m.snapshot.byName.get('shop')?.weighted[0]?.name, 'green');
    assert.equal(m.apply(state(2, { blue: 10_000, green: 0 })), false, 'never back to a lower revision');
    assert.deepEqual(applied, [3]);
    assert.deepEqual(m.revisions(), { shop: 3 });
  });

  it('refuses to start on a state that carries no definition', () => {
    const { definition: _none, ...bare } = state(1, { blue: 10_000, green: 0 });
    assert.throws(() => new StateMirror([bare], pino({ level: 'silent' })), /no definition in the routing state of app shop/);
  });
});

describe('workerCount', () => {
  it('takes a number as it is and `auto` as the CPUs available', () => {
    assert.equal(workerCount(3, 8), 3);
    assert.equal(workerCount('auto', 8), 8);
    assert.equal(workerCount(1), 1);
  });
});
