import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { ServerResponse } from 'node:http';
import { describe, it } from 'node:test';
import { request } from 'undici';
import { twoPools } from '../helpers/proxy.ts';
import { spawnServe } from '../helpers/serve-process.ts';
import { startUpstream } from '../helpers/upstream.ts';

/** Resolves with the exit code, or null when the process is still running after `ms`. */
function exitWithin(child: { once(ev: 'exit', fn: (code: number | null) => void): unknown }, ms: number): Promise<number | null> {
  return Promise.race([once(child as never, 'exit').then(([code]) => code as number), new Promise<null>((r) => setTimeout(() => r(null), ms).unref())]);
}

describe('shutdown deadlines', () => {
  it('SIGTERM with a slow upstream: at grace a request still waiting is answered 503 GOING_AWAY with Connection: close; at hardStop a stream still open is cut and counted', async (t) => {
    const held: ServerResponse[] = [];
    const up = await startUpstream('blue', (req, res) => {
      held.push(res);
      if (req.url === '/stream') {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write('data: 1\n\n');
        const tick = setInterval(() => res.write('data: tick\n\n'), 100);
        res.on('close', () => clearInterval(tick));
      }
      // /slow: never answers
    });
    const sp = await spawnServe({ apps: [twoPools(up.url, up.url)], shutdown: { grace: '600ms', hardStop: '1500ms' }, log: { level: 'info' } });
    t.after(async () => {
      await sp.cleanup();
      await up.close();
    });
    const stream = await request(`${sp.proxyUrl}/stream`);
    let streamed = '';
    let lastChunkAt = 0;
    const streamEnd = new Promise<string>((resolve) => {
      stream.body.on('data', (c: Buffer) => {
        streamed += c.toString();
        lastChunkAt = Date.now();
      });
      stream.body.on('end', () => resolve('ended'));
      stream.body.on('error', () => resolve('broken'));
    });
    const slow = request(`${sp.proxyUrl}/slow`).then(async (r) => ({ status: r.statusCode, connection: r.headers['connection'], body: await r.body.text(), at: Date.now() }));
    await t.waitFor(() => assert.equal(held.length, 2), { timeout: 3000 });
    const term = Date.now();
    sp.child.kill('SIGTERM');
    const answered = await slow;
    assert.equal(answered.status, 503);
    assert.equal(answered.connection, 'close');
    assert.match(answered.body, /shutting down/);
    assert.ok(answered.at - term >= 550 && answered.at - term < 1400, `answered at grace, not at hardStop (${answered.at - term} ms)`);
    // the stream went on past grace, until hardStop
    assert.equal(await streamEnd, 'ended');
    assert.ok(lastChunkAt - term > 900, `the stream kept flowing after grace (last chunk at ${lastChunkAt - term} ms)`);
    assert.equal(await exitWithin(sp.child, 5000), 0);
    const log = sp.log();
    assert.equal(log.find((l) => /shutdown grace passed/.test(String(l['msg'])))?.['answered'], 1);
    assert.equal(log.find((l) => l['msg'] === 'stopped')?.['cut'], 1);
    const access = log.find((l) => l['access'] === true && l['path'] === '/slow');
    assert.deepEqual([access?.['status'], access?.['error']], [503, 'GOING_AWAY']);
    assert.match(streamed, /data: 1/);
  });

  it('stdout whose reader is gone, then SIGTERM: the process exits within the deadline instead of retrying its last log lines forever', async (t) => {
    const up = await startUpstream('blue');
    const sp = await spawnServe({ apps: [twoPools(up.url, up.url)], shutdown: { grace: '2s', hardStop: '4s' }, log: { level: 'info' } });
    t.after(async () => {
      await sp.cleanup();
      await up.close();
    });
    // the parent's reader went away before anything else was logged: the first failing write is the shutdown's
    sp.child.stdout.destroy();
    const term = Date.now();
    sp.child.kill('SIGTERM');
    assert.equal(await exitWithin(sp.child, 4000), 0, 'exits within hardStop, and cleanly');
    assert.ok(Date.now() - term < 2000, `nothing in flight: no reason to wait (${Date.now() - term} ms)`);
    // the lines the log could not take are counted, on stderr since stdout is gone
    assert.match(sp.output(), /switchyard: [1-9]\d* log lines could not be written \([1-9]\d* failed writes, last error EPIPE/);
  });

  it('workers: 2, stdout whose reader is gone: requests are still served, the lost lines are summed in /metrics, and SIGTERM exits', async (t) => {
    const up = await startUpstream('blue');
    const sp = await spawnServe({ apps: [twoPools(up.url, up.url)], workers: 2, shutdown: { grace: '2s', hardStop: '4s' }, log: { level: 'info' } }, 20_000);
    t.after(async () => {
      await sp.cleanup();
      await up.close();
    });
    sp.child.stdout.destroy();
    for (let i = 0; i < 20; i++) {
      const r = await request(`${sp.proxyUrl}/x${i}`);
      assert.equal(r.statusCode, 200);
      await r.body.dump();
    }
    const metrics = await (await request(`${sp.adminUrl}/metrics`)).body.text();
    const dropped = Number(/^switchyard_log_dropped_lines_total (\d+)/m.exec(metrics)?.[1]);
    assert.ok(dropped >= 20, `the workers' lost access lines are summed: ${dropped}`);
    sp.child.kill('SIGTERM');
    assert.equal(await exitWithin(sp.child, 6000), 0, 'the group exits, and cleanly');
  });

  it('stdout whose reader is gone: requests are still served, the lost lines are counted in /metrics and /readyz, and SIGTERM exits at once', async (t) => {
    const up = await startUpstream('blue');
    const sp = await spawnServe({ apps: [twoPools(up.url, up.url)], shutdown: { grace: '2s', hardStop: '4s' }, log: { level: 'info' } });
    t.after(async () => {
      await sp.cleanup();
      await up.close();
    });
    // the log collector died: the read end of the process's stdout is closed
    sp.child.stdout.destroy();
    for (let i = 0; i < 20; i++) {
      const r = await request(`${sp.proxyUrl}/x${i}`);
      assert.equal(r.statusCode, 200);
      await r.body.dump();
    }
    const ready = await request(`${sp.adminUrl}/readyz`);
    const details = ((await ready.body.json()) as { details: { log?: { broken: boolean; writeErrors: number; droppedLines: number; lastError: string } } }).details;
    assert.equal(ready.statusCode, 200, 'a broken log does not take the proxy out of rotation');
    assert.equal(details.log?.broken, true);
    assert.equal(details.log?.lastError, 'EPIPE');
    assert.ok((details.log?.droppedLines ?? 0) >= 20, `every access line lost is counted (${details.log?.droppedLines})`);
    const metrics = await (await request(`${sp.adminUrl}/metrics`)).body.text();
    const errors = Number(/^switchyard_log_write_errors_total (\d+)/m.exec(metrics)?.[1]);
    const dropped = Number(/^switchyard_log_dropped_lines_total (\d+)/m.exec(metrics)?.[1]);
    assert.ok(errors >= 1, `write errors counted: ${errors}`);
    assert.ok(dropped >= 20, `dropped lines counted: ${dropped}`);
    const term = Date.now();
    sp.child.kill('SIGTERM');
    assert.equal(await exitWithin(sp.child, 3000), 0, 'exits, and cleanly');
    assert.ok(Date.now() - term < 2000, 'nothing in flight: no reason to wait for grace');
  });
});
