import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { request } from 'undici';
import { stallAfterWrites, startFleet, type TestFleet } from '../helpers/fleet.ts';
import { startProxy, TOKEN, twoPools } from '../helpers/proxy.ts';
import { spawnServe } from '../helpers/serve-process.ts';
import { startRedis, type RedisServer } from '../helpers/redis-server.ts';
import { startUpstream, useUpstreams, type Upstream } from '../helpers/upstream.ts';
import { until } from '../helpers/wait.ts';

describe('live definitions across a fleet on redis', () => {
  let blue: Upstream;
  let green: Upstream;
  let next: Upstream;
  let redis: RedisServer;
  before(async () => {
    [blue, green, next] = await Promise.all([startUpstream('blue'), startUpstream('green'), startUpstream('next')]);
    redis = await startRedis();
  });
  after(async () => {
    await redis?.cleanup();
    await Promise.all([blue, green, next].map((u) => u?.close()));
  });

  it('a PUT …/pools/green with new targets and version is served as green@NEW by every instance of a 3-instance fleet', async (t) => {
    const fleet = await startFleet(t, 3, { blue: blue.url, green: green.url, redis });
    const [a, b, c] = fleet.instances as [typeof fleet.instances[0], typeof fleet.instances[0], typeof fleet.instances[0]];
    await a.admin('POST', '/v1/apps/shop/switch', { to: 'green' });
    const r = await b.admin('PUT', '/v1/apps/shop/pools/green', { version: '2.5.0', targets: [next.url] });
    assert.equal(r.status, 200);
    await until(t, 'every instance on the new revision', () => fleet.instances.every((p) => p.sy.controller.state('shop').revision === r.body.revision));
    for (const p of [a, b, c]) {
      const res = await p.get('/');
      assert.equal(res.servedBy, 'green@2.5.0');
      assert.equal(JSON.parse(res.body).pool, 'next');
    }
    await until(t, 'applied 3/3', async () => (await c.admin('GET', '/v1/apps/shop')).body.instances.applied === 3);
  });

  it('definition writes racing from two instances without If-Match are all kept (each retries on the newer revision)', async (t) => {
    const fleet = await startFleet(t, 2, { blue: blue.url, green: green.url, redis });
    const [a, b] = fleet.instances as [typeof fleet.instances[0], typeof fleet.instances[0]];
    const urls = Array.from({ length: 8 }, (_, i) => `http://127.0.0.1:${20000 + i}`);
    const results = await Promise.all(urls.map((url, i) => (i % 2 === 0 ? a : b).admin('POST', '/v1/apps/shop/pools/green/targets', { url })));
    assert.deepEqual(results.map((r) => r.status), urls.map(() => 200));
    // the last write may have been made through either instance: wait until both route on it
    const all = [green.url, ...urls].sort();
    const targetsOn = async (p: typeof a): Promise<string[]> => [...(await p.admin('GET', '/v1/apps/shop')).body.pools.green.targets].sort();
    await until(t, 'every target on a and b', async () => (await targetsOn(a)).length === 9 && (await targetsOn(b)).length === 9);
    assert.deepEqual(await targetsOn(a), all);
    assert.deepEqual(await targetsOn(b), all);
  });

  // Under load a compare-and-set's reply can be read after its command timeout, and two racing
  // writes then often carry the same millisecond (here: a clock held still during the race), so
  // the loser's history entry reads exactly as the winner's. Each write is known by its own write
  // id, so a loser is told it lost and retries on the newer revision: a 200 is a write that is kept.
  describe('racing writes from two instances while the process stalls past the command timeout', () => {
    const urls = Array.from({ length: 8 }, (_, i) => `http://127.0.0.1:${20000 + i}`);
    async function race(t: Parameters<typeof startFleet>[0], write: (p: TestFleet['instances'][0], i: number) => ReturnType<TestFleet['instances'][0]['admin']>, before?: (a: TestFleet['instances'][0]) => Promise<void>) {
      let still: number | null = null;
      const fleet = await startFleet(t, 2, { blue: blue.url, green: green.url, redis, deps: () => ({ now: () => still ?? Date.now() }) });
      const [a, b] = fleet.instances as [TestFleet['instances'][0], TestFleet['instances'][0]];
      await before?.(a);
      await until(t, 'both instances on one revision', () => b.sy.controller.state('shop').revision === a.sy.controller.state('shop').revision);
      stallAfterWrites([a, b], 1_300, 2);
      still = Date.now();
      const results = await Promise.all(urls.map((_, i) => write(i % 2 === 0 ? a : b, i)));
      still = null;
      const ok = results.flatMap((r, i) => (r.status === 200 ? [i] : []));
      const final = Math.max(...ok.map((i) => results[i]!.body.revision as number));
      await until(t, 'both instances on the last revision', () => [a, b].every((p) => p.sy.controller.state('shop').revision >= final));
      await until(t, 'both instances on one revision', () => a.sy.controller.state('shop').revision === b.sy.controller.state('shop').revision);
      /** after the check that what was answered 200 is kept: every write is answered 200 (a lost compare-and-set retries) */
      const allOk = () => assert.deepEqual(results.map((r) => r.status), urls.map(() => 200), JSON.stringify(results.filter((r) => r.status !== 200).map((r) => r.body)));
      return { a, b, results, ok, allOk };
    }
    const targetsOf = (p: TestFleet['instances'][0]) => [...p.sy.controller.appConfig('shop').pools.green!.targets].sort();

    it('targets added: every one answered 200 is a target on both instances', async (t) => {
      const { a, b, ok, allOk } = await race(t, (p, i) => p.admin('POST', '/v1/apps/shop/pools/green/targets', { url: urls[i] }));
      for (const p of [a, b]) assert.deepEqual(ok.filter((i) => !targetsOf(p).includes(urls[i]!)).map((i) => urls[i]), [], 'answered 200, not a target');
      allOk();
      for (const p of [a, b]) assert.deepEqual(targetsOf(p), [green.url, ...urls].sort());
    });

    it('targets removed: every one answered 200 is gone on both instances', async (t) => {
      const { a, b, ok, allOk } = await race(t, (p, i) => p.admin('DELETE', `/v1/apps/shop/pools/green/targets?url=${encodeURIComponent(urls[i]!)}`), async (a) => {
        assert.equal((await a.admin('PUT', '/v1/apps/shop/pools/green', { version: '2.0.0', targets: [green.url, ...urls] })).status, 200);
      });
      for (const p of [a, b]) assert.deepEqual(ok.filter((i) => targetsOf(p).includes(urls[i]!)).map((i) => urls[i]), [], 'answered 200, still a target');
      allOk();
      for (const p of [a, b]) assert.deepEqual(targetsOf(p), [green.url]);
    });

    it('pools put: every one answered 200 is a pool on both instances', async (t) => {
      const { a, b, ok, allOk } = await race(t, (p, i) => p.admin('PUT', `/v1/apps/shop/pools/p${i}`, { version: `${i}.0.0`, targets: [urls[i]] }));
      const poolsOf = (p: TestFleet['instances'][0]) => Object.keys(p.sy.controller.appConfig('shop').pools);
      for (const p of [a, b]) assert.deepEqual(ok.filter((i) => !poolsOf(p).includes(`p${i}`)).map((i) => `p${i}`), [], 'answered 200, not a pool');
      allOk();
      for (const p of [a, b]) assert.deepEqual(poolsOf(p).sort(), ['blue', 'green', ...urls.map((_, i) => `p${i}`)].sort());
    });

    it('weights set: every one answered 200 is its own revision in the history', async (t) => {
      const { a, results, ok, allOk } = await race(t, (p, i) => p.admin('PUT', '/v1/apps/shop/weights', { weights: { blue: 10 + i, green: 90 - i } }));
      const entries = (await a.admin('GET', '/v1/apps/shop/history?limit=50')).body.entries as { revision: number; weights: Record<string, number> }[];
      for (const i of ok) assert.deepEqual(entries.find((e) => e.revision === results[i]!.body.revision)?.weights, { blue: 10 + i, green: 90 - i }, `write ${i} answered 200 with revision ${results[i]!.body.revision}`);
      allOk();
      assert.equal(new Set(results.map((r) => r.body.revision)).size, urls.length);
    });
  });

  it('an app created on one instance is served by the others and by an instance started later', async (t) => {
    const fleet = await startFleet(t, 2, { blue: blue.url, green: green.url, redis });
    const [a, b] = fleet.instances as [typeof fleet.instances[0], typeof fleet.instances[0]];
    const created = await a.admin('PUT', '/v1/apps/blog', { definition: { hosts: ['blog.test'], pools: { blue: { version: '1', targets: [blue.url] }, green: { version: '2', targets: [green.url] } } } });
    assert.equal(created.status, 201);
    await until(t, 'blog on b', async () => (await b.get('/', { host: 'blog.test' })).servedBy === 'blue@1');
    const c = await fleet.add('late');
    assert.equal((await c.get('/', { host: 'blog.test' })).servedBy, 'blue@1');
    // an instance whose config file names no app at all serves what the store holds
    const bare = await startProxy({ apps: [], store: { kind: 'redis', url: redis.url, prefix: fleet.prefix, cachePath: join(c.dir, 'bare-cache.json') } }, { instanceId: 'bare' });
    t.after(() => bare.close());
    assert.deepEqual((await bare.admin('GET', '/v1/apps')).body.apps.map((x: { app: string }) => x.app).sort(), ['blog', 'shop']);
    assert.equal((await bare.get('/', { host: 'blog.test' })).servedBy, 'blue@1');
    await b.admin('DELETE', '/v1/apps/blog');
    // shop is the default app ("*"): a deleted blog falls back to it
    await until(t, 'blog gone on a', async () => (await a.get('/', { host: 'blog.test' })).servedBy !== 'blue@1');
    assert.equal((await c.admin('GET', '/v1/apps/blog')).status, 404);
  });
});

describe('the config file and the store', () => {
  const up = useUpstreams('blue', 'green');

  it('a restart with a file that differs serves the store and reports the drift once; --apply-config makes the file win', async (t) => {
    const first = await startProxy({ apps: [twoPools(up.blue.url, up.green.url)] });
    const dir = first.dir;
    t.after(() => rm(dir, { recursive: true, force: true, maxRetries: 5 }));
    await first.admin('PUT', '/v1/apps/shop/pools/green', { version: '2.9.0', targets: [up.blue.url] });
    await first.admin('POST', '/v1/apps/shop/switch', { to: 'green' });
    await first.sy.close();

    const lines: { level: number; msg: string; app?: string; drift?: string[] }[] = [];
    const logger = pino({ level: 'info' }, { write: (l: string) => lines.push(JSON.parse(l)) });
    const p = await startProxy({ apps: [twoPools(up.blue.url, up.green.url)] }, { dir, logger });
    try {
      assert.equal((await p.get('/')).servedBy, 'green@2.9.0', 'the store wins');
      const ready = await p.admin('GET', '/readyz');
      // /readyz answers without a token: key paths only, the values are in the log
      assert.deepEqual(ready.body.details.drift, { shop: ['pools.green.version', 'pools.green.targets'] });
      const warned = lines.filter((l) => l.app === 'shop' && l.drift !== undefined);
      assert.equal(warned.length, 1, 'logged once');
      assert.match(warned[0]!.msg, /switchyard apply -f/);
      assert.deepEqual(warned[0]!.drift, [`pools.green.version: "2.9.0" → "2.0.0"`, `pools.green.targets: ["${up.blue.url}"] → ["${up.green.url}"]`]);
      // a weights write does not log the drift again
      await p.admin('POST', '/v1/apps/shop/switch', { to: 'blue' });
      assert.equal(lines.filter((l) => l.app === 'shop' && l.drift !== undefined).length, 1);
    } finally {
      await p.sy.close();
    }

    const q = await startProxy({ apps: [twoPools(up.blue.url, up.green.url)] }, { dir, applyConfig: true });
    t.after(async () => {
      await q.sy.close();
    });
    const shop = await q.admin('GET', '/v1/apps/shop');
    assert.equal(shop.body.pools.green.version, '2.0.0');
    assert.deepEqual(shop.body.pools.green.targets, [up.green.url]);
    assert.equal(shop.body.active, 'blue', 'weights are kept');
    assert.deepEqual((await q.admin('GET', '/readyz')).body.details.drift, {});
    const h = await q.admin('GET', '/v1/apps/shop/history?limit=1');
    assert.equal(h.body.entries[0].action, 'define');
  });

  it('switchyard serve --apply-config (a real process) makes the file win at start', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'switchyard-apply-'));
    t.after(() => rm(dir, { recursive: true, force: true, maxRetries: 5 }));
    const doc = { apps: [twoPools(up.blue.url, up.green.url)], store: { kind: 'file', path: join(dir, 'state.json') } };
    const first = await spawnServe(doc);
    t.after(() => first.cleanup());
    const put = await request(`${first.adminUrl}/v1/apps/shop/pools/green`, { method: 'PUT', headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }, body: JSON.stringify({ version: '7.7.7', targets: [up.blue.url] }) });
    assert.equal(put.statusCode, 200);
    await put.body.dump();
    first.child.kill('SIGTERM');
    await first.exited;
    const second = await spawnServe(doc, 10_000, (cfg) => ({ command: process.execPath, args: ['src/main.ts', 'serve', '--config', cfg, '--apply-config'], cwd: process.cwd() }));
    t.after(() => second.cleanup());
    const r = await request(`${second.adminUrl}/v1/apps/shop`, { headers: { authorization: `Bearer ${TOKEN}` } });
    const shop = (await r.body.json()) as { pools: { green: { version: string; targets: string[] } } };
    assert.deepEqual(shop.pools.green, { ...shop.pools.green, version: '2.0.0', targets: [up.green.url] });
  });
});
