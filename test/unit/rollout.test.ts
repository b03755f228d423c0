import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { parseDuration } from '../../src/config/duration.ts';
import { parseConfig } from '../../src/config/load.ts';
import { Controller } from '../../src/control/controller.ts';
import { SwitchyardError } from '../../src/errors.ts';
import type { PoolWindowStats } from '../../src/metrics/stats.ts';
import { evaluate } from '../../src/rollout/analysis.ts';
import { LocalLease } from '../../src/state/lease.ts';
import { presetSteps, stepWeights, type Rollout } from '../../src/rollout/model.ts';
import { Rollouts } from '../../src/rollout/rollouts.ts';
import { parseRolloutBody, rolloutBody } from '../../src/rollout/spec.ts';
import { FileRolloutStore, MemoryRolloutStore, rolloutsPathBeside } from '../../src/rollout/store.ts';
import { FileStore } from '../../src/state/file-store.ts';
import { TOTAL_BP } from '../../src/config/weights.ts';

const POOLS = ['blue', 'green', 'red'];
const sum = (w: Record<string, number>) => Object.values(w).reduce((n, v) => n + v, 0);

describe('step weights', () => {
  it('give `to` the step weight and keep the other pools in their starting proportions, exactly', () => {
    assert.deepEqual(stepWeights({ blue: 7000, green: 0, red: 3000 }, 'green', 2500, POOLS), { blue: 5250, green: 2500, red: 2250 });
    assert.deepEqual(stepWeights({ blue: 10_000, green: 0, red: 0 }, 'green', 1000, POOLS), { blue: 9000, green: 1000, red: 0 });
    assert.deepEqual(stepWeights({ blue: 10_000, green: 0, red: 0 }, 'green', TOTAL_BP, POOLS), { blue: 0, green: 10_000, red: 0 });
    // 9000 × 1/3 and 2/3 are not whole: the basis point left over goes to the largest remainder
    assert.deepEqual(stepWeights({ blue: 3333, green: 0, red: 6667 }, 'green', 1000, POOLS), { blue: 3000, green: 1000, red: 6000 });
    // `to` already had some: only the others' proportions count
    assert.deepEqual(stepWeights({ blue: 6000, green: 2000, red: 2000 }, 'green', 5000, POOLS), { blue: 3750, green: 5000, red: 1250 });
  });

  it('always sum to 10 000 and never move the others out of proportion by more than one basis point', () => {
    let seed = 7;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    for (let i = 0; i < 2000; i++) {
      const a = Math.floor(rnd() * 10_001);
      const b = Math.floor(rnd() * (10_001 - a));
      const from = { blue: a, green: b, red: 10_000 - a - b };
      if (from.green === TOTAL_BP) continue;
      const bp = 1 + Math.floor(rnd() * 10_000);
      const w = stepWeights(from, 'green', bp, POOLS);
      assert.equal(sum(w), TOTAL_BP);
      assert.equal(w.green, bp);
      const rest = TOTAL_BP - bp;
      const base = from.blue + from.red;
      for (const p of ['blue', 'red'] as const) assert.ok(Math.abs((w[p] as number) - (rest * from[p]) / base) < 1, `${p}: ${JSON.stringify({ from, bp, w })}`);
    }
  });

  it('share the rest equally when the others had nothing', () => {
    assert.deepEqual(stepWeights({ blue: 0, green: 10_000, red: 0 }, 'green', 5001, POOLS), { blue: 2500, green: 5001, red: 2499 });
  });
});

describe('presets', () => {
  const steps = (name: string) => presetSteps(name, parseDuration)?.map((s) => [s.weight / 100, s.pauseMs]);
  it('canary10-5m: 10 % for five minutes, then 100 %', () => {
    assert.deepEqual(steps('canary10-5m'), [[10, 300_000], [100, 0]]);
  });
  it('linear10-every-1m: +10 % every minute', () => {
    assert.deepEqual(steps('linear10-every-1m'), [...[10, 20, 30, 40, 50, 60, 70, 80, 90].map((w) => [w, 60_000]), [100, 0]]);
    assert.deepEqual(steps('linear30-every-30s'), [[30, 30_000], [60, 30_000], [90, 30_000], [100, 0]]);
  });
  it('all-at-once: straight to 100 %', () => {
    assert.deepEqual(steps('all-at-once'), [[100, 0]]);
  });
  it('anything else is unknown', () => {
    for (const name of ['canary0-5m', 'canary10', 'canary10-soon', 'linear10-1m', 'blue-green']) assert.equal(presetSteps(name, parseDuration), null, name);
  });
});

describe('rollout body validation', () => {
  const parse = (body: unknown) => parseRolloutBody(rolloutBody.parse(body), ['blue', 'green']);
  const fields = (body: unknown): string[] => {
    try {
      parse(body);
    } catch (err) {
      assert.ok(err instanceof SwitchyardError);
      assert.equal(err.status, 400);
      return (err.details as { path: string }[]).map((d) => d.path);
    }
    assert.fail('expected a 400');
  };

  it('accepts steps with durations, fills the defaults and appends the final 100 %', () => {
    const spec = parse({ to: 'green', steps: [{ weight: 10, pause: '5m' }, { weight: 50.25, pause: 1500 }] });
    assert.deepEqual(spec.steps, [{ weight: 1000, pauseMs: 300_000 }, { weight: 5025, pauseMs: 1500 }, { weight: 10_000, pauseMs: 0 }]);
    assert.deepEqual(spec.analysis, { maxErrorRate: 0.01, minRequests: 100, maxWaitMs: 600_000 });
    assert.equal(spec.onFailure, 'rollback');
    assert.equal(parse({ to: 'green', preset: 'all-at-once', analysis: null }).analysis, null);
    assert.deepEqual(parse({ to: 'green', preset: 'canary10-5m', analysis: { maxP99Ms: 500 } }).analysis, { maxErrorRate: 0.01, minRequests: 100, maxWaitMs: 600_000, maxP99Ms: 500 });
    assert.equal(parse({ to: 'green', preset: 'canary10-5m', analysis: { maxWait: '2m' } }).analysis?.maxWaitMs, 120_000);
    assert.deepEqual(fields({ to: 'green', preset: 'canary10-5m', analysis: { maxWait: 'soon' } }), ['analysis.maxWait']);
  });

  it('names each offending field', () => {
    assert.deepEqual(fields({ to: 'purple', preset: 'canary10-5m' }), ['to']);
    assert.deepEqual(fields({ to: 'green' }), ['steps']);
    assert.deepEqual(fields({ to: 'green', preset: 'canary10-5m', steps: [{ weight: 10 }] }), ['preset']);
    assert.deepEqual(fields({ to: 'green', preset: 'slowly' }), ['preset']);
    assert.deepEqual(fields({ to: 'green', steps: [{ weight: 10.005 }, { weight: 0 }, { weight: 50, pause: 'soon' }, { weight: 40 }, { weight: 120 }] }), ['steps[0].weight', 'steps[1].weight', 'steps[2].pause', 'steps[3].weight', 'steps[4].weight']);
  });

  it('refuses unknown fields and wrong types through zod', () => {
    assert.equal(rolloutBody.safeParse({ to: 'green', preset: 'all-at-once', colour: 'red' }).success, false);
    assert.equal(rolloutBody.safeParse({ to: 'green', preset: 'all-at-once', onFailure: 'panic' }).success, false);
    assert.equal(rolloutBody.safeParse({ to: 'green', preset: 'all-at-once', analysis: { maxErrorRate: 2 } }).success, false);
  });
});

describe('analysis', () => {
  const stats = (to: Partial<PoolWindowStats>, other: Partial<PoolWindowStats> = {}): Record<string, PoolWindowStats> => ({
    blue: { requests: 1000, rps: 100, errors: 1, errorRate: 0.001, p50: 5, p95: 9, p99: 12, streamP99: 0, ...other },
    green: { requests: 0, rps: 0, errors: 0, errorRate: 0, p50: null, p95: null, p99: null, streamP99: null, ...to },
  });
  const r = { app: 'shop', to: 'green', step: 1, steps: [{ weight: 50, pause: null }], startedAt: 0, judgeFrom: 0, analysis: { maxErrorRate: 0.05, minRequests: 20, maxP99Ms: 100 } } as unknown as Rollout;

  it('waits until `to` has served minRequests, then passes or fails on error rate and p99', () => {
    assert.equal(evaluate(r, stats({ requests: 19, errors: 19, p99: 5 }), 30_000).verdict, 'waiting');
    assert.equal(evaluate(r, stats({ requests: 20, errors: 1, p99: 90 }), 30_000).verdict, 'pass');
    const bad = evaluate(r, stats({ requests: 40, errors: 4, p99: 150 }), 30_000);
    assert.equal(bad.verdict, 'fail');
    assert.equal(bad.why, 'green error rate 10% > 5% and p99 150ms > 100ms over 10s (40 requests, 4 errors; others 0.1%, p99 12ms)');
    assert.deepEqual(bad.others, { requests: 1000, errors: 1, errorRate: 0.001, p99: 12 });
  });

  it('does not judge a window reaching back before the last resume', () => {
    const resumed = { ...r, judgeFrom: 25_500 } as Rollout;
    assert.equal(evaluate(resumed, stats({ requests: 40, errors: 40 }), 30_000).verdict, 'waiting');
    assert.equal(evaluate(resumed, stats({ requests: 40, errors: 40 }), 36_000).verdict, 'fail');
  });
});

/** A proxy's control plane on a file store, a hand-moved clock and hand-set stats: pauses of minutes take no time. */
async function harness(t: TestContext) {
  const dir = await mkdtemp(join(tmpdir(), 'switchyard-rollout-'));
  t.after(() => rm(dir, { recursive: true, force: true, maxRetries: 5 }));
  const config = parseConfig({ apps: [{ name: 'shop', hosts: ['*'], pools: { blue: { version: '1', targets: ['http://127.0.0.1:1'] }, green: { version: '2', targets: ['http://127.0.0.1:2'] } } }] });
  let clock = 1_000_000;
  const now = () => clock;
  const logger = pino({ level: 'silent' });
  const store = await FileStore.open({ path: join(dir, 'state.json'), historyLimit: 100 });
  const unhealthy = new Set<string>();
  const controller = await Controller.start({
    config,
    store,
    logger,
    now,
    guard: (_app, weights, o, cur) => {
      const sick = Object.keys(weights).find((p) => (weights[p] ?? 0) > (cur[p] ?? 0) && unhealthy.has(p));
      if (sick !== undefined && o.force !== true) throw new SwitchyardError('POOL_UNHEALTHY', `pool "${sick}" has no healthy target`);
      return undefined;
    },
  });
  t.after(() => controller.close());
  const window: Record<string, PoolWindowStats> = {};
  const setStats = (pool: string, requests: number, errors = 0, p99: number | null = 10) => (window[pool] = { requests, rps: requests / 10, errors, errorRate: requests === 0 ? 0 : errors / requests, p50: p99, p95: p99, p99, streamP99: 0 });
  setStats('blue', 0);
  setStats('green', 0);
  const registry = new Registry();
  const records = new MemoryRolloutStore();
  const stats = { window: () => ({ ...window }) };
  const rollouts = new Rollouts({ controller, stats, store: records, lease: new LocalLease('me'), logger, registry, now, schedule: () => () => undefined, newId: () => 'r-test' });
  t.after(() => rollouts.close());
  const spec = (body: unknown) => parseRolloutBody(rolloutBody.parse(body), ['blue', 'green']);
  return {
    controller,
    rollouts,
    records,
    stats,
    logger,
    now,
    registry,
    unhealthy,
    setStats,
    spec,
    advance: async (ms: number) => {
      clock += ms;
      await rollouts.tick();
    },
    weights: () => ({ ...controller.state('shop').weights }),
    counted: async (result: string) => (await registry.getSingleMetric('switchyard_rollouts_total')?.get())?.values.find((v) => v.labels.result === result)?.value,
  };
}

describe('the rollout driver (hand-moved clock)', () => {
  it('walks canary10-5m-like steps to 100 % and succeeds, one revision per step', async (t) => {
    const h = await harness(t);
    const started = await h.rollouts.begin('shop', h.spec({ to: 'green', steps: [{ weight: 10, pause: '5m' }, { weight: 50, pause: '5m' }, { weight: 100 }], analysis: { minRequests: 10 } }), { by: 'ci' });
    assert.equal(started.state, 'running');
    assert.equal(started.step, 1);
    assert.equal(started.nextInMs, 300_000);
    assert.deepEqual(h.weights(), { blue: 9000, green: 1000 });
    h.setStats('green', 50, 0);
    await h.advance(299_000);
    assert.deepEqual(h.weights(), { blue: 9000, green: 1000 }, 'still step 1 a second before its pause ends');
    await h.advance(1_000);
    assert.deepEqual(h.weights(), { blue: 5000, green: 5000 });
    await h.advance(300_000);
    assert.deepEqual(h.weights(), { blue: 0, green: 10_000 });
    const done = await h.rollouts.current('shop');
    assert.equal(done.state, 'succeeded');
    assert.equal(done.step, 3);
    assert.equal(await h.counted('succeeded'), 1);
    const history = await h.controller.history('shop', 10);
    assert.deepEqual(history.slice(0, 3).map((e) => e.reason), ['rollout r-test step 3/3: green 100%', 'rollout r-test step 2/3: green 50%', 'rollout r-test step 1/3: green 10%']);
    assert.ok(history.slice(0, 3).every((e) => e.action === 'rollout' && e.by === 'ci'));
  });

  it('rolls back to the starting weights when `to` fails the analysis, with the figures in the history', async (t) => {
    const h = await harness(t);
    await h.controller.setWeights('shop', { blue: 9500, green: 500 }, { by: 'ops' });
    await h.rollouts.begin('shop', h.spec({ to: 'green', preset: 'linear10-every-1m', analysis: { maxErrorRate: 0.02, minRequests: 50 } }), { by: 'ci' });
    h.setStats('green', 49, 49);
    await h.advance(1_000);
    assert.equal((await h.rollouts.current('shop')).state, 'running', 'too few requests: no judgement yet');
    assert.equal((await h.rollouts.current('shop')).lastAnalysis?.verdict, 'waiting');
    h.setStats('blue', 500, 0);
    h.setStats('green', 100, 12, 30);
    await h.advance(1_000);
    assert.deepEqual(h.weights(), { blue: 9500, green: 500 });
    const r = await h.rollouts.current('shop');
    assert.equal(r.state, 'rolled-back');
    assert.equal(r.reason, 'analysis failed: green error rate 12% > 2% over 10s (100 requests, 12 errors; others 0%, p99 10ms)');
    assert.equal(r.lastAnalysis?.verdict, 'fail');
    const [last] = await h.controller.history('shop', 1);
    assert.equal(last?.reason, 'rollout r-test rolled back: green error rate 12% > 2% over 10s (100 requests, 12 errors; others 0%, p99 10ms)');
    assert.equal(last?.by, 'switchyard');
    assert.equal(await h.counted('rolled-back'), 1);
  });

  it('with onFailure: pause, pauses instead, and resume does not judge the same errors again', async (t) => {
    const h = await harness(t);
    await h.rollouts.begin('shop', h.spec({ to: 'green', steps: [{ weight: 20, pause: '10m' }], onFailure: 'pause', analysis: { minRequests: 10 } }), { by: 'ci' });
    h.setStats('green', 100, 50);
    await h.advance(60_000);
    let r = await h.rollouts.current('shop');
    assert.equal(r.state, 'paused');
    assert.match(r.reason ?? '', /^analysis failed: green error rate 50% > 1%.*; paused \(onFailure: pause\)$/);
    assert.equal(r.remainingMs, 540_000);
    assert.deepEqual(h.weights(), { blue: 8000, green: 2000 }, 'weights stay');
    await h.advance(3_600_000);
    assert.deepEqual(h.weights(), { blue: 8000, green: 2000 }, 'a paused rollout does not move');
    r = await h.rollouts.command('shop', 'resume', { by: 'ops' });
    assert.equal(r.state, 'running');
    assert.equal(r.nextInMs, 540_000);
    await h.advance(5_000);
    assert.equal((await h.rollouts.current('shop')).state, 'running', 'the window still covers the time before the resume');
    h.setStats('green', 100, 0);
    await h.advance(540_000);
    assert.equal((await h.rollouts.current('shop')).state, 'succeeded');
    assert.deepEqual(h.weights(), { blue: 0, green: 10_000 });
  });

  it('a step refused by the health gate fails like an analysis', async (t) => {
    const h = await harness(t);
    await h.rollouts.begin('shop', h.spec({ to: 'green', steps: [{ weight: 10, pause: '1m' }] }), { by: 'ci' });
    h.setStats('green', 200, 0);
    h.unhealthy.add('green');
    await h.advance(60_000);
    const r = await h.rollouts.current('shop');
    assert.equal(r.state, 'rolled-back');
    assert.equal(r.reason, 'analysis failed: step 2 refused: pool "green" has no healthy target');
    assert.deepEqual(h.weights(), { blue: 10_000, green: 0 });
  });

  it('a rollout started while `to` has 12.35 % skips the steps below it: it never lowers `to`', async (t) => {
    const h = await harness(t);
    await h.controller.setWeights('shop', { blue: 8765, green: 1235 }, { by: 'ops' });
    const started = await h.rollouts.begin('shop', h.spec({ to: 'green', steps: [{ weight: 5, pause: '1m' }, { weight: 10, pause: '1m' }, { weight: 25, pause: '1m' }], analysis: null }), { by: 'ci' });
    assert.equal(started.step, 3);
    assert.deepEqual(h.weights(), { blue: 7500, green: 2500 });
    await h.advance(60_000);
    assert.deepEqual(h.weights(), { blue: 0, green: 10_000 });
    assert.equal((await h.rollouts.current('shop')).state, 'succeeded');
  });

  it('holds a step past its pause until `to` has served minRequests, then goes on', async (t) => {
    const h = await harness(t);
    await h.rollouts.begin('shop', h.spec({ to: 'green', steps: [{ weight: 10, pause: '1m' }, { weight: 50, pause: '1m' }], analysis: { minRequests: 20 } }), { by: 'ci' });
    await h.advance(60_000);
    await h.advance(5 * 60_000);
    assert.deepEqual(h.weights(), { blue: 9000, green: 1000 }, 'no traffic: nothing judged, no step taken');
    const held = await h.rollouts.current('shop');
    assert.equal(held.state, 'running');
    assert.equal(held.lastAnalysis?.verdict, 'waiting');
    h.setStats('green', 20, 0);
    await h.advance(1_000);
    assert.deepEqual(h.weights(), { blue: 5000, green: 5000 });
  });

  it('fails a step that never gets minRequests once maxWait has passed, and rolls back', async (t) => {
    const h = await harness(t);
    await h.rollouts.begin('shop', h.spec({ to: 'green', steps: [{ weight: 10, pause: '1m' }], analysis: { minRequests: 20, maxWait: '5m' } }), { by: 'ci' });
    h.setStats('green', 3, 0);
    await h.advance(60_000);
    await h.advance(4 * 60_000 + 59_000);
    assert.equal((await h.rollouts.current('shop')).state, 'running');
    await h.advance(1_000);
    const r = await h.rollouts.current('shop');
    assert.equal(r.state, 'rolled-back');
    assert.equal(r.reason, 'analysis failed: green served 3 of the 20 requests needed to judge step 1 within maxWait 300s after its pause');
    assert.deepEqual(h.weights(), { blue: 10_000, green: 0 });
  });

  it('an instance without the lease rolls a failing canary back at once, and the driver does not roll back twice', async (t) => {
    const h = await harness(t);
    const notHeld = { held: () => false, holder: async () => 'another', start: () => undefined, close: async () => undefined };
    const bystander = new Rollouts({ controller: h.controller, stats: h.stats, store: h.records, lease: notHeld, logger: h.logger, now: h.now, schedule: () => () => undefined });
    t.after(() => bystander.close());
    await h.rollouts.begin('shop', h.spec({ to: 'green', steps: [{ weight: 10, pause: '10m' }], analysis: { minRequests: 10 } }), { by: 'ci' });
    h.setStats('green', 100, 40);
    await bystander.tick();
    const r = await h.rollouts.current('shop');
    assert.equal(r.state, 'rolled-back');
    assert.match(r.reason ?? '', /^analysis failed: green error rate 40% > 1%/);
    assert.deepEqual(h.weights(), { blue: 10_000, green: 0 });
    await h.rollouts.tick();
    await bystander.tick();
    const history = await h.controller.history('shop', 10);
    assert.equal(history.filter((e) => e.reason?.startsWith('rollout r-test rolled back') === true).length, 1, 'one rollback in the history');
    assert.equal(await h.counted('rolled-back'), 0, 'the driver did not count a rollback of its own');
  });

  it('a rollback another instance wrote but did not record yet ends the rollout; the driver never steps on from it', async (t) => {
    const h = await harness(t);
    const started = await h.rollouts.begin('shop', h.spec({ to: 'green', steps: [{ weight: 10, pause: '1m' }, { weight: 50, pause: '1m' }], analysis: { minRequests: 10 } }), { by: 'ci' });
    // what an instance that judged the canary failing writes first (it died before the record)
    await h.controller.setWeights('shop', { blue: 10_000, green: 0 }, { by: 'switchyard', reason: `rollout ${started.id} rolled back: green error rate 40% > 1%`, expectedRevision: h.controller.state('shop').revision }, 'rollout');
    h.setStats('green', 100, 0); // the window passes now
    await h.advance(60_000);
    const r = await h.rollouts.current('shop');
    assert.equal(r.state, 'rolled-back');
    assert.equal(r.reason, 'analysis failed: green error rate 40% > 1%');
    assert.deepEqual(h.weights(), { blue: 10_000, green: 0 });
  });

  it('start, pause, resume, promote and abort answer 409 where they make no sense', async (t) => {
    const h = await harness(t);
    await assert.rejects(h.rollouts.current('shop'), { code: 'NOT_FOUND' });
    await h.rollouts.begin('shop', h.spec({ to: 'green', preset: 'canary10-5m' }), { by: 'ci' });
    await assert.rejects(h.rollouts.begin('shop', h.spec({ to: 'green', preset: 'canary10-5m' }), { by: 'ci' }), { code: 'CONFLICT' });
    assert.equal((await h.rollouts.command('shop', 'pause', { by: 'ops' })).state, 'paused');
    assert.equal((await h.rollouts.command('shop', 'pause', { by: 'ops' })).state, 'paused', 'pause is idempotent');
    await assert.rejects(h.rollouts.begin('shop', h.spec({ to: 'green', preset: 'canary10-5m' }), { by: 'ci' }), { code: 'CONFLICT' }, 'paused still counts');
    const aborted = await h.rollouts.command('shop', 'abort', { by: 'ops', reason: 'bad build' });
    assert.equal(aborted.state, 'aborted');
    assert.equal(aborted.reason, 'aborted by ops: bad build');
    assert.deepEqual(h.weights(), { blue: 10_000, green: 0 });
    await assert.rejects(h.rollouts.command('shop', 'resume', { by: 'ops' }), { code: 'CONFLICT', message: /has been aborted; nothing to resume/ });
    await h.controller.switchTo('shop', 'green', { by: 'ops' });
    await assert.rejects(h.rollouts.begin('shop', h.spec({ to: 'green', preset: 'canary10-5m' }), { by: 'ci' }), { code: 'CONFLICT', message: /already has 100 %/ });
  });

  it('a promote refused by the health gate leaves the rollout running', async (t) => {
    const h = await harness(t);
    await h.rollouts.begin('shop', h.spec({ to: 'green', preset: 'canary10-5m' }), { by: 'ci' });
    h.unhealthy.add('green');
    await assert.rejects(h.rollouts.command('shop', 'promote', { by: 'ops' }), { code: 'POOL_UNHEALTHY' });
    assert.equal((await h.rollouts.current('shop')).state, 'running');
    const promoted = await h.rollouts.command('shop', 'promote', { by: 'ops', force: true });
    assert.equal(promoted.state, 'succeeded');
    assert.deepEqual(h.weights(), { blue: 0, green: 10_000 });
  });

  it('a manual weights change aborts it, naming the revision, and keeps the manual weights', async (t) => {
    const h = await harness(t);
    await h.rollouts.begin('shop', h.spec({ to: 'green', preset: 'linear10-every-1m' }), { by: 'ci' });
    const manual = await h.controller.setWeights('shop', { blue: 7000, green: 3000 }, { by: 'ops' });
    await h.advance(0);
    const r = await h.rollouts.current('shop');
    assert.equal(r.state, 'aborted');
    assert.equal(r.reason, `manual change at revision ${manual.revision} (weights by ops)`);
    await h.advance(120_000);
    assert.deepEqual(h.weights(), { blue: 7000, green: 3000 });
  });
});

describe('the driver after a crash', () => {
  it('takes over a start that died between its first step and its record (after a grace)', async (t) => {
    const h = await harness(t);
    const state = h.controller.state('shop');
    const written = await h.controller.setWeights('shop', { blue: 8000, green: 2000 }, { by: 'ci', reason: 'step 1 of a dying start', expectedRevision: state.revision }, 'rollout');
    const now = 1_000_000;
    const orphan = { id: 'r-orphan', app: 'shop', to: 'green', from: { blue: 10_000, green: 0 }, steps: [{ weight: 2000, pauseMs: 60_000 }, { weight: 10_000, pauseMs: 0 }], step: 1, state: 'running', startedAt: now, stepStartedAt: now, nextAt: null, remainingMs: null, judgeFrom: 0, analysis: null, onFailure: 'rollback', reason: null, lastAnalysis: null, by: 'ci', revision: state.revision, version: 1, updatedAt: now, endedAt: null } as Rollout;
    assert.equal((await h.records.put(orphan, 0)).ok, true);
    await h.advance(5_000);
    const adopted = await h.records.get('shop');
    assert.equal(adopted?.revision, written.revision, 'its own write (action rollout) is adopted, not taken for a manual change');
    assert.equal(adopted?.nextAt, null, 'left alone within the grace');
    await h.advance(10_000);
    assert.equal((await h.records.get('shop'))?.nextAt, now + 60_000);
    await h.advance(60_000);
    assert.equal((await h.rollouts.current('shop')).state, 'succeeded');
    assert.deepEqual(h.weights(), { blue: 0, green: 10_000 });
  });

  it('does not write a step twice when the weights are already in place', async (t) => {
    const h = await harness(t);
    await h.rollouts.begin('shop', h.spec({ to: 'green', steps: [{ weight: 10, pause: '1m' }, { weight: 30, pause: '1m' }], analysis: null }), { by: 'ci' });
    // a driver that wrote step 2 and died before recording it
    const rec = (await h.records.get('shop')) as Rollout;
    const step2 = await h.controller.setWeights('shop', { blue: 7000, green: 3000 }, { by: 'ci', expectedRevision: rec.revision }, 'rollout');
    await h.advance(60_000);
    const r = await h.rollouts.current('shop');
    assert.equal(r.step, 2);
    assert.equal(r.revision, step2.revision);
    assert.equal(h.controller.state('shop').revision, step2.revision, 'no second write of the same weights');
  });
});

describe('rollout records on file', () => {
  it('survive a reopen, and a put with a stale version is refused', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'switchyard-rollout-file-'));
    t.after(() => rm(dir, { recursive: true, force: true, maxRetries: 5 }));
    const path = rolloutsPathBeside(join(dir, 'state.json'));
    assert.equal(path, join(dir, 'state.rollouts.json'));
    const a = await FileRolloutStore.open(path);
    const rec = { id: 'r-1', app: 'shop', version: 1, state: 'running' } as unknown as Rollout;
    assert.equal((await a.put(rec, 0)).ok, true);
    const stale = await a.put({ ...rec, version: 1 }, 0);
    assert.equal(stale.ok, false);
    assert.equal((await a.put({ ...rec, version: 2, state: 'paused' }, 1)).ok, true);
    const b = await FileRolloutStore.open(path);
    assert.deepEqual(await b.get('shop'), { ...rec, version: 2, state: 'paused' });
  });
});
