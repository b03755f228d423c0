import { setTimeout as sleep } from 'node:timers/promises';

/** Waits until the wall clock enters a new second, so the last second's requests are in the stats windows. */
export async function nextSecond(): Promise<void> {
  await sleep(1000 - (Date.now() % 1000) + 20);
}

/**
 * A clock moved by hand, with timers that fire only when the test moves time forward (in time
 * order, each at its own instant): for code that takes `now` and `setTimeout`/`clearTimeout`
 * (drain deadlines, health checks), so a test proves a deadline without waiting for it.
 */
export class ManualClock {
  now: number;
  private seq = 0;
  private readonly timers = new Map<number, { at: number; fn: () => void }>();
  constructor(start = Date.parse('2026-01-01T00:00:00Z')) {
    this.now = start;
  }
  setTimeout(fn: () => void, ms: number): unknown {
    const id = ++this.seq;
    this.timers.set(id, { at: this.now + ms, fn });
    return id;
  }
  clearTimeout(handle: unknown): void {
    this.timers.delete(handle as number);
  }
  /** timers armed and not yet fired or cleared */
  get pending(): number {
    return this.timers.size;
  }
  /** Moves time forward by `ms`, firing every timer due on the way at its own instant. */
  advance(ms: number): void {
    const end = this.now + ms;
    for (;;) {
      let next: [number, { at: number; fn: () => void }] | undefined;
      for (const e of this.timers) if (e[1].at <= end && (next === undefined || e[1].at < next[1].at)) next = e;
      if (next === undefined) break;
      this.timers.delete(next[0]);
      this.now = next[1].at;
      next[1].fn();
    }
    this.now = end;
  }
}

/**
 * Waits until the wall clock has passed `at` (ms since the epoch) by `margin` ms: for a deadline
 * the code under test states itself (`ejectedUntil`, `drainingSince` + timeout), instead of a
 * fixed sleep that only hopes to cover it on a loaded machine.
 */
export async function pastInstant(at: number, margin = 0): Promise<void> {
  for (let left = at + margin - Date.now(); left >= 0; left = at + margin - Date.now()) await sleep(left + 1);
}
