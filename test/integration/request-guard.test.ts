import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect as h2connect, type ClientHttp2Session } from 'node:http2';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { Front, type FrontExchange } from '../../src/dataplane/front.ts';
import { RequestGuard } from '../../src/dataplane/guard.ts';
import { createTestCa, type TestCa } from '../helpers/certs.ts';
import { startProxy, twoPools, type TestProxy } from '../helpers/proxy.ts';
import { rawRequest, statusOf } from '../helpers/raw.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';

/**
 * No input ends the process (issue 22). Every test here runs the proxy in the test's own process:
 * an exception that escaped a request would end the test run itself, so each one fails loudly
 * on the code before the fix.
 */

// one byte in 0x80–0xFF: one UTF-16 unit, two UTF-8 bytes, so the string lengths matched and
// timingSafeEqual threw on the byte lengths (a preview value is `blue.` + 64 hex digits, a pin's
// signature 22 base64url characters)
const BAD_PREVIEW = `blue.\xe9${'a'.repeat(63)}`;
const BAD_PIN = `sy_pin=blue.0.0.\xe9${'a'.repeat(21)}`;
const SECRETS = { preview: { secret: 'preview-secret-0123456789' }, affinity: { secret: 'affinity-secret-0123456789', window: '10m' } };

/** A GET with one more header line, sent byte for byte (latin1: `\xe9` is the one byte 0xE9). */
function raw(path: string, extra: string): Buffer {
  return Buffer.from(`GET ${path} HTTP/1.1\r\nHost: shop.test\r\n${extra}\r\nConnection: close\r\n\r\n`, 'latin1');
}

async function h2get(session: ClientHttp2Session, headers: Record<string, string>): Promise<number> {
  const stream = session.request({ ':path': '/', ':authority': 'shop.test', ...headers });
  const [h] = (await once(stream, 'response')) as [Record<string, unknown>];
  stream.resume();
  await once(stream, 'end');
  return Number(h[':status']);
}

describe('no input ends the process: signatures compared on their bytes', () => {
  let blue: Upstream;
  let green: Upstream;
  let ca: TestCa;
  const proxies: TestProxy[] = [];
  before(async () => {
    blue = await startUpstream('blue');
    green = await startUpstream('green');
    ca = createTestCa();
  });
  after(async () => {
    for (const p of proxies) await p.close();
    await blue.close();
    await green.close();
    ca.close();
  });

  for (const engine of ['native', 'undici'] as const) {
    // engine native without TLS: the raw-socket front serves these; engine undici: node:http does
    it(`a preview header or pin cookie with a byte over 0x7F is ignored, not fatal (HTTP/1.1, engine ${engine})`, async () => {
      const p = await startProxy({ engine, apps: [twoPools(blue.url, green.url, SECRETS)] });
      proxies.push(p);
      const port = Number(new URL(p.proxyUrl).port);
      // the bad signature is ignored: routed by weight (blue at 100)
      for (const extra of [`x-switchyard-preview: ${BAD_PREVIEW}`, `Cookie: ${BAD_PIN}`]) {
        const reply = await rawRequest(port, raw('/', extra), 5000);
        assert.equal(statusOf(reply), 200, reply);
        assert.match(reply, /x-served-by: blue@1\.0\.0/i);
      }
      assert.equal(p.sy.dataPlane.limits.guard.counts.request, 0, 'nothing threw');
      assert.equal((await p.get('/')).status, 200);
    });

    it(`the same over HTTP/2 on the TLS port (engine ${engine})`, async () => {
      const shop = ca.issue(`shop-${engine}`, ['shop.test']);
      const p = await startProxy({ engine, listen: { host: '127.0.0.1', port: 0, tls: { port: 0, certs: [{ cert: shop.cert, key: shop.key }] } }, apps: [twoPools(blue.url, green.url, SECRETS)] });
      proxies.push(p);
      const { port } = p.sy.edge?.listener.server.address() as AddressInfo;
      const session = h2connect(`https://127.0.0.1:${port}`, { ca: ca.caPem, servername: 'shop.test' });
      try {
        assert.equal(await h2get(session, { 'x-switchyard-preview': BAD_PREVIEW }), 200);
        assert.equal(await h2get(session, { cookie: BAD_PIN }), 200);
        assert.equal(await h2get(session, {}), 200, 'the session still serves');
      } finally {
        session.close();
      }
      // node:http on the plain port of a TLS config (the raw front serves no TLS config)
      const reply = await rawRequest(Number(new URL(p.proxyUrl).port), raw('/', `x-switchyard-preview: ${BAD_PREVIEW}`), 5000);
      assert.equal(statusOf(reply), 200, reply);
      assert.equal(p.sy.dataPlane.limits.guard.counts.request, 0);
    });
  }
});

describe('no input ends the process: an exception ends its request only', () => {
  let blue: Upstream;
  let green: Upstream;
  let ca: TestCa;
  const proxies: TestProxy[] = [];
  before(async () => {
    blue = await startUpstream('blue');
    green = await startUpstream('green');
    ca = createTestCa();
  });
  after(async () => {
    for (const p of proxies) await p.close();
    await blue.close();
    await green.close();
    ca.close();
  });

  /** A routing draw that throws once when armed: a bug planted in the middle of the request path. */
  function plantedBug(): { random: () => number; arm(): void } {
    let armed = false;
    return {
      random: () => {
        if (armed) {
          armed = false;
          throw new Error('planted bug');
        }
        return 0.5;
      },
      arm: () => (armed = true),
    };
  }

  for (const engine of ['native', 'undici'] as const) {
    it(`HTTP/1.1 (engine ${engine}): 500 for that request, counted, the next one served`, async () => {
      const bug = plantedBug();
      const p = await startProxy({ engine, apps: [twoPools(blue.url, green.url, { initial: { blue: 50, green: 50 } })] }, { random: bug.random });
      proxies.push(p);
      const port = Number(new URL(p.proxyUrl).port);
      bug.arm();
      const reply = await rawRequest(port, raw('/', 'X-A: 1'), 5000);
      assert.equal(statusOf(reply), 500, reply);
      assert.match(reply, /connection: close/i);
      assert.equal(p.sy.dataPlane.limits.guard.counts.request, 1);
      assert.equal((await p.get('/')).status, 200);
      const metrics = await (await fetch(`${p.adminUrl}/metrics`)).text();
      assert.match(metrics, /^switchyard_request_exceptions_total\{place="request"\} 1$/m);
    });

    it(`HTTP/2 (engine ${engine}): the stream gets 500, the session goes on`, async () => {
      const bug = plantedBug();
      const shop = ca.issue(`bug-${engine}`, ['shop.test']);
      const p = await startProxy({ engine, listen: { host: '127.0.0.1', port: 0, tls: { port: 0, certs: [{ cert: shop.cert, key: shop.key }] } }, apps: [twoPools(blue.url, green.url, { initial: { blue: 50, green: 50 } })] }, { random: bug.random });
      proxies.push(p);
      const { port } = p.sy.edge?.listener.server.address() as AddressInfo;
      const session = h2connect(`https://127.0.0.1:${port}`, { ca: ca.caPem, servername: 'shop.test' });
      try {
        bug.arm();
        assert.equal(await h2get(session, {}), 500);
        assert.equal(await h2get(session, {}), 200);
      } finally {
        session.close();
      }
      assert.equal(p.sy.dataPlane.limits.guard.counts.request, 1);
    });
  }

  it('an exception in the engine while it reads a response ends that request, not the target', async () => {
    // the access log's sampling draw (accessSample under 1) runs when the response ends, inside the engine's read
    let armed = false;
    const sampleRandom = (): number => {
      if (armed) {
        armed = false;
        throw new Error('planted bug in the engine path');
      }
      return 0;
    };
    const p = await startProxy({ engine: 'native', log: { level: 'silent', accessSample: 0.5 }, apps: [twoPools(blue.url, green.url, { health: { interval: '1m', passive: { failures: 1, ejectFor: '1m' } } })] }, { sampleRandom });
    proxies.push(p);
    armed = true;
    await p.get('/').catch(() => undefined); // its response may be cut: what matters is what follows
    assert.equal(p.sy.dataPlane.limits.guard.counts.engine, 1);
    for (let i = 0; i < 3; i++) assert.equal((await p.get('/')).status, 200);
    for (const t of p.sy.runtime.pool('shop', 'blue')?.targets ?? []) assert.equal(t.ejections, 0, 'the target is not blamed');
  });

  it('an exception in the raw front itself closes that connection with 500, nothing else', async (t) => {
    const guard = new RequestGuard();
    let bomb = false;
    const front: Front = new Front(
      {
        handle: (ex: FrontExchange) => ex.end('ok'),
        handOff: (s: Socket) => s.destroy(),
        closing: () => {
          if (bomb) throw new Error('planted bug in the front');
          return false;
        },
        caught: (err, socket, answered) => guard.socket(err, socket, 'connection', answered),
      },
      60_000,
    );
    const server = createServer((s) => front.accept(s));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    t.after(() => {
      front.closeAll();
      server.close();
      guard.stop();
    });
    const port = (server.address() as AddressInfo).port;
    bomb = true;
    const reply = await rawRequest(port, 'GET / HTTP/1.1\r\nHost: a\r\n\r\n', 5000);
    assert.equal(statusOf(reply), 500, reply);
    assert.equal(guard.counts.connection, 1);
    bomb = false;
    assert.equal(statusOf(await rawRequest(port, 'GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n', 5000)), 200);
  });
});
