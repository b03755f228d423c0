import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  cores, cpuFor, cpuModel, cpuSeconds, envInt, envList, findCommand, fmt, formatTable, installCleanup, median, pinningNote, pinSelf, ratio, rssMb,
  sleep, startNodeService, stopAll, tail, wantsJson,
} from './common.ts';
import { pickDriver, runLoad, type Driver, type LoadResult } from './load.ts';
import { benchTls } from './tls.ts';
import { startNginxUpstream, startTarget, TARGET_NAMES, type Running, type TargetName } from './targets.ts';

/**
 * `npm run bench`: Switchyard against the upstream hit directly and three reference proxies,
 * all in one run on one machine, interleaved over ROUNDS rounds. See bench/README.md.
 */

function readSettings() {
  const targets = (envList('TARGETS') ?? [...TARGET_NAMES]).map((t) => {
    if (!(TARGET_NAMES as readonly string[]).includes(t)) throw new Error(`TARGETS: unknown "${t}" (known: ${TARGET_NAMES.join(', ')})`);
    return t as TargetName;
  });
  // the ceiling is measured in every run, whatever TARGETS says (ceilingLines)
  if (!targets.includes('direct')) targets.unshift('direct');
  const bodySizes = (envList('BODY_SIZES') ?? [String(envInt('BODY_SIZE', 0))]).map((s) => {
    const n = Number(s);
    if (!Number.isInteger(n) || n < 0) throw new Error(`BODY_SIZES: "${s}" is not a byte count`);
    return n;
  });
  return {
    connections: envInt('CONNECTIONS', 50),
    durationSec: envInt('DURATION', 10),
    warmupSec: envInt('WARMUP', 2),
    rounds: Math.max(1, envInt('ROUNDS', 3)),
    bodySizes,
    /** POST_BODY=1024: every request POSTs that many bytes (Content-Length) instead of a GET */
    postBytes: process.env['POST_BODY'] === undefined ? undefined : envInt('POST_BODY', 0),
    targets,
  };
}

let settings: ReturnType<typeof readSettings>;
try {
  settings = readSettings();
} catch (e) {
  process.stderr.write(`bench: ${(e as Error).message}\n`);
  process.exit(2);
}
const { connections: CONNECTIONS, durationSec: DURATION, warmupSec: WARMUP, rounds: ROUNDS, bodySizes: BODY_SIZES, targets: TARGETS, postBytes: POST_BYTES } = settings;
/** nginx serves the upstream's bytes when installed (the issue's setup); UPSTREAM=node forces the Node upstream. */
const UPSTREAM: 'nginx' | 'node' = process.env['UPSTREAM'] === 'node' || findCommand('nginx') === undefined ? 'node' : 'nginx';
const BASELINES: readonly TargetName[] = ['direct', 'http-proxy', 'undici-naive', 'nginx', 'caddy'];

interface Row {
  target: TargetName;
  runs: LoadResult[];
  rss: number[];
  /** proxy CPU µs per request, per measured run */
  cpuUs: number[];
  /** RSS (MiB) once started and idle, before any load */
  restRss?: number;
  /** Why the row has no (or partial) numbers. */
  note?: string;
}

interface Summary {
  target: TargetName;
  ok: boolean;
  rps?: number;
  p50Ms?: number;
  p99Ms?: number;
  /** non-2xx + socket errors + timeouts, summed over the measured runs. */
  errors?: number;
  rssMb?: number;
  restMb?: number;
  cpuUsPerRequest?: number;
  rounds: LoadResult[];
  note?: string;
}

function summarize(r: Row): Summary {
  const base: Summary = { target: r.target, ok: r.runs.length > 0, rounds: r.runs };
  if (r.note !== undefined) base.note = r.note;
  if (r.restRss !== undefined) base.restMb = r.restRss;
  if (r.runs.length === 0) return base;
  base.rps = median(r.runs.map((x) => x.rps));
  base.p50Ms = median(r.runs.map((x) => x.p50Ms));
  base.p99Ms = median(r.runs.map((x) => x.p99Ms));
  base.errors = r.runs.reduce((s, x) => s + x.non2xx + x.errors + x.timeouts, 0);
  if (r.rss.length > 0) base.rssMb = Math.max(...r.rss);
  if (r.cpuUs.length > 0) base.cpuUsPerRequest = median(r.cpuUs);
  return base;
}

async function measure(t: Running, driver: Driver): Promise<{ result: LoadResult; rss: number | undefined; cpuUs: number | undefined }> {
  const load = { url: t.url, connections: CONNECTIONS, driver, cpu: cpuFor('load'), postBytes: POST_BYTES };
  if (WARMUP > 0) await runLoad({ ...load, durationSec: WARMUP });
  const cpuBefore = t.proc !== undefined ? cpuSeconds(t.proc.pid) : undefined;
  const result = await runLoad({ ...load, durationSec: DURATION });
  const cpuAfter = t.proc !== undefined ? cpuSeconds(t.proc.pid) : undefined;
  const cpuUs = cpuBefore !== undefined && cpuAfter !== undefined && result.requests > 0 ? ((cpuAfter - cpuBefore) * 1e6) / result.requests : undefined;
  // Right after the load, while the proxy still holds what the load made it allocate.
  const rss = t.proc !== undefined ? rssMb(t.proc.pid) : undefined;
  if (t.proc !== undefined && !t.proc.isRunning()) throw new Error(`${t.name} exited during the run: ${tail(t.proc.stderrTail())}`);
  return { result, rss, cpuUs };
}

async function benchBodySize(bodySize: number, driver: Driver, log: (s: string) => void): Promise<Summary[]> {
  const tmp = mkdtempSync(join(tmpdir(), 'switchyard-bench-'));
  const rows = new Map<TargetName, Row>(TARGETS.map((t) => [t, { target: t, runs: [], rss: [], cpuUs: [] }]));
  const running: Running[] = [];
  try {
    const upstream = UPSTREAM === 'nginx'
      ? await startNginxUpstream(bodySize, mkdtempSync(join(tmp, 'upstream-')), cpuFor('upstream'))
      : await startNodeService('upstream', 'upstream.ts', { BODY_SIZE: String(bodySize) }, cpuFor('upstream'));
    const ctx = { upstreamUrl: `http://127.0.0.1:${upstream.port}`, tmpDir: tmp };
    for (const name of TARGETS) {
      try {
        running.push(await startTarget(name, { ...ctx, tmpDir: mkdtempSync(join(tmp, `${name}-`)) }));
      } catch (e) {
        rows.get(name)!.note = (e as Error).message;
        log(`  ${name}: ${(e as Error).message}`);
      }
    }
    // at rest: every target started (and answered its readiness request), idle for a second
    await sleep(1000);
    for (const t of running) {
      const rest = t.proc !== undefined ? rssMb(t.proc.pid) : undefined;
      if (rest !== undefined) rows.get(t.name)!.restRss = rest;
    }
    for (let round = 0; round < ROUNDS; round++) {
      // Rotate the order each round so no target always runs first (cold) or last (hot machine).
      const order = running.map((_, i) => running[(i + round) % running.length]!);
      log(`  round ${round + 1}/${ROUNDS}: ${order.map((t) => t.name).join(' → ')}`);
      for (const t of order) {
        const row = rows.get(t.name)!;
        if (row.note !== undefined) continue;
        try {
          const { result, rss, cpuUs } = await measure(t, driver);
          row.runs.push(result);
          if (rss !== undefined) row.rss.push(rss);
          if (cpuUs !== undefined) row.cpuUs.push(cpuUs);
          log(`    ${t.name.padEnd(13)} ${fmt(result.rps).padStart(8)} rps  p99 ${fmt(result.p99Ms, 2)} ms`);
        } catch (e) {
          row.note = `failed in round ${round + 1}: ${(e as Error).message}`;
          log(`    ${t.name}: ${row.note}`);
        }
        await sleep(200);
      }
    }
  } finally {
    await Promise.all(running.map((t) => t.proc?.stop()));
    await stopAll();
    rmSync(tmp, { recursive: true, force: true });
  }
  return TARGETS.map((t) => summarize(rows.get(t)!));
}

/** Half the min-max range of rps over rounds, relative to the median: how much to trust a ratio. */
function spread(s: Summary): string {
  if (s.rounds.length < 2 || s.rps === undefined) return '-';
  const xs = s.rounds.map((r) => r.rps);
  return `±${((50 * (Math.max(...xs) - Math.min(...xs))) / s.rps).toFixed(0)}%`;
}

function table(summaries: Summary[]): string {
  const rps = new Map(summaries.map((s) => [s.target, s.rps]));
  const headers = ['target', 'rps', 'spread', 'p50 ms', 'p99 ms', 'errors', 'CPU µs/req', 'RSS rest MiB', 'RSS load MiB', ...BASELINES.map((b) => `vs ${b}`)];
  const rows = summaries.map((s) => [
    s.target,
    s.ok ? fmt(s.rps) : 'failed',
    spread(s),
    fmt(s.p50Ms, 2),
    fmt(s.p99Ms, 2),
    fmt(s.errors),
    fmt(s.cpuUsPerRequest, 0),
    fmt(s.restMb, 1),
    fmt(s.rssMb, 1),
    ...BASELINES.map((b) => ratio(s.rps, rps.get(b))),
  ]);
  return formatTable(headers, rows);
}

/** A target at or above this share of `direct` may be capped by the upstream + load core, not measured. */
const CEILING_SHARE = 0.85;

/**
 * The ceiling check: `direct` is the upstream hit by the load driver with no proxy, on the core
 * both share in every row. A target within 15 % of it is flagged: its figure may say what the
 * upstream and the driver can do, not what the proxy can (a reference capped so looks weaker).
 */
function ceilingLines(rows: Summary[]): string[] {
  const direct = rows.find((r) => r.target === 'direct')?.rps;
  if (direct === undefined) return ['  ceiling: not measured (direct failed): no figure below is checked against the upstream + driver ceiling'];
  const capped = rows.filter((r) => r.target !== 'direct' && r.rps !== undefined && r.rps >= CEILING_SHARE * direct);
  const head = `  ceiling: direct (upstream + load driver, no proxy) ${fmt(direct)} rps; targets within 15 % of it (≥ ${fmt(CEILING_SHARE * direct)} rps) may be capped by it, not by the proxy`;
  if (capped.length === 0) return [`${head}: none`];
  return [`${head}:`, ...capped.map((r) => `  CEILING: ${r.target} ${fmt(r.rps)} rps = ${ratio(r.rps, direct)} of direct: a lower bound of what it can do, its ratios are not comparisons`)];
}

/** Switchyard's CPU per request against each proxy's, in one line: > 1.00x means Switchyard costs less. */
function costLine(rows: Summary[]): string {
  const sy = rows.find((r) => r.target === 'switchyard')?.cpuUsPerRequest;
  if (sy === undefined) return '';
  const parts = rows.filter((r) => r.target !== 'switchyard' && r.cpuUsPerRequest !== undefined).map((r) => `${r.target} ${ratio(r.cpuUsPerRequest, sy)}`);
  return parts.length === 0 ? '' : `  CPU per request, baseline ÷ switchyard (> 1.00x: Switchyard spends less per request): ${parts.join(', ')}`;
}

/** What tracing costs (`switchyard-traced`, TRACE_SAMPLE of the requests traced) against `switchyard`, same run. */
function tracingLine(rows: Summary[]): string {
  const off = rows.find((r) => r.target === 'switchyard');
  const on = rows.find((r) => r.target === 'switchyard-traced');
  if (off?.rps === undefined || on?.rps === undefined) return '';
  const cpu = off.cpuUsPerRequest !== undefined && on.cpuUsPerRequest !== undefined ? `, CPU per request ${ratio(on.cpuUsPerRequest, off.cpuUsPerRequest)}` : '';
  return `  tracing on (switchyard-traced ÷ switchyard): throughput ${ratio(on.rps, off.rps)} (${(((on.rps - off.rps) / off.rps) * 100).toFixed(1)} %)${cpu}`;
}

async function main(): Promise<void> {
  installCleanup();
  const json = wantsJson();
  const driver = pickDriver();
  // The in-process autocannon runs on the load core; wrk is pinned there when spawned.
  pinSelf(cpuFor('load'));
  const machine = {
    cpu: cpuModel(),
    cores: cores(),
    node: process.version,
    driver: driver === 'wrk' ? 'wrk (1 thread)' : 'autocannon (in-process; latency in whole ms; tops out near 46k rps, install wrk for more headroom)',
    pinning: pinningNote(),
    upstream: UPSTREAM === 'nginx' ? 'nginx (1 worker): bodies up to 2 KiB by return 200, larger ones from a file (cached descriptor, sendfile)' : 'Node http server (bench/upstream.ts)',
  };
  const out = (s: string): void => void process.stdout.write(`${s}\n`);
  out('Switchyard benchmark');
  out(`  machine  ${machine.cpu}, ${machine.cores} cores, Node ${machine.node}`);
  out(`  driver   ${machine.driver}`);
  out(`  pinning  ${machine.pinning}`);
  out(`  upstream ${machine.upstream}`);
  out(`  load     ${CONNECTIONS} connections, ${WARMUP} s warmup + ${DURATION} s per run, ${ROUNDS} round(s), interleaved${POST_BYTES === undefined ? '' : `, POST ${POST_BYTES} bytes per request`}`);
  out(`  figures  rps/p50/p99: median over rounds; spread: ±half the rps range over rounds; CPU µs/req: the proxy's CPU time (user + system) over the measured run / its requests, median; RSS (MiB): proxy process (+ children) once started and idle, and right after the load (max over rounds)`);

  const tables: { bodySize: number; rows: Summary[] }[] = [];
  for (const bodySize of BODY_SIZES) {
    out(`\n== body ${bodySize} bytes ==`);
    const rows = await benchBodySize(bodySize, driver, out);
    tables.push({ bodySize, rows });
    out('');
    out(table(rows));
    for (const l of ceilingLines(rows)) out(l);
    const cost = costLine(rows);
    if (cost !== '') out(cost);
    const traced = tracingLine(rows);
    if (traced !== '') out(traced);
    for (const r of rows) if (r.note !== undefined) out(`  note: ${r.target}: ${r.note}`);
    for (const r of rows) if ((r.errors ?? 0) > 0) out(`  note: ${r.target}: ${r.errors} failed responses (non-2xx, socket errors or timeouts)`);
  }
  // the https row: TLS handshakes, HTTP/1.1 and h2 over TLS against nginx with the same certificate (TLS_BENCH=0 skips it)
  if (process.env['TLS_BENCH'] !== '0') {
    out('\n== https: Switchyard vs nginx, same certificate ==');
    out(await benchTls(driver, out));
  }
  out('\nratios: target rps / baseline rps (same run, same machine); > 1.00x is faster than the baseline.');
  if (json) out(`\n${JSON.stringify({ machine, settings, tables })}`);
}

main().catch((e: unknown) => {
  process.stderr.write(`bench failed: ${(e as Error).stack ?? String(e)}\n`);
  process.exitCode = 1;
});
