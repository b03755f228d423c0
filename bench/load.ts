import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { findCommand } from './common.ts';

/** The two load drivers behind one call: wrk (an own process, C) when present, autocannon (in-process) otherwise. */

export type Driver = 'wrk' | 'autocannon';

export interface LoadOptions {
  url: string;
  connections: number;
  durationSec: number;
  driver: Driver;
  /** CPU wrk is pinned to; autocannon runs in this process, which the caller pins. */
  cpu?: number | undefined;
  /** POST a request body of this many bytes (with Content-Length) instead of GET */
  postBytes?: number | undefined;
}

export interface LoadResult {
  rps: number;
  p50Ms: number;
  p99Ms: number;
  requests: number;
  non2xx: number;
  errors: number;
  timeouts: number;
}

// autocannon ships no types and @types/autocannon is not installed: this is the slice we use.
export interface AutocannonResult {
  requests: { average: number; total: number };
  latency: { p50: number; p99: number };
  non2xx: number;
  errors: number;
  timeouts: number;
  duration: number;
}
export interface AutocannonInstance {
  on(event: 'tick', fn: (t: { counter: number; bytes: number }) => void): void;
  on(event: 'done', fn: (r: AutocannonResult) => void): void;
  stop(): void;
}
type AutocannonFn = (
  opts: { url: string; connections: number; duration: number; pipelining?: number; timeout?: number; method?: string; body?: string },
  cb: (err: Error | null, result: AutocannonResult) => void,
) => AutocannonInstance;

export const autocannon = createRequire(import.meta.url)('autocannon') as AutocannonFn;

/** The driver to use: LOAD_DRIVER if set, else wrk when on PATH, else autocannon. */
export function pickDriver(): Driver {
  const forced = process.env['LOAD_DRIVER'];
  if (forced === 'wrk' || forced === 'autocannon') {
    if (forced === 'wrk' && findCommand('wrk') === undefined) throw new Error('LOAD_DRIVER=wrk but wrk is not on PATH');
    return forced;
  }
  return findCommand('wrk') !== undefined ? 'wrk' : 'autocannon';
}

export function runLoad(opts: LoadOptions): Promise<LoadResult> {
  return opts.driver === 'wrk' ? runWrk(opts) : runAutocannon(opts);
}

/** Starts autocannon and hands back the instance too, for callers that watch per-second ticks. */
export function startAutocannon(opts: Omit<LoadOptions, 'driver' | 'cpu'>): { instance: AutocannonInstance; done: Promise<AutocannonResult> } {
  let instance: AutocannonInstance | undefined;
  const done = new Promise<AutocannonResult>((resolve, reject) => {
    instance = autocannon(
      { url: opts.url, connections: opts.connections, duration: opts.durationSec, timeout: 10, ...(opts.postBytes === undefined ? {} : { method: 'POST', body: 'x'.repeat(opts.postBytes) }) },
      (err, result) => (err !== null ? reject(err) : resolve(result)),
    );
  });
  return { instance: instance!, done };
}

async function runAutocannon(opts: LoadOptions): Promise<LoadResult> {
  const r = await startAutocannon(opts).done;
  return {
    rps: r.requests.average,
    p50Ms: r.latency.p50,
    p99Ms: r.latency.p99,
    requests: r.requests.total,
    non2xx: r.non2xx,
    errors: r.errors,
    timeouts: r.timeouts,
  };
}

async function runWrk(opts: LoadOptions): Promise<LoadResult> {
  const wrk = findCommand('wrk')!;
  const taskset = findCommand('taskset');
  // One wrk thread: the driver has one core (shared with the upstream) on the 2-core bench layout.
  const args = ['-t1', `-c${opts.connections}`, `-d${opts.durationSec}s`, '--timeout', '10s', '--latency', opts.url];
  if (opts.postBytes !== undefined) args.splice(-1, 0, '-s', postScript(opts.postBytes));
  const [file, argv] = opts.cpu !== undefined && taskset !== undefined ? [taskset, ['-c', String(opts.cpu), wrk, ...args]] : [wrk, args];
  const out = await new Promise<string>((resolve, reject) => {
    const child = spawn(file, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
    let text = '';
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', (d: string) => (text += d));
    child.stderr.on('data', (d: string) => (text += d));
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve(text) : reject(new Error(`wrk exited ${code}: ${text.trim()}`))));
  });
  return parseWrk(out);
}

/** A wrk script that POSTs `bytes` of body on every request (wrk sends it with Content-Length). */
function postScript(bytes: number): string {
  const file = join(mkdtempSync(join(tmpdir(), 'switchyard-wrk-')), 'post.lua');
  writeFileSync(file, `wrk.method = "POST"\nwrk.body = string.rep("x", ${bytes})\nwrk.headers["Content-Type"] = "application/octet-stream"\n`);
  return file;
}

const UNIT_MS: Record<string, number> = { us: 0.001, ms: 1, s: 1000, m: 60_000 };

function wrkLatency(out: string, pct: string): number {
  const m = new RegExp(`^\\s*${pct}%\\s+([\\d.]+)(us|ms|s|m)\\s*$`, 'm').exec(out);
  return m?.[1] !== undefined && m[2] !== undefined ? Number(m[1]) * UNIT_MS[m[2]]! : Number.NaN;
}

export function parseWrk(out: string): LoadResult {
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(out)?.[1];
  if (rps === undefined) throw new Error(`cannot read wrk output: ${out.trim().slice(0, 300)}`);
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  return {
    rps: Number(rps),
    p50Ms: wrkLatency(out, '50'),
    p99Ms: wrkLatency(out, '99'),
    requests: Number(/(\d+) requests in/.exec(out)?.[1] ?? Number.NaN),
    // wrk counts statuses >= 400 here (not 3xx): the bench upstream answers 200 only.
    non2xx: Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0),
    errors: sock === null ? 0 : Number(sock[1]) + Number(sock[2]) + Number(sock[3]),
    timeouts: sock === null ? 0 : Number(sock[4]),
  };
}
