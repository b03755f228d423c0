import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { describe, it } from 'node:test';
import { MAX_SWITCHYARD_HOPS } from '../../src/dataplane/headers.ts';
import { freePort } from '../helpers/ports.ts';
import { startProxy, twoPools } from '../helpers/proxy.ts';
import { rawRequest, statusOf } from '../helpers/raw.ts';
import { startUpstream } from '../helpers/upstream.ts';

/** This process's open descriptors (the proxies run in it). */
const openFds = (): number => readdirSync('/proc/self/fd').length;

describe('a target that points back at a proxy (forwarding loop)', () => {
  it('answers 508 LOOP_DETECTED after a bounded number of hops when a pool\'s target is the proxy itself, and the process keeps its descriptors', async (t) => {
    const port = await freePort();
    const p = await startProxy({ listen: { host: '127.0.0.1', port }, apps: [twoPools(`http://127.0.0.1:${port}`, `http://127.0.0.1:${port}`)] });
    t.after(() => p.close());
    const before = openFds();
    const r = await p.get('/', { 'x-request-id': 'loop-1' });
    assert.equal(r.status, 508);
    assert.match(r.body, /forwarding loop/);
    assert.equal(r.servedBy, 'blue@1.0.0');
    // without the limit one request chained ~2,300 connections and then failed 502 (EMFILE);
    // with it, at most a client and an upstream socket per hop stay open (kept alive)
    assert.ok(openFds() - before <= 4 * MAX_SWITCHYARD_HOPS, `${openFds() - before} descriptors opened by one looping request`);
    // the proxy still serves: the next request loops and ends the same way
    assert.equal((await p.get('/')).status, 508);
  });

  it('ends a loop between two instances whose targets point at each other, for plain requests and for upgrades', async (t) => {
    const [pa, pb] = await Promise.all([freePort(), freePort()]);
    const a = await startProxy({ listen: { host: '127.0.0.1', port: pa }, apps: [twoPools(`http://127.0.0.1:${pb}`, `http://127.0.0.1:${pb}`)] });
    t.after(() => a.close());
    const b = await startProxy({ listen: { host: '127.0.0.1', port: pb }, apps: [twoPools(`http://127.0.0.1:${pa}`, `http://127.0.0.1:${pa}`)] });
    t.after(() => b.close());
    assert.equal((await a.get('/')).status, 508);
    const upgrade = await rawRequest(pa, 'GET /ws HTTP/1.1\r\nHost: shop\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n', 10_000);
    assert.equal(statusOf(upgrade), 508, upgrade.slice(0, 200));
  });

  it('forwards a request through two Switchyard tiers in a row (an edge in front of an inner proxy)', async (t) => {
    const up = await startUpstream('app', (req, res) => res.end(String(req.headers['via'])));
    t.after(() => up.close());
    const inner = await startProxy({ apps: [twoPools(up.url, up.url)] });
    t.after(() => inner.close());
    const edge = await startProxy({ apps: [twoPools(inner.proxyUrl, inner.proxyUrl)] });
    t.after(() => edge.close());
    const r = await edge.get('/', { via: '1.1 cdn' });
    assert.equal(r.status, 200);
    assert.equal(r.body, '1.1 cdn, 1.1 switchyard, 1.1 switchyard');
  });
});
