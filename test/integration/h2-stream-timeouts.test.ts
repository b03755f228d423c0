import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect as h2connect, type ClientHttp2Session } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { createTestCa, type TestCa } from '../helpers/certs.ts';
import { startProxy, twoPools, type TestProxy } from '../helpers/proxy.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';
import { until } from '../helpers/wait.ts';

/** PINGs every `ms` until stopped: traffic on the session that is no stream's. */
function keepPinging(session: ClientHttp2Session, ms: number): () => void {
  const t = setInterval(() => {
    if (!session.closed && !session.destroyed) session.ping(() => undefined);
  }, ms);
  return () => clearInterval(t);
}

describe('HTTP/2: header, body and send timeouts per stream, not per session', () => {
  let ca: TestCa;
  let echo: Upstream;
  let big: Upstream;
  let p: TestProxy;
  let port: number;
  let upstreamOpen = 0;
  before(async () => {
    ca = createTestCa();
    const shop = ca.issue('h2t', ['shop.test']);
    // reads the whole request body, then answers with its length
    echo = await startUpstream('echo', (req, res) => {
      let n = 0;
      req.on('data', (c: Buffer) => (n += c.length));
      req.on('end', () => res.end(String(n)));
    });
    echo.server.on('connection', (s) => {
      upstreamOpen++;
      s.once('close', () => upstreamOpen--);
    });
    // 4 MiB, far more than the stream's flow-control window and the buffers on the way
    big = await startUpstream('big', (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      res.end(Buffer.alloc(4 * 1024 * 1024, 97));
    });
    p = await startProxy({
      listen: { host: '127.0.0.1', port: 0, tls: { port: 0, certs: [{ cert: shop.cert, key: shop.key }] } },
      apps: [twoPools(echo.url, echo.url), { ...twoPools(big.url, big.url), name: 'big', hosts: ['big.test'] }],
      limits: { headerTimeout: '600ms', bodyTimeout: '600ms', sendTimeout: '600ms' },
    });
    port = (p.sy.edge?.listener.server.address() as AddressInfo).port;
  });
  after(async () => {
    await p.close();
    await echo.close();
    await big.close();
    ca.close();
  });

  function session(): ClientHttp2Session {
    const s = h2connect(`https://127.0.0.1:${port}`, { ca: ca.caPem, servername: 'shop.test' });
    s.on('error', () => undefined);
    return s;
  }

  it('a stalled request body gets 408 after bodyTimeout although PINGs keep the session busy; the other streams go on', async (t) => {
    const s = session();
    await once(s, 'remoteSettings');
    const stop = keepPinging(s, 100);
    try {
      const stalled = s.request({ ':method': 'POST', ':path': '/upload', ':authority': 'shop.test' });
      stalled.on('error', () => undefined);
      stalled.write('first bytes, then nothing');
      const started = performance.now();
      // a healthy stream on the same session meanwhile, body sent whole
      const ok = s.request({ ':method': 'POST', ':path': '/ok', ':authority': 'shop.test' });
      ok.end('hello');
      const [okHead] = (await once(ok, 'response')) as [Record<string, unknown>];
      assert.equal(okHead[':status'], 200);
      ok.resume();
      const [head] = (await once(stalled, 'response')) as [Record<string, unknown>];
      const ms = performance.now() - started;
      assert.equal(head[':status'], 408);
      assert.ok(ms >= 500 && ms < 5000, `408 after ${ms.toFixed(0)} ms`);
      stalled.close();
    } finally {
      stop();
      s.destroy();
    }
    // the stalled stream's upstream connection was let go (aborted), not kept by the PINGs
    await until(t, 'the stalled request to leave the pool', () => p.sy.runtime.pool('shop', 'blue')?.inflight === 0, { timeout: 5000 });
  });

  it('a stream whose client reads nothing is cut after sendTimeout while another stream of the session is served', async (t) => {
    const s = session();
    s.on('error', () => undefined);
    await once(s, 'remoteSettings');
    const stop = keepPinging(s, 100);
    t.after(() => {
      stop();
      s.destroy();
    });
    const stuck = s.request({ ':path': '/big', ':authority': 'big.test' });
    const closed = new Promise((resolve) => stuck.once('close', resolve));
    stuck.on('error', () => undefined);
    await once(stuck, 'response');
    stuck.pause(); // reads nothing more: its window closes, the proxy's writes back up
    const started = performance.now();
    const other = s.request({ ':path': '/other', ':authority': 'big.test' });
    other.on('error', () => undefined);
    let n = 0;
    other.on('data', (c: Buffer) => (n += c.length));
    await once(other, 'end');
    assert.equal(n, 4 * 1024 * 1024, 'the other stream got its whole body');
    await closed;
    const ms = performance.now() - started;
    assert.ok(ms < 6000, `the stuck stream was cut after ${ms.toFixed(0)} ms`);
    assert.notEqual(stuck.rstCode, 0, 'cut (reset), not ended');
  });

  it('a session that opens no stream within headerTimeout is closed, PINGs or not', async () => {
    const s = session();
    await once(s, 'remoteSettings');
    const stop = keepPinging(s, 100);
    const started = performance.now();
    try {
      await once(s, 'close');
    } finally {
      stop();
    }
    const ms = performance.now() - started;
    assert.ok(ms >= 400 && ms < 5000, `closed after ${ms.toFixed(0)} ms`);
    assert.ok(upstreamOpen >= 0);
  });
});
