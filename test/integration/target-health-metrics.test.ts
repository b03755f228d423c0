import assert from 'node:assert/strict';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { describe, it } from 'node:test';
import { request } from 'undici';
import { parseMetrics, type Series } from '../helpers/prometheus.ts';
import { startProxy, twoPools, type TestProxy } from '../helpers/proxy.ts';
import { startUpstream } from '../helpers/upstream.ts';

async function scrape(p: TestProxy): Promise<Series[]> {
  const r = await request(`${p.adminUrl}/metrics`);
  assert.equal(r.statusCode, 200);
  return parseMetrics(await r.body.text());
}

/** `{ "pool target": value }` of switchyard_target_up, and `{ pool: value }` of a pool gauge. */
const targets = (s: Series[]) => Object.fromEntries(s.filter((x) => x.name === 'switchyard_target_up').map((x) => [`${x.labels.pool} ${x.labels.target}`, x.value]));
const perPool = (s: Series[], name: string) => Object.fromEntries(s.filter((x) => x.name === name && x.labels.app === 'shop').map((x) => [x.labels.pool, x.value]));

describe('target health in /metrics', () => {
  it('reports each target up or down by the health checks, and each pool\'s healthy count, following targets and pools as they change', async (t) => {
    let b2Healthy = true;
    const ok = (name: string) => (_req: IncomingMessage, res: ServerResponse) => res.end(name);
    const b1 = await startUpstream('b1', ok('b1'));
    const b2 = await startUpstream('b2', (req, res) => {
      res.writeHead(req.url === '/healthz' && !b2Healthy ? 500 : 200).end('b2');
    });
    const g = await startUpstream('g', ok('g'));
    const r1 = await startUpstream('r1', ok('r1'));
    const p = await startProxy({ apps: [twoPools([b1.url, b2.url], g.url, { health: { interval: '50ms', timeout: '1s', rise: 1, fall: 1 } })] });
    t.after(async () => {
      await p.close();
      await Promise.all([b1, b2, g, r1].map((u) => u.close()));
    });

    let s = await scrape(p);
    assert.deepEqual(targets(s), { [`blue ${b1.url}`]: 1, [`blue ${b2.url}`]: 1, [`green ${g.url}`]: 1 });
    assert.deepEqual(perPool(s, 'switchyard_pool_healthy_targets'), { blue: 2, green: 1 });
    assert.deepEqual(perPool(s, 'switchyard_pool_targets'), { blue: 2, green: 1 });

    b2Healthy = false;
    await t.waitFor(async () => assert.equal(targets(await scrape(p))[`blue ${b2.url}`], 0), { timeout: 10_000, interval: 50 });
    s = await scrape(p);
    assert.equal(targets(s)[`blue ${b1.url}`], 1);
    assert.deepEqual(perPool(s, 'switchyard_pool_healthy_targets'), { blue: 1, green: 1 });

    b2Healthy = true;
    await t.waitFor(async () => assert.deepEqual(perPool(await scrape(p), 'switchyard_pool_healthy_targets'), { blue: 2, green: 1 }), { timeout: 10_000, interval: 50 });

    // a pool added live appears; a target removed leaves the scrape; a removed pool leaves it too (not "0 healthy")
    assert.equal((await p.admin('PUT', '/v1/apps/shop/pools/red', { version: '3.0.0', targets: [r1.url] })).status, 200);
    assert.equal((await p.admin('DELETE', `/v1/apps/shop/pools/blue/targets?url=${encodeURIComponent(b2.url)}`)).status, 200);
    s = await scrape(p);
    assert.deepEqual(targets(s), { [`blue ${b1.url}`]: 1, [`green ${g.url}`]: 1, [`red ${r1.url}`]: 1 });
    assert.deepEqual(perPool(s, 'switchyard_pool_targets'), { blue: 1, green: 1, red: 1 });
    assert.equal((await p.admin('DELETE', '/v1/apps/shop/pools/red', { force: true })).status, 200);
    s = await scrape(p);
    assert.deepEqual(perPool(s, 'switchyard_pool_healthy_targets'), { blue: 1, green: 1 });
    assert.equal(Object.keys(targets(s)).some((k) => k.startsWith('red ')), false);
  });

  it('reports a pool whose every target is down as 0 healthy targets', async (t) => {
    const down = await startUpstream('down', (_req, res) => res.writeHead(503).end());
    const g = await startUpstream('g');
    const p = await startProxy({ apps: [twoPools(down.url, g.url, { health: { interval: '50ms', timeout: '1s', rise: 1, fall: 1 } })] });
    t.after(async () => {
      await p.close();
      await Promise.all([down.close(), g.close()]);
    });
    await t.waitFor(async () => assert.deepEqual(perPool(await scrape(p), 'switchyard_pool_healthy_targets'), { blue: 0, green: 1 }), { timeout: 10_000, interval: 50 });
    assert.equal(targets(await scrape(p))[`blue ${down.url}`], 0);
  });
});
