import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect as h2connect, type ClientHttp2Session } from 'node:http2';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
import { createTestCa, type TestCa } from '../helpers/certs.ts';
import { startProxy, twoPools, type TestProxy } from '../helpers/proxy.ts';
import { freePort } from '../helpers/ports.ts';
import { spawnServe } from '../helpers/serve-process.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';
import { until } from '../helpers/wait.ts';

/** A raw TCP connection that sends nothing; `closed` settles when the proxy (or we) close it. */
async function idle(port: number): Promise<{ socket: Socket; closed: Promise<void> }> {
  const socket = connect(port, '127.0.0.1');
  socket.on('error', () => undefined);
  socket.resume();
  const closed = once(socket, 'close').then(() => undefined);
  await Promise.race([once(socket, 'connect'), closed]);
  return { socket, closed };
}

/** How many of `conns` the peer still holds `ms` after they were opened (the refused ones were closed at accept). */
async function stillHeld(conns: { closed: Promise<void> }[], ms: number): Promise<number> {
  // a bounded window after every connection was made, for the refused ones to be closed at accept
  const held = await Promise.all(conns.map((c) => Promise.race([c.closed.then(() => false), sleep(ms).then(() => true)])));
  return held.filter(Boolean).length;
}

describe('one connection budget for every listener', () => {
  let ca: TestCa;
  let blue: Upstream;
  const cleanups: (() => Promise<void>)[] = [];
  before(async () => {
    ca = createTestCa();
    blue = await startUpstream('blue');
  });
  after(async () => {
    for (const c of cleanups.reverse()) await c();
    await blue.close();
    ca.close();
  });

  it('TLS connections count from the accept: 200 idle ones under ulimit -n 160 leave ~40 held and the admin API answering', async (t) => {
    const shop = ca.issue('budget', ['shop.test']);
    const tlsPort = await freePort();
    // a low fd limit, so that without the cap the idle connections would take every fd (they did: EMFILE, the admin API silent)
    const proc = await spawnServe(
      { listen: { host: '127.0.0.1', port: 0, acceptors: 1, tls: { port: tlsPort, certs: [{ cert: shop.cert, key: shop.key }] } }, apps: [twoPools(blue.url, blue.url)], limits: { maxConnections: 40 } },
      20_000,
      (cfg) => ({ command: 'bash', args: ['-c', `ulimit -n 160 && exec "${process.execPath}" src/main.ts serve --config "${cfg}"`], cwd: process.cwd() }),
    );
    cleanups.push(() => proc.cleanup());
    const conns: { socket: Socket; closed: Promise<void> }[] = [];
    for (let i = 0; i < 200; i++) conns.push(await idle(tlsPort));
    const held = await stillHeld(conns, 500);
    assert.ok(held <= 42, `${held} idle TLS connections held with maxConnections: 40`);
    assert.ok(held >= 30, `${held} held: the cap, not something else, closed the rest`);
    const r = await request(`${proc.adminUrl}/v1/apps`, { headers: { authorization: 'Bearer test-token-0123456789abcdef' } });
    await r.body.dump();
    assert.equal(r.statusCode, 200, 'the admin API answers with the proxy full');
    const metrics = await (await request(`${proc.adminUrl}/metrics`)).body.text();
    assert.match(metrics, /^switchyard_client_connections (3[0-9]|4[0-2])$/m);
    // the connections free their slots: a TLS request is served again
    for (const c of conns) c.socket.destroy();
    await until(t, 'a TLS handshake to succeed once the idle connections closed', () => new Promise<boolean>((resolve) => {
      const s = tlsConnect({ port: tlsPort, host: '127.0.0.1', servername: 'shop.test', ca: ca.caPem }, () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    }), { timeout: 10_000, interval: 100 });
  });

  it('a TLS connection that never finishes its handshake is closed after the handshake timeout', async (t) => {
    const shop = ca.issue('handshake', ['shop.test']);
    const p: TestProxy = await startProxy({ listen: { host: '127.0.0.1', port: 0, tls: { port: 0, certs: [{ cert: shop.cert, key: shop.key }] } }, apps: [twoPools(blue.url, blue.url)], limits: { headerTimeout: '500ms' } });
    cleanups.push(() => p.close());
    const { port } = p.sy.edge?.listener.server.address() as AddressInfo;
    const c = await idle(port);
    await until(t, 'the connection counted before any handshake', () => p.sy.dataPlane.limits.open === 1);
    const started = performance.now();
    await c.closed;
    assert.ok(performance.now() - started < 5000, 'closed by the handshake timeout');
    await until(t, 'the connection uncounted', () => p.sy.dataPlane.limits.open === 0);
  });

  it('4 h2 clients × 100 streams to a slow upstream hold at most maxConnections upstream connections; the rest queue or get 503; no target is blamed', async () => {
    let open = 0;
    let peak = 0;
    const slow = await startUpstream('slow', (_req, res) => {
      setTimeout(() => {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end('slow');
      }, 500);
    });
    cleanups.push(() => slow.close());
    slow.server.on('connection', (s: Socket) => {
      open++;
      peak = Math.max(peak, open);
      s.once('close', () => open--);
    });
    const shop = ca.issue('streams', ['shop.test']);
    const p = await startProxy({
      listen: { host: '127.0.0.1', port: 0, tls: { port: 0, certs: [{ cert: shop.cert, key: shop.key }] } },
      apps: [twoPools(slow.url, slow.url, { health: { interval: '1m', passive: { failures: 3, ejectFor: '1m' } } })],
      limits: { maxConnections: 40, queueTimeout: '1200ms' },
    });
    cleanups.push(() => p.close());
    const { port } = p.sy.edge?.listener.server.address() as AddressInfo;
    const sessions: ClientHttp2Session[] = [];
    for (let i = 0; i < 4; i++) {
      const s = h2connect(`https://127.0.0.1:${port}`, { ca: ca.caPem, servername: 'shop.test' });
      s.on('error', () => undefined);
      await once(s, 'remoteSettings');
      sessions.push(s);
    }
    const statuses: number[] = [];
    await Promise.all(
      sessions.flatMap((s) =>
        Array.from({ length: 100 }, async () => {
          const st = s.request({ ':path': '/', ':authority': 'shop.test' });
          st.on('error', () => undefined);
          const [h] = (await once(st, 'response')) as [Record<string, unknown>];
          st.resume();
          await once(st, 'end');
          statuses.push(Number(h[':status']));
        }),
      ),
    );
    for (const s of sessions) s.close();
    assert.equal(statuses.length, 400);
    const ok = statuses.filter((s) => s === 200).length;
    const busy = statuses.filter((s) => s === 503).length;
    assert.equal(ok + busy, 400, `only 200 and 503: ${JSON.stringify(statuses.filter((s) => s !== 200 && s !== 503))}`);
    assert.ok(ok >= 36, `${ok} streams served`);
    assert.ok(peak <= 40, `${peak} upstream connections at once with maxConnections: 40`);
    assert.equal(p.sy.dataPlane.limits.streams.inflight, 0);
    for (const t of p.sy.runtime.pool('shop', 'blue')?.targets ?? []) {
      assert.equal(t.ejections, 0, 'the target is not blamed for our limits');
      assert.ok(t.isUp(Date.now()));
    }
    const text = await (await request(`${p.adminUrl}/metrics`)).body.text();
    const queued = /^switchyard_limit_enforced_total\{limit="queue"\} (\d+)$/m.exec(text);
    assert.equal(Number(queued?.[1]), busy, 'each 503 counted as a queue timeout');
  });
});

describe('h2c on the plain port shares the budget', () => {
  it('announces at most maxConnections concurrent streams per session, as the TLS port does (regression: h2c was created without the limits)', async (t) => {
    const up = await startUpstream('blue');
    const p = await startProxy({ listen: { host: '127.0.0.1', port: 0, h2c: true }, limits: { maxConnections: 40 }, apps: [twoPools([up.url], up.url)] });
    t.after(async () => {
      await p.close();
      await up.close();
    });
    const s: ClientHttp2Session = h2connect(p.proxyUrl);
    t.after(() => s.destroy());
    await once(s, 'remoteSettings');
    assert.ok((s.remoteSettings.maxConcurrentStreams ?? Infinity) <= 40, `announced ${s.remoteSettings.maxConcurrentStreams}`);
  });
});
