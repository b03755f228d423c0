import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { copyFileSync, existsSync, writeFileSync } from 'node:fs';
import { connect as h2connect, type ClientHttp2Session } from 'node:http2';
import { connect as tlsConnect, type PeerCertificate } from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import pino from 'pino';
import WebSocket, { WebSocketServer } from 'ws';
import { Agent, request } from 'undici';
import { createTestCa, type TestCa } from '../helpers/certs.ts';
import { startProxy, twoPools, type TestProxy } from '../helpers/proxy.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';
import { until } from '../helpers/wait.ts';

const run = promisify(execFile);

/** The certificate the TLS port presents for `servername`, and the negotiated ALPN protocol. */
async function handshake(port: number, ca: string, servername: string | undefined, alpn = ['http/1.1']): Promise<{ cert: PeerCertificate; alpn: string | false }> {
  const s = tlsConnect({ host: '127.0.0.1', port, ca, ...(servername === undefined ? {} : { servername }), ALPNProtocols: alpn, rejectUnauthorized: false });
  await once(s, 'secureConnect');
  const out = { cert: s.getPeerCertificate(), alpn: s.alpnProtocol ?? false };
  s.destroy();
  return out;
}

/** One h2 GET on an open session: status, headers, body. */
async function h2get(session: ClientHttp2Session, path: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
  const stream = session.request({ ':path': path, ...headers });
  const [resHeaders] = (await once(stream, 'response')) as [Record<string, unknown>];
  stream.setEncoding('utf8');
  let body = '';
  for await (const chunk of stream) body += chunk as string;
  return { status: Number(resHeaders[':status']), headers: resHeaders, body };
}

describe('TLS listener: SNI, HTTP/2, certificate reload', () => {
  let ca: TestCa;
  let blue: Upstream;
  let green: Upstream;
  let p: TestProxy;
  let tlsPort: number;
  let shop: ReturnType<TestCa['issue']>;
  let wild: ReturnType<TestCa['issue']>;
  // the certificate file the proxy watches: copies of other certificates are written over it
  let liveCert: string;
  let liveKey: string;

  before(async () => {
    ca = createTestCa();
    shop = ca.issue('shop', ['shop.test', 'www.shop.test']);
    wild = ca.issue('wild', ['*.api.test']);
    liveCert = `${ca.dir}/live.pem`;
    liveKey = `${ca.dir}/live.key`;
    copyFileSync(shop.cert, liveCert);
    copyFileSync(shop.key, liveKey);
    blue = await startUpstream('blue');
    green = await startUpstream('green');
    let i = 0;
    p = await startProxy(
      {
        listen: { host: '127.0.0.1', port: 0, redirect: true, tls: { port: 0, certs: [{ cert: liveCert, key: liveKey }, { cert: wild.cert, key: wild.key }] } },
        apps: [twoPools(blue.url, green.url)],
      },
      // a fixed sequence of draws, so a 30 % canary over h2 is an exact count
      { random: () => (i++ % 10) / 10 },
    );
    const port = p.sy.edge?.listener.server.address();
    assert.ok(port !== null && typeof port === 'object');
    tlsPort = port.port;
  });

  after(async () => {
    await p.close();
    await blue.close();
    await green.close();
    ca.close();
  });

  it('SNI picks the certificate that names the host, wildcards included; an unknown name gets the first', async () => {
    assert.match((await handshake(tlsPort, ca.caPem, 'shop.test')).cert.subjectaltname ?? '', /DNS:shop\.test/);
    assert.match((await handshake(tlsPort, ca.caPem, 'WWW.shop.test')).cert.subjectaltname ?? '', /DNS:www\.shop\.test/);
    assert.equal((await handshake(tlsPort, ca.caPem, 'a.api.test')).cert.subjectaltname, 'DNS:*.api.test');
    // one label deep only (RFC 6125): a.b.api.test is not covered and falls back to the default
    assert.match((await handshake(tlsPort, ca.caPem, 'a.b.api.test')).cert.subjectaltname ?? '', /shop\.test/);
    assert.match((await handshake(tlsPort, ca.caPem, 'unknown.example')).cert.subjectaltname ?? '', /shop\.test/);
    assert.match((await handshake(tlsPort, ca.caPem, undefined)).cert.subjectaltname ?? '', /shop\.test/);
  });

  it('offers h2 and http/1.1 by ALPN, and refuses TLS below 1.2', async () => {
    assert.equal((await handshake(tlsPort, ca.caPem, 'shop.test', ['h2', 'http/1.1'])).alpn, 'h2');
    assert.equal((await handshake(tlsPort, ca.caPem, 'shop.test', ['http/1.1'])).alpn, 'http/1.1');
    const s = tlsConnect({ host: '127.0.0.1', port: tlsPort, servername: 'shop.test', maxVersion: 'TLSv1.1', minVersion: 'TLSv1', rejectUnauthorized: false });
    const [err] = (await once(s, 'error')) as [Error];
    assert.ok(err instanceof Error);
    s.destroy();
  });

  it('proxies HTTP/1.1 over TLS with X-Forwarded-Proto: https', async () => {
    const r = await request(`https://127.0.0.1:${tlsPort}/hello`, { headers: { host: 'shop.test' }, dispatcher: new Agent({ connect: { ca: ca.caPem, servername: 'shop.test' } }) });
    assert.equal(r.statusCode, 200);
    assert.equal(JSON.parse(await r.body.text()).url, '/hello');
    assert.equal(blue.seen.at(-1)?.headers['x-forwarded-proto'], 'https');
  });

  it('HTTP/2 routes like HTTP/1.1: a switch and a 30 % canary observed over h2, no connection headers', async (t) => {
    const session = h2connect(`https://127.0.0.1:${tlsPort}`, { ca: ca.caPem, servername: 'shop.test' });
    t.after(async () => {
      session.close();
      await p.admin('POST', '/v1/apps/shop/switch', { to: 'blue' });
    });
    await once(session, 'remoteSettings');
    assert.equal(session.remoteSettings.maxConcurrentStreams, 128, 'the stream limit is announced');
    assert.equal(session.remoteSettings.maxHeaderListSize, 16_384, 'the header size limit is announced');
    const first = await h2get(session, '/a', { ':authority': 'shop.test', cookie: 'a=1' });
    assert.equal(first.status, 200);
    assert.equal(first.headers['x-served-by'], 'blue@1.0.0');
    assert.equal(first.headers['connection'], undefined);
    const seen = blue.seen.at(-1);
    assert.equal(seen?.headers['host'], 'shop.test');
    assert.equal(seen?.headers['x-forwarded-proto'], 'https');
    assert.ok(!seen?.rawHeaders.some((h) => h.startsWith(':')), 'no pseudo-header reaches the upstream');
    assert.equal((await p.admin('POST', '/v1/apps/shop/switch', { to: 'green' })).status, 200);
    assert.equal((await h2get(session, '/b', { ':authority': 'shop.test' })).headers['x-served-by'], 'green@2.0.0');
    assert.equal((await p.admin('PUT', '/v1/apps/shop/weights', { weights: { blue: 70, green: 30 } })).status, 200);
    const streams = await Promise.all(Array.from({ length: 100 }, () => h2get(session, '/c', { ':authority': 'shop.test' })));
    const greens = streams.filter((s) => s.headers['x-served-by'] === 'green@2.0.0').length;
    assert.equal(greens, 30, 'exactly 30 of 100 h2 streams on green with the fixed draws');
    // a body over h2 (no content-length) reaches the upstream whole
    const post = session.request({ ':path': '/post', ':method': 'POST', ':authority': 'shop.test' });
    post.end('hello over h2');
    post.setEncoding('utf8');
    let text = '';
    for await (const c of post) text += c as string;
    assert.equal(JSON.parse(text).body, 'hello over h2');
    const m = await request(`${p.adminUrl}/metrics`);
    assert.match(await m.body.text(), /switchyard_tls_certificate_expiry_seconds\{source=".*live\.pem"\} \d+/);
  });

  it('a reset h2 stream aborts its upstream request', async (t) => {
    let upstreamClosed!: () => void;
    const closed = new Promise<void>((r) => (upstreamClosed = r));
    const slow = await startUpstream('slow', (req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('started');
      req.socket.once('close', upstreamClosed);
    });
    const q = await startProxy({ listen: { host: '127.0.0.1', port: 0, tls: { port: 0, certs: [{ cert: shop.cert, key: shop.key }] } }, apps: [twoPools(slow.url, slow.url)] });
    t.after(async () => {
      await q.close();
      await slow.close();
    });
    const port = (q.sy.edge?.listener.server.address() as { port: number }).port;
    const session = h2connect(`https://127.0.0.1:${port}`, { ca: ca.caPem, servername: 'shop.test' });
    const stream = session.request({ ':path': '/slow', ':authority': 'shop.test' });
    await once(stream, 'data');
    stream.close(8 /* CANCEL */);
    await Promise.race([closed, sleep(5000).then(() => assert.fail('the upstream request was not aborted'))]);
    session.close();
  });

  it('curl --http2 gets the page over h2', async () => {
    assert.ok(existsSync('/usr/bin/curl'), 'curl is not installed: apt-get install -y curl (.ci/run installs it)');
    const { stdout } = await run('curl', ['-sS', '--http2', '--cacert', ca.caFile, '--resolve', `shop.test:${tlsPort}:127.0.0.1`, '-o', '/dev/null', '-w', '%{http_version} %{http_code}', `https://shop.test:${tlsPort}/curl`]);
    assert.equal(stdout, '2 200');
  });

  it('the plain port answers 308 to the same URL on https', async () => {
    const r = await request(`${p.proxyUrl}/path?q=1`, { headers: { host: 'shop.test' } });
    assert.equal(r.statusCode, 308);
    assert.equal(r.headers['location'], `https://shop.test:${tlsPort}/path?q=1`);
  });

  it('a certificate replaced on disk is served within seconds while open connections go on; a broken replacement keeps the old one', async (t) => {
    const session = h2connect(`https://127.0.0.1:${tlsPort}`, { ca: ca.caPem, servername: 'shop.test' });
    t.after(() => {
      session.close();
    });
    assert.equal((await h2get(session, '/before', { ':authority': 'shop.test' })).status, 200);
    const renewed = ca.issue('renewed', ['shop.test', 'renewed.shop.test']);
    // certbot-style: both files replaced
    copyFileSync(renewed.key, liveKey);
    copyFileSync(renewed.cert, liveCert);
    await until(t, 'the new certificate served', async () => /renewed\.shop\.test/.test((await handshake(tlsPort, ca.caPem, 'shop.test')).cert.subjectaltname ?? ''), { timeout: 5_000, interval: 100 });
    // the connection opened before the reload still serves
    assert.equal((await h2get(session, '/after', { ':authority': 'shop.test' })).status, 200);
    const failures = async (): Promise<number> => Number(/^switchyard_tls_certificate_reload_failures (\d+)$/m.exec(await (await request(`${p.adminUrl}/metrics`)).body.text())?.[1] ?? 0);
    const failedBefore = await failures();
    writeFileSync(liveCert, '-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n');
    // the reload of the broken file has been tried (and refused) once the failure is counted
    await until(t, 'the broken certificate refused', async () => (await failures()) > failedBefore, { interval: 100 });
    assert.match((await handshake(tlsPort, ca.caPem, 'shop.test')).cert.subjectaltname ?? '', /renewed\.shop\.test/);
    const m = await request(`${p.adminUrl}/metrics`);
    assert.match(await m.body.text(), /switchyard_tls_certificate_reload_failures [1-9]/);
  });

  it('admin.tls serves the admin API over TLS; an admin listener off loopback without it logs a loud warning', async () => {
    const lines: string[] = [];
    const logger = pino({ level: 'warn' }, { write: (l: string) => void lines.push(l) });
    const admin = ca.issue('admin', ['localhost']);
    const q = await startProxy({ admin: { host: '0.0.0.0', port: 0, tokens: [{ name: 't', token: 'test-token-0123456789abcdef' }], tls: { cert: admin.cert, key: admin.key } }, apps: [twoPools(blue.url, green.url)] }, { logger });
    try {
      const port = new URL(q.adminUrl).port;
      const r = await request(`https://localhost:${port}/readyz`, { dispatcher: new Agent({ connect: { ca: ca.caPem } }) });
      assert.equal(r.statusCode, 200);
      await r.body.text();
      assert.ok(!lines.some((l) => l.includes('INSECURE')), 'no warning with admin.tls');
    } finally {
      await q.close();
    }
    const plain = await startProxy({ admin: { host: '0.0.0.0', port: 0, tokens: [{ name: 't', token: 'test-token-0123456789abcdef' }] }, apps: [twoPools(blue.url, green.url)] }, { logger });
    await plain.close();
    assert.ok(lines.some((l) => l.includes('INSECURE') && l.includes('"level":40')), 'a warning names the clear-text admin listener');
  });

  it('a WebSocket upgrade works over HTTP/1.1 on the TLS port, the upstream told https', async (t) => {
    const up = await startUpstream('ws');
    const wss = new WebSocketServer({ server: up.server });
    const protos: unknown[] = [];
    wss.on('connection', (ws, req) => {
      protos.push(req.headers['x-forwarded-proto']);
      ws.on('message', (d: Buffer) => ws.send(`echo ${d.toString()}`));
    });
    const q = await startProxy({ listen: { host: '127.0.0.1', port: 0, tls: { port: 0, certs: [{ cert: shop.cert, key: shop.key }] } }, apps: [twoPools(up.url, up.url)] });
    t.after(async () => {
      await q.close();
      wss.close();
      await up.close();
    });
    const port = (q.sy.edge?.listener.server.address() as { port: number }).port;
    const ws = new WebSocket(`wss://127.0.0.1:${port}/socket`, { ca: ca.caPem, servername: 'shop.test', headers: { host: 'shop.test' } } as WebSocket.ClientOptions);
    await once(ws, 'open');
    ws.send('hi');
    const [msg] = (await once(ws, 'message')) as [Buffer];
    assert.equal(msg.toString(), 'echo hi');
    assert.deepEqual(protos, ['https']);
    ws.close();
    await once(ws, 'close');
  });

  it('graceful shutdown lets an h2 stream in flight finish, then stops', async (t) => {
    const slow = await startUpstream('slow', (_req, res) => {
      setTimeout(() => {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end('late');
      }, 300);
    });
    const q = await startProxy({ listen: { host: '127.0.0.1', port: 0, tls: { port: 0, certs: [{ cert: shop.cert, key: shop.key }] } }, shutdown: { grace: '2s', hardStop: '3s' }, apps: [twoPools(slow.url, slow.url)] });
    t.after(async () => {
      await q.close();
      await slow.close();
    });
    const port = (q.sy.edge?.listener.server.address() as { port: number }).port;
    const session = h2connect(`https://127.0.0.1:${port}`, { ca: ca.caPem, servername: 'shop.test' });
    session.on('error', () => undefined);
    const pending = h2get(session, '/slow', { ':authority': 'shop.test' });
      await until(t, 'the stream to reach the upstream', () => slow.seen.length > 0);
    const stopped = q.sy.shutdown();
    const r = await pending;
    assert.equal(r.status, 200);
    assert.equal(r.body, 'late');
    assert.deepEqual(await stopped, { cut: 0 });
    session.destroy();
  });
});
