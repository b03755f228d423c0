import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseConfig } from '../../src/config/load.ts';
import { initialState, nextState } from '../../src/control/next-state.ts';
import { DrainDeadlines, spreadWindow } from '../../src/dataplane/drain.ts';
import type { Cuttable } from '../../src/dataplane/open-set.ts';
import { ManualClock } from '../helpers/clock.ts';
import { runtimeFor } from '../helpers/runtime.ts';
import { buildAppRoute, buildSnapshot, type Snapshot } from '../../src/routing/snapshot.ts';
import type { RoutingState } from '../../src/state/types.ts';

const config = parseConfig({
  apps: [
    {
      name: 'shop',
      hosts: ['*'],
      pools: { blue: { version: '1', targets: ['http://127.0.0.1:1'] }, green: { version: '2', targets: ['http://127.0.0.1:2'] } },
      drain: { timeout: '10s' },
    },
  ],
});
const appCfg = config.apps[0]!;
const T0 = Date.parse('2026-01-01T00:00:00Z');

class FakeConn implements Cuttable {
  cutAt: number | null = null;
  openSlot = -1;
  private readonly clock: ManualClock;
  constructor(clock: ManualClock) {
    this.clock = clock;
  }
  cut(reason: 'drain' | 'shutdown'): void {
    assert.equal(reason, 'drain');
    this.cutAt ??= this.clock.now;
  }
}

function setup() {
  const clock = new ManualClock(T0);
  const runtime = runtimeFor(config);
  const holder: { snapshot: Snapshot } = { snapshot: buildSnapshot([]) };
  let state: RoutingState = initialState('shop', { blue: 10000, green: 0 }, clock.now);
  const apply = (weights: Record<string, number>) => {
    state = nextState(state, { weights, action: 'weights', by: 't', reason: null, now: clock.now });
    holder.snapshot = buildSnapshot([buildAppRoute(0, appCfg, state)]);
    drains.update();
  };
  const drained: string[] = [];
  const drains = new DrainDeadlines({ runtime, source: holder, now: () => clock.now, timers: clock, onDeadline: (app, pool, n) => drained.push(`${app}/${pool}:${n}`) });
  holder.snapshot = buildSnapshot([buildAppRoute(0, appCfg, state)]);
  drains.update();
  const blue = runtime.pool('shop', 'blue')!;
  const open = (n: number) => Array.from({ length: n }, () => {
    const c = new FakeConn(clock);
    blue.open.add(c);
    return c;
  });
  return { clock, apply, drains, drained, open };
}

describe('drain deadlines', () => {
  it('spread window is 10 % of drain.timeout, at most 5 s', () => {
    assert.equal(spreadWindow(1000), 100);
    assert.equal(spreadWindow(10_000), 1000);
    assert.equal(spreadWindow(300_000), 5000);
  });

  it('cut a pool\'s open connections when drainingSince + drain.timeout passes, spread over the window', () => {
    const { clock, apply, drains, drained, open } = setup();
    const conns = open(40);
    clock.advance(5);
    apply({ blue: 0, green: 10000 });
    const since = clock.now;
    assert.deepEqual(drains.pending(), ['shop/blue'], 'green is serving again, blue is draining');
    clock.advance(9_999);
    assert.ok(conns.every((c) => c.cutAt === null), 'nothing is cut before the deadline');
    clock.advance(1);
    assert.deepEqual(drained, ['shop/blue:40']);
    assert.ok(conns.some((c) => c.cutAt === since + 10_000), 'the first batch goes at the deadline');
    assert.ok(conns.some((c) => c.cutAt === null), 'not all at once');
    clock.advance(spreadWindow(10_000));
    const times = conns.map((c) => c.cutAt as number);
    assert.ok(times.every((t) => t >= since + 10_000 && t < since + 10_000 + spreadWindow(10_000)), `cut times ${Math.min(...times)}..${Math.max(...times)}`);
    assert.ok(new Set(times).size > 10, 'spread over many batches');
    assert.equal(clock.pending, 0);
  });

  it('a later revision that keeps the pool at 0 keeps its clock', () => {
    const { clock, apply, open } = setup();
    const [c] = open(1);
    apply({ blue: 0, green: 10000 });
    const since = clock.now;
    clock.advance(6_000);
    apply({ blue: 0, green: 10000 });
    clock.advance(4_000);
    assert.equal(c!.cutAt, since + 10_000);
  });

  it('a pool whose weight comes back before the deadline is not cut, and a new drain starts a new clock', () => {
    const { clock, apply, drains, open } = setup();
    const [c] = open(1);
    apply({ blue: 0, green: 10000 });
    clock.advance(5_000);
    apply({ blue: 5000, green: 5000 });
    assert.deepEqual(drains.pending(), []);
    clock.advance(20_000);
    assert.equal(c!.cutAt, null);
    apply({ blue: 0, green: 10000 });
    const again = clock.now;
    clock.advance(10_000);
    assert.equal(c!.cutAt, again + 10_000);
  });

  it('weight coming back during the spread stops the remaining cuts', () => {
    const { clock, apply, open } = setup();
    const conns = open(20);
    apply({ blue: 0, green: 10000 });
    clock.advance(10_000);
    const cutEarly = conns.filter((c) => c.cutAt !== null).length;
    assert.ok(cutEarly > 0 && cutEarly < 20);
    apply({ blue: 10000, green: 0 });
    clock.advance(10_000);
    assert.equal(conns.filter((c) => c.cutAt !== null).length, cutEarly);
  });

  it('a deadline already past at start (a restart) fires at once; close() cancels everything', () => {
    const { clock, apply, drains, open } = setup();
    apply({ blue: 0, green: 10000 });
    clock.now += 60_000; // time passes while the timer is not looked at
    const [c] = open(1);
    drains.close();
    clock.advance(100_000);
    assert.equal(c!.cutAt, null, 'closed: nothing fires');
    drains.update();
    clock.advance(0);
    assert.notEqual(c!.cutAt, null);
  });
});
