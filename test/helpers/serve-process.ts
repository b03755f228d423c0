import assert from 'node:assert/strict';
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
import { TOKEN } from './proxy.ts';

import { freePort } from './ports.ts';
import { TUNED_ENV, TUNED_NODE_FLAGS } from '../../src/tuned-runtime.ts';

export interface ServeProcess {
  readonly child: ChildProcessByStdio<null, Readable, Readable>;
  readonly exited: Promise<unknown[]>;
  readonly dir: string;
  readonly proxyPort: number;
  readonly adminPort: number;
  readonly proxyUrl: string;
  readonly adminUrl: string;
  /** everything the process wrote so far (stdout and stderr) */
  output(): string;
  /** its JSON log lines so far */
  log(): Record<string, unknown>[];
  /** SIGKILL (if still running) and remove the temp dir */
  cleanup(): Promise<void>;
}

/**
 * `switchyard serve` as a real process (signals, exit codes, workers), on free ports with a file
 * store in a temp dir; `doc` is merged into the config. Resolves once `/readyz` answers 200
 * (within `readyWithinMs`; a group of workers takes longer than one process). `launch` runs
 * another build of it, e.g. an installed package's bin: it gets the config file's path.
 * @default launch: this checkout's src/main.ts on the test's own Node, with the tuned runtime given
 */
export async function spawnServe(doc: Record<string, unknown>, readyWithinMs = 10_000, launch?: (config: string) => { command: string; args: string[]; cwd: string; env?: NodeJS.ProcessEnv }): Promise<ServeProcess> {
  const dir = await mkdtemp(join(tmpdir(), 'switchyard-proc-'));
  const proxyPort = await freePort();
  const probe = randomBytes(16).toString('hex');
  const adminPort = await freePort();
  const cfg = join(dir, 'switchyard.yaml');
  await writeFile(
    cfg,
    JSON.stringify({
      listen: { host: '127.0.0.1', port: proxyPort },
      // `probe`: a token only this process knows, so readiness is never taken from another test's
      // process that bound the admin port after this one failed to start (the port was free when picked)
      admin: { host: '127.0.0.1', port: adminPort, tokens: [{ name: 't', token: TOKEN }, { name: 'probe', token: probe }] },
      store: { kind: 'file', path: join(dir, 'state.json') },
      log: { level: 'warn' },
      ...doc,
    }),
  );
  // by default the runtime `serve` re-executes itself into (src/tuned-runtime.ts), given up front: the
  // same process as a relaunched one, without loading the program twice (src/main.ts loads it all
  // before it re-executes: ~0.4 s of CPU a start); one-runtime.test.ts launches without it
  const how = launch?.(cfg) ?? { command: process.execPath, args: [...TUNED_NODE_FLAGS, 'src/main.ts', 'serve', '--config', cfg], cwd: process.cwd(), env: { ...process.env, ...TUNED_ENV } };
  // its own process group: cleanup() kills what a launcher (npx) started too, not only the launcher
  const child = spawn(how.command, how.args, { cwd: how.cwd, env: how.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  const exited = once(child, 'exit');
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const proc: ServeProcess = {
    child,
    exited,
    dir,
    proxyPort,
    adminPort,
    proxyUrl: `http://127.0.0.1:${proxyPort}`,
    adminUrl: `http://127.0.0.1:${adminPort}`,
    output: () => out,
    log: () => out.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>),
    async cleanup() {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
      } catch {
        // the group is gone already
      }
      await rm(dir, { recursive: true, force: true, maxRetries: 5 });
    },
  };
  const deadline = Date.now() + readyWithinMs;
  for (;;) {
    const ready = (path: string, headers: Record<string, string> = {}): Promise<boolean> => request(`${proc.adminUrl}${path}`, { headers }).then((r) => (r.body.dump(), r.statusCode === 200), () => false);
    const ours = doc['admin'] !== undefined || (await ready('/v1/apps', { authorization: `Bearer ${probe}` }));
    const ok = ours && (await ready('/readyz'));
    if (ok) break;
    if (Date.now() > deadline || child.exitCode !== null) {
      await proc.cleanup();
      assert.fail(`switchyard did not start: ${out}`);
    }
    await sleep(50);
  }
  return proc;
}
