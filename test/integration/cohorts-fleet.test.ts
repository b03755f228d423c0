import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { startFleet } from '../helpers/fleet.ts';
import { useUpstreams } from '../helpers/upstream.ts';
import { until } from '../helpers/wait.ts';

describe('cohort rules and the mirror across a 3-instance fleet on redis', () => {
  const up = useUpstreams('blue', 'green');

  it('a rule and a mirror written on one instance route on the other two within the propagation bound', async (t) => {
    const fleet = await startFleet(t, 3, { blue: up.blue.url, green: up.green.url });
    const [a, b, c] = fleet.instances as [(typeof fleet.instances)[0], (typeof fleet.instances)[0], (typeof fleet.instances)[0]];
    const written = await a.admin('PUT', '/v1/apps/shop/rules', { rules: [{ name: 'beta', match: { header: { 'x-beta': '1' } }, to: 'green' }], reason: 'beta cohort' }, { 'if-match': '"1"' });
    assert.equal(written.status, 200);
    // the fleet's propagation bound (README "Fleet"): a published write, with the revision poll as a safety net
    const started = Date.now();
    await until(t, 'every instance on the rules revision', () => fleet.instances.every((p) => p.sy.controller.state('shop').revision === written.body.revision));
    for (const p of [b, c]) {
      assert.equal((await p.get('/', { 'x-beta': '1' })).servedBy, 'green@2.0.0');
      assert.equal((await p.get('/')).servedBy, 'blue@1.0.0');
      const w = await p.admin('GET', '/v1/apps/shop/whereis?header=x-beta:1');
      assert.deepEqual([w.body.pool, w.body.by], ['green', 'rule:beta']);
    }
    t.diagnostic(`rules reached every instance in ${Date.now() - started} ms`);
    // a stale If-Match on another instance is a 412 carrying the current state
    const stale = await b.admin('PUT', '/v1/apps/shop/mirror', { mirror: { to: 'green', share: 100 } }, { 'if-match': '"1"' });
    assert.equal(stale.status, 412);
    const mirror = await b.admin('PUT', '/v1/apps/shop/mirror', { mirror: { to: 'green', share: 100 } }, { 'if-match': `"${written.body.revision}"` });
    assert.equal(mirror.status, 200);
    await until(t, 'every instance on the mirror revision', () => fleet.instances.every((p) => p.sy.controller.state('shop').revision === mirror.body.revision));
    const before = up.green.seen.length;
    await c.get('/shadowed');
    await until(t, 'the copy from instance c reached green', () => up.green.seen.slice(before).some((s) => s.url === '/shadowed' && s.headers['x-switchyard-mirror'] === '1'));
    const drain = await a.admin('GET', '/v1/apps/shop/pools/green/drain');
    assert.equal(drain.body.drained, false);
    assert.match(drain.body.reason, /rule beta; mirror/);
    const history = await c.admin('GET', '/v1/apps/shop/history?limit=2');
    assert.deepEqual(history.body.entries.map((e: { action: string }) => e.action), ['mirror', 'rules']);
  });
});
