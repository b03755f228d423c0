import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import type { BuildDeps } from '../../src/app.ts';
import { startProxy, twoPools, type TestProxy } from './proxy.ts';
import { startRedis, type RedisServer } from './redis-server.ts';
import { until } from './wait.ts';

export interface TestFleet {
  redis: RedisServer;
  prefix: string;
  instances: TestProxy[];
  /** starts one more instance (or restarts one on its old directory) */
  add(id: string, dir?: string): Promise<TestProxy>;
}

export interface FleetOptions {
  /** upstream URLs of the `shop` app's two pools */
  readonly blue: string;
  readonly green: string;
  /** a server to share (not cleaned up here); default: a fresh one per fleet */
  readonly redis?: RedisServer;
  /** more build deps per instance (a logger that records, …) */
  readonly deps?: (id: string) => Partial<BuildDeps>;
}

let prefixes = 0;

/** `n` proxy instances in-process on one redis-server, each with its own cache directory. */
export async function startFleet(t: TestContext, n: number, opts: FleetOptions): Promise<TestFleet> {
  const server = opts.redis ?? (await startRedis());
  const prefix = `fleet${process.pid}-${++prefixes}`;
  const dirs: string[] = [];
  const fleet: TestFleet = {
    redis: server,
    prefix,
    instances: [],
    async add(id, dir) {
      const d = dir ?? (await mkdtemp(join(tmpdir(), 'switchyard-fleet-')));
      if (dir === undefined) dirs.push(d);
      const p = await startProxy(
        { apps: [twoPools(opts.blue, opts.green)], store: { kind: 'redis', url: server.url, prefix, cachePath: join(d, 'cache.json'), commandTimeout: '1s' } },
        { instanceId: id, dir: d, ...opts.deps?.(id) },
      );
      fleet.instances.push(p);
      return p;
    },
  };
  // one hook, in dependency order: the instances (which still write their disk caches) before
  // Redis, both before their directories — a failing step must not leave listeners behind
  t.after(async () => {
    for (const p of [...fleet.instances].reverse()) await p.close().catch(() => undefined);
    if (opts.redis === undefined) await server.cleanup();
    for (const d of dirs) await rm(d, { recursive: true, force: true, maxRetries: 5 });
  });
  for (let i = 0; i < n; i++) await fleet.add(`i${i}`);
  return fleet;
}

export const revisionOf = (p: TestProxy): number => p.sy.controller.state('shop').revision;

/** Every instance on `revision`, and each one's next proxied request served by `servedBy`. */
export async function allRouteOn(t: TestContext, ps: readonly TestProxy[], revision: number, servedBy: string): Promise<void> {
  await until(t, `every instance on revision ${revision}`, () => ps.every((p) => revisionOf(p) === revision));
  for (const p of ps) assert.equal((await p.get('/')).servedBy, servedBy);
}

/**
 * Blocks this process's event loop for `ms` right after each of the next `count` compare-and-sets
 * the instances send to Redis, as a loaded machine does: Redis answers meanwhile, but when the
 * loop runs again the command timeouts (shorter than `ms`) fire before the replies are read, so
 * each write in flight is settled by a read back (src/state/redis-settle.ts).
 */
export function stallAfterWrites(instances: readonly TestProxy[], ms: number, count: number): void {
  let left = count;
  for (const p of instances) {
    const client = (p.sy.controller.store as unknown as { client: Record<string, (...args: unknown[]) => Promise<unknown>> }).client;
    const send = client['switchyardCas'];
    assert.ok(send !== undefined, 'the instance writes through a redis store');
    client['switchyardCas'] = (...args: unknown[]) => {
      const sent = send.apply(client, args);
      if (left-- > 0) {
        // the thread sleeps without running anything, as a process kept off the CPU does: the
        // stall is the point, and a busy loop would take a core from the test files beside it
        setImmediate(() => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms));
      }
      return sent;
    };
  }
}
