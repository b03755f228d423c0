import assert from 'node:assert/strict';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { request } from 'undici';
import { GUARD_PLACES } from '../../src/dataplane/guard.ts';
import { LIMIT_EVENTS } from '../../src/dataplane/limits.ts';
import { PROXY_ERROR_CODES, STATUS_CLASSES } from '../../src/metrics/metrics.ts';
import { previewSignature } from '../../src/routing/snapshot.ts';
import { nextSecond } from '../helpers/clock.ts';
import { parseMetrics, type Series } from '../helpers/prometheus.ts';
import { closedPort } from '../helpers/ports.ts';
import { startProxy, twoPools, type TestProxy } from '../helpers/proxy.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';
import { NOTIFY_KINDS, NOTIFY_RESULTS } from '../../src/rollout/notify.ts';
import { until } from '../helpers/wait.ts';

const PREVIEW_SECRET = 'preview-secret-0123456789';

function pick(series: Series[], name: string, labels: Record<string, string> = {}): number {
  const hits = series.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  assert.equal(hits.length, 1, `one series ${name}${JSON.stringify(labels)}, found ${hits.length}`);
  return (hits[0] as Series).value;
}

async function scrape(p: TestProxy): Promise<{ series: Series[]; text: string; contentType: string }> {
  const r = await request(`${p.adminUrl}/metrics`);
  assert.equal(r.statusCode, 200);
  const text = await r.body.text();
  return { series: parseMetrics(text), text, contentType: String(r.headers['content-type']) };
}

describe('metrics with real traffic', () => {
  let blue: Upstream;
  let green: Upstream;
  let p: TestProxy;
  /** the `down` app's one target, refusing connections */
  let dead: string;
  before(async () => {
    const answer = (name: string) => (req: IncomingMessage, res: ServerResponse) => {
      res.writeHead(req.url?.startsWith('/fail') ? 500 : req.url?.startsWith('/moved') ? 302 : 200, { 'content-type': 'text/plain' });
      res.end(name);
    };
    blue = await startUpstream('blue', answer('blue'));
    green = await startUpstream('green', answer('green'));
    dead = `http://127.0.0.1:${await closedPort()}`;
    p = await startProxy({
      apps: [
        twoPools(blue.url, green.url, { preview: { secret: PREVIEW_SECRET } }),
        { name: 'down', hosts: ['down.example.com'], pools: { blue: { version: '1.0.0', targets: [dead] }, green: { version: '2.0.0', targets: [dead] } } },
      ],
    });
  });
  after(async () => {
    await p.close();
    await blue.close();
    await green.close();
  });

  it('serves the Prometheus text format with every metric declared', async () => {
    const { text, contentType } = await scrape(p);
    assert.match(contentType, /^text\/plain; version=0\.0\.4/);
    for (const [name, type] of [
      ['switchyard_requests_total', 'counter'],
      ['switchyard_proxy_errors_total', 'counter'],
      ['switchyard_response_head_seconds', 'histogram'],
      ['switchyard_stream_duration_seconds', 'histogram'],
      ['switchyard_inflight_requests', 'gauge'],
      ['switchyard_upgraded_connections', 'gauge'],
      ['switchyard_pool_weight_ratio', 'gauge'],
      ['switchyard_routing_revision', 'gauge'],
      ['switchyard_routing_state_age_seconds', 'gauge'],
      ['switchyard_store_connected', 'gauge'],
      ['switchyard_preview_rejected_total', 'counter'],
      ['switchyard_shutdown_cut_total', 'counter'],
      ['process_cpu_user_seconds_total', 'counter'],
      ['nodejs_eventloop_lag_seconds', 'gauge'],
    ]) {
      assert.ok(text.includes(`# TYPE ${name} ${type}\n`), `${name} is a ${type}`);
    }
    // every class of every pool exists from the start, so rate() never sees a series appear
    const { series } = await scrape(p);
    for (const app of ['shop', 'down']) for (const pool of ['blue', 'green']) for (const c of STATUS_CLASSES) assert.equal(typeof pick(series, 'switchyard_requests_total', { app, pool, class: c }), 'number');
  });

  it('counts requests by status class, errors by code, and their durations', async () => {
    const before = (await scrape(p)).series;
    for (let i = 0; i < 5; i++) assert.equal((await p.get(`/ok/${i}`)).status, 200);
    for (let i = 0; i < 2; i++) assert.equal((await p.get('/fail')).status, 500);
    assert.equal((await p.get('/moved')).status, 302);
    assert.equal((await p.get('/', { host: 'down.example.com' })).status, 503);
    const after = (await scrape(p)).series;
    const delta = (name: string, labels: Record<string, string>) => pick(after, name, labels) - pick(before, name, labels);

    assert.equal(delta('switchyard_requests_total', { app: 'shop', pool: 'blue', class: '2xx' }), 5);
    assert.equal(delta('switchyard_requests_total', { app: 'shop', pool: 'blue', class: '3xx' }), 1);
    assert.equal(delta('switchyard_requests_total', { app: 'shop', pool: 'blue', class: '5xx' }), 2);
    assert.equal(delta('switchyard_requests_total', { app: 'shop', pool: 'green', class: '2xx' }), 0);
    assert.equal(delta('switchyard_requests_total', { app: 'down', pool: 'blue', class: 'error' }), 1);
    assert.equal(delta('switchyard_proxy_errors_total', { app: 'down', pool: 'blue', code: 'NO_TARGET' }), 1);
    for (const h of ['switchyard_response_head_seconds', 'switchyard_stream_duration_seconds']) {
      assert.equal(delta(`${h}_count`, { app: 'shop', pool: 'blue' }), 8);
      assert.ok(delta(`${h}_sum`, { app: 'shop', pool: 'blue' }) >= 0);
      assert.equal(pick(after, `${h}_bucket`, { app: 'shop', pool: 'blue', le: '+Inf' }), pick(after, `${h}_count`, { app: 'shop', pool: 'blue' }));
      // cumulative buckets never decrease
      const buckets = after.filter((s) => s.name === `${h}_bucket` && s.labels.app === 'shop' && s.labels.pool === 'blue').map((s) => s.value);
      assert.deepEqual(buckets, [...buckets].sort((a, b) => a - b));
    }
    assert.equal(pick(after, 'switchyard_inflight_requests', { app: 'shop', pool: 'blue' }), 0);
    assert.equal(pick(after, 'switchyard_upgraded_connections', { app: 'shop', pool: 'blue' }), 0);
    assert.equal(pick(after, 'switchyard_store_connected'), 1);
  });

  it('follows the routing state: weights, revision, state age', async () => {
    const before = (await scrape(p)).series;
    assert.equal(pick(before, 'switchyard_pool_weight_ratio', { app: 'shop', pool: 'blue' }), 1);
    const rev = pick(before, 'switchyard_routing_revision', { app: 'shop' });
    const r = await p.admin('PUT', '/v1/apps/shop/weights', { weights: { blue: 75, green: 25 } });
    assert.equal(r.status, 200);
    const after = (await scrape(p)).series;
    assert.equal(pick(after, 'switchyard_pool_weight_ratio', { app: 'shop', pool: 'blue' }), 0.75);
    assert.equal(pick(after, 'switchyard_pool_weight_ratio', { app: 'shop', pool: 'green' }), 0.25);
    assert.equal(pick(after, 'switchyard_routing_revision', { app: 'shop' }), rev + 1);
    const age = pick(after, 'switchyard_routing_state_age_seconds', { app: 'shop' });
    assert.ok(age >= 0 && age < 5, `state age ${age}`);
    await p.admin('POST', '/v1/apps/shop/switch', { to: 'blue' });
  });

  it('counts rejected preview signatures per app', async () => {
    const before = (await scrape(p)).series;
    assert.equal((await p.get('/', { 'x-switchyard-preview': `green.${'ab'.repeat(32)}` })).servedBy, 'blue@1.0.0');
    assert.equal((await p.get('/', { 'x-switchyard-preview': `green.${previewSignature(PREVIEW_SECRET, 'shop', 'green')}` })).servedBy, 'green@2.0.0');
    const after = (await scrape(p)).series;
    assert.equal(pick(after, 'switchyard_preview_rejected_total', { app: 'shop' }) - pick(before, 'switchyard_preview_rejected_total', { app: 'shop' }), 1);
    assert.equal(pick(after, 'switchyard_preview_rejected_total', { app: 'down' }), 0);
  });

  it('keeps label values to configured names under random paths and Host headers', async () => {
    const before = (await scrape(p)).series;
    const junk = () => Math.random().toString(36).slice(2);
    await Promise.all(
      Array.from({ length: 60 }, (_, i) => p.get(`/${junk()}/${junk()}?q=${junk()}`, { host: i % 3 === 0 ? 'down.example.com' : `${junk()}.example.org:${1000 + i}`, 'x-request-id': junk() })),
    );
    const after = (await scrape(p)).series;
    const mine = (s: Series[]) => s.filter((x) => x.name.startsWith('switchyard_'));
    assert.equal(mine(after).length, mine(before).length, 'no new series');
    const allowed: Record<string, Set<string>> = {
      app: new Set(['shop', 'down']),
      pool: new Set(['blue', 'green']),
      class: new Set(STATUS_CLASSES),
      code: new Set(PROXY_ERROR_CODES),
      // switchyard_limit_enforced_total
      limit: new Set(LIMIT_EVENTS),
      // switchyard_request_exceptions_total
      place: new Set(GUARD_PLACES),
      // switchyard_rollouts_total, switchyard_rollout_notifications_total
      result: new Set(['succeeded', 'rolled-back', 'aborted', ...NOTIFY_RESULTS]),
      kind: new Set(NOTIFY_KINDS),
      // switchyard_target_up: the configured targets
      target: new Set([blue.url, green.url, dead]),
    };
    for (const s of mine(after)) {
      for (const [k, v] of Object.entries(s.labels)) {
        if (k === 'le') continue;
        assert.ok(allowed[k]?.has(v), `${s.name}: label ${k}="${v}" is not from the config`);
      }
    }
  });

  it('answers live stats per pool over 10 s and 60 s', async (t) => {
    const q = await startProxy({ apps: [twoPools(blue.url, green.url)] });
    t.after(async () => {
      await q.close();
    });
    await nextSecond();
    for (let i = 0; i < 6; i++) await q.get('/');
    await q.get('/fail');
    await q.admin('PUT', '/v1/apps/shop/weights', { weights: { blue: 0, green: 100 } });
    for (let i = 0; i < 3; i++) await q.get('/');
    await nextSecond();
    const r = await q.admin('GET', '/v1/apps/shop/stats');
    assert.equal(r.status, 200);
    assert.equal(r.body.app, 'shop');
    assert.equal(r.body.fleet, false);
    assert.ok(Math.abs(Date.parse(r.body.at) - Date.now()) < 5000);
    const blue10 = r.body.windows['10s'].blue;
    assert.equal(blue10.requests, 7);
    assert.equal(blue10.errors, 1);
    assert.equal(blue10.errorRate, 0.143);
    assert.equal(blue10.rps, 0.7);
    assert.ok(blue10.p50 >= 0 && blue10.p50 <= blue10.p95 && blue10.p95 <= blue10.p99, JSON.stringify(blue10));
    assert.equal(r.body.windows['10s'].green.requests, 3);
    assert.equal(r.body.windows['60s'].blue.requests, 7);
    assert.equal(r.body.windows['60s'].blue.rps, 0.117);
    // the same figures a rollout will judge by
    assert.equal(q.sy.telemetry.stats.window('shop', 10).green?.requests, 3);

    assert.equal((await q.admin('GET', '/v1/apps/nope/stats')).status, 404);
    const anon = await request(`${q.adminUrl}/v1/apps/shop/stats`);
    assert.equal(anon.statusCode, 401);
    await anon.body.dump();
  });
});

/** A pino destination that keeps the lines it is given. */
function capture(): { stream: Writable; lines: () => Record<string, unknown>[] } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      chunks.push(chunk.toString());
      cb();
    },
  });
  return {
    stream,
    lines: () =>
      chunks
        .join('')
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

describe('access log', () => {
  let up: Upstream;
  before(async () => {
    up = await startUpstream('up', (req, res) => {
      res.writeHead(req.url?.startsWith('/fail') ? 503 : 200);
      res.end('x');
    });
  });
  after(() => up.close());

  it('writes one line per request with its routing facts, path without the query', async (t) => {
    const log = capture();
    const p = await startProxy({ apps: [twoPools(up.url, up.url)], log: { level: 'info', accessSample: 1 } }, { logger: pino({ level: 'info' }, log.stream) });
    t.after(async () => {
      await p.close();
    });
    const r = await p.get('/cart/items?token=s3cret&email=a@b.c');
    await until(t, 'the access line written', () => log.lines().some((l) => l.access === true));
    const lines = log.lines().filter((l) => l.access === true);
    assert.equal(lines.length, 1);
    const line = lines[0] as Record<string, unknown>;
    assert.deepEqual(
      { app: line.app, pool: line.pool, version: line.version, revision: line.revision, status: line.status, requestId: line.requestId, method: line.method, path: line.path, by: line.by, msg: line.msg },
      { app: 'shop', pool: 'blue', version: '1.0.0', revision: 1, status: 200, requestId: r.headers['x-request-id'], method: 'GET', path: '/cart/items', by: 'weights', msg: 'request' },
    );
    assert.equal(typeof line.ms, 'number');
    assert.equal(line.level, 30);
    assert.ok(!JSON.stringify(log.lines()).includes('s3cret'), 'the query never reaches the log');
  });

  it('samples successes by accessSample with the injected random, and always logs failures', async (t) => {
    const log = capture();
    const draws = [0.1, 0.9, 0.4, 0.6, 0.2, 0.8];
    let i = 0;
    const p = await startProxy(
      { apps: [twoPools(up.url, up.url)], log: { level: 'info', accessSample: 0.5 } },
      { logger: pino({ level: 'info' }, log.stream), sampleRandom: () => draws[i++ % draws.length] as number },
    );
    t.after(async () => {
      await p.close();
    });
    for (let k = 0; k < 6; k++) await p.get(`/ok/${k}`);
    for (let k = 0; k < 3; k++) await p.get(`/fail/${k}`);
    await p.admin('POST', '/v1/apps/shop/switch', { to: 'green' });
    await until(t, 'the sampled access lines written', () => log.lines().filter((l) => l.access === true).length >= 6);
    const access = log.lines().filter((l) => l.access === true);
    assert.deepEqual(
      access.map((l) => l.path),
      ['/ok/0', '/ok/2', '/ok/4', '/fail/0', '/fail/1', '/fail/2'],
    );
    assert.equal(i, 6, 'failures take no sampling draw');
    // the audit line of the switch is there too, and is not an access line
    assert.equal(log.lines().filter((l) => l.audit === true).length, 1);
  });

  it('logs proxy errors at warn even with accessSample 0', async (t) => {
    const log = capture();
    const dead = `http://127.0.0.1:${await closedPort()}`;
    const p = await startProxy({ apps: [twoPools(up.url, dead, { initial: { green: 100 } })], log: { level: 'info', accessSample: 0 } }, { logger: pino({ level: 'info' }, log.stream) });
    t.after(async () => {
      await p.close();
    });
    assert.equal((await p.get('/x')).status, 503);
    await p.admin('POST', '/v1/apps/shop/switch', { to: 'blue' });
    assert.equal((await p.get('/y')).status, 200);
    await until(t, 'the error access line written', () => log.lines().some((l) => l.access === true));
    const access = log.lines().filter((l) => l.access === true);
    assert.equal(access.length, 1);
    assert.equal(access[0]?.error, 'NO_TARGET');
    assert.equal(access[0]?.status, 503);
    assert.equal(access[0]?.level, 40);
  });
});

describe('dashboard files', () => {
  let p: TestProxy;
  before(async () => {
    p = await startProxy({ apps: [twoPools('http://127.0.0.1:9', 'http://127.0.0.1:9')] });
  });
  after(() => p.close());

  it('serves the page without a token, with its content type, no-store and a CSP', async () => {
    for (const [path, type] of [
      ['/', 'text/html; charset=utf-8'],
      ['/app.js', 'text/javascript; charset=utf-8'],
      ['/style.css', 'text/css; charset=utf-8'],
      ['/favicon.svg', 'image/svg+xml'],
    ] as const) {
      const r = await request(p.adminUrl + path);
      const body = await r.body.text();
      assert.equal(r.statusCode, 200, path);
      assert.equal(r.headers['content-type'], type);
      assert.equal(r.headers['cache-control'], 'no-store');
      assert.match(String(r.headers['content-security-policy']), /^default-src 'self';/);
      assert.equal(r.headers['x-content-type-options'], 'nosniff');
      assert.ok(body.length > 100);
    }
    const html = await (await request(`${p.adminUrl}/`)).body.text();
    assert.doesNotMatch(html, /<script>|style=|https?:\/\//, 'no inline script or style, nothing off-site');
  });

  it('serves every ES module the page imports, from app.js down (no build step, so a missing file is a blank page)', async () => {
    const seen = new Set<string>();
    const queue = ['/app.js'];
    while (queue.length > 0) {
      const path = queue.shift() as string;
      if (seen.has(path)) continue;
      seen.add(path);
      const r = await request(p.adminUrl + path);
      const body = await r.body.text();
      assert.deepEqual([r.statusCode, r.headers['content-type']], [200, 'text/javascript; charset=utf-8'], path);
      for (const m of body.matchAll(/^import .* from '\.\/([\w-]+\.js)';$/gm)) queue.push(`/${m[1] as string}`);
    }
    assert.ok(seen.size >= 5, [...seen].join(', '));
  });

  it('answers 404 for other paths and methods, and keeps the API behind the token', async () => {
    const miss = await request(`${p.adminUrl}/nope.js`);
    assert.equal(miss.statusCode, 404);
    assert.equal((await miss.body.json() as { error: { code: string } }).error.code, 'NOT_FOUND');
    const post = await request(`${p.adminUrl}/`, { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } });
    assert.equal(post.statusCode, 404);
    await post.body.dump();
    const api = await request(`${p.adminUrl}/v1/apps`);
    assert.equal(api.statusCode, 401);
    await api.body.dump();
  });
});
