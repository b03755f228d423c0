/**
 * What one request costs Switchyard, POST or GET: proxy CPU µs per request and (STRACE=1)
 * syscalls per request, of one `switchyard serve` (bench config, native engine) under wrk
 * (-t1 -c50, on cpu 1 with a `return 200` nginx upstream). `npm run build` first.
 *
 *   npx node bench/post-cost.ts                 POST of BYTES (default 1024), RUNS (2) runs of SECS (4) s
 *   METHOD=GET npx node bench/post-cost.ts      the same as GETs
 *   STRACE=1 npx node bench/post-cost.ts        one run under `strace -c -f -p`: syscalls per request
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cpuFor, cpuSeconds, envInt, installCleanup } from './common.ts';
import { startNginxUpstream, startSwitchyard } from './targets.ts';

installCleanup();
const post = (process.env['METHOD'] ?? 'POST') === 'POST';
const bytes = envInt('BYTES', 1024);
const secs = envInt('SECS', 4);
const strace = process.env['STRACE'] === '1';
const tmp = mkdtempSync(join(tmpdir(), 'switchyard-post-cost-'));
const up = await startNginxUpstream(0, mkdtempSync(join(tmp, 'upstream-')), cpuFor('upstream'));
const upstream = `http://127.0.0.1:${up.port}`;
const sy = await startSwitchyard({ blue: upstream, green: upstream, tmpDir: tmp, engine: 'native' });
const script = join(tmp, 'post.lua');
writeFileSync(script, `wrk.method = "POST"\nwrk.body = string.rep("x", ${bytes})\nwrk.headers["Content-Type"] = "application/octet-stream"\n`);
const wrk = (duration: number): string => {
  const args = ['-c', String(cpuFor('load') ?? 1), 'wrk', '-t1', '-c50', `-d${duration}s`, ...(post ? ['-s', script] : []), `http://127.0.0.1:${sy.port}/`];
  return spawnSync('taskset', args, { encoding: 'utf8' }).stdout;
};
wrk(2); // warm-up
for (let run = 0; run < (strace ? 1 : envInt('RUNS', 2)); run++) {
  let tracer: ReturnType<typeof spawn> | null = null;
  let traced = '';
  if (strace) {
    tracer = spawn('strace', ['-c', '-f', '-p', String(sy.proc.pid)], { stdio: ['ignore', 'ignore', 'pipe'] });
    tracer.stderr?.on('data', (d: Buffer) => (traced += d.toString()));
    await new Promise((r) => setTimeout(r, 500)); // attached to every thread
  }
  const before = cpuSeconds(sy.proc.pid) ?? 0;
  const out = wrk(secs);
  const cpu = (cpuSeconds(sy.proc.pid) ?? 0) - before;
  const requests = Number(/(\d+) requests in/.exec(out)?.[1] ?? Number.NaN);
  console.log(`${post ? `POST ${bytes} B` : 'GET'}: ${requests} requests, ${((cpu * 1e6) / requests).toFixed(1)} µs CPU per request${strace ? ' (slowed by strace)' : ''}`);
  if (tracer !== null) {
    tracer.kill('SIGINT');
    await new Promise((r) => tracer.once('close', r));
    const rows = traced.split('\n').filter((l) => /^\s*[\d.]+\s+[\d.]+\s+\d+\s+\d+/.test(l));
    const per = rows.map((l) => l.trim().split(/\s+/)).filter((f) => Number(f[3]) / requests >= 0.01);
    console.log(`  syscalls per request: ${per.map((f) => `${f.at(-1)} ${(Number(f[3]) / requests).toFixed(2)}`).join(', ')}`);
  }
}
await sy.proc.stop();
await up.proc.stop();
process.exit(0);
