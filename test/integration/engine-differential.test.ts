import assert from 'node:assert/strict';
import { type AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { CASES, exchange, get, normalize, normalizeSeen, corpusApp, startRecordingUpstream } from '../fixtures/differential-corpus.ts';
import { createTestCa, type TestCa } from '../helpers/certs.ts';
import { startProxy, type TestProxy } from '../helpers/proxy.ts';

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
  let up: Awaited<ReturnType<typeof startRecordingUpstream>>;
  let ca: TestCa;
  const ports = {} as Record<Combo, number>;
  const proxies: TestProxy[] = [];
  before(async () => {
    up = await startRecordingUpstream();
    ca = createTestCa();
    const cert = ca.issue('shop', ['shop.test']);
    const app = corpusApp(up.port);
    const native = await startProxy({ engine: 'native', apps: [app] });
    const undici = await startProxy({ engine: 'undici', apps: [app] });
    // a TLS port (no h2: the client speaks HTTP/1.1) beside the plain one, no redirect
    const tls = await startProxy({ engine: 'native', listen: { host: '127.0.0.1', port: 0, tls: { port: 0, http2: false, certs: [{ cert: cert.cert, key: cert.key }] } }, apps: [app] });
    proxies.push(native, undici, tls);
    ports['raw front + native'] = Number(new URL(native.proxyUrl).port);
    ports['node:http + undici'] = Number(new URL(undici.proxyUrl).port);
    ports['node:http + native'] = Number(new URL(tls.proxyUrl).port);
    ports['raw front + native, TLS'] = (tls.sy.edge?.listener.server.address() as AddressInfo).port;
  });
  after(async () => {
    for (const p of proxies) await p.close();
    await up.close();
    ca.close();
  });

  for (const c of CASES) {
    it(c.name, async () => {
      const result = {} as Record<Combo, { client: string; upstream: string[] }>;
      for (const combo of COMBOS) {
        up.seen.length = 0;
        const overTls = combo.endsWith('TLS');
        const client = await exchange(ports[combo], c.parts, c.opts, overTls ? ca.caPem : undefined);
        await sleep(50); // the upstream's side of an abort
        // the one field a TLS client is told apart by
        const seen = normalizeSeen(up.seen).map((e) => (overTls ? e.replace('\r\nx-forwarded-proto: https\r\n', '\r\nx-forwarded-proto: http\r\n') : e));
        result[combo] = { client: normalize(client), upstream: seen };
      }
      for (const combo of COMBOS.slice(1)) assert.deepEqual(result[combo], result['raw front + native'], `${combo} against raw front + native`);
    });
  }

  it('the TLS port is served by the raw front, the plain port beside it by node:http', async () => {
    const tls = proxies[2] as TestProxy;
    /** the most connections the front served at once while `reply` was under way */
    const peak = async (reply: Promise<string>): Promise<[string, number]> => {
      let most = 0;
      let done = false;
      void reply.finally(() => (done = true));
      while (!done) {
        most = Math.max(most, tls.sy.dataPlane.frontConnections);
        await sleep(5);
      }
      return [await reply, most];
    };
    const [plain, plainPeak] = await peak(exchange(ports['node:http + native'], [get('/slow')], { ms: 3000 }));
    assert.match(plain, /^HTTP\/1\.1 200 /);
    assert.equal(plainPeak, 0);
    const [overTls, tlsPeak] = await peak(exchange(ports['raw front + native, TLS'], [get('/slow')], { ms: 3000 }, ca.caPem));
    assert.match(overTls, /^HTTP\/1\.1 200 /);
    assert.equal(tlsPeak, 1);
  });

  it('the corpus exercises both engines for real (responses came back, requests reached the upstream)', () => {
    assert.ok(CASES.length > 60);
  });
});
