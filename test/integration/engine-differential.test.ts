import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { HOSTILE_REQUESTS } from '../fixtures/hostile-requests.ts';
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

/** What the upstream saw of one request: line, fields as sent, body digest, and whether the proxy hung up first. */
interface Seen {
  line: string;
  fields: string[];
  body: string;
  aborted: boolean;
}

type Behaviour = (req: IncomingMessage, res: ServerResponse, body: Buffer) => void;

/** Writes raw bytes on the upstream socket and closes it: for responses node:http will not make. */
const raw = (bytes: string): Behaviour => (_req, res) => {
  res.socket?.end(bytes, 'latin1');
};

const big = (n: number): Buffer => Buffer.alloc(n, 'abcdefghijklmnopqrstuvwxyz0123456789');

const BEHAVIOURS: Record<string, Behaviour> = {
  '/len': (_q, res) => res.end('hello by length'),
  '/chunked': (_q, res) => {
    res.write('one,');
    setTimeout(() => res.end('two'), 5);
  },
  '/trailers': (_q, res) => {
    res.writeHead(200, { 'transfer-encoding': 'chunked', trailer: 'x-sum' });
    res.write('body');
    res.addTrailers({ 'x-sum': '42' });
    res.end();
  },
  '/echo': (req, res, body) => res.end(`${req.method} ${body.length} ${createHash('sha1').update(body).digest('hex')}`),
  '/hints': (_q, res) => {
    res.writeEarlyHints({ link: '</a.css>; rel=preload' });
    res.end('after hints');
  },
  '/processing': raw('HTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok'),
  '/204': (_q, res) => {
    res.writeHead(204, { 'x-empty': 'yes' });
    res.end();
  },
  '/304': (_q, res) => {
    res.writeHead(304, { etag: '"v1"' });
    res.end();
  },
  '/64k': (_q, res) => res.end(big(64 * 1024)),
  '/1m-chunked': (_q, res) => {
    for (let i = 0; i < 16; i++) res.write(big(64 * 1024));
    res.end();
  },
  '/4m': (_q, res) => res.end(big(4 * 1024 * 1024)),
  '/cookies': (_q, res) => {
    res.setHeader('set-cookie', ['a=1; Path=/', 'b=2; Path=/']);
    res.setHeader('connection', 'x-private');
    res.setHeader('x-private', 'dropped');
    res.setHeader('keep-alive', 'timeout=5');
    res.end('cookies');
  },
  '/eof-body': raw('HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil the connection closes'),
  '/http10': raw('HTTP/1.0 200 OK\r\ncontent-length: 4\r\n\r\nold!'),
  '/no-response': (_q, res) => res.socket?.destroy(),
  '/bad-header': raw('HTTP/1.1 200 OK\r\nbad header: x\r\ncontent-length: 2\r\n\r\nok'),
  '/two-lengths': raw('HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nok!'),
  '/truncated': raw('HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly ten b'),
  '/bad-chunk': raw('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n'),
  '/unasked-101': raw('HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n'),
  '/split-body': (_q, res) => {
    res.writeHead(200, { 'content-length': '10' });
    res.write('hello');
    setTimeout(() => res.end('world'), 30);
  },
  '/extra-bytes': raw('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokEXTRA'),
  '/slow': (_q, res) => void setTimeout(() => res.end('late'), 150),
  '/hang': () => undefined,
};

/** The one upstream both proxies forward to; it records what each request looked like on arrival. */
async function startRecordingUpstream(): Promise<{ port: number; seen: Seen[]; close(): Promise<void> }> {
  const seen: Seen[] = [];
  const server = createServer({ requireHostHeader: false }, (req, res) => {
    const chunks: Buffer[] = [];
    const entry: Seen = { line: `${req.method} ${req.url} HTTP/${req.httpVersion}`, fields: req.rawHeaders.slice(), body: '', aborted: false };
    seen.push(entry);
    res.on('close', () => (entry.aborted = !res.writableFinished));
    if (req.url === '/slow-read') {
      // an upstream that takes its request body only what is buffered at each millisecond's tick
      // (faster would not be slow; slower, on a loaded machine, outlasts timeouts.response)
      req.pause();
      const pull = setInterval(() => {
        const c = req.read() as Buffer | null;
        if (c !== null) chunks.push(c);
      }, 1);
      req.on('end', () => clearInterval(pull));
      req.on('close', () => clearInterval(pull));
    } else req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      entry.body = `${body.length}:${createHash('sha1').update(body).digest('hex')}`;
      const path = (req.url ?? '/').split('?')[0] as string;
      (BEHAVIOURS[path] ?? BEHAVIOURS['/echo'] as Behaviour)(req, res, body);
    });
  });
  server.on('upgrade', (_req, socket: Socket) => {
    seen.push({ line: 'upgrade', fields: [], body: '', aborted: false });
    socket.write('HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n');
    socket.end();
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as AddressInfo).port,
    seen,
    async close() {
      server.closeAllConnections();
      server.close();
    },
  };
}

/** Sends raw bytes (in `parts`, `gap` ms apart) and reads until the proxy closes or `ms` passes; `abortAfter` hangs up early; `ca`: over TLS. */
function exchange(port: number, parts: string[], opts: { ms?: number; gap?: number; abortAfter?: number } = {}, ca?: string): Promise<string> {
  return new Promise((resolve) => {
    const out: Buffer[] = [];
    const send = async (): Promise<void> => {
      for (const p of parts) {
        s.write(p, 'latin1');
        if (opts.gap !== undefined) await sleep(opts.gap);
      }
    };
    const s = ca === undefined ? connect(port, '127.0.0.1', () => void send()) : tlsConnect({ port, host: '127.0.0.1', ca, servername: 'shop.test', ALPNProtocols: ['http/1.1'] }, () => void send());
    const timer = setTimeout(() => s.destroy(), opts.abortAfter ?? opts.ms ?? 1500);
    s.on('data', (d: Buffer) => out.push(d));
    s.on('error', () => undefined);
    s.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(out).toString('latin1'));
    });
  });
}

/** A body as the client reads it: over 4 KiB a digest, so failures stay readable. */
function bodyText(body: string): string {
  return body.length < 4096 ? body : `<${body.length} bytes sha1 ${createHash('sha1').update(body, 'latin1').digest('hex')}>`;
}

/**
 * A reply as a client reads it, response by response: chunked bodies decoded (node:http makes one
 * chunk per write, and how the bytes arrived is timing, not behaviour; a broken chunked body
 * shows as `<cut>`), Date and generated request ids masked (they differ between any two runs).
 */
function normalize(text: string): string {
  let out = '';
  let rest = text;
  while (rest !== '') {
    const end = rest.indexOf('\r\n\r\n');
    if (end === -1) return out + bodyText(rest);
    const head = rest.slice(0, end + 4);
    rest = rest.slice(end + 4);
    out += head;
    const status = Number(/^HTTP\/1\.\d (\d{3})/.exec(head)?.[1] ?? 0);
    if (status < 200 && status !== 0) continue;
    let body: string;
    if (/\r\ntransfer-encoding: chunked/i.test(head)) {
      body = '';
      for (;;) {
        const line = rest.indexOf('\r\n');
        const size = line === -1 ? NaN : parseInt(rest.slice(0, line), 16);
        if (Number.isNaN(size) || rest.length < line + 2 + size + 2) {
          body += '<cut>';
          rest = '';
          break;
        }
        body += rest.slice(line + 2, line + 2 + size);
        rest = rest.slice(line + 2 + size + 2);
        if (size === 0) break;
      }
      out += `<chunked>${bodyText(body)}`;
    } else {
      const length = /\r\ncontent-length: (\d+)/i.exec(head);
      const n = length === null || /^HEAD /.test(head) || status === 204 || status === 304 ? (length === null && status !== 204 && status !== 304 ? rest.length : 0) : Number(length[1]);
      body = rest.slice(0, n);
      rest = rest.slice(n);
      out += bodyText(body);
    }
  }
  return out.replace(/\r\ndate: [^\r\n]*/gi, '\r\ndate: <date>').replace(/[0-9a-f]{12}-[0-9a-z]+/g, '<id>');
}

function normalizeSeen(s: Seen[]): string[] {
  return s.map((e) => `${e.line}\r\n${e.fields.map((f, i) => (i % 2 === 0 ? `${f}: ` : `${f}\r\n`)).join('')}\r\n${e.body} aborted=${e.aborted}`.replace(/[0-9a-f]{12}-[0-9a-z]+/g, '<id>'));
}

interface Case {
  readonly name: string;
  readonly parts: string[];
  readonly opts?: { ms?: number; gap?: number; abortAfter?: number };
}

const H = 'Host: shop.test\r\n';
const get = (path: string, extra = ''): string => `GET ${path} HTTP/1.1\r\n${H}${extra}Connection: close\r\n\r\n`;
const upload = big(256 * 1024).toString('latin1');
const chunkedUpload = `${(64 * 1024).toString(16)}\r\n${big(64 * 1024).toString('latin1')}\r\n3\r\nend\r\n0\r\nx-trailer: t\r\n\r\n`;

const CASES: Case[] = [
  ...['/len', '/chunked', '/trailers', '/hints', '/processing', '/204', '/304', '/64k', '/1m-chunked', '/4m', '/cookies', '/eof-body', '/http10', '/no-response', '/bad-header', '/two-lengths', '/truncated', '/bad-chunk', '/unasked-101', '/split-body', '/extra-bytes', '/slow'].map((p) => ({ name: `GET ${p}`, parts: [get(p)], opts: { ms: 3000 } })),
  { name: 'HEAD with a length', parts: [`HEAD /len HTTP/1.1\r\n${H}Connection: close\r\n\r\n`] },
  { name: 'GET with a body', parts: [`GET /echo HTTP/1.1\r\n${H}Content-Length: 3\r\nConnection: close\r\n\r\nabc`] },
  { name: 'DELETE without a body', parts: [`DELETE /echo HTTP/1.1\r\n${H}Connection: close\r\n\r\n`] },
  { name: 'POST with Content-Length: 0', parts: [`POST /echo HTTP/1.1\r\n${H}Content-Length: 0\r\nConnection: close\r\n\r\n`] },
  { name: 'POST 256 KiB by length', parts: [`POST /echo HTTP/1.1\r\n${H}Content-Length: ${upload.length}\r\nConnection: close\r\n\r\n`, upload], opts: { ms: 3000 } },
  { name: 'PUT chunked with a trailer', parts: [`PUT /echo HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n`, chunkedUpload], opts: { ms: 3000 } },
  { name: 'POST with Expect: 100-continue, body after the 100', parts: [`POST /echo HTTP/1.1\r\n${H}Expect: 100-continue\r\nContent-Length: 5\r\nConnection: close\r\n\r\n`, 'hello'], opts: { gap: 100 } },
  { name: 'POST chunked, empty body', parts: [`POST /echo HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n`] },
  { name: 'POST chunked with extensions, over several reads', parts: [`POST /echo HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n5;a=1\r\nhel`, 'lo\r\n3;q="x y"\r\n', 'abc\r\n0\r\n\r\n'], opts: { gap: 60 } },
  { name: 'PUT by length, the body after a pause', parts: [`PUT /echo HTTP/1.1\r\n${H}Content-Length: 10\r\nConnection: close\r\n\r\nhello`, 'world'], opts: { gap: 100 } },
  { name: 'PUT 1 MiB to an upstream that reads it slowly', parts: [`PUT /slow-read HTTP/1.1\r\n${H}Content-Length: ${1024 * 1024}\r\nConnection: close\r\n\r\n`, big(1024 * 1024).toString('latin1')], opts: { ms: 5000 } },
  // its last chunk comes later: a chunked body all here when the head goes is sent with a length (engine and undici alike), a race otherwise
  { name: 'POST 1 MiB chunked to an upstream that reads it slowly', parts: [`POST /slow-read HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n`, `100000\r\n${big(1024 * 1024).toString('latin1')}\r\n`, '0\r\n\r\n'], opts: { ms: 5000, gap: 150 } },
  { name: 'pipelined POSTs: by length, chunked, empty, then a GET', parts: [`POST /echo HTTP/1.1\r\n${H}Content-Length: 3\r\n\r\noneput /echo HTTP/1.1\r\n`.replace('put', 'PUT') + `${H}Transfer-Encoding: chunked\r\n\r\n3\r\ntwo\r\n0\r\n\r\nPOST /echo HTTP/1.1\r\n${H}Content-Length: 0\r\n\r\n` + get('/len')] },
  { name: 'POST with Expect: 100-continue, chunked', parts: [`POST /echo HTTP/1.1\r\n${H}Expect: 100-continue\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n`, '4\r\nbody\r\n0\r\n\r\n'], opts: { gap: 100 } },
  // the bad framing comes after the request is on its way (in the head's packet, whether node:http's request got out first is a race)
  { name: 'POST with a malformed chunk size', parts: [`POST /echo HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n`, 'zz\r\nabc\r\n0\r\n\r\n'], opts: { gap: 100 } },
  { name: 'POST with a chunk not ended by CRLF', parts: [`POST /echo HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n`, '3\r\nabcX\r\n0\r\n\r\n'], opts: { gap: 100 } },
  { name: 'POST with a chunk size line ended by LF alone', parts: [`POST /echo HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n`, '3\nabc\r\n0\r\n\r\n'], opts: { gap: 100 } },
  { name: 'client aborts in the middle of a chunked body', parts: [`POST /echo HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n`, '10\r\npartial'], opts: { abortAfter: 300 } },
  { name: 'HTTP/1.0 without Host to the fallback app', parts: ['GET /len HTTP/1.0\r\n\r\n'] },
  { name: 'pipelined GET, POST, GET', parts: [`GET /len HTTP/1.1\r\n${H}\r\nPOST /echo HTTP/1.1\r\n${H}Content-Length: 2\r\n\r\nhiGET /chunked HTTP/1.1\r\n${H}Connection: close\r\n\r\n`] },
  { name: 'keep-alive: three requests on one connection, one at a time', parts: [`GET /len HTTP/1.1\r\n${H}\r\n`, `GET /64k HTTP/1.1\r\n${H}\r\n`, get('/chunked')], opts: { gap: 100 } },
  { name: 'keep-alive: a body split over reads, then a reused upstream connection', parts: [`GET /split-body HTTP/1.1\r\n${H}\r\n`, `GET /4m HTTP/1.1\r\n${H}\r\n`, get('/len')], opts: { gap: 150, ms: 3000 } },
  { name: 'client aborts while the upstream hangs', parts: [get('/hang')], opts: { abortAfter: 300 } },
  { name: 'client aborts in the middle of its body', parts: [`POST /echo HTTP/1.1\r\n${H}Content-Length: 1000\r\n\r\n`, 'partial'], opts: { abortAfter: 300 } },
  { name: 'upstream slower than timeouts.response', parts: [get('/hang')], opts: { ms: 2500 } },
  { name: 'WebSocket upgrade', parts: [`GET /ws HTTP/1.1\r\n${H}Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`] },
  ...HOSTILE_REQUESTS.map((h) => ({ name: `hostile: ${h.name}`, parts: [h.raw.replaceAll('vh.test', 'shop.test')] })),
];

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
    const target = `http://127.0.0.1:${up.port}`;
    const app = { name: 'shop', hosts: ['*'], pools: { blue: { version: '1.0.0', targets: [target] }, green: { version: '2.0.0', targets: [target] } }, timeouts: { response: '500ms' } };
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
