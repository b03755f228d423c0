import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseConfig } from '../../src/config/load.ts';
import type { RequestRecord } from '../../src/dataplane/types.ts';
import type { ErrorCode } from '../../src/errors.ts';
import { bucketOf, bucketUpperMs, HISTORY_SECONDS, LATENCY_BUCKETS, LiveStats, mergeWindows, PEER_MAX_AGE_S, type StatsExport } from '../../src/metrics/stats.ts';

const pools = { blue: { version: '1.0.0', targets: ['http://127.0.0.1:9001'] }, green: { version: '2.0.0', targets: ['http://127.0.0.1:9002'] } };
const config = parseConfig({
  apps: [
    { name: 'shop', hosts: ['*'], pools },
    { name: 'blog', hosts: ['blog.example.com'], pools },
  ],
});

/** A clock the test moves by hand. */
function clock(start = 0): { now: () => number; set(ms: number): void } {
  let t = start;
  return { now: () => t, set: (ms) => (t = ms) };
}

/** A finished request as the data plane reports it; only the indexes and the outcome matter to stats. */
/** `ms` to the response head, then `stream` ms until the response ended. */
function rec(app: number, pool: number, endedAt: number, ms: number, status = 200, error: ErrorCode | null = null, stream = 0): RequestRecord {
  return {
    app: { index: app, name: app === 0 ? 'shop' : 'blog', revision: 1 },
    pool: { index: pool, name: pool === 0 ? 'blue' : 'green', version: pool === 0 ? '1.0.0' : '2.0.0' },
    by: 'weights',
    requestId: 'r',
    method: 'GET',
    outcome: { status, error, startedAt: endedAt - stream - ms, headAt: endedAt - stream, endedAt },
  } as unknown as RequestRecord;
}

/** `n` requests spread over the second starting at `sec * 1000`. */
function load(stats: LiveStats, sec: number, n: number, ms: number, pool = 0, status = 200, error: ErrorCode | null = null): void {
  for (let i = 0; i < n; i++) stats.record(rec(0, pool, sec * 1000 + Math.floor((i * 1000) / n), ms, status, error));
}

describe('latency buckets', () => {
  it('are exact under 16 ms and at most 12.5 % wide above, reporting the upper end', () => {
    for (let v = 0; v < 16; v++) assert.equal(bucketUpperMs(bucketOf(v)), v);
    let last = -1;
    for (let v = 0; v < 2 ** 21; v += v < 4096 ? 1 : 97) {
      const b = bucketOf(v);
      const upper = bucketUpperMs(b);
      assert.ok(b >= last, `buckets are monotonic at ${v}`);
      assert.ok(upper >= v, `${v} ms reports ${upper}, never lower`);
      assert.ok(upper - v < Math.max(1, v * 0.125), `${v} ms reports ${upper}: within 12.5 %`);
      last = b;
    }
  });

  it('clamps what they cannot hold', () => {
    assert.equal(bucketOf(-5), 0);
    assert.equal(bucketOf(Number.NaN), 0);
    assert.equal(bucketOf(0.6), 0);
    assert.equal(bucketOf(2 ** 21), LATENCY_BUCKETS - 1);
    assert.equal(bucketOf(1e12), LATENCY_BUCKETS - 1);
    assert.equal(bucketUpperMs(LATENCY_BUCKETS - 1), 2 ** 21 - 1);
  });
});

describe('live stats windows', () => {
  it('100 requests in second 1 and 50 in second 2 give exact rps, errors and percentiles', () => {
    const c = clock();
    const stats = new LiveStats(config, { now: c.now });
    load(stats, 1, 100, 10);
    load(stats, 2, 40, 100);
    load(stats, 2, 5, 100, 0, 500);
    load(stats, 2, 5, 100, 0, 502, 'UPSTREAM_ERROR');

    // second 2 is still being written: only second 1 counts
    c.set(2_500);
    assert.deepEqual(stats.window('shop', 10).blue, { requests: 100, rps: 10, errors: 0, errorRate: 0, p50: 10, p95: 10, p99: 10, streamP99: 0 });

    c.set(3_000);
    const w10 = stats.window('shop', 10);
    // 100 ms sits in the bucket [96, 104): reported as 103
    assert.deepEqual(w10.blue, { requests: 150, rps: 15, errors: 10, errorRate: 0.067, p50: 10, p95: 103, p99: 103, streamP99: 0 });
    assert.deepEqual(w10.green, { requests: 0, rps: 0, errors: 0, errorRate: 0, p50: null, p95: null, p99: null, streamP99: null });
    assert.equal(stats.window('shop', 60).blue?.rps, 2.5);
    assert.equal(stats.window('blog', 10).blue?.requests, 0, 'apps are counted apart');

    // second 1 leaves the 10 s window at 11 s; second 2 at 12 s
    c.set(12_000);
    assert.equal(stats.window('shop', 10).blue?.requests, 50);
    assert.equal(stats.window('shop', 10).blue?.p50, 103);
    c.set(13_000);
    assert.equal(stats.window('shop', 10).blue?.requests, 0);
    assert.equal(stats.window('shop', 60).blue?.requests, 150);
    c.set(62_000);
    assert.equal(stats.window('shop', 60).blue?.requests, 50);
    c.set(63_000);
    assert.equal(stats.window('shop', 60).blue?.requests, 0);
  });

  it('leave the proxy\'s own answers (503 GOING_AWAY at shutdown) out of a pool\'s figures: a restart never fails a canary', () => {
    const c = clock();
    const stats = new LiveStats(config, { now: c.now });
    load(stats, 1, 20, 10, 1);
    load(stats, 1, 10, 10, 1, 503, 'GOING_AWAY');
    load(stats, 1, 2, 10, 1, 503, 'NO_TARGET');
    c.set(2_000);
    assert.deepEqual(stats.window('shop', 10).green, { requests: 22, rps: 2.2, errors: 2, errorRate: 0.091, p50: 10, p95: 10, p99: 10, streamP99: 0 });
  });

  it('percentiles follow the distribution (1..100 ms, one request each)', () => {
    const c = clock();
    const stats = new LiveStats(config, { now: c.now });
    for (let ms = 1; ms <= 100; ms++) stats.record(rec(0, 1, 5_000 + ms, ms));
    c.set(6_000);
    const g = stats.window('shop', 10).green;
    assert.equal(g?.requests, 100);
    assert.deepEqual([g?.p50, g?.p95, g?.p99], [51, 95, 103]);
  });

  it('latency is the time to the head: a response open 3 s after a 5 ms head counts 5 ms, and 3 s as stream duration; a 101 in neither', () => {
    const c = clock();
    const stats = new LiveStats(config, { now: c.now });
    for (let i = 0; i < 99; i++) stats.record(rec(0, 0, 1_000 + i, 5));
    stats.record(rec(0, 0, 4_500, 5, 200, null, 3_000));
    stats.record({ ...rec(0, 0, 4_600, 0), outcome: { status: 101, error: null, startedAt: 1_000, headAt: 1_002, endedAt: 4_600 } } as RequestRecord);
    c.set(5_000);
    const b = stats.window('shop', 10).blue;
    assert.deepEqual(b, { requests: 101, rps: 10.1, errors: 0, errorRate: 0, p50: 5, p95: 5, p99: 5, streamP99: 0 });
    // the stream's 3 s is its own figure, and travels to the fleet's other instances
    for (let i = 0; i < 5; i++) stats.record(rec(0, 1, 4_700 + i, 5, 200, null, 3_000));
    const peer = new LiveStats(config, { now: c.now, peers: () => [stats.exportWindows()] });
    assert.equal(peer.window('shop', 10).green?.streamP99, bucketUpperMs(bucketOf(3_000)));
    assert.equal(peer.window('shop', 10).green?.p99, 5);
  });

  it('reuses a second’s row after 61 s and drops a record for a second already recycled', () => {
    const c = clock();
    const stats = new LiveStats(config, { now: c.now });
    load(stats, 5, 10, 1);
    load(stats, 66, 3, 1); // same slot as second 5
    stats.record(rec(0, 0, 5_500, 1)); // late: second 5 is gone
    c.set(67_000);
    assert.equal(stats.window('shop', 60).blue?.requests, 3);
    c.set(6_000);
    assert.equal(stats.window('shop', 10).blue?.requests, 0, 'second 5 was overwritten by second 66');
  });

  it('throws UNKNOWN_APP for an app the config does not have', () => {
    const stats = new LiveStats(config);
    assert.throws(() => stats.window('nope', 10), { code: 'UNKNOWN_APP' });
    assert.throws(() => stats.view('nope'), { code: 'UNKNOWN_APP' });
  });

  it('answers the API view with both windows', () => {
    const c = clock(1_700_000_000_000);
    const stats = new LiveStats(config, { now: c.now });
    load(stats, 1_700_000_000 - 1, 20, 4);
    const v = stats.view('shop');
    assert.equal(v.app, 'shop');
    assert.equal(v.at, new Date(1_700_000_000_000).toISOString());
    assert.equal(v.fleet, false);
    assert.equal(v.instances, 1);
    assert.deepEqual(Object.keys(v.windows), ['10s', '60s']);
    assert.equal(v.windows['10s'].blue?.rps, 2);
    assert.equal(v.windows['60s'].blue?.p99, 4);
  });
});

describe('fleet windows', () => {
  it('an instance’s export merged into another’s view sums requests, errors and histograms', () => {
    const c = clock();
    const a = new LiveStats(config, { now: c.now });
    const b = new LiveStats(config, { now: c.now });
    load(a, 1, 100, 10);
    load(b, 1, 100, 200, 0, 503, 'NO_TARGET');
    load(b, 1, 7, 3, 1);
    c.set(2_000);
    const exported = b.exportWindows();
    // small: only non-empty buckets of pools that had requests
    assert.deepEqual(Object.keys(exported.apps), ['shop']);
    assert.ok(JSON.stringify(exported).length < 200, JSON.stringify(exported));

    a.attachFleet(() => [exported]);
    const v = a.view('shop');
    assert.equal(v.fleet, true);
    assert.equal(v.instances, 2);
    assert.deepEqual(v.windows['10s'].blue, { requests: 200, rps: 20, errors: 100, errorRate: 0.5, p50: 10, p95: 207, p99: 207, streamP99: 0 });
    assert.equal(v.windows['10s'].green?.requests, 7);
    assert.equal(a.window('shop', 60).blue?.requests, 200);
  });

  it('mergeWindows of two exports is the export of the combined load', () => {
    const c = clock();
    const [a, b, both] = [new LiveStats(config, { now: c.now }), new LiveStats(config, { now: c.now }), new LiveStats(config, { now: c.now })];
    for (const [s, ms] of [[a, 5], [b, 40], [both, 5], [both, 40]] as const) load(s, 3, 30, ms);
    load(b, 4, 10, 900, 1);
    load(both, 4, 10, 900, 1);
    c.set(5_000);
    assert.deepEqual(mergeWindows([a.exportWindows(), b.exportWindows()]), both.exportWindows());
  });

  it('leaves out stale peers and ignores malformed or foreign payloads', () => {
    const c = clock(100_000);
    const a = new LiveStats(config, { now: c.now });
    const good: StatsExport = { v: 1, at: 100, apps: { shop: { blue: { '10': [5, 1, 3, 5], '60': [5, 1, 3, 5] } } } };
    const stale: StatsExport = { ...good, at: 100 - PEER_MAX_AGE_S - 1 };
    const foreign: StatsExport = { ...good, v: 99 };
    const junk = [{ v: 1, at: 100, apps: { shop: { blue: { '10': ['x', -1, 9999, 5, 2, Infinity] } }, blog: 7 } }, { v: 1, at: 100, apps: null }, null, 'nope'] as unknown as StatsExport[];
    a.attachFleet(() => [good, stale, foreign, ...junk]);
    const v = a.view('shop');
    assert.equal(v.instances, 3, 'this one, the good peer and the first junk one (fresh, scheme 1)');
    // a peer that exports no stream-duration buckets (an older version) leaves that figure empty, not zero
    assert.deepEqual(v.windows['10s'].blue, { requests: 5, rps: 0.5, errors: 1, errorRate: 0.2, p50: 3, p95: 3, p99: 3, streamP99: null });
    assert.equal(a.view('blog').windows['10s'].blue?.requests, 0);
  });
});

describe('the last minute for the dashboard', () => {
  it('keeps the 10 s figures of each sampled second of the last minute, fleet included, and only on request', () => {
    const c = clock();
    const stats = new LiveStats(config, { now: c.now, sampleEveryMs: 0 });
    const peer = new LiveStats(config, { now: c.now, sampleEveryMs: 0 });
    stats.attachFleet(() => [peer.exportWindows()]);
    for (let sec = 100; sec < 200; sec++) {
      load(stats, sec, 10, 5);
      load(peer, sec, 10, 50);
      c.set((sec + 1) * 1000 + 300);
      stats.sample();
    }
    assert.equal(stats.view('shop').history, undefined, 'not in the default answer');
    const history = stats.view('shop', { history: true }).history ?? [];
    assert.equal(history.length, HISTORY_SECONDS);
    assert.deepEqual([history[0]?.at, history.at(-1)?.at], [new Date(141_000).toISOString(), new Date(200_000).toISOString()]);
    // a full 10 s window of 10 + 10 requests a second, this instance's latency and the peer's
    assert.deepEqual(history.at(-1)?.pools.blue, { requests: 200, rps: 20, errors: 0, errorRate: 0, p50: 5, p95: 51, p99: 51, streamP99: 0 });
    assert.equal(history.at(-1)?.pools.green?.requests, 0);
  });

  it('leaves out the seconds it did not sample rather than drawing them as zero', () => {
    const c = clock(10_000);
    const stats = new LiveStats(config, { now: c.now, sampleEveryMs: 0 });
    stats.sample();
    c.set(10_400);
    stats.sample(); // the same second: replaced, not doubled
    c.set(40_000);
    stats.sample();
    c.set(90_000);
    assert.deepEqual((stats.view('blog', { history: true }).history ?? []).map((p) => p.at), [new Date(40_000).toISOString()]);
  });

  it('samples by itself every second, and stops when closed', async () => {
    const stats = new LiveStats(config, { sampleEveryMs: 20 });
    await new Promise((r) => setTimeout(r, 120));
    stats.close();
    const n = stats.view('shop', { history: true }).history?.length ?? 0;
    assert.ok(n >= 1, String(n));
  });
});
