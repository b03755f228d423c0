import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it, type TestContext } from 'node:test';
import pino from 'pino';
import { parseConfig } from '../../src/config/load.ts';
import { Controller } from '../../src/control/controller.ts';
import type { SwitchyardError } from '../../src/errors.ts';
import { FileStore } from '../../src/state/file-store.ts';
import { RedisStore } from '../../src/state/redis-store.ts';
import { redisKeys } from '../../src/state/redis-connect.ts';
import type { RoutingState, StateStore } from '../../src/state/types.ts';
import { startProxy, twoPools, type TestProxy } from '../helpers/proxy.ts';
import { redisClient, startRedis, type RedisServer } from '../helpers/redis-server.ts';
import { makeState } from '../helpers/store-contract.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';
import { until } from '../helpers/wait.ts';

// Issue 13, state integrity: every answer of the admin API about routing state is true, on both
// stores, under bad pool names, a bad stored state, concurrent writers and writes that change nothing.

let blue: Upstream;
let green: Upstream;
let redis: RedisServer;
let prefixes = 0;

before(async () => {
  [blue, green, redis] = await Promise.all([startUpstream('blue'), startUpstream('green'), startRedis()]);
});
after(async () => {
  await Promise.all([blue.close(), green.close(), redis.cleanup()]);
});

type Kind = 'file' | 'redis';

/** The log lines a proxy writes, parsed (audit lines among them). */
function logSink(): { logger: pino.Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n')) if (line !== '') lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  return { logger: pino({ level: 'info' }, stream), lines };
}

interface Setup {
  kind: Kind;
  /** directory of the file store (or the redis cache) */
  dir: string;
  prefix: string;
}

async function setup(t: TestContext, kind: Kind): Promise<Setup> {
  const dir = await mkdtemp(join(tmpdir(), 'switchyard-integrity-'));
  t.after(() => rm(dir, { recursive: true, force: true, maxRetries: 5 }));
  return { kind, dir, prefix: `integrity-${process.pid}-${++prefixes}` };
}

/** A proxy with apps `shop` and `blog` on the setup's store; a restart is another call on the same setup. */
async function start(t: TestContext, s: Setup, logger?: pino.Logger): Promise<TestProxy> {
  const store = s.kind === 'file' ? { kind: 'file', path: join(s.dir, 'state.json') } : { kind: 'redis', url: redis.url, prefix: s.prefix, cachePath: join(s.dir, 'cache.json') };
  const apps = [twoPools(blue.url, green.url, { hosts: ['shop.test'] }), { ...twoPools(blue.url, green.url, { hosts: ['blog.test'] }), name: 'blog' }];
  const p = await startProxy({ apps, store }, { dir: s.dir, ...(logger === undefined ? {} : { logger }) });
  t.after(() => p.close());
  return p;
}

/** Stores `raw` as shop's state behind Switchyard's back, as a hand edit or an older version would. */
async function plant(s: Setup, raw: unknown): Promise<void> {
  if (s.kind === 'file') {
    const path = join(s.dir, 'state.json');
    const doc = JSON.parse(await readFile(path, 'utf8'));
    doc.apps.shop.state = raw;
    await writeFile(path, JSON.stringify(doc));
    return;
  }
  const client = redisClient(redis.url);
  try {
    await client.set(redisKeys(s.prefix).state('shop'), JSON.stringify(raw));
  } finally {
    client.disconnect();
  }
}

const HOSTILE = ['constructor', '__proto__', 'toString', 'hasOwnProperty'];

for (const kind of ['file', 'redis'] as const) {
  describe(`state integrity on the ${kind} store`, () => {
    it('a switch to an inherited property name is a 404 naming the pools, and writes, rollback and restart still work', async (t) => {
      const s = await setup(t, kind);
      let p = await start(t, s);
      assert.equal((await p.admin('POST', '/v1/apps/shop/switch', { to: 'green' })).status, 200);
      for (const to of HOSTILE) {
        const r = await p.admin('POST', '/v1/apps/shop/switch', { to });
        assert.equal(r.status, 404, `${to}: ${JSON.stringify(r.body)}`);
        assert.equal(r.body.error.code, 'UNKNOWN_POOL');
        assert.deepEqual(r.body.error.details, [{ path: 'to', message: 'unknown pool (pools: blue, green)' }]);
      }
      const now = await p.admin('GET', '/v1/apps/shop');
      assert.equal(now.body.revision, 2);
      assert.deepEqual(now.body.weights, { blue: 0, green: 100 });
      assert.equal((await p.admin('GET', '/v1/apps/shop/history')).body.entries.length, 2);
      // nothing poisoned: a write with If-Match, a rollback and a restart all work
      assert.equal((await p.admin('PUT', '/v1/apps/shop/weights', { weights: { blue: 50, green: 50 } }, { 'if-match': '"2"' })).status, 200);
      const back = await p.admin('POST', '/v1/apps/shop/rollback', {});
      assert.equal(back.status, 200);
      assert.deepEqual(back.body.weights, { blue: 0, green: 100 });
      await p.close();
      p = await start(t, s);
      assert.equal((await p.admin('GET', '/v1/apps/shop')).body.revision, 4);
      assert.equal((await p.get('/', { host: 'shop.test' })).servedBy, 'green@2.0.0');
    });

    it('PUT weights with an inherited property name is a 400 naming the field, and writes nothing', async (t) => {
      const p = await start(t, await setup(t, kind));
      for (const pool of HOSTILE) {
        const text = `{"weights":{"blue":0,"green":0,${JSON.stringify(pool)}:100}}`;
        const r = await p.admin('PUT', '/v1/apps/shop/weights', JSON.parse(text));
        assert.equal(r.status, 400, `${pool}: ${JSON.stringify(r.body)}`);
        // every unknown-pool error names the pools there are, `__proto__` (refused by the body schema) too
        assert.ok(r.body.error.details.some((d: { path: string; message: string }) => d.path === `weights.${pool}` && d.message === 'unknown pool (pools: blue, green)'), `${pool}: ${JSON.stringify(r.body.error.details)}`);
      }
      assert.equal((await p.admin('GET', '/v1/apps/shop')).body.revision, 1);
    });

    it('drain, preview-header, whereis and app lookups with inherited property names are 404s naming what exists', async (t) => {
      const p = await start(t, await setup(t, kind));
      for (const name of HOSTILE) {
        const drain = await p.admin('GET', `/v1/apps/shop/pools/${name}/drain`);
        assert.equal(drain.status, 404, name);
        assert.match(drain.body.error.details[0].message, /pools: blue, green/);
        const preview = await p.admin('GET', `/v1/apps/shop/pools/${name}/preview-header`);
        assert.equal(preview.status, 404, name);
        assert.match(preview.body.error.details[0].message, /pools: blue, green/);
        for (const path of [`/v1/apps/${name}`, `/v1/apps/${name}/whereis?key=k`, `/v1/apps/${name}/history`]) {
          const r = await p.admin('GET', path);
          assert.equal(r.status, 404, path);
          assert.equal(r.body.error.code, 'UNKNOWN_APP', path);
        }
      }
    });

    it('10 concurrent writers without If-Match all win, each answered with what it wrote', async (t) => {
      const p = await start(t, await setup(t, kind));
      const revisions = new Set<number>();
      const answers: Awaited<ReturnType<TestProxy['admin']>>[] = [];
      // three rounds of ten, so the races are not down to luck
      for (let round = 0; round < 3; round++) {
        const writes = Array.from({ length: 10 }, (_, i) => ({ blue: 90 - i - 10 * round, green: 10 + i + 10 * round }));
        const got = await Promise.all(writes.map((weights) => p.admin('PUT', '/v1/apps/shop/weights', { weights, reason: `writer ${weights.green}` })));
        got.forEach((r, i) => {
          assert.equal(r.status, 200, JSON.stringify(r.body));
          assert.deepEqual(r.body.weights, writes[i]);
          assert.equal(r.body.reason, `writer ${writes[i]!.green}`);
          assert.equal(r.headers.etag, `"${r.body.revision}"`);
          revisions.add(r.body.revision);
        });
        answers.push(...got);
      }
      assert.deepEqual([...revisions].sort((a, b) => a - b), Array.from({ length: 30 }, (_, i) => i + 2));
      const history = (await p.admin('GET', '/v1/apps/shop/history')).body.entries as { revision: number; weights: Record<string, number> }[];
      // each answer is what the history holds for that revision
      for (const r of answers) assert.deepEqual(history.find((e) => e.revision === r.body.revision)?.weights, r.body.weights);
    });

    it('a write that changes nothing answers 200 with the current state and writes nothing but a no-op audit line', async (t) => {
      const { logger, lines } = logSink();
      const p = await start(t, await setup(t, kind), logger);
      const first = await p.admin('POST', '/v1/apps/shop/switch', { to: 'green' });
      assert.equal(first.body.revision, 2);
      const calls: [string, string, unknown][] = [
        ['POST', '/v1/apps/shop/switch', { to: 'green', reason: 'again' }],
        ['PUT', '/v1/apps/shop/weights', { weights: { green: 100 } }],
        ['PUT', '/v1/apps/shop/weights', { weights: { blue: 0, green: 100 } }],
      ];
      for (const [method, path, body] of calls) {
        const r = await p.admin(method, path, body, { 'if-match': '"2"' });
        assert.equal(r.status, 200, JSON.stringify(r.body));
        assert.equal(r.body.revision, 2);
        assert.equal(r.headers.etag, '"2"');
        assert.deepEqual(r.body, { ...first.body, instances: r.body.instances });
      }
      assert.deepEqual((await p.admin('GET', '/v1/apps/shop/history')).body.entries.map((e: { revision: number }) => e.revision), [2, 1]);
      const audits = lines.filter((l) => l.audit === true && l.app === 'shop');
      assert.deepEqual(audits.map((l) => [l.action, l.noop === true]), [['switch', false], ['switch', true], ['weights', true], ['weights', true]]);
      // a stale If-Match is still a 412, change or not
      assert.equal((await p.admin('POST', '/v1/apps/shop/switch', { to: 'green' }, { 'if-match': '"1"' })).status, 412);
    });

    it('a stored state that cannot be loaded is named in the log and /readyz, the other app routes, and a write repairs it', async (t) => {
      const s = await setup(t, kind);
      let p = await start(t, s);
      await p.admin('POST', '/v1/apps/shop/switch', { to: 'green' });
      await p.admin('POST', '/v1/apps/blog/switch', { to: 'green' });
      await p.close();
      await plant(s, { ...makeState('shop', 2), weights: null });

      const { logger, lines } = logSink();
      p = await start(t, s, logger);
      // the controller's line (on Redis the store's poll may name the bad value first)
      const logged = lines.find((l) => l.level === 50 && l.app === 'shop' && String(l.msg).startsWith('app shop:'));
      assert.match(String(logged?.msg), /app "shop" is not valid: weights: /);
      const ready = await p.admin('GET', '/readyz');
      assert.equal(ready.status, 200, 'the other app routes, so the instance is ready');
      assert.match(ready.body.details.brokenStates.shop, /weights: /);
      assert.deepEqual(Object.keys(ready.body.details.brokenStates), ['shop']);
      // blog routes on its stored state; shop on its config's initial weights (blue, the first pool), and says so
      assert.equal((await p.get('/', { host: 'blog.test' })).servedBy, 'green@2.0.0');
      assert.equal((await p.get('/', { host: 'shop.test' })).servedBy, 'blue@1.0.0');
      const shop = await p.admin('GET', '/v1/apps/shop');
      assert.equal(shop.body.revision, 2);
      assert.match(shop.body.reason, /cannot be loaded.*initial weights until a write replaces it/);

      // a write, even one to the weights routed on meanwhile, replaces the bad state
      const repaired = await p.admin('POST', '/v1/apps/shop/switch', { to: 'blue', reason: 'repair' }, { 'if-match': '"2"' });
      assert.equal(repaired.status, 200, JSON.stringify(repaired.body));
      assert.equal(repaired.body.revision, 3);
      assert.deepEqual((await p.admin('GET', '/readyz')).body.details.brokenStates, {});
      await p.close();
      p = await start(t, s);
      assert.deepEqual((await p.admin('GET', '/readyz')).body.details.brokenStates, {});
      assert.equal((await p.admin('GET', '/v1/apps/shop')).body.revision, 3);
      assert.equal((await p.get('/', { host: 'shop.test' })).servedBy, 'blue@1.0.0');
    });

    it('a stored state with every weight 0 (what `switch {"to":"constructor"}` used to write) does not stop a restart, and a rollback repairs it', async (t) => {
      const s = await setup(t, kind);
      let p = await start(t, s);
      await p.admin('POST', '/v1/apps/shop/switch', { to: 'green' });
      await p.close();
      await plant(s, { ...makeState('shop', 3), weights: { blue: 0, green: 0 }, action: 'switch' });
      p = await start(t, s);
      assert.match((await p.admin('GET', '/readyz')).body.details.brokenStates.shop, /weights: must sum to 10000 bp, got 0/);
      assert.equal((await p.get('/', { host: 'blog.test' })).status, 200);
      const back = await p.admin('POST', '/v1/apps/shop/rollback', { reason: 'undo the bad switch' });
      assert.equal(back.status, 200, JSON.stringify(back.body));
      assert.deepEqual([back.body.revision, back.body.weights], [4, { blue: 0, green: 100 }]);
      assert.deepEqual((await p.admin('GET', '/readyz')).body.details.brokenStates, {});
      assert.equal((await p.get('/', { host: 'shop.test' })).servedBy, 'green@2.0.0');
    });
  });
}

describe('a write without If-Match that keeps losing', () => {
  it('gives up at its deadline with 409 WRITE_CONFLICT naming the attempts, having written nothing of its own', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'switchyard-integrity-'));
    t.after(() => rm(dir, { recursive: true, force: true, maxRetries: 5 }));
    const config = parseConfig({ admin: { tokens: [{ name: 'ci', token: 'ci-token-0123456789abcdef' }] }, store: { kind: 'file', path: join(dir, 'state.json') }, apps: [twoPools(blue.url, green.url)] });
    const inner = await FileStore.open({ path: join(dir, 'state.json'), historyLimit: 1000 });
    t.after(() => inner.close());
    // another writer that always gets there first: before each of ours, it writes a revision of its own
    let rival = 0;
    const store: StateStore = {
      kind: inner.kind,
      get: (app) => inner.get(app),
      getMany: (apps, onInvalid) => inner.getMany(apps, onInvalid),
      listApps: () => inner.listApps(),
      history: (app, limit) => inner.history(app, limit),
      watch: (l) => inner.watch(l),
      close: () => inner.close(),
      compareAndSet: async (next: RoutingState, expected: number | null) => {
        const cur = await inner.get(next.app);
        if (cur !== null && expected !== null) {
          rival++;
          await inner.compareAndSet(makeState(next.app, cur.revision + 1, rival % 2 ? { blue: 0, green: 10_000 } : { blue: 10_000, green: 0 }), cur.revision);
        }
        return inner.compareAndSet(next, expected);
      },
    };
    const controller = await Controller.start({ config, store, logger: pino({ level: 'silent' }), writeDeadlineMs: 300 });
    t.after(() => controller.close());
    const started = performance.now();
    await assert.rejects(controller.setWeights('shop', { blue: 5_000, green: 5_000 }, { by: 'ci' }), (err: SwitchyardError) => {
      assert.equal(err.code, 'WRITE_CONFLICT');
      assert.equal(err.status, 409);
      assert.match(err.message, /kept getting there first: gave up after \d+ attempts in 300 ms/);
      return true;
    });
    const ms = performance.now() - started;
    assert.ok(ms >= 300 && ms < 2_000, `gave up after ${ms} ms`);
    assert.ok(rival >= 2, `retried (${rival} attempts)`);
    const history = await inner.history('shop', 1000);
    assert.ok(history.every((e) => e.weights.blue !== 5_000), 'none of its own writes landed');
    assert.equal(controller.state('shop').revision, history[0]?.revision, 'it routes on the winner');
  });
});

describe('a state that turns invalid in redis while instances run', () => {
  it('is listed in brokenStates and logged once by every instance, which keep routing on the last good state, and a write repairs it without a restart', async (t) => {
    const s1 = await setup(t, 'redis');
    const s2 = { ...(await setup(t, 'redis')), prefix: s1.prefix };
    const { logger, lines } = logSink();
    const a = await start(t, s1, logger);
    const b = await start(t, s2);
    assert.equal((await a.admin('POST', '/v1/apps/shop/switch', { to: 'green' })).status, 200);
    const broken = async (p: TestProxy): Promise<string | undefined> => (await p.admin('GET', '/readyz')).body.details.brokenStates.shop;

    // a hand edit (or a buggy tool) stores weights that sum to 0, as revision 3
    await plant(s1, { ...makeState('shop', 3), weights: { blue: 0, green: 0 } });
    for (const p of [a, b]) await until(t, 'brokenStates to list shop', async () => /weights: must sum to 10000 bp, got 0/.test((await broken(p)) ?? ''));
    // three polls more, run here rather than waited for: still one line
    const store = a.sy.controller.store;
    assert.ok(store instanceof RedisStore);
    for (let i = 0; i < 3; i++) await store.sync();
    assert.equal(lines.filter((l) => l.level === 50 && l.app === 'shop').length, 1, 'logged once');
    assert.match(String(lines.find((l) => l.level === 50 && l.app === 'shop')?.msg), /routing on the last good state \(revision 2\)/);
    for (const p of [a, b]) {
      assert.equal((await p.get('/', { host: 'shop.test' })).servedBy, 'green@2.0.0');
      assert.equal((await p.admin('GET', '/v1/apps/shop')).body.revision, 2);
    }
    // a write repairs it: above both the bad revision and the last good one, and every instance takes it
    const weights = await b.admin('PUT', '/v1/apps/shop/weights', { weights: { blue: 30, green: 70 }, reason: 'repair' });
    assert.equal(weights.status, 200, JSON.stringify(weights.body));
    assert.equal(weights.body.revision, 4);
    for (const p of [a, b]) await until(t, 'the repair everywhere', async () => (await broken(p)) === undefined && (await p.admin('GET', '/v1/apps/shop')).body.revision === 4);

    // a value with no readable revision (counted as 0): the repair still goes above the last good revision
    await plant(s1, 'not a routing state');
    for (const p of [a, b]) await until(t, 'brokenStates to list shop again', async () => (await broken(p)) !== undefined);
    const back = await a.admin('POST', '/v1/apps/shop/switch', { to: 'blue', reason: 'repair again' });
    assert.equal(back.status, 200, JSON.stringify(back.body));
    assert.equal(back.body.revision, 5);
    for (const p of [a, b]) {
      await until(t, 'the second repair everywhere', async () => (await broken(p)) === undefined && (await p.admin('GET', '/v1/apps/shop')).body.revision === 5);
      assert.equal((await p.get('/', { host: 'shop.test' })).servedBy, 'blue@1.0.0');
    }

    // not even JSON (counted as revision 0 by the compare-and-set script too)
    const client = redisClient(redis.url);
    t.after(() => client.disconnect());
    await client.set(redisKeys(s1.prefix).state('shop'), '{"revision": 9, "weights"');
    await until(t, 'brokenStates to list the unparsable state', async () => (await broken(a)) !== undefined);
    const third = await a.admin('PUT', '/v1/apps/shop/weights', { weights: { blue: 60, green: 40 } });
    assert.equal(third.status, 200, JSON.stringify(third.body));
    assert.equal(third.body.revision, 6);
    await until(t, 'the third repair on B', async () => (await broken(b)) === undefined && (await b.admin('GET', '/v1/apps/shop')).body.revision === 6);
  });
});
