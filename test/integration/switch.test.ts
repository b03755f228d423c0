import assert from 'node:assert/strict';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
import { pastInstant } from '../helpers/clock.ts';
import { startProxy, twoPools } from '../helpers/proxy.ts';
import { spawnServe } from '../helpers/serve-process.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';
import { until } from '../helpers/wait.ts';

describe('switching', () => {
  let blue: Upstream;
  let green: Upstream;
  let releaseSlow: () => void = () => undefined;
  before(async () => {
    const handler = (name: string) => (req: IncomingMessage, res: ServerResponse) => {
      const reply = () => res.end(JSON.stringify({ pool: name }));
      if (req.url === '/slow') releaseSlow = reply;
      else reply();
    };
    blue = await startUpstream('blue', handler('blue'));
    green = await startUpstream('green', handler('green'));
  });
  after(async () => {
    await blue.close();
    await green.close();
  });

  it('a slow request started on blue before a switch completes on blue while new requests go to green', async (t) => {
    const p = await startProxy({ apps: [twoPools(blue.url, green.url)] });
    t.after(() => p.close());
    const slow = request(`${p.proxyUrl}/slow`);
    await until(t, 'the slow request to reach blue', () => blue.seen.some((s) => s.url === '/slow'), { interval: 5 });
    const sw = await p.admin('POST', '/v1/apps/shop/switch', { to: 'green', reason: 'release 2.0.0' });
    assert.equal(sw.status, 200);
    assert.equal(sw.body.active, 'green');
    const fresh = await p.get('/');
    assert.equal(fresh.servedBy, 'green@2.0.0');
    assert.equal(p.sy.runtime.pool('shop', 'blue')?.inflight, 1);
    releaseSlow();
    const r = await slow;
    assert.equal(r.statusCode, 200);
    assert.equal(r.headers['x-served-by'], 'blue@1.0.0');
    assert.deepEqual(await r.body.json(), { pool: 'blue' });
  });

  it('100 switches while 8 clients send requests: no request fails', async (t) => {
    const p = await startProxy({ apps: [twoPools(blue.url, green.url)] });
    t.after(() => p.close());
    let stop = false;
    let ok = 0;
    const failures: string[] = [];
    const served = new Set<string>();
    const client = async () => {
      while (!stop) {
        try {
          const r = await request(`${p.proxyUrl}/`);
          await r.body.text();
          if (r.statusCode === 200) {
            ok++;
            served.add(String(r.headers['x-served-by']));
          } else failures.push(String(r.statusCode));
        } catch (err) {
          failures.push(String(err));
        }
      }
    };
    const clients = Array.from({ length: 8 }, client);
    for (let i = 0; i < 100; i++) {
      const r = await p.admin('POST', '/v1/apps/shop/switch', { to: i % 2 ? 'blue' : 'green' });
      assert.equal(r.status, 200);
      // paces the switches so the clients' requests fall between them
      await sleep(2);
    }
    stop = true;
    await Promise.all(clients);
    assert.deepEqual(failures, []);
    assert.ok(ok > 100, `only ${ok} requests completed`);
    assert.deepEqual([...served].sort(), ['blue@1.0.0', 'green@2.0.0']);
    assert.equal((await p.admin('GET', '/v1/apps/shop')).body.revision, 101);
  });

  it('a restart keeps the routing state and the history', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'switchyard-restart-'));
    t.after(() => rm(dir, { recursive: true, force: true, maxRetries: 5 }));
    const p = await startProxy({ apps: [twoPools(blue.url, green.url)] }, { dir });
    await p.admin('PUT', '/v1/apps/shop/weights', { weights: { blue: 90, green: 10 }, reason: 'canary' });
    await p.admin('POST', '/v1/apps/shop/switch', { to: 'green' });
    await p.close();
    const q = await startProxy({ apps: [twoPools(blue.url, green.url)] }, { dir });
    t.after(() => q.close());
    const s = await q.admin('GET', '/v1/apps/shop');
    assert.equal(s.body.revision, 3);
    assert.equal(s.body.active, 'green');
    assert.equal((await q.get('/')).servedBy, 'green@2.0.0');
    const h = await q.admin('GET', '/v1/apps/shop/history');
    assert.deepEqual(h.body.entries.map((e: { revision: number }) => e.revision), [3, 2, 1]);
  });

  it('a restart with a config file that drops a pool the store routes to serves the store\'s definition and reports the drift', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'switchyard-pools-'));
    t.after(() => rm(dir, { recursive: true, force: true, maxRetries: 5 }));
    const apps = [{ ...twoPools(blue.url, green.url), pools: { blue: { version: '1', targets: [blue.url] }, green: { version: '2', targets: [green.url] }, purple: { version: '3', targets: [green.url] } } }];
    const p = await startProxy({ apps }, { dir });
    await p.admin('POST', '/v1/apps/shop/switch', { to: 'purple' });
    await p.close();
    // the store wins: purple keeps serving; the file's difference is drift, named by key path
    const q = await startProxy({ apps: [twoPools(blue.url, green.url)] }, { dir });
    t.after(() => q.close());
    assert.equal((await q.get('/')).servedBy, 'purple@3');
    const ready = await q.admin('GET', '/readyz');
    assert.equal(ready.status, 200);
    assert.ok(ready.body.details.drift.shop.includes('pools.purple'), JSON.stringify(ready.body.details.drift));
  });
});

describe('SIGTERM', () => {
  it('readyz turns 503, in-flight requests finish, and the process exits 0', async (t) => {
    const releases: (() => void)[] = [];
    const up = await startUpstream('blue', (_req, res) => releases.push(() => res.end('done')));
    t.after(() => up.close());
    const proc = await spawnServe({ apps: [twoPools(up.url, up.url)], shutdown: { delay: '300ms', grace: '5s', hardStop: '10s' } });
    t.after(() => proc.cleanup());
    const inflight = Array.from({ length: 5 }, () => request(`${proc.proxyUrl}/work`).then(async (r) => ({ status: r.statusCode, body: await r.body.text(), connection: r.headers['connection'] })));
    await until(t, 'the requests to reach the upstream', () => releases.length === 5);
    const termAt = Date.now();
    proc.child.kill('SIGTERM');
    await until(t, 'readyz to turn 503', async () => {
    const ready = await request(`${proc.adminUrl}/readyz`);
    await ready.body.dump();
      return ready.statusCode === 503 || (assert.equal(ready.statusCode, 200), false);
    });
    // the requests stay in flight past shutdown.delay (300 ms), into the grace period
    await pastInstant(termAt + 300, 100);
    for (const r of releases) r();
    const results = await Promise.all(inflight);
    assert.deepEqual(results.map((r) => r.status), [200, 200, 200, 200, 200]);
    assert.ok(results.every((r) => r.body === 'done'));
    assert.ok(results.every((r) => r.connection === 'close'));
    const [code] = (await proc.exited) as [number];
    assert.equal(code, 0, proc.output());
  });
});
