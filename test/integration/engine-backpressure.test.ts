import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect } from 'node:net';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { ProxyHandler } from '../../src/dataplane/forward.ts';
import { startProxy, twoPools } from '../helpers/proxy.ts';
import { startUpstream } from '../helpers/upstream.ts';

const BODY = 16 * 1024 * 1024;
/** What the proxy may hold for one slow client: a socket read (64 KiB) and the stream's high-water marks, with room to spare. */
const BOUND = 512 * 1024;

describe('backpressure: a client that reads slowly', () => {
  for (const engine of ['native', 'undici'] as const) {
    it(`never makes the proxy buffer more than ${BOUND / 1024} KiB for it, and gets every byte (${engine})`, async (t) => {
      const chunk = Buffer.alloc(64 * 1024, 'x');
      const up = await startUpstream('blue', (_req, res) => {
        res.writeHead(200, { 'content-length': String(BODY) });
        let sent = 0;
        const pump = (): void => {
          while (sent < BODY) {
            sent += chunk.length;
            if (!res.write(chunk)) return void res.once('drain', pump);
          }
          res.end();
        };
        pump();
      });
      const p = await startProxy({ engine, apps: [twoPools(up.url, up.url)] });
      t.after(async () => {
        await p.close();
        await up.close();
      });
      const pool = p.sy.runtime.pool('shop', 'blue');
      assert.ok(pool);
      const s = connect(Number(new URL(p.proxyUrl).port), '127.0.0.1');
      await once(s, 'connect');
      s.pause();
      s.write('GET /big HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n');
      // the client reads nothing for 1.5 s while the upstream has 16 MiB to give
      let most = 0;
      for (let i = 0; i < 30; i++) {
        await sleep(50);
        for (const h of pool.open) if (h instanceof ProxyHandler) most = Math.max(most, h.res.writableLength + (h.res.socket?.writableLength ?? 0));
      }
      assert.ok(most > 0, 'the response was under way');
      assert.ok(most <= BOUND, `the proxy held ${most} bytes for one client`);
      let got = 0;
      s.on('data', (d: Buffer) => (got += d.length));
      s.resume();
      await once(s, 'close');
      assert.ok(got > BODY, `the whole body and its head reached the client (${got} bytes)`);
    });
  }
});
