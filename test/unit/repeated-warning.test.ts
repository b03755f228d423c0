import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import pino from 'pino';
import { RepeatedWarning } from '../../src/repeated-warning.ts';

function capture(): { logger: pino.Logger; lines: { level: number; msg: string; [k: string]: unknown }[] } {
  const lines: { level: number; msg: string }[] = [];
  const logger = pino({ level: 'debug' }, new Writable({ write(c: Buffer, _e, cb) {
    lines.push(JSON.parse(String(c)) as { level: number; msg: string });
    cb();
  } }));
  return { logger, lines };
}

describe('a warning that repeats while a dependency is down', () => {
  it('logs the first failure at once, then at most one line a minute with how many it left out, then the recovery once', () => {
    const { logger, lines } = capture();
    let now = 0;
    const w = new RepeatedWarning(logger, { now: () => now });
    // a failure every second for three minutes
    for (; now < 180_000; now += 1000) w.failed('shop', { app: 'shop' }, 'round failed');
    const warns = lines.filter((l) => l.level === 40);
    assert.equal(warns.length, 3, 'at 0 s, 60 s and 120 s');
    assert.equal(warns[0]?.msg, 'round failed');
    assert.equal(warns[1]?.repeated, 60);
    assert.equal(warns[1]?.failingForMs, 60_000);
    assert.match(warns[2]?.msg ?? '', /still failing: 121 times in a row/);
    assert.equal(w.streak('shop'), 180);
    w.succeeded('shop', { app: 'shop' }, 'works again');
    w.succeeded('shop', { app: 'shop' }, 'works again');
    const infos = lines.filter((l) => l.level === 30);
    assert.equal(infos.length, 1, 'the recovery is said once');
    assert.equal(infos[0]?.failures, 180);
    assert.equal(w.streak('shop'), 0);
    // a new streak is logged at once again
    w.failed('shop', { app: 'shop' }, 'round failed');
    assert.equal(lines.filter((l) => l.level === 40).length, 4);
  });

  it('keeps keys apart: one app failing does not silence another', () => {
    const { logger, lines } = capture();
    const w = new RepeatedWarning(logger, { now: () => 0 });
    w.failed('shop', {}, 'a');
    w.failed('shop', {}, 'a');
    w.failed('api', {}, 'b');
    assert.deepEqual(lines.map((l) => l.msg), ['a', 'b']);
  });
});
