import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import { startProxy, twoPools, type TestProxy } from '../helpers/proxy.ts';
import { startRedis, type RedisServer } from '../helpers/redis-server.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';
import { until } from '../helpers/wait.ts';

async function metric(p: TestProxy, line: RegExp): Promise<number | null> {
  const r = await request(`${p.adminUrl}/metrics`);
  const m = line.exec(await r.body.text());
  return m === null ? null : Number(m[1]);
}

describe('live stats over a Redis fleet', () => {
  let redis: RedisServer;
  let blue: Upstream;
  let green: Upstream;
  let dir: string;
  const instances: TestProxy[] = [];

  before(async () => {
    redis = await startRedis();
    blue = await startUpstream('blue');
    green = await startUpstream('green');
    dir = await mkdtemp(join(tmpdir(), 'switchyard-fleet-stats-'));
    for (const id of ['a', 'b']) {
      instances.push(
        await startProxy(
          { apps: [twoPools(blue.url, green.url)], store: { kind: 'redis', url: redis.url, prefix: 'stats', cachePath: join(dir, `${id}.json`), commandTimeout: '1s' } },
          { instanceId: id, dir },
        ),
      );
    }
  });
  after(async () => {
    for (const p of instances) await p.close();
    await redis.cleanup();
    await blue.close();
    await green.close();
    await rm(dir, { recursive: true, force: true, maxRetries: 5 });
  });

  it('sums every instance’s windows, carried in the heartbeats', async (t) => {
    const [a, b] = instances as [TestProxy, TestProxy];
    for (let i = 0; i < 8; i++) assert.equal((await a.get('/')).status, 200);
    for (let i = 0; i < 3; i++) assert.equal((await b.get('/')).status, 200);
    // once the second is complete and a heartbeat has carried it, both instances see all 11
    for (const p of [a, b]) {
      await until(t, 'the fleet-wide count on each instance', async () => {
        const r = await p.admin('GET', '/v1/apps/shop/stats');
        return r.body.windows['10s'].blue.requests === 11;
      }, { timeout: 6_000 });
      const r = await p.admin('GET', '/v1/apps/shop/stats');
      assert.equal(r.body.fleet, true);
      assert.equal(r.body.instances, 2);
      assert.equal(r.body.windows['60s'].blue.requests, 11);
    }
    // the local view, for comparison: each instance's own rings hold only its own requests
    assert.equal(a.sy.telemetry.stats.exportWindows().apps['shop']?.['blue']?.['60']?.[0], 8);
  });

  it('reports the Redis connection in switchyard_store_connected', async (t) => {
    const [a] = instances as [TestProxy];
    assert.equal(await metric(a, /^switchyard_store_connected (\S+)$/m), 1);
    await redis.stop();
    await until(t, 'store_connected 0 with Redis down', async () => (await metric(a, /^switchyard_store_connected (\S+)$/m)) === 0, { timeout: 6_000 });
    await redis.restart();
    await until(t, 'store_connected 1 again', async () => (await metric(a, /^switchyard_store_connected (\S+)$/m)) === 1, { timeout: 6_000 });
  });
});
