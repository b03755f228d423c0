import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
import { TOKEN, twoPools } from '../helpers/proxy.ts';
import { startRedis, type RedisServer } from '../helpers/redis-server.ts';
import { spawnServe, type ServeProcess } from '../helpers/serve-process.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';
import { until } from '../helpers/wait.ts';

/**
 * Chaos: a fleet of real `switchyard serve` processes on a real redis-server, and the instance
 * driving a rollout SIGKILLed in the middle of it.
 */

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- tests assert on whatever JSON the API answers
async function admin(p: ServeProcess, method: string, path: string, body?: unknown): Promise<{ status: number; body: any }> {
  const r = await request(p.adminUrl + path, {
    method: method as 'GET',
    headers: { authorization: `Bearer ${TOKEN}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await r.body.text();
  return { status: r.statusCode, body: text === '' ? null : JSON.parse(text) };
}

describe('chaos: an instance SIGKILLed mid-rollout', () => {
  let redis: RedisServer;
  let blue: Upstream;
  let green: Upstream;
  let greenFails = false;
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'switchyard-chaos-'));
    redis = await startRedis();
    blue = await startUpstream('blue');
    green = await startUpstream('green', (_req, res) => {
      res.writeHead(greenFails ? 500 : 200);
      res.end(greenFails ? 'broken' : 'green');
    });
  });
  after(async () => {
    await Promise.all([blue.close(), green.close()]);
    await redis.cleanup();
    await rm(dir, { recursive: true, force: true, maxRetries: 5 });
  });

  /** Three instances of one fleet; resolves with them and the one holding the rollout lease. */
  async function fleet(t: TestContext, prefix: string): Promise<{ all: ServeProcess[]; driver: ServeProcess; others: ServeProcess[] }> {
    const all: ServeProcess[] = [];
    for (let i = 0; i < 3; i++) {
      const p = await spawnServe({ store: { kind: 'redis', url: redis.url, prefix, cachePath: join(dir, `${prefix}-${i}.json`) }, apps: [twoPools(blue.url, green.url)] }, 30_000);
      t.after(() => p.cleanup());
      all.push(p);
    }
    await until(t, 'three instances', async () => ((await admin(all[0] as ServeProcess, 'GET', '/v1/apps/shop')).body.instances.total === 3 ? true : undefined), { timeout: 10_000, interval: 100 });
    return { all, driver: all[0] as ServeProcess, others: all.slice(1) };
  }

  /** The instance whose pid the rollout's `driver` (`host:pid/…`) names. */
  function holder(all: readonly ServeProcess[], driver: string): ServeProcess {
    const pid = Number(/:(\d+)\//.exec(driver)?.[1]);
    const p = all.find((x) => x.child.pid === pid);
    assert.ok(p !== undefined, `driver ${driver} is none of the instances`);
    return p;
  }

  it('the rollout goes on to 100 % on another instance after its driver is killed', async (t) => {
    greenFails = false;
    const { all } = await fleet(t, 'chaos-go-on');
    const start = await admin(all[1] as ServeProcess, 'POST', '/v1/apps/shop/rollouts', { to: 'green', steps: [{ weight: 10, pause: '2s' }, { weight: 50, pause: '2s' }], analysis: null });
    assert.equal(start.status, 201, JSON.stringify(start.body));
    const current = await until(t, 'a driver', async () => (await admin(all[1] as ServeProcess, 'GET', '/v1/apps/shop/rollouts/current')).body.driver ?? undefined, { timeout: 15_000, interval: 100 });
    const driver = holder(all, current as string);
    driver.child.kill('SIGKILL');
    const killedAt = Date.now();
    const survivor = all.find((p) => p !== driver) as ServeProcess;
    const done = await until(t, 'the rollout to succeed', async () => {
      const r = (await admin(survivor, 'GET', '/v1/apps/shop/rollouts/current')).body;
      return r.state === 'succeeded' ? r : undefined;
    }, { timeout: 40_000, interval: 100 });
    const tookMs = Date.now() - killedAt;
    t.diagnostic(`succeeded ${tookMs} ms after the driver was killed (lease TTL 10 s, 4 s of pauses)`);
    assert.equal(done.step, 3);
    assert.equal((await admin(survivor, 'GET', '/v1/apps/shop')).body.weights.green, 100);
    for (let i = 0; i < 10; i++) {
      const r = await request(survivor.proxyUrl + '/');
      await r.body.dump();
      assert.equal(r.statusCode, 200);
    }
  });

  it('a failing canary is rolled back by a surviving instance within seconds, not the lease TTL', async (t) => {
    greenFails = false;
    const { all } = await fleet(t, 'chaos-fail');
    const start = await admin(all[1] as ServeProcess, 'POST', '/v1/apps/shop/rollouts', { to: 'green', steps: [{ weight: 50, pause: '5m' }], analysis: { minRequests: 20, maxErrorRate: 0.05 } });
    assert.equal(start.status, 201, JSON.stringify(start.body));
    const current = await until(t, 'a driver', async () => (await admin(all[1] as ServeProcess, 'GET', '/v1/apps/shop/rollouts/current')).body.driver ?? undefined, { timeout: 15_000, interval: 100 });
    const driver = holder(all, current as string);
    const survivors = all.filter((p) => p !== driver);
    driver.child.kill('SIGKILL');
    greenFails = true;
    const failingFrom = Date.now();
    // users keep coming to the surviving instances; half of them hit the broken green
    let stop = false;
    const traffic = (async () => {
      for (let i = 0; !stop; i++) {
        const r = await request((survivors[i % survivors.length] as ServeProcess).proxyUrl + '/').catch(() => null);
        await r?.body.dump();
        await sleep(10);
      }
    })();
    t.after(async () => {
      stop = true;
      await traffic;
    });
    const r = await until(t, 'the rollback', async () => {
      const x = (await admin(survivors[0] as ServeProcess, 'GET', '/v1/apps/shop/rollouts/current')).body;
      return x.state === 'rolled-back' ? x : undefined;
    }, { timeout: 9_000, interval: 100 });
    const tookMs = Date.now() - failingFrom;
    t.diagnostic(`rolled back ${tookMs} ms after green started failing, with its driver killed (lease TTL 10 s)`);
    assert.ok(tookMs < 6_000, `rolled back after ${tookMs} ms`);
    assert.match(r.reason, /^analysis failed: green error rate/);
    const state = (await admin(survivors[1] as ServeProcess, 'GET', '/v1/apps/shop')).body;
    assert.deepEqual(state.weights, { blue: 100, green: 0 });
    const history = (await admin(survivors[1] as ServeProcess, 'GET', '/v1/apps/shop/history?limit=10')).body.entries as { reason: string | null }[];
    assert.equal(history.filter((e) => e.reason?.includes('rolled back: green error rate') === true).length, 1, 'one rollback, with why');
  });
});
