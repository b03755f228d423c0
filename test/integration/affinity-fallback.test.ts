import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import pino from 'pino';
import { request } from 'undici';
import { startProxy, twoPools } from '../helpers/proxy.ts';
import { startUpstream, useUpstreams } from '../helpers/upstream.ts';

const AFFINITY_SECRET = 'affinity-secret-0123456789';

/**
 * docs/routing.md §3: a pin to a pool that cannot serve is ignored, never a 503 when another
 * pool can. `decide` skips a pin whose pool has no target up, but the first pinned requests after
 * the draining pool's last target dies reach it before active checks or the refused-connection
 * backoff know: those are routed again by weight from the failed connect.
 */
describe('a pin to a draining pool whose last target just died', () => {
  const up = useUpstreams('green');
  const variants = [
    { engine: 'native', health: false },
    { engine: 'native', health: true },
    { engine: 'undici', health: false },
    { engine: 'undici', health: true },
  ] as const;

  for (const { engine, health } of variants) {
    it(`falls back to the weights at once, 24 of 24 answered by green, recorded by weight (engine ${engine}, health checks ${health ? 'on' : 'off'})`, async (t) => {
      const blue = await startUpstream('blue');
      const access: Record<string, unknown>[] = [];
      // pino writes each line to any object with write(): the access lines land here
      const logger = pino({ level: 'info' }, { write: (line: string) => void access.push(JSON.parse(line) as Record<string, unknown>) });
      const extra = { affinity: { secret: AFFINITY_SECRET, window: '10m' }, ...(health ? { health: { interval: '2s', timeout: '1s', fall: 3, rise: 1 } } : {}) };
      const p = await startProxy({ engine, log: { level: 'info', accessSample: 1 }, apps: [twoPools(blue.url, up.green.url, extra)] }, { logger });
      t.after(async () => {
        await p.close();
        await blue.close();
      });
      // three cookie-keeping browsers: each keeps whatever pin the proxy sets
      const pins = ['', '', ''];
      const visit = async (i: number) => {
        const r = await p.get('/', pins[i] === '' ? {} : { cookie: pins[i] as string });
        const set = r.headers['set-cookie'];
        if (typeof set === 'string') pins[i] = set.split(';')[0] as string;
        return r;
      };
      for (let i = 0; i < 3; i++) assert.equal((await visit(i)).servedBy, 'blue@1.0.0');
      assert.equal((await p.admin('POST', '/v1/apps/shop/switch', { to: 'green' })).status, 200);
      for (let i = 0; i < 3; i++) assert.equal((await visit(i)).servedBy, 'blue@1.0.0', 'the sessions finish on blue while it serves');
      await blue.close(); // blue's only target dies; nothing has noticed yet
      access.length = 0;
      const seen: string[] = [];
      for (let round = 0; round < 8; round++) {
        for (let i = 0; i < 3; i++) {
          const r = await visit(i);
          seen.push(`${r.status} ${r.servedBy ?? '-'}`);
        }
      }
      assert.deepEqual(seen, Array.from({ length: 24 }, () => '200 green@2.0.0'));
      assert.ok(
        pins.every((pin) => pin.startsWith('sy_pin=green.')),
        `each browser got a green pin: ${pins.join(', ')}`,
      );
      const lines = access.filter((l) => l.access === true);
      assert.equal(lines.length, 24);
      assert.deepEqual(
        lines.map((l) => `${l.pool as string} ${l.status as number} ${l.by as string}`),
        Array.from({ length: 24 }, () => 'green 200 weights'),
        'every one is recorded as routed by weight to green',
      );
      assert.equal(p.sy.runtime.pool('shop', 'blue')?.counts(Date.now()).pinned, 3, 'only the requests blue served count as pinned');
    });
  }
});

describe('the fallback from a dead pinned pool', () => {
  const up = useUpstreams('green', 'red');

  it('routes by the sticky bucket exactly as without a pin: each browser lands where whereis says, recorded as routed by the weights', async (t) => {
    const blue = await startUpstream('blue');
    const access: Record<string, unknown>[] = [];
    const logger = pino({ level: 'info' }, { write: (line: string) => void access.push(JSON.parse(line) as Record<string, unknown>) });
    const app = {
      name: 'shop',
      hosts: ['*'],
      pools: { blue: { version: '1.0.0', targets: [blue.url] }, green: { version: '2.0.0', targets: [up.green.url] }, red: { version: '3.0.0', targets: [up.red.url] } },
      sticky: { key: ['cookie:session'] },
      affinity: { secret: AFFINITY_SECRET, window: '10m' },
    };
    const p = await startProxy({ log: { level: 'info', accessSample: 1 }, apps: [app] }, { logger });
    t.after(async () => {
      await p.close();
      await blue.close();
    });
    const sessions = Array.from({ length: 8 }, (_, i) => `session=browser-${i}`);
    const pins: string[] = [];
    for (const s of sessions) {
      const r = await p.get('/', { cookie: s });
      assert.equal(r.servedBy, 'blue@1.0.0');
      pins.push(String(r.headers['set-cookie']).split(';')[0] as string);
    }
    assert.equal((await p.admin('PUT', '/v1/apps/shop/weights', { weights: { blue: 0, green: 50, red: 50 } })).status, 200);
    assert.equal((await p.get('/', { cookie: `${sessions[0] as string}; ${pins[0] as string}` })).servedBy, 'blue@1.0.0', 'the pin holds while blue serves');
    await blue.close();
    access.length = 0;
    const expected: string[] = [];
    const got: string[] = [];
    for (const [i, s] of sessions.entries()) {
      const where = (await p.admin('GET', `/v1/apps/shop/whereis?key=browser-${i}`)).body.pool as string;
      expected.push(`200 ${where}`);
      const r = await p.get('/', { cookie: `${s}; ${pins[i] as string}` });
      got.push(`${r.status} ${r.servedBy?.split('@')[0] ?? '-'}`);
      if (i === 0) assert.match(String(r.headers['set-cookie']), new RegExp(`^sy_pin=${where}\\.2\\.`), 'the response pins the pool it went to');
    }
    assert.deepEqual(got, expected);
    assert.ok(new Set(expected).size === 2, `the browsers spread over green and red: ${expected.join(', ')}`);
    const first = access.find((l) => l.access === true);
    assert.deepEqual([first?.status, first?.by], [200, 'weights']);
  });

  for (const engine of ['native', 'undici'] as const) {
    it(`moves a pinned POST blue refused with its whole body: green receives it once (engine ${engine})`, async (t) => {
      const blue = await startUpstream('blue');
      const p = await startProxy({ engine, apps: [twoPools(blue.url, up.green.url, { affinity: { secret: AFFINITY_SECRET, window: '10m' } })] });
      t.after(async () => {
        await p.close();
        await blue.close();
      });
      const pin = String((await p.get('/')).headers['set-cookie']).split(';')[0] as string;
      assert.equal((await p.admin('POST', '/v1/apps/shop/switch', { to: 'green' })).status, 200);
      assert.equal((await p.get('/', { cookie: pin })).servedBy, 'blue@1.0.0');
      await blue.close();
      const before = up.green.seen.length;
      const body = 'x'.repeat(100_000);
      const r = await request(`${p.proxyUrl}/order`, { method: 'POST', headers: { cookie: pin }, body });
      const answer = JSON.parse(await r.body.text()) as { pool: string; body: string };
      assert.deepEqual([r.statusCode, r.headers['x-served-by'], answer.pool, answer.body.length], [200, 'green@2.0.0', 'green', body.length]);
      assert.equal(up.green.seen.length, before + 1);
    });
  }

  it('never sends elsewhere a pinned request that reached the draining pool: a POST blue reset answers 502, green never sees it', async (t) => {
    let resetting = false;
    const blue = await startUpstream('blue', (req, res) => {
      if (resetting) return req.socket.destroy();
      res.end('blue');
    });
    const p = await startProxy({ apps: [twoPools(blue.url, up.green.url, { affinity: { secret: AFFINITY_SECRET, window: '10m' } })] });
    t.after(async () => {
      await p.close();
      await blue.close();
    });
    const pin = String((await p.get('/')).headers['set-cookie']).split(';')[0] as string;
    assert.equal((await p.admin('POST', '/v1/apps/shop/switch', { to: 'green' })).status, 200);
    resetting = true;
    const before = up.green.seen.length;
    const r = await request(`${p.proxyUrl}/order`, { method: 'POST', headers: { cookie: pin }, body: 'pay once' });
    await r.body.text();
    assert.equal(r.statusCode, 502);
    assert.equal(up.green.seen.length, before, 'the POST was not sent again to green');
    assert.equal(blue.seen.filter((s) => s.method === 'POST').length, 1);
  });
});
