import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { request } from 'undici';
import { redisKeys } from '../../src/state/redis-store.ts';
import { startProxy, twoPools, type TestProxy } from '../helpers/proxy.ts';
import { startRedis, type RedisServer } from '../helpers/redis-server.ts';
import { makeState } from '../helpers/store-contract.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';

let blue: Upstream;
let green: Upstream;
let prefixes = 0;

before(async () => {
  blue = await startUpstream('blue');
  green = await startUpstream('green');
});
after(async () => {
  await blue.close();
  await green.close();
});

interface Fleet {
  redis: RedisServer;
  prefix: string;
  instances: TestProxy[];
  /** starts one more instance (or restarts one on its old directory) */
  add(id: string, dir?: string): Promise<TestProxy>;
}

async function eventually(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 5_000): Promise<number> {
  const started = Date.now();
  while (!(await check())) {
    if (Date.now() - started > timeoutMs) assert.fail(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(10);
  }
  return Date.now() - started;
}

/** `n` proxy instances in-process on one fresh redis-server, each with its own cache directory. */
async function startFleet(t: TestContext, n: number, redis?: RedisServer): Promise<Fleet> {
  const server = redis ?? (await startRedis());
  const prefix = `fleet${++prefixes}`;
  const dirs: string[] = [];
  const fleet: Fleet = {
    redis: server,
    prefix,
    instances: [],
    async add(id, dir) {
      const d = dir ?? (await mkdtemp(join(tmpdir(), 'switchyard-fleet-')));
      if (dir === undefined) dirs.push(d);
      const p = await startProxy(
        { apps: [twoPools(blue.url, green.url)], store: { kind: 'redis', url: server.url, prefix, cachePath: join(d, 'cache.json'), commandTimeout: '1s' } },
        { instanceId: id, dir: d },
      );
      fleet.instances.push(p);
      return p;
    },
  };
  // one hook, in dependency order: the instances (which still write their disk caches) before
  // Redis, both before their directories — a failing step must not leave listeners behind
  t.after(async () => {
    for (const p of [...fleet.instances].reverse()) await p.close().catch(() => undefined);
    if (redis === undefined) await server.cleanup();
    for (const d of dirs) await rm(d, { recursive: true, force: true, maxRetries: 5 });
  });
  for (let i = 0; i < n; i++) await fleet.add(`i${i}`);
  return fleet;
}

const revisionOf = (p: TestProxy): number => p.sy.controller.state('shop').revision;

async function allRouteOn(ps: readonly TestProxy[], revision: number, servedBy: string): Promise<void> {
  await eventually(() => ps.every((p) => revisionOf(p) === revision), `every instance on revision ${revision}`);
  for (const p of ps) assert.equal((await p.get('/')).servedBy, servedBy);
}

describe('a fleet on redis', () => {
  it('two instances converge on a write made through either', async (t) => {
    const { instances } = await startFleet(t, 2);
    for (const [i, to] of [[0, 'green'], [1, 'blue'], [0, 'blue'], [1, 'green']] as const) {
      const r = await instances[i]!.admin('POST', '/v1/apps/shop/switch', { to });
      assert.equal(r.status, 200);
      await allRouteOn(instances, r.body.revision, to === 'green' ? 'green@2.0.0' : 'blue@1.0.0');
    }
  });

  it('three instances converge on a write through any one, and instances.applied reaches 3', async (t) => {
    const { instances } = await startFleet(t, 3);
    // each instance learns of the others from their heartbeats, read every 500 ms
    await eventually(() => instances.every((p) => p.sy.counts.instances('shop', 1).total === 3), 'every instance to see three', 2_000);
    for (let i = 0; i < 3; i++) {
      const to = i % 2 === 0 ? 'green' : 'blue';
      const r = await instances[i]!.admin('POST', '/v1/apps/shop/switch', { to });
      assert.equal(r.status, 200);
      assert.equal(r.body.instances.total, 3);
      const ms = await eventually(() => instances.every((p) => revisionOf(p) === r.body.revision), 'all three on the new revision', 1_000);
      assert.ok(ms < 1_000);
      await allRouteOn(instances, r.body.revision, to === 'green' ? 'green@2.0.0' : 'blue@1.0.0');
      for (const p of instances) {
        await eventually(async () => {
          const s = await p.admin('GET', '/v1/apps/shop');
          return s.body.instances.applied === 3 && s.body.instances.total === 3;
        }, 'instances.applied = 3');
      }
    }
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
    await eventually(async () => {
      const d = await a.admin('GET', '/v1/apps/shop/pools/blue/drain?instances=1');
      return d.body.inflight === 2 && d.body.upgraded === 1 && d.body.instances?.i1?.upgraded === 1;
    }, 'fleet-wide drain figures');
  });

  it('concurrent writers: exactly one wins per revision with If-Match, and none is lost without it', async (t) => {
    const { instances } = await startFleet(t, 2);
    const [a, b] = instances as [TestProxy, TestProxy];
    for (let round = 0; round < 10; round++) {
      const rev = revisionOf(a);
      await eventually(() => revisionOf(b) === rev, 'b to catch up');
      const ifMatch = { 'if-match': `"${rev}"` };
      const [ra, rb] = await Promise.all([
        // weights new every round: a write equal to the current state would be a no-op 200, not a race
        a.admin('PUT', '/v1/apps/shop/weights', { weights: { blue: 50 - round, green: 50 + round }, reason: `a${round}` }, ifMatch),
        b.admin('PUT', '/v1/apps/shop/weights', { weights: { blue: 20 + round, green: 80 - round }, reason: `b${round}` }, ifMatch),
      ]);
      assert.deepEqual([ra.status, rb.status].sort(), [200, 412], `round ${round}: ${ra.status} ${rb.status}`);
      const winner = ra.status === 200 ? ra : rb;
      assert.equal(winner.body.revision, rev + 1);
      await eventually(() => instances.every((p) => revisionOf(p) === rev + 1), 'both on the winner');
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
    await eventually(() => instances.every((p) => revisionOf(p) === start + 6), 'both on the last write');
  });

  it('redis killed under load: no proxied request fails, writes answer 503 within the timeout, and the fleet recovers', async (t) => {
    const fleet = await startFleet(t, 2);
    const [a, b] = fleet.instances as [TestProxy, TestProxy];
    const sw = await a.admin('POST', '/v1/apps/shop/switch', { to: 'green' });
    await allRouteOn(fleet.instances, sw.body.revision, 'green@2.0.0');

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
    await sleep(500);
    stop = true;
    await Promise.all(clients);
    assert.deepEqual(failures, []);
    assert.ok(ok > 50, `only ${ok} requests completed`);

    // back, empty: re-seeded from the fleet's state, and the next write from any instance works
    await fleet.redis.restart();
    const admin = new Redis(fleet.redis.url);
    t.after(() => admin.disconnect());
    await eventually(async () => (await admin.get(redisKeys(fleet.prefix).state('shop'))) !== null, 'the state to be re-seeded', 5_000);
    const reseeded = JSON.parse((await admin.get(redisKeys(fleet.prefix).state('shop')))!);
    assert.equal(reseeded.revision, sw.body.revision);
    assert.equal(reseeded.action, 'reseed');
    assert.deepEqual(reseeded.weights, a.sy.controller.state('shop').weights);
    // each instance reconnects on its own backoff (≤ 1 s); until b has, its writes are 503 by design
    await eventually(async () => {
      const r = await request(`${b.adminUrl}/readyz`);
      return ((await r.body.json()) as { details: { redis: { connected: boolean } } }).details.redis.connected;
    }, 'b to reconnect', 5_000);
    const next = await b.admin('POST', '/v1/apps/shop/switch', { to: 'blue' });
    assert.equal(next.status, 200);
    assert.equal(next.body.revision, sw.body.revision + 1);
    await allRouteOn(fleet.instances, next.body.revision, 'blue@1.0.0');
  });

  it('redis restarted empty while idle: the state is re-seeded and the fleet converges on the next write', async (t) => {
    const fleet = await startFleet(t, 3);
    const [a, b, c] = fleet.instances as [TestProxy, TestProxy, TestProxy];
    const sw = await a.admin('PUT', '/v1/apps/shop/weights', { weights: { blue: 70, green: 30 } });
    await eventually(() => fleet.instances.every((p) => revisionOf(p) === sw.body.revision), 'all on the split');
    await fleet.redis.restart();
    const admin = new Redis(fleet.redis.url);
    t.after(() => admin.disconnect());
    // three instances race to re-seed against "absent": exactly one history entry results
    await eventually(async () => (await admin.get(redisKeys(fleet.prefix).state('shop'))) !== null, 'the state to be re-seeded');
    await sleep(1_200);
    assert.equal(await admin.llen(redisKeys(fleet.prefix).history('shop')), 1);
    const next = await c.admin('POST', '/v1/apps/shop/switch', { to: 'green' });
    assert.equal(next.status, 200);
    assert.equal(next.body.revision, sw.body.revision + 1);
    await allRouteOn([a, b, c], next.body.revision, 'green@2.0.0');
    await eventually(async () => (await b.admin('GET', '/v1/apps/shop')).body.instances.applied === 3, 'instances.applied = 3');
  });

  it('an instance restarted while redis is down routes on its disk cache', async (t) => {
    const fleet = await startFleet(t, 1);
    const a = fleet.instances[0]!;
    const sw = await a.admin('POST', '/v1/apps/shop/switch', { to: 'green' });
    const cachePath = join(a.dir, 'cache.json');
    await eventually(async () => JSON.parse(await readFile(cachePath, 'utf8').catch(() => '{}')).states?.shop?.revision === sw.body.revision, 'the cache to hold the switch');
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
    await eventually(async () => (await again.admin('POST', '/v1/apps/shop/switch', { to: 'blue' })).status === 200, 'a write to succeed');
    assert.equal((await again.get('/')).servedBy, 'blue@1.0.0');
  });

  it('an instance with no cache refuses to start while redis is down', async (t) => {
    const fleet = await startFleet(t, 0);
    await fleet.redis.kill();
    await assert.rejects(fleet.add('fresh'), { code: 'STORE_UNAVAILABLE' });
  });

  it('redis going back to an older revision is kept out of routing and reported in /readyz', async (t) => {
    const fleet = await startFleet(t, 1);
    const a = fleet.instances[0]!;
    await a.admin('POST', '/v1/apps/shop/switch', { to: 'green' });
    const r = await a.admin('POST', '/v1/apps/shop/switch', { to: 'blue' });
    assert.equal(r.body.revision, 3);
    const admin = new Redis(fleet.redis.url);
    t.after(() => admin.disconnect());
    // what a failover that lost the last write leaves behind
    await admin.set(redisKeys(fleet.prefix).state('shop'), JSON.stringify(makeState('shop', 2, { blue: 0, green: 10_000 })));
    const readyz = async (): Promise<{ status: number; body: { details: { regressions: Record<string, { local: number; remote: number }> } } }> => {
      const res = await request(`${a.adminUrl}/readyz`);
      return { status: res.statusCode, body: (await res.body.json()) as never };
    };
    await eventually(async () => (await readyz()).body.details.regressions.shop !== undefined, 'the regression in /readyz', 2_000);
    const { status, body } = await readyz();
    assert.equal(status, 200);
    assert.deepEqual({ ...body.details.regressions.shop, since: undefined }, { local: 3, remote: 2, since: undefined });
    assert.equal(revisionOf(a), 3);
    assert.equal((await a.get('/')).servedBy, 'blue@1.0.0');
  });
});
