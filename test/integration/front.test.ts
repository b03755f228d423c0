import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { startProxy, twoPools, type TestProxy } from '../helpers/proxy.ts';
import { rawRequest, statusesOf } from '../helpers/raw.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';
import { until } from '../helpers/wait.ts';

/**
 * The raw-socket front (src/dataplane/front.ts): plain requests are served on the socket, and a
 * connection goes to node:http at the first request the front does not serve, with every byte
 * the front had already read.
 */
const portOf = (p: TestProxy): number => Number(new URL(p.proxyUrl).port);
/** the JSON bodies the echo upstream answered, in order */
const echoes = (reply: string): { method: string; url: string; body: string }[] => [...reply.matchAll(/\{"pool":"\w+","method":"\w+","url":"[^"]*","body":"[^"]*"\}/g)].map((m) => JSON.parse(m[0]) as { method: string; url: string; body: string });

describe('the raw-socket front', () => {
  let up: Upstream;
  let native: TestProxy;
  let node: TestProxy;
  before(async () => {
    up = await startUpstream('blue');
    native = await startProxy({ engine: 'native', apps: [twoPools(up.url, up.url)] });
    node = await startProxy({ engine: 'undici', apps: [twoPools(up.url, up.url)] });
  });
  after(async () => {
    await native.close();
    await node.close();
    await up.close();
  });

  it('serves a request with a body between plain ones on a keep-alive connection, losing no byte of what it had read', async () => {
    const payload =
      'GET /one HTTP/1.1\r\nHost: shop\r\n\r\n' +
      'POST /two HTTP/1.1\r\nHost: shop\r\nContent-Length: 5\r\n\r\nhello' +
      'GET /three HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n';
    const reply = await rawRequest(portOf(native), payload, 3000);
    assert.deepEqual(statusesOf(reply), [200, 200, 200], reply);
    assert.deepEqual(
      echoes(reply).map((e) => [e.method, e.url, e.body]),
      [
        ['GET', '/one', ''],
        ['POST', '/two', 'hello'],
        ['GET', '/three', ''],
      ],
    );
  });

  it('after plain requests: a parse error gets node:http\'s 400, Expect gets its 100 from the front', async () => {
    const bad = await rawRequest(portOf(native), 'GET /a HTTP/1.1\r\nHost: shop\r\n\r\nGET /b HTTP/1.1\r\nHost : shop\r\n\r\n', 3000);
    assert.deepEqual(statusesOf(bad), [200, 400], bad);
    const expect = await rawRequest(portOf(native), 'GET /a HTTP/1.1\r\nHost: shop\r\n\r\nPUT /b HTTP/1.1\r\nHost: shop\r\nExpect: 100-continue\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok', 3000);
    assert.deepEqual(statusesOf(expect), [200, 100, 200], expect);
    assert.equal(echoes(expect)[1]?.body, 'ok');
  });

  it('serves a head that arrives a few bytes at a time, and keeps the connection for the next request', async () => {
    const s = connect(portOf(native), '127.0.0.1');
    await once(s, 'connect');
    const chunks: Buffer[] = [];
    s.on('data', (d: Buffer) => chunks.push(d));
    const head = 'GET /slow HTTP/1.1\r\nHost: shop\r\nX-Long: ' + 'x'.repeat(200) + '\r\n\r\n';
    for (let i = 0; i < head.length; i += 7) {
      s.write(head.slice(i, i + 7));
      await sleep(1);
    }
    s.write('GET /next HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n');
    await once(s, 'close');
    const reply = Buffer.concat(chunks).toString('latin1');
    assert.deepEqual(statusesOf(reply), [200, 200], reply);
    assert.deepEqual(
      echoes(reply).map((e) => e.url),
      ['/slow', '/next'],
    );
  });

  it('answers with the same head fields as node:http (framing, Connection, Keep-Alive, Date)', async () => {
    const fields = (reply: string): string[] =>
      reply
        .split('\r\n\r\n')[0]!
        .split('\r\n')
        .slice(1)
        .map((l) => l.slice(0, l.indexOf(':')).toLowerCase())
        .filter((n) => n !== 'x-request-id')
        .sort();
    const req = 'GET /f HTTP/1.1\r\nHost: shop\r\n\r\n';
    const [a, b] = await Promise.all([rawRequest(portOf(native), req, 500), rawRequest(portOf(node), req, 500)]);
    assert.deepEqual(fields(a), fields(b));
    assert.match(a, /\r\nConnection: keep-alive\r\nKeep-Alive: timeout=65\r\n/);
    const head = await rawRequest(portOf(native), 'HEAD /h HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n', 2000);
    assert.match(head, /\r\n\r\n$/, 'a HEAD response has no body');
  });

  it('answers an upstream response with Content-Length: 0 at once, with either engine and front', async (t) => {
    const empty = await startUpstream('empty', (req, res) => {
      if (req.url === '/moved') res.writeHead(302, { location: '/there', 'content-length': '0' });
      else res.writeHead(200, { 'content-length': '0' });
      res.end();
    });
    const proxies = await Promise.all(['native', 'undici'].map((engine) => startProxy({ engine, apps: [twoPools(empty.url, empty.url)] })));
    t.after(async () => {
      await Promise.all(proxies.map((p) => p.close()));
      await empty.close();
    });
    for (const p of proxies) {
      const reply = await rawRequest(portOf(p), 'GET /ok HTTP/1.1\r\nHost: shop\r\n\r\nGET /moved HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n', 2000);
      assert.deepEqual(statusesOf(reply), [200, 302], reply);
      assert.match(reply, /\r\ncontent-length: 0\r\n[^]*\r\nlocation: \/there\r\n/);
    }
  });

  it('closes its idle keep-alive connections at shutdown and finishes the request in flight', async (t) => {
    const slow = await startUpstream('slow', (_req, res) => setTimeout(() => res.end('late'), 300));
    const p = await startProxy({ apps: [twoPools(slow.url, slow.url)], shutdown: { delay: '0s', grace: '5s', hardStop: '6s' } });
    t.after(async () => {
      await p.close();
      await slow.close();
    });
    const idle = connect(portOf(p), '127.0.0.1');
    const busy = connect(portOf(p), '127.0.0.1');
    await Promise.all([once(idle, 'connect'), once(busy, 'connect')]);
    const idleChunks: Buffer[] = [];
    idle.on('data', (d: Buffer) => idleChunks.push(d));
    idle.write('GET /i HTTP/1.1\r\nHost: shop\r\n\r\n');
    await until(t, 'the late answer on the idle connection', () => Buffer.concat(idleChunks).toString().includes('late'), { timeout: 30_000, interval: 10 });
    const busyChunks: Buffer[] = [];
    busy.on('data', (d: Buffer) => busyChunks.push(d));
    busy.write('GET /b HTTP/1.1\r\nHost: shop\r\n\r\n');
    await until(t, 'the busy request at the upstream', () => slow.seen.some((s) => s.url === '/b'));
    const idleClosed = once(idle, 'close');
    const busyClosed = once(busy, 'close');
    const stopping = p.sy.shutdown();
    await idleClosed;
    await busyClosed;
    await stopping;
    const reply = Buffer.concat(busyChunks).toString('latin1');
    assert.deepEqual(statusesOf(reply), [200], reply);
    assert.match(reply, /\r\nconnection: close\r\n/i);
    assert.match(reply, /late$/);
  });
});
