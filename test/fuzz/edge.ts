import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readdirSync } from 'node:fs';
import { connect as h2connect, type ClientHttp2Session } from 'node:http2';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import fc from 'fast-check';
import { previewSignature } from '../../src/routing/snapshot.ts';
import { HOSTILE_REQUESTS } from '../fixtures/hostile-requests.ts';
import { createTestCa, type TestCa } from '../helpers/certs.ts';
import { startProxy, twoPools, type TestProxy } from '../helpers/proxy.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';

/**
 * Property tests of every surface a client or an upstream controls (issue 22), with fast-check
 * and the hostile corpus (test/fixtures/hostile-requests.ts) as seeds. Each property holds:
 * - the process stays up: the proxy runs in this process, so an exception that escaped would end
 *   the run, and one the request guard caught (src/dataplane/guard.ts) fails the property too:
 *   a caught exception is still a bug;
 * - every connection gets well-formed HTTP responses or a close;
 * - nothing is smuggled: every request an upstream parses is one the proxy answered the client
 *   for, and the upstream never sees a head it cannot parse;
 * - connections return to zero once the clients are gone (`checkBaseline`).
 * test/integration/fuzz.test.ts runs a short seeded round in `npm test`; `npm run fuzz` runs long ones.
 */

export const PREVIEW_SECRET = 'fuzz-preview-secret-0123456789';
const AFFINITY_SECRET = 'fuzz-affinity-secret-0123456789';
const HOST = 'fuzz.test';

/** A proxy on `engine` (native: the raw-socket front serves HTTP/1.1; undici: node:http does) with TLS and h2, and an upstream that counts what it parses. */
export interface FuzzTarget {
  readonly proxy: TestProxy;
  readonly upstream: Upstream;
  readonly plainPort: number;
  readonly tlsPort: number;
  readonly ca: TestCa;
  /** heads the upstream could not parse (a framing the proxy let through) */
  upstreamParseErrors: number;
  /** the bytes the upstream's parser failed on last */
  lastParseError: string;
  close(): Promise<void>;
}

/** `targetUrl`: the pools' target instead of the counting upstream (the raw upstream of `upstreamProperty`). */
export async function startFuzzTarget(engine: 'native' | 'undici', tls: boolean, targetUrl?: string): Promise<FuzzTarget> {
  const ca = createTestCa();
  const cert = ca.issue('fuzz', [HOST]);
  const upstream = await startUpstream('fuzz');
  const extra = { hosts: [HOST], preview: { secret: PREVIEW_SECRET }, affinity: { secret: AFFINITY_SECRET, window: '10m' }, sticky: { key: ['header:x-user-id', 'cookie:session', 'ip'] }, initial: { blue: 50, green: 50 } };
  const listen = tls ? { host: '127.0.0.1', port: 0, tls: { port: 0, certs: [{ cert: cert.cert, key: cert.key }] } } : { host: '127.0.0.1', port: 0 };
  const proxy = await startProxy({ engine, listen, apps: [twoPools(targetUrl ?? upstream.url, targetUrl ?? upstream.url, extra)], limits: { headerTimeout: '2s', bodyTimeout: '2s', sendTimeout: '2s' } });
  const target: FuzzTarget = {
    proxy,
    upstream,
    ca,
    plainPort: Number(new URL(proxy.proxyUrl).port),
    tlsPort: tls ? (proxy.sy.edge?.listener.server.address() as AddressInfo).port : 0,
    upstreamParseErrors: 0,
    lastParseError: '',
    async close() {
      await proxy.close();
      await upstream.close();
      ca.close();
    },
  };
  upstream.server.on('clientError', (err: Error & { rawPacket?: Buffer; code?: string }, socket: Socket) => {
    socket.destroy();
    // a reset (the proxy aborting a request whose client left) is no parse error; nor is the
    // connection's end in the middle of a body (the proxy closes it when its client broke the
    // body off: too short for its Content-Length, a bad chunk, the client gone)
    if (!(err.code ?? '').startsWith('HPE_') || err.code === 'HPE_INVALID_EOF_STATE') return;
    target.upstreamParseErrors++;
    target.lastParseError = `${err.code ?? err.message}: ${JSON.stringify(err.rawPacket?.toString('latin1').slice(0, 300) ?? '')}`;
    socket.destroy();
  });
  return target;
}

// ---- arbitraries -------------------------------------------------------------------------------

const TCHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ".split('');
const token = fc.string({ unit: fc.constantFrom(...TCHARS), minLength: 1, maxLength: 12 });
/** one byte as a latin1 character: every value a socket can carry */
const anyByte = fc.integer({ min: 0, max: 255 }).map((b) => String.fromCharCode(b));
const nastyChar = fc.oneof(fc.constantFrom(...TCHARS), fc.constantFrom('\r', '\n', '\0', ' ', '\t', ':', '\xe9', '\x80', '\xff', ';', '=', ',', '"', '#', '?', '/', '@', '%', '\\'), anyByte);
const nasty = fc.string({ unit: nastyChar, maxLength: 40 });
const sig = previewSignature(PREVIEW_SECRET, 'shop', 'green');

const method = fc.oneof(fc.constantFrom('GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'OPTIONS', 'PATCH', 'CONNECT', 'TRACE', 'PRI', 'get'), token);
const target = fc.oneof(
  fc.constantFrom('/', '*', '/a?b=c', `http://${HOST}/x`, `HTTP://${HOST}/`, '//x', '/a#b', `${HOST}:80`, `http://${HOST}:80`, 'http://other.test/', '/%00', '/..%2f'),
  fc.string({ unit: fc.constantFrom(...TCHARS, '/', '?', '=', '&'), maxLength: 20 }).map((s) => `/${s}`),
  nasty,
);
const version = fc.constantFrom('HTTP/1.1', 'HTTP/1.1', 'HTTP/1.0', 'HTTP/2.0', 'HTTP/0.9', 'HTTP/1.2', 'http/1.1', '');
const headerName = fc.oneof(
  fc.constantFrom('Host', 'Content-Length', 'Transfer-Encoding', 'Connection', 'Upgrade', 'Expect', 'Cookie', 'x-switchyard-preview', 'x-user-id', 'TE', 'Trailer', 'Forwarded', 'X-Forwarded-For', 'content-length', 'HTTP2-Settings', 'Sec-WebSocket-Key', 'Sec-WebSocket-Version'),
  token,
  nasty,
);
const headerValue = fc.oneof(
  fc.constantFrom('0', '5', '-1', '1e3', ' 5', 'chunked', 'gzip, chunked', 'chunked, gzip', 'close', 'keep-alive', 'Upgrade', 'websocket', 'h2c', '100-continue', HOST, `${HOST}:80`, 'AAMAAABkAAQAAP__', 'dGhlIHNhbXBsZSBub25jZQ==', '13'),
  fc.constantFrom(`sy_pin=blue.0.0.\xe9${'a'.repeat(21)}`, `sy_pin=green.1.1.${'A'.repeat(22)}`, `green.${sig}`, `blue.\xe9${'a'.repeat(63)}`, `green.${sig.slice(0, -1)}\xff`, `session=${'s'.repeat(30)}`),
  nasty,
);
const body = fc.oneof(fc.constant(''), nasty, fc.constantFrom('0\r\n\r\n', '5\r\nhello\r\n0\r\n\r\n', 'hello', `GET /smuggled HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`, '0\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n'));

/** One HTTP/1.1 request, well-formed or not, as latin1 text. */
const request = fc
  .record({ method, target, version, headers: fc.array(fc.tuple(headerName, headerValue), { maxLength: 8 }), host: fc.boolean(), close: fc.boolean(), body, eol: fc.constantFrom('\r\n', '\r\n', '\r\n', '\n') })
  .map((r) => `${r.method} ${r.target} ${r.version}${r.eol}${r.host ? `Host: ${HOST}${r.eol}` : ''}${r.headers.map(([n, v]) => `${n}: ${v}${r.eol}`).join('')}${r.close ? `Connection: close${r.eol}` : ''}${r.eol}${r.body}`);

/** One chunk of a chunked body: mostly well-formed, sometimes a bad size, a missing CRLF, a bare LF, an extension. */
const chunk = fc.oneof(
  { weight: 4, arbitrary: fc.string({ maxLength: 40 }).map((d) => `${Buffer.byteLength(d, 'latin1').toString(16)}\r\n${d}\r\n`) },
  { weight: 1, arbitrary: fc.constantFrom('5;name=v\r\nhello\r\n', '5\nhello\r\n', '3\r\nabcX\r\n', 'zz\r\nabc\r\n', ' 3\r\nabc\r\n', '3 \r\nabc\r\n', `${'f'.repeat(17)}\r\n`, 'ffffffff\r\nshort', '2\r\nab', '1;\x01\r\na\r\n') },
);
/**
 * A request with a body in one of the framings the raw front serves (src/dataplane/front.ts):
 * by length (the length right, short or long), chunked (with trailers or not), with
 * Expect: 100-continue, so the fuzzing reaches the front's body reader and not node:http's alone.
 */
const bodyRequest = fc
  .record({
    method: fc.constantFrom('POST', 'PUT', 'PATCH', 'DELETE'),
    framing: fc.constantFrom('length', 'chunked'),
    data: fc.string({ maxLength: 60 }),
    off: fc.constantFrom(0, 0, 0, -1, 1, 5),
    chunks: fc.array(chunk, { maxLength: 4 }),
    end: fc.constantFrom('0\r\n\r\n', '0\r\n\r\n', '0\r\nx-t: 1\r\n\r\n', '0\r\n', '0\r\nbad trailer\r\n\r\n', ''),
    expect: fc.boolean(),
    close: fc.boolean(),
  })
  .map((r) => {
    const head = `${r.method} /body HTTP/1.1\r\nHost: ${HOST}\r\n${r.expect ? 'Expect: 100-continue\r\n' : ''}${r.close ? 'Connection: close\r\n' : ''}`;
    if (r.framing === 'length') return `${head}Content-Length: ${Math.max(0, Buffer.byteLength(r.data, 'latin1') + r.off)}\r\n\r\n${r.data}`;
    return `${head}Transfer-Encoding: chunked\r\n\r\n${r.chunks.join('')}${r.end}`;
  });

/** What a client sends on one connection: one to three requests, or a case of the hostile corpus (its Host made ours). */
export const http1Payload = fc.oneof(
  { weight: 4, arbitrary: fc.array(request, { minLength: 1, maxLength: 3 }).map((a) => a.join('')) },
  { weight: 2, arbitrary: fc.array(fc.oneof(bodyRequest, request), { minLength: 1, maxLength: 3 }).map((a) => a.join('')) },
  { weight: 1, arbitrary: fc.constantFrom(...HOSTILE_REQUESTS.map((h) => h.raw.replaceAll('vh.test', HOST).replaceAll('internal.test', 'other.test'))) },
);

// ---- the properties ----------------------------------------------------------------------------

/** Sends `payload` and reads until the proxy closes or `ms` passes; `closedByPeer` false when our deadline cut it. */
function exchange(port: number, payload: Buffer, ms: number): Promise<{ reply: string; closedByPeer: boolean }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let cut = false;
    const s = connect(port, '127.0.0.1', () => s.write(payload));
    const timer = setTimeout(() => {
      cut = true;
      s.destroy();
    }, ms);
    s.on('data', (d: Buffer) => chunks.push(d));
    s.on('error', () => undefined);
    s.on('close', () => {
      clearTimeout(timer);
      resolve({ reply: Buffer.concat(chunks).toString('latin1'), closedByPeer: !cut });
    });
  });
}

/** Each response of a raw reply starts with a status line; the count of those carrying X-Served-By (the upstream answered them). */
export function checkReply(reply: string): { responses: number; served: number; lastServed: boolean } {
  if (reply === '') return { responses: 0, served: 0, lastServed: false };
  assert.match(reply, /^HTTP\/1\.1 [1-5]\d\d [^\r\n]*\r\n/, `not a status line: ${JSON.stringify(reply.slice(0, 200))}`);
  const heads = [...reply.matchAll(/HTTP\/1\.1 ([1-5]\d\d) [^\r\n]*\r\n((?:[^\r\n]+\r\n)*)\r\n/g)];
  const served = (h: RegExpExecArray | undefined): boolean => /^x-served-by: /im.test(h?.[2] ?? '');
  return { responses: heads.length, served: heads.filter(served).length, lastServed: served(heads.at(-1)) };
}

function noExceptions(t: FuzzTarget): void {
  const g = t.proxy.sy.dataPlane.limits.guard.counts;
  assert.deepEqual(g, { request: 0, upgrade: 0, connection: 0, engine: 0 }, 'an exception was caught while handling a request (a bug)');
  assert.equal(t.upstreamParseErrors, 0, `the upstream received a head it could not parse: ${t.lastParseError}`);
}

/** HTTP/1.1 heads and bodies on the plain port: through the raw front and its hand-off to node:http (engine native), or node:http alone. */
export function http1Property(t: FuzzTarget): fc.IAsyncPropertyWithHooks<[string]> {
  return fc.asyncProperty(http1Payload, async (payload) => {
    const before = t.upstream.seen.length;
    const { reply, closedByPeer } = await exchange(t.plainPort, Buffer.from(payload, 'latin1'), 400);
    const { served, lastServed } = checkReply(reply);
    const seen = t.upstream.seen.slice(before).filter((s) => s.url !== '/healthz').length;
    // every request the upstream parsed was answered to the client: none smuggled behind another.
    // One may have been on its way back when the connection ended otherwise: our deadline, or a
    // refusal of what was pipelined after it (a parse error closes the connection at once)
    const inFlight = !closedByPeer || !lastServed ? 1 : 0;
    assert.ok(seen <= served + inFlight, `the upstream saw ${seen} requests, the client got ${served} upstream responses: ${JSON.stringify(payload.slice(0, 300))} → ${JSON.stringify(reply.slice(0, 300))}`);
    noExceptions(t);
  });
}

const h2Value = fc.oneof(headerValue, fc.string({ unit: anyByte, maxLength: 30 }));
const h2Headers = fc.array(fc.tuple(fc.oneof(fc.constantFrom('x-switchyard-preview', 'cookie', 'x-user-id', 'content-length', 'te', 'host', 'x-note', 'grpc-timeout'), token.map((s) => s.toLowerCase())), h2Value), { maxLength: 6 });
const h2Request = fc.record({ method: fc.constantFrom('GET', 'POST', 'HEAD', 'PUT', 'OPTIONS', 'DELETE', 'BREW'), path: fc.oneof(fc.constantFrom('/', '/a?b', '*', '/x#y'), fc.string({ unit: fc.constantFrom(...TCHARS, '/'), maxLength: 12 }).map((s) => `/${s}`)), authority: fc.constantFrom(HOST, `${HOST}:443`, 'other.test', ''), headers: h2Headers, body: fc.option(fc.string({ maxLength: 50 }), { nil: undefined }) });

/** h2 header blocks and bodies on the TLS port (node:http2's client refuses some names and values itself: those cases are skipped). */
type H2Request = typeof h2Request extends fc.Arbitrary<infer R> ? R : never;

export function h2Property(t: FuzzTarget): { property: fc.IAsyncPropertyWithHooks<[H2Request]>; close(): void } {
  let session: ClientHttp2Session | null = null;
  const open = async (): Promise<ClientHttp2Session> => {
    if (session !== null && !session.closed && !session.destroyed) return session;
    const s = h2connect(`https://127.0.0.1:${t.tlsPort}`, { ca: t.ca.caPem, servername: HOST });
    s.on('error', () => undefined);
    await Promise.race([once(s, 'remoteSettings'), once(s, 'close')]);
    return (session = s);
  };
  const property = fc.asyncProperty(h2Request, async (r) => {
    const s = await open();
    const headers: Record<string, string | string[]> = { ':method': r.method, ':path': r.path, ':authority': r.authority };
    for (const [n, v] of r.headers) headers[n] = n in headers ? [...[headers[n] as string].flat(), v] : v;
    let stream;
    try {
      stream = s.request(headers, { endStream: r.body === undefined });
    } catch {
      return; // refused by the client itself: not sent
    }
    stream.on('error', () => undefined);
    if (r.body !== undefined) stream.end(r.body);
    const status = await new Promise<number | null>((resolve) => {
      const timer = setTimeout(() => {
        stream.close();
        resolve(null);
      }, 3000);
      stream.once('response', (h: Record<string, unknown>) => {
        stream.resume();
        stream.once('close', () => clearTimeout(timer));
        resolve(Number(h[':status']));
      });
      stream.once('close', () => {
        clearTimeout(timer);
        resolve(null);
      });
    });
    if (status !== null) assert.ok(status >= 100 && status <= 599, `status ${status}`);
    noExceptions(t);
  });
  return { property, close: () => session?.destroy() };
}

/** A raw upstream that answers every request head it reads with `next()`'s bytes, then closes. */
export async function rawUpstream(): Promise<{ server: Server; port: number; next: string; close(): Promise<void> }> {
  const state = { next: '' };
  const server = createServer((s) => {
    s.on('error', () => undefined);
    let head = '';
    s.on('data', (d: Buffer) => {
      head += d.toString('latin1');
      if (!head.includes('\r\n\r\n')) return;
      s.end(Buffer.from(state.next, 'latin1'));
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    server,
    port: (server.address() as AddressInfo).port,
    get next() {
      return state.next;
    },
    set next(v: string) {
      state.next = v;
    },
    close: async () => {
      server.close();
    },
  };
}

const statusLine = fc.oneof(fc.constantFrom('HTTP/1.1 200 OK', 'HTTP/1.1 204 No Content', 'HTTP/1.1 304 Not Modified', 'HTTP/1.1 100 Continue', 'HTTP/1.1 101 Switching Protocols', 'HTTP/1.0 200 OK', 'HTTP/1.1 999 Odd', 'HTTP/1.1 200', 'HTTP/2 200', 'ICY 200 OK', ''), fc.integer({ min: 0, max: 999 }).map((n) => `HTTP/1.1 ${n} X`));
const responseHeader = fc.tuple(fc.oneof(fc.constantFrom('Content-Length', 'Transfer-Encoding', 'Connection', 'Set-Cookie', 'Trailer', 'Upgrade', 'Keep-Alive', 'X-Served-By', 'Content-Type'), token, nasty), headerValue);

/** What an upstream answers: a status line, fields, a body, as bytes. */
export const upstreamResponse = fc
  .record({ status: statusLine, headers: fc.array(responseHeader, { maxLength: 6 }), body: fc.oneof(body, fc.string({ unit: anyByte, maxLength: 80 })), eol: fc.constantFrom('\r\n', '\r\n', '\n') })
  .map((r) => `${r.status}${r.eol}${r.headers.map(([n, v]) => `${n}: ${v}${r.eol}`).join('')}${r.eol}${r.body}`);

/** Upstream responses of every shape, through the proxy's engine to an HTTP/1.1 client. */
export function upstreamProperty(t: FuzzTarget, raw: { next: string }): fc.IAsyncPropertyWithHooks<[string]> {
  return fc.asyncProperty(upstreamResponse, async (response) => {
    raw.next = response;
    const { reply } = await exchange(t.plainPort, Buffer.from(`GET /up HTTP/1.1\r\nHost: ${HOST}\r\nConnection: close\r\n\r\n`, 'latin1'), 3000);
    checkReply(reply);
    noExceptions(t);
  });
}

/** Bytes where a TLS ClientHello belongs, and handshakes with any SNI name, on the TLS port. */
export function tlsProperty(t: FuzzTarget): fc.IAsyncPropertyWithHooks<[Uint8Array, string]> {
  return fc.asyncProperty(fc.uint8Array({ maxLength: 300 }), fc.string({ unit: fc.oneof(fc.constantFrom(...TCHARS), anyByte), maxLength: 40 }), async (bytes, servername) => {
    // a ClientHello record header (handshake, TLS 1.0) in front of random bytes half the time
    const prefix = bytes.length % 2 === 0 ? Buffer.from([0x16, 0x03, 0x01, bytes.length >> 8, bytes.length & 0xff]) : Buffer.alloc(0);
    await new Promise<void>((resolve) => {
      const s = connect(t.tlsPort, '127.0.0.1', () => s.end(Buffer.concat([prefix, bytes])));
      s.on('error', () => undefined);
      s.resume();
      s.on('close', () => resolve());
      setTimeout(() => s.destroy(), 2000).unref();
    });
    await new Promise<void>((resolve) => {
      let s: TLSSocket | undefined;
      try {
        s = tlsConnect({ port: t.tlsPort, host: '127.0.0.1', servername, rejectUnauthorized: false, ALPNProtocols: ['h2', 'http/1.1'] }, () => {
          s?.destroy();
          resolve();
        });
      } catch {
        resolve(); // a servername the client will not send
        return;
      }
      s.on('error', () => resolve());
      s.on('close', () => resolve());
    });
    noExceptions(t);
  });
}

function openFds(): number {
  try {
    return readdirSync('/proc/self/fd').length;
  } catch {
    return 0;
  }
}

/** Once the clients are gone: no client connection counted, no h2 stream held, fds back near where they started. */
export async function checkBaseline(t: FuzzTarget, fdsBefore: number): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const open = t.proxy.sy.dataPlane.limits.open;
    const fds = openFds();
    if (open === 0 && t.proxy.sy.dataPlane.limits.streams.inflight === 0 && fds <= fdsBefore + 16) return;
    if (Date.now() > deadline) assert.fail(`not back to baseline: ${open} client connections, ${t.proxy.sy.dataPlane.limits.streams.inflight} h2 streams, ${fds} fds (${fdsBefore} before)`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export { openFds };
