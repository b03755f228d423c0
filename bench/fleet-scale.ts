import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Redis } from 'ioredis';
import { redisClient, startRedis } from '../test/helpers/redis-server.ts';
import { BENCH_DIR, BENCH_TOKEN, cpuSeconds, envInt, envList, fmt, formatTable, httpCall, mean, rssMb, sleep, wantsJson } from './common.ts';

/**
 * Fleet scale (issue 24): for each N of NS, N Switchyard instances, each its own Node process
 * (bench/fleet-instance.ts, run from source), on one fresh redis-server. Measured per N:
 * - idle: SETTLE_S (32) seconds after the last instance started (past the 30 s an instance reads
 *   the fleet at first as if its figures were asked for), over IDLE_S seconds with no traffic and
 *   no writes, Redis's CPU (% of one core, from /proc), its commands/s (INFO total_commands_processed: commands run inside a script count),
 *   the calls per idle instance per second by command (INFO commandstats), network bytes/s, and
 *   RSS per instance (mean, max), and each instance's own CPU idle (% of a core);
 * - propagation: WRITES switches through instance 0's admin API, one every 100 ms; for each, from
 *   its 200 until every instance routes on it (the instances print the time they applied it;
 *   one machine, one clock), p50/p99/max, and the CPU each instance spends per write above its
 *   idle rate (the apply, the heartbeat it sends at once, …): on a machine with C cores, N
 *   instances woken by one message need about N × that / C before the last one is done.
 *   Baseline, same run: a bare PUBLISH until N subscribers (one ioredis connection each, in this
 *   process) have it.
 * Targets (issue 24): p99 ≤ 50 ms at 50 instances; Redis < 5 % of a core at 100 idle instances.
 */

const NS = (envList('NS') ?? ['10', '50']).map(Number);
const WRITES = envInt('WRITES', 40);
const IDLE_S = envInt('IDLE_S', 10);
const SETTLE_S = envInt('SETTLE_S', 32);

function pct(xs: readonly number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)] ?? Number.NaN;
}

interface Instance {
  readonly proc: ChildProcess;
  readonly adminPort: number;
  readonly applied: Map<number, number>;
}

async function startInstance(i: number, env: Record<string, string>): Promise<Instance> {
  const proc = spawn(process.execPath, [join(BENCH_DIR, 'fleet-instance.ts')], { env: { ...process.env, ...env, ID: `i${i}`, CACHE_PATH: join(env['DIR'] as string, `cache-${i}.json`) }, stdio: ['ignore', 'pipe', 'inherit'] });
  const applied = new Map<number, number>();
  const lines = createInterface({ input: proc.stdout! });
  const ready = new Promise<number>((resolve, reject) => {
    proc.once('exit', (code) => reject(new Error(`instance ${i} exited (${code}) before it was ready`)));
    lines.on('line', (line) => {
      const [what, a, b] = line.split(' ');
      if (what === 'ready') resolve(Number(a));
      else if (what === 'applied') applied.set(Number(a), Number(b));
    });
  });
  return { proc, adminPort: await ready, applied };
}

async function pubsubBaseline(url: string, n: number, rounds: number): Promise<number[]> {
  const pub = redisClient(url);
  const subs = Array.from({ length: n }, () => redisClient(url));
  try {
    await Promise.all(subs.map((s) => s.subscribe('bench:baseline')));
    const out: number[] = [];
    for (let i = 0; i < rounds; i++) {
      const got = subs.map((s) => new Promise<number>((resolve) => s.once('message', () => resolve(performance.now()))));
      const sent = performance.now();
      await pub.publish('bench:baseline', String(i));
      out.push(Math.max(...(await Promise.all(got))) - sent);
    }
    return out;
  } finally {
    pub.disconnect();
    for (const s of subs) s.disconnect();
  }
}

async function redisFigures(admin: Redis): Promise<{ cmds: number; net: number; calls: Map<string, number> }> {
  const info = await admin.info('stats');
  const field = (name: string): number => Number(new RegExp(`^${name}:(\\d+)`, 'm').exec(info)?.[1] ?? NaN);
  const calls = new Map<string, number>();
  for (const m of (await admin.info('commandstats')).matchAll(/^cmdstat_([\w|]+):calls=(\d+)/gm)) calls.set(m[1]!, Number(m[2]));
  return { cmds: field('total_commands_processed'), net: field('total_net_input_bytes') + field('total_net_output_bytes'), calls };
}

/** Calls per instance per second by command between two readings, busiest first. */
function perInstance(a: Map<string, number>, b: Map<string, number>, secs: number, n: number): [string, number][] {
  return [...b].map(([cmd, c]): [string, number] => [cmd, (c - (a.get(cmd) ?? 0)) / secs / n]).filter(([, r]) => r >= 0.01).sort((x, y) => y[1] - x[1]);
}

async function runOne(n: number, target: string): Promise<{ row: string[]; calls: [string, number][] }> {
  const redis = await startRedis();
  const admin = redisClient(redis.url);
  const redisPid = Number(/process_id:(\d+)/.exec(await admin.info('server'))?.[1]);
  const dir = await mkdtemp(join(tmpdir(), 'switchyard-bench-fleet-'));
  const instances: Instance[] = [];
  try {
    const env = { REDIS_URL: redis.url, PREFIX: 'bench', TARGET: target, DIR: dir };
    // a few at a time: a hundred Node processes starting at once on two cores time each other out
    for (let i = 0; i < n; i += 5) instances.push(...(await Promise.all(Array.from({ length: Math.min(5, n - i) }, (_, k) => startInstance(i + k, env)))));
    // past every instance's first 30 s, when it reads the fleet as if someone were looking at the
    // figures (fleet.ts WANTED_FOR_MS): what is measured is the steady state of an idle fleet
    await sleep(SETTLE_S * 1000);

    // idle
    const instanceCpu = (): number => instances.reduce((sum, x) => sum + (cpuSeconds(x.proc.pid!) ?? NaN), 0);
    const cpu0 = cpuSeconds(redisPid) ?? NaN;
    const icpu0 = instanceCpu();
    const r0 = await redisFigures(admin);
    const t0 = performance.now();
    await sleep(IDLE_S * 1000);
    const secs = (performance.now() - t0) / 1000;
    const r1 = await redisFigures(admin);
    const cpu = (((cpuSeconds(redisPid) ?? NaN) - cpu0) / secs) * 100;
    // the instances' CPU idle (per instance, % of a core), and what each write costs each of them above that
    const idleRate = (instanceCpu() - icpu0) / secs;
    const rss = instances.map((x) => rssMb(x.proc.pid!) ?? NaN);

    // propagation
    const ms: number[] = [];
    const p0 = performance.now();
    const pcpu0 = instanceCpu();
    for (let i = 0; i < WRITES; i++) {
      const r = await httpCall(`http://127.0.0.1:${instances[0]!.adminPort}/v1/apps/bench/switch`, { method: 'POST', headers: { authorization: `Bearer ${BENCH_TOKEN}`, 'content-type': 'application/json' }, body: JSON.stringify({ to: i % 2 === 0 ? 'green' : 'blue' }) });
      const ok = performance.timeOrigin + performance.now();
      if (r.status !== 200) throw new Error(`write ${i}: ${r.status} ${r.body}`);
      const rev = (JSON.parse(r.body) as { revision: number }).revision;
      const deadline = Date.now() + 10_000;
      while (!instances.every((x) => x.applied.has(rev))) {
        if (Date.now() > deadline) throw new Error(`revision ${rev} did not reach every instance within 10 s`);
        await sleep(2);
      }
      ms.push(Math.max(0, Math.max(...instances.map((x) => x.applied.get(rev)!)) - ok));
      await sleep(100);
    }
    const perWriteMs = ((instanceCpu() - pcpu0 - (idleRate * (performance.now() - p0)) / 1000) / WRITES / n) * 1000;
    const base = await pubsubBaseline(redis.url, n, WRITES);
    const calls = perInstance(r0.calls, r1.calls, secs, n);
    const load = loadavg().map((l) => l.toFixed(2)).join(' ');
    const row = [String(n), fmt(pct(ms, 50), 1), fmt(pct(ms, 99), 1), fmt(Math.max(...ms), 1), `${fmt(pct(base, 50), 1)} / ${fmt(pct(base, 99), 1)}`, fmt(cpu, 2), fmt((r1.cmds - r0.cmds) / secs), fmt((r1.cmds - r0.cmds) / secs / n, 1), fmt((r1.net - r0.net) / secs / 1024, 1), `${fmt(mean(rss))} / ${fmt(Math.max(...rss))}`, fmt((idleRate / n) * 100, 2), fmt(perWriteMs, 2), load];
    if (wantsJson()) console.log(JSON.stringify({ bench: 'fleet-scale', n, p50: pct(ms, 50), p99: pct(ms, 99), max: Math.max(...ms), baselineP50: pct(base, 50), baselineP99: pct(base, 99), redisCpuPct: cpu, redisOpsPerSec: (r1.cmds - r0.cmds) / secs, redisKBPerSec: (r1.net - r0.net) / secs / 1024, rssMeanMb: mean(rss), rssMaxMb: Math.max(...rss), instanceIdleCpuPct: (idleRate / n) * 100, instanceCpuMsPerWrite: perWriteMs, idleCallsPerInstancePerSec: Object.fromEntries(calls), loadavg: loadavg() }));
    return { row, calls };
  } finally {
    await Promise.all(instances.map(async (x) => {
      if (x.proc.exitCode !== null) return;
      const exited = once(x.proc, 'exit');
      x.proc.kill('SIGTERM');
      await Promise.race([exited, sleep(5_000).then(() => x.proc.kill('SIGKILL'))]);
    }));
    admin.disconnect();
    await redis.cleanup();
    await rm(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const upstream = createServer((_req, res) => res.end('ok'));
  upstream.listen(0, '127.0.0.1');
  await once(upstream, 'listening');
  const target = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
  const rows: string[][] = [];
  const headers = ['N', 'propagation p50 ms', 'p99 ms', 'max ms', 'PUBLISH baseline p50 / p99', 'redis CPU % (idle)', 'redis cmds/s (idle)', 'per instance', 'redis KB/s (idle)', 'RSS MB per instance (mean / max)', 'instance CPU % (idle)', 'instance CPU ms per write', 'load avg 1/5/15 min'];
  try {
    for (const n of NS) {
      const { row, calls } = await runOne(n, target);
      rows.push(row);
      // each row as soon as it is measured: a later N that does not fit on the machine loses nothing
      console.error(`fleet-scale: N=${n} done\n${formatTable(headers, [row])}\nidle calls per instance per second (commands inside scripts included): ${calls.map(([c, r]) => `${c} ${fmt(r, 2)}`).join(', ')}`);
    }
  } finally {
    upstream.close();
  }
  console.log(`fleet scale: N instances (own processes, from source) on one redis-server (loopback); ${WRITES} switches through instance 0; idle window ${IDLE_S} s\n`);
  console.log(formatTable(headers, rows));
}

await main();
