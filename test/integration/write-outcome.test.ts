import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { Writable } from 'node:stream';
import pino from 'pino';
import { redisKeys } from '../../src/state/redis-store.ts';
import { runCliCaptured } from '../helpers/cli.ts';
import { startDelayProxy, type DelayProxy } from '../helpers/delay-proxy.ts';
import { revisionOf } from '../helpers/fleet.ts';
import { startProxy, TOKEN, twoPools, type TestProxy } from '../helpers/proxy.ts';
import { redisClient, startRedis, type RedisServer } from '../helpers/redis-server.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';
import { until } from '../helpers/wait.ts';

// What a write's answer means when Redis is slow to answer it: 200 it landed, 503 it did not and
// never will, 504 WRITE_OUTCOME_UNKNOWN it may have (never a plain 503 for a write that landed).
// Instance A reaches Redis through a TCP proxy that holds bytes; instance B reaches it directly.

let blue: Upstream;
let green: Upstream;
let redis: RedisServer;
let prefixes = 0;

before(async () => {
  blue = await startUpstream('blue');
  green = await startUpstream('green');
  redis = await startRedis();
});
after(async () => {
  await blue.close();
  await green.close();
  await redis.cleanup();
});

// long enough that an unheld command answers in time on a loaded machine; the held ones wait it out
const COMMAND_TIMEOUT_MS = 1000;

interface Stored {
  revision: number;
  weights: Record<string, number>;
  definition: { pools: Record<string, { targets: string[] }> };
}

async function setup(t: TestContext, now?: () => number): Promise<{ a: TestProxy; b: TestProxy; link: DelayProxy; prefix: string; stored: () => Promise<Stored>; reasons: () => Promise<(string | null)[]> }> {
  const prefix = `outcome${process.pid}-${++prefixes}`;
  const link = await startDelayProxy(redis.port);
  const dirs = [await mkdtemp(join(tmpdir(), 'switchyard-outcome-')), await mkdtemp(join(tmpdir(), 'switchyard-outcome-'))];
  const store = (url: string, dir: string) => ({ kind: 'redis', url, prefix, cachePath: join(dir, 'cache.json'), commandTimeout: `${COMMAND_TIMEOUT_MS}ms` });
  // registered before anything starts, so a start that fails closes what did start
  const started: TestProxy[] = [];
  const admin = redisClient(redis.url);
  t.after(async () => {
    link.release();
    admin.disconnect();
    for (const p of started.reverse()) await p.close();
    await link.close();
    for (const d of dirs) await rm(d, { recursive: true, force: true, maxRetries: 5 });
  });
  const b = await startProxy({ apps: [twoPools(blue.url, green.url)], store: store(redis.url, dirs[1]!) }, { instanceId: 'b', dir: dirs[1]!, ...(now === undefined ? {} : { now }) });
  started.push(b);
  const a = await startProxy({ apps: [twoPools(blue.url, green.url)], store: store(link.url, dirs[0]!) }, { instanceId: 'a', dir: dirs[0]!, ...(now === undefined ? {} : { now }) });
  started.push(a);
  const keys = redisKeys(prefix);
  return {
    a,
    b,
    link,
    prefix,
    stored: async () => JSON.parse((await admin.get(keys.state('shop'))) as string) as Stored,
    reasons: async () => (await admin.lrange(keys.history('shop'), 0, -1)).map((e) => (JSON.parse(e) as { reason: string | null }).reason),
  };
}

describe('the answer to a write whose redis reply is slow', () => {
  it('a write whose reply is held past the command timeout but landed answers 200 with it, not 503', async (t) => {
    const s = await setup(t);
    const start = revisionOf(s.a);
    // the command connection's replies are stuck until released; a fresh connection gets through
    s.link.hold('replies', Infinity);
    const r = await s.a.admin('PUT', '/v1/apps/shop/weights', { weights: { blue: 41, green: 59 }, reason: 'slow reply' });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.ok(s.link.heldBytes > 0, 'answered while the reply is still held');
    assert.deepEqual([r.body.revision, r.body.weights], [start + 1, { blue: 41, green: 59 }]);
    const stored = await s.stored();
    assert.deepEqual([stored.revision, stored.weights], [start + 1, { blue: 4_100, green: 5_900 }]);
    // once: a landed write is not retried as a new revision
    assert.deepEqual((await s.reasons()).filter((x) => x === 'slow reply'), ['slow reply']);
    await until(t, 'instance B on the written revision', () => revisionOf(s.b) === start + 1);
    s.link.release();
    await until(t, 'instance A on the written revision', () => revisionOf(s.a) === start + 1);
  });

  it('a write whose request reaches redis after its deadline answers 503 and never lands', async (t) => {
    const s = await setup(t);
    const start = revisionOf(s.a);
    s.link.hold('requests', Infinity);
    const r = await s.a.admin('PUT', '/v1/apps/shop/weights', { weights: { blue: 42, green: 58 }, reason: 'late request' });
    assert.equal(r.status, 503, JSON.stringify(r.body));
    assert.equal(r.body.error.code, 'STORE_UNAVAILABLE');
    // the held request reaches redis now, past its deadline; redis runs the script, which refuses it
    s.link.release();
    await until(t, 'redis to answer the held request', () => s.link.heldAnswered > 0);
    assert.equal((await s.stored()).revision, start);
    assert.ok(!(await s.reasons()).includes('late request'));
    assert.equal(revisionOf(s.b), start);
  });

  it('when redis cannot be read back either, the write answers 504 WRITE_OUTCOME_UNKNOWN (never 503), and the CLI says so with exit 1', async (t) => {
    const s = await setup(t);
    const start = revisionOf(s.a);
    // every connection's replies stuck, fresh ones too: the outcome cannot be known in time
    s.link.hold('replies', Infinity, { newConnections: true });
    const r = await s.a.admin('PUT', '/v1/apps/shop/weights', { weights: { blue: 43, green: 57 }, reason: 'unknown outcome' });
    assert.equal(r.status, 504, JSON.stringify(r.body));
    assert.equal(r.body.error.code, 'WRITE_OUTCOME_UNKNOWN');
    assert.match(r.body.error.message, /may or may not have landed/);
    // it did land (the request was not held): the 504 did not lie, a 503 would have
    assert.equal((await s.stored()).revision, start + 1);

    s.link.release();
    await until(t, 'instance A on the landed revision', () => revisionOf(s.a) === start + 1);
    s.link.hold('replies', Infinity, { newConnections: true });
    const cli = await runCliCaptured(['weights', 'shop', 'blue=44', 'green=56'], { SWITCHYARD_ADMIN_URL: s.a.adminUrl, SWITCHYARD_TOKEN: TOKEN });
    s.link.release();
    assert.equal(cli.code, 1, cli.stdout + cli.stderr);
    assert.match(cli.stderr, /WRITE_OUTCOME_UNKNOWN: .*may or may not have landed/);
    assert.match(cli.stderr, /check `switchyard status` and `switchyard history` before retrying/);
  });

  it('a write whose slow reply was a lost compare-and-set is not taken for the winner\'s write with the same history entry: it retries, and both writes are kept', async (t) => {
    // both instances' writes carry the same timestamp, as two writes in one millisecond do
    let frozen: number | null = null;
    const s = await setup(t, () => frozen ?? Date.now());
    const start = revisionOf(s.a);
    frozen = Date.now();
    // A's connections (commands and messages) are stuck until released: A still routes on `start`
    s.link.hold('replies', Infinity);
    const first = await s.b.admin('POST', '/v1/apps/shop/pools/green/targets', { url: 'http://127.0.0.1:20001' });
    assert.equal(first.status, 200, JSON.stringify(first.body));
    assert.equal(first.body.revision, start + 1);
    // A's compare-and-set on `start` loses to B's start + 1, whose history entry reads exactly as A's would
    // (same revision, weights, action, actor, reason, time, changed paths); its reply is stuck past the timeout
    const second = await s.a.admin('POST', '/v1/apps/shop/pools/green/targets', { url: 'http://127.0.0.1:20002' });
    frozen = null;
    s.link.release();
    assert.equal(second.status, 200, JSON.stringify(second.body));
    const stored = await s.stored();
    // a 200 means the write is in the store, next to the one it raced with
    assert.deepEqual([...stored.definition.pools['green']!.targets].sort(), [green.url, 'http://127.0.0.1:20001', 'http://127.0.0.1:20002'].sort());
    assert.equal(second.body.revision, stored.revision);
    await until(t, 'both instances on the stored revision', () => revisionOf(s.a) === stored.revision && revisionOf(s.b) === stored.revision);
    for (const p of [s.a, s.b]) assert.deepEqual([...p.sy.controller.appConfig('shop').pools.green!.targets].sort(), [...stored.definition.pools['green']!.targets].sort());
  });
});

describe('store.replicas when the replicas do not confirm', () => {
  it('an instance\'s start-up write the replicas did not confirm still starts the instance (logged, on the primary); a client\'s write answers 504 WRITE_OUTCOME_UNKNOWN', async (t) => {
    const prefix = `replicas${process.pid}`;
    const dir = await mkdtemp(join(tmpdir(), 'switchyard-outcome-'));
    const lines: string[] = [];
    const admin = redisClient(redis.url);
    const started: TestProxy[] = [];
    t.after(async () => {
      admin.disconnect();
      for (const p of started) await p.close();
      await rm(dir, { recursive: true, force: true, maxRetries: 5 });
    });
    // this redis has no replica at all: every WAIT 1 runs out
    const store = { kind: 'redis', url: redis.url, prefix, cachePath: join(dir, 'cache.json'), commandTimeout: `${COMMAND_TIMEOUT_MS}ms`, replicas: 1, replicaTimeout: '100ms' };
    const logger = pino({ level: 'warn' }, new Writable({ write(chunk: Buffer, _enc, done) { lines.push(chunk.toString()); done(); } }));
    const p = await startProxy({ apps: [twoPools(blue.url, green.url)], store }, { instanceId: 'a', dir, logger });
    started.push(p);
    assert.equal(revisionOf(p), 1);
    const stored = JSON.parse((await admin.get(redisKeys(prefix).state('shop'))) ?? 'null') as Stored | null;
    assert.equal(stored?.revision, 1, 'the seed is on the primary');
    assert.ok(lines.some((l) => l.includes('not confirmed by the replicas') && l.includes('"revision":1')), lines.join('\n'));
    const r = await p.admin('PUT', '/v1/apps/shop/weights', { weights: { blue: 50, green: 50 }, reason: 'needs a replica' });
    assert.equal(r.status, 504, JSON.stringify(r.body));
    assert.equal(r.body.error.code, 'WRITE_OUTCOME_UNKNOWN');
    assert.deepEqual(r.body.error.details, { app: 'shop', revision: 2, replicas: 1, acknowledged: 0 });
  });
});
