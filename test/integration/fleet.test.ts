import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
import { redisKeys } from '../../src/state/redis-store.ts';
import { allRouteOn, revisionOf, startFleet as startFleetOn } from '../helpers/fleet.ts';
import type { TestProxy } from '../helpers/proxy.ts';
import { redisClient } from '../helpers/redis-server.ts';
import { makeState } from '../helpers/store-contract.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';
import { until } from '../helpers/wait.ts';

let blue: Upstream;
let green: Upstream;

before(async () => {
  blue = await startUpstream('blue');
  green = await startUpstream('green');
});
after(async () => {
  await blue.close();
  await green.close();
});

const startFleet = (t: TestContext, n: number) => startFleetOn(t, n, { blue: blue.url, green: green.url });

// every test starts its own redis-server and fleet, and mostly waits on heartbeats and timeouts: three at a time
describe('a fleet on redis', { concurrency: 3 }, () => {
  it('two instances converge on a write made through either', async (t) => {
    const { instances } = await startFleet(t, 2);
    for (const [i, to] of [[0, 'green'], [1, 'blue'], [0, 'blue'], [1, 'green']] as const) {
      const r = await instances[i]!.admin('POST', '/v1/apps/shop/switch', { to });
      assert.equal(r.status, 200);
      await allRouteOn(t, instances, r.body.revision, to === 'green' ? 'green@2.0.0' : 'blue@1.0.0');
    }
  });

  it('three instances converge on a write through any one, and instances.applied reaches 3', async (t) => {
    const { instances } = await startFleet(t, 3);
    // each instance learns of the others from their heartbeats, read every 500 ms
    await until(t, 'every instance to see three', () => instances.every((p) => p.sy.counts.instances('shop', 1).total === 3), { timeout: 2_000 });
    for (let i = 0; i < 3; i++) {
      const to = i % 2 === 0 ? 'green' : 'blue';
      const r = await instances[i]!.admin('POST', '/v1/apps/shop/switch', { to });
      assert.equal(r.status, 200);
      assert.equal(r.body.instances.total, 3);
      const started = Date.now();
      await until(t, 'all three on the new revision', () => instances.every((p) => revisionOf(p) === r.body.revision), { timeout: 1_000 });
      const ms = Date.now() - started;
      assert.ok(ms < 1_000);
      await allRouteOn(t, instances, r.body.revision, to === 'green' ? 'green@2.0.0' : 'blue@1.0.0');
      for (const p of instances) {
        await until(t, 'instances.applied = 3', async () => {
          const s = await p.admin('GET', '/v1/apps/shop');
          return s.body.instances.applied === 3 && s.body.instances.total === 3;
        });
      }
    }
  });

  it('instances.applied counts an instance only on the same revision of the same state (its heartbeat digest)', async (t) => {
    const fleet = await startFleet(t, 1);
    const a = fleet.instances[0]!;
    const admin = redisClient(fleet.redis.url);
    t.after(() => admin.disconnect());
    const keys = redisKeys(fleet.prefix);
    // right after the start the peers are not read yet: unknown, never a guess
    await until(t, 'the first read of the peers', () => a.sy.counts.instances('shop', revisionOf(a)).total === 1);
    assert.deepEqual(a.sy.counts.instances('shop', revisionOf(a)), { applied: 1, total: 1 });
    const mine = JSON.parse((await admin.get(keys.instance('i0')))!);
    // peers as their heartbeats say: one on our state, one on our revision of another state, one a revision ahead
    const peers = { same: mine.digests?.shop, other: '0123456789abcdef', ahead: mine.digests?.shop };
    for (const [id, digest] of Object.entries(peers)) {
      const applied = { shop: id === 'ahead' ? revisionOf(a) + 1 : revisionOf(a) };
      await admin.set(keys.instance(id), JSON.stringify({ ...mine, id, applied, digests: { shop: digest }, at: Date.now() }), 'PX', 60_000);
      await admin.zadd(keys.instances, Date.now(), id);
    }
    await until(t, 'the three peers read', async () => (await a.admin('GET', '/v1/apps/shop')).body.instances.total === 4);
    assert.deepEqual((await a.admin('GET', '/v1/apps/shop')).body.instances, { applied: 2, total: 4 });
  });

  it('a write that looks like no change to a stale instance is checked against the store: it is written, never answered with the stale state', async (t) => {
    const fleet = await startFleet(t, 2);
    const admin = redisClient(fleet.redis.url);
    t.after(() => admin.disconnect());
    const [a] = fleet.instances as [TestProxy];
    const r = revisionOf(a) + 1;
    assert.equal((await a.admin('GET', '/v1/apps/shop')).body.active, 'blue');
    // another instance's switch to green that this instance has not heard of yet (written behind its back, no message)
    await admin.set(redisKeys(fleet.prefix).state('shop'), JSON.stringify(makeState('shop', r, { blue: 0, green: 10_000 })));
    // to a's stale view (blue at 100) a switch to blue changes nothing; the store says otherwise
    const w = await a.admin('POST', '/v1/apps/shop/switch', { to: 'blue', reason: 'back to blue' });
    assert.equal(w.status, 200);
    assert.equal(w.body.revision, r + 1, 'written as the revision after the one the store holds');
    assert.equal(w.body.active, 'blue');
    const stored = JSON.parse((await admin.get(redisKeys(fleet.prefix).state('shop')))!);
    assert.deepEqual([stored.revision, stored.weights], [r + 1, { blue: 10_000, green: 0 }]);
    await allRouteOn(t, fleet.instances, r + 1, 'blue@1.0.0');
  });

  it('one revision naming two states (redis holds another state at the revision routed on): the fleet moves to redis\'s as the next revision', async (t) => {
    const fleet = await startFleet(t, 2);
    const admin = redisClient(fleet.redis.url);
    t.after(() => admin.disconnect());
    const key = redisKeys(fleet.prefix).state('shop');
    const r = revisionOf(fleet.instances[0]!) + 1;
    // written behind the fleet's back (no message): the instances take revision r, green, from the poll
    await admin.set(key, JSON.stringify(makeState('shop', r, { blue: 0, green: 10_000 })));
    await allRouteOn(t, fleet.instances, r, 'green@2.0.0');
    // then revision r is rewritten as another state, as a write lost in a failover and redone on the same number leaves it
    await admin.set(key, JSON.stringify(makeState('shop', r, { blue: 10_000, green: 0 })));
    await allRouteOn(t, fleet.instances, r + 1, 'blue@1.0.0');
    const now = JSON.parse((await admin.get(key))!);
    assert.equal(now.revision, r + 1);
    assert.equal(now.action, 'reseed');
    await until(t, 'applied 2/2', async () => (await fleet.instances[0]!.admin('GET', '/v1/apps/shop')).body.instances.applied === 2);
  });

  it('drain figures are summed over the fleet, with a per-instance breakdown', async (t) => {
    const { instances } = await startFleet(t, 2);
    const [a, b] = instances as [TestProxy, TestProxy];
    a.sy.runtime.pool('shop', 'blue')!.inflight += 2;
    b.sy.runtime.pool('shop', 'blue')!.upgraded += 1;
    t.after(() => {
      a.sy.runtime.pool('shop', 'blue')!.inflight -= 2;
      b.sy.runtime.pool('shop', 'blue')!.upgraded -= 1;
    });
    await until(t, 'fleet-wide drain figures', async () => {
      const d = await a.admin('GET', '/v1/apps/shop/pools/blue/drain?instances=1');
      return d.body.inflight === 2 && d.body.upgraded === 1 && d.body.instances?.i1?.upgraded === 1;
    });
  });

  it('concurrent writers: exactly one wins per revision with If-Match, and none is lost without it', async (t) => {
    const { instances } = await startFleet(t, 2);
    const [a, b] = instances as [TestProxy, TestProxy];
    for (let round = 0; round < 10; round++) {
      const rev = revisionOf(a);
      await until(t, 'b to catch up', () => revisionOf(b) === rev);
      const ifMatch = { 'if-match': `"${rev}"` };
      const [ra, rb] = await Promise.all([
        // weights new every round: a write equal to the current state would be a no-op 200, not a race
        a.admin('PUT', '/v1/apps/shop/weights', { weights: { blue: 50 - round, green: 50 + round }, reason: `a${round}` }, ifMatch),
        b.admin('PUT', '/v1/apps/shop/weights', { weights: { blue: 20 + round, green: 80 - round }, reason: `b${round}` }, ifMatch),
      ]);
      assert.deepEqual([ra.status, rb.status].sort(), [200, 412], `round ${round}: ${ra.status} ${rb.status}`);
      const winner = ra.status === 200 ? ra : rb;
      assert.equal(winner.body.revision, rev + 1);
      await until(t, 'both on the winner', () => instances.every((p) => revisionOf(p) === rev + 1));
      assert.deepEqual(b.sy.controller.state('shop'), a.sy.controller.state('shop'));
    }
    // without If-Match the loser re-reads and retries: both writes land, on distinct revisions
    const start = revisionOf(a);
    const writes = await Promise.all(
      Array.from({ length: 6 }, (_, i) => instances[i % 2]!.admin('PUT', '/v1/apps/shop/weights', { weights: { blue: 10 * i, green: 100 - 10 * i }, reason: `w${i}` })),
    );
    assert.deepEqual(writes.map((w) => w.status), [200, 200, 200, 200, 200, 200]);
    // each reply is the state that write created, whatever was written after it
    writes.forEach((w, i) => assert.deepEqual([w.body.reason, w.body.weights, w.headers.etag], [`w${i}`, { blue: 10 * i, green: 100 - 10 * i }, `"${w.body.revision}"`]));
    const h = await a.admin('GET', '/v1/apps/shop/history?limit=7');
    const entries = h.body.entries as { revision: number; reason: string }[];
    assert.deepEqual(entries.slice(0, 6).map((e) => e.revision), [6, 5, 4, 3, 2, 1].map((k) => start + k));
    assert.deepEqual(entries.slice(0, 6).map((e) => e.reason).sort(), ['w0', 'w1', 'w2', 'w3', 'w4', 'w5']);
    await until(t, 'both on the last write', () => instances.every((p) => revisionOf(p) === start + 6));
  });

  it('redis killed under load: no proxied request fails, writes answer 503 within the timeout, and the fleet recovers', async (t) => {
    const fleet = await startFleet(t, 2);
    const [a, b] = fleet.instances as [TestProxy, TestProxy];
    const sw = await a.admin('POST', '/v1/apps/shop/switch', { to: 'green' });
    await allRouteOn(t, fleet.instances, sw.body.revision, 'green@2.0.0');

    let stop = false;
    let ok = 0;
    const failures: string[] = [];
    const client = async (): Promise<void> => {
      while (!stop) {
        try {
          const r = await request(`${a.proxyUrl}/`);
          await r.body.text();
          if (r.statusCode === 200 && r.headers['x-served-by'] === 'green@2.0.0') ok++;
          else failures.push(`${r.statusCode} ${String(r.headers['x-served-by'])}`);
        } catch (err) {
          failures.push(String(err));
        }
      }
    };
    const clients = Array.from({ length: 4 }, client);
    // paces the scenario: the clients run a while before redis dies and a while after it (no deadline is proven here)
    await sleep(300);
    await fleet.redis.kill();
    await sleep(300);
    for (const p of [a, b]) {
      const started = Date.now();
      const w = await p.admin('POST', '/v1/apps/shop/switch', { to: 'blue' });
      assert.equal(w.status, 503);
      assert.equal(w.body.error.code, 'STORE_UNAVAILABLE');
      assert.ok(Date.now() - started < 2_500, `503 after ${Date.now() - started} ms`);
    }
    const ready = await request(`${a.adminUrl}/readyz`);
    const readyBody = (await ready.body.json()) as { details: { redis: { connected: boolean } } };
    assert.equal(ready.statusCode, 200, 'still ready: it routes on the last known state');
    assert.equal(readyBody.details.redis.connected, false);
    // more traffic with redis gone: a bounded window for the clients, whose failures are the check
    await sleep(500);
    stop = true;
    await Promise.all(clients);
    assert.deepEqual(failures, []);
    assert.ok(ok > 50, `only ${ok} requests completed`);

    // back, empty: re-seeded from the fleet's state, and the next write from any instance works
    await fleet.redis.restart();
    const admin = redisClient(fleet.redis.url);
    t.after(() => admin.disconnect());
    await until(t, 'the state to be re-seeded', async () => (await admin.get(redisKeys(fleet.prefix).state('shop'))) !== null);
    const reseeded = JSON.parse((await admin.get(redisKeys(fleet.prefix).state('shop')))!);
    assert.equal(reseeded.revision, sw.body.revision);
    assert.equal(reseeded.action, 'reseed');
    assert.deepEqual(reseeded.weights, a.sy.controller.state('shop').weights);
    // each instance reconnects on its own backoff (≤ 1 s); until b has, its writes are 503 by design
    await until(t, 'b to reconnect', async () => {
      const r = await request(`${b.adminUrl}/readyz`);
      return ((await r.body.json()) as { details: { redis: { connected: boolean } } }).details.redis.connected;
    });
    const next = await b.admin('POST', '/v1/apps/shop/switch', { to: 'blue' });
    assert.equal(next.status, 200);
    assert.equal(next.body.revision, sw.body.revision + 1);
    await allRouteOn(t, fleet.instances, next.body.revision, 'blue@1.0.0');
  });

  it('redis restarted empty while idle: the state is re-seeded and the fleet converges on the next write', async (t) => {
    const fleet = await startFleet(t, 3);
    const [a, b, c] = fleet.instances as [TestProxy, TestProxy, TestProxy];
    const sw = await a.admin('PUT', '/v1/apps/shop/weights', { weights: { blue: 70, green: 30 } });
    await until(t, 'all on the split', () => fleet.instances.every((p) => revisionOf(p) === sw.body.revision));
    await fleet.redis.restart();
    const admin = redisClient(fleet.redis.url);
    t.after(() => admin.disconnect());
    // three instances race to re-seed against "absent": exactly one history entry results
    await until(t, 'the state to be re-seeded', async () => (await admin.get(redisKeys(fleet.prefix).state('shop'))) !== null);
    // a bounded window after the re-seed for the other instances' (refused) attempts: a second entry would show here
    await sleep(1_200);
    assert.equal(await admin.llen(redisKeys(fleet.prefix).history('shop')), 1);
    const next = await c.admin('POST', '/v1/apps/shop/switch', { to: 'green' });
    assert.equal(next.status, 200);
    assert.equal(next.body.revision, sw.body.revision + 1);
    await allRouteOn(t, [a, b, c], next.body.revision, 'green@2.0.0');
    await until(t, 'instances.applied = 3', async () => (await b.admin('GET', '/v1/apps/shop')).body.instances.applied === 3);
  });

  it('an instance restarted while redis is down routes on its disk cache', async (t) => {
    const fleet = await startFleet(t, 1);
    const a = fleet.instances[0]!;
    const sw = await a.admin('POST', '/v1/apps/shop/switch', { to: 'green' });
    const cachePath = join(a.dir, 'cache.json');
    await until(t, 'the cache to hold the switch', async () => JSON.parse(await readFile(cachePath, 'utf8').catch(() => '{}')).states?.shop?.revision === sw.body.revision);
    await fleet.redis.kill();
    await a.close();

    const started = Date.now();
    const again = await fleet.add('i0', a.dir);
    assert.ok(Date.now() - started < 3_000, `started in ${Date.now() - started} ms`);
    assert.equal(revisionOf(again), sw.body.revision);
    assert.equal((await again.get('/')).servedBy, 'green@2.0.0');
    assert.equal((await again.admin('POST', '/v1/apps/shop/switch', { to: 'blue' })).status, 503);

    // once redis is back (empty), the restarted instance re-seeds it and writes work again
    await fleet.redis.restart();
    await until(t, 'a write to succeed', async () => (await again.admin('POST', '/v1/apps/shop/switch', { to: 'blue' })).status === 200);
    assert.equal((await again.get('/')).servedBy, 'blue@1.0.0');
  });

  it('an instance with no cache refuses to start while redis is down', async (t) => {
    const fleet = await startFleet(t, 0);
    await fleet.redis.kill();
    await assert.rejects(fleet.add('fresh'), { code: 'STORE_UNAVAILABLE' });
  });

  it('redis going back to an older revision is kept out of routing and lifted back to the revision the instance routes on', async (t) => {
    const fleet = await startFleet(t, 1);
    const a = fleet.instances[0]!;
    await a.admin('POST', '/v1/apps/shop/switch', { to: 'green' });
    const r = await a.admin('POST', '/v1/apps/shop/switch', { to: 'blue' });
    assert.equal(r.body.revision, 3);
    const admin = redisClient(fleet.redis.url);
    t.after(() => admin.disconnect());
    const key = redisKeys(fleet.prefix).state('shop');
    // what a failover that lost the last write leaves behind
    await admin.set(key, JSON.stringify(makeState('shop', 2, { blue: 0, green: 10_000 })));
    await until(t, 'redis lifted back to revision 3', async () => JSON.parse((await admin.get(key))!).revision === 3, { timeout: 2_000 });
    const lifted = JSON.parse((await admin.get(key))!);
    assert.equal(lifted.action, 'reseed');
    assert.deepEqual(lifted.weights, { blue: 10_000, green: 0 });
    assert.equal(revisionOf(a), 3);
    assert.equal((await a.get('/')).servedBy, 'blue@1.0.0');
    // and writes work again, on from the revision the fleet routes on
    const next = await a.admin('POST', '/v1/apps/shop/switch', { to: 'green' });
    assert.equal(next.status, 200);
    assert.equal(next.body.revision, 4);
  });

  it('drain during a redis outage: never drained while another instance may carry requests, unknown said plainly', async (t) => {
    const fleet = await startFleet(t, 2);
    const [a, b] = fleet.instances as [TestProxy, TestProxy];
    await a.admin('POST', '/v1/apps/shop/switch', { to: 'green' });
    b.sy.runtime.pool('shop', 'blue')!.inflight += 1;
    t.after(() => void (b.sy.runtime.pool('shop', 'blue')!.inflight -= 1));
    await until(t, "b's request in a's figures", async () => (await a.admin('GET', '/v1/apps/shop/pools/blue/drain')).body.inflight === 1);
    await fleet.redis.kill();
    // past the heartbeat TTL (5 s): a peer whose heartbeat cannot be read must not vanish from the sum
    const end = Date.now() + 6_000;
    let sawUnknown = false;
    while (Date.now() < end) {
      const d = await a.admin('GET', '/v1/apps/shop/pools/blue/drain');
      assert.equal(d.body.drained, false, JSON.stringify(d.body));
      if (d.body.unknown === true) {
        sawUnknown = true;
        assert.match(d.body.reason, /unknown/);
        const s = await a.admin('GET', '/v1/apps/shop');
        assert.equal(s.body.instances.total, null);
        assert.equal(s.body.instances.unknown, true);
        assert.equal(s.body.pools.blue.drained, false);
      }
      // paces the sampling of the drain answer over the window
      await sleep(250);
    }
    assert.ok(sawUnknown, 'the drain answer says the fleet figures are unknown');
  });
});
