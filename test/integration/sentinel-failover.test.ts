import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { redisKeys } from '../../src/state/redis-store.ts';
import { pastInstant } from '../helpers/clock.ts';
import { revisionOf } from '../helpers/fleet.ts';
import { startProxy, twoPools, type TestProxy } from '../helpers/proxy.ts';
import { redisClient } from '../helpers/redis-server.ts';
import { MASTER_NAME, startSentinelGroup, type SentinelGroup } from '../helpers/sentinel.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';
import { until } from '../helpers/wait.ts';

// Writes that survive a Sentinel failover (issue 24): a primary, two replicas, three sentinels,
// two instances writing with store.replicas 1. Whatever happens to the primary, a write answered
// 200 is in the history the new primary holds, and writes answer 200 again within seconds of the
// promotion (the instances follow +switch-master instead of staying on the old primary's socket).

let blue: Upstream;
let green: Upstream;
before(async () => {
  blue = await startUpstream('blue');
  green = await startUpstream('green');
});
after(async () => {
  await blue.close();
  await green.close();
});

interface Answer {
  readonly i: number;
  readonly status: number;
  readonly at: number;
  readonly revision?: number;
  readonly code?: string;
  readonly message?: string;
}

async function setup(t: TestContext): Promise<{ group: SentinelGroup; a: TestProxy; b: TestProxy; prefix: string }> {
  const group = await startSentinelGroup(t, 2);
  const prefix = `failover${process.pid}-${Date.now()}`;
  const dirs = [await mkdtemp(join(tmpdir(), 'switchyard-failover-')), await mkdtemp(join(tmpdir(), 'switchyard-failover-'))];
  const store = (dir: string) => ({ kind: 'redis', url: 'redis://ignored', sentinels: group.addresses, name: MASTER_NAME, prefix, cachePath: join(dir, 'cache.json'), commandTimeout: '1s', replicas: 1, replicaTimeout: '500ms' });
  // registered before the instances start, so a start that fails still closes what did start
  const started: TestProxy[] = [];
  t.after(async () => {
    for (const p of started) await p.close();
    await group.cleanup();
    for (const d of dirs) await rm(d, { recursive: true, force: true, maxRetries: 5 });
  });
  const a = await startProxy({ apps: [twoPools(blue.url, green.url)], store: store(dirs[0]!) }, { instanceId: 'a', dir: dirs[0]! });
  started.push(a);
  const b = await startProxy({ apps: [twoPools(blue.url, green.url)], store: store(dirs[1]!) }, { instanceId: 'b', dir: dirs[1]! });
  started.push(b);
  return { group, a, b, prefix };
}

/** One weights write through `p` every 200 ms (after the previous answer) until `stop()` is true. */
async function writeEvery200ms(p: TestProxy, answers: Answer[], stop: () => boolean): Promise<void> {
  for (let i = 0; !stop(); i++) {
    const blueShare = 1 + (i % 98);
    const r = await p.admin('PUT', '/v1/apps/shop/weights', { weights: { blue: blueShare, green: 100 - blueShare }, reason: `w${i}` }).catch((err: unknown) => ({ status: 0, body: { error: { code: String(err) } } }));
    answers.push({ i, status: r.status, at: Date.now(), ...(r.status === 200 ? { revision: r.body.revision as number } : { code: r.body?.error?.code as string, message: r.body?.error?.message as string }) });
    // paces the load: the scenario is a write every 200 ms
    await sleep(200);
  }
}

/** Every write answered 200 must be in the history of whichever server is primary now, under its revision. */
async function assertEveryOkWriteKept(group: SentinelGroup, prefix: string, answers: readonly Answer[]): Promise<void> {
  const port = await group.masterPort();
  const direct = redisClient({ port, host: '127.0.0.1' });
  try {
    const history = (await direct.lrange(redisKeys(prefix).history('shop'), 0, -1)).map((e) => JSON.parse(e) as { revision: number; reason: string | null });
    const lost = answers.filter((a) => a.status === 200 && !history.some((h) => h.reason === `w${a.i}` && h.revision === a.revision));
    assert.deepEqual(lost.map((a) => `w${a.i}@${a.revision}`), [], `writes answered 200 missing from the new primary's history (${answers.filter((a) => a.status === 200).length} answered 200)`);
  } finally {
    direct.disconnect();
  }
}

/** What `promise` resolves to, awaited with `until` (fails the test after `timeout` ms). */
async function settled<T>(t: TestContext, what: string, promise: Promise<T>, timeout: number): Promise<T> {
  let value: { v: T } | undefined;
  void promise.then((v) => (value = { v }));
  return (await until(t, what, () => value, { timeout })).v;
}

/** Each answer, ms after `from`, with the error's message: what a failure shows. */
function trail(answers: readonly Answer[], from: number): string {
  return answers.map((a) => `${a.at - from} ms w${a.i} ${a.status}${a.code === undefined ? '' : ` ${a.code}: ${a.message}`}`).join('\n');
}

/** How many full resyncs the primary now has served (`sync_full`): a replica that lags after a failover shows here. */
async function fullSyncs(group: SentinelGroup): Promise<string> {
  const direct = redisClient({ port: await group.masterPort(), host: '127.0.0.1' });
  try {
    return /sync_full:\d+/.exec(await direct.info('stats'))?.[0] ?? 'sync_full unknown';
  } finally {
    direct.disconnect();
  }
}

function summary(answers: readonly Answer[]): string {
  const counts = new Map<string, number>();
  for (const a of answers) counts.set(`${a.status}${a.code === undefined ? '' : ` ${a.code}`}`, (counts.get(`${a.status}${a.code === undefined ? '' : ` ${a.code}`}`) ?? 0) + 1);
  return JSON.stringify(Object.fromEntries(counts));
}

// the two scenarios wait on Sentinel's clock (a promotion, a 12 s stop), each with its own group: run side by side
describe('writes through a Sentinel failover (store.replicas 1)', { concurrency: true }, () => {
  it('the primary SIGKILLed under a write every 200 ms: every write answered 200 is kept, and writes succeed again within seconds of the promotion', async (t) => {
    const { group, a, b, prefix } = await setup(t);
    const answers: Answer[] = [];
    let stopAt = Infinity;
    const writer = writeEvery200ms(a, answers, () => Date.now() > stopAt);
    await until(t, 'five writes answered 200 before the kill', () => answers.filter((x) => x.status === 200).length >= 5, { timeout: 10_000 });
    const promoted = group.nextSwitch();
    const killedAt = Date.now();
    await group.primary.kill();
    const switchAt = await settled(t, 'sentinel to promote a replica', promoted, 30_000);
    // keep writing until 3 s after the first 200 that followed the promotion (at most 20 s)
    await until(t, 'a write answered 200 after the promotion', () => answers.some((x) => x.status === 200 && x.at > switchAt), { timeout: 20_000 });
    const firstOk = answers.find((x) => x.status === 200 && x.at > switchAt)!;
    // keep writing 4 s more, and until the last two writes answered 200 (the fleet whole again)
    const fourSecondsOn = Date.now() + 4_000;
    await until(t, 'two writes in a row answered 200, 4 s after the recovery', () => Date.now() > fourSecondsOn && answers.length >= 2 && answers.slice(-2).every((x) => x.status === 200), { timeout: 30_000 });
    stopAt = 0;
    await writer;
    t.diagnostic(`promotion ${switchAt - killedAt} ms after the kill; first 200 ${firstOk.at - switchAt} ms after it; answers ${summary(answers)}; ${await fullSyncs(group)}`);
    assert.ok(firstOk.at - switchAt < 8_000, `writes answered 200 again ${firstOk.at - switchAt} ms after the promotion`);
    // From 1.5 s after the recovery every write reaches the new primary: never a 503 (a dead or
    // stale socket; the client may already be on the new primary when a sentinel's +switch-master
    // makes it reconnect once more, a 503 never sent, hence the 1.5 s). A 504 that says the
    // primary took the write is allowed: the old primary is dead, so it is the new one, and the
    // other replica may still be resyncing to it (Redis's own full resync after a failover waits
    // repl-diskless-sync-delay, 5 s), so it is honestly not confirmed. CI saw four such once.
    const after = answers.filter((x) => x.at > firstOk.at + 1_500);
    const reachedPrimary = (x: Answer): boolean => x.status === 200 || (x.code === 'WRITE_OUTCOME_UNKNOWN' && /was written to the redis primary/.test(x.message ?? ''));
    assert.ok(after.length > 0 && after.every(reachedPrimary), `every write from 1.5 s after the recovery reached the new primary: ${summary(after)}\n${trail(answers, killedAt)}`);
    await assertEveryOkWriteKept(group, prefix, answers);
    // both instances route on the last write
    const last = answers.filter((x) => x.status === 200).at(-1)!;
    await until(t, 'both instances on the last write', () => revisionOf(a) >= last.revision! && revisionOf(b) >= last.revision!, { timeout: 10_000 });
  });

  it('the primary SIGSTOPped 12 s under a write every 200 ms: every write answered 200 is kept, none goes to the old primary once it wakes', async (t) => {
    const { group, a, prefix } = await setup(t);
    const answers: Answer[] = [];
    let stopAt = Infinity;
    const writer = writeEvery200ms(a, answers, () => Date.now() > stopAt);
    await until(t, 'five writes answered 200 before the stop', () => answers.filter((x) => x.status === 200).length >= 5, { timeout: 10_000 });
    const promoted = group.nextSwitch();
    const pausedAt = Date.now();
    group.primary.pause();
    const switchAt = await settled(t, 'sentinel to promote a replica', promoted, 20_000);
    assert.ok(switchAt < pausedAt + 11_000, `sentinel promoted a replica while the primary was stopped (${switchAt - pausedAt} ms after the stop)`);
    await until(t, 'a write answered 200 after the promotion', () => answers.some((x) => x.status === 200 && x.at > switchAt), { timeout: 10_000 });
    const firstOk = answers.find((x) => x.status === 200 && x.at > switchAt)!;
    // the scenario: the primary stays stopped 12 s in all
    await pastInstant(pausedAt + 12_000);
    group.primary.resume();
    // the old primary wakes believing it is primary until Sentinel demotes it: keep writing through that,
    // until five writes answered from 3 s after the wake (the `late` ones checked below)
    await until(t, 'five writes answered from 3 s after the wake', () => answers.filter((x) => x.at > pausedAt + 15_000).length >= 5, { timeout: 20_000 });
    stopAt = Date.now();
    await writer;
    t.diagnostic(`promotion ${switchAt - pausedAt} ms after the stop; first 200 ${firstOk.at - switchAt} ms after it; answers ${summary(answers)}`);
    assert.ok(firstOk.at - switchAt < 8_000, `writes answered 200 again ${firstOk.at - switchAt} ms after the promotion`);
    // the old primary has been demoted and resynced: it is a replica of the new one
    await until(t, 'the old primary to be demoted', async () => {
      const old = redisClient({ port: group.primary.port, host: '127.0.0.1' });
      try {
        return (await old.info('replication')).includes('role:slave');
      } finally {
        old.disconnect();
      }
    }, { timeout: 20_000 });
    await assertEveryOkWriteKept(group, prefix, answers);
    const late = answers.filter((x) => x.at > pausedAt + 15_000);
    assert.ok(late.length > 0 && late.every((x) => x.status === 200), `writes after the old primary woke answered 200: ${summary(late)}\n${trail(answers, pausedAt)}`);
  });
});
