import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BENCH_TOKEN, cpuFor, envInt, fmt, formatTable, httpCall, installCleanup, median, pinSelf, startNodeService, stopAll } from './common.ts';
import { pickDriver, runLoad, type LoadResult } from './load.ts';
import { startSwitchyard } from './targets.ts';

/**
 * Cohort rules and shadow traffic (issue 25): one Switchyard in front of a blue and a green
 * upstream, the requests matching no rule, over ROUNDS interleaved rounds of DURATION s each:
 *   none      no rules, no mirror
 *   rules     5 rules (header, cookie regex, query, path, method) that these requests do not meet
 *   rules+10% those rules and a 10 % mirror of GETs to green (which answers)
 *   hang 10%  a 10 % mirror to a pool whose target accepts and never answers
 * Target (the issue's): `rules+10%` at ≥ 0.9× the rps of `none`, and `hang 10%`'s p99 within 10 %
 * of `none`'s. `npm run build` first (the proxy runs dist/main.js; SWITCHYARD_ENTRY=src/main.ts
 * runs the sources). CONNECTIONS=50 DURATION=10 ROUNDS=3.
 */

const CONNECTIONS = envInt('CONNECTIONS', 50);
const DURATION = envInt('DURATION', 10);
const ROUNDS = Math.max(1, envInt('ROUNDS', 3));

const RULES = [
  { name: 'beta', match: { header: { 'x-beta': '1' } }, to: 'green' },
  { name: 'staff', match: { cookie: { team: { regex: '^(qa|dev)$' } } }, to: 'green' },
  { name: 'flag', match: { query: { canary: { present: true } } }, to: 'green' },
  { name: 'api-v2', match: { path: { prefix: '/v2/' } }, to: 'green', share: 50 },
  { name: 'writers', match: { method: ['POST'], header: { 'x-client': { regex: '^app/[0-9]+\\.[0-9]+$' } } }, to: 'green' },
];

async function put(adminPort: number, path: string, body: unknown): Promise<void> {
  const r = await httpCall(`http://127.0.0.1:${adminPort}/v1/apps/bench${path}`, { method: 'PUT', headers: { authorization: `Bearer ${BENCH_TOKEN}`, 'content-type': 'application/json' }, body: JSON.stringify(body), timeoutMs: 5000 });
  if (r.status !== 200) throw new Error(`PUT ${path}: ${r.status} ${r.body.slice(0, 300)}`);
}

async function main(): Promise<void> {
  installCleanup();
  pinSelf(cpuFor('load'));
  const tmp = mkdtempSync(join(tmpdir(), 'switchyard-bench-cohorts-'));
  const hangSockets = new Set<Socket>();
  const hang = createServer((s) => {
    hangSockets.add(s);
    s.on('error', () => undefined);
    s.on('close', () => hangSockets.delete(s));
    s.resume();
  });
  try {
    await new Promise<void>((r) => hang.listen(0, '127.0.0.1', r));
    const hangUrl = `http://127.0.0.1:${(hang.address() as { port: number }).port}`;
    const blue = await startNodeService('blue', 'upstream.ts', { NAME: 'blue' }, cpuFor('upstream'));
    const green = await startNodeService('green', 'upstream.ts', { NAME: 'green' }, cpuFor('upstream'));
    const sy = await startSwitchyard({ blue: `http://127.0.0.1:${blue.port}`, green: `http://127.0.0.1:${green.port}`, tmpDir: tmp });
    await put(sy.adminPort, '/pools/hang', { version: 'hang', targets: [hangUrl] });
    const configs: [string, () => Promise<void>][] = [
      ['none', async () => (await put(sy.adminPort, '/rules', { rules: [] }), put(sy.adminPort, '/mirror', { mirror: null }))],
      ['rules', async () => (await put(sy.adminPort, '/rules', { rules: RULES }), put(sy.adminPort, '/mirror', { mirror: null }))],
      ['rules+10%', async () => (await put(sy.adminPort, '/rules', { rules: RULES }), put(sy.adminPort, '/mirror', { mirror: { to: 'green', share: 10, compare: true } }))],
      ['hang 10%', async () => (await put(sy.adminPort, '/rules', { rules: [] }), put(sy.adminPort, '/mirror', { mirror: { to: 'hang', share: 10 } }))],
    ];
    const driver = pickDriver();
    const results = new Map<string, LoadResult[]>(configs.map(([n]) => [n, []]));
    const url = `http://127.0.0.1:${sy.port}/`;
    await runLoad({ url, connections: CONNECTIONS, durationSec: 2, driver, cpu: cpuFor('load') });
    for (let round = 0; round < ROUNDS; round++) {
      for (const [name, apply] of configs) {
        await apply();
        results.get(name)!.push(await runLoad({ url, connections: CONNECTIONS, durationSec: DURATION, driver, cpu: cpuFor('load') }));
        process.stderr.write(`round ${round + 1} ${name}: ${fmt(results.get(name)!.at(-1)!.rps)} rps\n`);
      }
    }
    const base = median(results.get('none')!.map((r) => r.rps));
    const baseP99 = median(results.get('none')!.map((r) => r.p99Ms));
    const rows = configs.map(([name]) => {
      const rs = results.get(name)!;
      const rps = median(rs.map((r) => r.rps));
      const p99 = median(rs.map((r) => r.p99Ms));
      return [name, fmt(rps), `${(rps / base).toFixed(2)}×`, fmt(median(rs.map((r) => r.p50Ms)), 1), fmt(p99, 1), `${(p99 / baseP99).toFixed(2)}×`, String(rs.reduce((a, r) => a + r.non2xx + r.errors + r.timeouts, 0))];
    });
    console.log(`cohort rules and mirror, ${CONNECTIONS} connections, ${DURATION} s × ${ROUNDS} rounds (median), ${driver}; copies to the hanging target in flight at the end: ${hangSockets.size} (maxInflight 100)`);
    console.log(formatTable(['config', 'rps', 'vs none', 'p50 ms', 'p99 ms', 'p99 vs none', 'failed'], rows));
  } finally {
    for (const s of hangSockets) s.destroy();
    hang.close();
    await stopAll();
    rmSync(tmp, { recursive: true, force: true });
  }
}

main().catch(async (err: unknown) => {
  process.stderr.write(`bench cohorts: ${(err as Error).message}\n`);
  await stopAll();
  process.exit(1);
});
