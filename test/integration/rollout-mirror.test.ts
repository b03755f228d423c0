import assert from 'node:assert/strict';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { after, before, describe, it, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { startProxy, twoPools, type TestProxy } from '../helpers/proxy.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';
import { until } from '../helpers/wait.ts';

// docs/gates.md §1 `{ mirror: PCT, pause }`: green gets copies before it gets users, and the copies are judged.
let blue: Upstream;
let green: Upstream;
let greenStatus = 200;
/** copies green received (marked X-Switchyard-Mirror: 1) */
let copies = 0;

before(async () => {
  blue = await startUpstream('blue');
  green = await startUpstream('green', (req: IncomingMessage, res: ServerResponse) => {
    if (req.headers['x-switchyard-mirror'] === '1') copies++;
    res.writeHead(greenStatus, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ pool: 'green' }));
  });
});
after(async () => {
  await blue.close();
  await green.close();
});

async function proxy(t: TestContext, status: number): Promise<TestProxy> {
  greenStatus = status;
  copies = 0;
  const p = await startProxy({ apps: [twoPools(blue.url, green.url)] }, { rollouts: { tickMs: 20 } });
  t.after(() => p.close());
  return p;
}

function traffic(p: TestProxy): { stop(): Promise<void> } {
  let stopped = false;
  const loops = Array.from({ length: 3 }, async () => {
    while (!stopped) {
      await p.get('/').catch(() => undefined);
      // paces the traffic
      await sleep(3);
    }
  });
  return {
    stop: async () => {
      stopped = true;
      await Promise.all(loops);
    },
  };
}

const current = async (p: TestProxy) => (await p.admin('GET', '/v1/apps/shop/rollouts/current')).body;
const app = async (p: TestProxy) => (await p.admin('GET', '/v1/apps/shop')).body;

describe('rollout mirror step', () => {
  it('mirrors to a healthy green with the weights kept, judges the copies, then leaves the mirror behind for step 2', async (t) => {
    const p = await proxy(t, 200);
    const load = traffic(p);
    t.after(() => load.stop());
    const r = await p.admin('POST', '/v1/apps/shop/rollouts', { to: 'green', steps: [{ mirror: 100, pause: '4s' }, { weight: 30, pause: '1h' }], analysis: { maxErrorRate: 0.05, minRequests: 5, maxP99Ms: 5000 } });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    assert.deepEqual(r.body.steps[0], { weight: 0, pause: '4s', mirror: 100 });
    const during = await app(p);
    assert.deepEqual(during.weights, { blue: 100, green: 0 });
    assert.equal(during.mirror.to, 'green');
    assert.equal(during.mirror.compare, true);
    // the step's analysis reads the copies: green serves no user, yet it has requests to judge
    const live = await until(t, 'copies judged in step 1', async () => {
      const c = await current(p);
      assert.equal(c.step, 1, 'still in the mirror step when its copies are seen');
      return c.lastAnalysis?.to?.requests >= 5 ? c : undefined;
    }, { timeout: 15_000 });
    assert.equal(live.lastAnalysis.verdict, 'pass');
    assert.equal(live.lastAnalysis.to.errors, 0);
    const next = await until(t, 'step 2', async () => ((await current(p)).step === 2 ? current(p) : undefined), { timeout: 15_000 });
    assert.equal(next.state, 'running');
    const after2 = await app(p);
    assert.deepEqual(after2.weights, { blue: 70, green: 30 });
    assert.equal(after2.mirror, null);
    assert.ok(copies >= 5, `green got ${copies} copies`);
    const h = (await p.admin('GET', '/v1/apps/shop/history?limit=2')).body.entries;
    assert.deepEqual(h.map((e: { action: string }) => e.action), ['rollout', 'rollout']);
    assert.match(h[1].reason, new RegExp(`^rollout ${r.body.id} step 1/3: mirror 100% to green \\(weights kept\\)`));
    // no copies go out once the mirror is removed (a few may still be in flight)
    const before = copies;
    // a bounded window after the mirror's removal (the positive point: step 2 applied), with traffic running
    await sleep(300);
    assert.ok(copies - before <= 3, 'copies stopped with the mirror removed');
  });

  it('rolls back a mirror step whose copies answer 500, leaving no mirror and the weights as they were', async (t) => {
    const p = await proxy(t, 500);
    const load = traffic(p);
    t.after(() => load.stop());
    const r = await p.admin('POST', '/v1/apps/shop/rollouts', { to: 'green', steps: [{ mirror: 50, pause: '1m' }, { weight: 100 }], analysis: { maxErrorRate: 0.05, minRequests: 5 } });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    assert.equal((await app(p)).mirror.to, 'green');
    const rolled = await until(t, 'rolled back', async () => ((await current(p)).state === 'rolled-back' ? current(p) : undefined), { timeout: 15_000 });
    assert.match(rolled.reason, /^analysis failed: green mirror copies error rate 100% > 5% and compare mismatch rate 100% > 5% \(\d+ of \d+ pairs\) over 10s/);
    const end = await app(p);
    assert.deepEqual(end.weights, { blue: 100, green: 0 });
    assert.equal(end.mirror, null);
    const [entry] = (await p.admin('GET', '/v1/apps/shop/history?limit=1')).body.entries;
    assert.equal(entry.action, 'rollout');
    assert.equal(entry.mirror ?? null, null);
  });

  it('an abort during a mirror step removes the mirror', async (t) => {
    const p = await proxy(t, 200);
    const r = await p.admin('POST', '/v1/apps/shop/rollouts', { to: 'green', steps: [{ weight: 10 }, { mirror: 5, pause: '1h' }], analysis: null });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    await until(t, 'mirror step', async () => ((await current(p)).step === 2 ? true : undefined), { timeout: 15_000 });
    const during = await app(p);
    assert.deepEqual(during.weights, { blue: 90, green: 10 });
    assert.equal(during.mirror.to, 'green');
    const a = await p.admin('POST', '/v1/apps/shop/rollouts/current/abort', {});
    assert.equal(a.status, 200, JSON.stringify(a.body));
    const end = await app(p);
    assert.deepEqual(end.weights, { blue: 100, green: 0 });
    assert.equal(end.mirror, null);
  });

  it('refuses a mirror step while the app has a mirror of its own (409), and starts once it is removed', async (t) => {
    const p = await proxy(t, 200);
    const set = await p.admin('PUT', '/v1/apps/shop/mirror', { mirror: { to: 'green', share: 5 } });
    assert.equal(set.status, 200, JSON.stringify(set.body));
    const body = { to: 'green', steps: [{ mirror: 10, pause: '1h' }, { weight: 100 }], analysis: null };
    const refused = await p.admin('POST', '/v1/apps/shop/rollouts', body);
    assert.equal(refused.status, 409, JSON.stringify(refused.body));
    assert.match(JSON.stringify(refused.body), /already has a mirror/);
    assert.equal((await app(p)).mirror.share, 5);
    assert.equal((await p.admin('PUT', '/v1/apps/shop/mirror', { mirror: null })).status, 200);
    assert.equal((await p.admin('POST', '/v1/apps/shop/rollouts', body)).status, 201);
    assert.equal((await app(p)).mirror.share, 10);
  });

  it('refuses a mirror step that is not one, naming the field', async (t) => {
    const p = await proxy(t, 200);
    for (const [step, path] of [
      [{ mirror: 0 }, 'steps[0].mirror'],
      [{ mirror: 150 }, 'steps[0].mirror'],
      [{ mirror: 10, weight: 10 }, 'steps[0].weight'],
      [{ mirror: 10, approval: true }, 'steps[0].approval'],
    ] as const) {
      const res = await p.admin('POST', '/v1/apps/shop/rollouts', { to: 'green', steps: [step, { weight: 100 }] });
      assert.equal(res.status, 400, JSON.stringify(step));
      assert.ok(JSON.stringify(res.body).includes(path), `${JSON.stringify(res.body)} names ${path}`);
    }
  });
});
