import type { TestContext } from 'node:test';
import type { Redis } from 'ioredis';
import { until } from './wait.ts';
import { redisClient, startRedis, type RedisServer } from './redis-server.ts';

export const MASTER_NAME = 'sy-main';

/** A primary, its replicas and three sentinels (quorum 2), all real redis-server processes on free ports. */
export interface SentinelGroup {
  readonly primary: RedisServer;
  readonly replicas: readonly RedisServer[];
  readonly sentinels: readonly RedisServer[];
  /** `store.sentinels` for the config */
  readonly addresses: { host: string; port: number }[];
  /** the port the sentinels name as master now */
  masterPort(): Promise<number>;
  /** resolves with Date.now() at the next `+switch-master` any sentinel announces */
  nextSwitch(): Promise<number>;
  cleanup(): Promise<void>;
}

/**
 * Sentinels that call a primary down after 1 s of silence and fail over at once, so a test sees
 * a promotion within a few seconds. Resolves once every sentinel knows every replica and the
 * other sentinels, and every replica is in sync: a failover is possible from then on.
 */
export async function startSentinelGroup(t: TestContext, replicaCount = 2): Promise<SentinelGroup> {
  const started: RedisServer[] = [];
  const clients: Redis[] = [];
  const cleanup = async (): Promise<void> => {
    for (const c of clients) c.disconnect();
    await Promise.all(started.map((s) => s.cleanup()));
  };
  try {
    const primary = await startRedis();
    started.push(primary);
    const replicas: RedisServer[] = [];
    for (let i = 0; i < replicaCount; i++) {
      const r = await startRedis({ args: ['--replicaof', '127.0.0.1', String(primary.port)] });
      started.push(r);
      replicas.push(r);
    }
    const sentinels: RedisServer[] = [];
    for (let i = 0; i < 3; i++) {
      const s = await startRedis({ sentinelOf: { name: MASTER_NAME, port: primary.port, quorum: 2, settings: ['down-after-milliseconds NAME 1000', 'failover-timeout NAME 4000', 'parallel-syncs NAME 2'] } });
      started.push(s);
      sentinels.push(s);
    }
    const ask = sentinels.map((s) => {
      const c = redisClient({ port: s.port, host: '127.0.0.1', lazyConnect: false, retryStrategy: () => 200 });
      c.on('error', () => undefined);
      clients.push(c);
      return c;
    });
    await until(t, 'the sentinels to know every replica and each other, and the replicas to sync', async () => {
      for (const c of ask) {
        const reps = (await c.call('SENTINEL', 'REPLICAS', MASTER_NAME)) as string[][];
        const peers = (await c.call('SENTINEL', 'SENTINELS', MASTER_NAME)) as unknown[];
        if (reps.length < replicaCount || peers.length < 2) return false;
      }
      for (const r of replicas) {
        const direct = redisClient({ port: r.port, host: '127.0.0.1' });
        const info = await direct.info('replication').finally(() => direct.disconnect());
        if (!info.includes('master_link_status:up')) return false;
      }
      return true;
    }, { timeout: 30_000 });
    return {
      primary,
      replicas,
      sentinels,
      addresses: sentinels.map((s) => ({ host: '127.0.0.1', port: s.port })),
      async masterPort() {
        for (const c of ask) {
          try {
            const [, port] = (await c.call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', MASTER_NAME)) as [string, string];
            return Number(port);
          } catch {
            // the next sentinel
          }
        }
        throw new Error('no sentinel answered');
      },
      nextSwitch() {
        const subs = sentinels.map((s) => {
          const c = redisClient({ port: s.port, host: '127.0.0.1' });
          c.on('error', () => undefined);
          return c;
        });
        return new Promise<number>((resolve) => {
          for (const c of subs) {
            void c.subscribe('+switch-master');
            c.on('message', () => {
              for (const x of subs) x.disconnect();
              resolve(Date.now());
            });
          }
        });
      },
      cleanup,
    };
  } catch (err) {
    await cleanup();
    throw err;
  }
}
