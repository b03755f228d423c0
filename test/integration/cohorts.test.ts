import assert from 'node:assert/strict';
import { once } from 'node:events';
import { writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { connect as h2connect } from 'node:http2';
import { describe, it } from 'node:test';
import { request } from 'undici';
import { createTestCa } from '../helpers/certs.ts';
import { runCliCaptured } from '../helpers/cli.ts';
import { startProxy, TOKEN, twoPools } from '../helpers/proxy.ts';
import { startUpstream, useUpstreams } from '../helpers/upstream.ts';
import { openWs, echo, startWsUpstream, wsUrl } from '../helpers/ws.ts';
import { until } from '../helpers/wait.ts';

const served = (r: { servedBy: string | undefined }): string | undefined => r.servedBy?.split('@')[0];

/** The Prometheus text of a proxy's /metrics (no token needed by default). */
async function metricsOf(p: { adminUrl: string }): Promise<string> {
  const r = await request(`${p.adminUrl}/metrics`);
  return r.body.text();
}

describe('cohort rules', () => {
  const up = useUpstreams('blue', 'green', 'red');
  const threePools = (extra: Record<string, unknown> = {}) => ({
    ...twoPools(up.blue.url, up.green.url),
    pools: { blue: { version: '1.0.0', targets: [up.blue.url] }, green: { version: '2.0.0', targets: [up.green.url] }, red: { version: '3.0.0', targets: [up.red.url] } },
    ...extra,
  });

  it('route by header, cookie, query, path and method from the config file; whereis says the same, with `by`', async (t) => {
    const p = await startProxy({
      apps: [
        threePools({
          rules: [
            { name: 'beta-testers', match: { header: { 'X-Beta': '1' } }, to: 'green' },
            { name: 'staff', match: { cookie: { team: { regex: '^(qa|dev)$' } }, path: { prefix: '/api/' }, method: ['GET', 'POST'] }, to: 'red' },
            { name: 'flag', match: { query: { canary: { present: true } } }, to: 'green' },
          ],
        }),
      ],
    });
    t.after(async () => {
      await p.close();
    });
    const cases: [string, Record<string, string>, string, string][] = [
      ['/', { 'x-beta': '1' }, 'green', 'rule:beta-testers'],
      ['/', { 'x-beta': '0' }, 'blue', 'weights'],
      ['/api/cart', { cookie: 'a=b; team=qa' }, 'red', 'rule:staff'],
      ['/web', { cookie: 'team=qa' }, 'blue', 'weights'],
      ['/x?canary', {}, 'green', 'rule:flag'],
      ['/x?other=1', {}, 'blue', 'weights'],
    ];
    for (const [path, headers, pool, by] of cases) {
      assert.equal(served(await p.get(path, headers)), pool, `${path} ${JSON.stringify(headers)}`);
      const q = new URLSearchParams({ path });
      for (const [k, v] of Object.entries(headers)) {
        if (k === 'cookie') for (const c of v.split('; ')) q.append('cookie', c);
        else q.append('header', `${k}:${v}`);
      }
      const w = await p.admin('GET', `/v1/apps/shop/whereis?${q}`);
      assert.equal(w.status, 200);
      assert.deepEqual([w.body.pool, w.body.by], [pool, by], `whereis ${q}`);
    }
    assert.match(await metricsOf(p), /switchyard_rule_requests_total\{app="shop",rule="staff",pool="red"\} 1/);
  });

  it('PUT rules is a write like any other: If-Match, 412, history `rules`, 400 naming the field, 409 for a pool still named', async (t) => {
    const p = await startProxy({ apps: [threePools()] });
    t.after(async () => {
      await p.close();
    });
    const rules = [{ name: 'beta', match: { header: { 'x-beta': '1' } }, to: 'green' }];
    assert.equal(served(await p.get('/', { 'x-beta': '1' })), 'blue');
    const stale = await p.admin('PUT', '/v1/apps/shop/rules', { rules }, { 'if-match': '"7"' });
    assert.equal(stale.status, 412);
    const ok = await p.admin('PUT', '/v1/apps/shop/rules', { rules, reason: 'beta cohort' }, { 'if-match': '"1"' });
    assert.equal(ok.status, 200);
    assert.equal(ok.body.revision, 2);
    assert.deepEqual(ok.body.rules, rules);
    assert.equal(ok.headers.etag, '"2"');
    assert.equal(served(await p.get('/', { 'x-beta': '1' })), 'green');
    const history = await p.admin('GET', '/v1/apps/shop/history');
    assert.deepEqual([history.body.entries[0].action, history.body.entries[0].reason, history.body.entries[0].rules], ['rules', 'beta cohort', rules]);

    const evil = await p.admin('PUT', '/v1/apps/shop/rules', { rules: [{ name: 'x', match: { header: { 'x-v': { regex: '(a+)\\1' } } }, to: 'green' }] });
    assert.equal(evil.status, 400);
    assert.equal(evil.body.error.details[0].path, 'rules[0].match.header.x-v.regex');
    const unknown = await p.admin('PUT', '/v1/apps/shop/rules', { rules: [{ name: 'x', match: {}, to: 'purple' }] });
    assert.equal(unknown.status, 400);
    assert.equal(unknown.body.error.details[0].path, 'rules[0].to');

    // green is at weight 0, yet a rule sends to it: not drained, and not removable
    const drain = await p.admin('GET', '/v1/apps/shop/pools/green/drain');
    assert.deepEqual([drain.body.weight, drain.body.drained, drain.body.reason], [0, false, 'rule beta']);
    const del = await p.admin('DELETE', '/v1/apps/shop/pools/green', { force: true });
    assert.equal(del.status, 409);
    assert.match(del.body.error.message, /rule beta/);
    // a definition that drops the pool and the rule together is accepted
    const cfg = (await p.admin('GET', '/v1/config')).body.apps[0];
    const { green: _g, ...pools } = cfg.pools;
    const replaced = await p.admin('PUT', '/v1/apps/shop', { definition: { ...cfg, pools, rules: [] } });
    assert.equal(replaced.status, 200);
    assert.deepEqual(Object.keys(replaced.body.pools), ['blue', 'red']);
    assert.equal(served(await p.get('/', { 'x-beta': '1' })), 'blue');
  });

  it('a rule whose pool has no target up is skipped: never a 503 another pool could have served', async (t) => {
    const dead = await startUpstream('dead');
    await dead.close();
    const p = await startProxy({
      apps: [
        {
          ...twoPools(up.blue.url, dead.url),
          health: { path: '/healthz', interval: '200ms', timeout: '2s', fall: 2, rise: 1 },
          rules: [{ name: 'beta', match: { header: { 'x-beta': '1' } }, to: 'green' }],
        },
      ],
    });
    t.after(async () => {
      await p.close();
    });
    await until(t, 'green seen down', async () => (await p.admin('GET', '/v1/apps/shop')).body.pools.green.healthy === false, { timeout: 10_000 });
    for (let i = 0; i < 20; i++) {
      const r = await p.get('/', { 'x-beta': '1' });
      assert.deepEqual([r.status, served(r)], [200, 'blue']);
    }
    const w = await p.admin('GET', '/v1/apps/shop/whereis?header=x-beta:1');
    assert.deepEqual([w.body.pool, w.body.by], ['blue', 'weights']);
  });

  it('a share of a cohort is sticky by the app\'s bucket; the upgrade path routes by the same rules', async (t) => {
    const ws = await startWsUpstream('green-ws');
    const p = await startProxy({
      apps: [
        {
          ...twoPools(up.blue.url, ws.url),
          sticky: { key: ['header:x-user-id'] },
          rules: [
            { name: 'half', match: { header: { 'x-beta': '1' } }, to: 'green', share: 50 },
            { name: 'sockets', match: { path: { prefix: '/ws' } }, to: 'green' },
          ],
        },
      ],
    });
    t.after(async () => {
      await p.close();
      await ws.close();
    });
    let greens = 0;
    for (let i = 0; i < 100; i++) {
      const key = `user-${i}`;
      const first = served(await p.get('/', { 'x-beta': '1', 'x-user-id': key }));
      for (let k = 0; k < 2; k++) assert.equal(served(await p.get('/', { 'x-beta': '1', 'x-user-id': key })), first, `${key} stays`);
      const w = await p.admin('GET', `/v1/apps/shop/whereis?key=${key}&header=x-beta:1`);
      assert.equal(w.body.pool, first, `whereis of ${key}`);
      assert.equal(w.body.by, first === 'green' ? 'rule:half' : 'weights');
      if (first === 'green') greens++;
    }
    assert.ok(greens > 25 && greens < 75, `${greens} of 100 users in the 50 % share`);
    const sock = await openWs(wsUrl(p.proxyUrl, '/ws'));
    // the upgrade went where the rule says: the green upstream answers with its name
    assert.equal(await echo(sock, 'hi'), 'green-ws:hi');
    sock.close();
  });
});

describe('cohort rules over HTTP/2', () => {
  const up = useUpstreams('blue', 'green');

  it('h2 requests meet the same rules (header, cookie split over h2 fields), with the same by in whereis', async (t) => {
    const ca = createTestCa();
    t.after(() => ca.close());
    const cert = ca.issue('shop', ['shop.test']);
    const p = await startProxy({
      listen: { host: '127.0.0.1', port: 0, tls: { port: 0, certs: [{ cert: cert.cert, key: cert.key }] } },
      apps: [twoPools(up.blue.url, up.green.url, { rules: [{ name: 'beta', match: { header: { 'x-beta': '1' } }, to: 'green' }, { name: 'staff', match: { cookie: { team: 'qa' } }, to: 'green' }] })],
    });
    t.after(() => p.close());
    const addr = p.sy.edge?.listener.server.address();
    assert.ok(addr !== null && typeof addr === 'object');
    const session = h2connect(`https://127.0.0.1:${addr.port}`, { ca: ca.caPem, servername: 'shop.test' });
    t.after(() => session.close());
    const get = async (headers: Record<string, string | string[]>): Promise<string> => {
      const stream = session.request({ ':path': '/h2', ':authority': 'shop.test', ...headers });
      const [h] = (await once(stream, 'response')) as [Record<string, unknown>];
      stream.resume();
      await once(stream, 'end');
      return String(h['x-served-by']).split('@')[0] as string;
    };
    assert.equal(await get({ 'x-beta': '1' }), 'green');
    assert.equal(await get({}), 'blue');
    // h2 may send each cookie in its own field (RFC 9113 §8.2.3): the rule sees them joined
    assert.equal(await get({ cookie: ['a=1', 'team=qa'] }), 'green');
    const w = await p.admin('GET', '/v1/apps/shop/whereis?cookie=team=qa');
    assert.deepEqual([w.body.pool, w.body.by], ['green', 'rule:staff']);
  });
});

describe('routing CLI', () => {
  const up = useUpstreams('blue', 'green');

  it('rule add|remove, rules set|clear, mirror and whereis --header write and read what the API does', async (t) => {
    const p = await startProxy({ apps: [twoPools(up.blue.url, up.green.url, { sticky: { key: ['header:x-user-id'] } })] });
    t.after(() => p.close());
    const cli = (...argv: string[]) => runCliCaptured(argv, { SWITCHYARD_ADMIN_URL: p.adminUrl, SWITCHYARD_TOKEN: TOKEN });
    const add = await cli('rule', 'add', 'shop', 'beta', '--to', 'green', '--header', 'x-beta=1', '--path-prefix', '/api/', '--share', '50', '--reason', 'beta cohort');
    assert.equal(add.code, 0, add.stderr);
    const listed = await cli('rules', 'shop');
    assert.equal(listed.stdout.trim(), '1. beta → green (50 %): header x-beta=1, path starts with /api/');
    const where = await cli('whereis', 'shop', '--header', 'x-beta=1', '--path', '/api/cart');
    assert.equal(where.code, 0);
    assert.match(where.stdout, /^this request: no sticky key, split at random/);
    // a key inside the share goes to green by the rule, and requests agree
    let inShare: string | undefined;
    for (let i = 0; i < 50 && inShare === undefined; i++) {
      const w = await cli('whereis', 'shop', `u${i}`, '--header', 'x-beta=1', '--path', '/api/x');
      if (/→ green \(2\.0\.0\) by rule:beta/.test(w.stdout)) inShare = `u${i}`;
    }
    assert.ok(inShare !== undefined, 'some key falls in the 50 % share');
    assert.equal(served(await p.get('/api/x', { 'x-beta': '1', 'x-user-id': inShare })), 'green');
    assert.equal((await cli('rule', 'remove', 'shop', 'nope')).code, 2);
    assert.equal((await cli('rule', 'remove', 'shop', 'beta')).code, 0);
    assert.equal((await cli('rules', 'shop')).stdout.trim(), 'shop: no rules');
    const file = join(p.dir, 'rules.yaml');
    await writeFile(file, 'rules:\n  - { name: staff, match: { cookie: { team: { regex: "^(qa|dev)$" } } }, to: green }\n');
    assert.equal((await cli('rules', 'shop', 'set', '-f', file)).code, 0);
    assert.equal(served(await p.get('/', { cookie: 'team=dev' })), 'green');
    assert.equal((await cli('rules', 'shop', 'clear')).code, 0);
    assert.equal(served(await p.get('/', { cookie: 'team=dev' })), 'blue');
    const mirror = await cli('mirror', 'shop', 'green', '--share', '10', '--compare');
    assert.equal(mirror.code, 0, mirror.stderr);
    assert.deepEqual((await p.admin('GET', '/v1/apps/shop')).body.mirror, { to: 'green', share: 10, compare: true });
    assert.equal((await cli('mirror', 'shop', 'off')).code, 0);
    assert.equal((await p.admin('GET', '/v1/apps/shop')).body.mirror, null);
    assert.equal((await cli('mirror', 'shop', 'purple', '--share', '10')).code, 1);
    const actions = (await p.admin('GET', '/v1/apps/shop/history?limit=5')).body.entries.map((e: { action: string }) => e.action);
    assert.deepEqual(actions, ['mirror', 'mirror', 'rules', 'rules', 'rules']);
  });
});

describe('mirror', () => {
  const up = useUpstreams('blue');

  it('copies GETs to the mirror pool with the same request id and X-Switchyard-Mirror, never POSTs; compare counts mismatches', async (t) => {
    const green = await startUpstream('green', (req, res) => {
      res.writeHead(req.url === '/broken' ? 500 : 200);
      res.end('green');
    });
    const p = await startProxy({ apps: [twoPools(up.blue.url, green.url, { mirror: { to: 'green', share: 100, compare: true } })] });
    t.after(async () => {
      await p.close();
      await green.close();
    });
    const r = await p.get('/a', {});
    assert.deepEqual([r.status, served(r)], [200, 'blue']);
    await until(t, 'the copy reached green', () => green.seen.length === 1);
    const copy = green.seen[0]!;
    assert.equal(copy.headers['x-switchyard-mirror'], '1');
    assert.equal(copy.headers['x-request-id'], r.headers['x-request-id']);
    assert.equal(copy.url, '/a');
    const state = await p.admin('GET', '/v1/apps/shop');
    assert.deepEqual(state.body.mirror, { to: 'green', share: 100, compare: true });
    for (let i = 0; i < 4; i++) await p.get('/broken');
    await until(t, 'four more copies', () => green.seen.length === 5);
    const metrics = () => metricsOf(p);
    await until(t, 'four mismatches counted', async () => /switchyard_mirror_mismatches_total\{app="shop",pool="green"\} 4/.test(await metrics()));
    const text = await metrics();
    assert.match(text, /switchyard_mirror_requests_total\{app="shop",pool="green",outcome="2xx"\} 1/);
    assert.match(text, /switchyard_mirror_requests_total\{app="shop",pool="green",outcome="5xx"\} 4/);
    assert.match(text, /switchyard_mirror_compared_total\{app="shop",pool="green",live="2xx",mirror="5xx"\} 4/);
    // the stats show the mirror pool beside the live ones, with the mismatch rate
    await until(t, 'stats see five pairs', async () => (await p.admin('GET', '/v1/apps/shop/stats')).body.mirror?.compare['10s'].pairs === 5);
    const stats = (await p.admin('GET', '/v1/apps/shop/stats')).body;
    assert.equal(stats.mirror.pool, 'green');
    assert.equal(stats.mirror.windows['10s'].requests, 5);
    assert.equal(stats.mirror.windows['10s'].errorRate, 0.8);
    assert.equal(stats.mirror.compare['10s'].mismatchRate, 0.8);
    // a method not listed is never copied
    const w = await request(`${p.proxyUrl}/write`, { method: 'POST', body: 'x' });
    await w.body.text();
    assert.equal(w.statusCode, 200);
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(green.seen.length, 5);
    // the mirror pool is not drained while the mirror sends to it
    const drain = await p.admin('GET', '/v1/apps/shop/pools/green/drain');
    assert.deepEqual([drain.body.drained, drain.body.reason], [false, 'mirror']);
    // PUT mirror null removes it (history action `mirror`)
    const off = await p.admin('PUT', '/v1/apps/shop/mirror', { mirror: null, reason: 'enough' });
    assert.equal(off.status, 200);
    assert.equal(off.body.mirror, null);
    assert.equal((await p.admin('GET', '/v1/apps/shop/history?limit=1')).body.entries[0].action, 'mirror');
    await p.get('/after');
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(green.seen.length, 5);
  });

  for (const engine of ['native', 'undici'] as const) {
    it(`copies a listed method's body up to maxBody whole, beside the live upload (${engine} engine); a larger or chunked one is skipped and counted`, async (t) => {
      const bodies: string[] = [];
      const green = await startUpstream('green', (req, res) => {
        let b = '';
        req.setEncoding('utf8');
        req.on('data', (c: string) => (b += c));
        req.on('end', () => {
          bodies.push(`${req.method} ${req.url} ${req.headers['content-length']} ${b}`);
          res.end('ok');
        });
      });
      const p = await startProxy({ engine, apps: [twoPools(up.blue.url, green.url, { mirror: { to: 'green', methods: ['POST'], maxBody: 1000 } })] });
      t.after(async () => {
        await p.close();
        await green.close();
      });
      const post = async (path: string, body: string | Readable) => {
        const r = await request(`${p.proxyUrl}${path}`, { method: 'POST', body });
        const text = await r.body.text();
        return { status: r.statusCode, echoed: (JSON.parse(text) as { body: string }).body };
      };
      const payload = 'x'.repeat(900);
      assert.deepEqual(await post('/small', payload), { status: 200, echoed: payload });
      await until(t, 'the copy with its body reached green', () => bodies.length === 1);
      assert.equal(bodies[0], `POST /small 900 ${payload}`);
      const big = 'y'.repeat(1001);
      assert.deepEqual(await post('/big', big), { status: 200, echoed: big });
      assert.deepEqual(await post('/chunked', Readable.from(['a', 'b'])), { status: 200, echoed: 'ab' });
      await until(t, 'two bodies skipped', async () => /outcome="skipped_body"\} 2/.test(await metricsOf(p)));
      assert.equal(bodies.length, 1);
      assert.match(await metricsOf(p), /switchyard_mirror_requests_total\{app="shop",pool="green",outcome="2xx"\} 1/);
    });
  }

  it('a mirror target that never answers costs the live requests nothing, and copies beyond maxInflight are skipped and counted', async (t) => {
    const sockets = new Set<Socket>();
    // accepts, reads, never answers
    const hang = createServer((s) => {
      sockets.add(s);
      s.on('error', () => undefined);
      s.resume();
    });
    await new Promise<void>((r) => hang.listen(0, '127.0.0.1', r));
    const hangUrl = `http://127.0.0.1:${(hang.address() as AddressInfo).port}`;
    const p = await startProxy({ apps: [twoPools(up.blue.url, hangUrl, { mirror: { to: 'green', share: 100, maxInflight: 5 } })] });
    t.after(async () => {
      await p.close();
      for (const s of sockets) s.destroy();
      hang.close();
    });
    const put = await p.admin('PUT', '/v1/apps/shop/mirror', { mirror: { to: 'green', share: 100, maxInflight: 5, maxBody: '1KiB' } });
    assert.equal(put.status, 200);
    for (let i = 0; i < 30; i++) {
      const started = performance.now();
      const r = await p.get(`/live-${i}`);
      assert.deepEqual([r.status, served(r)], [200, 'blue']);
      // generous for a loaded machine: the copy's hang (60 s response timeout) never shows here
      assert.ok(performance.now() - started < 5_000);
    }
    await until(t, 'five copies in flight', () => sockets.size === 5);
    const text = await metricsOf(p);
    assert.match(text, /switchyard_mirror_requests_total\{app="shop",pool="green",outcome="skipped_busy"\} 25/);
    assert.equal(p.sy.dataPlane.mirror.inflight, 5);
  });
});
