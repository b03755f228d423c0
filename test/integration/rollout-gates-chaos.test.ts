import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
import { startHookServer, type HookServer } from '../helpers/hook-server.ts';
import { TOKEN, twoPools } from '../helpers/proxy.ts';
import { startRedis, type RedisServer } from '../helpers/redis-server.ts';
import { spawnServe, type ServeProcess } from '../helpers/serve-process.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';
import { until } from '../helpers/wait.ts';

/**
 * Chaos: two real `switchyard serve` processes on a real redis-server, and the instance driving
 * a rollout SIGKILLed while its webhook gate call is in flight. The survivor must neither skip
 * the gate (leave the step without a passing round) nor call the same round twice.
 */

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- tests assert on whatever JSON the API answers
async function admin(p: ServeProcess, method: string, path: string, body?: unknown): Promise<{ status: number; body: any }> {
  const r = await request(p.adminUrl + path, {
    method: method as 'GET',
    headers: { authorization: `Bearer ${TOKEN}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await r.body.text();
  return { status: r.statusCode, body: text === '' ? null : JSON.parse(text) };
}

describe('chaos: the driver SIGKILLed while a gate call is in flight', () => {
  let redis: RedisServer;
  let blue: Upstream;
  let green: Upstream;
  let hooks: HookServer;
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'switchyard-gates-chaos-'));
    redis = await startRedis();
    blue = await startUpstream('blue');
    green = await startUpstream('green');
    hooks = await startHookServer();
  });
  after(async () => {
    await Promise.all([blue.close(), green.close(), hooks.close()]);
    await redis.cleanup();
    await rm(dir, { recursive: true, force: true, maxRetries: 5 });
  });

  it('the new driver records the round as lost and calls the next one: no step without a pass, no round twice', async (t) => {
    const all: ServeProcess[] = [];
    for (let i = 0; i < 2; i++) {
      const p = await spawnServe({ store: { kind: 'redis', url: redis.url, prefix: 'gates-chaos', cachePath: join(dir, `c-${i}.json`) }, apps: [twoPools(blue.url, green.url)] }, 30_000);
      t.after(() => p.cleanup());
      all.push(p);
    }
    // the first call never gets an answer (its driver dies holding it); the others pass
    hooks.reply('/smoke/key', (_c, n) => (n === 1 ? 'hang' : { status: 200 }));
    const start = await admin(all[1] as ServeProcess, 'POST', '/v1/apps/shop/rollouts', {
      to: 'green',
      steps: [{ weight: 20, pause: '1s' }],
      analysis: { minRequests: 1, interval: '1s', webhooks: [{ name: 'smoke', url: `${hooks.url}/smoke/key`, timeout: '3s' }] },
    });
    assert.equal(start.status, 201, JSON.stringify(start.body));
    const id = start.body.id as string;
    await until(t, 'the first gate call', async () => hooks.on('/smoke/key')[0], { timeout: 15_000, interval: 100 });
    const claimed = (await admin(all[1] as ServeProcess, 'GET', '/v1/apps/shop/rollouts/current')).body;
    assert.equal(claimed.gates.calling?.round, 1, 'the round in flight is claimed in the record');
    const pid = Number(/:(\d+)\//.exec(claimed.gates.calling.by)?.[1]);
    const driver = all.find((p) => p.child.pid === pid);
    assert.ok(driver, `the caller ${claimed.gates.calling.by} is one of the instances`);
    driver.child.kill('SIGKILL');
    const killedAt = Date.now();
    const survivor = all.find((p) => p !== driver) as ServeProcess;
    // users keep coming, so the proxy's own analysis has green's requests to judge
    let stop = false;
    const traffic = (async () => {
      while (!stop) {
        const r = await request(`${survivor.proxyUrl}/`).catch(() => null);
        await r?.body.dump();
        await sleep(10);
      }
    })();
    t.after(async () => {
      stop = true;
      await traffic;
    });
    const done = await until(t, 'the rollout to succeed on the survivor', async () => {
      const r = (await admin(survivor, 'GET', '/v1/apps/shop/rollouts/current')).body;
      return r.state === 'succeeded' ? r : undefined;
    }, { timeout: 60_000, interval: 100 });
    const rounds = done.gates.rounds as { round: number; verdict: string; lost?: boolean; by: string }[];
    assert.deepEqual(rounds[0], { ...rounds[0], round: 1, lost: true }, 'the dead driver’s round is recorded as lost');
    assert.equal(rounds[0]?.by, claimed.gates.calling.by);
    const after = rounds.slice(1);
    assert.ok(after.length >= 1 && after.every((x) => x.by !== claimed.gates.calling.by), 'later rounds are the survivor’s');
    assert.equal(after.at(-1)?.verdict, 'pass');
    const sent = hooks.on('/smoke/key').map((c) => c.headers['x-switchyard-gate'] as string);
    assert.equal(new Set(sent).size, sent.length, `no round called twice: ${sent.join(', ')}`);
    assert.equal(sent[0], `${id}/1/analysis/1`);
    assert.equal(sent[1], `${id}/1/analysis/2`, 'the survivor went on with the next round');
    t.diagnostic(`the survivor called round 2 ${(hooks.on('/smoke/key')[1]?.at ?? 0) - killedAt} ms after the kill (lease TTL 10 s, claim deadline 3 s + 2 s)`);
    const history = (await admin(survivor, 'GET', '/v1/apps/shop/history?limit=1')).body.entries as { reason: string }[];
    assert.match(history[0]?.reason ?? '', /step 2\/2: green 100%; smoke 200$/, 'step 2 was written on a passing round');
  });
});
