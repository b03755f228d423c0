import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import { TUNED_NODE_FLAGS } from '../../src/main.ts';
import { TUNED_ENV } from '../../src/tuned-runtime.ts';
import { twoPools } from '../helpers/proxy.ts';
import { spawnServe, type ServeProcess } from '../helpers/serve-process.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';

/** The command line a process runs with (Linux /proc), as node sees its own execArgv and argv. */
function cmdline(pid: number): string[] {
  return readFileSync(`/proc/${pid}/cmdline`, 'latin1').split('\0').filter((a) => a !== '');
}

/** The environment a process runs with (Linux /proc). */
function environ(pid: number): Record<string, string> {
  return Object.fromEntries(readFileSync(`/proc/${pid}/environ`, 'latin1').split('\0').filter((a) => a.includes('=')).map((a) => [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)]));
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
    // spawnServe gives the tuned runtime by default: launched bare here, as `node src/main.ts serve`
    const p = await spawnServe({ apps: [twoPools(up.url, up.url)] }, 10_000, (config) => ({ command: process.execPath, args: ['src/main.ts', 'serve', '--config', config], cwd: process.cwd() }));
    t.after(() => p.cleanup());
    const args = cmdline(p.child.pid as number);
    for (const f of TUNED_NODE_FLAGS) assert.ok(args.includes(f), `${f} in ${args.join(' ')}`);
    assert.equal((await request(`${p.proxyUrl}/`, { headers: { host: 'shop.example.com' } })).statusCode, 200);
  });

  it('`switchyard serve` through the bin runs with the tuned flags too', async (t) => {
    const p = await spawnServe({ apps: [twoPools(up.url, up.url)] }, 10_000, (config) => ({ command: process.execPath, args: ['bin/switchyard.js', 'serve', '--config', config], cwd: process.cwd() }));
    t.after(() => p.cleanup());
    // the pid the launcher started is the serving process: re-executed by the bin before it loaded the program
    const args = cmdline(p.child.pid as number);
    for (const f of TUNED_NODE_FLAGS) assert.ok(args.includes(f), `${f} in ${args.join(' ')}`);
    assert.equal(args.filter((a) => a.startsWith('--max-semi-space-size')).length, 1, 'one semi-space flag: the bin re-executed once');
    for (const [k, v] of Object.entries(TUNED_ENV)) assert.equal(environ(p.child.pid as number)[k], v, `${k} in the environment`);
    assert.equal((await request(`${p.proxyUrl}/`, { headers: { host: 'shop.example.com' } })).statusCode, 200);
  });

  it('an operator\'s own setting wins: a flag in NODE_OPTIONS, MALLOC_ARENA_MAX in the environment', async (t) => {
    const env = { ...process.env, NODE_OPTIONS: '--max-semi-space-size=16', MALLOC_ARENA_MAX: '8' };
    const p = await spawnServe({ apps: [twoPools(up.url, up.url)] }, 10_000, (config) => ({ command: process.execPath, args: ['bin/switchyard.js', 'serve', '--config', config], cwd: process.cwd(), env }));
    t.after(() => p.cleanup());
    const args = cmdline(p.child.pid as number);
    assert.ok(!args.some((a) => a.startsWith('--max-semi-space-size')), `no semi-space flag added to ${args.join(' ')}`);
    assert.ok(args.includes('--heap-growing-percent=50'), `the other flag still added: ${args.join(' ')}`);
    assert.equal(environ(p.child.pid as number)['MALLOC_ARENA_MAX'], '8');
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
