import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { connect as h2connect } from 'node:http2';
import { setTimeout as sleep } from 'node:timers/promises';
import { Pool } from 'undici';
import { Exchange } from '../../src/dataplane/engine/http1-exchange.ts';
import { readBuffersAllocated } from '../../src/dataplane/engine/read-buffers.ts';
import { createTestCa } from '../helpers/certs.ts';
import { startProxy, twoPools } from '../helpers/proxy.ts';
import { startUpstream } from '../helpers/upstream.ts';

/** A body whose bytes depend on `n`: a buffer reused too early would mix two of them. */
function body(n: number, size: number): Buffer {
  const b = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i += 4) b.writeUInt32LE((Math.imul(n + 1, 2654435761) + i) >>> 0, i);
  return b;
}
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

describe('native engine: reused read buffers', () => {
  it('reads upstream bodies into reused buffers, not a new 64 KiB buffer per read', async (t) => {
    const big = body(0, 64 * 1024);
    const up = await startUpstream('blue', (_req, res) => {
      res.writeHead(200, { 'content-length': String(big.length) });
      res.end(big);
    });
    const p = await startProxy({ engine: 'native', apps: [twoPools(up.url, up.url)] });
    const client = new Pool(p.proxyUrl, { connections: 1 });
    t.after(async () => {
      await client.close();
      await p.close();
      await up.close();
    });
    const before = readBuffersAllocated();
    for (let i = 0; i < 100; i++) {
      const r = await client.request({ path: `/${i}`, method: 'GET' });
      const got = Buffer.from(await r.body.arrayBuffer());
      assert.equal(sha(got), sha(big));
    }
    // 100 responses of 64 KiB are at least 100 reads; one connection reuses a handful of buffers
    const allocated = readBuffersAllocated() - before;
    assert.ok(allocated <= 8, `${allocated} read buffers allocated for 100 responses on one connection`);
  });

  it('reuses them after responses over TLS (HTTP/1.1 on the front) and h2 too, each body intact', async (t) => {
    // a TLSSocket reports every write complete only after the tick; a buffer waiting for that
    // went to the GC after every response (100 responses: ~100 buffers), and h2 never reused one
    const up = await startUpstream('blue', (req, res) => {
      const b = body(Number(req.url?.slice(1)), 1024);
      res.writeHead(200, { 'content-length': String(b.length) });
      res.end(b);
    });
    const ca = createTestCa();
    const cert = ca.issue('shop', ['shop.test']);
    const p = await startProxy({ engine: 'native', listen: { host: '127.0.0.1', port: 0, tls: { port: 0, certs: [{ cert: cert.cert, key: cert.key }] } }, apps: [twoPools(up.url, up.url)] });
    const port = (p.sy.edge?.listener.server.address() as { port: number }).port;
    const client = new Pool(`https://127.0.0.1:${port}`, { connections: 1, connect: { ca: ca.caPem, servername: 'shop.test' } });
    const session = h2connect(`https://127.0.0.1:${port}`, { ca: ca.caPem, servername: 'shop.test' });
    t.after(async () => {
      session.close();
      await client.close();
      await p.close();
      await up.close();
      ca.close();
    });
    let before = readBuffersAllocated();
    for (let i = 0; i < 100; i++) {
      const r = await client.request({ path: `/${i}`, method: 'GET' });
      assert.equal(sha(Buffer.from(await r.body.arrayBuffer())), sha(body(i, 1024)), `https response ${i}`);
    }
    let allocated = readBuffersAllocated() - before;
    assert.ok(allocated <= 8, `${allocated} read buffers allocated for 100 HTTPS responses on one connection`);
    before = readBuffersAllocated();
    for (let i = 0; i < 100; i++) {
      const stream = session.request({ ':path': `/${i}`, ':authority': 'shop.test' });
      const parts: Buffer[] = [];
      for await (const c of stream) parts.push(c as Buffer);
      assert.equal(sha(Buffer.concat(parts)), sha(body(i, 1024)), `h2 response ${i}`);
    }
    allocated = readBuffersAllocated() - before;
    assert.ok(allocated <= 8, `${allocated} read buffers allocated for 100 h2 responses`);
  });

  it('never hands a client bytes of another response, with slow and fast clients mixed', async (t) => {
    const SIZE = 4 * 1024 * 1024;
    const up = await startUpstream('blue', (req, res) => {
      const b = body(Number(req.url?.slice(1)), SIZE);
      res.writeHead(200, { 'content-length': String(b.length) });
      res.end(b);
    });
    const p = await startProxy({ engine: 'native', apps: [twoPools(up.url, up.url)] });
    const client = new Pool(p.proxyUrl, { connections: 12 });
    t.after(async () => {
      await client.close();
      await p.close();
      await up.close();
    });
    const one = async (n: number): Promise<void> => {
      const r = await client.request({ path: `/${n}`, method: 'GET' });
      const parts: Buffer[] = [];
      for await (const c of r.body) {
        parts.push(c as Buffer);
        // every third client reads slowly: its response waits in the proxy's write queues
        if (n % 3 === 0 && parts.length % 8 === 0) await sleep(20);
      }
      assert.equal(sha(Buffer.concat(parts)), sha(body(n, SIZE)), `response ${n}`);
    };
    await Promise.all(Array.from({ length: 12 }, (_, n) => one(n)));
  });
});

describe('native engine: 64 KiB responses to a client that reads them at once', () => {
  it('do not pause the upstream read (node:http\'s end-of-tick cork is not backpressure)', async (t) => {
    const big = body(1, 64 * 1024);
    const up = await startUpstream('blue', (_req, res) => {
      res.writeHead(200, { 'content-length': String(big.length) });
      res.end(big);
    });
    const p = await startProxy({ engine: 'native', apps: [twoPools(up.url, up.url)] });
    const client = new Pool(p.proxyUrl, { connections: 1 });
    let pauses = 0;
    const pause = Exchange.prototype.pause;
    Exchange.prototype.pause = function (this: Exchange) {
      pauses++;
      pause.call(this);
    };
    t.after(async () => {
      Exchange.prototype.pause = pause;
      await client.close();
      await p.close();
      await up.close();
    });
    for (let i = 0; i < 20; i++) {
      const r = await client.request({ path: `/${i}`, method: 'GET' });
      assert.equal(sha(Buffer.from(await r.body.arrayBuffer())), sha(big));
    }
    // each pause is a readStop and a readStart on the upstream socket and a send timer; before, every response paused
    assert.ok(pauses <= 2, `${pauses} pauses for 20 responses`);
  });
});
