import assert from 'node:assert/strict';
import { createServer, type Http2Server, type ServerHttp2Session } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import { createH2Client } from '../../src/dataplane/engine/h2-client.ts';
import { startProxy, type TestProxy } from '../helpers/proxy.ts';
import { until } from '../helpers/wait.ts';

interface H2Upstream {
  readonly server: Http2Server;
  readonly url: string;
  readonly sessions: Set<ServerHttp2Session>;
  /** sessions ever opened */
  opened: number;
  /** streams open now, per session, and the most seen at once on one session */
  streamsNow: Map<ServerHttp2Session, number>;
  maxStreams: number;
  /** the headers of the last request, and the session it came on */
  last: Record<string, unknown> | null;
  lastSession: ServerHttp2Session | null;
  /** the session a GOAWAY was sent on */
  goneAway: ServerHttp2Session | null;
}

/**
 * A node:http2 (h2c) upstream announcing `maxConcurrentStreams`; `/slow` answers after 150 ms
 * and `/goaway` makes the server send a GOAWAY on the session the request came on, then answers.
 */
async function startH2Upstream(maxConcurrentStreams: number): Promise<H2Upstream> {
  const server = createServer({ settings: { maxConcurrentStreams } });
  const up: H2Upstream = { server, url: '', sessions: new Set(), opened: 0, streamsNow: new Map(), maxStreams: 0, last: null, lastSession: null, goneAway: null };
  server.on('session', (s) => {
    up.sessions.add(s);
    up.opened++;
    s.once('close', () => up.sessions.delete(s));
  });
  server.on('stream', (stream, headers) => {
    up.last = headers;
    const session = stream.session as ServerHttp2Session;
    up.lastSession = session;
    const now = (up.streamsNow.get(session) ?? 0) + 1;
    up.streamsNow.set(session, now);
    up.maxStreams = Math.max(up.maxStreams, now);
    stream.once('close', () => up.streamsNow.set(session, (up.streamsNow.get(session) ?? 1) - 1));
    const path = headers[':path'];
    const answer = (): void => {
      if (stream.destroyed) return;
      stream.respond({ ':status': 200, 'content-type': 'text/plain' }, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'x-checksum': 'abc' }));
      stream.end(`h2 ${String(path)} te=${String(headers.te ?? '')}`);
    };
    if (path === '/goaway') {
      up.goneAway = session;
      session.goaway(0, stream.id);
      setTimeout(answer, 100);
    } else if (path === '/slow') setTimeout(answer, 150);
    else answer();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return Object.assign(up, { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` });
}

describe('protocol: h2 pools: HTTP/2 to the targets, bounded sessions and streams, GOAWAY', () => {
  let up: H2Upstream;
  let p: TestProxy;

  before(async () => {
    up = await startH2Upstream(5);
    p = await startProxy({
      apps: [
        {
          name: 'svc',
          hosts: ['*'],
          // maxConnections: the sessions per target of an h2 pool
          maxConnections: 2,
          pools: { blue: { version: '1', targets: [up.url], protocol: 'h2' }, green: { version: '2', targets: [up.url] } },
        },
      ],
    });
  });

  after(async () => {
    await p?.close();
    for (const s of up?.sessions ?? []) s.destroy();
    up?.server.close();
  });

  it('an HTTP/1.1 client reaches an h2 pool; the upstream sees h2 and its trailers reach a chunked response', async () => {
    const r = await request(`${p.proxyUrl}/hello`, { headers: { te: 'trailers' } });
    assert.equal(r.statusCode, 200);
    assert.equal(r.headers['x-served-by'], 'blue@1');
    assert.equal(await r.body.text(), 'h2 /hello te=trailers');
    assert.equal(r.trailers['x-checksum'], 'abc');
    assert.equal(up.last?.[':authority'] !== undefined, true);
  });

  it('opens at most maxConnections sessions per target and no more streams on one than the server allows', async () => {
    const before = up.opened;
    const results = await Promise.all(Array.from({ length: 30 }, () => request(`${p.proxyUrl}/slow`).then(async (r) => ({ status: r.statusCode, body: await r.body.text() }))));
    assert.ok(results.every((r) => r.status === 200 && r.body.startsWith('h2 /slow')));
    assert.ok(up.opened - before <= 2, `at most 2 new sessions (${up.opened - before})`);
    assert.ok(up.sessions.size <= 2, `at most 2 sessions open (${up.sessions.size})`);
    assert.ok(up.maxStreams <= 5, `no more than 5 streams at once on a session (${up.maxStreams})`);
  });

  it('after a GOAWAY the stream in flight finishes and the next requests open a new session', async () => {
    const r = await request(`${p.proxyUrl}/goaway`);
    assert.equal(r.statusCode, 200);
    assert.equal(await r.body.text(), 'h2 /goaway te=');
    const next = await Promise.all(Array.from({ length: 3 }, () => request(`${p.proxyUrl}/after`).then((x) => x.body.text())));
    assert.deepEqual(next, ['h2 /after te=', 'h2 /after te=', 'h2 /after te=']);
    assert.ok(up.goneAway !== null && up.lastSession !== up.goneAway, 'no new stream on the session that sent the GOAWAY');
  });
});

describe('protocol: h2 keep-alive PINGs', () => {
  it('an idle session is PINGed every pingInterval and stays open, answering the next request on it', async (t) => {
    const up = await startH2Upstream(10);
    let pings = 0;
    up.server.on('session', (s) => s.on('ping', () => pings++));
    const client = createH2Client(up.url, { connectTimeout: 2000, headersTimeout: 5000, bodyTimeout: 5000, sessions: 1, pingInterval: 100 });
    const get = (path: string): Promise<string> =>
      new Promise((resolve, reject) => {
        let body = '';
        client.dispatch(
          { origin: up.url, path, method: 'GET', headers: {} },
          {
            onRequestStart: () => undefined,
            onResponseStart: () => undefined,
            onResponseData: (_c: unknown, chunk: Buffer) => void (body += chunk.toString()),
            onResponseEnd: () => resolve(body),
            onResponseError: (_c: unknown, err: Error) => reject(err),
          },
        );
      });
    t.after(async () => {
      await client.destroy();
      for (const s of up.sessions) s.destroy();
      up.server.close();
    });
    assert.equal(await get('/one'), 'h2 /one te=');
    const session = up.lastSession;
    // idle now: only PINGs cross the session
    await until(t, 'three PINGs on the idle session', () => pings >= 3, { timeout: 10_000, interval: 50, detail: () => `pings so far: ${pings}` });
    assert.equal(await get('/two'), 'h2 /two te=');
    assert.equal(up.lastSession, session, 'the PINGed session carried the next request');
    assert.equal(up.opened, 1);
  });
});
