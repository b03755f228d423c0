import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { Writable } from 'node:stream';
import pino from 'pino';
import { readRedisClock, redisOptions, writeDeadline } from '../../src/state/redis-connect.ts';
import { RedisStore, redisKeys, type RedisStoreOptions } from '../../src/state/redis-store.ts';
import type { RoutingState } from '../../src/state/types.ts';
import { redisClient, startRedis, type RedisServer } from '../helpers/redis-server.ts';
import { makeState, storeContract } from '../helpers/store-contract.ts';
import { until } from '../helpers/wait.ts';

let redis: RedisServer;
let prefixes = 0;

before(async () => {
  redis = await startRedis();
});
after(async () => {
  await redis.cleanup();
});

/** Each store gets its own prefix, so tests share one server without seeing each other. */
function uniquePrefix(): string {
  return `t${process.pid}-${++prefixes}`;
}

async function open(t: TestContext, opts: Partial<RedisStoreOptions> = {}): Promise<RedisStore> {
  const store = await RedisStore.open({ url: redis.url, prefix: uniquePrefix(), historyLimit: 50, commandTimeout: 1000, ...opts });
  t.after(() => store.close());
  return store;
}

storeContract('redis store', async ({ historyLimit, pools }) => {
  const prefix = uniquePrefix();
  const dir = await mkdtemp(join(tmpdir(), 'switchyard-redis-store-'));
  const opts = { url: redis.url, prefix, historyLimit, pools, cachePath: join(dir, 'cache.json') };
  const stores = [await RedisStore.open(opts)];
  return {
    store: stores[0]!,
    reopen: async () => {
      const store = await RedisStore.open(opts);
      stores.push(store);
      return store;
    },
    cleanup: async () => {
      for (const store of stores) await store.close();
      await rm(dir, { recursive: true, force: true, maxRetries: 5 });
    },
    // a SET behind the store's back, as redis-cli or an older version would do
    plant: async (app, raw) => {
      await stores[0]!.client.set(redisKeys(prefix).state(app), JSON.stringify(raw));
      return stores[0]!;
    },
  };
});

describe('redis store propagation', () => {
  it('a write through one store reaches a watcher of another through pub/sub', async (t) => {
    const prefix = uniquePrefix();
    const a = await open(t, { prefix });
    const b = await open(t, { prefix, pollInterval: 60_000 });
    await b.getMany(['shop']);
    const seen: number[] = [];
    b.watch((s) => seen.push(s.revision));
    await a.compareAndSet(makeState('shop', 1), null);
    await a.compareAndSet(makeState('shop', 2), 1);
    await until(t, 'two revisions on b', () => seen.length >= 2, { timeout: 1_000 });
    assert.deepEqual(seen, [1, 2]);
  });

  it('with the subscriber connection killed (CLIENT KILL TYPE pubsub) a change still arrives within 1.5 s', async (t) => {
    const prefix = uniquePrefix();
    const writer = await open(t, { prefix });
    const reader = await open(t, { prefix });
    await writer.compareAndSet(makeState('shop', 1), null);
    await reader.getMany(['shop']);
    const seen: number[] = [];
    reader.watch((s) => seen.push(s.revision));
    const admin = redisClient(redis.url);
    t.after(() => admin.disconnect());
    assert.ok((await admin.client('KILL', 'TYPE', 'pubsub')) as number >= 1);
    await writer.compareAndSet(makeState('shop', 2), 1);
    await until(t, 'revision 2 on the reader', () => seen.includes(2), { timeout: 1_500 });
  });

  it('a change whose message was lost is caught by the 1 s poll', async (t) => {
    const prefix = uniquePrefix();
    const reader = await open(t, { prefix });
    const admin = redisClient(redis.url);
    t.after(() => admin.disconnect());
    const keys = redisKeys(prefix);
    await admin.set(keys.state('shop'), JSON.stringify(makeState('shop', 1)));
    assert.equal((await reader.getMany(['shop'])).get('shop')?.revision, 1);
    const seen: number[] = [];
    reader.watch((s) => seen.push(s.revision));
    // written behind the store's back: no PUBLISH, as if the message had been lost
    await admin.set(keys.state('shop'), JSON.stringify(makeState('shop', 2)));
    const started = Date.now();
    await until(t, 'the poll to deliver revision 2', () => seen.includes(2), { timeout: 1_500 });
    const ms = Date.now() - started;
    assert.ok(ms <= 1_500, `took ${ms} ms`);
  });

  it('an invalid state in Redis is never delivered, and is logged once per bad value, not on every poll', async (t) => {
    const prefix = uniquePrefix();
    const errors: Record<string, unknown>[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const line of chunk.toString().split('\n')) if (line !== '') errors.push(JSON.parse(line) as Record<string, unknown>);
        done();
      },
    });
    const reader = await open(t, { prefix, pollInterval: 20, logger: pino({ level: 'error' }, sink) });
    const admin = redisClient(redis.url);
    t.after(() => admin.disconnect());
    const key = redisKeys(prefix).state('shop');
    await admin.set(key, JSON.stringify(makeState('shop', 1)));
    await reader.getMany(['shop']);
    const seen: number[] = [];
    reader.watch((s) => seen.push(s.revision));
    await admin.set(key, JSON.stringify({ ...makeState('shop', 2), weights: { blue: 0, green: 0 } }));
    // fifteen polls run now (not a sleep that hopes they ran), beside the 20 ms interval's own
    for (let i = 0; i < 15; i++) await reader.sync();
    await admin.set(key, JSON.stringify({ ...makeState('shop', 3), weights: null }));
    for (let i = 0; i < 15; i++) await reader.sync();
    const lines = errors.filter((l) => l.app === 'shop');
    assert.equal(lines.length, 2, JSON.stringify(lines));
    assert.match(JSON.stringify(lines[0]), /weights: must sum to 10000 bp, got 0/);
    assert.match(JSON.stringify(lines[1]), /weights: Invalid input/);
    // revision 1 may reach the new watcher on the first poll after watch() (a watcher added later
    // gets the current state); the invalid revisions 2 and 3 never may
    assert.deepEqual(seen.filter((r) => r !== 1), [], 'no invalid state reaches a watcher');
    await reader.compareAndSet(makeState('shop', 4, { blue: 0, green: 10_000 }), 3);
    await until(t, 'the repairing write', () => seen.includes(4));
  });

  it('sync reports every known app, with null for one Redis does not hold', async (t) => {
    const store = await open(t);
    await store.compareAndSet(makeState('shop', 1), null);
    await store.getMany(['shop', 'blog']);
    const reports: Map<string, RoutingState | null>[] = [];
    store.on('sync', (remote) => reports.push(new Map(remote)));
    await store.sync();
    const last = reports.at(-1)!;
    assert.equal(last.get('shop')?.revision, 1);
    assert.equal(last.get('blog'), null);
  });
});

describe('redis store while redis is down', () => {
  it('writes reject with STORE_UNAVAILABLE within 2.5 s, and work again once redis is back', async (t) => {
    const server = await startRedis();
    t.after(() => server.cleanup());
    const dir = await mkdtemp(join(tmpdir(), 'switchyard-redis-store-'));
    const cachePath = join(dir, 'cache.json');
    const opts = { url: server.url, prefix: 'down', historyLimit: 10, cachePath };
    const store = await RedisStore.open(opts);
    // after hooks run in the order they were added: the store (which writes its cache) first
    t.after(() => store.close());
    t.after(() => rm(dir, { recursive: true, force: true, maxRetries: 5 }));
    const connection: boolean[] = [];
    store.on('connection', (up) => connection.push(up));
    const first = makeState('shop', 1);
    await store.compareAndSet(first, null);

    await server.kill();
    await until(t, 'connected to turn false', () => !store.connected);
    assert.deepEqual(connection, [false]);
    // never sent (the connection is known down): a plain 503, at once
    const started = Date.now();
    await assert.rejects(store.compareAndSet(makeState('shop', 2), 1), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'STORE_UNAVAILABLE');
      assert.ok(err.cause, 'the redis error is kept as the cause');
      return true;
    });
    assert.ok(Date.now() - started <= 2_500, `rejected after ${Date.now() - started} ms`);

    // getMany answers from memory (and so a new store answers from the disk cache) while redis is down
    assert.deepEqual((await store.getMany(['shop'])).get('shop'), first);
    await until(t, 'the cache file', async () => JSON.parse(await readFile(cachePath, 'utf8').catch(() => '{}')).states?.shop?.revision === 1);
    const restarted = await RedisStore.open({ ...opts, commandTimeout: 300 });
    t.after(() => restarted.close());
    assert.equal(restarted.connected, false);
    assert.deepEqual((await restarted.getMany(['shop'])).get('shop'), first);
    await assert.rejects(restarted.get('shop'), { code: 'STORE_UNAVAILABLE' });

    // back, empty: the store reconnects by itself, and the app is absent until someone re-seeds it
    await server.restart();
    await until(t, 'both stores to reconnect', () => store.connected && restarted.connected, { timeout: 3_000 });
    assert.deepEqual(connection, [false, true]);
    assert.equal(await store.get('shop'), null);
    assert.equal((await store.compareAndSet(first, null)).ok, true);
    assert.equal((await store.compareAndSet(makeState('shop', 2), 1)).ok, true);
  });

  it('getMany never answers an older revision than the newest this store (or its disk cache) has seen', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'switchyard-redis-store-'));
    const prefix = uniquePrefix();
    const cachePath = join(dir, 'cache.json');
    const store = await open(t, { prefix, cachePath });
    t.after(() => rm(dir, { recursive: true, force: true, maxRetries: 5 }));
    await store.compareAndSet(makeState('shop', 1), null);
    const second = makeState('shop', 2, { blue: 0, green: 10_000 });
    await store.compareAndSet(second, 1);
    await store.close();
    // a failover lost revision 2
    const admin = redisClient(redis.url);
    t.after(() => admin.disconnect());
    await admin.set(redisKeys(prefix).state('shop'), JSON.stringify(makeState('shop', 1)));
    const restarted = await open(t, { prefix, cachePath });
    assert.deepEqual((await restarted.getMany(['shop'])).get('shop'), second);
    assert.equal((await restarted.get('shop'))?.revision, 1, 'get answers what redis holds');
  });

  it('a write cut off by redis stopping never hangs past twice the command timeout, is answered outcome-unknown (not 503), and never lands later', async (t) => {
    const server = await startRedis();
    t.after(() => server.cleanup());
    const store = await RedisStore.open({ url: server.url, prefix: 'hang', historyLimit: 10, commandTimeout: 500 });
    t.after(() => store.close());
    await store.compareAndSet(makeState('shop', 1), null);
    const admin = redisClient(server.url);
    t.after(() => admin.disconnect());
    // scripts redis has run (or refused to): the late write's turn shows here
    const scripts = async (): Promise<number> => [...(await admin.info('commandstats')).matchAll(/^cmdstat_eval(?:sha)?:calls=(\d+),.*?failed_calls=(\d+)/gm)].reduce((n, m) => n + Number(m[1]) + Number(m[2]), 0);
    const scriptsBefore = await scripts();
    // the server stops answering but keeps the connection open: only the command timeout ends the wait
    await admin.call('CLIENT', 'PAUSE', '3000', 'ALL');
    const started = Date.now();
    // nothing answers, not even a read on a fresh connection: whether it landed cannot be known yet
    await assert.rejects(store.compareAndSet(makeState('shop', 2), 1), { code: 'WRITE_OUTCOME_UNKNOWN' });
    assert.ok(Date.now() - started < 1_500, `rejected after ${Date.now() - started} ms`);
    // the script still sat in redis's queue: once the pause ends it runs, past its deadline, and writes nothing
    await admin.call('CLIENT', 'UNPAUSE');
    await until(t, 'redis to run the late script', async () => (await scripts()) > scriptsBefore);
    assert.equal((await store.get('shop'))?.revision, 1, 'that write never lands');
    assert.equal(await admin.llen(redisKeys('hang').history('shop')), 1);
  });
});

describe('redis connections', () => {
  const PASSWORD = 'fleet-secret-0123';

  it('authenticates with the password option, or one in the URL; a wrong one leaves writes at 503', async (t) => {
    const server = await startRedis({ args: ['--requirepass', PASSWORD] });
    t.after(() => server.cleanup());
    const viaOption = await RedisStore.open({ url: server.url, password: PASSWORD, prefix: 'auth', historyLimit: 10 });
    t.after(() => viaOption.close());
    assert.equal(viaOption.connected, true);
    assert.equal((await viaOption.compareAndSet(makeState('shop', 1), null)).ok, true);

    const viaUrl = await RedisStore.open({ url: `redis://:${PASSWORD}@127.0.0.1:${server.port}/0`, prefix: 'auth', historyLimit: 10 });
    t.after(() => viaUrl.close());
    assert.equal((await viaUrl.get('shop'))?.revision, 1);

    const wrong = await RedisStore.open({ url: server.url, password: 'not-the-password', prefix: 'auth', historyLimit: 10, commandTimeout: 300 });
    t.after(() => wrong.close());
    assert.equal(wrong.connected, false);
    await assert.rejects(wrong.compareAndSet(makeState('shop', 2), 1), { code: 'STORE_UNAVAILABLE' });
  });

  it('finds the master through Sentinel (sentinels + name)', async (t) => {
    const master = await startRedis({ args: ['--requirepass', PASSWORD] });
    t.after(() => master.cleanup());
    const sentinel = await startRedis({ sentinelOf: { name: 'sy-master', port: master.port, password: PASSWORD } });
    t.after(() => sentinel.cleanup());
    const store = await RedisStore.open({ url: 'redis://ignored', password: PASSWORD, sentinels: [{ host: '127.0.0.1', port: sentinel.port }], name: 'sy-master', prefix: 'sentinel', historyLimit: 10 });
    t.after(() => store.close());
    assert.equal(store.connected, true);
    const first = makeState('shop', 1);
    assert.deepEqual(await store.compareAndSet(first, null), { ok: true, state: first });
    const direct = redisClient({ port: master.port, password: PASSWORD });
    t.after(() => direct.disconnect());
    assert.deepEqual(JSON.parse((await direct.get(redisKeys('sentinel').state('shop')))!), first);
  });

  it("the write deadline is on redis's clock, a quarter of the command timeout (and the offset's uncertainty) before the 503", async (t) => {
    const client = redisClient(redis.url);
    t.after(() => client.disconnect());
    const clock = await readRedisClock(client, 500);
    assert.ok(clock !== null && Math.abs(clock.offset) < 1_000 && clock.rtt >= 0, JSON.stringify(clock));
    // a Redis clock 10 s ahead of ours, read in 4 ms: 2 000 ms timeout → 1 500 ms, minus the 4 ms
    assert.equal(writeDeadline({ offset: 10_000, rtt: 4 }, 2_000, 1_000_000), 1_000_000 + 10_000 + 1_500 - 4);
  });

  it('maps URLs to fail-fast ioredis options: rediss is TLS, the path is the db, the option password wins', () => {
    const plain = redisOptions({ url: 'redis://u%40x:p%2Fw@cache.internal:6380/3', commandTimeout: 1500 });
    assert.equal(plain.host, 'cache.internal');
    assert.equal(plain.port, 6380);
    assert.equal(plain.db, 3);
    assert.equal(plain.username, 'u@x');
    assert.equal(plain.password, 'p/w');
    assert.equal(plain.tls, undefined);
    assert.equal(plain.enableOfflineQueue, false);
    assert.equal(plain.commandTimeout, 1500);
    assert.equal(plain.maxRetriesPerRequest, 0);
    const retry = plain.retryStrategy as (times: number) => number;
    assert.ok([1, 2, 5, 50, 1000].every((n) => retry(n) > 0 && retry(n) <= 1000), 'keeps reconnecting, at most a second apart');

    const tls = redisOptions({ url: 'rediss://cache.internal', password: 'from-env' });
    assert.deepEqual(tls.tls, { servername: 'cache.internal' });
    assert.equal(tls.port, 6379);
    assert.equal(tls.db, 0);
    assert.equal(tls.password, 'from-env');
    assert.equal(redisOptions({ url: 'redis://:in-url@h', password: 'option' }).password, 'option');

    const sentinel = redisOptions({ url: 'rediss://ignored/2', sentinels: [{ host: 's1', port: 26379 }], name: 'main' });
    assert.deepEqual(sentinel.sentinels, [{ host: 's1', port: 26379 }]);
    assert.equal(sentinel.name, 'main');
    assert.equal(sentinel.db, 2);
    assert.equal(sentinel.enableTLSForSentinelMode, true);
    assert.throws(() => redisOptions({ url: 'redis://x', sentinels: [{ host: 's1', port: 26379 }] }), /name/);
  });
});
