import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  BENCH_TOKEN, cores, cpuFor, cpuModel, cpuSeconds, envInt, fmt, httpCall, installCleanup, mean, pinningNote, pinSelf, sleep,
  startNodeService, stopAll, wantsJson,
} from './common.ts';
import { startAutocannon } from './load.ts';
import { startSwitchyard } from './targets.ts';

/**
 * Blue/green switches under sustained load: Switchyard in front of a blue and a green upstream,
 * autocannon for DURATION s; the first half measures the steady rate, the second half carries
 * SWITCHES admin switches (blue ↔ green). Every request must succeed, and the rate should hold.
 * Exits 1 when a request failed, a switch failed or Switchyard did not start.
 */

const CONNECTIONS = envInt('CONNECTIONS', 50);
const DURATION = Math.max(4, envInt('DURATION', 20));
const SWITCHES = envInt('SWITCHES', 100);
const WARMUP = envInt('WARMUP', 2);

interface SwitchOutcome {
  ok: boolean;
  ms: number;
  detail?: string;
}

async function doSwitch(adminPort: number, to: 'blue' | 'green'): Promise<SwitchOutcome> {
  const t0 = performance.now();
  try {
    const r = await httpCall(`http://127.0.0.1:${adminPort}/v1/apps/bench/switch`, {
      method: 'POST',
      headers: { authorization: `Bearer ${BENCH_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ to, reason: 'bench switch-under-load' }),
      timeoutMs: 5000,
    });
    const ms = performance.now() - t0;
    if (r.status !== 200) return { ok: false, ms, detail: `${r.status} ${r.body.slice(0, 200)}` };
    const active = (JSON.parse(r.body) as { active?: unknown }).active;
    return active === to ? { ok: true, ms } : { ok: false, ms, detail: `answered active=${String(active)}, wanted ${to}` };
  } catch (e) {
    return { ok: false, ms: performance.now() - t0, detail: (e as Error).message };
  }
}

/** Switches SWITCHES times, starting each at its slot of `windowMs` or as soon as the previous one is done. */
async function switchLoop(adminPort: number, windowMs: number): Promise<{ outcomes: SwitchOutcome[]; startedAt: number; endedAt: number; last: 'blue' | 'green' | undefined }> {
  const outcomes: SwitchOutcome[] = [];
  const startedAt = Date.now();
  const gap = SWITCHES > 0 ? windowMs / SWITCHES : 0;
  let last: 'blue' | 'green' | undefined;
  for (let i = 0; i < SWITCHES; i++) {
    const wait = startedAt + i * gap - Date.now();
    if (wait > 0) await sleep(wait);
    const to = i % 2 === 0 ? 'green' : 'blue';
    const o = await doSwitch(adminPort, to);
    outcomes.push(o);
    if (o.ok) last = to;
  }
  // SWITCHES=0 is the control run: the same window, no switches, so "during" measures the noise.
  if (SWITCHES === 0) await sleep(windowMs);
  return { outcomes, startedAt, endedAt: Date.now(), last };
}

async function upstreamCount(port: number): Promise<number> {
  try {
    return (JSON.parse((await httpCall(`http://127.0.0.1:${port}/__stats`)).body) as { requests: number }).requests;
  } catch {
    return Number.NaN;
  }
}

async function main(): Promise<number> {
  installCleanup();
  pinSelf(cpuFor('load'));
  const out = (s: string): void => void process.stdout.write(`${s}\n`);
  out('Switchyard: blue/green switches under load');
  out(`  machine  ${cpuModel()}, ${cores()} cores, Node ${process.version}`);
  out(`  driver   autocannon (in-process), ${CONNECTIONS} connections, ${DURATION} s (+${WARMUP} s warmup)`);
  out(`  pinning  ${pinningNote()}`);
  out(`  plan     first half steady; second half ${SWITCHES} switches blue <-> green via the admin API`);

  const tmp = mkdtempSync(join(tmpdir(), 'switchyard-switch-'));
  try {
    const blue = await startNodeService('upstream-blue', 'upstream.ts', { NAME: 'blue' }, cpuFor('upstream'));
    const green = await startNodeService('upstream-green', 'upstream.ts', { NAME: 'green' }, cpuFor('upstream'));
    let sy;
    try {
      sy = await startSwitchyard({ blue: `http://127.0.0.1:${blue.port}`, green: `http://127.0.0.1:${green.port}`, tmpDir: tmp });
    } catch (e) {
      out(`\n${(e as Error).message}`);
      return 1;
    }
    const url = `http://127.0.0.1:${sy.port}/`;
    if (WARMUP > 0) await startAutocannon({ url, connections: CONNECTIONS, durationSec: WARMUP }).done;
    const before = { blue: await upstreamCount(blue.port), green: await upstreamCount(green.port) };

    const t0 = Date.now();
    // per second: requests, and the proxy's CPU seconds in that second (user + system)
    const ticks: { at: number; count: number; cpu: number }[] = [];
    let lastCpu = cpuSeconds(sy.proc.pid) ?? 0;
    const load = startAutocannon({ url, connections: CONNECTIONS, durationSec: DURATION });
    load.instance.on('tick', (t) => {
      const cpu = cpuSeconds(sy.proc.pid) ?? lastCpu;
      ticks.push({ at: Date.now() - t0, count: t.counter, cpu: cpu - lastCpu });
      lastCpu = cpu;
    });
    const halfMs = (DURATION * 1000) / 2;
    await sleep(halfMs);
    // Spread over 90 % of the second half so the last switch lands while the load still runs.
    const switches = await switchLoop(sy.adminPort, halfMs * 0.9);
    const result = await load.done;

    const after = { blue: await upstreamCount(blue.port), green: await upstreamCount(green.port) };
    const served = await httpCall(url).catch((e: Error) => ({ status: 0, headers: {} as Record<string, unknown>, body: e.message }));
    const servedBy = String(served.headers['x-served-by'] ?? '');

    // A tick at `at` counts the second before it: steady = ticks wholly in the first half (less the
    // first second); during = ticks wholly inside the switching window.
    const swFrom = switches.startedAt - t0;
    const swTo = switches.endedAt - t0;
    const steadyTicks = ticks.filter((t) => t.at > 1500 && t.at <= halfMs + 100);
    const duringTicks = ticks.filter((t) => t.at - 1000 >= swFrom - 100 && t.at <= swTo + 100);
    const steady = steadyTicks.map((t) => t.count);
    const during = duringTicks.map((t) => t.count);
    const rpsBefore = mean(steady);
    const rpsDuring = mean(during);
    // what the proxy spent: CPU per request (the switches' own admin work included) and how busy
    // its core was; a lower rate with the same cost per request and a less busy proxy means the
    // limit was elsewhere (the load generator shares its core with the switching client)
    const cpuOf = (ts: typeof ticks): { usPerReq: number; busy: number } => {
      const cpu = ts.reduce((a, t) => a + t.cpu, 0);
      const n = ts.reduce((a, t) => a + t.count, 0);
      return { usPerReq: n > 0 ? (cpu * 1e6) / n : Number.NaN, busy: ts.length > 0 ? cpu / ts.length : Number.NaN };
    };
    const cpuBefore = cpuOf(steadyTicks);
    const cpuDuring = cpuOf(duringTicks);
    const failed = result.non2xx + result.errors + result.timeouts;
    const okSwitches = switches.outcomes.filter((o) => o.ok).length;
    const switchMs = switches.outcomes.map((o) => o.ms).sort((a, b) => a - b);
    const firstFailure = switches.outcomes.find((o) => !o.ok)?.detail;
    const lastOk = switches.last === undefined || servedBy.startsWith(`${switches.last}@`);

    out('');
    out(`  total requests       ${fmt(result.requests.total)}`);
    out(`  non-2xx              ${fmt(result.non2xx)}`);
    out(`  errors               ${fmt(result.errors)}`);
    out(`  timeouts             ${fmt(result.timeouts)}   ${failed === 0 ? '(ok: 0 failed requests)' : '(FAIL: must be 0)'}`);
    out(`  rps before switches  ${fmt(rpsBefore)}  (${steady.length} s)`);
    out(`  rps during switches  ${fmt(rpsDuring)}  (${during.length} s)  ratio ${Number.isFinite(rpsDuring / rpsBefore) ? (rpsDuring / rpsBefore).toFixed(2) : '-'}`);
    out(`  proxy CPU per request ${fmt(cpuBefore.usPerReq)} µs before, ${fmt(cpuDuring.usPerReq)} µs during (ratio ${(cpuDuring.usPerReq / cpuBefore.usPerReq).toFixed(2)}); its core busy ${fmt(100 * cpuBefore.busy)} % before, ${fmt(100 * cpuDuring.busy)} % during`);
    out(`  switches ok          ${okSwitches}/${SWITCHES} in ${fmt((switches.endedAt - switches.startedAt) / 1000, 1)} s; admin latency p50 ${fmt(switchMs[switchMs.length >> 1], 1)} ms, max ${fmt(switchMs.at(-1), 1)} ms`);
    if (firstFailure !== undefined) out(`  first failed switch  ${firstFailure}`);
    out(`  upstream requests    blue ${fmt(after.blue - before.blue)}, green ${fmt(after.green - before.green)} (run only)`);
    out(`  after the last switch (${switches.last ?? 'none'}) a request was served by "${servedBy || served.status}"${lastOk ? '' : ' (FAIL: wrong pool)'}`);

    const pass = failed === 0 && okSwitches === SWITCHES && lastOk;
    out(`\n${pass ? 'PASS' : 'FAIL'}`);
    if (wantsJson()) {
      out(JSON.stringify({
        connections: CONNECTIONS, durationSec: DURATION, switches: SWITCHES, requests: result.requests.total,
        non2xx: result.non2xx, errors: result.errors, timeouts: result.timeouts, rpsBefore, rpsDuring, cpuBefore, cpuDuring,
        switchesOk: okSwitches, switchMsP50: switchMs[switchMs.length >> 1], switchMsMax: switchMs.at(-1),
        upstream: { blue: after.blue - before.blue, green: after.green - before.green }, servedBy, pass,
        switchWindowMs: [swFrom, swTo], perSecond: ticks,
      }));
    }
    return pass ? 0 : 1;
  } finally {
    await stopAll();
    rmSync(tmp, { recursive: true, force: true });
  }
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    process.stderr.write(`switch-under-load failed: ${(e as Error).stack ?? String(e)}\n`);
    process.exitCode = 1;
  },
);
