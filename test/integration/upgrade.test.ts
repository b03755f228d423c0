import assert from 'node:assert/strict';
import { cp, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
import { readPidFile } from '../../src/pid-file.ts';
import { runCliCaptured } from '../helpers/cli.ts';
import { loadLoop } from '../helpers/load-loop.ts';
import { twoPools } from '../helpers/proxy.ts';
import { createTestCa } from '../helpers/certs.ts';
import { freePort } from '../helpers/ports.ts';
import { spawnServe, type ServeProcess } from '../helpers/serve-process.ts';
import { startUpstream } from '../helpers/upstream.ts';
import { until, type UntilOptions } from '../helpers/wait.ts';

/** How these tests poll (the one helper, `until`): 30 s unless said, with the process's output on a timeout. */
const polling = (sp: ServeProcess, timeout = 30_000): UntilOptions => ({ timeout, interval: 50, detail: () => sp.output().slice(-4000) });

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

/** `serve --pid-file` beside the config, as a systemd unit runs it (PIDFile=) */
const withPidFile = (config: string): { command: string; args: string[]; cwd: string } => ({ command: process.execPath, args: ['src/main.ts', 'serve', '--config', config, '--pid-file', join(dirname(config), 'switchyard.pid')], cwd: process.cwd() });
const pidFileOf = (sp: ServeProcess): string => join(sp.dir, 'switchyard.pid');

const TLS_HOST = 'shop.test';

/**
 * A hand-over while a new connection arrives every 5 ms (on the plain port, and with `tls` on the
 * TLS port too, each with its own handshake): not one may be refused, reset or go unanswered.
 */
async function handOverUnderLoad(t: TestContext, workers: number, tls = false): Promise<void> {
  const up = await startUpstream('blue');
  const ca = tls ? createTestCa() : null;
  const tlsPort = tls ? await freePort() : 0;
  const plainPort = await freePort();
  const listen = ca === null ? {} : { listen: { host: '127.0.0.1', port: plainPort, tls: { port: tlsPort, certs: [(({ cert, key }) => ({ cert, key }))(ca.issue('shop', [TLS_HOST]))] } } };
  // a group of workers on a loaded machine (type stripping of the whole source in each process) takes a while
  const sp = await spawnServe({ apps: [twoPools(up.url, up.url)], workers, log: { level: 'info', accessSample: 0 }, shutdown: { grace: '5s', hardStop: '10s' }, ...listen }, 60_000, withPidFile).catch(async (err: unknown) => {
    // nothing started: what this test opened must not keep the test process alive
    ca?.close();
    await up.close();
    throw err;
  });
  // the plain proxy port: spawnServe's own unless `listen` above replaced it
  const port = ca === null ? sp.proxyPort : plainPort;
  let newPid = 0;
  const loop = loadLoop(port, 5);
  const tlsLoop = ca === null ? null : loadLoop(tlsPort, 5, { servername: TLS_HOST, ca: ca.caPem });
  t.after(async () => {
    await loop.stop();
    await tlsLoop?.stop();
    if (newPid > 0 && alive(newPid)) process.kill(newPid, 'SIGKILL');
    await sp.cleanup();
    ca?.close();
    await up.close();
  });
  const oldPid = sp.child.pid as number;
  await until(t, 'the pid file naming the serving process', () => readPidFile(pidFileOf(sp)) === oldPid, polling(sp));
  // the loop runs before the hand-over: 60 requests answered, however long a loaded machine takes
  await Promise.all([loop.answered(60), tlsLoop?.answered(60)]);
  // one process: through `switchyard upgrade`, which finds the pid by the port claim and waits for the outcome
  const cli = workers === 1 ? runCliCaptured(['upgrade', '--config', join(sp.dir, 'switchyard.yaml'), '--timeout', '120s'], {}) : null;
  if (cli === null) process.kill(oldPid, 'SIGUSR2');
  const took = await until(t, 'the new process taking over', () => line(sp, /took over the listening sockets/), polling(sp, 120_000));
  newPid = took['pid'] as number;
  assert.notEqual(newPid, oldPid);
  if (cli !== null) {
    const r = await cli;
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`upgraded: pid ${newPid} serves listen\\.port ${port}`));
  }
  const [code] = await sp.exited;
  assert.equal(code, 0, 'the old process drains and exits cleanly');
  // what systemd reads when its main process exits (PIDFile=): the new pid, written before the old one went
  assert.equal(readPidFile(pidFileOf(sp)), newPid, 'the pid file names the new process once the old one has exited');
  // and after it: 60 more, on the new process alone
  await Promise.all([loop.answered(60), tlsLoop?.answered(60)]);
  const r = await loop.stop();
  assert.deepEqual(r.failures, [], `${r.failures.length} of ${r.ok + r.failures.length} requests failed`);
  assert.ok(r.ok > 100, `the loop ran (${r.ok} requests)`);
  if (tlsLoop !== null) {
    const overTls = await tlsLoop.stop();
    assert.deepEqual(overTls.failures, [], `over TLS, ${overTls.failures.length} of ${overTls.ok + overTls.failures.length} requests failed`);
    assert.ok(overTls.ok > 100, `the TLS loop ran (${overTls.ok} requests)`);
    assert.ok(line(sp, /took over the listening sockets/), 'the TLS port was handed over too');
  }
  // the new process serves the proxy and the admin API on the same ports, and holds the port claim
  assert.ok(alive(newPid));
  const res = await request(`http://127.0.0.1:${port}/after`);
  assert.equal(res.statusCode, 200);
  await res.body.dump();
  const ready = await request(`${sp.adminUrl}/readyz`);
  assert.equal(ready.statusCode, 200);
  await ready.body.dump();
  assert.ok(line(sp, /stopped accepting and drains/), 'the old process says what it did');
  // a clean stop of the new process removes the file (it names that process)
  process.kill(newPid, 'SIGTERM');
  await until(t, 'the new process stopping', () => !alive(newPid), polling(sp));
  assert.equal(readPidFile(pidFileOf(sp)), null, 'the pid file is removed at a clean stop');
}

describe('upgrading Switchyard itself (SIGUSR2): the new process takes the listening sockets', { concurrency: 2, timeout: 600_000 }, () => {
  it('a hand-over under a new connection every 5 ms loses none: no refused connect, no reset, no empty reply', async (t) => {
    await handOverUnderLoad(t, 1);
  });

  it('with workers: 2 the hand-over loses none either', async (t) => {
    await handOverUnderLoad(t, 2);
  });

  it('with listen.tls the TLS port is handed over too: new TLS connections every 5 ms, none lost', async (t) => {
    await handOverUnderLoad(t, 1, true);
  });

  it('with listen.tls and workers: 2, both ports of every worker are handed over: none lost', async (t) => {
    await handOverUnderLoad(t, 2, true);
  });

  it('a new program that fails to start leaves the old one serving, and says so', async (t) => {
    const up = await startUpstream('blue');
    const prog = await programCopy();
    const sp = await spawnServe({ apps: [twoPools(up.url, up.url)], log: { level: 'info', accessSample: 0 } }, 30_000, (config) => ({ command: process.execPath, args: [join(prog, 'bin/switchyard.js'), 'serve', '--config', config, '--pid-file', join(dirname(config), 'switchyard.pid')], cwd: prog }));
    const loop = loadLoop(sp.proxyPort, 5);
    t.after(async () => {
      await loop.stop();
      await sp.cleanup();
      await rm(prog, { recursive: true, force: true });
      await up.close();
    });
    // the release installed over it is broken: its main module throws on load
    await writeFile(join(prog, 'src/main.ts'), "throw new Error('a broken build');\n");
    await sleep(300);
    const cli = await runCliCaptured(['upgrade', '--config', join(sp.dir, 'switchyard.yaml'), '--timeout', '120s'], {});
    assert.equal(cli.code, 1, cli.stdout + cli.stderr);
    assert.match(cli.stderr, new RegExp(`the upgrade failed; pid ${sp.child.pid} keeps serving`));
    const failed = await until(t, 'the failed upgrade', () => line(sp, /^upgrade failed/), polling(sp));
    assert.match(String(failed['msg']), /exited before it was ready .*keeps serving/);
    await sleep(300);
    const r = await loop.stop();
    assert.deepEqual(r.failures, []);
    assert.equal(sp.child.exitCode, null, 'the old process still runs');
    assert.match(sp.output(), /a broken build/, `the new process said why: ${sp.output().slice(-3000)}`);
    assert.equal(readPidFile(pidFileOf(sp)), sp.child.pid, 'the pid file still names the old process');
  });

  it('a new program that is not ready within shutdown.upgradeTimeout is stopped; the old one keeps serving', async (t) => {
    const up = await startUpstream('blue');
    const prog = await programCopy();
    const sp = await spawnServe({ apps: [twoPools(up.url, up.url)], log: { level: 'info', accessSample: 0 }, shutdown: { upgradeTimeout: '1500ms' } }, 20_000, (config) => ({ command: process.execPath, args: [join(prog, 'bin/switchyard.js'), 'serve', '--config', config], cwd: prog }));
    t.after(async () => {
      await sp.cleanup();
      await rm(prog, { recursive: true, force: true });
      await up.close();
    });
    // the new build hangs before it ever asks for the sockets: it keeps the module's exports (a
    // missing export would fail at link time, an exit, not a hang) and never finishes evaluating it
    const successor = join(prog, 'src/upgrade/successor.ts');
    await writeFile(successor, `await new Promise(() => setInterval(() => {}, 1000));\n${await readFile(successor, 'utf8')}`);
    process.kill(sp.child.pid as number, 'SIGUSR2');
    const failed = await until(t, 'the failed upgrade', () => line(sp, /^upgrade failed/), polling(sp));
    assert.match(String(failed['msg']), /not ready within 1500 ms: stopped it/);
    const res = await request(`${sp.proxyUrl}/still`);
    assert.equal(res.statusCode, 200);
    await res.body.dump();
    assert.equal(sp.child.exitCode, null);
  });
});
