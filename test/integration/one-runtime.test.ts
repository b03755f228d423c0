import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import { TUNED_NODE_FLAGS } from '../../src/main.ts';
import { twoPools } from '../helpers/proxy.ts';
import { spawnServe, type ServeProcess } from '../helpers/serve-process.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';

/** The command line a process runs with (Linux /proc), as node sees its own execArgv and argv. */
function cmdline(pid: number): string[] {
  return readFileSync(`/proc/${pid}/cmdline`, 'latin1').split('\0').filter((a) => a !== '');
}

/** Pids of the group's workers, from the admin API's readiness details. */
async function workerPids(p: ServeProcess): Promise<number[]> {
  const r = await request(`${p.adminUrl}/readyz`);
  const body = (await r.body.json()) as { details?: { workers?: { pid: number | null }[] } };
  return (body.details?.workers ?? []).map((w) => w.pid).filter((pid): pid is number => pid !== null);
}

describe('one runtime however Switchyard starts, and one Switchyard per port', () => {
  let up: Upstream;
  before(async () => {
    // the port claim is a Linux abstract socket and these tests read /proc: fail off Linux, never skip
    assert.equal(process.platform, 'linux', 'these tests need Linux (/proc, abstract unix sockets)');
    up = await startUpstream('blue');
  });
  after(() => up.close());

  it('`serve` without V8 flags re-executes itself (same pid) with the tuned flags', async (t) => {
    const p = await spawnServe({ apps: [twoPools(up.url, up.url)] });
    t.after(() => p.cleanup());
    const args = cmdline(p.child.pid as number);
    for (const f of TUNED_NODE_FLAGS) assert.ok(args.includes(f), `${f} in ${args.join(' ')}`);
    assert.equal((await request(`${p.proxyUrl}/`, { headers: { host: 'shop.example.com' } })).statusCode, 200);
  });

  it('`switchyard serve` through the bin runs with the tuned flags too', async (t) => {
    const p = await spawnServe({ apps: [twoPools(up.url, up.url)] }, 10_000, (config) => ({ command: process.execPath, args: ['bin/switchyard.js', 'serve', '--config', config], cwd: process.cwd() }));
    t.after(() => p.cleanup());
    const args = cmdline(p.child.pid as number);
    for (const f of TUNED_NODE_FLAGS) assert.ok(args.includes(f), `${f} in ${args.join(' ')}`);
  });

  it('a second Switchyard on a port another one serves fails to start with a clear error; the first keeps every request', async (t) => {
    const first = await spawnServe({ apps: [twoPools(up.url, up.url)] });
    t.after(() => first.cleanup());
    await assert.rejects(
      spawnServe({ apps: [twoPools(up.url, up.url)], listen: { host: '127.0.0.1', port: first.proxyPort } }),
      new RegExp(`listen.port ${first.proxyPort} is already served by another Switchyard \\(pid ${first.child.pid}\\)`),
    );
    for (let i = 0; i < 20; i++) {
      const r = await request(`${first.proxyUrl}/`, { headers: { host: 'shop.example.com', connection: 'close' } });
      await r.body.dump();
      assert.equal(r.statusCode, 200);
    }
  });

  it('a group of workers runs with the tuned flags and holds its port against a second Switchyard', async (t) => {
    const group = await spawnServe({ workers: 2, apps: [twoPools(up.url, up.url)] }, 30_000);
    t.after(() => group.cleanup());
    const pids = await workerPids(group);
    assert.equal(pids.length, 2);
    for (const pid of pids) for (const f of TUNED_NODE_FLAGS) assert.ok(cmdline(pid).includes(f), `worker ${pid} runs with ${f}`);
    await assert.rejects(
      spawnServe({ apps: [twoPools(up.url, up.url)], listen: { host: '127.0.0.1', port: group.proxyPort } }),
      /is already served by another Switchyard \(pid \d+\)/,
    );
  });
});
