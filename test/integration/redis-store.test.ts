import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { RedisStore, redisKeys, type RedisStoreOptions } from '../../src/state/redis-store.ts';
import type { RoutingState } from '../../src/state/types.ts';
import { startRedis, type RedisServer } from '../helpers/redis-server.ts';
import { makeState, storeContract } from '../helpers/store-contract.ts';

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

async function eventually(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 5_000): Promise<number> {
  const started = Date.now();
  while (!(await check())) {
    if (Date.now() - started > timeoutMs) assert.fail(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(5);
  }
  return Date.now() - started;
}

storeContract('redis store', async ({ historyLimit }) => {
  const prefix = uniquePrefix();
  const dir = await mkdtemp(join(tmpdir(), 'switchyard-redis-store-'));
  const opts = { url: redis.url, prefix, historyLimit, cachePath: join(dir, 'cache.json') };
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
      await rm(dir, { recursive: true, force: true });
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
    await eventually(() => seen.length >= 2, 'two revisions on b', 1_000);
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
    const admin = new Redis(redis.url);
    t.after(() => admin.disconnect());
    assert.ok((await admin.client('KILL', 'TYPE', 'pubsub')) as number >= 1);
    await writer.compareAndSet(makeState('shop', 2), 1);
    await eventually(() => seen.includes(2), 'revision 2 on the reader', 1_500);
  });

  it('a change whose message was lost is caught by the 1 s poll', async (t) => {
    const prefix = uniquePrefix();
    const reader = await open(t, { prefix });
    const admin = new Redis(redis.url);
    t.after(() => admin.disconnect());
    const keys = redisKeys(prefix);
    await admin.set(keys.state('shop'), JSON.stringify(makeState('shop', 1)));
    assert.equal((await reader.getMany(['shop'])).get('shop')?.revision, 1);
    const seen: number[] = [];
    reader.watch((s) => seen.push(s.revision));
    // written behind the store's back: no PUBLISH, as if the message had been lost
    await admin.set(keys.state('shop'), JSON.stringify(makeState('shop', 2)));
    const ms = await eventually(() => seen.includes(2), 'the poll to deliver revision 2', 1_500);
    assert.ok(ms <= 1_500, `took ${ms} ms`);
  });

  it('sync reports every known app, with null for one Redis does not hold', async (t) => {
    const store = await open(t);
    await store.compareAndSet(makeState('shop', 1), null);
    await store.getMany(['shop', 'blog']);
    const reports: Map<string, RoutingState | null>[] = [];
    store.on('sync', (remote) => reports.push(new Map(remote)));
    await store.sync();
    assert.equal(reports.length, 1);
    assert.equal(reports[0]!.get('shop')?.revision, 1);
    assert.equal(reports[0]!.get('blog'), null);
  });
});

describe('redis store while redis is down', () => {
  it('writes reject with STORE_UNAVAILABLE within 2.5 s, and work again once redis is back', async (t) => {
    const server = await startRedis();
    t.after(() => server.cleanup());
    const dir = await mkdtemp(join(tmpdir(), 'switchyard-redis-store-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const cachePath = join(dir, 'cache.json');
    const opts = { url: server.url, prefix: 'down', historyLimit: 10, cachePath };
    const store = await RedisStore.open(opts);
    t.after(() => store.close());
    const connection: boolean[] = [];
    store.on('connection', (up) => connection.push(up));
    const first = makeState('shop', 1);
    await store.compareAndSet(first, null);

    await server.kill();
    const started = Date.now();
    await assert.rejects(store.compareAndSet(makeState('shop', 2), 1), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'STORE_UNAVAILABLE');
      assert.ok(err.cause, 'the redis error is kept as the cause');
      return true;
    });
    assert.ok(Date.now() - started <= 2_500, `rejected after ${Date.now() - started} ms`);
    await eventually(() => !store.connected, 'connected to turn false');
    assert.deepEqual(connection, [false]);

    // getMany answers from memory (and so a new store answers from the disk cache) while redis is down
    assert.deepEqual((await store.getMany(['shop'])).get('shop'), first);
    await eventually(async () => JSON.parse(await readFile(cachePath, 'utf8').catch(() => '{}')).states?.shop?.revision === 1, 'the cache file');
    const restarted = await RedisStore.open({ ...opts, commandTimeout: 300 });
    t.after(() => restarted.close());
    assert.equal(restarted.connected, false);
    assert.deepEqual((await restarted.getMany(['shop'])).get('shop'), first);
    await assert.rejects(restarted.get('shop'), { code: 'STORE_UNAVAILABLE' });

    // back, empty: the store reconnects by itself, and the app is absent until someone re-seeds it
    await server.restart();
    await eventually(() => store.connected && restarted.connected, 'both stores to reconnect', 3_000);
    assert.deepEqual(connection, [false, true]);
    assert.equal(await store.get('shop'), null);
    assert.equal((await store.compareAndSet(first, null)).ok, true);
    assert.equal((await store.compareAndSet(makeState('shop', 2), 1)).ok, true);
  });

  it('a write cut off by redis stopping never hangs past the command timeout', async (t) => {
    const server = await startRedis();
    t.after(() => server.cleanup());
    const store = await RedisStore.open({ url: server.url, prefix: 'hang', historyLimit: 10, commandTimeout: 500 });
    t.after(() => store.close());
    await store.compareAndSet(makeState('shop', 1), null);
    const admin = new Redis(server.url);
    t.after(() => admin.disconnect());
    // the server stops answering but keeps the connection open: only the command timeout ends the wait
    await admin.call('CLIENT', 'PAUSE', '3000', 'ALL');
    const started = Date.now();
    await assert.rejects(store.compareAndSet(makeState('shop', 2), 1), { code: 'STORE_UNAVAILABLE' });
    assert.ok(Date.now() - started < 1_500, `rejected after ${Date.now() - started} ms`);
  });
});
