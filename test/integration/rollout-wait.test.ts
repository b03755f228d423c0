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
    await sleep(120);
    assert.equal((await p.admin('POST', '/v1/apps/shop/rollouts/current/abort', { reason: 'stop the release' })).status, 200);
    const r = await waiting;
    assert.equal(r.code, 5);
    assert.match(r.err, /aborted/);
    const lines = r.out.trim().split('\n').map((l) => JSON.parse(l) as { state: string });
    assert.deepEqual([lines[0]?.state, lines.at(-1)?.state], ['running', 'aborted'], '--json prints one rollout per line as it changes');
  });

  it('refuses a bad call with exit 2 before starting anything', async (t) => {
    const { p, sy } = await setup(t);
    assert.equal((await sy('rollout', 'shop', 'start', '--to', 'green', '--preset', 'all-at-once', '--wait', '--timeout', 'soon')).code, 2);
    assert.equal((await p.admin('GET', '/v1/apps/shop/rollouts/current')).status, 404, 'nothing was started');
    assert.equal((await sy('rollout', 'shop', 'pause', '--wait')).code, 2);
    assert.equal((await sy('rollout', 'shop', 'status', '--timeout', '1m')).code, 2);
  });
});
