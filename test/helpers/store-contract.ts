import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import { historyEntryOf, type CasResult, type RoutingState, type StateStore } from '../../src/state/types.ts';
import type { Weights } from '../../src/config/weights.ts';
import type { InvalidStateError, PoolsOf } from '../../src/state/invariants.ts';
import { until } from './wait.ts';

export interface StoreFixture {
  store: StateStore;
  /** Opens a new store on the same data, as a restart would (every store must outlive its instance). The suite closes `store` first. */
  reopen: () => Promise<StateStore>;
  /** Closes every store this fixture handed out (close must be idempotent) and deletes the data. */
  cleanup: () => Promise<void>;
  /**
   * Stores `raw` as the app's state behind the store's back (a hand edit, a bug of an older
   * version), keeping its history, and returns a store that reads it (the same one or, for a
   * store that loads at open, a reopened one).
   */
  plant: (app: string, raw: unknown) => Promise<StateStore>;
}

/**
 * Each call must give an empty store, isolated from every other call's; `pools` is the store's
 * `pools` option (the pools each app may weigh).
 */
export type StoreFactory = (opts: { historyLimit: number; pools: PoolsOf }) => Promise<StoreFixture>;

/** The pools the contract suite's apps have. */
const POOLS: PoolsOf = (app) => (app === 'shop' || app === 'blog' ? ['blue', 'green'] : undefined);

const BLUE: Weights = { blue: 10_000, green: 0 };
const GREEN: Weights = { blue: 0, green: 10_000 };
const SPLIT: Weights = { blue: 9_000, green: 1_000 };

/** A valid state for tests; the clock is derived from the revision so states are reproducible. */
export function makeState(app: string, revision: number, weights: Weights = BLUE, extra: Partial<RoutingState> = {}): RoutingState {
  return {
    app,
    revision,
    weights,
    salt: `salt-${app}`,
    drainingSince: {},
    action: revision === 1 ? 'initial' : 'weights',
    updatedAt: new Date(Date.UTC(2025, 0, 1, 0, 0, revision)).toISOString(),
    updatedBy: 'test',
    reason: null,
    ...extra,
  };
}

/** Writes revisions 1..count for `app` (alternating blue / green) and returns them in order. */
async function seed(store: StateStore, app: string, count: number): Promise<RoutingState[]> {
  const written: RoutingState[] = [];
  for (let rev = 1; rev <= count; rev++) {
    const state = makeState(app, rev, rev % 2 === 1 ? BLUE : GREEN, { reason: `step ${rev}` });
    assert.deepEqual(await store.compareAndSet(state, rev === 1 ? null : rev - 1), { ok: true, state });
    written.push(state);
  }
  return written;
}

/**
 * The behaviour every StateStore must have, registered as one `describe` block. The file store
 * and the Redis store both run it, so nothing here may assume a particular backend.
 */
export function storeContract(name: string, factory: StoreFactory): void {
  describe(`${name} (StateStore contract)`, () => {
    /** A fresh store for one test, cleaned up when the test ends. */
    async function fresh(t: TestContext, historyLimit = 50): Promise<StoreFixture> {
      const fixture = await factory({ historyLimit, pools: POOLS });
      t.after(() => fixture.cleanup());
      return fixture;
    }

    it('get of an unknown app is null and its history is empty', async (t) => {
      const { store } = await fresh(t);
      assert.equal(await store.get('shop'), null);
      assert.deepEqual(await store.history('shop', 10), []);
    });

    it('compareAndSet against null creates the state and its first history entry', async (t) => {
      const { store } = await fresh(t);
      const state = makeState('shop', 1);
      assert.deepEqual(await store.compareAndSet(state, null), { ok: true, state });
      assert.deepEqual(await store.get('shop'), state);
      assert.deepEqual(await store.history('shop', 10), [historyEntryOf(state)]);
    });

    it('compareAndSet with the current revision advances it and appends to history', async (t) => {
      const { store } = await fresh(t);
      const [first] = await seed(store, 'shop', 1);
      const next = makeState('shop', 2, SPLIT, { action: 'weights', updatedBy: 'ci', reason: 'canary' });
      assert.deepEqual(await store.compareAndSet(next, 1), { ok: true, state: next });
      assert.deepEqual(await store.get('shop'), next);
      assert.deepEqual(await store.history('shop', 10), [historyEntryOf(next), historyEntryOf(first!)]);
    });

    it('compareAndSet with a stale revision answers the current state and writes nothing', async (t) => {
      const { store } = await fresh(t);
      const written = await seed(store, 'shop', 2);
      const current = written[1]!;
      const stale = makeState('shop', 2, SPLIT, { reason: 'stale' });
      assert.deepEqual(await store.compareAndSet(stale, 1), { ok: false, current });
      assert.deepEqual(await store.get('shop'), current);
      assert.deepEqual(await store.history('shop', 10), written.map(historyEntryOf).reverse());
    });

    it('compareAndSet with an expected revision on an unknown app answers current: null', async (t) => {
      const { store } = await fresh(t);
      assert.deepEqual(await store.compareAndSet(makeState('shop', 4), 3), { ok: false, current: null });
      assert.equal(await store.get('shop'), null);
      assert.deepEqual(await store.history('shop', 10), []);
    });

    it('compareAndSet against null fails once a state exists', async (t) => {
      const { store } = await fresh(t);
      const [current] = await seed(store, 'shop', 1);
      assert.deepEqual(await store.compareAndSet(makeState('shop', 1, GREEN), null), { ok: false, current });
      assert.deepEqual(await store.get('shop'), current);
      assert.equal((await store.history('shop', 10)).length, 1);
    });

    it('compareAndSet against null accepts any revision >= 1 (re-seeding) and continues from it', async (t) => {
      const { store } = await fresh(t);
      const reseeded = makeState('shop', 7, GREEN, { action: 'reseed' });
      assert.deepEqual(await store.compareAndSet(reseeded, null), { ok: true, state: reseeded });
      const next = makeState('shop', 8, BLUE);
      assert.deepEqual(await store.compareAndSet(next, 7), { ok: true, state: next });
      assert.deepEqual((await store.history('shop', 10)).map((e) => e.revision), [8, 7]);
    });

    it('compareAndSet rejects a next.revision that is not expected + 1, and writes nothing', async (t) => {
      const { store } = await fresh(t);
      const [current] = await seed(store, 'shop', 1);
      await assert.rejects(store.compareAndSet(makeState('shop', 3), 1));
      await assert.rejects(store.compareAndSet(makeState('shop', 1), 1));
      assert.deepEqual(await store.get('shop'), current);
      assert.equal((await store.history('shop', 10)).length, 1);
    });

    it('the store keeps its own copy of a written state', async (t) => {
      const { store } = await fresh(t);
      const weights = { blue: 10_000, green: 0 };
      const state = makeState('shop', 1, weights);
      await store.compareAndSet(state, null);
      weights.blue = 0; // the caller reuses its object after the write
      assert.deepEqual((await store.get('shop'))?.weights, BLUE);
      assert.deepEqual((await store.history('shop', 1))[0]?.weights, BLUE);
    });

    it('20 concurrent compareAndSet with the same expected revision: exactly one wins', async (t) => {
      const { store } = await fresh(t);
      const [first] = await seed(store, 'shop', 1);
      const attempts = Array.from({ length: 20 }, (_, i) => makeState('shop', 2, SPLIT, { reason: `attempt ${i}`, updatedBy: `writer-${i}` }));
      const results = await Promise.all(attempts.map((s) => store.compareAndSet(s, 1)));
      const wins = results.filter((r): r is Extract<CasResult, { ok: true }> => r.ok);
      assert.equal(wins.length, 1);
      const winner = wins[0]!.state;
      for (const r of results) if (!r.ok) assert.deepEqual(r.current, winner);
      assert.deepEqual(await store.get('shop'), winner);
      assert.deepEqual(await store.history('shop', 50), [historyEntryOf(winner), historyEntryOf(first!)]);
    });

    it('concurrent compareAndSet whose history entries read the same (only the definitions differ): exactly one wins, every loser is told so with its state', async (t) => {
      const { store } = await fresh(t);
      await seed(store, 'shop', 1);
      // two instances adding different targets in the same millisecond: same revision, weights, action, actor, reason, time
      const attempts = Array.from({ length: 8 }, (_, i) => makeState('shop', 2, BLUE, { action: 'targets', changes: ['pools.green.targets'], definition: { name: 'shop', hosts: ['shop.test'], pools: { blue: { version: '1', targets: ['http://127.0.0.1:9001'] }, green: { version: '2', targets: [`http://127.0.0.1:${20_000 + i}`] } } } }));
      const results = await Promise.all(attempts.map((s) => store.compareAndSet(s, 1)));
      const wins = results.flatMap((r) => (r.ok ? [r.state] : []));
      assert.equal(wins.length, 1);
      for (const r of results) if (!r.ok) assert.deepEqual(r.current, wins[0]);
      assert.deepEqual(await store.get('shop'), wins[0]);
      assert.deepEqual((await store.history('shop', 1))[0], historyEntryOf(wins[0]!));
    });

    it('20 concurrent compareAndSet against null on a new app: exactly one creates it', async (t) => {
      const { store } = await fresh(t);
      const attempts = Array.from({ length: 20 }, (_, i) => makeState('shop', 1, BLUE, { salt: `salt-${i}` }));
      const results = await Promise.all(attempts.map((s) => store.compareAndSet(s, null)));
      assert.equal(results.filter((r) => r.ok).length, 1);
      const stored = await store.get('shop');
      for (const r of results) assert.deepEqual(r.ok ? r.state : r.current, stored);
      assert.equal((await store.history('shop', 50)).length, 1);
    });

    it('history is newest first, honours limit and is bounded by historyLimit', async (t) => {
      const { store } = await fresh(t, 3);
      const written = await seed(store, 'shop', 5);
      const newestFirst = written.map(historyEntryOf).reverse();
      assert.deepEqual(await store.history('shop', 100), newestFirst.slice(0, 3));
      assert.deepEqual(await store.history('shop', 2), newestFirst.slice(0, 2));
      assert.deepEqual(await store.history('shop', 1), newestFirst.slice(0, 1));
      // regression guard: a Redis LRANGE 0..limit-1 with limit 0 would return the whole list
      assert.deepEqual(await store.history('shop', 0), []);
    });

    it('getMany returns the stored apps and leaves missing ones out', async (t) => {
      const { store } = await fresh(t);
      const [shop] = await seed(store, 'shop', 1);
      const [blog] = await seed(store, 'blog', 1);
      const many = await store.getMany(['shop', 'blog', 'missing']);
      assert.deepEqual([...many.keys()].sort(), ['blog', 'shop']);
      assert.deepEqual(many.get('shop'), shop);
      assert.deepEqual(many.get('blog'), blog);
      assert.equal((await store.getMany([])).size, 0);
    });

    it('watch receives every written state and nothing after unsubscribe', async (t) => {
      const { store } = await fresh(t);
      const seen: RoutingState[] = [];
      const stopped: RoutingState[] = [];
      store.watch((s) => seen.push(s));
      const unsubscribe = store.watch((s) => stopped.push(s));
      const written = await seed(store, 'shop', 2);
      await until(t, 'two watch events', () => seen.length >= 2);
      assert.deepEqual(seen, written);
      assert.deepEqual(stopped, written);

      unsubscribe();
      const third = makeState('shop', 3, SPLIT);
      await store.compareAndSet(third, 2);
      // both listeners would hear the same event at the same time, so once one has it the other never will
      await until(t, 'the third watch event', () => seen.length >= 3);
      assert.deepEqual(seen, [...written, third]);
      assert.deepEqual(stopped, written);
    });

    it('a failed compareAndSet is not announced to watchers', async (t) => {
      const { store } = await fresh(t);
      const seen: number[] = [];
      store.watch((s) => seen.push(s.revision));
      await seed(store, 'shop', 2);
      assert.equal((await store.compareAndSet(makeState('shop', 1, GREEN), null)).ok, false);
      assert.equal((await store.compareAndSet(makeState('shop', 2, GREEN), 1)).ok, false);
      const third = makeState('shop', 3, SPLIT);
      await store.compareAndSet(third, 2);
      await until(t, 'three watch events', () => seen.length >= 3);
      assert.deepEqual(seen, [1, 2, 3]);
    });

    it('a throwing watch listener does not break writes or other listeners', async (t) => {
      const { store } = await fresh(t);
      const seen: number[] = [];
      store.watch(() => {
        throw new Error('listener bug');
      });
      store.watch((s) => seen.push(s.revision));
      await seed(store, 'shop', 2);
      await until(t, 'two watch events', () => seen.length >= 2);
      assert.deepEqual(seen, [1, 2]);
    });

    it('apps are independent', async (t) => {
      const { store } = await fresh(t);
      const shop = await seed(store, 'shop', 3);
      const [blog] = await seed(store, 'blog', 1);
      // shop's revision means nothing for blog
      assert.deepEqual(await store.compareAndSet(makeState('blog', 4), 3), { ok: false, current: blog });
      const blog2 = makeState('blog', 2, GREEN);
      assert.deepEqual(await store.compareAndSet(blog2, 1), { ok: true, state: blog2 });
      assert.deepEqual(await store.get('shop'), shop[2]);
      assert.deepEqual(await store.history('shop', 10), shop.map(historyEntryOf).reverse());
      assert.deepEqual(await store.history('blog', 10), [historyEntryOf(blog2), historyEntryOf(blog!)]);
    });

    it('close waits for a pending write, and later writes reject with STORE_UNAVAILABLE', async (t) => {
      const { store } = await fresh(t);
      let settled = false;
      const pending = store.compareAndSet(makeState('shop', 1), null).finally(() => {
        settled = true;
      });
      await store.close();
      assert.equal(settled, true);
      assert.equal((await pending).ok, true);
      await assert.rejects(store.compareAndSet(makeState('shop', 2), 1), { code: 'STORE_UNAVAILABLE' });
      await store.close(); // idempotent
    });

    it('state and history survive a reopen', async (t) => {
      const fixture = await fresh(t, 3);
      const written = await seed(fixture.store, 'shop', 4);
      const [blog] = await seed(fixture.store, 'blog', 1);
      await fixture.store.close();

      const reopened = await fixture.reopen();
      assert.deepEqual(await reopened.get('shop'), written[3]);
      assert.deepEqual(await reopened.get('blog'), blog);
      assert.deepEqual(await reopened.history('shop', 10), written.map(historyEntryOf).reverse().slice(0, 3));
      // the revision carries on where it was, and a stale writer still loses
      assert.deepEqual(await reopened.compareAndSet(makeState('shop', 4), 3), { ok: false, current: written[3] });
      const fifth = makeState('shop', 5, SPLIT);
      assert.deepEqual(await reopened.compareAndSet(fifth, 4), { ok: true, state: fifth });
      assert.deepEqual((await reopened.history('shop', 10)).map((e) => e.revision), [5, 4, 3]);
      // paged: `limit` entries from the `offset`-th newest
      assert.deepEqual((await reopened.history('shop', 2, 1)).map((e) => e.revision), [4, 3]);
      assert.deepEqual((await reopened.history('shop', 2, 3)).map((e) => e.revision), []);
    });

    it('compareAndSet refuses a state that breaks an invariant, writes nothing and tells no watcher', async (t) => {
      const { store } = await fresh(t);
      const seen: number[] = [];
      store.watch((s) => seen.push(s.revision));
      const [first] = await seed(store, 'shop', 1);
      const bad: [string, Weights][] = [
        // what `switch {"to":"constructor"}` used to store: every configured pool at 0
        ['every pool at 0', { blue: 0, green: 0 }],
        ['a sum over 10 000 bp', { blue: 10_000, green: 1 }],
        ['a fraction of a basis point', { blue: 9_999.5, green: 0.5 }],
        ['a pool the app does not have', { blue: 0, green: 0, constructor: 10_000 }],
        ['an inherited name as a pool', { blue: 0, green: 0, toString: 10_000 }],
        ['an own __proto__ key', JSON.parse('{"blue": 0, "green": 0, "__proto__": 10000}') as Weights],
      ];
      for (const [what, weights] of bad) {
        await assert.rejects(store.compareAndSet(makeState('shop', 2, weights), 1), (err: Error & { code?: string }) => {
          assert.equal(err.code, 'INVALID_STATE', `${what}: ${err.message}`);
          assert.match(err.message, /weights/, what);
          return true;
        }, what);
      }
      await assert.rejects(store.compareAndSet(makeState('shop', 1, { blue: 0, green: 0 }), null), { code: 'INVALID_STATE' });
      await assert.rejects(store.compareAndSet(makeState('new-app', 1, { blue: 5_000 }), null), { code: 'INVALID_STATE' });
      assert.deepEqual(await store.get('shop'), first);
      assert.deepEqual(await store.history('shop', 10), [historyEntryOf(first!)]);
      assert.equal(await store.get('new-app'), null);
      // a valid write still goes through, and is the only one a watcher hears of
      const next = makeState('shop', 2, SPLIT);
      assert.deepEqual(await store.compareAndSet(next, 1), { ok: true, state: next });
      await until(t, 'the valid write', () => seen.includes(2));
      assert.deepEqual(seen, [1, 2]);
    });

    it('a stored state that breaks an invariant is named and left out, and the other apps still load', async (t) => {
      const fixture = await fresh(t);
      await seed(fixture.store, 'shop', 3);
      const [blog] = await seed(fixture.store, 'blog', 1);
      const store = await fixture.plant('shop', { ...makeState('shop', 3), weights: null });
      const invalid: InvalidStateError[] = [];
      const many = await store.getMany(['shop', 'blog'], (err) => invalid.push(err));
      assert.deepEqual([...many.keys()], ['blog']);
      assert.deepEqual(many.get('blog'), blog);
      assert.equal(invalid.length, 1);
      assert.equal(invalid[0]?.app, 'shop');
      assert.equal(invalid[0]?.revision, 3);
      assert.match(invalid[0]!.message, /app "shop".*weights: /);
      await assert.rejects(store.get('shop'), (err: Error & { code?: string }) => err.code === 'INVALID_STATE' && /weights/.test(err.message));
      assert.deepEqual(await store.get('blog'), blog);
    });

    it('a write against an invalid state\'s own revision replaces it; any other write does not', async (t) => {
      const fixture = await fresh(t);
      await seed(fixture.store, 'shop', 3);
      const store = await fixture.plant('shop', { ...makeState('shop', 3), weights: { blue: 0, green: 0 } });
      await assert.rejects(store.compareAndSet(makeState('shop', 3), 2), { code: 'INVALID_STATE' });
      await assert.rejects(store.compareAndSet(makeState('shop', 1), null), { code: 'INVALID_STATE' });
      const repaired = makeState('shop', 4, GREEN, { reason: 'repair' });
      assert.deepEqual(await store.compareAndSet(repaired, 3), { ok: true, state: repaired });
      assert.deepEqual(await store.get('shop'), repaired);
      assert.deepEqual((await store.history('shop', 10))[0], historyEntryOf(repaired));
      const invalid: InvalidStateError[] = [];
      assert.deepEqual((await store.getMany(['shop'], (err) => invalid.push(err))).get('shop'), repaired);
      assert.deepEqual(invalid, []);
    });

    it('listApps names every app written, a reopened store too', async (t) => {
      const fixture = await fresh(t);
      assert.deepEqual(await fixture.store.listApps(), []);
      await seed(fixture.store, 'shop', 1);
      await seed(fixture.store, 'blog', 2);
      assert.deepEqual(await fixture.store.listApps(), ['blog', 'shop']);
      await fixture.store.close();
      const again = await fixture.reopen();
      assert.deepEqual(await again.listApps(), ['blog', 'shop']);
    });

    it('a state with a definition may weigh only the definition\'s pools, and the definition must pass the config schema', async (t) => {
      const { store } = await fresh(t);
      // an app the `pools` option does not know: its definition alone names its pools
      const definition = { name: 'news', hosts: ['news.test'], pools: { red: { version: '1', targets: ['http://127.0.0.1:9001'] }, black: { version: '2', targets: [] } } };
      const state = makeState('news', 1, { red: 10_000, black: 0 }, { definition });
      assert.deepEqual(await store.compareAndSet(state, null), { ok: true, state });
      assert.deepEqual(await store.get('news'), state);
      await assert.rejects(store.compareAndSet(makeState('news', 2, { red: 0, green: 10_000 }, { definition }), 1), (err: Error & { code?: string }) => err.code === 'INVALID_STATE' && /weights\.green: unknown pool \(pools: red, black\)/.test(err.message));
      const bad = { ...definition, pools: { ...definition.pools, red: { version: '1', targets: ['ftp://x'] } } };
      await assert.rejects(store.compareAndSet(makeState('news', 2, { red: 10_000, black: 0 }, { definition: bad }), 1), (err: Error & { code?: string }) => err.code === 'INVALID_STATE' && /definition\.pools\.red\.targets\[0\]: must be an http\(s\) URL/.test(err.message));
      assert.deepEqual(await store.get('news'), state, 'nothing written');
    });
  });
}
