import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect as h2connect } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { WebSocketServer } from 'ws';
import { createTestCa, type TestCa } from '../helpers/certs.ts';
import { startProxy, twoPools, type TestProxy } from '../helpers/proxy.ts';
import { rawRequest, statusesOf } from '../helpers/raw.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';

/** Smaller holes found by trying the edge as an attacker would (issue 22), one regression test each. */
describe('edge hardening: request lines, h2 bodies, pipelining behind h2c', () => {
  let ca: TestCa;
  let echo: Upstream;
  let wsPaths: string[];
  let wss: WebSocketServer;
  let p: TestProxy;
  let plainPort: number;
  let tlsPort: number;
  before(async () => {
    ca = createTestCa();
    const shop = ca.issue('hard', ['shop.test']);
    echo = await startUpstream('echo', (req, res) => {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (c: string) => (body += c));
      req.on('end', () => res.end(JSON.stringify({ url: req.url, body })));
    });
    wsPaths = [];
    wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
    wss.on('connection', (_ws, req) => wsPaths.push(req.url ?? ''));
    await once(wss, 'listening');
    const wsUrl = `http://127.0.0.1:${(wss.address() as AddressInfo).port}`;
    p = await startProxy({
      listen: { host: '127.0.0.1', port: 0, tls: { port: 0, certs: [{ cert: shop.cert, key: shop.key }] } },
      apps: [twoPools(echo.url, echo.url, { hosts: ['shop.test'] }), { ...twoPools(wsUrl, wsUrl), name: 'ws', hosts: ['ws.test'] }],
    });
    plainPort = Number(new URL(p.proxyUrl).port);
    tlsPort = (p.sy.edge?.listener.server.address() as AddressInfo).port;
  });
  after(async () => {
    await p.close();
    await echo.close();
    wss.close();
    ca.close();
  });

  const WS_HEAD = 'Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n';

  it('an upgrade whose target carries a #fragment is refused with 400 and reaches no upstream', async () => {
    const before = wsPaths.length;
    const reply = await rawRequest(plainPort, `GET http://ws.test/chat#frag HTTP/1.1\r\nHost: ws.test\r\n${WS_HEAD}\r\n`, 2000);
    assert.equal(statusesOf(reply)[0], 400, reply);
    assert.equal(wsPaths.length, before);
  });

  it('an upgrade in absolute form goes upstream in origin form', async () => {
    const reply = await rawRequest(plainPort, `GET http://ws.test/chat?x=1 HTTP/1.1\r\nHost: ws.test\r\n${WS_HEAD}\r\n`, 1000);
    assert.equal(statusesOf(reply)[0], 101, reply);
    assert.equal(wsPaths.at(-1), '/chat?x=1');
  });

  it('a request pipelined behind Upgrade: h2c is not left unanswered: the first response closes the connection', async () => {
    const started = performance.now();
    const reply = await rawRequest(plainPort, 'GET /1 HTTP/1.1\r\nHost: shop.test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\nGET /2 HTTP/1.1\r\nHost: shop.test\r\n\r\n', 10_000);
    assert.ok(performance.now() - started < 5000, 'closed at once, not left to a timeout');
    assert.deepEqual(statusesOf(reply), [200]);
    assert.match(reply, /\r\nConnection: close\r\n/i);
  });

  // found by the fuzz tests (test/fuzz/edge.ts): nghttp2 takes any token as a method and control
  // characters in values, and the upstream's HTTP/1.1 parser then failed on the head the proxy wrote
  it('an h2 request with a method or a field value HTTP/1.1 cannot carry is refused with 400 and reaches no upstream (engine undici, which sends any token)', async (t) => {
    const shop = ca.issue('hard-undici', ['shop.test']);
    const q = await startProxy({ engine: 'undici', listen: { host: '127.0.0.1', port: 0, tls: { port: 0, certs: [{ cert: shop.cert, key: shop.key }] } }, apps: [twoPools(echo.url, echo.url, { hosts: ['shop.test'] })] });
    const s = h2connect(`https://127.0.0.1:${(q.sy.edge?.listener.server.address() as AddressInfo).port}`, { ca: ca.caPem, servername: 'shop.test' });
    s.on('error', () => undefined);
    t.after(async () => {
      s.close();
      await q.close();
    });
    const before = echo.seen.length;
    for (const method of ['BREW', 'PRI', 'get']) {
      const st = s.request({ ':method': method, ':path': '/', ':authority': 'shop.test' });
      const [h] = (await once(st, 'response')) as [Record<string, unknown>];
      st.resume();
      await once(st, 'end');
      assert.equal(h[':status'], 400, method);
    }
    assert.equal(echo.seen.length, before);
    // nghttp2 drops a field with a control character itself; whatever passes, none reaches the upstream
    const st = s.request({ ':path': '/', ':authority': 'shop.test', 'x-note': 'a\x0eb', 'x-user-id': '\x1b[31m' });
    st.resume();
    await once(st, 'end');
    for (const seen of echo.seen.slice(before)) assert.ok(seen.rawHeaders.every((v) => /^[\t\x20-\x7e\x80-\xff]*$/.test(v)), JSON.stringify(seen.rawHeaders));
  });

  it('an upstream status over 599 is a broken response: 502, never relayed', async (t) => {
    const { createServer } = await import('node:net');
    const odd = createServer((c) => c.once('data', () => c.end('HTTP/1.1 623 Odd\r\ncontent-length: 0\r\n\r\n')));
    odd.listen(0, '127.0.0.1');
    await once(odd, 'listening');
    t.after(() => odd.close());
    const url = `http://127.0.0.1:${(odd.address() as AddressInfo).port}`;
    for (const engine of ['native', 'undici'] as const) {
      const q = await startProxy({ engine, apps: [twoPools(url, url)] });
      t.after(() => q.close());
      const reply = await rawRequest(Number(new URL(q.proxyUrl).port), 'GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', 3000);
      assert.equal(statusesOf(reply)[0], 502, `${engine}: ${reply}`);
    }
  });

  it('an h2 request with a header whose value is "content-length" keeps its body', async (t) => {
    const s = h2connect(`https://127.0.0.1:${tlsPort}`, { ca: ca.caPem, servername: 'shop.test' });
    t.after(() => {
      s.close();
    });
    const st = s.request({ ':method': 'POST', ':path': '/up', ':authority': 'shop.test', 'x-note': 'content-length' });
    st.end('the body');
    const [h] = (await once(st, 'response')) as [Record<string, unknown>];
    let text = '';
    st.setEncoding('utf8');
    for await (const c of st) text += c as string;
    assert.equal(h[':status'], 200);
    assert.equal((JSON.parse(text) as { body: string }).body, 'the body');
  });
});
