import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { ServerResponse } from 'node:http';
import { connect, type Socket } from 'node:net';
import { after, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pino from 'pino';
import { request } from 'undici';
import type { BuildDeps } from '../../src/app.ts';
import { startProxy, twoPools, type TestProxy } from '../helpers/proxy.ts';
import { rawRequest, statusOf } from '../helpers/raw.ts';
import { spawnServe } from '../helpers/serve-process.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';
import { until } from '../helpers/wait.ts';

function portOf(url: string): number {
  return Number(new URL(url).port);
}

/** A raw TCP connection, resolved once connected; `closed` settles when the proxy (or we) close it. */
async function rawConnect(port: number): Promise<{ socket: Socket; closed: Promise<number>; data: Buffer[] }> {
  const socket = connect(port, '127.0.0.1');
  const started = performance.now();
  const data: Buffer[] = [];
  socket.on('data', (d: Buffer) => data.push(d));
  socket.on('error', () => undefined); // a refused connection may be reset
  const closed = new Promise<number>((resolve) => socket.once('close', () => resolve(performance.now() - started)));
  await once(socket, 'connect');
  return { socket, closed, data };
}

async function metricsText(p: TestProxy): Promise<string> {
  const r = await request(`${p.adminUrl}/metrics`);
  return r.body.text();
}

function limitCount(text: string, limit: string): number {
  const m = new RegExp(`^switchyard_limit_enforced_total\\{limit="${limit}"\\} (\\d+)$`, 'm').exec(text);
  return m === null ? NaN : Number(m[1]);
}

describe('resource limits', () => {
  const cleanups: (() => Promise<void>)[] = [];
  after(async () => {
    for (const c of cleanups.reverse()) await c();
  });
  async function upstream(name: string, handler?: Parameters<typeof startUpstream>[1]): Promise<Upstream> {
    const up = await startUpstream(name, handler);
    cleanups.push(() => up.close());
    return up;
  }
  async function proxy(doc: Record<string, unknown>, deps: Partial<BuildDeps> = {}): Promise<TestProxy> {
    const p = await startProxy(doc, deps);
    cleanups.push(() => p.close());
    return p;
  }

  it('closes connections that send nothing after limits.headerTimeout, counts them, and logs one line for all', async (t) => {
    const up = await upstream('blue');
    const lines: Record<string, unknown>[] = [];
    const logger = pino({ level: 'warn' }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
    const p = await proxy({ apps: [twoPools(up.url, up.url)], limits: { headerTimeout: '300ms' } }, { logger });
    const port = portOf(p.proxyUrl);
    const idle = await Promise.all(Array.from({ length: 40 }, () => rawConnect(port)));
    await until(t, 'the proxy counted 40 connections', () => p.sy.dataPlane.limits.open === 40);
    const ms = await Promise.all(idle.map((c) => c.closed));
    assert.ok(Math.min(...ms) >= 250, `closed after ${Math.min(...ms).toFixed(0)} ms, before the timeout`);
    assert.ok(Math.max(...ms) < 2000, `closed after ${Math.max(...ms).toFixed(0)} ms`);
    assert.ok(idle.every((c) => c.data.length === 0), 'a connection that sent nothing is closed without a response');
    await until(t, 'the connection count is back to 0', () => p.sy.dataPlane.limits.open === 0);
    const text = await metricsText(p);
    assert.equal(limitCount(text, 'header'), 40);
    assert.match(text, /^switchyard_client_connections 0$/m);
    // one line at the first closure; the other 39 wait for the next one (at most one per 10 s)
    const limitLines = lines.filter((l) => typeof l.msg === 'string' && l.msg.startsWith('limits enforced'));
    assert.equal(limitLines.length, 1);
    assert.equal(limitLines[0]?.header, 1);
  });

  it("close() stops the limits' timers: the next log line's timer is not left behind", async () => {
    const up = await upstream('blue');
    const p = await startProxy({ apps: [twoPools(up.url, up.url)], limits: { headerTimeout: '300ms' } }, { logger: pino({ level: 'silent' }) });
    await (await rawConnect(portOf(p.proxyUrl))).closed;
    const limits = p.sy.dataPlane.limits as unknown as { logTimer: NodeJS.Timeout | null };
    assert.notEqual(limits.logTimer, null, 'the closed connection armed the timer of the next log line');
    await p.close();
    assert.equal(limits.logTimer, null);
  });

  it('answers 408 to a request header that is not complete after limits.headerTimeout, and does not time out a slow response', async () => {
    const up = await upstream('blue', (_req, res) => setTimeout(() => res.end('late'), 600));
    const p = await proxy({ apps: [twoPools(up.url, up.url)], limits: { headerTimeout: '300ms' } });
    const partial = await rawRequest(portOf(p.proxyUrl), 'GET / HTTP/1.1\r\nHost: shop\r\n', 3000);
    assert.equal(statusOf(partial), 408);
    // the timer stops at the header: a response slower than it is still delivered
    const r = await request(`${p.proxyUrl}/`);
    assert.equal(r.statusCode, 200);
    assert.equal(await r.body.text(), 'late');
  });

  it('refuses connections beyond limits.maxConnections over every listener, while the admin API answers', async (t) => {
    const up = await upstream('blue');
    const p = await proxy({ apps: [twoPools(up.url, up.url)], limits: { maxConnections: 8 } });
    assert.ok(p.sy.config.listen.acceptors > 1, 'several SO_REUSEPORT listeners share the cap');
    const port = portOf(p.proxyUrl);
    const held = await Promise.all(Array.from({ length: 8 }, () => rawConnect(port)));
    await until(t, '8 connections are open', () => p.sy.dataPlane.limits.open === 8);
    // the kernel spreads these over the 256 listeners: each one refuses
    const over = await Promise.all(Array.from({ length: 20 }, () => rawConnect(port)));
    const ms = await Promise.all(over.map((c) => c.closed));
    assert.ok(Math.max(...ms) < 1000, 'connections over the cap are closed at once');
    assert.equal(p.sy.dataPlane.limits.open, 8);
    const health = await request(`${p.adminUrl}/healthz`);
    await health.body.dump();
    assert.equal(health.statusCode, 200);
    assert.equal(limitCount(await metricsText(p), 'refused'), 20);
    // one closed: room for one more, which is served
    held[0]?.socket.destroy();
    await until(t, 'a connection closed', () => p.sy.dataPlane.limits.open === 7);
    const reply = await rawRequest(port, 'GET / HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n');
    assert.equal(statusOf(reply), 200);
    for (const c of held) c.socket.destroy();
  });

  it('answers 408 to a request body that stalls for limits.bodyTimeout and frees the upstream connection, without blaming the target', async (t) => {
    let upstreamClosed = false;
    const up = await upstream('blue', (req, res) => {
      req.resume();
      req.on('end', () => res.end('done'));
      res.on('close', () => (upstreamClosed = true));
    });
    const p = await proxy({ apps: [twoPools(up.url, up.url)], limits: { bodyTimeout: '300ms' } });
    const started = performance.now();
    const reply = await rawRequest(portOf(p.proxyUrl), 'POST / HTTP/1.1\r\nHost: shop\r\nContent-Length: 100\r\n\r\n0123456789', 5000);
    const ms = performance.now() - started;
    assert.equal(statusOf(reply), 408);
    assert.ok(ms >= 250 && ms < 2000, `answered after ${ms.toFixed(0)} ms`);
    await until(t, 'the upstream request is closed', () => upstreamClosed);
    const pool = p.sy.runtime.pool('shop', 'blue');
    const target = pool?.targets[0];
    assert.equal(pool?.inflight, 0);
    assert.equal(target?.consecutiveFailures, 0);
    assert.equal(target?.isUp(Date.now()), true);
    assert.equal(limitCount(await metricsText(p), 'body'), 1);
  });

  it('lets a body that arrives slowly but steadily through, however long it takes in all', async () => {
    const up = await upstream('blue');
    const p = await proxy({ apps: [twoPools(up.url, up.url)], limits: { bodyTimeout: '300ms' } });
    const c = await rawConnect(portOf(p.proxyUrl));
    c.socket.write('POST / HTTP/1.1\r\nHost: shop\r\nContent-Length: 10\r\nConnection: close\r\n\r\n');
    for (let i = 0; i < 10; i++) {
      // paces the body: a byte every 120 ms, under bodyTimeout's 300 ms between reads
      await sleep(120);
      c.socket.write(String(i));
    }
    await c.closed;
    const reply = Buffer.concat(c.data).toString();
    assert.equal(statusOf(reply), 200);
    assert.match(reply, /"body":"0123456789"/);
  });

  it('frees the upstream connection of a client that reads nothing after limits.sendTimeout, without blaming the target', async (t) => {
    let upstreamClosed: ServerResponse | null = null;
    const chunk = Buffer.alloc(64 * 1024, 'x');
    const up = await upstream('blue', (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      // 256 MiB, with backpressure: far more than the socket buffers between here and the client
      let left = 4096;
      const pump = (): void => {
        while (left > 0) {
          left--;
          if (!res.write(chunk)) return void res.once('drain', pump);
        }
        res.end();
      };
      pump();
      res.on('close', () => (upstreamClosed = res));
    });
    const p = await proxy({ apps: [twoPools(up.url, up.url)], limits: { sendTimeout: '300ms' } });
    const c = await rawConnect(portOf(p.proxyUrl));
    c.socket.write('GET /big HTTP/1.1\r\nHost: shop\r\n\r\n');
    c.socket.pause(); // never reads
    await until(t, 'the upstream response is closed', () => upstreamClosed !== null, { timeout: 8_000 });
    assert.equal((upstreamClosed as ServerResponse | null)?.writableFinished, false, 'cut, not finished');
    // the proxy closed the client connection too (a paused client socket would not see it)
    await until(t, 'the client connection is closed', () => p.sy.dataPlane.limits.open === 0);
    c.socket.destroy();
    const pool = p.sy.runtime.pool('shop', 'blue');
    assert.equal(pool?.inflight, 0);
    assert.equal(pool?.targets[0]?.consecutiveFailures, 0);
    assert.equal(limitCount(await metricsText(p), 'send'), 1);
  });

  it('does not cut a client that reads slowly but keeps reading, however long the whole response takes', async () => {
    const size = 16 * 1024 * 1024;
    const up = await upstream('blue', (_req, res) => {
      res.writeHead(200, { 'content-length': String(size) });
      res.end(Buffer.alloc(size, 'y'));
    });
    const p = await proxy({ apps: [twoPools(up.url, up.url)], limits: { sendTimeout: '1s' } });
    const c = await rawConnect(portOf(p.proxyUrl));
    const started = performance.now();
    let got = 0;
    const every = 2 * 1024 * 1024;
    let nextPause = every;
    c.socket.on('data', (d: Buffer) => {
      got += d.length;
      if (got >= nextPause) {
        // a 200 ms stall every 2 MiB: each one well under the send timeout, the whole response over it
        nextPause += every;
        c.socket.pause();
        setTimeout(() => c.socket.resume(), 200);
      }
    });
    c.socket.write('GET /big HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n');
    await c.closed;
    assert.ok(performance.now() - started > 1000, 'the response took longer than the send timeout');
    assert.ok(got > size, `${got} bytes read of a ${size}-byte body and its head in ${(performance.now() - started).toFixed(0)} ms; limits ${JSON.stringify(p.sy.dataPlane.limits.counts)}`);
    assert.equal(p.sy.dataPlane.limits.counts.send, 0);
  });

  it('answers 503 to a request that waited limits.queueTimeout for an upstream connection, without blaming the target', async (t) => {
    const hold: (() => void)[] = [];
    const up = await upstream('blue', (req, res) => (req.url === '/healthz' ? res.end('ok') : hold.push(() => res.end('held'))));
    const p = await proxy({ apps: [twoPools(up.url, up.url, { maxConnections: 1, health: { interval: '1h' } })], limits: { queueTimeout: '300ms' } });
    const first = request(`${p.proxyUrl}/first`);
    await until(t, 'the first request reached the upstream', () => hold.length === 1);
    const started = performance.now();
    const queued = await request(`${p.proxyUrl}/queued`);
    const ms = performance.now() - started;
    assert.equal(queued.statusCode, 503);
    assert.match(await queued.body.text(), /no upstream connection free/);
    assert.ok(ms >= 250 && ms < 2000, `answered after ${ms.toFixed(0)} ms`);
    const target = p.sy.runtime.pool('shop', 'blue')?.targets[0];
    assert.equal(target?.consecutiveFailures, 0);
    assert.equal(target?.isUp(Date.now()), true);
    hold.shift()?.();
    const r = await first;
    assert.equal(r.statusCode, 200);
    assert.equal(await r.body.text(), 'held');
    // the timed-out request left the queue without reaching the upstream (the connection has been free since
    // the first answered: a request still queued would have gone out at once; 100 ms is the window for that)
    await sleep(100);
    assert.deepEqual(up.seen.map((s) => s.url).filter((u) => u !== '/healthz'), ['/first']);
    const text = await metricsText(p);
    assert.equal(limitCount(text, 'queue'), 1);
    assert.match(text, /^switchyard_proxy_errors_total\{app="shop",pool="blue",code="QUEUE_TIMEOUT"\} 1$/m);
  });

  it('requests waiting in the queue for a connection are not counted as stalled by the passive checks', async (t) => {
    const hold: (() => void)[] = [];
    const up = await upstream('blue', (req, res) => (req.url === '/healthz' ? res.end('ok') : hold.push(() => res.end('held'))));
    // two targets (one may be ejected), one connection each
    const app = twoPools([up.url, up.url], up.url, { maxConnections: 1, health: { interval: '1h', passive: { failures: 3, stallAfter: '200ms' } } });
    const p = await proxy({ apps: [app], limits: { queueTimeout: '5s' } });
    const requests = [request(`${p.proxyUrl}/a`), request(`${p.proxyUrl}/b`)];
    await until(t, 'a request on each connection', () => hold.length === 2);
    for (let i = 0; i < 6; i++) requests.push(request(`${p.proxyUrl}/queued`));
    const queuedAt = Date.now();
    // a stall sweep that ran once every request had waited over stallAfter (200 ms) had its chance to eject
    await until(t, 'a stall sweep past stallAfter', () => p.sy.health.lastSweepAt > queuedAt + 200, { timeout: 5_000 });
    const targets = p.sy.runtime.pool('shop', 'blue')?.targets ?? [];
    assert.deepEqual(
      targets.map((t) => t.ejectedUntil),
      [0, 0],
      'one request on its connection is no stall of three',
    );
    // release them as each reaches the upstream
    for (let released = 0; released < 8; released++) {
      await until(t, 'the next request reached the upstream', () => hold.length > 0);
      hold.shift()?.();
    }
    for (const r of await Promise.all(requests)) {
      assert.equal(r.statusCode, 200);
      await r.body.dump();
    }
  });

  it('a burst-over pool renewal lets requests in flight finish on the old pool and sends new ones to the new one', async (t) => {
    const hold: (() => void)[] = [];
    const up = await upstream('blue', (req, res) => (req.url === '/held' ? hold.push(() => res.end('held')) : res.end('fresh')));
    const p = await proxy({ apps: [twoPools(up.url, up.url)] });
    const target = p.sy.runtime.pool('shop', 'blue')?.targets[0];
    assert.ok(target);
    const held = request(`${p.proxyUrl}/held`);
    await until(t, 'the request reached the upstream', () => hold.length === 1);
    const old = target.dispatcher;
    p.sy.runtime.renewPools();
    assert.notEqual(target.dispatcher, old);
    const fresh = await request(`${p.proxyUrl}/`);
    assert.equal(await fresh.body.text(), 'fresh');
    assert.equal(old.closed, true);
    hold.shift()?.();
    const r = await held;
    assert.equal(r.statusCode, 200);
    assert.equal(await r.body.text(), 'held');
  });

  it('caps connections per process with workers: 2 (each worker holds at most limits.maxConnections)', async () => {
    const up = await upstream('blue');
    const proc = await spawnServe({ workers: 2, apps: [twoPools(up.url, up.url)], limits: { maxConnections: 3 } }, 20_000);
    cleanups.push(() => proc.cleanup());
    const conns = await Promise.all(Array.from({ length: 20 }, () => rawConnect(proc.proxyPort)));
    // a bounded window after every connection was made, for the workers to close those over their cap at accept
    await sleep(500);
    const open = conns.filter((c) => !c.socket.destroyed && c.socket.readyState === 'open');
    // the closed ones saw the proxy close them at accept: read to notice
    const stillOpen = await Promise.all(open.map((c) => Promise.race([c.closed.then(() => false), sleep(300).then(() => true)])));
    const held = stillOpen.filter(Boolean).length;
    assert.ok(held >= 3 && held <= 6, `${held} connections held by two workers capped at 3 each`);
    const r = await request(`${proc.adminUrl}/healthz`);
    await r.body.dump();
    assert.equal(r.statusCode, 200);
    for (const c of conns) c.socket.destroy();
  });
});
