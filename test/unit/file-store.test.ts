import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { FileStore } from '../../src/state/file-store.ts';
import { historyEntryOf, type RoutingState } from '../../src/state/types.ts';
import { makeState, storeContract } from '../helpers/store-contract.ts';

async function tempDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'switchyard-file-store-'));
  t.after(() => rm(dir, { recursive: true, force: true, maxRetries: 5 }));
  return dir;
}

storeContract('file store', async ({ historyLimit, pools }) => {
  const dir = await mkdtemp(join(tmpdir(), 'switchyard-file-store-'));
  // a directory that does not exist yet: open must create it
  const path = join(dir, 'data', 'state.json');
  const stores = [await FileStore.open({ path, historyLimit, pools })];
  const reopen = async () => {
    const store = await FileStore.open({ path, historyLimit, pools });
    stores.push(store);
    return store;
  };
  return {
    store: stores[0]!,
    reopen,
    // the file store loads at open: edit the file as an operator would, then open it again
    plant: async (app, raw) => {
      for (const store of stores) await store.close();
      const doc = JSON.parse(await readFile(path, 'utf8'));
      doc.apps[app] = { state: raw, history: doc.apps[app]?.history ?? [] };
      await writeFile(path, JSON.stringify(doc));
      return reopen();
    },
    cleanup: async () => {
      for (const store of stores) await store.close();
      await rm(dir, { recursive: true, force: true, maxRetries: 5 });
    },
  };
});

describe('file store on disk', () => {
  it('leaves valid JSON and no temp file after every write', async (t) => {
    const dir = await tempDir(t);
    const path = join(dir, 'state.json');
    const store = await FileStore.open({ path, historyLimit: 2 });
    t.after(() => store.close());
    assert.deepEqual(await readdir(dir), [], 'open alone writes nothing');

    const written: RoutingState[] = [];
    for (let rev = 1; rev <= 4; rev++) {
      const state = makeState('shop', rev, rev % 2 ? { blue: 10_000, green: 0 } : { blue: 0, green: 10_000 });
      assert.equal((await store.compareAndSet(state, rev === 1 ? null : rev - 1)).ok, true);
      written.unshift(state);
      assert.deepEqual(await readdir(dir), ['state.json']);
      const doc = JSON.parse(await readFile(path, 'utf8'));
      assert.deepEqual(doc, {
        version: 1,
        apps: { shop: { state, history: written.slice(0, 2).map(historyEntryOf) } },
      });
    }
  });

  it('open rejects a corrupt file, naming it, and leaves it untouched', async (t) => {
    const dir = await tempDir(t);
    const path = join(dir, 'state.json');
    await writeFile(path, '{"version": 1, "apps": {');
    await assert.rejects(FileStore.open({ path, historyLimit: 10 }), (err: Error) => {
      assert.match(err.message, /not valid JSON/);
      assert.ok(err.message.includes(path), err.message);
      return true;
    });
    assert.equal(await readFile(path, 'utf8'), '{"version": 1, "apps": {');
  });

  it('open rejects valid JSON that is not a state file, naming it', async (t) => {
    const dir = await tempDir(t);
    const path = join(dir, 'state.json');
    // (one app's bad record is not a bad file: the contract suite covers that it is set aside)
    for (const text of ['[]', '{"version": 2, "apps": {}}', '{"version": 1, "apps": []}']) {
      await writeFile(path, text);
      await assert.rejects(FileStore.open({ path, historyLimit: 10 }), (err: Error) => err.message.includes(path));
    }
  });

  it('open removes temp files a crash left behind, and nothing else', async (t) => {
    const dir = await tempDir(t);
    const path = join(dir, 'state.json');
    await writeFile(join(dir, '.state.json.0123456789ab.tmp'), '{"half": ');
    await writeFile(join(dir, 'notes.txt'), 'operator notes');
    const store = await FileStore.open({ path, historyLimit: 10 });
    t.after(() => store.close());
    assert.deepEqual(await readdir(dir), ['notes.txt']);
  });

  it('a lower historyLimit on reopen trims the history', async (t) => {
    const dir = await tempDir(t);
    const path = join(dir, 'state.json');
    const first = await FileStore.open({ path, historyLimit: 10 });
    for (let rev = 1; rev <= 5; rev++) await first.compareAndSet(makeState('shop', rev), rev === 1 ? null : rev - 1);
    await first.close();
    const second = await FileStore.open({ path, historyLimit: 2 });
    t.after(() => second.close());
    assert.deepEqual((await second.history('shop', 10)).map((e) => e.revision), [5, 4]);
  });

  it('a failed write rejects with STORE_UNAVAILABLE and keeps the old state in memory', async (t) => {
    const dir = await tempDir(t);
    const stateDir = join(dir, 'state');
    const path = join(stateDir, 'state.json');
    const store = await FileStore.open({ path, historyLimit: 10 });
    t.after(() => store.close());
    const first = makeState('shop', 1);
    await store.compareAndSet(first, null);
    const seen: number[] = [];
    store.watch((s) => seen.push(s.revision));

    // root ignores permissions, so break the path instead: the directory becomes a regular file
    await rm(stateDir, { recursive: true });
    await writeFile(stateDir, 'not a directory');
    await assert.rejects(store.compareAndSet(makeState('shop', 2), 1), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'STORE_UNAVAILABLE');
      assert.ok(err.message.includes(path), err.message);
      assert.ok(err.cause, 'the fs error is kept as the cause');
      return true;
    });
    assert.deepEqual(await store.get('shop'), first);
    assert.deepEqual(await store.history('shop', 10), [historyEntryOf(first)]);
    assert.deepEqual(seen, []);

    // once the directory is back the store is not wedged, and the failed write never counted
    await rm(stateDir);
    await mkdir(stateDir);
    const second = makeState('shop', 2);
    assert.deepEqual(await store.compareAndSet(second, 1), { ok: true, state: second });
    assert.deepEqual(seen, [2]);
    assert.equal(JSON.parse(await readFile(path, 'utf8')).apps.shop.history.length, 2);
  });

  it('open rejects a historyLimit below 1', async (t) => {
    const dir = await tempDir(t);
    await assert.rejects(FileStore.open({ path: join(dir, 'state.json'), historyLimit: 0 }), /historyLimit/);
  });
});
