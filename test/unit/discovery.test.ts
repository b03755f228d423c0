import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import pino from 'pino';
import { pinsUntil } from '../../src/admin/views.ts';
import { parseConfig } from '../../src/config/load.ts';
import type { AppConfig, DiscoverConfig } from '../../src/config/schema.ts';
import { unusableTarget } from '../../src/discovery/addresses.ts';
import { Discovery, takeTargets } from '../../src/discovery/discovery.ts';
import { createResolver, lookup, LookupError } from '../../src/discovery/resolve.ts';
import { withDiscovery } from '../../src/discovery/view.ts';
import type { HealthSource } from '../../src/health/monitor.ts';
import type { RoutingState } from '../../src/state/types.ts';
import { startDnsServer } from '../helpers/dns-server.ts';

const spec = (s: Partial<DiscoverConfig>): DiscoverConfig => ({ scheme: 'http', interval: 10_000, maxTargets: 256, ...s }) as DiscoverConfig;

describe('discovery lookups (resolve.ts) against a DNS server', () => {
  it('A and AAAA records become sorted target URLs on the port (IPv6 in brackets); SRV takes the lowest priority, each record\'s port', async (t) => {
    const dns = await startDnsServer({
      'web.test': { a: ['10.0.0.2', '10.0.0.1'], aaaa: ['fd00::1'] },
      'v4only.test': { a: ['10.0.0.7'] },
      'node-a.test': { a: ['10.1.0.1'] },
      'node-b.test': { aaaa: ['fd00::b'] },
      '_http._tcp.web.test': {
        srv: [
          { target: 'node-a.test', port: 8080, priority: 1 },
          { target: 'node-b.test', port: 8081, priority: 1 },
          { target: '10.9.9.9', port: 9000, priority: 1 },
          { target: 'backup.test', port: 80, priority: 5 },
        ],
      },
    });
    t.after(() => dns.close());
    const resolver = createResolver({ servers: [dns.address], timeout: 500 });
    assert.deepEqual(await lookup(resolver, spec({ dns: 'web.test', port: 8080 })), ['http://10.0.0.1:8080', 'http://10.0.0.2:8080', 'http://[fd00::1]:8080']);
    // no AAAA record is an empty family, not a failure
    assert.deepEqual(await lookup(resolver, spec({ dns: 'v4only.test', port: 443, scheme: 'https' })), ['https://10.0.0.7:443']);
    assert.deepEqual(await lookup(resolver, spec({ srv: '_http._tcp.web.test' })), ['http://10.1.0.1:8080', 'http://10.9.9.9:9000', 'http://[fd00::b]:8081']);
  });

  it('an SRV answer of many records: at most maxTargets of them, the first by host and port, each host looked up once', async (t) => {
    const srv = Array.from({ length: 40 }, (_, i) => ({ target: `node-${String(i).padStart(2, '0')}.test`, port: 8000 + (i % 2), priority: 1 }));
    const zone: Record<string, { a?: string[]; srv?: typeof srv }> = { '_http._tcp.many.test': { srv: [...srv].reverse() } };
    for (let i = 0; i < 40; i++) zone[`node-${String(i).padStart(2, '0')}.test`] = { a: [`10.2.0.${i + 1}`] };
    const dns = await startDnsServer(zone);
    t.after(() => dns.close());
    const resolver = createResolver({ servers: [dns.address], timeout: 500 });
    const before = dns.queries;
    const urls = await lookup(resolver, spec({ srv: '_http._tcp.many.test', maxTargets: 3 }));
    assert.deepEqual(urls, ['http://10.2.0.1:8000', 'http://10.2.0.2:8001', 'http://10.2.0.3:8000']);
    // one SRV query, then A and AAAA for three hosts: not 80 lookups for an answer of 40
    assert.equal(dns.queries - before, 1 + 3 * 2);
  });

  it('no address, SERVFAIL or no answer at all is a LookupError (the caller keeps its last answer), never an empty list', async (t) => {
    const dns = await startDnsServer({ 'web.test': { a: ['10.0.0.1'] }, 'empty.test': {}, '_http._tcp.empty.test': { srv: [] } });
    t.after(() => dns.close());
    const resolver = createResolver({ servers: [dns.address], timeout: 200 });
    await assert.rejects(lookup(resolver, spec({ dns: 'gone.test', port: 80 })), (e: unknown) => e instanceof LookupError && /gone.test: no A or AAAA record/.test(e.message));
    await assert.rejects(lookup(resolver, spec({ dns: 'empty.test', port: 80 })), LookupError);
    await assert.rejects(lookup(resolver, spec({ srv: '_http._tcp.empty.test' })), /no SRV record/);
    dns.mode = 'servfail';
    await assert.rejects(lookup(resolver, spec({ dns: 'web.test', port: 80 })), /ESERVFAIL/);
    dns.mode = 'drop';
    await assert.rejects(lookup(resolver, spec({ dns: 'web.test', port: 80 })), /ETIMEOUT/);
  });
});

describe('what an answer gives a pool (takeTargets)', () => {
  const address = fc.oneof(
    fc.ipV4().map((ip) => `http://${ip}:${80}`),
    fc.ipV6().map((ip) => `http://[${ip}]:8080`),
    fc.constantFrom('http://0.0.0.0:80', 'http://10.0.0.3:0', 'http://169.254.169.254:80', 'http://[fe80::1]:80', 'http://224.0.0.1:80', 'http://[::]:80'),
  );
  it('property: at most maxTargets targets, every one usable and the first usable ones in the answer\'s order; every other address dropped with why', () => {
    fc.assert(
      fc.property(fc.array(address, { maxLength: 600 }), fc.integer({ min: 1, max: 300 }), (answer, max) => {
        const { urls, dropped } = takeTargets(answer, max);
        const usable = answer.filter((u) => unusableTarget(u) === null);
        assert.deepEqual(urls, usable.slice(0, max));
        assert.ok(urls.length <= max);
        assert.equal(urls.length + dropped.length, answer.length, 'every address is a target or dropped');
        for (const d of dropped) assert.match(d.reason, unusableTarget(d.url) === null ? /^beyond discover\.maxTargets \(\d+\)$/ : /./);
      }),
      { numRuns: 300 },
    );
  });

  it('a pool takes the first discover.maxTargets (256 unless set) of a large answer and shows the rest as dropped', async (t) => {
    const answer = Array.from({ length: 300 }, (_, i) => `http://10.3.${Math.floor(i / 250)}.${(i % 250) + 1}:80`).sort();
    for (const [max, kept] of [[undefined, 256], [10, 10]] as const) {
      const config = parseConfig({ apps: [{ name: 'shop', hosts: ['*'], pools: { blue: { version: '1', discover: { dns: 'web.test', port: 80, ...(max === undefined ? {} : { maxTargets: max }) } }, green: { version: '2', targets: ['http://10.0.0.9:80'] } } }] });
      const sunk: string[][] = [];
      const discovery = new Discovery({ config: config.discovery, definitions: () => config.apps, sink: { setDiscoveredTargets: (_app, _pool, urls) => (sunk.push([...urls]), true) }, logger: pino({ level: 'silent' }), lookup: () => Promise.resolve(answer) });
      t.after(() => discovery.close());
      discovery.follow();
      await discovery.settled();
      assert.deepEqual(sunk, [answer.slice(0, kept)]);
      const status = discovery.status('shop', 'blue');
      assert.equal(status?.dropped.length, 300 - kept);
      assert.equal(status?.dropped[0]?.reason, `beyond discover.maxTargets (${kept})`);
      discovery.close();
    }
    assert.throws(() => parseConfig({ apps: [{ name: 'shop', hosts: ['*'], pools: { blue: { version: '1', discover: { dns: 'web.test', port: 80, maxTargets: 5000 } } } }] }), /apps\[0\]\.pools\.blue\.discover\.maxTargets/);
  });
});

describe('Discovery (per-pool polling, keep-last-answer)', () => {
  function setup(answers: (string[] | Error)[], interval = '60s') {
    const config = parseConfig({ apps: [{ name: 'shop', hosts: ['*'], pools: { blue: { version: '1', discover: { dns: 'web.test', port: 80, interval } }, green: { version: '2', targets: ['http://10.0.0.9:80'] } } }] });
    let defs: AppConfig[] = [...config.apps];
    const sunk: string[][] = [];
    const discovery = new Discovery({
      config: config.discovery,
      definitions: () => defs,
      sink: { setDiscoveredTargets: (_app, _pool, urls) => (sunk.push([...urls]), true) },
      logger: pino({ level: 'silent' }),
      lookup: () => {
        const a = answers.shift() ?? new Error('no more answers');
        return a instanceof Error ? Promise.reject(a) : Promise.resolve(a);
      },
    });
    return { discovery, sunk, config, setDefs: (d: AppConfig[]) => void (defs = d) };
  }

  it('applies an answer, keeps it through failed lookups (shown as failing), and applies the next answer', async (t) => {
    const first = ['http://10.0.0.1:80', 'http://10.0.0.2:80'];
    const { discovery, sunk } = setup([first, new Error('ETIMEOUT'), new Error('ETIMEOUT'), first, ['http://10.0.0.2:80']], '50ms');
    t.after(() => discovery.close());
    discovery.follow();
    await discovery.settled();
    assert.deepEqual(sunk, [first]);
    const ok = discovery.status('shop', 'blue');
    assert.equal(ok?.failing, false);
    assert.equal(ok?.lookup, 'A/AAAA web.test:80');
    assert.equal(discovery.status('shop', 'green'), undefined);
    await t.waitFor(() => assert.equal(discovery.status('shop', 'blue')?.consecutiveFailures, 2), { timeout: 2000 });
    assert.deepEqual(sunk, [first], 'failed lookups change nothing');
    assert.deepEqual(discovery.status('shop', 'blue')?.targets, first);
    assert.equal(discovery.status('shop', 'blue')?.failing, true);
    // the same answer again applies nothing; a new one does
    await t.waitFor(() => assert.equal(sunk.length, 2), { timeout: 2000 });
    assert.deepEqual(sunk, [first, ['http://10.0.0.2:80']]);
    assert.equal(discovery.status('shop', 'blue')?.failing, false);
  });

  it('drops what no target can be (0.0.0.0, port 0, link-local, multicast) and shows it in targetStates; an answer of nothing else keeps the last one', async (t) => {
    const good = 'http://10.0.0.1:80';
    const bad = ['http://0.0.0.0:80', 'http://10.0.0.3:0', 'http://169.254.169.254:80', 'http://[fe80::1]:80', 'http://224.0.0.1:80'];
    const { discovery, sunk } = setup([[good, ...bad], bad], '50ms');
    t.after(() => discovery.close());
    discovery.follow();
    await discovery.settled();
    assert.deepEqual(sunk, [[good]], 'only the unicast address is a target');
    assert.deepEqual(discovery.status('shop', 'blue')?.dropped.map((d) => d.url), bad);
    const health = { poolHealth: () => ({ healthy: true, health: 'unchecked' as const, targets: [{ url: good, state: 'up' as const }] }), verifyVersion: () => Promise.reject(new Error('unused')) };
    const view = withDiscovery(health as unknown as HealthSource, discovery).poolHealth('shop', 'blue');
    const dropped = view.targets.filter((x) => x.state === 'dropped');
    assert.deepEqual(dropped.map((x) => x.url), bad);
    assert.match(dropped[0]?.discovery?.dropped ?? '', /0\.0\.0\.0 is not a unicast address/);
    assert.equal(dropped[1]?.discovery?.dropped, 'port 0');
    // the next answer holds nothing usable: a failed lookup, the last answer kept
    await t.waitFor(() => assert.equal(discovery.status('shop', 'blue')?.failing, true), { timeout: 2000 });
    assert.match(discovery.status('shop', 'blue')?.lastLookup?.error ?? '', /every address of the answer is unusable/);
    assert.deepEqual(sunk, [[good]]);
  });

  it('a first lookup that fails leaves the pool as defined and says why', async (t) => {
    const { discovery, sunk } = setup([new LookupError('web.test: no A or AAAA record')]);
    t.after(() => discovery.close());
    discovery.follow();
    await discovery.settled();
    assert.deepEqual(sunk, []);
    const s = discovery.status('shop', 'blue');
    assert.deepEqual({ failing: s?.failing, targets: s?.targets, answeredAt: s?.answeredAt, error: s?.lastLookup?.error, n: s?.consecutiveFailures }, { failing: true, targets: [], answeredAt: null, error: 'web.test: no A or AAAA record', n: 1 });
  });

  it('a definition that drops discover empties the discovered targets and stops the poller', async (t) => {
    const { discovery, sunk, setDefs, config } = setup([['http://10.0.0.1:80']]);
    t.after(() => discovery.close());
    discovery.follow();
    await discovery.settled();
    const app = config.apps[0] as AppConfig;
    setDefs([{ ...app, pools: { ...app.pools, blue: { version: '1', targets: ['http://10.0.0.5:80'] } } }]);
    discovery.follow();
    assert.deepEqual(sunk, [['http://10.0.0.1:80'], []]);
    assert.equal(discovery.status('shop', 'blue'), undefined);
  });

  it('a definition that changes discover keeps the old answer serving (and shown) until the new name answers', async (t) => {
    const { discovery, sunk, setDefs, config } = setup([['http://10.0.0.1:80'], new LookupError('web2.test: no A or AAAA record'), ['http://10.0.0.2:80']], '50ms');
    t.after(() => discovery.close());
    discovery.follow();
    await discovery.settled();
    const app = config.apps[0] as AppConfig;
    setDefs([{ ...app, pools: { ...app.pools, blue: { version: '1', targets: [], discover: { dns: 'web2.test', port: 80, scheme: 'http', interval: 50, maxTargets: 256 } } } }]);
    discovery.follow();
    assert.deepEqual(discovery.status('shop', 'blue')?.targets, ['http://10.0.0.1:80']);
    assert.equal(discovery.status('shop', 'blue')?.lookup, 'A/AAAA web2.test:80');
    await t.waitFor(() => assert.equal(discovery.status('shop', 'blue')?.failing, true), { timeout: 2000 });
    assert.deepEqual(sunk, [['http://10.0.0.1:80']]);
    await t.waitFor(() => assert.deepEqual(sunk, [['http://10.0.0.1:80'], ['http://10.0.0.2:80']]), { timeout: 2000 });
  });
});

describe('drain figures of a pool fed by discovery', () => {
  it('affinity pins to a draining pool with discover and no listed target still count (its targets are discovered)', () => {
    const c = parseConfig({
      apps: [{ name: 'shop', hosts: ['*'], affinity: { secret: 'affinity-secret-0123456789' }, pools: { blue: { version: '1', discover: { dns: 'web.test', port: 80 } }, green: { version: '2', targets: ['http://10.0.0.9:80'] } } }],
    });
    const since = '2026-01-01T00:00:00.000Z';
    const state = { app: 'shop', revision: 5, weights: { green: 10_000 }, salt: 's', drainingSince: { blue: since }, action: 'switch', updatedAt: since, updatedBy: 't', reason: null } as unknown as RoutingState;
    assert.equal(pinsUntil(c.apps[0] as AppConfig, state, 'blue'), Date.parse(since) + 600_000);
  });
});
