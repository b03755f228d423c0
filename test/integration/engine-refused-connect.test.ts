import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { describe, it } from 'node:test';
import { request } from 'undici';
import { startProxy, twoPools } from '../helpers/proxy.ts';
import { startUpstream, useUpstreams } from '../helpers/upstream.ts';

/**
 * A refused connect reaches no upstream, so forward.ts sends the request to another target (and a
 * pinned one to another pool). That is only sound if the engine read none of the client's body
 * before the connection was up: the native engine once wrote head and body into the connecting
 * socket, and the retry went out with its length but no body (the target waited, a 504 a minute on).
 */
describe('a request whose connect was refused goes to the next target with its whole body', () => {
  const up = useUpstreams('ok');

  for (const engine of ['native', 'undici'] as const) {
    for (const chunked of [false, true]) {
      it(`a ${chunked ? 'chunked' : '100 kB'} POST reaches the next target of the pool intact (engine ${engine})`, async (t) => {
        const dead = await startUpstream('dead');
        await dead.close();
        // round robin starts at the dead target
        const p = await startProxy({ engine, apps: [twoPools([dead.url, up.ok.url], up.ok.url)] });
        t.after(async () => {
          await p.close();
        });
        const body = 'x'.repeat(100_000);
        const r = await request(`${p.proxyUrl}/order`, {
          method: 'POST',
          // a stream: undici sends it chunked (no length)
          body: chunked ? Readable.from([body.slice(0, 50_000), body.slice(50_000)]) : body,
          headersTimeout: 5_000,
        });
        const answer = JSON.parse(await r.body.text()) as { pool: string; body: string };
        assert.deepEqual([r.statusCode, answer.pool, answer.body.length], [200, 'ok', body.length]);
      });
    }
  }
});
