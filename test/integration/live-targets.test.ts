import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { startProxy, twoPools } from '../helpers/proxy.ts';
import { startLoad } from '../helpers/load.ts';
import { startUpstream } from '../helpers/upstream.ts';
import { closed, echo, openWs, startWsUpstream, wsUrl } from '../helpers/ws.ts';
import { until } from '../helpers/wait.ts';

// Zero-loss target changes (docs/definitions.md §2): in-flight requests finish on the target that has them,
// upgraded connections follow the drain deadline counted from the removal, and a target's
// connection pool is closed only once nothing is left on it.

describe('removing and adding targets under load', () => {
  it('targets added and removed 20 times under load (16 clients, 20 ms requests): 0 failed requests', async (t) => {
    const slow = (name: string) => startUpstream(name, (_req, res) => setTimeout(() => res.end(name), 20));
    const ups = await Promise.all(['a', 'b', 'c'].map(slow));
    const green = await startUpstream('green');
    t.after(() => Promise.all([...ups, green].map((u) => u.close())));
    const [a, b, c] = ups.map((u) => u.url) as [string, string, string];
    const p = await startProxy({ apps: [twoPools([a, b], green.url)] });
    t.after(() => p.close());

    const load = startLoad(`${p.proxyUrl}/`);
    const q = (url: string) => encodeURIComponent(url);
    for (let i = 0; i < 20; i++) {
      // alternate which target leaves, so every one of them is removed while it carries requests
      const [out, keep] = i % 2 === 0 ? [a, b] : [b, a];
      assert.equal((await p.admin('POST', '/v1/apps/shop/pools/blue/targets', { url: c })).status, 200);
      await sleep(30);
      assert.equal((await p.admin('DELETE', `/v1/apps/shop/pools/blue/targets?url=${q(out)}`)).status, 200);
      await sleep(30);
      assert.equal((await p.admin('POST', '/v1/apps/shop/pools/blue/targets', { url: out })).status, 200);
      await sleep(30);
      assert.equal((await p.admin('DELETE', `/v1/apps/shop/pools/blue/targets?url=${q(c)}`)).status, 200);
      void keep;
    }
    const { ok, failures, served } = await load.stop();
    assert.deepEqual(failures, []);
    assert.ok(ok > 200, `only ${ok} requests served`);
    assert.deepEqual([...served].sort(), ['a', 'b', 'c']);
    // every removed target's connection pool is closed once empty: none is left retiring
    await until(t, 'no connection pool left retiring', () => p.sy.runtime.retiring.size === 0, { timeout: 3000 });
  });

  it('a removed target finishes its in-flight requests, shows them as retiring, then its connection pool is closed', async (t) => {
    const releases: (() => void)[] = [];
    const held = await startUpstream('held', (_req, res) => releases.push(() => res.end('held')));
    const other = await startUpstream('other');
    t.after(() => Promise.all([held.close(), other.close()]));
    const p = await startProxy({ apps: [twoPools([held.url, other.url], other.url)] });
    t.after(() => p.close());
    const inflight: Promise<{ status: number; body: string }>[] = [];
    while (releases.length < 2) {
      inflight.push(p.get('/'));
      await sleep(5);
    }
    const r = await p.admin('DELETE', `/v1/apps/shop/pools/blue/targets?url=${encodeURIComponent(held.url)}`);
    assert.equal(r.status, 200);
    // the loop may have sent one more request toward `held` before it saw the second one arrive:
    // wait until every request counted on the retiring target has reached it
    let retiring: { url: string; phase: string; inflight: number } | undefined;
    await until(t, 'every held request counted on the retiring target', async () => {
      const drain = await p.admin('GET', '/v1/apps/shop/pools/blue/drain');
      retiring = drain.body.targets.find((f: { url: string; phase: string }) => f.phase === 'retiring');
      return retiring !== undefined && retiring.inflight === releases.length;
    }, { timeout: 2000, detail: () => JSON.stringify(retiring) });
    assert.equal(retiring?.url, held.url);
    assert.ok(releases.length >= 2);
    assert.equal(retiring?.inflight, releases.length, 'every request held on the removed target is counted as retiring');
    // new requests go to the target that stays
    assert.equal((await p.get('/')).body.includes('other'), true);
    for (const f of releases) f();
    const done = await Promise.all(inflight);
    assert.ok(done.every((d) => d.status === 200));
    await until(t, 'its connection pool closed once empty', () => p.sy.runtime.retiring.size === 0, { timeout: 2000 });
    assert.deepEqual((await p.admin('GET', '/v1/apps/shop/pools/blue/drain')).body.targets.map((f: { url: string; phase: string }) => [f.url, f.phase]), [[other.url, 'serving']]);
  });

  it('WebSockets on a removed target stay open until the drain deadline counted from the removal, then get 1001', async (t) => {
    const gone = await startWsUpstream('gone');
    const stays = await startWsUpstream('stays');
    t.after(() => Promise.all([gone.close(), stays.close()]));
    const p = await startProxy({ apps: [twoPools([gone.url], stays.url, { drain: { timeout: '700ms' } })] });
    t.after(() => p.close());
    const ws = await openWs(wsUrl(p.proxyUrl));
    assert.equal(await echo(ws, 'hi'), 'gone:hi');
    await p.admin('POST', '/v1/apps/shop/pools/blue/targets', { url: stays.url });
    const removedAt = Date.now();
    const r = await p.admin('DELETE', `/v1/apps/shop/pools/blue/targets?url=${encodeURIComponent(gone.url)}`);
    assert.equal(r.status, 200);
    const shut = closed(ws);
    // a moment into the drain window (paces the scenario; the deadline itself is checked from `at` below)
    await sleep(300);
    assert.equal(await echo(ws, 'still'), 'gone:still', 'open well before the deadline');
    const drain = await p.admin('GET', '/v1/apps/shop/pools/blue/drain');
    assert.equal(drain.body.targets.find((f: { phase: string }) => f.phase === 'retiring')?.upgraded, 1);
    const { code, at } = await shut;
    assert.equal(code, 1001);
    assert.ok(at - removedAt >= 650, `closed ${at - removedAt} ms after the removal`);
    assert.ok(at - removedAt < 2000, `closed ${at - removedAt} ms after the removal`);
    // a new WebSocket goes to the target that stayed
    const fresh = await openWs(wsUrl(p.proxyUrl));
    assert.equal(await echo(fresh, 'x'), 'stays:x');
    fresh.close();
  });
});
