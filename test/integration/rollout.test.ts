import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { runCli } from '../../src/cli/main.ts';
import type { RedisStore } from '../../src/state/redis-store.ts';
import { startProxy, twoPools, TOKEN, type TestProxy } from '../helpers/proxy.ts';
import { startRedis } from '../helpers/redis-server.ts';
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

/** The driver's rounds every 20 ms instead of every second. */
const FAST = { rollouts: { tickMs: 20 } };

async function proxy(t: TestContext, deps: Parameters<typeof startProxy>[1] = {}): Promise<TestProxy> {
  greenStatus = 200;
  const p = await startProxy({ apps: [twoPools(blue.url, green.url)] }, { ...FAST, ...deps });
  t.after(() => p.close());
  return p;
}

/** Real requests through the proxy, `concurrency` at a time, until stopped: what fills the stats. */
function traffic(p: TestProxy, concurrency = 4): { stop(): Promise<void> } {
  let stopped = false;
  const loops = Array.from({ length: concurrency }, async () => {
    while (!stopped) {
      await p.get('/').catch(() => undefined);
      await sleep(2);
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
const inState = (t: TestContext, p: TestProxy, state: string) => until(t, `rollout ${state}`, async () => ((await current(p)).state === state ? current(p) : undefined), { timeout: 8_000 });
const weights = async (p: TestProxy) => (await p.admin('GET', '/v1/apps/shop')).body.weights;

describe('progressive rollouts', () => {
  it('reaches 100 % through its steps with a healthy green, judged on real traffic', async (t) => {
    const p = await proxy(t);
    const load = traffic(p);
    t.after(() => load.stop());
    const r = await p.admin('POST', '/v1/apps/shop/rollouts', { to: 'green', steps: [{ weight: 20, pause: '700ms' }, { weight: 50, pause: '700ms' }, { weight: 100 }], analysis: { maxErrorRate: 0.01, minRequests: 5 }, reason: 'release 2.0.0' });
    assert.equal(r.status, 201);
    assert.equal(r.headers.location, '/v1/apps/shop/rollouts/current');
    assert.match(r.body.id, /^r-[0-9a-f]{8}$/);
    assert.equal(r.body.state, 'running');
    assert.equal(r.body.step, 1);
    assert.deepEqual(r.body.steps, [{ weight: 20, pause: '700ms' }, { weight: 50, pause: '700ms' }, { weight: 100, pause: null }]);
    assert.deepEqual(r.body.from, { blue: 100, green: 0 });
    assert.ok(r.body.nextInMs > 0 && r.body.nextInMs <= 700);
    assert.deepEqual(await weights(p), { blue: 80, green: 20 });
    const done = await inState(t, p, 'succeeded');
    assert.equal(done.step, 3);
    assert.equal(done.reason, 'green reached 100%');
    assert.equal(done.nextInMs, null);
    assert.deepEqual(await weights(p), { blue: 0, green: 100 });
    assert.equal((await p.get('/')).servedBy, 'green@2.0.0');
    const h = await p.admin('GET', '/v1/apps/shop/history?limit=3');
    assert.deepEqual(h.body.entries.map((e: { reason: string }) => e.reason), [3, 2, 1].map((n) => `rollout ${r.body.id} step ${n}/3: green ${[20, 50, 100][n - 1]}% (release 2.0.0)`));
    assert.ok(h.body.entries.every((e: { action: string }) => e.action === 'rollout'));
    // the analysis saw green's traffic while it ran
    assert.ok(done.lastAnalysis === null || done.lastAnalysis.verdict !== 'fail');
    const metrics = await (await fetch(`${p.adminUrl}/metrics`)).text();
    assert.match(metrics, /switchyard_rollouts_total\{app="shop",result="succeeded"\} 1/);
  });

  it('rolls back a green answering 5xx above the threshold at once, with the reason in the history', async (t) => {
    const p = await proxy(t);
    greenStatus = 503;
    const load = traffic(p);
    t.after(() => load.stop());
    const r = await p.admin('POST', '/v1/apps/shop/rollouts', { to: 'green', steps: [{ weight: 50, pause: '1m' }], analysis: { maxErrorRate: 0.05, minRequests: 10 } });
    assert.equal(r.status, 201);
    const rolled = await inState(t, p, 'rolled-back');
    assert.match(rolled.reason, /^analysis failed: green error rate 100% > 5% over 10s \(\d+ requests, \d+ errors; others 0%, p99 \d+ms\)$/);
    assert.equal(rolled.lastAnalysis.verdict, 'fail');
    assert.ok(rolled.lastAnalysis.to.requests >= 10);
    assert.deepEqual(await weights(p), { blue: 100, green: 0 });
    const [entry] = (await p.admin('GET', '/v1/apps/shop/history?limit=1')).body.entries;
    assert.equal(entry.action, 'rollout');
    assert.equal(entry.by, 'switchyard');
    assert.match(entry.reason, new RegExp(`^rollout ${r.body.id} rolled back: green error rate 100% > 5%`));
    const metrics = await (await fetch(`${p.adminUrl}/metrics`)).text();
    assert.match(metrics, /switchyard_rollouts_total\{app="shop",result="rolled-back"\} 1/);
  });

  it('a rollback by the analysis voids the pins to green: pinned browsers go to blue at once and green reads drained', async (t) => {
    greenStatus = 200;
    const p = await startProxy({ apps: [twoPools(blue.url, green.url, { affinity: { secret: 'affinity-secret-0123456789', window: '10m' } })] }, FAST);
    t.after(() => p.close());
    const r = await p.admin('POST', '/v1/apps/shop/rollouts', { to: 'green', steps: [{ weight: 50, pause: '1m' }], analysis: { maxErrorRate: 0.05, minRequests: 10 } });
    assert.equal(r.status, 201);
    await until(t, 'green at 50 %', async () => (await weights(p)).green === 50, { timeout: 8_000 });
    // a browser the split sent to green keeps its pin
    const pin = await until(t, 'a response from green with a pin', async () => {
      const res = await p.get('/');
      return res.servedBy === 'green@2.0.0' ? String(res.headers['set-cookie']).split(';')[0] : undefined;
    }, { timeout: 8_000 });
    greenStatus = 503;
    const load = traffic(p);
    t.after(() => load.stop());
    await inState(t, p, 'rolled-back');
    await load.stop();
    greenStatus = 200;
    assert.deepEqual(await weights(p), { blue: 100, green: 0 });
    for (let i = 0; i < 5; i++) assert.equal((await p.get('/', { cookie: pin as string })).servedBy, 'blue@1.0.0', 'a pin to the rolled-back pool does not hold');
    const d = await until(t, 'green drained', async () => {
      const body = (await p.admin('GET', '/v1/apps/shop/pools/green/drain')).body;
      return body.drained === true ? body : undefined;
    }, { timeout: 8_000 });
    assert.equal(d.reason, null);
  });

  it('passes no judgement while green has served fewer than minRequests', async (t) => {
    const p = await proxy(t);
    greenStatus = 500;
    const load = traffic(p, 2);
    t.after(() => load.stop());
    await p.admin('POST', '/v1/apps/shop/rollouts', { to: 'green', steps: [{ weight: 10, pause: '1m' }], analysis: { maxErrorRate: 0.01, minRequests: 100_000 } });
    const seen = await until(t, 'green traffic in the window', async () => {
      const c = await current(p);
      return c.lastAnalysis?.to.requests > 0 ? c : undefined;
    }, { timeout: 8_000 });
    assert.equal(seen.state, 'running');
    assert.equal(seen.lastAnalysis.verdict, 'waiting');
    assert.equal(seen.lastAnalysis.to.errorRate, 1);
    assert.deepEqual(await weights(p), { blue: 90, green: 10 });
  });

  it('pause, resume, promote and abort; one rollout at a time; 400s name the field', async (t) => {
    const p = await proxy(t);
    assert.equal((await p.admin('GET', '/v1/apps/shop/rollouts/current')).status, 404);
    const bad = await p.admin('POST', '/v1/apps/shop/rollouts', { to: 'green', steps: [{ weight: 50 }, { weight: 20 }] });
    assert.equal(bad.status, 400);
    assert.deepEqual(bad.body.error.details, [{ path: 'steps[1].weight', message: 'steps must be ascending: 20 follows 50' }]);
    assert.equal((await p.admin('POST', '/v1/apps/shop/rollouts', { to: 'green', preset: 'canary10-5m', extra: 1 })).status, 400);
    assert.equal((await p.admin('POST', '/v1/apps/nope/rollouts', { to: 'green', preset: 'canary10-5m' })).status, 404);

    const started = await p.admin('POST', '/v1/apps/shop/rollouts', { to: 'green', preset: 'canary10-5m' });
    assert.equal(started.status, 201);
    const again = await p.admin('POST', '/v1/apps/shop/rollouts', { to: 'green', preset: 'all-at-once' });
    assert.equal(again.status, 409);
    assert.equal(again.body.error.details.id, started.body.id);

    const paused = await p.admin('POST', '/v1/apps/shop/rollouts/current/pause', { reason: 'lunch' });
    assert.equal(paused.status, 200);
    assert.equal(paused.body.state, 'paused');
    assert.equal(paused.body.reason, 'paused by tester: lunch');
    assert.equal(paused.body.nextInMs, null);
    assert.ok(paused.body.remainingMs > 290_000 && paused.body.remainingMs <= 300_000);
    const resumed = await p.admin('POST', '/v1/apps/shop/rollouts/current/resume', {});
    assert.equal(resumed.body.state, 'running');
    assert.ok(resumed.body.nextInMs <= paused.body.remainingMs);

    const promoted = await p.admin('POST', '/v1/apps/shop/rollouts/current/promote', {});
    assert.equal(promoted.status, 200);
    assert.equal(promoted.body.state, 'succeeded');
    assert.equal(promoted.body.reason, 'promoted by tester');
    assert.deepEqual(await weights(p), { blue: 0, green: 100 });
    assert.equal((await p.admin('POST', '/v1/apps/shop/rollouts/current/abort', {})).status, 409, 'nothing to abort once it ended');

    // back to blue, then abort half-way: the starting weights return
    const back = await p.admin('POST', '/v1/apps/shop/rollouts', { to: 'blue', steps: [{ weight: 30, pause: '10m' }] });
    assert.equal(back.status, 201);
    assert.deepEqual(await weights(p), { blue: 30, green: 70 });
    const aborted = await p.admin('POST', '/v1/apps/shop/rollouts/current/abort', { reason: 'wrong build' });
    assert.equal(aborted.body.state, 'aborted');
    assert.equal(aborted.body.reason, 'aborted by tester: wrong build');
    assert.deepEqual(await weights(p), { blue: 0, green: 100 });
    const [entry] = (await p.admin('GET', '/v1/apps/shop/history?limit=1')).body.entries;
    assert.equal(entry.reason, `rollout ${back.body.id} aborted by tester: wrong build`);
    assert.equal((await current(p)).id, back.body.id, 'current shows the last one once none runs');
  });

  it('a rollout to a pool with no healthy target is refused with 409 (the health gate), and recorded as such', async (t) => {
    const sick = await startUpstream('sick', (req, res) => {
      res.writeHead(req.url === '/healthz' ? 500 : 200);
      res.end();
    });
    t.after(() => sick.close());
    const p = await startProxy({ apps: [twoPools(blue.url, sick.url, { health: { interval: '50ms', timeout: '500ms', rise: 1, fall: 1, passive: false } })] }, FAST);
    t.after(() => p.close());
    await until(t, 'green down', async () => (await p.admin('GET', '/v1/apps/shop')).body.pools.green.healthy === false, { timeout: 8_000 });
    const r = await p.admin('POST', '/v1/apps/shop/rollouts', { to: 'green', preset: 'canary10-5m' });
    assert.equal(r.status, 409);
    assert.equal(r.body.error.code, 'POOL_UNHEALTHY');
    const c = await current(p);
    assert.equal(c.state, 'aborted');
    assert.match(c.reason, /^step 1 was refused: app "shop": pool "green" has no healthy target/);
    assert.deepEqual(await weights(p), { blue: 100, green: 0 });
  });

  it('a manual switch during a rollout aborts it, naming the revision', async (t) => {
    const p = await proxy(t);
    await p.admin('POST', '/v1/apps/shop/rollouts', { to: 'green', preset: 'linear10-every-1m' });
    const sw = await p.admin('POST', '/v1/apps/shop/switch', { to: 'blue', reason: 'not today' });
    assert.equal(sw.status, 200);
    const aborted = await inState(t, p, 'aborted');
    assert.equal(aborted.reason, `manual change at revision ${sw.body.revision} (switch by tester)`);
    // a bounded window after the abort (the positive point) for a step that should not come
    await sleep(100);
    assert.deepEqual(await weights(p), { blue: 100, green: 0 }, 'the manual weights stay');
  });

  it('a restart mid-rollout resumes it where it was (file store)', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'switchyard-rollout-restart-'));
    const first = await startProxy({ apps: [twoPools(blue.url, green.url)] }, { ...FAST, dir });
    const r = await first.admin('POST', '/v1/apps/shop/rollouts', { to: 'green', steps: [{ weight: 40, pause: '1500ms' }, { weight: 70, pause: '300ms' }], analysis: null });
    assert.equal(r.status, 201);
    await first.close();
    const second = await startProxy({ apps: [twoPools(blue.url, green.url)] }, { ...FAST, dir });
    t.after(() => second.close());
    t.after(() => rm(dir, { recursive: true, force: true, maxRetries: 5 }));
    const resumed = await current(second);
    assert.equal(resumed.id, r.body.id);
    assert.equal(resumed.state, 'running');
    assert.equal(resumed.step, 1);
    assert.ok(resumed.nextInMs <= r.body.nextInMs);
    assert.deepEqual(await weights(second), { blue: 60, green: 40 });
    const done = await inState(t, second, 'succeeded');
    assert.equal(done.startedAt, r.body.startedAt);
    assert.deepEqual(await weights(second), { blue: 0, green: 100 });
  });

  it('the CLI starts, shows, pauses and aborts a rollout', async (t) => {
    const p = await proxy(t);
    const cli = async (...argv: string[]) => {
      let stdout = '';
      let stderr = '';
      const code = await runCli(argv, { stdout: { write: (s: string) => (stdout += s) }, stderr: { write: (s: string) => (stderr += s) }, env: { SWITCHYARD_ADMIN_URL: p.adminUrl, SWITCHYARD_TOKEN: TOKEN } });
      return { code, stdout, stderr };
    };
    const start = await cli('rollout', 'shop', 'start', '--to', 'green', '--steps', '10:5m,50:5m,100', '--max-error-rate', '0.02', '--max-p99', '500', '--min-requests', '50', '--on-failure', 'pause');
    assert.equal(start.code, 0, start.stderr);
    assert.match(start.stdout, /rollout r-[0-9a-f]{8} of shop to green: running, step 1\/3 \(green 10%\), next step in [45]m/);
    const json = await cli('rollout', 'shop', 'status', '--json');
    assert.equal(json.code, 0);
    const view = JSON.parse(json.stdout);
    assert.deepEqual(view.analysis, { maxErrorRate: 0.02, minRequests: 50, maxWaitMs: 600_000, maxP99Ms: 500 });
    assert.equal(view.onFailure, 'pause');
    assert.deepEqual(view.steps, [{ weight: 10, pause: '5m' }, { weight: 50, pause: '5m' }, { weight: 100, pause: null }]);
    assert.match((await cli('rollout', 'shop', 'pause')).stdout, /paused, step 1\/3/);
    assert.match((await cli('rollout', 'shop', 'status')).stdout, /steps: 10% 5m → 50% 5m → 100%/);
    assert.equal((await cli('rollout', 'shop', 'abort', '--reason', 'no')).code, 0);
    const again = await cli('rollout', 'shop', 'abort');
    assert.equal(again.code, 1);
    assert.match(again.stderr, /CONFLICT/);
    assert.equal((await cli('rollout', 'shop', 'start', '--to', 'green')).code, 2, 'steps or preset is required');
    assert.equal((await cli('rollout', 'shop', 'start', '--to', 'green', '--steps', '10:soon')).code, 2);
    assert.equal((await cli('rollout', 'shop', 'launch')).code, 2);
  });
});

describe('rollouts in a fleet on redis', () => {
  /** Two instances on one redis-server, with a 600 ms lease. */
  async function fleet(t: TestContext) {
    const redis = await startRedis();
    const dir = await mkdtemp(join(tmpdir(), 'switchyard-rollout-fleet-'));
    const instances: TestProxy[] = [];
    // one hook, in dependency order: instances (which write their caches), then Redis, then the directory
    t.after(async () => {
      for (const p of instances.reverse()) await p.close().catch(() => undefined);
      await redis.cleanup();
      await rm(dir, { recursive: true, force: true, maxRetries: 5 });
    });
    greenStatus = 200;
    const add = async (id: string) => {
      const p = await startProxy(
        { apps: [twoPools(blue.url, green.url)], store: { kind: 'redis', url: redis.url, prefix: 'ro', cachePath: join(dir, `${id}.json`), commandTimeout: '500ms' } },
        { instanceId: id, dir, rollouts: { tickMs: 20, leaseTtlMs: 600 } },
      );
      instances.push(p);
      return p;
    };
    const a = await add('a');
    const b = await add('b');
    return { a, b, redis };
  }

  it('a redis restarted empty mid-rollout gets the record back from the driver, which finishes', async (t) => {
    const { a, b, redis } = await fleet(t);
    const r = await a.admin('POST', '/v1/apps/shop/rollouts', { to: 'green', steps: [{ weight: 10, pause: '1500ms' }], analysis: null });
    assert.equal(r.status, 201);
    await driverOf(t, a);
    await redis.restart();
    const done = await inState(t, b, 'succeeded');
    assert.equal(done.id, r.body.id);
    assert.deepEqual(await weights(a), { blue: 0, green: 100 });
  });

  const driverOf = async (t: TestContext, p: TestProxy): Promise<string> => until(t, 'a driver', async () => ((await current(p)).driver ?? undefined) as string | undefined, { timeout: 8_000 });

  it('one instance drives; closed mid-rollout, the other takes over and finishes it', async (t) => {
    const { a, b } = await fleet(t);
    const r = await b.admin('POST', '/v1/apps/shop/rollouts', { to: 'green', steps: [{ weight: 10, pause: '800ms' }, { weight: 50, pause: '800ms' }], analysis: null });
    assert.equal(r.status, 201);
    const driver = await driverOf(t, a);
    assert.equal(driver, await driverOf(t, b), 'both see the same driver');
    const [gone, stays] = driver.startsWith('a/') ? [a, b] : [b, a];
    await gone.close();
    const done = await inState(t, stays, 'succeeded');
    assert.equal(done.id, r.body.id);
    assert.deepEqual(await weights(stays), { blue: 0, green: 100 });
    assert.notEqual((await current(stays)).driver, driver);
    const reasons = (await stays.admin('GET', '/v1/apps/shop/history?limit=3')).body.entries.map((e: { reason: string }) => e.reason);
    assert.deepEqual(reasons, [3, 2, 1].map((n) => `rollout ${r.body.id} step ${n}/3: green ${[10, 50, 100][n - 1]}%`), 'each step written once');
  });

  it('a driver cut off from redis (as if killed) loses the lease when it expires; the other continues', async (t) => {
    const { a, b } = await fleet(t);
    const r = await a.admin('POST', '/v1/apps/shop/rollouts', { to: 'green', steps: [{ weight: 10, pause: '1s' }, { weight: 50, pause: '300ms' }], analysis: null });
    assert.equal(r.status, 201);
    const driver = await driverOf(t, a);
    const [dead, stays] = driver.startsWith('a/') ? [a, b] : [b, a];
    // no release, no renewal: only the lease's TTL tells the other instance
    (dead.sy.controller.store as RedisStore).client.disconnect();
    const cut = Date.now();
    const done = await inState(t, stays, 'succeeded');
    assert.ok(Date.now() - cut >= 300, 'the other waited for the lease to expire');
    assert.equal(done.id, r.body.id);
    assert.deepEqual(await weights(stays), { blue: 0, green: 100 });
    assert.match((await current(stays)).driver, driver.startsWith('a/') ? /^b\// : /^a\//);
  });
});
