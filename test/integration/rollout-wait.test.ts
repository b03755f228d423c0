import assert from 'node:assert/strict';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { describe, it, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { runCli } from '../../src/cli/main.ts';
import { startProxy, twoPools, TOKEN, type TestProxy } from '../helpers/proxy.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';

/**
 * `switchyard rollout APP start|status --wait`: what a release pipeline gates on. Exit 0 once
 * the rollout succeeded, 1 when it was rolled back or aborted (or outlived --timeout), 2 for a
 * bad call; run against a real proxy whose driver takes steps every 20 ms.
 */
describe('rollout --wait, for pipelines', () => {
  /** what green answers to proxied requests */
  let greenStatus = 200;

  async function setup(t: TestContext): Promise<{ p: TestProxy; sy: (...argv: string[]) => Promise<{ code: number; out: string; err: string }> }> {
    greenStatus = 200;
    const ups: Upstream[] = [await startUpstream('blue'), await startUpstream('green', (_req: IncomingMessage, res: ServerResponse) => res.writeHead(greenStatus).end('green'))];
    const p = await startProxy({ apps: [twoPools(ups[0]?.url ?? '', ups[1]?.url ?? '')] }, { rollouts: { tickMs: 20 } });
    t.after(async () => {
      await p.close();
      await Promise.all(ups.map((u) => u.close()));
    });
    const sy = async (...argv: string[]) => {
      const io = { out: '', err: '' };
      const code = await runCli(argv, { stdout: { write: (s: string) => (io.out += s) }, stderr: { write: (s: string) => (io.err += s) }, env: { SWITCHYARD_ADMIN_URL: p.adminUrl, SWITCHYARD_TOKEN: TOKEN } });
      return { code, ...io };
    };
    return { p, sy };
  }

  it('start --wait exits 0 once the rollout succeeded, having printed each step', async (t) => {
    const { p, sy } = await setup(t);
    const r = await sy('rollout', 'shop', 'start', '--to', 'green', '--steps', '50:200ms,100', '--no-analysis', '--wait', '--interval', '50ms');
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /running, step 1\/2 \(green 50%\)/);
    assert.match(r.out, /succeeded, step 2\/2 \(green 100%\)/);
    assert.deepEqual((await p.admin('GET', '/v1/apps/shop')).body.weights, { blue: 0, green: 100 });
  });

  it('exits 5 with the reason when the analysis rolls the rollout back', async (t) => {
    const { p, sy } = await setup(t);
    greenStatus = 500;
    let stop = false;
    const load = (async () => {
      while (!stop) {
        await p.get('/').catch(() => undefined);
        await sleep(2);
      }
    })();
    t.after(async () => {
      stop = true;
      await load;
    });
    const r = await sy('rollout', 'shop', 'start', '--to', 'green', '--steps', '50:10s,100', '--min-requests', '5', '--max-error-rate', '0.01', '--wait', '--interval', '50ms', '--timeout', '20s');
    assert.equal(r.code, 5, r.out + r.err);
    assert.match(r.err, /rollout r-[0-9a-f]{8} of shop rolled-back: .*error rate/);
    assert.deepEqual((await p.admin('GET', '/v1/apps/shop')).body.weights, { blue: 100, green: 0 });
  });

  it('status --wait exits 5 when someone aborts the rollout it waits on, and 3 at --timeout', async (t) => {
    const { p, sy } = await setup(t);
    assert.equal((await sy('rollout', 'shop', 'start', '--to', 'green', '--steps', '10:5m,100', '--no-analysis')).code, 0);
    const timedOut = await sy('rollout', 'shop', 'status', '--wait', '--timeout', '150ms', '--interval', '50ms');
    assert.equal(timedOut.code, 3);
    assert.match(timedOut.err, /still running at step 1\/2 after/);
    const waiting = sy('rollout', 'shop', 'status', '--wait', '--interval', '50ms', '--json');
    // paces the scenario: the abort comes while the CLI is polling
    await sleep(120);
    assert.equal((await p.admin('POST', '/v1/apps/shop/rollouts/current/abort', { reason: 'stop the release' })).status, 200);
    const r = await waiting;
    assert.equal(r.code, 5);
    // --json: the outcome on stderr is the JSON error envelope, with its code and exit code
    assert.deepEqual((JSON.parse(r.err) as { error: { code: string; exit: number } }).error, { code: 'ROLLOUT_ABORTED', message: (JSON.parse(r.err) as { error: { message: string } }).error.message, exit: 5 });
    assert.match(r.err, /aborted/);
    const lines = r.out.trim().split('\n').map((l) => JSON.parse(l) as { state: string });
    assert.deepEqual([lines[0]?.state, lines.at(-1)?.state], ['running', 'aborted'], '--json prints one rollout per line as it changes');
  });

  it('--wait prints a line at least every 10 s while nothing changes, with the figures and the time left (rollout and drain)', async (t) => {
    const { p, sy } = await setup(t);
    assert.equal((await sy('rollout', 'shop', 'start', '--to', 'green', '--steps', '10:10m,100', '--no-analysis')).code, 0);
    // the CLI's clock is the test's: each sleep moves it on at once, the proxy's answers stay as they are (a 10-minute step)
    const waitFor = async (argv: string[]): Promise<{ code: number; lines: { at: number; text: string }[] }> => {
      let clock = 1_000_000;
      const lines: { at: number; text: string }[] = [];
      const print = (s: string): void => {
        for (const text of s.split('\n').filter((l) => l !== '')) lines.push({ at: clock - 1_000_000, text });
      };
      const code = await runCli(argv, {
        stdout: { write: print },
        stderr: { write: print },
        env: { SWITCHYARD_ADMIN_URL: p.adminUrl, SWITCHYARD_TOKEN: TOKEN },
        now: () => clock,
        sleep: async (ms) => {
          clock += ms;
          await sleep(0);
        },
      });
      return { code, lines };
    };
    const gaps = (lines: { at: number }[]): number[] => lines.slice(1).map((l, i) => l.at - (lines[i] as { at: number }).at);
    // an --interval above 10 s does not stretch the gaps: the poll wakes up for the progress line
    const rollout = await waitFor(['rollout', 'shop', 'status', '--wait', '--timeout', '45s', '--interval', '30s']);
    assert.equal(rollout.code, 3, JSON.stringify(rollout.lines));
    const still = rollout.lines.filter((l) => /still waiting/.test(l.text));
    assert.deepEqual(still.map((l) => [l.at, /\(still waiting, (.+) left\)$/.exec(l.text)?.[1]]), [[10_000, '35s'], [20_000, '25s'], [30_000, '15s'], [40_000, '5s']]);
    // the figures: the step, the new pool's weight and when the next step comes (by the proxy's clock: about 10 min)
    assert.match(still[0]?.text ?? '', /^rollout \S+: running at step 1\/2 \(green 10%\), next step in (10m0s|9m\d+s) {2}\(/);
    assert.ok(Math.max(...gaps(rollout.lines)) <= 10_000, `gaps ${gaps(rollout.lines)}`);
    // drain --wait on the pool that still has weight: a line every 10 s saying so, then exit 1 at the timeout
    const drain = await waitFor(['drain', 'shop', 'blue', '--wait', '--timeout', '35s', '--interval', '1s']);
    assert.equal(drain.code, 1);
    const progress = drain.lines.filter((l) => /still waiting/.test(l.text));
    assert.deepEqual(progress.map((l) => l.at), [10_000, 20_000, 30_000]);
    assert.match(progress[0]?.text ?? '', /^blue {2}weight 90% {2}inflight 0 .*\(still waiting, 25s left\)$/);
    assert.ok(Math.max(...gaps(drain.lines)) <= 10_000, `gaps ${gaps(drain.lines)}`);
    // --json: the same lines as JSON, with the time left in ms
    const json = await waitFor(['drain', 'shop', 'blue', '--wait', '--timeout', '25s', '--json']);
    // stdout and stderr alike, every line is JSON (the note that blue still has weight too)
    const parsed = json.lines.map((l) => JSON.parse(l.text) as { leftMs?: number; note?: string });
    assert.match(parsed.find((v) => v.note !== undefined)?.note ?? '', /blue still gets 90%/);
    const jsonProgress = parsed.filter((v) => v.leftMs !== undefined);
    assert.deepEqual(jsonProgress.map((v) => v.leftMs), [15_000, 5_000]);
    assert.equal((JSON.parse(json.lines.at(-1)?.text ?? '{}') as { error: { code: string } }).error.code, 'WAIT_TIMED_OUT');
  });

  it('refuses a bad call with exit 2 before starting anything', async (t) => {
    const { p, sy } = await setup(t);
    assert.equal((await sy('rollout', 'shop', 'start', '--to', 'green', '--preset', 'all-at-once', '--wait', '--timeout', 'soon')).code, 2);
    assert.equal((await p.admin('GET', '/v1/apps/shop/rollouts/current')).status, 404, 'nothing was started');
    assert.equal((await sy('rollout', 'shop', 'pause', '--wait')).code, 2);
    assert.equal((await sy('rollout', 'shop', 'status', '--timeout', '1m')).code, 2);
  });
});
