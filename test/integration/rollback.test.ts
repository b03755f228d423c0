import assert from 'node:assert/strict';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { after, before, describe, it, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { startProxy, twoPools, type TestProxy } from '../helpers/proxy.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';
import { until } from '../helpers/wait.ts';

let blue: Upstream;
let green: Upstream;
/** what green answers to proxied requests */
let greenStatus = 200;

before(async () => {
  blue = await startUpstream('blue');
  green = await startUpstream('green', (_req: IncomingMessage, res: ServerResponse) => {
    res.writeHead(greenStatus, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ pool: 'green' }));
  });
});
after(async () => {
  await blue.close();
  await green.close();
});

async function proxy(t: TestContext): Promise<TestProxy> {
  greenStatus = 200;
  const p = await startProxy({ apps: [twoPools(blue.url, green.url)] }, { rollouts: { tickMs: 20 } });
  t.after(() => p.close());
  return p;
}

const state = async (p: TestProxy) => (await p.admin('GET', '/v1/apps/shop')).body;

describe('rollback goes back to the last known-good (stable) routing', () => {
  it('regression: a ramp 80/20 then a switch rolls back to the old pool at 100 %, not to the last ramp step; a second rollback moves nothing', async (t) => {
    const p = await proxy(t);
    assert.equal((await p.admin('PUT', '/v1/apps/shop/weights', { weights: { blue: 80, green: 20 } })).status, 200);
    assert.equal((await p.admin('POST', '/v1/apps/shop/switch', { to: 'green' })).status, 200);
    const dry = await p.admin('POST', '/v1/apps/shop/rollback?dryRun=true', {});
    assert.equal(dry.status, 200);
    assert.deepEqual(dry.body.weights, { blue: 100, green: 0 });
    assert.equal(dry.body.restores.revision, 1);
    assert.deepEqual(dry.body.pools.blue, { weight: { now: 0, then: 100 }, version: { now: '1.0.0', then: '1.0.0' } });
    assert.deepEqual(dry.body.pools.green, { weight: { now: 100, then: 0 }, version: { now: '2.0.0', then: '2.0.0' } });
    assert.equal(dry.body.refused, null);
    assert.equal((await state(p)).revision, 3, 'a dry run writes nothing');

    const r = await p.admin('POST', '/v1/apps/shop/rollback', { reason: 'green is slow' });
    assert.equal(r.status, 200);
    assert.deepEqual(r.body.weights, { blue: 100, green: 0 });
    assert.equal(r.body.revision, 4);
    assert.equal((await p.get('/')).servedBy, 'blue@1.0.0');

    // regression: the second rollback redid the switch
    const again = await p.admin('POST', '/v1/apps/shop/rollback', {});
    assert.equal(again.status, 409);
    assert.equal(again.body.error.code, 'NOTHING_TO_ROLL_BACK');
    assert.equal(again.body.error.details.revision, 4);
    assert.equal((await state(p)).revision, 4);
  });

  it('mid-release (a canary at 25 %) goes back to the stable routing before the release began', async (t) => {
    const p = await proxy(t);
    await p.admin('PUT', '/v1/apps/shop/weights', { weights: { blue: 95, green: 5 } });
    await p.admin('PUT', '/v1/apps/shop/weights', { weights: { blue: 75, green: 25 } });
    const r = await p.admin('POST', '/v1/apps/shop/rollback', {});
    assert.equal(r.status, 200);
    assert.deepEqual(r.body.weights, { blue: 100, green: 0 });
  });

  it('regression: after an automatic rollback, rollback answers 409 NOTHING_TO_ROLL_BACK naming it, and nothing moves', async (t) => {
    const p = await proxy(t);
    greenStatus = 503;
    let stopped = false;
    const load = (async () => {
      while (!stopped) {
        await p.get('/').catch(() => undefined);
        await sleep(2);
      }
    })();
    t.after(async () => {
      stopped = true;
      await load;
    });
    const started = await p.admin('POST', '/v1/apps/shop/rollouts', { to: 'green', steps: [{ weight: 25, pause: '1m' }, { weight: 100 }], analysis: { maxErrorRate: 0.05, minRequests: 10 } });
    assert.equal(started.status, 201);
    await until(t, 'the rollout is rolled back', async () => (await p.admin('GET', '/v1/apps/shop/rollouts/current')).body.state === 'rolled-back', { timeout: 15_000 });
    stopped = true;
    const before = await state(p);
    assert.deepEqual(before.weights, { blue: 100, green: 0 });
    const r = await p.admin('POST', '/v1/apps/shop/rollback', {});
    assert.equal(r.status, 409);
    assert.equal(r.body.error.code, 'NOTHING_TO_ROLL_BACK');
    assert.equal(r.body.error.details.revision, before.revision);
    assert.match(r.body.error.message, /automatic rollback/);
    const dry = await p.admin('POST', '/v1/apps/shop/rollback?dryRun=true', {});
    assert.equal(dry.status, 409);
    const after = await state(p);
    assert.equal(after.revision, before.revision);
    assert.deepEqual(after.weights, { blue: 100, green: 0 });
  });

  it('after an aborted rollout, rollback answers 409 NOTHING_TO_ROLL_BACK', async (t) => {
    const p = await proxy(t);
    await p.admin('POST', '/v1/apps/shop/rollouts', { to: 'green', steps: [{ weight: 30, pause: '1m' }, { weight: 100 }] });
    assert.equal((await p.admin('POST', '/v1/apps/shop/rollouts/current/abort', {})).status, 200);
    const r = await p.admin('POST', '/v1/apps/shop/rollback', {});
    assert.deepEqual([r.status, r.body.error.code], [409, 'NOTHING_TO_ROLL_BACK']);
  });

  it('regression: a pool redeployed since is refused with VERSION_CHANGED unless forced; the dry run shows the versions then and now', async (t) => {
    const p = await proxy(t);
    assert.equal((await p.admin('POST', '/v1/apps/shop/switch', { to: 'green' })).status, 200);
    // blue, idle now, gets the next release
    assert.equal((await p.admin('PUT', '/v1/apps/shop/pools/blue', { version: '3.0.0', targets: [blue.url] })).status, 200);
    const dry = await p.admin('POST', '/v1/apps/shop/rollback?dryRun=true', {});
    assert.equal(dry.status, 200);
    assert.deepEqual(dry.body.weights, { blue: 100, green: 0 });
    assert.deepEqual(dry.body.pools.blue.version, { now: '3.0.0', then: '1.0.0' });
    assert.deepEqual(dry.body.versionChanged, ['blue']);
    assert.equal(dry.body.refused.code, 'VERSION_CHANGED');
    const refused = await p.admin('POST', '/v1/apps/shop/rollback', {});
    assert.equal(refused.status, 409);
    assert.equal(refused.body.error.code, 'VERSION_CHANGED');
    assert.match(refused.body.error.message, /blue ran 1\.0\.0 then and runs 3\.0\.0 now/);
    assert.deepEqual((await state(p)).weights, { blue: 0, green: 100 });
    const forced = await p.admin('POST', '/v1/apps/shop/rollback', { force: true });
    assert.equal(forced.status, 200);
    assert.deepEqual(forced.body.weights, { blue: 100, green: 0 });
    // definition changes are never undone: blue keeps 3.0.0
    assert.equal(forced.body.pools.blue.version, '3.0.0');
  });

  it('history says what each entry did, in words', async (t) => {
    const p = await proxy(t);
    await p.admin('PUT', '/v1/apps/shop/pools/green', { version: '3.0.0', targets: [green.url, blue.url] });
    await p.admin('POST', '/v1/apps/shop/switch', { to: 'green' });
    await p.admin('POST', '/v1/apps/shop/rollback', {});
    const h = (await p.admin('GET', '/v1/apps/shop/history')).body.entries;
    assert.deepEqual(h.map((e: { summary: string }) => e.summary), ['rollback: blue 100 %, green 0 %', 'switch to green', 'green → 3.0.0 on 2 targets', 'initial: blue 100 %, green 0 %']);
    assert.deepEqual(h[0].pools, { blue: { version: '1.0.0', targets: 1 }, green: { version: '3.0.0', targets: 2 } });
    assert.equal(h[0].revert, 'rollback');
  });
});
