import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import pino from 'pino';
import { startProxy, twoPools } from '../helpers/proxy.ts';
import { startRedis } from '../helpers/redis-server.ts';
import { startUpstream } from '../helpers/upstream.ts';

describe('the rollout driver while Redis is down', () => {
  it('warns once that its rounds fail, not at every round (regression: a warning a second)', async (t) => {
    const redis = await startRedis();
    const up = await startUpstream('up');
    const dir = await mkdtemp(join(tmpdir(), 'switchyard-driver-log-'));
    const lines: { level: number; msg: string; component?: string }[] = [];
    const logger = pino({ level: 'info' }, new Writable({ write(c: Buffer, _e, cb) {
      lines.push(JSON.parse(String(c)) as { level: number; msg: string });
      cb();
    } }));
    // rounds every 100 ms, and a lease that outlives the outage's first 3 s: ~30 failed rounds
    const p = await startProxy({ store: { kind: 'redis', url: redis.url, prefix: 'driverlog', cachePath: join(dir, 'cache.json') }, apps: [twoPools(up.url, up.url)] }, { logger, rollouts: { tickMs: 100, leaseTtlMs: 6000 } });
    t.after(async () => {
      await p.close();
      await up.close();
      await redis.cleanup();
      await rm(dir, { recursive: true, force: true });
    });
    await t.waitFor(() => assert.ok(lines.some((l) => /now drives rollouts/.test(l.msg))), { timeout: 10_000, interval: 50 });
    await redis.stop();
    const failed = () => lines.filter((l) => l.level === 40 && /rollout driver: round failed/.test(l.msg));
    await t.waitFor(() => assert.ok(failed().length >= 1), { timeout: 10_000, interval: 50 });
    // thirty rounds more on a store still down, run here rather than waited for (3 s of 100 ms ticks)
    for (let i = 0; i < 30; i++) await p.sy.rollouts.tick();
    assert.equal(failed().length, 1, `round failures logged: ${failed().length}`);
  });
});
