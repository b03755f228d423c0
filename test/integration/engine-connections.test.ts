import assert from 'node:assert/strict';
import { createServer, type Socket } from 'node:net';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import { request } from 'undici';
import { startProxy, twoPools } from '../helpers/proxy.ts';
import { startUpstream } from '../helpers/upstream.ts';

/** The native engine's connection reuse: kept when safe, never when the framing is in doubt. */
describe('native engine connections', () => {
  it('reuses one upstream connection for requests one after another', async (t) => {
    const up = await startUpstream('blue');
    let connections = 0;
    up.server.on('connection', () => connections++);
    const p = await startProxy({ apps: [twoPools(up.url, up.url)] });
    t.after(async () => {
      await p.close();
      await up.close();
    });
    for (let i = 0; i < 20; i++) assert.equal((await p.get(`/n/${i}`)).status, 200);
    assert.equal(connections, 1);
  });

  it('never reuses a connection whose response came before the request body was all sent, nor one with bytes past the declared length', async (t) => {
    // a raw upstream: /early answers 413 without reading the body; /extra sends 2 bytes more than it declares
    let connections = 0;
    const server = createServer((s: Socket) => {
      connections++;
      s.on('data', (d: Buffer) => {
        const text = d.toString('latin1');
        if (text.startsWith('POST /early')) s.write('HTTP/1.1 413 Payload Too Large\r\ncontent-length: 4\r\n\r\nbig!');
        else if (text.startsWith('GET /extra')) s.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokXX');
        else if (text.startsWith('GET ')) s.write('HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfresh');
      });
      s.on('error', () => undefined);
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const p = await startProxy({ apps: [twoPools(url, url)] });
    t.after(async () => {
      await p.close();
      server.close();
    });
    const early = await request(`${p.proxyUrl}/early`, { method: 'POST', body: Buffer.alloc(4 * 1024 * 1024) }).then((r) => r, (err: Error) => err);
    if (!(early instanceof Error)) {
      assert.equal(early.statusCode, 413);
      await early.body.dump();
    }
    const after413 = await p.get('/next');
    assert.deepEqual([after413.status, after413.body], [200, 'fresh']);
    const extra = await p.get('/extra');
    assert.deepEqual([extra.status, extra.body], [200, 'ok']);
    const afterExtra = await p.get('/next');
    assert.deepEqual([afterExtra.status, afterExtra.body], [200, 'fresh'], 'the extra bytes are never read as the next response');
    assert.ok(connections >= 3, `a new connection after each doubtful one (${connections})`);
  });

  it('opens at most maxConnections to a target and queues the rest', async (t) => {
    let open = 0;
    let most = 0;
    const up = await startUpstream('blue', (_req, res) => void setTimeout(() => res.end('ok'), 30));
    up.server.on('connection', (s: Socket) => {
      most = Math.max(most, ++open);
      s.on('close', () => open--);
    });
    const p = await startProxy({ apps: [twoPools(up.url, up.url, { maxConnections: 2 })] });
    t.after(async () => {
      await p.close();
      await up.close();
    });
    const replies = await Promise.all(Array.from({ length: 12 }, (_, i) => p.get(`/q/${i}`)));
    assert.deepEqual(replies.map((r) => r.status), Array(12).fill(200));
    assert.equal(most, 2);
  });

  it('sends an idempotent request again on a new connection when the upstream closed the kept-alive one under it; never a POST', async (t) => {
    // every connection answers its first request and closes under its second (an idle close racing the request)
    let connections = 0;
    const server = createServer((s: Socket) => {
      connections++;
      let requests = 0;
      s.on('data', () => {
        if (++requests === 1) s.write('HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfirst');
        else s.destroy();
      });
      s.on('error', () => undefined);
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const p = await startProxy({ apps: [twoPools(url, url)] });
    t.after(async () => {
      await p.close();
      server.close();
    });
    assert.deepEqual([(await p.get('/a')).status, connections], [200, 1]);
    const again = await p.get('/b');
    assert.deepEqual([again.status, again.body, connections], [200, 'first', 2], 'the GET went again on a new connection');
    const post = await request(`${p.proxyUrl}/c`, { method: 'POST', body: 'x' });
    await post.body.dump();
    assert.equal(post.statusCode, 502, 'a POST is never sent twice');
  });
});
