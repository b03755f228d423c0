import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { request } from 'undici';
import { pastInstant } from '../helpers/clock.ts';
import { startProxy, twoPools, TOKEN } from '../helpers/proxy.ts';
import { spawnServe } from '../helpers/serve-process.ts';
import { startRedis } from '../helpers/redis-server.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';
import { until } from '../helpers/wait.ts';

/**
 * `workers: 2` as an operator runs it: `src/main.ts serve` in a real process (a primary and two
 * node:cluster workers), on fixed free ports so the workers listen with SO_REUSEPORT.
 */

interface WorkerDetail {
  slot: number;
  pid: number | null;
  ready: boolean;
  listen: string | null;
  restarts: number;
  served?: number;
  reportedAt?: number | null;
}

type Json = any; // eslint-disable-line @typescript-eslint/no-explicit-any -- tests assert on whatever JSON the API answers

interface Answer {
  status: number;
  servedBy: string;
  body: string;
  connection: unknown;
}

/** A `switchyard serve` process with `workers: N`, and the calls the tests make to it. */
interface Group {
  readonly child: ChildProcess;
  readonly exited: Promise<unknown[]>;
  output(): string;
  /** SIGKILL (if still running) and remove its temp dir */
  cleanup(): Promise<void>;
  admin(method: string, path: string, body?: unknown): Promise<{ status: number; body: Json }>;
  /** a proxied GET on a connection of its own, so the kernel picks a worker for each */
  get(path?: string): Promise<Answer>;
  many(n: number, concurrency?: number): Promise<Answer[]>;
  workers(): Promise<WorkerDetail[]>;
  /** requests each worker served, once every worker has reported after this call */
  served(t: TestContext): Promise<number[]>;
  metric(series: string): Promise<number>;
}

/**
 * `src/main.ts serve` on fixed free ports (so the workers use SO_REUSEPORT), started and awaited
 * by `spawnServe`, with the calls these tests make to it.
 */
async function startGroup(doc: Record<string, unknown>): Promise<Group> {
  const p = await spawnServe({ shutdown: { delay: '300ms', grace: '5s', hardStop: '10s' }, ...doc }, 20_000);
  const { proxyUrl, adminUrl } = p;
  const g: Group = {
    child: p.child,
    exited: p.exited,
    output: p.output,
    cleanup: p.cleanup,
    async admin(method, path, body) {
      const r = await request(adminUrl + path, {
        method: method as 'GET',
        headers: { authorization: `Bearer ${TOKEN}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      const text = await r.body.text();
      return { status: r.statusCode, body: text.startsWith('{') ? JSON.parse(text) : text };
    },
    async get(path = '/') {
      const r = await request(proxyUrl + path, { reset: true });
      return { status: r.statusCode, servedBy: String(r.headers['x-served-by']), body: await r.body.text(), connection: r.headers['connection'] };
    },
    async many(n, concurrency = 8) {
      const out: Answer[] = [];
      let started = 0;
      const lane = async (): Promise<void> => {
        while (started < n) {
          started++;
          out.push(await g.get());
        }
      };
      await Promise.all(Array.from({ length: concurrency }, lane));
      return out;
    },
    async workers() {
      const r = await request(`${adminUrl}/readyz`);
      return ((await r.body.json()) as { details: { workers: WorkerDetail[] } }).details.workers;
    },
    async served(t) {
      const asked = Date.now();
      const workers = await until(t, 'a report from every worker', async () => {
        const ws = await g.workers();
        return ws.every((w) => (w.reportedAt ?? 0) > asked) ? ws : undefined;
      }, { interval: 50 });
      return workers.map((w) => w.served ?? 0);
    },
    async metric(series) {
      const text = (await g.admin('GET', '/metrics')).body as string;
      const found = text.split('\n').find((l) => l.startsWith(`${series} `));
      return found === undefined ? 0 : Number(found.slice(series.length + 1));
    },
  };
  return g;
}

describe('workers: 2', () => {
  let blue: Upstream;
  let blueSick: Upstream;
  let green: Upstream;
  let g: Group;
  const held: (() => void)[] = [];

  before(async () => {
    const handler = (name: string, sick: boolean) => (req: IncomingMessage, res: ServerResponse) => {
      if (req.url === '/healthz') {
        res.statusCode = sick ? 500 : 200;
        res.end();
      } else if (req.url === '/slow') held.push(() => res.end(JSON.stringify({ target: name })));
      else res.end(JSON.stringify({ target: name }));
    };
    blue = await startUpstream('blue', handler('blue', false));
    blueSick = await startUpstream('blue-sick', handler('blue-sick', true));
    green = await startUpstream('green', handler('green', false));
    g = await startGroup({ workers: 2, apps: [twoPools([blue.url, blueSick.url], green.url, { health: { interval: '100ms', timeout: '500ms', rise: 1, fall: 1 } })] });
  });

  // `?.`: whatever `before` made before it failed is closed too (a throw here left the upstreams open)
  after(async () => {
    await g?.cleanup();
    for (const r of held) r();
    await Promise.all([blue?.close(), blueSick?.close(), green?.close()]);
  });

  it('runs two workers on SO_REUSEPORT listeners, and both serve', async (t) => {
    const ws = await g.workers();
    assert.equal(ws.length, 2);
    assert.ok(ws.every((w) => w.ready && w.listen === 'reuseport'), JSON.stringify(ws));
    assert.notEqual(ws[0]?.pid, ws[1]?.pid);
    assert.ok(!ws.some((w) => w.pid === g.child.pid));
    const before = await g.served(t);
    const results = await g.many(60);
    assert.ok(results.every((r) => r.status === 200));
    const after = await g.served(t);
    assert.ok(after.every((n, i) => n > (before[i] ?? 0)), `each worker served some of 60 connections: ${before} → ${after}`);
  });

  it('forwards the primary’s health checks: no worker sends traffic to a target they took down', async (t) => {
    const pool = await until(t, 'the sick target to be down', async () => {
      const s = await g.admin('GET', '/v1/apps/shop');
      const states = s.body.pools.blue.targetStates as { url: string; state: string }[] | undefined;
      return states?.find((t) => t.url === blueSick.url)?.state === 'down' ? s.body.pools.blue : undefined;
    });
    assert.equal(pool.healthy, true);
    const results = await g.many(40);
    assert.deepEqual([...new Set(results.map((r) => JSON.parse(r.body).target))], ['blue']);
  });

  it('a switch through the admin API reaches every worker before its 200', async () => {
    for (const to of ['green', 'blue', 'green']) {
      const sw = await g.admin('POST', '/v1/apps/shop/switch', { to });
      assert.equal(sw.status, 200);
      // the answer waits for every worker: the group already routes on it
      assert.deepEqual(sw.body.instances, { applied: 1, total: 1 });
      const results = await g.many(40);
      const version = to === 'green' ? 'green@2.0.0' : 'blue@1.0.0';
      assert.deepEqual([...new Set(results.map((r) => r.servedBy))], [version], `after switching to ${to}`);
    }
  });

  it('sums /metrics request counters over the workers', async (t) => {
    const series = 'switchyard_requests_total{app="shop",pool="green",class="2xx"}';
    const start = await g.metric(series);
    const before = await g.served(t);
    await g.many(50);
    const after = await g.served(t);
    assert.ok(after.every((n, i) => n > (before[i] ?? 0)), 'both workers served some');
    assert.equal((await g.metric(series)) - start, 50);
    assert.equal(await g.metric('switchyard_routing_revision{app="shop"}'), (await g.admin('GET', '/v1/apps/shop')).body.revision);
    const stats = await g.admin('GET', '/v1/apps/shop/stats');
    assert.equal(stats.body.instances, 1);
    assert.equal(stats.body.workers, 2);
  });

  it('drain figures and AppState sum the requests every worker holds on the draining pool', async (t) => {
    await g.admin('POST', '/v1/apps/shop/switch', { to: 'blue' });
    held.length = 0;
    const slow = Array.from({ length: 6 }, () => g.get('/slow'));
    await until(t, '6 slow requests upstream', async () => (held.length === 6 ? true : undefined));
    const sw = await g.admin('POST', '/v1/apps/shop/switch', { to: 'green' });
    assert.equal(sw.status, 200);
    const drain = await until(t, 'the drain figures to show 6 in flight', async () => {
      const d = await g.admin('GET', '/v1/apps/shop/pools/blue/drain');
      return d.body.inflight === 6 ? d.body : undefined;
    }, { timeout: 2_000 });
    assert.equal(drain.weight, 0);
    assert.equal(drain.drained, false);
    const state = (await g.admin('GET', '/v1/apps/shop')).body;
    assert.equal(state.pools.blue.inflight, 6);
    assert.deepEqual(state.instances, { applied: 1, total: 1 });
    for (const release of held.splice(0)) release();
    assert.deepEqual((await Promise.all(slow)).map((r) => r.servedBy), Array(6).fill('blue@1.0.0'));
    await until(t, 'blue to be drained', async () => ((await g.admin('GET', '/v1/apps/shop/pools/blue/drain')).body.drained === true ? true : undefined), { timeout: 2_000 });
  });

  it('replaces a worker that dies, and the replacement routes on the current state', async (t) => {
    const [victim, other] = await g.workers();
    assert.ok(victim?.pid && other?.pid);
    process.kill(victim.pid, 'SIGKILL');
    const replaced = await until(t, 'a replacement worker', async () => {
      const w = (await g.workers())[victim.slot];
      return w !== undefined && w.ready && w.pid !== victim.pid ? w : undefined;
    }, { timeout: 10_000 });
    assert.equal(replaced.restarts, 1);
    assert.equal((await g.workers())[other.slot]?.pid, other.pid);
    const before = await g.served(t);
    const results = await g.many(40);
    assert.deepEqual([...new Set(results.map((r) => `${r.status} ${r.servedBy}`))], ['200 green@2.0.0']);
    const after = await g.served(t);
    assert.ok(after.every((n, i) => n > (before[i] ?? 0)), 'the replacement serves too');
  });

  it('SIGTERM: readyz turns 503, requests in flight on every worker finish, and the process exits 0', async (t) => {
    held.length = 0;
    const slow = Array.from({ length: 6 }, () => g.get('/slow'));
    await until(t, '6 slow requests upstream', async () => (held.length === 6 ? true : undefined));
    const pids = (await g.workers()).map((w) => w.pid);
    const termAt = Date.now();
    g.child.kill('SIGTERM');
    await until(t, 'readyz to turn 503', async () => {
      const ready = await g.admin('GET', '/readyz');
      return ready.status === 503 || (assert.equal(ready.status, 200), false);
    });
    // the requests stay in flight past shutdown.delay, into the grace period
    await pastInstant(termAt + 300, 100);
    for (const release of held.splice(0)) release();
    const results = await Promise.all(slow);
    assert.deepEqual(results.map((r) => r.status), Array(6).fill(200));
    assert.ok(results.every((r) => r.connection === 'close'));
    const [code] = (await g.exited) as [number];
    assert.equal(code, 0, g.output());
    for (const pid of pids) assert.throws(() => process.kill(pid as number, 0), /ESRCH/, `worker ${pid} exited too`);
  });
});

describe('workers: 2 on redis', () => {
  it('the process group is one instance of the fleet: instances, applied revisions and drain figures', async (t) => {
    const redis = await startRedis();
    t.after(() => redis.cleanup());
    const held: (() => void)[] = [];
    const blue = await startUpstream('blue', (req, res) => (req.url === '/slow' ? held.push(() => res.end('slow')) : res.end('ok')));
    const green = await startUpstream('green');
    const dir = await mkdtemp(join(tmpdir(), 'switchyard-workers-redis-'));
    t.after(async () => {
      for (const r of held) r();
      await Promise.all([blue.close(), green.close()]);
      await rm(dir, { recursive: true, force: true, maxRetries: 5 });
    });
    const store = { kind: 'redis', url: redis.url, prefix: 'workers', commandTimeout: '1s' };
    const g = await startGroup({ workers: 2, store: { ...store, cachePath: join(dir, 'group-cache.json') }, apps: [twoPools(blue.url, green.url)] });
    t.after(() => g.cleanup());
    const single = await startProxy({ apps: [twoPools(blue.url, green.url)], store: { ...store, cachePath: join(dir, 'single-cache.json') } }, { instanceId: 'single' });
    t.after(() => single.close());

    const both = async (check: (state: Json) => boolean): Promise<boolean> => check((await g.admin('GET', '/v1/apps/shop')).body) && check((await single.admin('GET', '/v1/apps/shop')).body);
    await until(t, 'both to count two instances', async () => ((await both((s) => s.instances.total === 2)) ? true : undefined));

    const slow = [...Array.from({ length: 6 }, () => g.get('/slow')), ...Array.from({ length: 2 }, () => single.get('/slow'))];
    await until(t, '8 slow requests upstream', async () => (held.length === 8 ? true : undefined));
    const sw = await single.admin('POST', '/v1/apps/shop/switch', { to: 'green' });
    assert.equal(sw.status, 200);
    // applied: the group counts once every worker routes on the revision
    await until(t, 'both instances to apply the switch', async () => ((await both((s) => s.instances.applied === 2 && s.revision === 2)) ? true : undefined));
    assert.deepEqual([...new Set((await g.many(20)).map((r) => r.servedBy))], ['green@2.0.0']);
    for (const p of [g, single]) {
      await until(t, 'the fleet-wide drain figures', async () => {
        const d = (await p.admin('GET', '/v1/apps/shop/pools/blue/drain')).body;
        return d.inflight === 8 && d.drained === false ? true : undefined;
      });
    }
    for (const release of held.splice(0)) release();
    assert.deepEqual((await Promise.all(slow)).map((r) => r.status), Array(8).fill(200));
    await until(t, 'blue drained fleet-wide', async () => ((await single.admin('GET', '/v1/apps/shop/pools/blue/drain')).body.drained === true ? true : undefined));
  });
});
