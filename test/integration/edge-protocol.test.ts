import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer as createHttpServer } from 'node:http';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { ProxyHandler } from '../../src/dataplane/forward.ts';
import { MAX_PIPELINED } from '../../src/dataplane/pipeline.ts';
import { previewSignature } from '../../src/routing/snapshot.ts';
import { nextSecond } from '../helpers/clock.ts';
import { startProxy, twoPools, type TestProxy } from '../helpers/proxy.ts';
import { rawRequest, statusesOf, statusOf } from '../helpers/raw.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';

const run = promisify(execFile);

function portOf(url: string): number {
  return Number(new URL(url).port);
}

/** An upstream that stores the sha256 and length of every body it receives. */
async function hashingUpstream(): Promise<Upstream & { bodies: { sha: string; length: number }[] }> {
  const bodies: { sha: string; length: number }[] = [];
  const up = await startUpstream('hash', (req, res) => {
    const h = createHash('sha256');
    let length = 0;
    req.on('data', (c: Buffer) => {
      h.update(c);
      length += c.length;
    });
    req.on('end', () => {
      bodies.push({ sha: h.digest('hex'), length });
      res.end('stored');
    });
  });
  return Object.assign(up, { bodies });
}

describe('Expect: 100-continue, with real curl', () => {
  let up: Awaited<ReturnType<typeof hashingUpstream>>;
  let p: TestProxy;
  let dir: string;
  before(async () => {
    up = await hashingUpstream();
    p = await startProxy({ apps: [twoPools(up.url, up.url)] });
    dir = await mkdtemp(join(tmpdir(), 'switchyard-expect-'));
  });
  after(async () => {
    await p.close();
    await up.close();
    await rm(dir, { recursive: true, force: true });
  });

  for (const [name, args] of [
    ['curl -T file (PUT upload)', (f: string) => ['-T', f]],
    ['curl --data-binary @file over 1 MiB', (f: string) => ['--data-binary', `@${f}`]],
  ] as const) {
    it(`${name}: the proxy answers 100 and the upstream gets the whole body`, async () => {
      const body = randomBytes(3 * 1024 * 1024);
      const file = join(dir, 'upload.bin');
      await writeFile(file, body);
      const { stdout, stderr } = await run('curl', ['-sS', '-v', '-o', '/dev/null', '-w', '%{http_code}', ...args(file), `${p.proxyUrl}/upload`]);
      assert.equal(stdout, '200', stderr);
      assert.match(stderr, />\s*Expect: 100-continue/i, 'curl asked for 100-continue');
      assert.match(stderr, /<\s*HTTP\/1\.1 100 Continue/, 'and got it');
      // without a 100 curl waits a second, says so, and sends the body anyway (a clock-free proof)
      assert.doesNotMatch(stderr, /Done waiting for 100-continue/i, 'curl did not have to give up waiting for the 100');
      assert.deepEqual(up.bodies.at(-1), { sha: createHash('sha256').update(body).digest('hex'), length: body.length });
      assert.equal(up.seen.at(-1)?.headers.expect, undefined, 'Expect is not forwarded');
    });
  }

  it('refuses before sending 100 when the request cannot be routed', async (t) => {
    const q = await startProxy({ apps: [{ ...twoPools(up.url, up.url), hosts: ['shop.test'] }] });
    t.after(async () => {
      await q.close();
    });
    // headers only: the body would follow a 100, which must not come
    const reply = await rawRequest(portOf(q.proxyUrl), 'PUT /x HTTP/1.1\r\nHost: other.test\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n', 3000);
    assert.deepEqual(statusesOf(reply), [421], reply);
  });
});

describe('request semantics', () => {
  let blue: Upstream;
  let green: Upstream;
  let p: TestProxy;
  before(async () => {
    blue = await startUpstream('blue');
    green = await startUpstream('green');
    p = await startProxy({ apps: [{ ...twoPools(blue.url, green.url, { preview: { secret: 'preview-secret-0123456789' } }), hosts: ['vh.test', 'internal.test'] }] });
  });
  after(async () => {
    await p.close();
    await blue.close();
    await green.close();
  });

  it('forwards an absolute-form request in origin-form, with Host and X-Forwarded-Host from its authority', async () => {
    const reply = await rawRequest(portOf(p.proxyUrl), 'GET http://internal.test/secret HTTP/1.1\r\nHost: vh.test\r\nConnection: close\r\n\r\n');
    assert.equal(statusOf(reply), 200);
    const seen = blue.seen.at(-1);
    assert.equal(seen?.url, '/secret');
    assert.equal(seen?.headers.host, 'internal.test');
    assert.equal(seen?.headers['x-forwarded-host'], 'internal.test');
  });

  it('keeps Host and the framing fields when Connection names them, both ways', async (t) => {
    const up = await startUpstream('conn', (_req, res) => {
      res.writeHead(200, { connection: 'content-length, x-up-hop', 'content-length': '2', 'x-up-hop': '1' });
      res.end('ok');
    });
    const q = await startProxy({ apps: [twoPools(up.url, up.url)] });
    t.after(async () => {
      await q.close();
      await up.close();
    });
    const reply = await rawRequest(portOf(q.proxyUrl), 'GET /c HTTP/1.1\r\nHost: vh.test\r\nConnection: host, content-length, close\r\n\r\n');
    assert.equal(up.seen.at(-1)?.headers.host, 'vh.test', 'not the target address');
    assert.match(reply, /^content-length: 2$/im);
    assert.doesNotMatch(reply, /^x-up-hop:/im);
  });

  it('strips client-address and proxy fields from an untrusted client, and Proxy-Authorization always', async (t) => {
    const fields = { 'x-forwarded-port': '443', 'x-forwarded-prefix': '/admin', 'x-forwarded-ssl': 'on', 'x-forwarded-scheme': 'https', 'x-real-ip': '10.0.0.1', 'true-client-ip': '10.0.0.1', 'x-original-url': '/admin', 'proxy-authorization': 'Basic c2VjcmV0' };
    await p.get('/f', fields);
    const h = blue.seen.at(-1)?.headers ?? {};
    for (const name of Object.keys(fields)) assert.equal(h[name], undefined, name);
    const q = await startProxy({ apps: [twoPools(blue.url, green.url)], trustedProxies: ['127.0.0.0/8'] });
    t.after(async () => {
      await q.close();
    });
    await q.get('/f', fields);
    const trusted = blue.seen.at(-1)?.headers ?? {};
    assert.equal(trusted['x-forwarded-port'], '443');
    assert.equal(trusted['x-real-ip'], '10.0.0.1');
    assert.equal(trusted['proxy-authorization'], undefined);
  });

  it('forwards the preview pool name, never its signature', async () => {
    const good = `green.${previewSignature('preview-secret-0123456789', 'shop', 'green')}`;
    assert.equal((await p.get('/', { host: 'vh.test', 'x-switchyard-preview': good })).servedBy, 'green@2.0.0');
    assert.equal(green.seen.at(-1)?.headers['x-switchyard-preview'], 'green');
    assert.equal((await p.get('/', { host: 'vh.test', 'x-switchyard-preview': 'green.forged' })).servedBy, 'blue@1.0.0');
    assert.equal(blue.seen.at(-1)?.headers['x-switchyard-preview'], undefined);
  });
});

describe('pipelined requests', () => {
  it('reach the upstream one at a time and in order; past the cap the connection ends with a 503', async (t) => {
    let inflight = 0;
    let most = 0;
    const up = await startUpstream('slow', (req, res) => {
      most = Math.max(most, ++inflight);
      setTimeout(() => {
        inflight--;
        res.end(req.url);
      }, 1);
    });
    const p = await startProxy({ apps: [twoPools(up.url, up.url)] });
    t.after(async () => {
      await p.close();
      await up.close();
    });
    const n = 1000;
    const payload = Array.from({ length: n }, (_, i) => `GET /${i} HTTP/1.1\r\nHost: shop\r\n\r\n`).join('');
    const reply = await rawRequest(portOf(p.proxyUrl), payload, 5000);
    const got = statusesOf(reply);
    assert.equal(most, 1, 'one upstream request at a time');
    // the one being served and MAX_PIPELINED waiting are served, the next is refused and ends the connection
    assert.deepEqual(got, [...Array.from({ length: MAX_PIPELINED + 1 }, () => 200), 503]);
    assert.deepEqual(up.seen.map((s) => s.url), Array.from({ length: MAX_PIPELINED + 1 }, (_, i) => `/${i}`));
    const bodies = [...reply.matchAll(/\r\n\r\n(\/\d+)/g)].map((m) => m[1]);
    assert.deepEqual(bodies, up.seen.map((s) => s.url), 'responses in request order');
  });
});

describe('responses', () => {
  it('relays 1xx informational responses (103 Early Hints) to an HTTP/1.1 client, not to HTTP/1.0', async (t) => {
    const up = await startUpstream('hints', (_req, res) => {
      res.writeEarlyHints({ link: '</app.css>; rel=preload; as=style' });
      setTimeout(() => res.end('final'), 20);
    });
    const p = await startProxy({ apps: [twoPools(up.url, up.url)] });
    t.after(async () => {
      await p.close();
      await up.close();
    });
    const reply = await rawRequest(portOf(p.proxyUrl), 'GET / HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n');
    assert.deepEqual(statusesOf(reply), [103, 200], reply);
    assert.match(reply, /^HTTP\/1\.1 103 Early Hints\r\nlink: <\/app\.css>; rel=preload; as=style\r\n\r\nHTTP\/1\.1 200/im);
    const old = await rawRequest(portOf(p.proxyUrl), 'GET / HTTP/1.0\r\nHost: shop\r\n\r\n');
    assert.deepEqual(statusesOf(old), [200], old);
  });

  it('never forwards a 204 with a Content-Length', async (t) => {
    // raw, because node:http would not send this header on a 204
    const up = createServer((s) => {
      s.once('data', () => s.end('HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nX-Up: 1\r\n\r\n'));
    });
    up.listen(0, '127.0.0.1');
    await once(up, 'listening');
    const url = `http://127.0.0.1:${(up.address() as AddressInfo).port}`;
    const p = await startProxy({ apps: [twoPools(url, url)] });
    t.after(async () => {
      await p.close();
      up.close();
    });
    const reply = await rawRequest(portOf(p.proxyUrl), 'GET / HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n');
    assert.equal(statusOf(reply), 204, reply);
    assert.match(reply, /^x-up: 1$/im);
    assert.doesNotMatch(reply, /^content-length:/im);
  });
});

describe('errors that are not the upstream\'s', () => {
  it('a request undici refuses to send is a 400, counted against neither the target nor the pool', async (t) => {
    const up = await startUpstream('healthy');
    const health = { interval: '1m', passive: { failures: 3, ejectFor: '1m' } };
    const p = await startProxy({ apps: [{ ...twoPools(up.url, up.url), health }] });
    const pool = p.sy.runtime.pool('shop', 'blue');
    const app = p.sy.controller.snapshot.byName.get('shop');
    assert.ok(pool && app);
    const target = pool.targets[0];
    assert.ok(target);
    // a front server on real sockets hands each request to a ProxyHandler with a target undici
    // will not send (the proxy itself refuses such targets before routing since this fix)
    const front = createHttpServer((req, res) => {
      const h = new ProxyHandler(p.sy.dataPlane, req, res, pool, target, { method: 'OPTIONS', path: '*', headers: [] }, 'blue@1.0.0', 'test-id', null);
      h.tag = { app, pool: app.pools[0], by: 'weights' };
      h.start();
    });
    front.listen(0, '127.0.0.1');
    await once(front, 'listening');
    const port = (front.address() as AddressInfo).port;
    t.after(async () => {
      front.close();
      await p.close();
      await up.close();
    });
    for (let i = 0; i < 5; i++) {
      const reply = await rawRequest(port, 'OPTIONS / HTTP/1.1\r\nHost: shop\r\n\r\n', 300);
      assert.equal(statusOf(reply), 400, reply);
    }
    assert.equal(target.ejections, 0);
    assert.ok(pool.pick(Date.now(), null) !== null, 'the target is still picked');
    await nextSecond();
    const s = p.sy.telemetry.stats.window('shop', 60).blue;
    assert.equal(s?.requests, 5);
    assert.equal(s?.errors, 0);
    assert.equal(up.seen.filter((r) => r.url !== '/healthz').length, 0);
  });
});
