import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { cpuFor, envInt, envList, findCommand, fmt, formatTable, freePort, installCleanup, NODE, pinSelf, REPO_ROOT, startNodeService, startProcess, stopAll, waitForHttp } from './common.ts';
import { distIsCurrent } from '../bin/dist-stamp.js';
import { pickDriver, runLoad } from './load.ts';
import { startNginxUpstream, switchyardConfig } from './targets.ts';

/**
 * Peak RSS of Switchyard at each of CONNECTIONS client counts, for each way it is started (README
 * Performance, "Memory by start path"): `checkout` (`npx switchyard serve` in the repo:
 * bin/switchyard.js runs dist/ when it is the build of src/ as it is, bin/dist-stamp.js, which
 * `npm run build` first makes it), on request `source` (the same with SWITCHYARD_FROM_SOURCE=1:
 * the TypeScript source, as after an edit to src/; compile cache warm after the first start),
 * `package` (the `npm pack` tarball unpacked, its dependencies linked from the checkout's
 * node_modules: bin/switchyard.js runs dist/), `image` (the same files run as the Dockerfile's
 * entrypoint does: `switchyard serve`, NODE_ENV=production, the config from $SWITCHYARD_CONFIG),
 * and on request `dist` (`node dist/main.js serve`, what `npm start` runs). The figure is the
 * Switchyard process's own VmHWM (its peak resident set, kernel counted), read after each load
 * (the loads run one after the other on the same process, so the peak at 1,000 includes the one
 * at 50), not the npx/npm process that started it, which is printed apart. CPU per request is the
 * process's user+system time (/proc) over the requests answered: less load-dependent than rps.
 * Env: DURATION (s per load, default 10), CONNECTIONS (default 50,1000), PATHS (default
 * checkout,package,image). The tuned runtime is overridden as an operator would: e.g.
 * NODE_OPTIONS=--max-semi-space-size=8 or MALLOC_ARENA_MAX=8 in this program's environment.
 * Standalone: `node bench/memory.ts` (run `npm run build` first: package and image use dist/).
 */

const DURATION = envInt('DURATION', 10);
const CONNECTIONS = (envList('CONNECTIONS') ?? ['50', '1000']).map(Number);
const PATHS = envList('PATHS') ?? ['checkout', 'package', 'image'];

function status(pid: number): Record<string, number> {
  const out: Record<string, number> = {};
  try {
    for (const m of readFileSync(`/proc/${pid}/status`, 'utf8').matchAll(/^(VmHWM|VmRSS|RssAnon|RssFile):\s+(\d+) kB/gm)) out[m[1] as string] = Number(m[2]) / 1024;
  } catch {
    // gone
  }
  return out;
}

/** user+system CPU time of `pid`, ms (/proc/PID/stat, clock ticks of 10 ms) */
function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) * 10;
}

function descendants(pid: number): number[] {
  const kids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid) kids.push(Number(entry), ...descendants(Number(entry)));
    } catch {
      // went away
    }
  }
  return kids;
}

/** The Switchyard node process under `pid`: the one whose command line runs `serve` with node and no npm. */
function switchyardPid(pid: number): number {
  for (const p of [pid, ...descendants(pid)]) {
    try {
      const cmd = readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0');
      if (cmd.includes('serve') && !cmd.some((a) => a.includes('npm')) && /node$/.test(cmd[0] ?? '')) return p;
    } catch {
      // went away
    }
  }
  return pid;
}

async function waitGone(pid: number): Promise<void> {
  for (let i = 0; i < 100 && existsSync(`/proc/${pid}`); i++) await new Promise((r) => setTimeout(r, 100));
}

function packageDir(tmp: string): string {
  const out = execFileSync('npm', ['pack', '--silent', '--pack-destination', tmp], { cwd: REPO_ROOT, encoding: 'utf8' }).trim().split('\n').pop() as string;
  const dir = join(tmp, 'installed');
  mkdirSync(dir);
  execFileSync('tar', ['-xzf', join(tmp, out), '-C', dir, '--strip-components=1']);
  symlinkSync(join(REPO_ROOT, 'node_modules'), join(dir, 'node_modules'));
  return dir;
}

async function main(): Promise<void> {
  const loadAtStart = loadavg().map((l) => l.toFixed(2)).join(' ');
  const tmp = mkdtempSync(join(tmpdir(), 'switchyard-bench-memory-'));
  const driver = pickDriver();
  const rows: string[][] = [];
  try {
    const upstream = findCommand('nginx') !== undefined
      ? await startNginxUpstream(0, mkdtempSync(join(tmp, 'upstream-')), cpuFor('upstream'))
      : await startNodeService('upstream', 'upstream.ts', { BODY_SIZE: '0' }, cpuFor('upstream'));
    const upstreamUrl = `http://127.0.0.1:${upstream.port}`;
    let packaged: string | undefined;
    for (const path of PATHS) {
      const dir = mkdtempSync(join(tmp, `${path}-`));
      const port = await freePort();
      const adminPort = await freePort();
      const config = join(dir, 'switchyard.yaml');
      writeFileSync(config, switchyardConfig({ port, adminPort, blue: upstreamUrl, green: upstreamUrl, statePath: join(dir, 'state.json') }));
      let cmd: string;
      let args: string[];
      let cwd = REPO_ROOT;
      let env: Record<string, string> = {};
      if (path === 'checkout') [cmd, args] = ['npx', ['switchyard', 'serve', '--config', config]];
      else if (path === 'source') {
        // the checkout's start when dist/ is not the build of src/ as it is (edited since `npm run build`)
        [cmd, args] = ['npx', ['switchyard', 'serve', '--config', config]];
        env = { SWITCHYARD_FROM_SOURCE: '1' };
      }
      else if (path === 'package') {
        cwd = packaged ??= packageDir(tmp);
        [cmd, args] = [NODE, [join(cwd, 'bin/switchyard.js'), 'serve', '--config', config]];
      } else if (path === 'image') {
        // the Dockerfile's runtime: ENTRYPOINT ["switchyard"] (the bin), CMD ["serve"], NODE_ENV and SWITCHYARD_CONFIG set
        cwd = packaged ??= packageDir(tmp);
        [cmd, args] = [NODE, [join(cwd, 'bin/switchyard.js'), 'serve']];
        env = { NODE_ENV: 'production', SWITCHYARD_CONFIG: config };
      } else if (path === 'dist') {
        if (!existsSync(join(REPO_ROOT, 'dist/main.js'))) throw new Error('dist/main.js missing: npm run build');
        [cmd, args] = [NODE, ['dist/main.js', 'serve', '--config', config]];
      } else throw new Error(`PATHS: unknown start path ${path} (checkout, package, image, dist, source)`);
      const proc = startProcess(`switchyard-${path}`, cmd, args, { cpu: cpuFor('proxy'), cwd, env });
      await waitForHttp(`http://127.0.0.1:${adminPort}/readyz`, { proc, timeoutMs: 60_000 });
      await waitForHttp(`http://127.0.0.1:${port}/`, { proc, timeoutMs: 5_000 });
      const pid = switchyardPid(proc.pid);
      const ready = status(pid);
      // which tree a checkout's bin ran: dist/ only while it is the build of src/ as it is
      const label = path === 'checkout' ? `checkout (${distIsCurrent(REPO_ROOT) ? 'dist' : 'source: dist/ not current'})` : path;
      const row = [label, fmt(ready['VmHWM'] ?? 0), fmt(ready['VmRSS'] ?? 0)];
      let after: Record<string, number> = ready;
      for (const connections of CONNECTIONS) {
        const cpu0 = cpuMs(pid);
        const load = await runLoad({ url: `http://127.0.0.1:${port}/`, connections, durationSec: DURATION, driver, cpu: cpuFor('load') });
        const cpu = cpuMs(pid) - cpu0;
        after = status(pid);
        row.push(fmt(after['VmHWM'] ?? 0), fmt(load.rps), load.requests > 0 ? ((cpu * 1000) / load.requests).toFixed(1) : '-');
      }
      const wrapper = pid === proc.pid ? 0 : [proc.pid, ...descendants(proc.pid)].filter((p) => p !== pid).reduce((s, p) => s + (status(p)['VmRSS'] ?? 0), 0);
      row.push(fmt(after['RssAnon'] ?? 0), fmt(after['RssFile'] ?? 0), wrapper === 0 ? '-' : fmt(wrapper));
      rows.push(row);
      // npx does not pass its stop on to the node it started: the Switchyard process is stopped itself
      if (pid !== proc.pid) {
        process.kill(pid, 'SIGTERM');
        await waitGone(pid);
      }
      await proc.stop();
    }
  } finally {
    await stopAll();
    rmSync(tmp, { recursive: true, force: true });
  }
  const given = ['NODE_OPTIONS', 'MALLOC_ARENA_MAX', 'SWITCHYARD_NODE_FLAGS'].filter((k) => process.env[k] !== undefined).map((k) => `${k}=${process.env[k]}`);
  const head = ['start path', 'peak at ready', 'rss at ready', ...CONNECTIONS.flatMap((c) => [`peak at ${c}`, `rps at ${c}`, `µs CPU/req at ${c}`]), 'anon', 'file', 'npx/npm (apart)'];
  process.stdout.write(`\n== memory (MiB; ${CONNECTIONS.join(', then ')} clients, ${DURATION} s each${given.length > 0 ? `; ${given.join(' ')}` : ''}; load average ${loadAtStart} at the start, ${loadavg().map((l) => l.toFixed(2)).join(' ')} at the end) ==\n${formatTable(head, rows)}\n`);
}

if (import.meta.filename === process.argv[1]) {
  installCleanup();
  pinSelf(cpuFor('load'));
  main().catch((e: unknown) => {
    process.stderr.write(`bench failed: ${(e as Error).stack ?? String(e)}\n`);
    process.exitCode = 1;
  });
}
