import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
import { DEFAULT_ACCEPTORS } from '../../src/config/schema.ts';
import { startProxy, twoPools, type TestProxy } from '../helpers/proxy.ts';
import { rawRequest, statusOf } from '../helpers/raw.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';
import { until } from '../helpers/wait.ts';

function portOf(url: string): number {
  return Number(new URL(url).port);
}

describe('forwarding', () => {
  let blue: Upstream;
  let green: Upstream;
  let p: TestProxy;
  before(async () => {
    blue = await startUpstream('blue');
    green = await startUpstream('green');
    p = await startProxy({ apps: [twoPools(blue.url, green.url)] });
  });
  after(async () => {
    await p.close();
    await blue.close();
    await green.close();
  });

  it('listens with a 4096-connection accept queue (kernel permitting), not Node\'s 511', async () => {
    // a thousand clients connecting while the event loop is busy must not overflow the queue:
    // dropped SYNs cost each of them a 1 s retransmit. `ss` shows a listener's queue as Send-Q.
    const somaxconn = Number(readFileSync('/proc/sys/net/core/somaxconn', 'utf8'));
    const line = execFileSync('ss', ['-Hltn', `sport = :${portOf(p.proxyUrl)}`], { encoding: 'utf8' }).trim();
    const backlog = Number(line.split(/\s+/)[2]);
    assert.equal(backlog, Math.min(4096, somaxconn), line);
  });

  it('accepts on 256 listening sockets in one reuse-port group, and serves what each accepts', async () => {
    // libuv accepts one connection per listener per event-loop turn: 256 listeners take a burst 256× faster
    const lines = execFileSync('ss', ['-Hltn', `sport = :${portOf(p.proxyUrl)}`], { encoding: 'utf8' }).trim().split('\n');
    assert.equal(lines.length, DEFAULT_ACCEPTORS);
    assert.equal(DEFAULT_ACCEPTORS, 256);
    // fresh connections land on listeners the kernel picks by hash: every one must be served
    const statuses = await Promise.all(Array.from({ length: 64 }, async () => {
      const r = await request(`${p.proxyUrl}/spread`, { reset: true });
      await r.body.dump();
      return r.statusCode;
    }));
    assert.deepEqual(new Set(statuses), new Set([200]));
  });

  it('forwards method, path, query and body, and marks the response with the pool', async () => {
    const r = await request(`${p.proxyUrl}/cart/items?sku=42`, { method: 'POST', body: 'hello', headers: { 'content-type': 'text/plain' } });
    assert.equal(r.statusCode, 200);
    assert.deepEqual(await r.body.json(), { pool: 'blue', method: 'POST', url: '/cart/items?sku=42', body: 'hello' });
    assert.equal(r.headers['x-served-by'], 'blue@1.0.0');
    assert.equal(r.headers['via'], '1.1 switchyard');
    assert.match(String(r.headers["x-request-id"]), /^[0-9a-f]{12}-[0-9a-z]+$/);
    const seen = blue.seen.at(-1);
    assert.equal(seen?.headers['x-request-id'], r.headers['x-request-id']);
    assert.equal(seen?.headers['x-forwarded-for'], '127.0.0.1');
    assert.equal(seen?.headers['x-forwarded-proto'], 'http');
    assert.equal(seen?.headers['x-forwarded-host'], `127.0.0.1:${portOf(p.proxyUrl)}`);
    assert.equal(seen?.headers['via'], '1.1 switchyard');
  });

  it('keeps a sane incoming X-Request-Id and replaces a malformed one', async () => {
    await p.get('/', { 'x-request-id': 'abc-123' });
    assert.equal(blue.seen.at(-1)?.headers['x-request-id'], 'abc-123');
    await p.get('/', { 'x-request-id': 'bad id with spaces' });
    assert.notEqual(blue.seen.at(-1)?.headers['x-request-id'], 'bad id with spaces');
  });

  it('strips hop-by-hop headers, including those named in Connection', async () => {
    const reply = await rawRequest(
      portOf(p.proxyUrl),
      'GET /hop HTTP/1.1\r\nHost: shop\r\nConnection: keep-alive, X-Secret-Hop\r\nX-Secret-Hop: 1\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Connection: keep-alive\r\nUpgrade: h2c\r\nX-Kept: yes\r\n\r\n',
      500,
    );
    assert.equal(statusOf(reply), 200);
    const h = blue.seen.at(-1)?.headers ?? {};
    assert.equal(blue.seen.at(-1)?.url, '/hop');
    for (const name of ['x-secret-hop', 'te', 'proxy-connection', 'upgrade']) assert.equal(h[name], undefined, name);
    assert.notEqual(h['keep-alive'], 'timeout=5');
    assert.equal(h['x-kept'], 'yes');
  });

  it('strips hop-by-hop headers from the response', async (t) => {
    const up = await startUpstream('hop', (_req, res) => {
      res.writeHead(200, { connection: 'X-Up-Secret', 'x-up-secret': '1', 'proxy-connection': 'x', 'x-fine': 'ok', via: '1.1 origin' });
      res.end('ok');
    });
    const q = await startProxy({ apps: [twoPools(up.url, up.url)] });
    t.after(async () => {
      await q.close();
      await up.close();
    });
    const r = await q.get('/');
    assert.equal(r.headers['x-up-secret'], undefined);
    assert.equal(r.headers['proxy-connection'], undefined);
    assert.equal(r.headers['x-fine'], 'ok');
    assert.equal(r.headers['via'], '1.1 origin, 1.1 switchyard');
  });

  it('replaces X-Forwarded-* and Forwarded from a client that is not a trusted proxy', async () => {
    await p.get('/', { 'x-forwarded-for': '6.6.6.6', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'evil.example', forwarded: 'for=6.6.6.6' });
    const h = blue.seen.at(-1)?.headers ?? {};
    assert.equal(h['x-forwarded-for'], '127.0.0.1');
    assert.equal(h['x-forwarded-proto'], 'http');
    assert.equal(h['x-forwarded-host'], `127.0.0.1:${portOf(p.proxyUrl)}`);
    assert.equal(h['forwarded'], undefined);
  });

  it('appends to X-Forwarded-For from a trusted proxy and keeps its proto and host', async (t) => {
    const q = await startProxy({ apps: [twoPools(blue.url, green.url)], trustedProxies: ['127.0.0.0/8'] });
    t.after(async () => {
      await q.close();
    });
    await q.get('/', { 'x-forwarded-for': '203.0.113.9', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'shop.example.com' });
    const h = blue.seen.at(-1)?.headers ?? {};
    assert.equal(h['x-forwarded-for'], '203.0.113.9, 127.0.0.1');
    assert.equal(h['x-forwarded-proto'], 'https');
    assert.equal(h['x-forwarded-host'], 'shop.example.com');
  });

  for (const [name, payload] of [
    ['Transfer-Encoding with Content-Length', 'POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n'],
    ['duplicate Content-Length', 'POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\nabcd'],
    ['duplicate Host', 'GET /x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n'],
    ['obs-fold', 'GET /x HTTP/1.1\r\nHost: a\r\nX-Folded: one\r\n two\r\n\r\n'],
  ] as const) {
    it(`refuses ambiguous framing (${name}) with 400 and never forwards it`, async () => {
      const before = blue.seen.length;
      const reply = await rawRequest(portOf(p.proxyUrl), payload, 500);
      assert.equal(statusOf(reply), 400, reply);
      assert.equal(blue.seen.length, before);
    });
  }

  it('streams a large body both ways intact', async (t) => {
    const echo = await startUpstream('echo', (req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      req.pipe(res);
    });
    const q = await startProxy({ apps: [twoPools(echo.url, echo.url)] });
    t.after(async () => {
      await q.close();
      await echo.close();
    });
    const body = Buffer.alloc(8 * 1024 * 1024);
    for (let i = 0; i < body.length; i += 4096) body.writeUInt32BE(i, i);
    const r = await request(`${q.proxyUrl}/echo`, { method: 'PUT', body });
    const got = Buffer.from(await r.body.arrayBuffer());
    assert.equal(r.statusCode, 200);
    assert.equal(createHash('sha256').update(got).digest('hex'), createHash('sha256').update(body).digest('hex'));
  });
});

describe('listen.acceptors: 1', () => {
  it('binds one plain socket, so a taken port fails the start instead of being shared', async (t) => {
    const blue = await startUpstream('blue');
    const p = await startProxy({ listen: { host: '127.0.0.1', port: 0, acceptors: 1 }, apps: [twoPools(blue.url, blue.url)] });
    t.after(async () => {
      await p.close();
      await blue.close();
    });
    const port = portOf(p.proxyUrl);
    const lines = execFileSync('ss', ['-Hltn', `sport = :${port}`], { encoding: 'utf8' }).trim().split('\n');
    assert.equal(lines.length, 1);
    await assert.rejects(startProxy({ listen: { host: '127.0.0.1', port, acceptors: 1 }, apps: [twoPools(blue.url, blue.url)] }), /EADDRINUSE/);
    const r = await request(`${p.proxyUrl}/`);
    await r.body.dump();
    assert.equal(r.statusCode, 200);
  });
});

describe('hosts', () => {
  it('chooses the app by exact host, then the longest wildcard, then "*"; 421 when none', async (t) => {
    const a = await startUpstream('a');
    const b = await startUpstream('b');
    const c = await startUpstream('c');
    const apps = [
      { ...twoPools(a.url, a.url), name: 'exact', hosts: ['shop.example.com', '*.example.com'] },
      { ...twoPools(b.url, b.url), name: 'deep', hosts: ['*.eu.example.com'] },
    ];
    const p = await startProxy({ apps });
    try {
      assert.equal((await p.get('/', { host: 'shop.example.com' })).body.includes('"pool":"a"'), true);
      assert.equal((await p.get('/', { host: 'shop.eu.example.com:8080' })).body.includes('"pool":"b"'), true);
      assert.equal((await p.get('/', { host: 'www.example.com' })).body.includes('"pool":"a"'), true);
      const miss = await p.get('/', { host: 'other.test' });
      assert.equal(miss.status, 421);
      assert.ok(miss.headers['x-request-id']);
    } finally {
      await p.close();
    }
    const q = await startProxy({ apps: [{ ...twoPools(a.url, a.url), name: 'one', hosts: ['one.test'] }, { ...twoPools(c.url, c.url), name: 'fallback', hosts: ['*'] }] });
    t.after(async () => {
      await q.close();
      await a.close();
      await b.close();
      await c.close();
    });
    assert.equal((await q.get('/', { host: 'whatever.test' })).body.includes('"pool":"c"'), true);
  });
});

describe('upstream failures', () => {
  it('answers 503 when no target of the pool accepts connections', async (t) => {
    const dead = await startUpstream('dead');
    await dead.close();
    const p = await startProxy({ apps: [twoPools(dead.url, dead.url)] });
    t.after(async () => {
      await p.close();
    });
    const r = await p.get('/');
    assert.equal(r.status, 503);
    assert.match(r.body, /no target/);
    assert.ok(r.headers['x-request-id']);
  });

  it('skips a target that refuses connections when another is up, for GET and POST alike', async (t) => {
    const dead = await startUpstream('dead');
    await dead.close();
    const live = await startUpstream('live');
    const p = await startProxy({ apps: [twoPools([dead.url, live.url], live.url)] });
    t.after(async () => {
      await p.close();
      await live.close();
    });
    for (let i = 0; i < 6; i++) {
      const r = await request(`${p.proxyUrl}/`, { method: i % 2 ? 'POST' : 'GET', body: i % 2 ? 'x' : null });
      assert.equal(r.statusCode, 200);
      await r.body.text();
    }
  });

  it('balances requests over the targets of a pool', async (t) => {
    const t1 = await startUpstream('t1');
    const t2 = await startUpstream('t2');
    const p = await startProxy({ apps: [twoPools([t1.url, t2.url], t1.url)] });
    t.after(async () => {
      await p.close();
      await t1.close();
      await t2.close();
    });
    for (let i = 0; i < 10; i++) await p.get('/');
    assert.equal(t1.seen.length, 5);
    assert.equal(t2.seen.length, 5);
  });

  it('answers 502 when the upstream breaks the response, and does not retry a POST', async (t) => {
    const broken = await startUpstream('broken', (req) => req.socket.destroy());
    const other = await startUpstream('other');
    const p = await startProxy({ apps: [twoPools([broken.url, other.url], other.url)] });
    t.after(async () => {
      await p.close();
      await broken.close();
      await other.close();
    });
    // round robin starts at the broken target
    const r = await request(`${p.proxyUrl}/pay`, { method: 'POST', body: 'charge' });
    assert.equal(r.statusCode, 502);
    await r.body.text();
    assert.equal(broken.seen.length, 1);
    assert.equal(other.seen.filter((s) => s.url === '/pay').length, 0);
    // an idempotent GET is retried on the other target
    const g = await request(`${p.proxyUrl}/read`);
    await g.body.text();
    const g2 = await request(`${p.proxyUrl}/read`);
    assert.equal(g2.statusCode, 200);
    await g2.body.text();
  });

  it('answers 504 when the upstream does not answer within timeouts.response', async (t) => {
    const slow = await startUpstream('slow', (_req, res) => setTimeout(() => res.end('late'), 2000).unref());
    const p = await startProxy({ apps: [twoPools(slow.url, slow.url, { timeouts: { response: '200ms' } })] });
    t.after(async () => {
      await p.close();
      await slow.close();
    });
    const t0 = Date.now();
    const r = await p.get('/');
    assert.equal(r.status, 504);
    assert.ok(Date.now() - t0 < 1500);
  });

  it('aborts the upstream request when the client goes away', async (t) => {
    let upstreamClosed: Promise<unknown> = Promise.resolve();
    const hang = await startUpstream('hang', (req) => {
      upstreamClosed = once(req.socket, 'close');
    });
    const p = await startProxy({ apps: [twoPools(hang.url, hang.url)] });
    t.after(async () => {
      await p.close();
      await hang.close();
    });
    const ac = new AbortController();
    const pending = request(`${p.proxyUrl}/long`, { signal: ac.signal }).catch(() => undefined);
    await until(t, 'the request at the upstream', () => hang.seen.length > 0, { timeout: 30_000, interval: 10 });
    ac.abort();
    await pending;
    await Promise.race([upstreamClosed, sleep(2000).then(() => assert.fail('upstream request was not aborted'))]);
    await until(t, 'no request in flight on blue', () => p.sy.runtime.pool('shop', 'blue')?.inflight === 0, { timeout: 30_000, interval: 10 });
    // the client left, the upstream did nothing wrong: no failure for passive health checks
    assert.equal(p.sy.runtime.pool('shop', 'blue')?.targets[0]?.consecutiveFailures, 0);
  });
});
