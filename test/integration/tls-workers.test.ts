import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { IncomingMessage } from 'node:http';
import { copyFileSync } from 'node:fs';
import { request as httpsRequest, type RequestOptions } from 'node:https';
import { connect as h2connect } from 'node:http2';
import type { PeerCertificate, TLSSocket } from 'node:tls';
import { after, before, describe, it, type TestContext } from 'node:test';
import { request } from 'undici';
import { createTestCa, type TestCa } from '../helpers/certs.ts';
import { startPebble } from '../helpers/pebble.ts';
import { twoPools } from '../helpers/proxy.ts';
import { freePort } from '../helpers/ports.ts';
import { spawnServe, type ServeProcess } from '../helpers/serve-process.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';
import { until } from '../helpers/wait.ts';

/**
 * `listen.tls` with `workers: 2`, as an operator runs it (`src/main.ts serve`, a primary and two
 * node:cluster workers on fixed ports, so each worker has SO_REUSEPORT sockets on both ports).
 */

const HOST = 'shop.test';

/** Requests each worker served, once every worker has reported after this call (`/readyz` details, `reportedAt`). */
async function served(t: TestContext, p: ServeProcess): Promise<number[]> {
  const asked = Date.now();
  const workers = await until(t, 'a report from every worker', async () => {
  const r = await request(`${p.adminUrl}/readyz`);
    const body = (await r.body.json()) as { details: { workers: { served?: number; reportedAt?: number | null }[] } };
    return body.details.workers.every((w) => (w.reportedAt ?? 0) > asked) ? body.details.workers : undefined;
  }, { interval: 50 });
  return workers.map((w) => w.served ?? 0);
}

/** One HTTP/1.1-over-TLS GET on a connection of its own: status, X-Served-By and the certificate presented. */
async function h1(port: number, opts: RequestOptions = {}): Promise<{ status: number; servedBy: string; cert: PeerCertificate; alpn: string | false }> {
  const req = httpsRequest({ host: '127.0.0.1', port, servername: HOST, path: '/', agent: false, rejectUnauthorized: false, headers: { host: HOST }, ...opts, ...({ ALPNProtocols: ['http/1.1'] } as RequestOptions) });
  req.end();
  const [res] = (await once(req, 'response')) as [IncomingMessage];
  const socket = res.socket as TLSSocket;
  const out = { status: res.statusCode ?? 0, servedBy: String(res.headers['x-served-by']), cert: socket.getPeerCertificate(), alpn: socket.alpnProtocol ?? false };
  res.resume();
  await once(res, 'end');
  return out;
}

/** One h2 GET on a session of its own. */
async function h2(port: number): Promise<{ status: number; servedBy: string }> {
  const session = h2connect(`https://127.0.0.1:${port}`, { servername: HOST, rejectUnauthorized: false });
  try {
    const stream = session.request({ ':path': '/', ':authority': HOST });
    const [headers] = (await once(stream, 'response')) as [Record<string, unknown>];
    stream.resume();
    await once(stream, 'end');
    return { status: Number(headers[':status']), servedBy: String(headers['x-served-by']) };
  } finally {
    session.close();
  }
}

/** `n` calls, 4 at a time. */
async function many<T>(n: number, call: () => Promise<T>): Promise<T[]> {
  const out: T[] = [];
  let started = 0;
  await Promise.all(
    Array.from({ length: 4 }, async () => {
      while (started++ < n) out.push(await call());
    }),
  );
  return out;
}

const delta = (a: number[], b: number[]): number[] => b.map((x, i) => x - (a[i] ?? 0));

describe('listen.tls with workers: 2', () => {
  let up: Upstream;
  before(async () => {
    // `/slow` answers after 1 s: a request in flight across a shutdown
    up = await startUpstream('blue', (req, res) => {
      setTimeout(() => res.end('ok'), req.url === '/slow' ? 1000 : 0);
    });
  });
  after(async () => {
    await up.close();
  });

  describe('certificate files', () => {
    let ca: TestCa;
    let p: ServeProcess;
    let tlsPort: number;
    let liveCert: string;
    let liveKey: string;
    before(async () => {
      ca = createTestCa();
      const first = ca.issue('first', [HOST]);
      liveCert = `${ca.dir}/live.pem`;
      liveKey = `${ca.dir}/live.key`;
      copyFileSync(first.cert, liveCert);
      copyFileSync(first.key, liveKey);
      tlsPort = await freePort();
      const plain = await freePort();
      p = await spawnServe({ workers: 2, listen: { host: '127.0.0.1', port: plain, tls: { port: tlsPort, certs: [{ cert: liveCert, key: liveKey }] } }, apps: [twoPools(up.url, up.url)] }, 20_000);
    });
    after(async () => {
      await p?.cleanup();
      ca?.close();
    });

    it('both workers answer HTTP/1.1 over TLS and h2 on the TLS port', async (t) => {
      const before0 = await served(t, p);
      const viaH1 = await many(40, () => h1(tlsPort));
      assert.ok(viaH1.every((r) => r.status === 200 && r.servedBy === 'blue@1.0.0' && r.alpn === 'http/1.1'), JSON.stringify(viaH1.map((r) => [r.status, r.servedBy, r.alpn])));
      const afterH1 = await served(t, p);
      assert.ok(delta(before0, afterH1).every((n) => n > 0), `every worker answered HTTP/1.1 over TLS: ${JSON.stringify(delta(before0, afterH1))}`);
      const viaH2 = await many(40, () => h2(tlsPort));
      assert.ok(viaH2.every((r) => r.status === 200 && r.servedBy === 'blue@1.0.0'));
      const afterH2 = await served(t, p);
      assert.ok(delta(afterH1, afterH2).every((n) => n > 0), `every worker answered h2: ${JSON.stringify(delta(afterH1, afterH2))}`);
      assert.equal(delta(before0, afterH2).reduce((a, b) => a + b, 0), 80, 'each request counted once, by the worker that answered it');
    });

    it('a replaced certificate file is served within seconds by every worker', async (t) => {
      const renewed = ca.issue('renewed', [HOST]);
      const serial = (await h1(tlsPort)).cert.serialNumber;
      copyFileSync(renewed.key, liveKey);
      copyFileSync(renewed.cert, liveCert);
      await until(t, 'every worker to serve the new certificate', async () => (await many(8, () => h1(tlsPort))).every((r) => r.cert.serialNumber !== serial), { timeout: 5_000, interval: 200 });
      // from now on every connection, whichever worker takes it, gets the new certificate
      const before0 = await served(t, p);
      const seen = await many(40, () => h1(tlsPort));
      assert.deepEqual([...new Set(seen.map((r) => r.cert.serialNumber))], [seen[0]?.cert.serialNumber]);
      assert.notEqual(seen[0]?.cert.serialNumber, serial);
      assert.ok(delta(before0, await served(t, p)).every((n) => n > 0), 'both workers took some of those connections');
    });

    it('SIGTERM: both workers send GOAWAY and an h2 stream in flight finishes', async (t) => {
      const session = h2connect(`https://127.0.0.1:${tlsPort}`, { servername: HOST, rejectUnauthorized: false });
      const goaway = once(session, 'goaway');
      // the upstream answers after 1 s: the stream is in flight when the signal arrives
      const seenBefore = up.seen.filter((r) => r.url === '/slow').length;
      const stream = session.request({ ':path': '/slow', ':authority': HOST });
      await until(t, 'the stream to reach the upstream', () => up.seen.filter((r) => r.url === '/slow').length > seenBefore);
      p.child.kill('SIGTERM');
      const [headers] = (await once(stream, 'response')) as [Record<string, unknown>];
      stream.resume();
      await once(stream, 'end');
      assert.equal(headers[':status'], 200);
      await goaway;
      const [code] = await p.exited;
      assert.equal(code, 0);
    });
  });

  it('ACME http-01 against pebble: one order for the group, the certificate served by both workers', async (t) => {
    const [plain, tlsPort] = [await freePort(), await freePort()];
    const pebble = await startPebble({ httpPort: plain, tlsPort });
    t.after(() => pebble.close());
    const p = await spawnServe(
      {
        workers: 2,
        listen: { host: '127.0.0.1', port: plain, acceptors: 1, redirect: true, tls: { port: tlsPort, acme: { directory: pebble.directory, caFile: pebble.caFile, hosts: [HOST], challenge: 'http-01', retry: '500ms' } } },
        apps: [twoPools(up.url, up.url, { hosts: [HOST] })],
      },
      20_000,
    );
    t.after(() => p.cleanup());
    await until(
      t,
      'an ACME certificate on every worker',
      async () => {
        const ok = await many(8, () => h1(tlsPort).catch(() => null)).then((r) => r.filter((x) => x !== null));
        return ok.length === 8 && ok.every((r) => /Pebble/i.test(String(r.cert.issuer.CN)));
      },
      { timeout: 30_000, interval: 300, detail: () => p.output().slice(-2000) },
    );
    const before0 = await served(t, p);
    const seen = await many(40, () => h1(tlsPort));
    assert.ok(seen.every((r) => /Pebble/i.test(String(r.cert.issuer.CN)) && r.status === 200));
    assert.equal(new Set(seen.map((r) => r.cert.serialNumber)).size, 1, 'one certificate, served by both workers');
    assert.ok(delta(before0, await served(t, p)).every((n) => n > 0), 'both workers took some of those connections');
    const text = await (await request(`${p.adminUrl}/metrics`)).body.text();
    assert.match(text, /switchyard_acme_orders_total\{host="shop\.test"\} 1\b/, 'one order for the whole group');
    const ready = (await (await request(`${p.adminUrl}/readyz`)).body.json()) as { details: { acme: { orderer: boolean; hosts: { host: string; notAfter: string | null; lastError: string | null }[] } } };
    assert.equal(ready.details.acme.orderer, true);
    assert.equal(ready.details.acme.hosts[0]?.lastError, null);
    assert.notEqual(ready.details.acme.hosts[0]?.notAfter, null);
  });
});
