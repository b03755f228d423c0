import { execSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { cpuFor, cpuSeconds, envInt, freePort, installCleanup, NODE, REPO_ROOT, startProcess, stopAll, waitForHttp, type Proc } from './common.ts';
import { pickDriver, runLoad } from './load.ts';
import { startNginxUpstream, switchyardConfig } from './targets.ts';

/**
 * CPU µs per request of several Switchyard builds (or runtime settings) side by side, for A/B
 * runs on a busy machine: each variant is started as `bench/run.ts` starts Switchyard (its config,
 * pinned to the proxy core, the nginx `return 200` upstream and wrk on the other), all in front of
 * one upstream; then ROUNDS rounds of DURATION s each, the variants' order reversed every other
 * round, and per variant the median and the least CPU per request, and each variant's ratio to
 * the first one paired round by round (a neighbour's load moves both members of a pair alike).
 *
 * VARIANTS: `name=entry|flags|ENV:value,ENV:value` separated by `;` (entry relative to the
 * checkout; flags go to node before the entry), e.g.
 * `base=.tmp/base/dist/main.js||;new=dist/main.js||;semi8=dist/main.js|--max-semi-space-size=8|SWITCHYARD_NODE_FLAGS:keep`.
 * A build of another commit: its dist/ and package.json copied into a directory of this checkout
 * (`.tmp/base/`), so that it finds node_modules. BODY_SIZE: the upstream's body (0: `ok`).
 */

interface Variant {
  readonly name: string;
  readonly entry: string;
  readonly flags: string[];
  readonly env: Record<string, string>;
}

function parseVariants(spec: string): Variant[] {
  return spec.split(';').filter((v) => v.trim() !== '').map((v) => {
    const eq = v.indexOf('=');
    if (eq <= 0) throw new Error(`VARIANTS: "${v}" is not name=entry|flags|env`);
    const [entry = '', flags = '', env = ''] = v.slice(eq + 1).split('|');
    const vars: Record<string, string> = {};
    for (const kv of env.split(',').filter((s) => s !== '')) vars[kv.slice(0, kv.indexOf(':'))] = kv.slice(kv.indexOf(':') + 1);
    return { name: v.slice(0, eq).trim(), entry: resolve(REPO_ROOT, entry), flags: flags.split(' ').filter((f) => f !== ''), env: vars };
  });
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
}

installCleanup();
const variants = parseVariants(process.env['VARIANTS'] ?? 'current=dist/main.js||');
const duration = envInt('DURATION', 3);
const rounds = envInt('ROUNDS', 8);
const connections = envInt('CONNECTIONS', 50);
const driver = pickDriver();
const tmp = mkdtempSync(join(tmpdir(), 'switchyard-cpu-ab-'));
const upstream = await startNginxUpstream(envInt('BODY_SIZE', 0), tmp, cpuFor('upstream'));
const upstreamUrl = `http://127.0.0.1:${upstream.port}/`;
const running: { variant: Variant; proc: Proc; url: string }[] = [];
for (const variant of variants) {
  const dir = mkdtempSync(join(tmp, `${variant.name}-`));
  const port = await freePort();
  const adminPort = await freePort();
  const config = join(dir, 'switchyard.yaml');
  // QUIET_LOG in a variant's env is read by the config it is given (no access log), not only by its process
  const quiet = process.env['QUIET_LOG'];
  if (variant.env['QUIET_LOG'] !== undefined) process.env['QUIET_LOG'] = variant.env['QUIET_LOG'];
  writeFileSync(config, switchyardConfig({ port, adminPort, blue: upstreamUrl, green: upstreamUrl, statePath: join(dir, 'state.json'), workers: 1 }));
  if (quiet === undefined) delete process.env['QUIET_LOG'];
  else process.env['QUIET_LOG'] = quiet;
  const proc = startProcess(`switchyard-${variant.name}`, NODE, [...variant.flags, variant.entry, 'serve', '--config', config], { cpu: cpuFor('proxy'), cwd: REPO_ROOT, env: variant.env });
  await waitForHttp(`http://127.0.0.1:${adminPort}/readyz`, { proc, timeoutMs: 20_000 });
  await waitForHttp(`http://127.0.0.1:${port}/`, { proc, timeoutMs: 5_000 });
  running.push({ variant, proc, url: `http://127.0.0.1:${port}/` });
}
const out = (s: string): void => void process.stdout.write(`${s}\n`);
out(`cpu-ab: ${driver} -c${connections}, ${rounds} × ${duration} s, body ${envInt('BODY_SIZE', 0)} B; ${execSync('uptime').toString().trim()}`);
for (const r of running) await runLoad({ url: r.url, connections, durationSec: 2, driver, cpu: cpuFor('load') });
const perRequest = new Map<string, number[]>(variants.map((v) => [v.name, []]));
const p99s = new Map<string, number[]>(variants.map((v) => [v.name, []]));
for (let round = 0; round < rounds; round++) {
  for (const r of round % 2 === 0 ? running : [...running].reverse()) {
    const before = cpuSeconds(r.proc.pid) ?? 0;
    const load = await runLoad({ url: r.url, connections, durationSec: duration, driver, cpu: cpuFor('load') });
    const us = (((cpuSeconds(r.proc.pid) ?? 0) - before) * 1e6) / Math.max(1, load.requests);
    perRequest.get(r.variant.name)?.push(us);
    p99s.get(r.variant.name)?.push(load.p99Ms);
    out(`round ${round + 1} ${r.variant.name}: ${load.rps.toFixed(0)} rps, ${us.toFixed(2)} µs CPU/request, p99 ${load.p99Ms.toFixed(2)} ms${load.non2xx + load.errors > 0 ? `, ${load.non2xx} non-2xx, ${load.errors} errors` : ''}`);
  }
}
const first = perRequest.get(variants[0]?.name ?? '') ?? [];
for (const v of variants) {
  const xs = perRequest.get(v.name) ?? [];
  const paired = v === variants[0] ? '' : `, paired ratio to ${variants[0]?.name} ${median(xs.map((x, i) => x / (first[i] ?? x))).toFixed(3)}`;
  out(`${v.name}: median ${median(xs).toFixed(2)} µs/request, least ${Math.min(...xs).toFixed(2)}${paired}; p99 median ${median(p99s.get(v.name) ?? []).toFixed(2)} ms`);
}
out(`end: ${execSync('uptime').toString().trim()}`);
await stopAll();
process.exit(0);
