/**
 * Micro-benchmark of the routing decision (issue 3): the per-request cost of the sticky path
 * (hash of salt + key → bucket → pool) against the random path, and the share of green over
 * 100k sticky keys at 0.01 %, 1 %, 10 % and 50 %. Pure functions, one process:
 *   npx node bench/routing.ts          (ITERATIONS=2000000 ROUNDS=5 to tune)
 */
import { parseConfig } from '../src/config/load.ts';
import { initialState } from '../src/control/next-state.ts';
import { poolForBucket, randomBucket, stickyBucket } from '../src/routing/choose.ts';
import { buildAppRoute } from '../src/routing/snapshot.ts';

const ITERATIONS = Number(process.env['ITERATIONS'] ?? 2_000_000);
const ROUNDS = Number(process.env['ROUNDS'] ?? 5);

const cfg = parseConfig({ apps: [{ name: 'shop', hosts: ['*'], pools: { blue: { version: '1', targets: ['http://127.0.0.1:1'] }, green: { version: '2', targets: ['http://127.0.0.1:2'] } }, sticky: { key: ['header:x-user-id'] } }] }).apps[0]!;
const route = (greenBp: number) => buildAppRoute(0, cfg, initialState('shop', { blue: 10_000 - greenBp, green: greenBp }, Date.now()));

console.log('share of green over 100k sticky keys');
for (const pct of [0.01, 1, 10, 50]) {
  const app = route(Math.round(pct * 100));
  let green = 0;
  for (let i = 0; i < 100_000; i++) if (poolForBucket(app, stickyBucket(app, `user-${i}`)).name === 'green') green++;
  console.log(`  weight ${String(pct).padStart(5)} %  → ${((green / 100_000) * 100).toFixed(3).padStart(7)} %  (${green} keys)`);
}

const app = route(1000);
const keys = Array.from({ length: 1024 }, (_, i) => `user-${i * 7919}-session`);
let sink = 0;
function sticky(): number {
  const t = process.hrtime.bigint();
  for (let i = 0; i < ITERATIONS; i++) sink += poolForBucket(app, stickyBucket(app, keys[i & 1023] as string)).index;
  return Number(process.hrtime.bigint() - t) / ITERATIONS;
}
function random(): number {
  const t = process.hrtime.bigint();
  for (let i = 0; i < ITERATIONS; i++) sink += poolForBucket(app, randomBucket(Math.random())).index;
  return Number(process.hrtime.bigint() - t) / ITERATIONS;
}
const s: number[] = [];
const r: number[] = [];
for (let k = 0; k < ROUNDS; k++) {
  s.push(sticky());
  r.push(random());
}
const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)] as number;
console.log(`\nper-request routing cost (median of ${ROUNDS} rounds × ${ITERATIONS} decisions, 24-char keys)`);
console.log(`  sticky: ${median(s).toFixed(1)} ns   random: ${median(r).toFixed(1)} ns   sticky/random: ${(median(s) / median(r)).toFixed(2)}×`);
if (sink === -1) console.log(sink);
