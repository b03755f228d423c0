import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { startDelayProxy, type DelayProxy } from '../helpers/delay-proxy.ts';
import { revisionOf } from '../helpers/fleet.ts';
import { startProxy, twoPools, type TestProxy } from '../helpers/proxy.ts';
import { startRedis, type RedisServer } from '../helpers/redis-server.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';
import { until } from '../helpers/wait.ts';

// Figures never trust an absence (issue 24): an instance cut off from Redis keeps routing on what
// it knew, so while it is silent the pools it could still route to are never called drained; the
// same holds in the moment after Redis restarts empty, when every heartbeat is gone at once.

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

/** A redis-server of the test's own; a and b reach it directly, c through a relay that can blackhole its link */
async function setup(t: TestContext, app = twoPools(blue.url, green.url)): Promise<{ a: TestProxy; b: TestProxy; c: TestProxy; link: DelayProxy; redis: RedisServer }> {
  const prefix = `partition${process.pid}`;
  const redis = await startRedis();
  const link = await startDelayProxy(redis.port);
  const dirs = await Promise.all([0, 1, 2].map(() => mkdtemp(join(tmpdir(), 'switchyard-partition-'))));
  const store = (url: string, dir: string) => ({ kind: 'redis', url, prefix, cachePath: join(dir, 'cache.json'), commandTimeout: '1s' });
  const start = (id: string, url: string, dir: string) => startProxy({ apps: [app], store: store(url, dir) }, { instanceId: id, dir });
  const a = await start('a', redis.url, dirs[0]!);
  const b = await start('b', redis.url, dirs[1]!);
  const c = await start('c', link.url, dirs[2]!);
  t.after(async () => {
    await c.close();
    await b.close();
    await a.close();
    await link.close();
    await redis.cleanup();
    for (const d of dirs) await rm(d, { recursive: true, force: true, maxRetries: 5 });
  });
  await until(t, 'a to count three instances', async () => (await a.admin('GET', '/v1/apps/shop')).body.instances.total === 3, { timeout: 10_000 });
  return { a, b, c, link, redis };
}

// each test has its own redis-server and fleet, and waits out a partition or a restart: run side by side
describe('drain figures never trust an absence', { concurrency: true }, () => {
  it("an instance whose redis link is blackholed: blue is never drained while it may still route there, and it is shown unaccounted", async (t) => {
    const { a, c, link } = await setup(t);
    const before = revisionOf(c);
    link.hold('requests', 12_000, { newConnections: true });
    link.hold('replies', 12_000, { newConnections: true });
    const cutAt = Date.now();
    const sw = await a.admin('POST', '/v1/apps/shop/switch', { to: 'green', reason: 'partition' });
    assert.equal(sw.status, 200);
    // right after the switch the others have not applied it yet: not drained, and said why
    const first = await a.admin('GET', '/v1/apps/shop/pools/blue/drain');
    assert.equal(first.body.drained, false, JSON.stringify(first.body));
    const samples: { at: number; drained: boolean; reason: string | null }[] = [];
    let unaccounted: unknown = null;
    while (Date.now() - cutAt < 11_000) {
      const d = await a.admin('GET', '/v1/apps/shop/pools/blue/drain');
      samples.push({ at: Date.now() - cutAt, drained: d.body.drained, reason: d.body.reason });
      if (unaccounted === null) {
        const s = await a.admin('GET', '/v1/apps/shop');
        if (s.body.instances.unaccounted !== undefined) unaccounted = s.body.instances;
      }
      // paces the sampling over the partition's window
      await sleep(100);
    }
    assert.equal(revisionOf(c), before, 'c still routes on the revision before the switch (it never heard of it)');
    assert.deepEqual(samples.filter((s) => s.drained), [], 'blue called drained while c could still route there');
    const late = samples.filter((s) => s.at > 7_000);
    assert.ok(late.length > 0 && late.every((s) => s.reason?.includes('unknown: instance c unreachable since') === true), `the reason names c as unreachable once it is silent: ${JSON.stringify(late.at(-1))}`);
    assert.ok(unaccounted !== null, 'instances listed c as unaccounted');
    assert.equal((unaccounted as { total: number }).total, 3);
    assert.deepEqual((unaccounted as { unaccounted: { id: string }[] }).unaccounted.map((u) => u.id), ['c']);
    // the link heals: c applies the switch, and only then is blue drained
    await until(t, 'c to apply the switch once its link is back', () => revisionOf(c) === sw.body.revision, { timeout: 15_000 });
    await until(t, 'blue drained once every instance applied the switch', async () => (await a.admin('GET', '/v1/apps/shop/pools/blue/drain')).body.drained === true, { timeout: 10_000 });
    const s = await a.admin('GET', '/v1/apps/shop');
    assert.equal(s.body.instances.unaccounted, undefined);
  });

  it('DELETE of a pool an instance may still route to answers 409 unless forced: while it has not applied the switch away, and while it is silent', async (t) => {
    const app = twoPools(blue.url, green.url);
    const { a, c, link } = await setup(t, { ...app, pools: { ...(app.pools as object), gray: { version: '3.0.0', targets: [green.url] } } });
    const w = await a.admin('PUT', '/v1/apps/shop/weights', { weights: { blue: 50, green: 0, gray: 50 } });
    assert.equal(w.status, 200, JSON.stringify(w.body));
    await until(t, 'c to route half to gray', () => revisionOf(c) === w.body.revision, { timeout: 5_000 });
    link.hold('requests', 15_000, { newConnections: true });
    link.hold('replies', 15_000, { newConnections: true });
    const sw = await a.admin('POST', '/v1/apps/shop/switch', { to: 'blue', reason: 'gray away' });
    assert.equal(sw.status, 200);
    // c never heard of the switch: it may still send half its traffic to gray
    const early = await a.admin('DELETE', '/v1/apps/shop/pools/gray', {});
    assert.equal(early.status, 409, JSON.stringify(early.body));
    assert.equal(early.body.error.code, 'POOL_IN_USE');
    assert.match(early.body.error.message, /instance c has not applied revision \d+|unknown: instance c unreachable/);
    await until(t, 'c to be unaccounted', async () => (await a.admin('GET', '/v1/apps/shop')).body.instances.unaccounted?.[0]?.id === 'c', { timeout: 10_000 });
    const silent = await a.admin('DELETE', '/v1/apps/shop/pools/gray', { reason: 'tidy up' });
    assert.equal(silent.status, 409, JSON.stringify(silent.body));
    assert.equal(silent.body.error.code, 'POOL_IN_USE');
    assert.match(silent.body.error.message, /unknown: instance c unreachable since \S+ \(it routed on revision \d+, before revision \d+ emptied the pool\)/);
    assert.equal(revisionOf(a), sw.body.revision, 'nothing written');
    // the operator decides: forced, it goes
    const forced = await a.admin('DELETE', '/v1/apps/shop/pools/gray', { force: true, reason: 'c is gone for good' });
    assert.equal(forced.status, 200, JSON.stringify(forced.body));
    assert.deepEqual(Object.keys(forced.body.pools ?? forced.body.weights).sort(), ['blue', 'green']);
  });

  it('redis restarted empty while another instance carries requests on a drained-by-weight pool: never drained in the moment its heartbeat is gone', async (t) => {
    const { a, b, c, redis } = await setup(t);
    const sw = await a.admin('POST', '/v1/apps/shop/switch', { to: 'green' });
    assert.equal(sw.status, 200);
    await until(t, 'every instance on the switch', () => [a, b, c].every((p) => revisionOf(p) === sw.body.revision));
    await until(t, 'blue drained', async () => (await a.admin('GET', '/v1/apps/shop/pools/blue/drain')).body.drained === true);
    const pool = b.sy.runtime.pool('shop', 'blue')!;
    pool.inflight += 6;
    t.after(() => {
      pool.inflight = Math.max(0, pool.inflight - 6);
    });
    await until(t, "a to see b's six requests", async () => (await a.admin('GET', '/v1/apps/shop/pools/blue/drain')).body.inflight === 6);
    await redis.restart();
    const samples: { at: number; drained: boolean; inflight: number }[] = [];
    const started = Date.now();
    while (Date.now() - started < 4_000) {
      const d = await a.admin('GET', '/v1/apps/shop/pools/blue/drain');
      samples.push({ at: Date.now() - started, drained: d.body.drained, inflight: d.body.inflight });
      // paces the sampling over the window
      await sleep(20);
    }
    assert.deepEqual(samples.filter((s) => s.drained), [], 'blue called drained while b carried six requests there');
    pool.inflight -= 6;
    await until(t, 'blue drained once b has finished', async () => (await a.admin('GET', '/v1/apps/shop/pools/blue/drain')).body.drained === true, { timeout: 10_000 });
  });
});
