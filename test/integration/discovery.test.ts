import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
import { startDnsServer, type DnsServer } from '../helpers/dns-server.ts';
import { parseMetrics } from '../helpers/prometheus.ts';
import { startProxy, TOKEN, type TestProxy } from '../helpers/proxy.ts';
import { spawnServe } from '../helpers/serve-process.ts';
import { startLoad } from '../helpers/load.ts';
import { startUpstream, useUpstreams, type Upstream } from '../helpers/upstream.ts';
import { until } from '../helpers/wait.ts';

// DNS discovery (docs/definitions.md §4, README "Discovery"): a pool's `discover` is resolved by
// each instance on its interval against `discovery.servers`; targets that appear join the pool,
// those that disappear leave it with the zero-loss rules of DELETE …/targets, and a failed lookup
// keeps the last answer, shown in targetStates and the metrics.

const INTERVAL = 100;

/** Upstreams on 127.0.0.2, .3, … all on one port, as the pods behind a headless Service (A records carry no port). */
async function samePortUpstreams(t: TestContext, names: string[], delayMs = 0): Promise<{ ups: Upstream[]; port: number }> {
  for (let attempt = 0; ; attempt++) {
    const ups: Upstream[] = [];
    try {
      for (const [i, name] of names.entries()) {
        const handler = delayMs === 0 ? undefined : (_req: unknown, res: { end(s: string): void }) => void setTimeout(() => res.end(name), delayMs);
        ups.push(await startUpstream(name, handler, { host: `127.0.0.${i + 2}`, port: ups[0]?.port ?? 0 }));
      }
      t.after(() => Promise.all(ups.map((u) => u.close())));
      return { ups, port: (ups[0] as Upstream).port };
    } catch (err) {
      // the port the first one got is taken on another loopback address: try another
      await Promise.all(ups.map((u) => u.close()));
      if (attempt > 5) throw err;
    }
  }
}

async function dnsServer(t: TestContext, records: Parameters<typeof startDnsServer>[0]): Promise<DnsServer> {
  const dns = await startDnsServer(records);
  t.after(() => dns.close());
  return dns;
}

/** `shop`: blue found in DNS (and nothing else), green a plain target. */
async function proxyWithDiscovery(t: TestContext, dns: DnsServer, discover: Record<string, unknown>, green: string, interval = INTERVAL): Promise<TestProxy> {
  const p = await startProxy({
    discovery: { servers: [dns.address], timeout: '200ms' },
    apps: [{ name: 'shop', hosts: ['*'], pools: { blue: { version: '1.0.0', discover: { interval: `${interval}ms`, ...discover } }, green: { version: '2.0.0', targets: [green] } } }],
  });
  t.after(() => p.close());
  return p;
}

const blueTargets = (p: TestProxy): string[] => (p.sy.runtime.pool('shop', 'blue')?.targets ?? []).map((x) => x.url).sort();

describe('DNS discovery', () => {
  const up = useUpstreams('green', 'one', 'two', 'backup');
  it('A records added and removed on the DNS server join and leave the pool within the interval, with 0 failed requests under load', async (t) => {
    const { ups, port } = await samePortUpstreams(t, ['a', 'b', 'c'], 20);
    const green = up.green;
    const url = (i: number) => `http://127.0.0.${i + 2}:${port}`;
    const dns = await dnsServer(t, { 'web.test': { a: ['127.0.0.2', '127.0.0.3'] } });
    // an interval long beside the event-loop lag of 16 busy clients on a shared machine, so the bound below measures the interval
    const interval = 250;
    const p = await proxyWithDiscovery(t, dns, { dns: 'web.test', port }, green.url, interval);
    // the first lookup ended before the proxy listened: the first request already has the targets
    assert.deepEqual(blueTargets(p), [url(0), url(1)]);

    const load = startLoad(`${p.proxyUrl}/`);
    const answers = [['127.0.0.2', '127.0.0.3', '127.0.0.4'], ['127.0.0.4'], ['127.0.0.2', '127.0.0.4'], ['127.0.0.3'], ['127.0.0.2', '127.0.0.3']];
    const delays: number[] = [];
    for (let round = 0; round < 2; round++) {
      for (const a of answers) {
        dns.set('web.test', { a });
        const want = a.map((ip) => `http://${ip}:${port}`).sort();
        const started = Date.now();
        await until(t, `targets to become ${JSON.stringify(want)}`, () => JSON.stringify(blueTargets(p)) === JSON.stringify(want), { timeout: 5 * interval + 1000, interval: 5, detail: () => JSON.stringify(blueTargets(p)) });
        delays.push(Date.now() - started);
        // paces the record changes a little apart, under load
        await sleep(60);
      }
    }
    const { ok, failures, served } = await load.stop();
    t.diagnostic(`${ok} requests, ${failures.length} failed; record change → pool change: max ${Math.max(...delays)} ms, ${delays.join('/')} ms (interval ${interval} ms)`);
    assert.deepEqual(failures, []);
    assert.ok(ok > 200, `only ${ok} requests served`);
    assert.deepEqual([...served].sort(), ['a', 'b', 'c']);
    // within the interval (one lookup, the change lands at the next one) plus the lookup's own time
    assert.ok(Math.max(...delays) <= interval + 150, `slowest change took ${Math.max(...delays)} ms (interval ${interval} ms): ${delays.join(', ')}`);
    // removed targets finished what they carried and their connection pools were closed
    await t.waitFor(() => assert.equal(p.sy.runtime.retiring.size, 0), { timeout: 3000 });
    void ups;
  });

  it('SRV records: each record\'s host (resolved on the same servers) and port is a target; the lowest priority wins', async (t) => {
    const { one, two, backup, green } = up;
    const dns = await dnsServer(t, {
      'node.test': { a: ['127.0.0.1'] },
      '_http._tcp.web.test': { srv: [{ target: 'node.test', port: one.port, priority: 10 }, { target: 'node.test', port: backup.port, priority: 20 }] },
    });
    const p = await proxyWithDiscovery(t, dns, { srv: '_http._tcp.web.test' }, green.url);
    assert.deepEqual(blueTargets(p), [one.url]);
    dns.set('_http._tcp.web.test', { srv: [{ target: 'node.test', port: one.port, priority: 10 }, { target: 'node.test', port: two.port, priority: 10 }] });
    await t.waitFor(() => assert.deepEqual(blueTargets(p), [one.url, two.url].sort()), { timeout: 2000 });
    const bodies = new Set<string>();
    for (let i = 0; i < 6; i++) bodies.add(JSON.parse((await p.get('/')).body).pool as string);
    assert.deepEqual([...bodies].sort(), ['one', 'two']);
  });

  it('a DNS server that stops answering changes nothing: the last answer keeps serving, the failure shows in targetStates and the metrics', async (t) => {
    const { port } = await samePortUpstreams(t, ['a', 'b']);
    const green = up.green;
    const dns = await dnsServer(t, { 'web.test': { a: ['127.0.0.2', '127.0.0.3'] } });
    const p = await proxyWithDiscovery(t, dns, { dns: 'web.test', port }, green.url);
    const before = blueTargets(p);
    assert.equal(before.length, 2);

    dns.mode = 'drop';
    const asked = dns.queries;
    // several intervals of unanswered lookups (each one times out after 2 × 200 ms)
    await t.waitFor(() => assert.ok(p.sy.discovery.status('shop', 'blue')?.failing), { timeout: 3000 });
    assert.ok(dns.queries > asked, 'the proxy asked');
    const failingAt = dns.queries;
    await until(t, 'the proxy to keep asking while failing', () => dns.queries >= failingAt + 3, { timeout: 3000 });
    assert.deepEqual(blueTargets(p), before);
    for (let i = 0; i < 10; i++) assert.equal((await p.get('/')).status, 200);

    const state = (await p.admin('GET', '/v1/apps/shop')).body;
    const blue = state.pools.blue;
    assert.equal(blue.discovery.failing, true);
    assert.match(blue.discovery.lastLookup.error, /no answer|ETIMEOUT/);
    assert.deepEqual(blue.discovery.targets, before);
    assert.deepEqual(blue.targetStates.map((s: { url: string }) => s.url).sort(), before);
    for (const s of blue.targetStates) {
      assert.equal(s.state, 'up');
      assert.equal(s.discovery.stale, true);
      assert.equal(s.discovery.lookup, `A/AAAA web.test:${port}`);
      assert.match(s.discovery.error, /no answer|ETIMEOUT/);
    }
    const metrics = parseMetrics(await (await request(`${p.adminUrl}/metrics`)).body.text());
    const value = (name: string, labels: Record<string, string> = {}) => metrics.find((m) => m.name === name && Object.entries({ app: 'shop', pool: 'blue', ...labels }).every(([k, v]) => m.labels[k] === v))?.value;
    assert.equal(value('switchyard_discovery_failing'), 1);
    assert.equal(value('switchyard_discovery_targets'), 2);
    assert.ok((value('switchyard_discovery_lookups_total', { result: 'failed' }) ?? 0) >= 1);
    assert.ok((value('switchyard_discovery_lookups_total', { result: 'ok' }) ?? 0) >= 1);

    // a deleted name (NXDOMAIN) is no answer either: the pool keeps its targets
    dns.zone.delete('web.test');
    dns.mode = 'answer';
    await until(t, 'a lookup answered NXDOMAIN', () => /no A or AAAA record/.test(p.sy.discovery.status('shop', 'blue')?.lastLookup?.error ?? ''), { timeout: 3000 });
    assert.deepEqual(blueTargets(p), before);

    // answers again: no longer failing, the new answer is used
    dns.set('web.test', { a: ['127.0.0.3'] });
    await t.waitFor(() => assert.deepEqual(blueTargets(p), [`http://127.0.0.3:${port}`]), { timeout: 2000 });
    const after = (await p.admin('GET', '/v1/apps/shop')).body.pools.blue;
    assert.equal(after.discovery.failing, false);
    assert.deepEqual(after.targetStates.map((s: { discovery: { stale: boolean } }) => s.discovery.stale), [false]);
  });

  it('a pool\'s definition that drops discover lets its discovered targets leave; one that adds it starts resolving', async (t) => {
    const { port } = await samePortUpstreams(t, ['a']);
    const green = up.green;
    const dns = await dnsServer(t, { 'web.test': { a: ['127.0.0.2'] } });
    const p = await proxyWithDiscovery(t, dns, { dns: 'web.test', port }, green.url);
    assert.deepEqual(blueTargets(p), [`http://127.0.0.2:${port}`]);

    const def = (blue: Record<string, unknown>) => ({ definition: { hosts: ['*'], pools: { blue: { version: '1.0.0', ...blue }, green: { version: '2.0.0', targets: [green.url] } } } });
    assert.equal((await p.admin('PUT', '/v1/apps/shop', def({ targets: [green.url] }))).status, 200);
    await t.waitFor(() => assert.deepEqual(blueTargets(p), [green.url]), { timeout: 2000 });
    assert.equal(p.sy.discovery.status('shop', 'blue'), undefined);

    assert.equal((await p.admin('PUT', '/v1/apps/shop', def({ targets: [green.url], discover: { dns: 'web.test', port, interval: `${INTERVAL}ms` } }))).status, 200);
    await t.waitFor(() => assert.deepEqual(blueTargets(p), [green.url, `http://127.0.0.2:${port}`].sort()), { timeout: 2000 });
    // a definition with a bad discover is refused with its key path
    const bad = await p.admin('PUT', '/v1/apps/shop', def({ discover: { dns: 'web.test', interval: '1s' } }));
    assert.equal(bad.status, 400);
    assert.match(JSON.stringify(bad.body), /definition\.pools\.blue\.discover\.port/);
  });

  it('workers: 2: the primary resolves, each worker serves what it found and follows the records', async (t) => {
    const { port } = await samePortUpstreams(t, ['a', 'b']);
    const green = up.green;
    const dns = await dnsServer(t, { 'web.test': { a: ['127.0.0.2'] } });
    const g = await spawnServe(
      {
        workers: 2,
        discovery: { servers: [dns.address], timeout: '200ms' },
        apps: [{ name: 'shop', hosts: ['*'], pools: { blue: { version: '1.0.0', discover: { dns: 'web.test', port, interval: `${INTERVAL}ms` } }, green: { version: '2.0.0', targets: [green.url] } } }],
      },
      20_000,
    );
    t.after(() => g.cleanup());
    // each request on a connection of its own, so the kernel spreads them over both workers
    const bodies = async (n: number): Promise<string[]> =>
      Promise.all(Array.from({ length: n }, async () => {
        const r = await request(`${g.proxyUrl}/`, { reset: true });
        const text = await r.body.text();
        return r.statusCode === 200 ? (JSON.parse(text) as { pool: string }).pool : `${r.statusCode}`;
      }));
    assert.deepEqual([...new Set(await bodies(20))], ['a']);
    dns.set('web.test', { a: ['127.0.0.3'] });
    await t.waitFor(async () => assert.deepEqual([...new Set(await bodies(20))], ['b']), { timeout: 5000, interval: 50 });
    const state = await (await request(`${g.adminUrl}/v1/apps/shop`, { headers: { authorization: `Bearer ${TOKEN}` } })).body.json() as { pools: { blue: { targetStates: { url: string; state: string }[] } } };
    assert.deepEqual(state.pools.blue.targetStates.map((s) => [s.url, s.state]), [[`http://127.0.0.3:${port}`, 'up']]);
  });
});
