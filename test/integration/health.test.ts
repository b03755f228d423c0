import assert from 'node:assert/strict';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { runCli } from '../../src/cli/main.ts';
import { pastInstant } from '../helpers/clock.ts';
import { startProxy, twoPools, TOKEN, type TestProxy } from '../helpers/proxy.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';
import { request } from 'undici';
import { until } from '../helpers/wait.ts';

/** An upstream whose health answer, reported version and traffic status the test changes at will. */
interface Backend extends Upstream {
  name: string;
  health: number;
  version: string | null;
  traffic: number;
  /** proxied requests seen (health checks left out) */
  served(): number;
  checks(): number;
}

async function backend(name: string, version: string | null = null): Promise<Backend> {
  const b = { name, health: 200, version, traffic: 200 } as Backend;
  const up = await startUpstream(name, (req: IncomingMessage, res: ServerResponse) => {
    if (req.url === '/healthz') {
      res.writeHead(b.health, { 'content-type': 'application/json' });
      res.end(JSON.stringify(b.version === null ? { status: 'ok' } : { status: 'ok', build: { version: b.version } }));
      return;
    }
    res.writeHead(b.traffic, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ pool: name }));
  });
  return Object.assign(b, up, {
    served: () => up.seen.filter((s) => s.url !== '/healthz').length,
    checks: () => up.seen.filter((s) => s.url === '/healthz').length,
  });
}

async function targetStates(p: TestProxy, pool: string): Promise<string[]> {
  const r = await p.admin('GET', '/v1/apps/shop');
  return r.body.pools[pool].targetStates.map((t: { state: string }) => t.state);
}

const fastHealth = (extra: Record<string, unknown> = {}) => ({ health: { interval: '50ms', timeout: '500ms', rise: 2, fall: 2, ...extra } });

async function cli(p: TestProxy, ...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await runCli(argv, { stdout: { write: (s: string) => (stdout += s) }, stderr: { write: (s: string) => (stderr += s) }, env: { SWITCHYARD_ADMIN_URL: p.adminUrl, SWITCHYARD_TOKEN: TOKEN } });
  return { code, stdout, stderr };
}

async function withProxy(backends: Backend[], doc: Record<string, unknown>, fn: (p: TestProxy) => Promise<void>): Promise<void> {
  const p = await startProxy(doc);
  try {
    await fn(p);
  } finally {
    await p.close();
    await Promise.all(backends.map((b) => b.close()));
  }
}

describe('active health checks', () => {
  it('a target whose /healthz answers 500 goes down after `fall` checks and comes back after `rise`', async (t) => {
    const [b1, b2, g] = [await backend('b1'), await backend('b2'), await backend('g')];
    await withProxy([b1, b2, g], { apps: [twoPools([b1.url, b2.url], g.url, fastHealth())] }, async (p) => {
      await until(t, 'first checks', () => b1.checks() > 0 && b2.checks() > 0, { timeout: 3_000 });
      assert.deepEqual(await targetStates(p, 'blue'), ['up', 'up']);
      b1.health = 500;
      const failingFrom = b1.checks();
      await until(t, 'b1 down', async () => (await targetStates(p, 'blue'))[0] === 'down', { timeout: 3_000 });
      assert.ok(b1.checks() - failingFrom >= 2, 'down only after `fall` (2) failing checks');
      const view = (await p.admin('GET', '/v1/apps/shop')).body.pools.blue;
      assert.equal(view.health, 'healthy', 'b2 is still up');
      assert.equal(view.healthy, true);
      assert.equal(view.targetStates[0].lastCheck.error, 'status 500');

      // requests avoid the down target while another is up
      const before = { b1: b1.served(), b2: b2.served() };
      for (let i = 0; i < 10; i++) assert.equal((await p.get('/')).status, 200);
      assert.equal(b1.served() - before.b1, 0);
      assert.equal(b2.served() - before.b2, 10);

      b1.health = 200;
      const passingFrom = b1.checks();
      await until(t, 'b1 up again', async () => (await targetStates(p, 'blue'))[0] === 'up', { timeout: 3_000 });
      assert.ok(b1.checks() - passingFrom >= 2, 'up only after `rise` (2) passing checks');
    });
  });

  it('a target that refuses connections or answers too late counts as failing', async (t) => {
    const [b, g] = [await backend('b'), await backend('g')];
    const slow = await startUpstream('slow', (req, res) => {
      if (req.url === '/healthz') setTimeout(() => res.end('late'), 400);
      else res.end('ok');
    });
    await withProxy([b, g], { apps: [twoPools([b.url, 'http://127.0.0.1:1'], [g.url, slow.url], fastHealth({ timeout: '100ms' }))] }, async (p) => {
      await until(t, 'refusing target down', async () => (await targetStates(p, 'blue'))[1] === 'down', { timeout: 3_000 });
      await until(t, 'slow target down', async () => (await targetStates(p, 'green'))[1] === 'down', { timeout: 3_000 });
      const r = await p.admin('GET', '/v1/apps/shop');
      assert.equal(r.body.pools.blue.targetStates[1].lastCheck.error, 'ECONNREFUSED');
      assert.equal(r.body.pools.green.targetStates[1].lastCheck.error, 'timeout');
    });
    await slow.close();
  });

  it('AppState shows health "unknown" and no refusals for an app without health config', async () => {
    const [b, g] = [await backend('b'), await backend('g')];
    await withProxy([b, g], { apps: [twoPools(b.url, 'http://127.0.0.1:1')] }, async (p) => {
      const r = await p.admin('GET', '/v1/apps/shop');
      assert.equal(r.body.pools.green.health, 'unknown');
      assert.equal(r.body.pools.green.healthy, true);
      assert.deepEqual(r.body.pools.green.targets, ['http://127.0.0.1:1'], 'the contract field keeps its shape');
      assert.deepEqual(r.body.pools.green.targetStates, [{ url: 'http://127.0.0.1:1', state: 'up' }]);
      assert.equal((await p.admin('POST', '/v1/apps/shop/switch', { to: 'green' })).status, 200);
      assert.equal(b.checks(), 0, 'no health checks without health config');
    });
  });
});

describe('the health gate on writes', () => {
  it('a switch to a pool with all targets down is a 409; with force: true a 200, noted in the history', async (t) => {
    const [b, g1, g2] = [await backend('b'), await backend('g1'), await backend('g2')];
    g1.health = 503;
    g2.health = 503;
    await withProxy([b, g1, g2], { apps: [twoPools(b.url, [g1.url, g2.url], fastHealth())] }, async (p) => {
      await until(t, 'green unhealthy', async () => (await p.admin('GET', '/v1/apps/shop')).body.pools.green.health === 'unhealthy', { timeout: 3_000 });
      const refused = await p.admin('POST', '/v1/apps/shop/switch', { to: 'green', reason: 'release' });
      assert.equal(refused.status, 409);
      assert.equal(refused.body.error.code, 'POOL_UNHEALTHY');
      assert.match(refused.body.error.message, /pool "green" has no healthy target/);
      assert.deepEqual(refused.body.error.details.pools.green.map((t: { state: string }) => t.state), ['down', 'down']);
      assert.equal((await p.admin('GET', '/v1/apps/shop')).body.revision, 1, 'nothing written');
      const status = await cli(p, 'status', 'shop');
      assert.match(status.stdout, /green .* drained, unhealthy {2}http:\/\/127\.0\.0\.1:\d+ \(down\), http:\/\/127\.0\.0\.1:\d+ \(down\)/);

      const forced = await p.admin('POST', '/v1/apps/shop/switch', { to: 'green', reason: 'release', force: true });
      assert.equal(forced.status, 200);
      assert.equal(forced.body.active, 'green');
      assert.equal(forced.body.reason, 'release (forced: pool "green" has no healthy target)');
      const h = await p.admin('GET', '/v1/apps/shop/history?limit=1');
      assert.equal(h.body.entries[0].reason, 'release (forced: pool "green" has no healthy target)');

      // moving traffic away from a sick pool needs no force
      assert.equal((await p.admin('PUT', '/v1/apps/shop/weights', { weights: { blue: 50, green: 50 } })).status, 200);
      // a force that overrode nothing leaves the reason alone (a real change: one that changes nothing writes nothing)
      const plain = await p.admin('PUT', '/v1/apps/shop/weights', { weights: { blue: 100 }, reason: 'back to blue', force: true });
      assert.equal(plain.body.revision, 4);
      assert.equal(plain.body.reason, 'back to blue');
    });
  });

  it('a weights change raising a pool with no healthy target is a 409; lowering it is not', async (t) => {
    const [b, g] = [await backend('b'), await backend('g')];
    await withProxy([b, g], { apps: [twoPools(b.url, g.url, { ...fastHealth(), initial: { green: 100 } })] }, async (p) => {
      // green at 100 % is the last stable routing, what a rollback goes back to
      assert.equal((await p.admin('PUT', '/v1/apps/shop/weights', { weights: { blue: 50, green: 50 } })).status, 200);
      g.health = 500;
      await until(t, 'green unhealthy', async () => (await p.admin('GET', '/v1/apps/shop')).body.pools.green.healthy === false, { timeout: 3_000 });
      const up = await p.admin('PUT', '/v1/apps/shop/weights', { weights: { blue: 40, green: 60 } });
      assert.equal(up.status, 409);
      assert.equal(up.body.error.code, 'POOL_UNHEALTHY');
      const down = await p.admin('PUT', '/v1/apps/shop/weights', { weights: { blue: 90, green: 10 } });
      assert.equal(down.status, 200);
      const back = await p.admin('POST', '/v1/apps/shop/rollback', {});
      assert.deepEqual([back.status, back.body.error.code], [409, 'POOL_UNHEALTHY'], 'a rollback to more green is refused too');
      assert.equal((await p.admin('POST', '/v1/apps/shop/rollback', { force: true })).status, 200);
    });
  });
});

describe('passive health checks', () => {
  it('consecutive 5xx eject a target, at most maxEjectedShare of the pool, and it returns after ejectFor', async () => {
    const [b1, b2, g] = [await backend('b1'), await backend('b2'), await backend('g')];
    b1.traffic = 500;
    b2.traffic = 500;
    const health = { interval: '1m', passive: { failures: 3, ejectFor: '1s', maxEjectedShare: 0.5 } };
    await withProxy([b1, b2, g], { apps: [twoPools([b1.url, b2.url], g.url, { health })] }, async (p) => {
      for (let i = 0; i < 6; i++) assert.equal((await p.get('/')).status, 500, 'the upstream 500 is passed on');
      const states = await targetStates(p, 'blue');
      assert.deepEqual(states.toSorted(), ['ejected', 'up'], 'one of two ejected: the share caps it at 1');
      const ejected = states.indexOf('ejected');
      const [out, kept] = ejected === 0 ? [b1, b2] : [b2, b1];
      const view = (await p.admin('GET', '/v1/apps/shop')).body.pools.blue;
      assert.equal(view.healthy, true, 'a pool with a target in rotation stays healthy');
      const ejectedUntil = Date.parse(view.targetStates[ejected].ejectedUntil);
      assert.ok(!Number.isNaN(ejectedUntil));

      // while out, it gets nothing; the other one, failing too, is kept (at least one stays)
      const seen = out.served();
      for (let i = 0; i < 4; i++) await p.get('/');
      assert.equal(out.served(), seen);
      assert.deepEqual((await targetStates(p, 'blue')).toSorted(), ['ejected', 'up']);
      assert.equal(p.sy.runtime.pool('shop', 'blue')?.targets.find((t) => t.url === out.url)?.ejections, 1);

      out.traffic = 200;
      kept.traffic = 200;
      // the deadline the proxy states itself, not a fixed sleep
      await pastInstant(ejectedUntil, 50);
      assert.deepEqual(await targetStates(p, 'blue'), ['up', 'up'], 'back after ejectFor');
      const before = out.served();
      for (let i = 0; i < 4; i++) assert.equal((await p.get('/')).status, 200);
      assert.equal(out.served() - before, 2, 'round robin includes it again');
    });
  });

  it('chaos: a hanging target (accepts, never answers, /healthz still 200) leaves rotation within a few seconds under load, with the default stallAfter', async (t) => {
    const hang = await startUpstream('hang', (req, res) => {
      if (req.url === '/healthz') res.end('ok');
      // anything else: never answered (the connection stays open, as a deadlocked app's does)
    });
    const [ok, g] = [await backend('ok'), await backend('g')];
    const health = { interval: '200ms', timeout: '500ms' };
    await withProxy([ok, g, hang as Backend], { apps: [twoPools([hang.url, ok.url], g.url, { health })] }, async (p) => {
      const started = Date.now();
      const sent: { at: number; answer: Promise<{ status: number; ms: number } | null> }[] = [];
      let ejectedAt = 0;
      // open-loop load, 50 requests a second: the clients stuck on the hanging target do not slow it down
      while (Date.now() - started < 9000) {
        const at = Date.now();
        const answer = request(`${p.proxyUrl}/load`, { headersTimeout: 30_000 }).then(
          async (r) => {
            await r.body.dump();
            return { status: r.statusCode, ms: Date.now() - at };
          },
          () => null,
        );
        sent.push({ at, answer });
        if (ejectedAt === 0 && (p.sy.runtime.pool('shop', 'blue')?.targets[0]?.ejectedUntil ?? 0) > Date.now()) ejectedAt = Date.now();
        if (ejectedAt !== 0 && Date.now() - ejectedAt > 2000) break;
        // paces the open-loop load (50 requests a second)
        await sleep(20);
      }
      assert.ok(ejectedAt > 0, 'the hanging target was ejected');
      assert.ok(ejectedAt - started < 7000, `out of rotation ${ejectedAt - started} ms into the load (stallAfter 5s)`);
      assert.deepEqual(await targetStates(p, 'blue'), ['ejected', 'up']);
      // every request sent after the ejection went to the healthy target and was answered at once
      const after = await Promise.all(sent.filter((r) => r.at > ejectedAt).map((r) => r.answer));
      t.diagnostic(`ejected ${ejectedAt - started} ms into the load; ${after.length} requests sent after it`);
      assert.ok(after.length > 50);
      assert.deepEqual(after.filter((r) => r === null || r.status !== 200 || r.ms >= 1000), []);
    });
  });

  it('an upstream response timeout counts as a failure the moment it fires', async () => {
    const hang = await startUpstream('hang', (req, res) => {
      if (req.url === '/healthz') res.end('ok');
    });
    const [ok, g] = [await backend('ok'), await backend('g')];
    const app = twoPools([hang.url, ok.url], g.url, { health: { interval: '1m', passive: { failures: 3, stallAfter: 0 } }, timeouts: { response: '200ms' } });
    await withProxy([ok, g, hang as Backend], { apps: [app] }, async (p) => {
      const started = Date.now();
      const answers = await Promise.all(Array.from({ length: 6 }, () => p.get('/')));
      // a GET that timed out is retried on the other target: every client gets its answer
      assert.deepEqual(answers.map((a) => a.status), [200, 200, 200, 200, 200, 200]);
      assert.deepEqual(await targetStates(p, 'blue'), ['ejected', 'up'], 'three timeouts in a row: ejected');
      assert.ok(Date.now() - started < 1500, 'at the timeouts, not later');
    });
  });

  it('a target answering its other requests stays in rotation while a few of its requests are slow', async (t) => {
    const slow: ServerResponse[] = [];
    const up = await startUpstream('mixed', (req, res) => {
      if (req.url === '/slow') slow.push(res);
      else res.end('fast');
    });
    const [other, g] = [await backend('other'), await backend('g')];
    const health = { interval: '1m', passive: { failures: 3, stallAfter: '300ms' } };
    await withProxy([other, g, up as Backend], { apps: [twoPools([up.url, other.url], g.url, { health })] }, async (p) => {
      const waiting = Array.from({ length: 8 }, () => request(`${p.proxyUrl}/slow`).then((r) => r.body.text(), () => 'error'));
      await until(t, 'the slow requests to reach the upstreams', () => slow.length >= 4, { timeout: 3_000 });
      const slowAt = Date.now();
      for (let i = 0; i < 40; i++) {
        await p.get('/fast');
        // paces the fast requests: the target keeps answering while its slow ones wait
        await sleep(25);
      }
      // a stall sweep ran once the slow requests had waited over stallAfter (300 ms): it had its chance to eject
      await until(t, 'a stall sweep past stallAfter', () => p.sy.health.lastSweepAt > slowAt + 300);
      assert.deepEqual(await targetStates(p, 'blue'), ['up', 'up'], 'slow requests alone do not eject a target that answers');
      for (const r of slow) r.end('done');
      await Promise.all(waiting);
    });
  });

  it('a success resets the streak, and passive: false turns ejection off', async () => {
    const [b1, b2, g] = [await backend('b1'), await backend('b2'), await backend('g')];
    b1.traffic = 502;
    await withProxy([b1, b2, g], { apps: [twoPools([b1.url, b2.url], g.url, { health: { interval: '1m', passive: false } })] }, async (p) => {
      for (let i = 0; i < 20; i++) await p.get('/');
      assert.deepEqual(await targetStates(p, 'blue'), ['up', 'up']);
    });
    const [c1, c2, h] = [await backend('c1'), await backend('c2'), await backend('h')];
    await withProxy([c1, c2, h], { apps: [twoPools([c1.url, c2.url], h.url, { health: { interval: '1m', passive: { failures: 3 } } })] }, async (p) => {
      const t = p.sy.runtime.pool('shop', 'blue')?.targets[0];
      assert.ok(t);
      for (const ok of [false, false, true, false, false]) t.recordResult(ok);
      assert.equal(t.ejectedUntil, 0, 'two failures after a success do not reach 3');
      t.recordResult(false);
      assert.ok(t.ejectedUntil > Date.now());
      assert.equal(t.ejections, 1);
    });
  });
});

describe('version check', () => {
  it('switch with expectVersion: 200 when every target reports it, 409 with each target\'s version when not', async () => {
    const [b, g1, g2] = [await backend('b', '1.0.0'), await backend('g1', '2.0.0'), await backend('g2', '2.0.0')];
    await withProxy([b, g1, g2], { apps: [twoPools(b.url, [g1.url, g2.url], fastHealth({ versionFrom: { json: 'build.version' } }))] }, async (p) => {
      g2.version = '1.9.0';
      const bad = await p.admin('POST', '/v1/apps/shop/switch', { to: 'green', expectVersion: '2.0.0' });
      assert.equal(bad.status, 409);
      assert.equal(bad.body.error.code, 'VERSION_MISMATCH');
      assert.match(bad.body.error.message, /reports 1\.9\.0/);
      assert.deepEqual(
        bad.body.error.details.targets.map((t: { url: string; reportedVersion: string }) => [t.url, t.reportedVersion]),
        [[g1.url, '2.0.0'], [g2.url, '1.9.0']],
      );
      const unknownPool = await p.admin('POST', '/v1/apps/shop/switch', { to: 'purple', expectVersion: '2.0.0' });
      assert.equal(unknownPool.status, 404);

      g2.version = '2.0.0';
      const ok = await p.admin('POST', '/v1/apps/shop/switch', { to: 'green', expectVersion: '2.0.0' });
      assert.equal(ok.status, 200);
      assert.equal(ok.body.active, 'green');
      assert.deepEqual(ok.body.pools.green.targetStates.map((t: { reportedVersion: string }) => t.reportedVersion), ['2.0.0', '2.0.0']);

      // a target failing its check is left out; one passing without a version is a mismatch
      b.health = 500;
      assert.equal((await p.admin('POST', '/v1/apps/shop/switch', { to: 'blue', expectVersion: '1.0.0' })).status, 409, 'no target passes');
      b.health = 200;
      b.version = null;
      const none = await p.admin('POST', '/v1/apps/shop/switch', { to: 'blue', expectVersion: '1.0.0' });
      assert.equal(none.status, 409);
      assert.match(none.body.error.message, /reports no version/);
    });
  });

  it('reads the version from a header, and refuses when the app has no versionFrom', async () => {
    const g = await startUpstream('g', (_req, res) => {
      res.writeHead(200, { 'x-app-version': '2.0.0' });
      res.end();
    });
    const b = await backend('b');
    await withProxy([b], { apps: [twoPools(b.url, g.url, fastHealth({ versionFrom: { header: 'X-App-Version' } }))] }, async (p) => {
      assert.equal((await p.admin('POST', '/v1/apps/shop/switch', { to: 'green', expectVersion: '2.0.0' })).status, 200);
    });
    const c = await backend('c');
    await withProxy([c], { apps: [twoPools(c.url, g.url, fastHealth())] }, async (p) => {
      const r = await p.admin('POST', '/v1/apps/shop/switch', { to: 'green', expectVersion: '2.0.0' });
      assert.equal(r.status, 409);
      assert.match(r.body.error.message, /no health\.versionFrom/);
    });
    await g.close();
  });

  it('switchyard switch --expect-version exits 1 on a mismatch and 0 on a match', async () => {
    const [b, g] = [await backend('b', '1.0.0'), await backend('g', '2.0.0-rc1')];
    await withProxy([b, g], { apps: [twoPools(b.url, g.url, fastHealth({ versionFrom: { json: 'build.version' } }))] }, async (p) => {
      const bad = await cli(p, 'switch', 'shop', 'green', '--expect-version', '2.0.0');
      assert.equal(bad.code, 1);
      assert.match(bad.stderr, /^error VERSION_MISMATCH: pool "green" of app "shop" does not run 2\.0\.0: .* reports 2\.0\.0-rc1/);
      g.version = '2.0.0';
      const good = await cli(p, 'switch', 'shop', 'green', '--expect-version', '2.0.0');
      assert.equal(good.code, 0, good.stderr);
      assert.match(good.stdout, /active: green/);
    });
  });
});
