import assert from 'node:assert/strict';
import { after, before, describe, it, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { startPrometheus, type PrometheusServer } from '../helpers/prometheus-server.ts';
import { startProxy, twoPools, type TestProxy } from '../helpers/proxy.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';
import { until } from '../helpers/wait.ts';

/**
 * Rollout queries against a real Prometheus (Debian's `prometheus`, started here on a free port)
 * scraping a small exporter every second: the checkout success ratio of green decides.
 */

let blue: Upstream;
let green: Upstream;
let exporter: Upstream;
let prometheus: PrometheusServer;
/** what the exporter says green's checkout success ratio is */
let ratio = 0.995;

const QUERY = 'max(checkout_ok_ratio{app="{{app}}",pool="{{pool}}",version="{{version}}"})';

before(async () => {
  blue = await startUpstream('blue');
  green = await startUpstream('green');
  exporter = await startUpstream('exporter', (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' });
    res.end(`# TYPE checkout_ok_ratio gauge\ncheckout_ok_ratio{app="shop",pool="green",version="2.0.0"} ${ratio}\ncheckout_ok_ratio{app="shop",pool="blue",version="1.0.0"} 0.999\n`);
  });
  prometheus = await startPrometheus([`127.0.0.1:${exporter.port}`]);
  // the first scrapes land before any rollout asks
  const deadline = Date.now() + 60_000;
  while ((await prometheus.value('checkout_ok_ratio{pool="green"}')) === null) {
    if (Date.now() > deadline) throw new Error('prometheus never scraped the exporter');
    await sleep(250);
  }
});
after(async () => {
  await prometheus?.stop();
  await Promise.all([blue?.close(), green?.close(), exporter?.close()]);
});

async function proxy(t: TestContext, doc: Record<string, unknown> = {}): Promise<TestProxy> {
  const p = await startProxy({ apps: [twoPools(blue.url, green.url)], ...doc }, { rollouts: { tickMs: 20 } });
  t.after(() => p.close());
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      await p.get('/').catch(() => undefined);
      await sleep(5);
    }
  })();
  t.after(async () => {
    stopped = true;
    await loop;
  });
  return p;
}

const current = async (p: TestProxy) => (await p.admin('GET', '/v1/apps/shop/rollouts/current')).body;
const inState = (t: TestContext, p: TestProxy, state: string) => until(t, `rollout ${state}`, async () => ((await current(p)).state === state ? current(p) : undefined), { timeout: 30_000 });
const weights = async (p: TestProxy) => (await p.admin('GET', '/v1/apps/shop')).body.weights;

describe('rollout queries against a real Prometheus', () => {
  it('a value above min lets the rollout go on to 100 % (Prometheus from the process config)', async (t) => {
    ratio = 0.995;
    const p = await proxy(t, { analysis: { prometheus: { url: prometheus.url, headers: { authorization: 'Bearer prom-secret-0123' } } } });
    const r = await p.admin('POST', '/v1/apps/shop/rollouts', {
      to: 'green',
      steps: [{ weight: 20, pause: '500ms' }, { weight: 50, pause: '500ms' }],
      analysis: { minRequests: 1, interval: '400ms', queries: [{ name: 'checkout-ok', prometheus: QUERY, min: 0.99 }] },
    });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    const done = await inState(t, p, 'succeeded');
    assert.deepEqual(await weights(p), { blue: 0, green: 100 });
    const passed = done.gates.rounds.filter((x: { verdict: string }) => x.verdict === 'pass');
    assert.ok(passed.length >= 2, 'a passing round for each step left');
    assert.deepEqual(passed[0].checks[0], { kind: 'query', name: 'checkout-ok', verdict: 'pass', value: 0.995, ms: passed[0].checks[0].ms });
    const entries = (await p.admin('GET', '/v1/apps/shop/history?limit=3')).body.entries as { reason: string }[];
    assert.match(entries.find((e) => e.reason.includes('step 2/3'))?.reason ?? '', /; checkout-ok 0\.995$/);
  });

  it('a value below min rolls it back, with the value in the reason and the history', async (t) => {
    ratio = 0.9;
    await until(t, 'prometheus to see 0.9', async () => ((await prometheus.value('checkout_ok_ratio{pool="green"}')) === 0.9 ? true : undefined), { timeout: 30_000 });
    const p = await proxy(t);
    const r = await p.admin('POST', '/v1/apps/shop/rollouts', {
      to: 'green',
      steps: [{ weight: 20, pause: '1m' }],
      analysis: { minRequests: 1, interval: '400ms', prometheus: { url: prometheus.url, headers: { 'x-scope-orgid': 'tenant-secret' } }, queries: [{ name: 'checkout-ok', prometheus: QUERY, min: 0.99 }] },
    });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    assert.deepEqual(r.body.gates.config.prometheus, { url: prometheus.url, headers: { 'x-scope-orgid': '***' } });
    const rolled = await inState(t, p, 'rolled-back');
    assert.equal(rolled.reason, 'gate failed: checkout-ok 0.9 (below min 0.99)');
    assert.deepEqual(await weights(p), { blue: 100, green: 0 });
    const [entry] = (await p.admin('GET', '/v1/apps/shop/history?limit=1')).body.entries;
    assert.equal(entry.reason, `rollout ${r.body.id} rolled back: checkout-ok 0.9 (below min 0.99)`);
  });

  it('an empty result is inconclusive: paused after inconclusiveLimit rounds, never promoted', async (t) => {
    ratio = 0.995;
    const p = await proxy(t);
    const r = await p.admin('POST', '/v1/apps/shop/rollouts', {
      to: 'green',
      steps: [{ weight: 20, pause: '200ms' }],
      analysis: { minRequests: 1, interval: '300ms', inconclusiveLimit: 3, prometheus: { url: prometheus.url }, queries: [{ name: 'queue-lag', prometheus: 'max(queue_lag_seconds{version="{{version}}"})', max: 5 }] },
    });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    const paused = await inState(t, p, 'paused');
    assert.equal(paused.reason, 'inconclusive: 3 inconclusive rounds in a row, the last: queue-lag no value (no data (empty result)); paused (onInconclusive: pause), never promoted without evidence');
    assert.deepEqual(
      paused.gates.rounds.map((x: { verdict: string }) => x.verdict),
      ['inconclusive', 'inconclusive', 'inconclusive'],
    );
    // three driver rounds run now (not a sleep that hopes one ran): none takes it out of the pause
    for (let i = 0; i < 3; i++) await p.sy.rollouts.tick();
    assert.equal((await current(p)).state, 'paused');
    assert.deepEqual(await weights(p), { blue: 80, green: 20 }, 'the step past its pause was never left');
  });

  it('a Prometheus that is down is inconclusive too, and onInconclusive: rollback rolls back', async (t) => {
    const p = await proxy(t);
    const r = await p.admin('POST', '/v1/apps/shop/rollouts', {
      to: 'green',
      steps: [{ weight: 20, pause: '1m' }],
      analysis: { minRequests: 1, interval: '200ms', inconclusiveLimit: 2, onInconclusive: 'rollback', prometheus: { url: 'http://127.0.0.1:1' }, queries: [{ name: 'checkout-ok', prometheus: QUERY, min: 0.99 }] },
    });
    assert.equal(r.status, 201);
    const rolled = await inState(t, p, 'rolled-back');
    assert.match(rolled.reason, /^inconclusive: 2 inconclusive rounds in a row, the last: checkout-ok no value \(Prometheus unreachable: .*ECONNREFUSED.*\)$/);
    assert.deepEqual(await weights(p), { blue: 100, green: 0 });
  });
});
