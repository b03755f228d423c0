import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { CASES, exchange, get, normalize, normalizeSeen, maskUpstream, startCorpusTarget, tlsListen, type CorpusTarget } from '../fixtures/differential-corpus.ts';
import { createTestCa, type TestCa } from '../helpers/certs.ts';

/**
 * The differential test of the forwarding engines (issue 16): one corpus of client requests and
 * upstream behaviours sent through every front × engine combination a deployment can have — the
 * raw-socket front + the native engine (the plain port), node:http + undici (`engine: undici`),
 * node:http + the native engine (the plain port beside a TLS port, whose ACME/redirect intercept
 * reads node:http's requests), the raw front + the native engine over TLS (the TLS port) —; the
 * upstream must see the same requests and the client the same bytes (up to Date, generated ids,
 * and the scheme a TLS client is told apart by: https in X-Forwarded-Proto).
 */

/** Each front × engine a deployment can have, by where a client connects. */
const COMBOS = ['raw front + native', 'node:http + undici', 'node:http + native', 'raw front + native, TLS'] as const;
type Combo = (typeof COMBOS)[number];

describe('differential: every front × engine forwards alike', () => {
  let ca: TestCa;
  const targets = {} as Record<Combo, CorpusTarget>;
  before(async () => {
    ca = createTestCa();
    const cert = ca.issue('shop', ['shop.test']);
    targets['raw front + native'] = await startCorpusTarget({ engine: 'native' }, 'plain');
    targets['node:http + undici'] = await startCorpusTarget({ engine: 'undici' }, 'plain');
    // a TLS port (no h2: the client speaks HTTP/1.1) beside the plain one: node:http serves the
    // plain port then (the ACME/redirect intercept reads its requests), the raw front the TLS one
    targets['node:http + native'] = await startCorpusTarget({ engine: 'native', listen: tlsListen(cert, false) }, 'plain');
    targets['raw front + native, TLS'] = await startCorpusTarget({ engine: 'native', listen: tlsListen(cert, false) }, 'tls');
  });
  after(async () => {
    for (const t of Object.values(targets)) await t.close();
    ca.close();
  });

  for (const c of CASES) {
    it(c.name, async () => {
      const result = {} as Record<Combo, { client: string; upstream: string[] }>;
      // every combination at once, each on its own upstream (startCorpusTarget)
      await Promise.all(COMBOS.map(async (combo) => {
        const target = targets[combo];
        const { up, port } = target;
        up.seen.length = 0;
        const overTls = combo.endsWith('TLS');
        const client = await exchange(port, c.parts, c.opts, overTls ? ca.caPem : undefined);
        await sleep(50); // the upstream's side of an abort
        // the one field a TLS client is told apart by
        const seen = maskUpstream(normalizeSeen(up.seen), target).map((e) => (overTls ? e.replace('\r\nx-forwarded-proto: https\r\n', '\r\nx-forwarded-proto: http\r\n') : e));
        result[combo] = { client: normalize(client), upstream: seen };
      }));
      for (const combo of COMBOS.slice(1)) assert.deepEqual(result[combo], result['raw front + native'], `${combo} against raw front + native`);
    });
  }

  it('the TLS port is served by the raw front, the plain port beside it by node:http', async () => {
    /** the most connections the proxy's front served at once while `reply` was under way */
    const peak = async (combo: Combo, reply: Promise<string>): Promise<[string, number]> => {
      let most = 0;
      let done = false;
      void reply.finally(() => (done = true));
      while (!done) {
        most = Math.max(most, targets[combo].proxy.sy.dataPlane.frontConnections);
        await sleep(5);
      }
      return [await reply, most];
    };
    const [plain, plainPeak] = await peak('node:http + native', exchange(targets['node:http + native'].port, [get('/slow')], { ms: 3000 }));
    assert.match(plain, /^HTTP\/1\.1 200 /);
    assert.equal(plainPeak, 0);
    const [overTls, tlsPeak] = await peak('raw front + native, TLS', exchange(targets['raw front + native, TLS'].port, [get('/slow')], { ms: 3000 }, ca.caPem));
    assert.match(overTls, /^HTTP\/1\.1 200 /);
    assert.equal(tlsPeak, 1);
  });

  it('the corpus exercises both engines for real (responses came back, requests reached the upstream)', () => {
    assert.ok(CASES.length > 60);
  });
});
