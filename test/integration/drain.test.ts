import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
import WebSocket from 'ws';
import { pastInstant } from '../helpers/clock.ts';
import { closedPort } from '../helpers/ports.ts';
import { startProxy, twoPools, type TestProxy } from '../helpers/proxy.ts';
import { rawRequest, statusOf } from '../helpers/raw.ts';
import { spawnServe } from '../helpers/serve-process.ts';
import { startUpstream } from '../helpers/upstream.ts';
import { closed, echo, openWs, startWsUpstream, wsUrl, type WsUpstream } from '../helpers/ws.ts';
import { until } from '../helpers/wait.ts';

function counts(p: TestProxy, pool: string): { inflight: number; upgraded: number; open: number } {
  const r = p.sy.runtime.pool('shop', pool);
  assert.ok(r);
  return { inflight: r.inflight, upgraded: r.upgraded, open: r.open.size };
}

const ZERO = { inflight: 0, upgraded: 0, open: 0 };

describe('WebSockets across a switch', () => {
  let blue: WsUpstream;
  let green: WsUpstream;
  before(async () => {
    blue = await startWsUpstream('blue');
    green = await startWsUpstream('green');
  });
  after(async () => {
    await blue.close();
    await green.close();
  });

  it('a WebSocket open on blue keeps working after a switch to green while new ones go to green', async (t) => {
    const p = await startProxy({ apps: [twoPools(blue.url, green.url, { drain: { timeout: '30s' } })] });
    t.after(() => p.close());
    const a = await openWs(wsUrl(p.proxyUrl));
    assert.equal(await echo(a, 'hello'), 'blue:hello');
    assert.deepEqual(counts(p, 'blue'), { inflight: 0, upgraded: 1, open: 1 });
    assert.equal((await p.admin('POST', '/v1/apps/shop/switch', { to: 'green' })).status, 200);
    assert.equal(await echo(a, 'still there'), 'blue:still there');
    const b = await openWs(wsUrl(p.proxyUrl));
    assert.equal(await echo(b, 'new'), 'green:new');
    assert.deepEqual(counts(p, 'green'), { inflight: 0, upgraded: 1, open: 1 });
    const drain = await p.admin('GET', '/v1/apps/shop/pools/blue/drain');
    assert.equal(drain.status, 200);
    assert.deepEqual([drain.body.weight, drain.body.upgraded, drain.body.drained], [0, 1, false]);
    const aClosed = closed(a);
    a.close(1000, 'done');
    assert.equal((await aClosed).code, 1000);
    b.close();
    await until(t, 'both pools empty', () => counts(p, 'blue').open + counts(p, 'green').open === 0, { timeout: 3_000 });
    assert.deepEqual(counts(p, 'blue'), ZERO);
    assert.deepEqual(counts(p, 'green'), ZERO);
    assert.equal((await p.admin('GET', '/v1/apps/shop/pools/blue/drain')).body.drained, true);
  });

  it('the 101 carries X-Served-By, and the upstream sees the forwarded headers', async (t) => {
    const p = await startProxy({ apps: [twoPools(blue.url, green.url)] });
    t.after(() => p.close());
    const ws = new WebSocket(wsUrl(p.proxyUrl, '/ws?x=1'), { headers: { 'x-request-id': 'ws-test-1' } });
    const upgraded = once(ws, 'upgrade') as Promise<[IncomingMessage]>;
    await once(ws, 'open');
    const [res] = await upgraded;
    assert.equal(res.headers['x-served-by'], 'blue@1.0.0');
    assert.equal(res.headers['x-request-id'], 'ws-test-1');
    const seen = blue.upgrades.at(-1);
    assert.equal(seen?.url, '/ws?x=1');
    assert.equal(seen?.headers['x-forwarded-for'], '127.0.0.1');
    assert.match(String(seen?.headers['via']), /switchyard/);
    assert.equal(seen?.headers['upgrade'], 'websocket');
    ws.close();
    await once(ws, 'close');
  });

  it('a WebSocket left on a drained pool is closed with 1001 at the deadline, both ways', async (t) => {
    const p = await startProxy({ apps: [twoPools(blue.url, green.url, { drain: { timeout: '1s' } })] });
    t.after(() => p.close());
    const ws = await openWs(wsUrl(p.proxyUrl));
    const wsClosed = closed(ws);
    const upstreamCodes = blue.closeCodes.length;
    const sw = await p.admin('POST', '/v1/apps/shop/switch', { to: 'green' });
    const since = Date.parse(sw.body.updatedAt);
    // a moment into the drain window (paces the scenario; the deadline itself is checked from `at` below)
    await sleep(300);
    assert.equal(await echo(ws, 'before the deadline'), 'blue:before the deadline');
    const { code, reason, at } = await wsClosed;
    assert.equal(code, 1001);
    assert.equal(reason, 'pool drained');
    // deadline = drainingSince + 1 s, spread over min(5 s, 10 %) = 100 ms
    assert.ok(at >= since + 1000 - 20 && at < since + 1000 + 1500, `closed ${at - since} ms after the switch`);
    await until(t, 'the upstream to see the close', () => blue.closeCodes.length > upstreamCodes, { timeout: 3_000 });
    assert.equal(blue.closeCodes.at(-1), 1001);
    await until(t, 'blue empty', () => counts(p, 'blue').open === 0, { timeout: 3_000 });
    const drain = await p.admin('GET', '/v1/apps/shop/pools/blue/drain');
    assert.deepEqual([drain.body.upgraded, drain.body.inflight, drain.body.drained], [0, 0, true]);
  });

  it('a cut in the middle of large messages both ways puts the close frames between frames', async (t) => {
    const p = await startProxy({ apps: [twoPools(blue.url, green.url)] });
    t.after(() => p.close());
    const ws = await openWs(wsUrl(p.proxyUrl));
    const errors: Error[] = [];
    ws.on('error', (err) => errors.push(err));
    const wsClosed = closed(ws);
    const upstreamCodes = blue.closeCodes.length;
    let received = 0;
    ws.on('message', () => received++);
    ws.send('flood');
    for (let i = 0; i < 100; i++) ws.send(Buffer.alloc(100_000, i));
    await until(t, 'the flood to start', () => received >= 3, { timeout: 3_000 });
    for (const c of p.sy.runtime.pool('shop', 'blue')?.open ?? []) c.cut('drain');
    const { code } = await wsClosed;
    assert.deepEqual(errors, []);
    assert.equal(code, 1001);
    assert.ok(received < 100, `the cut came before the flood was over (${received} received)`);
    await until(t, 'the upstream to see the close', () => blue.closeCodes.length > upstreamCodes, { timeout: 3_000 });
    assert.equal(blue.closeCodes.at(-1), 1001);
    await until(t, 'blue empty', () => counts(p, 'blue').open === 0, { timeout: 3_000 });
  });

  it('an idle WebSocket is dropped after timeouts.idle, a busy one is not', async (t) => {
    const p = await startProxy({ apps: [twoPools(blue.url, green.url, { timeouts: { idle: '400ms' } })] });
    t.after(() => p.close());
    const idle = await openWs(wsUrl(p.proxyUrl));
    const busy = await openWs(wsUrl(p.proxyUrl));
    const idleClosed = closed(idle);
    let busyClosed = false;
    busy.on('close', () => (busyClosed = true));
    const started = Date.now();
    for (let i = 0; i < 8; i++) {
      assert.equal(await echo(busy, `tick${i}`), `blue:tick${i}`);
      // paces the busy socket's traffic: a message every 100 ms, under timeouts.idle
      await sleep(100);
    }
    const { at } = await idleClosed;
    assert.ok(at - started >= 350 && at - started < 1500, `idle closed after ${at - started} ms`);
    assert.equal(busyClosed, false);
    busy.close();
    await once(busy, 'close');
    await until(t, 'blue empty', () => counts(p, 'blue').open === 0, { timeout: 3_000 });
  });

  it('is not closed if blue gets weight back before the deadline', async (t) => {
    const p = await startProxy({ apps: [twoPools(blue.url, green.url, { drain: { timeout: '1s' } })] });
    t.after(() => p.close());
    const ws = await openWs(wsUrl(p.proxyUrl));
    let closedWith: number | null = null;
    ws.on('close', (code) => (closedWith = code));
    const sw = await p.admin('POST', '/v1/apps/shop/switch', { to: 'green' });
    assert.deepEqual(p.sy.drains.pending(), ['shop/blue']);
    // the rollback comes midway through blue's drain window (paces the scenario; the deadline is checked by pastInstant)
    await sleep(400);
    await p.admin('POST', '/v1/apps/shop/rollback', { reason: 'green is broken' });
    assert.deepEqual(p.sy.drains.pending(), ['shop/green']);
    // past blue's old deadline (drainingSince + 1 s, spread over 100 ms), measured from the switch
    await pastInstant(Date.parse(sw.body.updatedAt) + 1000 + 100, 500);
    assert.equal(closedWith, null);
    assert.equal(await echo(ws, 'after'), 'blue:after');
    assert.deepEqual(counts(p, 'blue'), { inflight: 0, upgraded: 1, open: 1 });
    ws.close();
    await once(ws, 'close');
  });

  it('200 WebSocket open/close cycles (some torn down abruptly) leave no socket behind', async (t) => {
    const p = await startProxy({ apps: [twoPools(blue.url, green.url)] });
    t.after(() => p.close());
    const tcp = () => process.getActiveResourcesInfo().filter((r) => r === 'TCPSocketWrap').length;
    const proxyConnections = () => new Promise<number>((resolve, reject) => p.sy.dataPlane.server.getConnections((err, n) => (err ? reject(err) : resolve(n))));
    // warm up, then take the baseline
    const w = await openWs(wsUrl(p.proxyUrl));
    w.close();
    await once(w, 'close');
    await until(t, 'warm-up connection gone', async () => (await proxyConnections()) === 0 && blue.wss.clients.size === 0, { timeout: 3_000 });
    const before = tcp();
    const cycle = async (i: number) => {
      const ws = await openWs(wsUrl(p.proxyUrl));
      assert.equal(await echo(ws, `m${i}`), `blue:m${i}`);
      const done = once(ws, 'close');
      if (i % 4 === 1) ws.terminate(); // client vanishes without a close frame
      else if (i % 4 === 2) (ws as unknown as { _socket: Socket })._socket.destroy(); // client socket reset mid-connection
      else ws.close();
      await done;
    };
    for (let i = 0; i < 200; i += 4) await Promise.all([cycle(i), cycle(i + 1), cycle(i + 2), cycle(i + 3)]);
    await until(t, 'proxy connections to close', async () => (await proxyConnections()) === 0);
    await until(t, 'upstream WebSockets to close', () => blue.wss.clients.size === 0);
    await until(t, `TCP handles back to ${before} (now ${tcp()})`, () => tcp() <= before);
    assert.deepEqual(counts(p, 'blue'), ZERO);
    assert.equal(p.sy.runtime.pool('shop', 'blue')?.targets[0]?.inflight, 0);
  });
});

describe('streams across a switch', () => {
  let blue: WsUpstream;
  let green: WsUpstream;
  before(async () => {
    blue = await startWsUpstream('blue');
    green = await startWsUpstream('green');
  });
  after(async () => {
    await blue.close();
    await green.close();
  });

  it('an SSE stream keeps streaming across a switch, counts in flight on blue, and is ended at the deadline', async (t) => {
    const p = await startProxy({ apps: [twoPools(blue.url, green.url, { drain: { timeout: '1s' } })] });
    t.after(() => p.close());
    const r = await request(`${p.proxyUrl}/events`);
    assert.equal(r.headers['x-served-by'], 'blue@1.0.0');
    const events: { n: number; at: number }[] = [];
    const reading = (async () => {
      let buf = '';
      for await (const chunk of r.body) {
        buf += String(chunk);
        let i;
        while ((i = buf.indexOf('\n\n')) !== -1) {
          events.push({ n: Number(buf.slice(6, i)), at: Date.now() });
          buf = buf.slice(i + 2);
        }
      }
      return 'ended';
    })();
    await until(t, 'first events', () => events.length >= 3, { timeout: 3_000 });
    const sw = await p.admin('POST', '/v1/apps/shop/switch', { to: 'green' });
    const switchedAt = Date.now();
    assert.equal((await p.get('/')).servedBy, 'green@2.0.0');
    assert.deepEqual(counts(p, 'blue'), { inflight: 1, upgraded: 0, open: 1 });
    const drain = await p.admin('GET', '/v1/apps/shop/pools/blue/drain');
    assert.deepEqual([drain.body.weight, drain.body.inflight, drain.body.drainingSince, drain.body.drained], [0, 1, sw.body.updatedAt, false]);
    assert.equal(drain.body.deadline, new Date(Date.parse(sw.body.updatedAt) + 1000).toISOString());
    // the stream ends cleanly (chunked end, not a reset) at the deadline
    assert.equal(await reading, 'ended');
    const afterSwitch = events.filter((e) => e.at > switchedAt + 50);
    assert.ok(afterSwitch.length >= 10, `only ${afterSwitch.length} events after the switch`);
    assert.deepEqual(events.map((e) => e.n), events.map((_e, i) => i), 'no event lost or repeated');
    await until(t, 'the upstream stream to be aborted', () => blue.streams === 0, { timeout: 3_000 });
    assert.deepEqual(counts(p, 'blue'), ZERO);
    assert.equal((await p.admin('GET', '/v1/apps/shop/pools/blue/drain')).body.drained, true);
  });

  it('an upstream that dies mid-stream, or mid-WebSocket, leaves the proxy healthy', async (t) => {
    const p = await startProxy({ apps: [twoPools(blue.url, green.url)] });
    t.after(() => p.close());
    const r = await request(`${p.proxyUrl}/events-die`);
    assert.equal(r.statusCode, 200);
    await assert.rejects(r.body.text());
    const ws = await openWs(wsUrl(p.proxyUrl));
    const c = closed(ws);
    ws.send('die');
    assert.equal((await c).code, 1006);
    await until(t, 'blue empty', () => counts(p, 'blue').open === 0, { timeout: 3_000 });
    assert.deepEqual(counts(p, 'blue'), ZERO);
    assert.equal((await p.get('/')).status, 200);
    const again = await openWs(wsUrl(p.proxyUrl));
    assert.equal(await echo(again, 'x'), 'blue:x');
    again.close();
    await once(again, 'close');
  });
});

describe('upgrades an upstream refuses', () => {
  it('a 403 from the upstream reaches the client as is, and the proxy stays healthy', async (t) => {
    const up = await startUpstream('blue');
    t.after(() => up.close());
    up.server.on('upgrade', (_req: IncomingMessage, socket: Socket) => {
      socket.end('HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain\r\ncontent-length: 10\r\nx-why: origin\r\n\r\nforbidden\n');
    });
    const p = await startProxy({ apps: [twoPools(up.url, up.url)] });
    t.after(() => p.close());
    for (let i = 0; i < 3; i++) {
      const err = (await openWs(wsUrl(p.proxyUrl)).then(() => assert.fail('opened'), (e: unknown) => e)) as { status: number; body: string; servedBy: string };
      assert.deepEqual([err.status, err.body, err.servedBy], [403, 'forbidden\n', 'blue@1.0.0']);
    }
    assert.equal((await p.get('/')).status, 200);
    assert.deepEqual(counts(p, 'blue'), ZERO);
  });

  it('an upstream that is down gets the client a 503, another target of the pool takes the upgrade', async (t) => {
    const live = await startWsUpstream('green');
    t.after(() => live.close());
    // a port that refuses connections
    const deadUrl = `http://127.0.0.1:${await closedPort()}`;
    const p = await startProxy({ apps: [twoPools(deadUrl, [deadUrl, live.url])] });
    t.after(() => p.close());
    const err = (await openWs(wsUrl(p.proxyUrl)).then(() => assert.fail('opened'), (e: unknown) => e)) as { status: number; body: string };
    assert.equal(err.status, 503);
    assert.match(err.body, /no target/);
    await until(t, 'blue empty', () => counts(p, 'blue').open === 0, { timeout: 3_000 });
    assert.deepEqual(counts(p, 'blue'), ZERO);
    await p.admin('POST', '/v1/apps/shop/switch', { to: 'green' });
    // the dead target comes first in round robin: refused, skipped, the live one answers
    for (let i = 0; i < 2; i++) {
      const ws = await openWs(wsUrl(p.proxyUrl));
      assert.equal(await echo(ws, 'ok'), 'green:ok');
      ws.close();
      await once(ws, 'close');
    }
    assert.equal((await p.get('/')).status, 200);
  });

  it('an upstream that never answers the upgrade gets the client a 504 after timeouts.response', async (t) => {
    // the held sockets first: the upstream's close waits for them (hooks run in the order registered)
    const held: Socket[] = [];
    t.after(() => {
      for (const s of held) s.destroy();
    });
    const up = await startUpstream('blue');
    t.after(() => up.close());
    up.server.on('upgrade', (_req: IncomingMessage, socket: Socket) => held.push(socket));
    const p = await startProxy({ apps: [twoPools(up.url, up.url, { timeouts: { response: '300ms' } })] });
    t.after(() => p.close());
    const started = Date.now();
    const err = (await openWs(wsUrl(p.proxyUrl)).then(() => assert.fail('opened'), (e: unknown) => e)) as { status: number };
    assert.equal(err.status, 504);
    assert.ok(Date.now() - started >= 280);
    await until(t, 'the upstream connection to be dropped', () => held.every((s) => s.destroyed || s.readableEnded), { timeout: 3_000 });
    await until(t, 'blue empty', () => counts(p, 'blue').open === 0, { timeout: 3_000 });
  });

  it('h2c upgrades are not tunnelled: the request is proxied as a plain one', async (t) => {
    const up = await startUpstream('blue');
    t.after(() => up.close());
    const p = await startProxy({ apps: [twoPools(up.url, up.url)] });
    t.after(() => p.close());
    const reply = await rawRequest(Number(new URL(p.proxyUrl).port), 'GET /h2c HTTP/1.1\r\nHost: shop\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n', 500);
    assert.equal(statusOf(reply), 200);
    assert.match(reply, /x-served-by: blue@1\.0\.0/i);
    const seen = up.seen.at(-1);
    assert.equal(seen?.url, '/h2c');
    assert.deepEqual([seen?.headers['upgrade'], seen?.headers['http2-settings']], [undefined, undefined]);
  });
});

describe('SIGTERM and SIGINT', () => {
  function spawnProxy(upstreamUrl: string, shutdown: Record<string, string>) {
    return spawnServe({ apps: [twoPools(upstreamUrl, upstreamUrl)], shutdown, log: { level: 'info' } });
  }

  it('SIGTERM: readyz 503 at once, WebSockets get 1001, requests finish with Connection: close, exit 0', async (t) => {
    const releases: (() => void)[] = [];
    const up = await startWsUpstream('blue', (req, res) => {
      if (req.url === '/work') releases.push(() => res.end('done'));
      else res.end('quick');
      return true;
    });
    t.after(() => up.close());
    const sp = await spawnProxy(up.url, { delay: '400ms', grace: '5s', hardStop: '10s' });
    t.after(() => sp.cleanup());
    const sockets = await Promise.all([openWs(wsUrl(sp.proxyUrl)), openWs(wsUrl(sp.proxyUrl))]);
    for (const ws of sockets) assert.equal(await echo(ws, 'hi'), 'blue:hi');
    const wsClosed = sockets.map(closed);
    const inflight = Array.from({ length: 3 }, () => request(`${sp.proxyUrl}/work`).then(async (r) => ({ status: r.statusCode, body: await r.body.text(), connection: r.headers['connection'] })));
    await until(t, 'requests to reach the upstream', () => releases.length === 3, { timeout: 3_000 });
    const termAt = Date.now();
    sp.child.kill('SIGTERM');
    await until(t, 'readyz to turn 503', async () => {
      const ready = await request(`${sp.adminUrl}/readyz`);
      await ready.body.dump();
      return ready.statusCode === 503 || (assert.equal(ready.statusCode, 200), false);
    });
    // during shutdown.delay: new connections are still accepted, answered with Connection: close
    const quick = await request(`${sp.proxyUrl}/quick`);
    assert.deepEqual([quick.statusCode, await quick.body.text(), quick.headers['connection']], [200, 'quick', 'close']);
    // a new WebSocket would be cut a moment later: refused so the client retries elsewhere
    const refused = (await openWs(wsUrl(sp.proxyUrl)).then(() => assert.fail('opened'), (e: unknown) => e)) as { status: number };
    assert.equal(refused.status, 503);
    const closes = await Promise.all(wsClosed);
    assert.deepEqual(closes.map((c) => c.code), [1001, 1001]);
    assert.ok(closes.every((c) => c.at - termAt >= 350), 'WebSockets are closed once shutdown.delay is over');
    await until(t, 'the upstream to see both closes', () => up.closeCodes.length === 2, { timeout: 3_000 });
    assert.deepEqual(up.closeCodes, [1001, 1001]);
    for (const r of releases) r();
    const results = await Promise.all(inflight);
    assert.deepEqual(results, Array.from({ length: 3 }, () => ({ status: 200, body: 'done', connection: 'close' })));
    const [code] = (await once(sp.child, 'exit')) as [number];
    assert.equal(code, 0);
    const stopped = sp.log().find((l) => l['msg'] === 'stopped');
    assert.equal(stopped?.['cut'], 0);
  });

  it('SIGINT: what still runs at hardStop is cut and counted in the log, exit 0', async (t) => {
    const up = await startWsUpstream('blue');
    t.after(() => up.close());
    const sp = await spawnProxy(up.url, { grace: '300ms', hardStop: '800ms' });
    t.after(() => sp.cleanup());
    const r = await request(`${sp.proxyUrl}/events`);
    const ended = r.body.text().then(() => 'ended', () => 'broken');
    await until(t, 'the stream to start', () => up.streams === 1, { timeout: 3_000 });
    const started = Date.now();
    sp.child.kill('SIGINT');
    const [code] = (await once(sp.child, 'exit')) as [number];
    assert.equal(code, 0);
    assert.ok(Date.now() - started >= 750, 'held on until hardStop');
    assert.equal(await ended, 'ended');
    const log = sp.log();
    assert.equal(log.find((l) => l['msg'] === 'signal received')?.['signal'], 'SIGINT');
    assert.equal(log.find((l) => /hard stop/.test(String(l['msg'])))?.['cut'], 1);
    assert.equal(log.find((l) => l['msg'] === 'stopped')?.['cut'], 1);
  });
});
