import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { request } from 'node:http';
import { createServer } from 'node:net';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';

/** Shared helpers of the bench programs: processes, pinning, readiness, load drivers, tables. */

export const REPO_ROOT = fileURLToPath(new URL('..', import.meta.url));
export const BENCH_DIR = fileURLToPath(new URL('.', import.meta.url));
/** The Node running this program; every Node-based proxy is spawned with it so all compare on one runtime. */
export const NODE = process.execPath;

export const BENCH_TOKEN = 'bench-token-0123456789';

// ---------------------------------------------------------------- env knobs

export function envInt(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw.trim() === '') return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < 0) throw new Error(`${name}: must be a non-negative number, got "${raw}"`);
  return n;
}

export function envList(name: string): string[] | undefined {
  const raw = process.env[name];
  if (raw === undefined || raw.trim() === '') return undefined;
  return raw.split(',').map((s) => s.trim()).filter((s) => s !== '');
}

export function wantsJson(): boolean {
  return process.argv.includes('--json') || process.env['BENCH_JSON'] === '1';
}

// ---------------------------------------------------------------- machine facts

const commandCache = new Map<string, string | undefined>();

/** Absolute path of a command on PATH (or in /usr/sbin, where Debian puts nginx), else undefined. */
export function findCommand(name: string): string | undefined {
  if (commandCache.has(name)) return commandCache.get(name);
  const r = spawnSync('sh', ['-c', 'command -v "$1"', 'sh', name], { encoding: 'utf8' });
  let found: string | undefined = r.status === 0 ? r.stdout.trim() || undefined : undefined;
  if (found === undefined && existsSync(`/usr/sbin/${name}`)) found = `/usr/sbin/${name}`;
  commandCache.set(name, found);
  return found;
}

export function cpuModel(): string {
  try {
    const line = readFileSync('/proc/cpuinfo', 'utf8').split('\n').find((l) => l.startsWith('model name'));
    return line?.split(':')[1]?.trim() ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

// Read once at load: pinSelf() narrows this process's own affinity, and with it availableParallelism().
const CORES = availableParallelism();

export function cores(): number {
  return CORES;
}

/** CPU a role runs on; undefined (no pinning) when taskset is missing or there is only one core. */
export function cpuFor(role: 'proxy' | 'upstream' | 'load'): number | undefined {
  if (findCommand('taskset') === undefined || cores() < 2) return undefined;
  return role === 'proxy' ? 0 : 1;
}

/** Pins this process (all its threads) to one CPU, so an in-process load generator stays off the proxy's core. */
export function pinSelf(cpu: number | undefined): void {
  const taskset = findCommand('taskset');
  if (cpu === undefined || taskset === undefined) return;
  spawnSync(taskset, ['-a', '-p', '-c', String(cpu), String(process.pid)], { stdio: 'ignore' });
}

export function pinningNote(): string {
  const p = cpuFor('proxy');
  if (p === undefined) return 'none (taskset missing or a single core): numbers are noisier';
  return `proxy on cpu ${p}; upstream and load generator share cpu ${cpuFor('load')} ` +
    '(2-core machine: the proxy gets a core of its own, the measured thing; upstream + driver are the same for every target)';
}

// ---------------------------------------------------------------- processes

export interface Proc {
  readonly name: string;
  readonly child: ChildProcess;
  readonly pid: number;
  /** Resolves with the exit code (or signal name) once the process has exited. */
  readonly exited: Promise<number | string>;
  isRunning(): boolean;
  stderrTail(): string;
  stdoutTail(): string;
  /** First stdout line that satisfies `match`, waiting up to `timeoutMs`. */
  waitForLine(match: (line: string) => boolean, timeoutMs: number): Promise<string>;
  /** SIGTERM, then SIGKILL after `graceMs`. */
  stop(graceMs?: number): Promise<void>;
}

const live = new Set<Proc>();

export interface StartOptions {
  cpu?: number | undefined;
  env?: Record<string, string>;
  cwd?: string;
}

const TAIL = 4000;

export function startProcess(name: string, cmd: string, args: string[], opts: StartOptions = {}): Proc {
  const taskset = findCommand('taskset');
  const [file, argv] = opts.cpu !== undefined && taskset !== undefined
    ? [taskset, ['-c', String(opts.cpu), cmd, ...args]]
    : [cmd, args];
  // taskset execs the command, so the pid below is the command's own (what /proc RSS needs).
  const child = spawn(file, argv, {
    cwd: opts.cwd ?? REPO_ROOT,
    env: { ...process.env, ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  let partial = '';
  const lines: string[] = [];
  const waiters = new Set<() => void>();
  child.stdout?.setEncoding('utf8');
  child.stderr?.setEncoding('utf8');
  child.stdout?.on('data', (d: string) => {
    out = (out + d).slice(-TAIL);
    partial += d;
    const parts = partial.split('\n');
    partial = parts.pop() ?? '';
    if (lines.length < 100) lines.push(...parts);
    for (const w of waiters) w();
  });
  child.stderr?.on('data', (d: string) => {
    err = (err + d).slice(-TAIL);
  });
  let running = true;
  const exited = new Promise<number | string>((resolve) => {
    child.on('exit', (code, signal) => {
      running = false;
      live.delete(proc);
      for (const w of waiters) w();
      resolve(code ?? signal ?? 'unknown');
    });
    child.on('error', (e) => {
      err += `\nspawn error: ${e.message}`;
      running = false;
      live.delete(proc);
      for (const w of waiters) w();
      resolve('spawn-error');
    });
  });
  const proc: Proc = {
    name,
    child,
    pid: child.pid ?? -1,
    exited,
    isRunning: () => running,
    stderrTail: () => err.trim(),
    stdoutTail: () => out.trim(),
    waitForLine(match, timeoutMs) {
      return new Promise((resolve, reject) => {
        const check = (): void => {
          const hit = lines.find(match);
          if (hit !== undefined) return done(() => resolve(hit));
          if (!running) return done(() => reject(new Error(`${name} exited before printing its port`)));
        };
        const timer = setTimeout(() => done(() => reject(new Error(`${name}: no ready line within ${timeoutMs} ms`))), timeoutMs);
        const done = (f: () => void): void => {
          clearTimeout(timer);
          waiters.delete(check);
          f();
        };
        waiters.add(check);
        check();
      });
    },
    async stop(graceMs = 3000) {
      if (!running) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
  live.add(proc);
  return proc;
}

export async function stopAll(): Promise<void> {
  await Promise.all([...live].map((p) => p.stop()));
}

/** Kills every child on the way out, whatever the exit path, so no proxy is left bound to a port. */
export function installCleanup(): void {
  process.on('exit', () => {
    for (const p of live) p.child.kill('SIGKILL');
  });
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.on(sig, () => {
      void stopAll().finally(() => process.exit(130));
    });
  }
}

/** Starts a bench program that prints `{"port": N}` on stdout and returns that port. */
export async function startNodeService(name: string, script: string, env: Record<string, string>, cpu: number | undefined): Promise<{ proc: Proc; port: number }> {
  const proc = startProcess(name, NODE, [`${BENCH_DIR}${script}`], { cpu, env });
  try {
    const line = await proc.waitForLine((l) => l.trimStart().startsWith('{') && l.includes('"port"'), 15_000);
    const port = (JSON.parse(line) as { port: number }).port;
    return { proc, port };
  } catch (e) {
    await proc.stop();
    throw new Error(`${(e as Error).message}: ${tail(proc.stderrTail())}`, { cause: e });
  }
}

/**
 * The end of a process's output on one line; when that cuts off a stack trace's message, the
 * first line naming an error is put in front, since it is what says why.
 */
export function tail(s: string, n = 400): string {
  const t = s.trim().replace(/\s*\n\s*/g, ' | ');
  if (t === '') return '(no output)';
  if (t.length <= n) return t;
  const cause = s.split('\n').map((l) => l.trim()).find((l) => /^(\w*Error\b|error\b|fatal\b)|"level":\s*(50|60)/i.test(l));
  const head = cause !== undefined && !t.slice(-n).includes(cause) ? `${cause.slice(0, 300)} … ` : '…';
  return `${head}${t.slice(-n)}`;
}

// ---------------------------------------------------------------- network

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const addr = s.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      s.close(() => resolve(port));
    });
  });
}

export interface HttpAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** One small HTTP request with a deadline; never keeps the connection. */
export function httpCall(url: string, opts: { method?: string; headers?: Record<string, string>; body?: string; timeoutMs?: number } = {}): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const req = request(url, {
      method: opts.method ?? 'GET',
      headers: { connection: 'close', ...opts.headers },
      timeout: opts.timeoutMs ?? 2000,
    }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        if (body.length < 64 * 1024) body += d;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end(opts.body);
  });
}

/**
 * Polls `url` until it answers `status` (default 200). Gives up at `timeoutMs`, or at once
 * when `proc` exits, with the last answer or error in the message.
 */
export async function waitForHttp(url: string, opts: { timeoutMs?: number; status?: number; proc?: Proc } = {}): Promise<void> {
  const deadline = Date.now() + (opts.timeoutMs ?? 15_000);
  const want = opts.status ?? 200;
  let last = 'no answer';
  while (Date.now() < deadline) {
    if (opts.proc !== undefined && !opts.proc.isRunning()) {
      throw new Error(`exited (${String(await opts.proc.exited)}) before ${url} answered`);
    }
    try {
      const r = await httpCall(url, { timeoutMs: 1000 });
      if (r.status === want) return;
      last = `answered ${r.status}: ${r.body.slice(0, 200)}`;
    } catch (e) {
      last = (e as Error).message;
    }
    await sleep(100);
  }
  throw new Error(`${url} not ready within ${opts.timeoutMs ?? 15_000} ms (${last})`);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

// ---------------------------------------------------------------- memory

function rssKb(pid: number): number {
  try {
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m?.[1] !== undefined ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/** Clock ticks per second of /proc/<pid>/stat's utime and stime (USER_HZ: 100 on Linux). */
const CLOCK_TICKS = 100;

function cpuTicks(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(f[11]) + Number(f[12]); // utime + stime (fields 14 and 15)
  } catch {
    return 0;
  }
}

/**
 * CPU seconds a process (and its children) has used so far, user + system. Divided by the
 * requests of a run it gives CPU time per request: what the proxy costs, and far steadier than
 * requests/s on a shared, noisy machine (a neighbour's load lowers the rate, not the cost).
 */
export function cpuSeconds(pid: number): number | undefined {
  if (!existsSync(`/proc/${pid}/stat`)) return undefined;
  return [pid, ...childrenOf(pid)].reduce((sum, p) => sum + cpuTicks(p), 0) / CLOCK_TICKS;
}

function childrenOf(pid: number): number[] {
  const kids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      // The comm field may hold spaces and parens; the ppid is the second field after the last ')'.
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) kids.push(Number(entry));
    } catch {
      // the process went away while we listed /proc
    }
  }
  return kids;
}

/** RSS in MB of a process plus its direct children (nginx's worker, a proxy's cluster workers). */
export function rssMb(pid: number): number | undefined {
  if (!existsSync(`/proc/${pid}/status`)) return undefined;
  const kb = [pid, ...childrenOf(pid)].reduce((sum, p) => sum + rssKb(p), 0);
  return kb / 1024;
}

// ---------------------------------------------------------------- statistics and tables

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export function mean(xs: readonly number[]): number {
  return xs.length === 0 ? Number.NaN : xs.reduce((a, b) => a + b, 0) / xs.length;
}

export function fmt(n: number | undefined, digits = 0): string {
  if (n === undefined || !Number.isFinite(n)) return '-';
  return n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

export function ratio(a: number | undefined, b: number | undefined): string {
  if (a === undefined || b === undefined || !Number.isFinite(a) || !Number.isFinite(b) || b === 0) return '-';
  return `${(a / b).toFixed(2)}x`;
}

/** A plain-text table: the first column left-aligned, the others right-aligned. */
export function formatTable(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]): string =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ').trimEnd();
  return [line(headers), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}
