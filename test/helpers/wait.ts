import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';

export interface UntilOptions {
  /** how long to wait before the test fails, ms @default 5000 */
  readonly timeout?: number | undefined;
  /** pause between two probes, ms @default 20 */
  readonly interval?: number | undefined;
  /** more to say when it times out (a child process's output, …) */
  readonly detail?: () => string;
}

type NotYet = undefined | false;

/**
 * The tests' one poll helper: probes until `probe` answers something other than `undefined` or
 * `false` and resolves with that answer; fails the test if none came within `timeout`. Built on
 * node:test's `t.waitFor`. An exception the probe throws fails the test at once: it is not a
 * "not yet" (t.waitFor alone would retry it until the timeout).
 *
 * Once t.waitFor has timed out, a probe still in flight must not throw: t.waitFor would arm its
 * poll timer again and poll for ever, keeping the process alive (Node 24's TestContext.waitFor
 * re-arms on every throw without checking whether it already gave up).
 */
export async function until<R>(t: TestContext, what: string, probe: () => R | Promise<R>, { timeout = 5_000, interval = 20, detail }: UntilOptions = {}): Promise<Exclude<R, NotYet>> {
  type Outcome = { value: Exclude<R, NotYet> } | { error: unknown };
  let outcome: Outcome;
  let over = false;
  try {
    outcome = await t.waitFor(
      async (): Promise<Outcome> => {
        if (over) return { error: undefined };
        let value: R;
        try {
          value = await probe();
        } catch (error) {
          return { error };
        }
        if (over) return { error: undefined };
        if (value === undefined || value === false) throw new Error(`not yet: ${what}`);
        return { value: value as Exclude<R, NotYet> };
      },
      { timeout, interval },
    );
  } catch {
    over = true;
    assert.fail(`timed out after ${timeout} ms waiting for ${what}${detail === undefined ? '' : `:\n${detail()}`}`);
  }
  if ('error' in outcome) throw outcome.error;
  return outcome.value;
}
