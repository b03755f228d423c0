import assert from 'node:assert/strict';
import { cp, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
import { runCliCaptured } from '../helpers/cli.ts';
import { loadLoop } from '../helpers/load-loop.ts';
import { twoPools } from '../helpers/proxy.ts';
import { spawnServe, type ServeProcess } from '../helpers/serve-process.ts';
import { startUpstream } from '../helpers/upstream.ts';
import { until } from '../helpers/wait.ts';

const line = (sp: ServeProcess, msg: RegExp): Record<string, unknown> | undefined => sp.log().find((l) => msg.test(String(l['msg'])));

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** A copy of this checkout's program (src, bin, package.json; node_modules linked) that a test may break. */
async function programCopy(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'switchyard-prog-'));
  const root = resolve(import.meta.dirname, '../..');
  for (const p of ['src', 'bin', 'package.json']) await cp(join(root, p), join(dir, p), { recursive: true });
  await symlink(join(root, 'node_modules'), join(dir, 'node_modules'));
  return dir;
}

async function handOverUnderLoad(t: TestContext, workers: number): Promise<void> {
  const up = await startUpstream('blue');
  t.after(() => up.close());
  const sp = await spawnServe({ apps: [twoPools(up.url, up.url)], workers, log: { level: 'info', accessSample: 0 }, shutdown: { grace: '5s', hardStop: '10s' } }, 30_000);
  t.after(() => sp.cleanup());
  let newPid = 0;
  t.after(() => {
    if (newPid > 0 && alive(newPid)) process.kill(newPid, 'SIGKILL');
  });
  const loop = loadLoop(sp.proxyPort, 5);
  t.after(() => loop.stop());
  const oldPid = sp.child.pid as number;
  await sleep(800);
  // one process: through `switchyard upgrade`, which finds the pid by the port claim and waits for the outcome
  const cli = workers === 1 ? runCliCaptured(['upgrade', '--config', join(sp.dir, 'switchyard.yaml'), '--timeout', '120s'], {}) : null;
  if (cli === null) process.kill(oldPid, 'SIGUSR2');
  const took = await until(t, 'the new process taking over', () => line(sp, /took over the listening sockets/), { timeout: 120_000, interval: 50, detail: () => sp.output().slice(-4000) });
  newPid = took['pid'] as number;
  assert.notEqual(newPid, oldPid);
  if (cli !== null) {
    const r = await cli;
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`upgraded: pid ${newPid} serves listen\\.port ${sp.proxyPort}`));
  }
  const [code] = await sp.exited;
  assert.equal(code, 0, 'the old process drains and exits cleanly');
  await sleep(800);
  const r = await loop.stop();
  assert.deepEqual(r.failures, [], `${r.failures.length} of ${r.ok + r.failures.length} requests failed`);
  assert.ok(r.ok > 100, `the loop ran (${r.ok} requests)`);
  // the new process serves the proxy and the admin API on the same ports, and holds the port claim
  assert.ok(alive(newPid));
  const res = await request(`${sp.proxyUrl}/after`);
  assert.equal(res.statusCode, 200);
  await res.body.dump();
  const ready = await request(`${sp.adminUrl}/readyz`);
  assert.equal(ready.statusCode, 200);
  await ready.body.dump();
  assert.ok(line(sp, /stopped accepting and drains/), 'the old process says what it did');
}

describe('upgrading Switchyard itself (SIGUSR2): the new process takes the listening sockets', { concurrency: 1, timeout: 300_000 }, () => {
  it('a hand-over under a new connection every 5 ms loses none: no refused connect, no reset, no empty reply', async (t) => {
    await handOverUnderLoad(t, 1);
  });

  it('with workers: 2 the hand-over loses none either', async (t) => {
    await handOverUnderLoad(t, 2);
  });

  it('a new program that fails to start leaves the old one serving, and says so', async (t) => {
    const up = await startUpstream('blue');
    t.after(() => up.close());
    const prog = await programCopy();
    t.after(() => rm(prog, { recursive: true, force: true }));
    const sp = await spawnServe({ apps: [twoPools(up.url, up.url)], log: { level: 'info', accessSample: 0 } }, 30_000, (config) => ({ command: process.execPath, args: [join(prog, 'bin/switchyard.js'), 'serve', '--config', config], cwd: prog }));
    t.after(() => sp.cleanup());
    const loop = loadLoop(sp.proxyPort, 5);
    t.after(() => loop.stop());
    // the release installed over it is broken: its main module throws on load
    await writeFile(join(prog, 'src/main.ts'), "throw new Error('a broken build');\n");
    await sleep(300);
    const cli = await runCliCaptured(['upgrade', '--config', join(sp.dir, 'switchyard.yaml'), '--timeout', '120s'], {});
    assert.equal(cli.code, 1, cli.stdout + cli.stderr);
    assert.match(cli.stderr, new RegExp(`the upgrade failed; pid ${sp.child.pid} keeps serving`));
    const failed = await until(t, 'the failed upgrade', () => line(sp, /^upgrade failed/), { timeout: 30_000, interval: 50, detail: () => sp.output().slice(-4000) });
    assert.match(String(failed['msg']), /exited before it was ready .*keeps serving/);
    await sleep(300);
    const r = await loop.stop();
    assert.deepEqual(r.failures, []);
    assert.equal(sp.child.exitCode, null, 'the old process still runs');
    assert.match(sp.output(), /a broken build/, `the new process said why: ${sp.output().slice(-3000)}`);
  });

  it('a new program that is not ready within shutdown.upgradeTimeout is stopped; the old one keeps serving', async (t) => {
    const up = await startUpstream('blue');
    t.after(() => up.close());
    const prog = await programCopy();
    t.after(() => rm(prog, { recursive: true, force: true }));
    const sp = await spawnServe({ apps: [twoPools(up.url, up.url)], log: { level: 'info', accessSample: 0 }, shutdown: { upgradeTimeout: '1500ms' } }, 20_000, (config) => ({ command: process.execPath, args: [join(prog, 'bin/switchyard.js'), 'serve', '--config', config], cwd: prog }));
    t.after(() => sp.cleanup());
    // the new build hangs before it ever asks for the sockets: it keeps the module's exports (a
    // missing export would fail at link time, an exit, not a hang) and never finishes evaluating it
    const successor = join(prog, 'src/upgrade/successor.ts');
    await writeFile(successor, `await new Promise(() => setInterval(() => {}, 1000));\n${await readFile(successor, 'utf8')}`);
    process.kill(sp.child.pid as number, 'SIGUSR2');
    const failed = await until(t, 'the failed upgrade', () => line(sp, /^upgrade failed/), { timeout: 30_000, interval: 50, detail: () => sp.output().slice(-4000) });
    assert.match(String(failed['msg']), /not ready within 1500 ms: stopped it/);
    const res = await request(`${sp.proxyUrl}/still`);
    assert.equal(res.statusCode, 200);
    await res.body.dump();
    assert.equal(sp.child.exitCode, null);
  });
});
