import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { parseConfig } from '../../src/config/load.ts';
import type { HealthConfig } from '../../src/config/schema.ts';
import type { Target } from '../../src/dataplane/target.ts';
import { runtimeFor } from '../helpers/runtime.ts';
import { ConfigError, SwitchyardError } from '../../src/errors.ts';
import { ActiveChecker, type CheckedTarget, type Transition } from '../../src/health/active.ts';
import { HealthMonitor, healthFigures } from '../../src/health/monitor.ts';
import { OutlierDetector } from '../../src/health/passive.ts';
import type { ProbeResult } from '../../src/health/probe.ts';
import { versionAt } from '../../src/health/probe.ts';

const targets = (n: number) => Array.from({ length: n }, (_, i) => `http://10.0.0.${i + 1}:8080`);

function config(health: unknown, blue = targets(2), green = targets(1).map((u) => u.replace('10.0.0', '10.0.1'))) {
  return parseConfig({
    apps: [{ name: 'shop', hosts: ['*'], pools: { blue: { version: '1', targets: blue }, green: { version: '2', targets: green } }, ...(health === undefined ? {} : { health }) }],
  });
}

function issuesOf(health: unknown): string[] {
  try {
    config(health);
  } catch (err) {
    assert.ok(err instanceof ConfigError);
    return [...err.issues];
  }
  assert.fail('expected a ConfigError');
}

const pass: ProbeResult = { ok: true, status: 200, version: null, error: null };
const fail: ProbeResult = { ok: false, status: 500, version: null, error: 'status 500' };

describe('health config', () => {
  it('fills the documented defaults', () => {
    const h = config({}).apps[0]?.health;
    assert.deepEqual(h, { path: '/healthz', interval: 2000, timeout: 1000, rise: 2, fall: 3, expectStatus: { min: 200, max: 399 }, passive: { failures: 5, ejectFor: 30000, maxEjectedShare: 0.5, stallAfter: 5000 } });
  });

  it('reads expectStatus as a status, a class or a range, and versionFrom as json or header', () => {
    const status = (v: unknown) => config({ expectStatus: v }).apps[0]?.health?.expectStatus;
    assert.deepEqual(status(200), { min: 200, max: 200 });
    assert.deepEqual(status('2xx'), { min: 200, max: 299 });
    assert.deepEqual(status('200-204'), { min: 200, max: 204 });
    assert.deepEqual(config({ versionFrom: { header: 'X-Version' } }).apps[0]?.health?.versionFrom, { header: 'x-version' });
    assert.equal(config({ passive: false }).apps[0]?.health?.passive, null, 'passive checks off');
  });

  it('names the key path of a bad health setting', () => {
    assert.deepEqual(issuesOf({ expectStatus: '2xxx' }), ['apps[0].health.expectStatus: must be a status like 200, "2xx" or "200-399"']);
    assert.deepEqual(issuesOf({ expectStatus: '399-200' }), ['apps[0].health.expectStatus: the range must go from low to high']);
    assert.deepEqual(issuesOf({ versionFrom: {} }), ['apps[0].health.versionFrom: needs exactly one of json or header']);
    assert.deepEqual(issuesOf({ versionFrom: { json: 'version', header: 'x-version' } }), ['apps[0].health.versionFrom: needs exactly one of json or header']);
    assert.deepEqual(issuesOf({ versionFrom: { jsn: 'version' } }), ['apps[0].health.versionFrom.jsn: unknown key', 'apps[0].health.versionFrom: needs exactly one of json or header']);
    assert.deepEqual(issuesOf({ passive: { failures: 0 } }), ['apps[0].health.passive.failures: Too small: expected number to be >=1']);
    assert.deepEqual(issuesOf({ passive: { maxEjectedShare: 2 } }), ['apps[0].health.passive.maxEjectedShare: Too big: expected number to be <=1']);
    assert.deepEqual(issuesOf({ passive: { ejectFor: 'soon' } }), ['apps[0].health.passive.ejectFor: must be a duration like 250ms, 5s, 10m or 1h']);
    assert.deepEqual(issuesOf({ passive: true }), ['apps[0].health.passive: Invalid input: expected object, received boolean']);
  });
});

describe('active checks (HAProxy rise/fall)', () => {
  function setup(rise: number, fall: number) {
    const runtime = runtimeFor(config({}));
    const target = runtime.pool('shop', 'blue')?.targets[0] as Target;
    const health = { ...(config({ rise, fall }).apps[0]?.health as HealthConfig) };
    const c: CheckedTarget = { app: 'shop', pool: 'blue', target, health, passes: 0, failures: 0, last: null };
    const transitions: Transition[] = [];
    const checker = new ActiveChecker({ checks: [c], probe: async () => pass, now: () => 1000, onTransition: (t) => transitions.push(t) });
    return { runtime, target, c, checker, transitions };
  }

  it('starts up, goes down after `fall` consecutive failures and up after `rise` consecutive passes', async () => {
    const { runtime, target, c, checker, transitions } = setup(2, 3);
    assert.equal(target.healthy, true, 'up before any check, so a fresh proxy routes at once');
    const seq = (rs: ProbeResult[]) => rs.map((r) => (checker.record(c, r), target.healthy));
    assert.deepEqual(seq([fail, fail, pass, fail, fail]), [true, true, true, true, true], 'a pass resets the failure streak');
    assert.deepEqual(seq([fail]), [false]);
    assert.equal(transitions.length, 1);
    assert.equal(transitions[0]?.error, 'status 500');
    assert.deepEqual(seq([pass, fail, pass, pass]), [false, false, false, true]);
    assert.equal(transitions.length, 2);
    assert.deepEqual(c.last, { at: 1000, ok: true, status: 200, error: null });
    await checker.close();
    await runtime.close();
  });

  it('schedules the next check `interval` after one ends, and stops on close', async () => {
    const runtime = runtimeFor(config({}));
    const target = runtime.pool('shop', 'blue')?.targets[0] as Target;
    const health = config({ interval: '5s' }).apps[0]?.health as HealthConfig;
    const pending: { fn: () => void; ms: number }[] = [];
    const timers = { setTimeout: (fn: () => void, ms: number) => pending.push({ fn, ms }), clearTimeout: () => undefined };
    let probes = 0;
    const c: CheckedTarget = { app: 'shop', pool: 'blue', target, health, passes: 0, failures: 0, last: null };
    const checker = new ActiveChecker({ checks: [c], probe: async () => (probes++, pass), timers });
    checker.start();
    assert.deepEqual(pending.map((p) => p.ms), [0]);
    pending.shift()?.fn();
    await new Promise((r) => setImmediate(r));
    assert.equal(probes, 1);
    assert.deepEqual(pending.map((p) => p.ms), [5000]);
    await checker.close();
    pending.shift()?.fn();
    await new Promise((r) => setImmediate(r));
    assert.equal(pending.length, 0, 'nothing scheduled after close');
    await runtime.close();
  });
});

describe('passive checks (outlier detection)', () => {
  function pool(n: number, partial: { failures: number; ejectFor: number; maxEjectedShare: number; stallAfter?: number }) {
    const cfg = { stallAfter: 0, ...partial };
    const runtime = runtimeFor(config({}, targets(n)));
    const ts = runtime.pool('shop', 'blue')?.targets as Target[];
    let now = 10_000;
    const held: string[] = [];
    const d = new OutlierDetector(ts, cfg, { now: () => now, onEject: () => undefined, onHeld: (t) => held.push(t.url) });
    for (const t of ts) t.outlier = d;
    return { runtime, ts, d, held, at: (ms: number) => (now = ms), now: () => now };
  }
  const failN = (t: Target, n: number) => {
    for (let i = 0; i < n; i++) t.recordResult(false);
  };

  it('ejects after `failures` in a row, for `ejectFor`, then the target is up again', async () => {
    const { runtime, ts, at } = pool(2, { failures: 3, ejectFor: 500, maxEjectedShare: 0.5 });
    const t = ts[0] as Target;
    failN(t, 2);
    assert.equal(t.isUp(10_000), true);
    failN(t, 1);
    assert.equal(t.ejectedUntil, 10_500);
    assert.equal(t.isUp(10_499), false);
    assert.equal(t.consecutiveFailures, 0);
    at(10_500);
    assert.equal(t.isUp(10_500), true);
    await runtime.close();
  });

  it('never ejects more than maxEjectedShare of the pool, nor its last target in rotation', async () => {
    const four = pool(4, { failures: 1, ejectFor: 1000, maxEjectedShare: 0.5 });
    assert.equal(four.d.cap, 2);
    for (const t of four.ts) failN(t, 1);
    assert.deepEqual(four.ts.map((t) => t.ejectedUntil > four.now()), [true, true, false, false]);
    assert.deepEqual(four.held, [four.ts[2]?.url, four.ts[3]?.url], 'held ejections are reported once each');
    failN(four.ts[2] as Target, 5);
    assert.equal(four.held.length, 2, 'not on every failure after');
    await four.runtime.close();

    const one = pool(1, { failures: 1, ejectFor: 1000, maxEjectedShare: 1 });
    assert.equal(one.d.cap, 0, 'a lone target is never ejected');
    const two = pool(2, { failures: 1, ejectFor: 1000, maxEjectedShare: 1 });
    (two.ts[1] as Target).healthy = false;
    failN(two.ts[0] as Target, 3);
    assert.equal((two.ts[0] as Target).ejectedUntil, 0, 'the only target up stays in rotation');
    await one.runtime.close();
    await two.runtime.close();
  });
});

describe('health monitor', () => {
  it('gates writes that raise a sick pool, notes forced ones, and exposes figures for metrics', async () => {
    const cfg = config({ versionFrom: { json: 'version' } });
    const runtime = runtimeFor(cfg);
    const monitor = new HealthMonitor({ config: cfg, runtime, logger: pino({ level: 'silent' }), probe: async () => ({ ...pass, version: '2' }), now: () => 5000 });
    const app = cfg.apps[0] as (typeof cfg.apps)[number];
    const green = runtime.pool('shop', 'green')?.targets[0] as Target;
    green.healthy = false;
    const current = { blue: 10_000, green: 0 };
    assert.throws(() => monitor.guard(app, { blue: 0, green: 10_000 }, { by: 't' }, current), (e: unknown) => e instanceof SwitchyardError && e.code === 'POOL_UNHEALTHY');
    assert.equal(monitor.guard(app, { blue: 0, green: 10_000 }, { by: 't', force: true }, current), 'forced: pool "green" has no healthy target');
    assert.equal(monitor.guard(app, { blue: 10_000, green: 0 }, { by: 't' }, { blue: 5000, green: 5000 }), undefined, 'lowering a sick pool passes');
    const figures = healthFigures(runtime, cfg, 5000);
    assert.deepEqual(
      figures.map((f) => [f.pool, f.target, f.state, f.up]),
      [['blue', 'http://10.0.0.1:8080', 'up', 1], ['blue', 'http://10.0.0.2:8080', 'up', 1], ['green', 'http://10.0.1.1:8080', 'down', 0]],
    );
    // the version check probes afresh: a target down by its periodic checks but passing now counts
    const report = await monitor.verifyVersion('shop', 'green', '2');
    assert.deepEqual(report.targets, [{ url: 'http://10.0.1.1:8080', passed: true, reportedVersion: '2', error: null }]);
    await assert.rejects(monitor.verifyVersion('shop', 'purple', '2'), (e: unknown) => e instanceof SwitchyardError && e.code === 'UNKNOWN_POOL');
    await monitor.close();
    await runtime.close();
  });

  it('reads a version at a dotted JSON path, strings and numbers only', () => {
    assert.equal(versionAt({ build: { version: '1.2.3' } }, 'build.version'), '1.2.3');
    assert.equal(versionAt({ version: 7 }, 'version'), '7');
    assert.equal(versionAt({ version: { major: 1 } }, 'version'), null);
    assert.equal(versionAt(['x'], 'version'), null);
    assert.equal(versionAt(null, 'version'), null);
  });
});
