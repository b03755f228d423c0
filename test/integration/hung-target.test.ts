import assert from 'node:assert/strict';
import type { ServerResponse } from 'node:http';
import { describe, it } from 'node:test';
import { Agent, request } from 'undici';
import { startProxy, twoPools } from '../helpers/proxy.ts';
import { startUpstream } from '../helpers/upstream.ts';
import { until } from '../helpers/wait.ts';

// A hung target costs seconds, not timeouts.response (issue 24): the requests already waiting on
// it when it leaves rotation (health checks mark it down, or the passive stall sweep ejects it)
// are re-sent to the healthy target at once, as a retry at the timeout would have, but now.

describe('a target that hangs (health included) under closed-loop clients', () => {
  it('every client completes again within a few seconds of the target leaving rotation, not at the 20 s response timeout', async (t) => {
    let hanging = false;
    const held: ServerResponse[] = [];
    const hung = await startUpstream('hung', (req, res) => {
      if (hanging) return void held.push(res); // never answered, /healthz included
      res.end(req.url === '/healthz' ? 'ok' : 'hung-before');
    });
    const ok = await startUpstream('ok', (_req, res) => res.end('ok'));
    const green = await startUpstream('green', (_req, res) => res.end('green'));
    const health = { interval: '300ms', timeout: '300ms', fall: 3 };
    const p = await startProxy({ apps: [twoPools([hung.url, ok.url], green.url, { health, timeouts: { response: '20s' } })] });
    const agent = new Agent({ connections: 64 });
    t.after(async () => {
      for (const r of held) r.destroy();
      await p.close();
      await agent.close();
      for (const u of [hung, ok, green]) await u.close();
    });
    await until(t, 'both blue targets up', () => p.sy.runtime.pool('shop', 'blue')!.targets.every((x) => x.isUp(Date.now())), { timeout: 10_000 });

    const CLIENTS = 8;
    const done: number[][] = Array.from({ length: CLIENTS }, () => []);
    const failures: string[] = [];
    let stop = false;
    const clients = done.map(async (mine, i) => {
      while (!stop) {
        try {
          const r = await request(`${p.proxyUrl}/c${i}`, { dispatcher: agent, headersTimeout: 60_000, bodyTimeout: 60_000 });
          await r.body.dump();
          if (r.statusCode !== 200) failures.push(`client ${i}: ${r.statusCode}`);
          mine.push(Date.now());
        } catch (err) {
          if (!stop) failures.push(`client ${i}: ${String(err)}`);
        }
      }
    });
    await until(t, 'every client served before the hang', () => done.every((mine) => mine.length > 0), { timeout: 5_000 });
    hanging = true;
    const hungAt = Date.now();
    const target = p.sy.runtime.pool('shop', 'blue')!.targets[0]!;
    await until(t, 'the hung target to leave rotation', () => !target.isUp(Date.now()), { timeout: 15_000 });
    const outAt = Date.now();
    // every client completes a request soon after: none is left waiting on the hung target
    await until(t, 'every client to complete a request after the target left rotation', () => done.every((mine) => mine.some((at) => at >= outAt)), { timeout: 10_000 });
    stop = true;
    held.splice(0).forEach((r) => r.destroy());
    await Promise.all(clients);
    const late = done.map((mine, i) => ({ i, first: mine.find((at) => at >= outAt) })).filter((c) => c.first === undefined || c.first - outAt > 3_000);
    t.diagnostic(`out of rotation ${outAt - hungAt} ms after it hung; first completion per client after that: ${done.map((mine) => (mine.find((at) => at >= outAt) ?? NaN) - outAt).join(', ')} ms`);
    assert.deepEqual(late.map((c) => c.i), [], 'clients still waiting 3 s after the target left rotation');
    assert.deepEqual(failures, []);
  });
});
