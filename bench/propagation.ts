import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { request } from 'undici';
import { build, type Switchyard } from '../src/app.ts';
import { parseConfig } from '../src/config/load.ts';
import type { RoutingState } from '../src/state/types.ts';
import { redisClient, startRedis } from '../test/helpers/redis-server.ts';
import { BENCH_TOKEN, envInt, fmt, formatTable, ratio, wantsJson } from './common.ts';

/**
 * Fleet propagation: INSTANCES Switchyard instances in this process on one fresh redis-server;
 * WRITES switches through the first instance's admin API, one after another, then WRITES pool
 * definitions (`PUT …/pools/green` with a new version and new targets, docs/definitions.md §2). For each,
 * the time from the write's 200 until every instance routes on the new revision (`applied`
 * events, performance.now()); after each pool write (outside the timing) one instance in turn
 * must serve `green@NEW` from the new target. The baseline, measured in the same run, is the
 * floor under it: a bare Redis PUBLISH until INSTANCES subscribers all have the message.
 * Target: p99 ≤ TARGET_MS for both.
 */

const WRITES = envInt('WRITES', 200);
const INSTANCES = Math.max(1, envInt('INSTANCES', 3));
const TARGET_MS = envInt('TARGET_MS', 20);

function pct(xs: readonly number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)] ?? Number.NaN;
}

async function pubsubBaseline(url: string, rounds: number): Promise<number[]> {
  const pub = redisClient(url);
  const subs = Array.from({ length: INSTANCES }, () => redisClient(url));
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

async function main(): Promise<void> {
  const redis = await startRedis();
  const dir = await mkdtemp(join(tmpdir(), 'switchyard-bench-propagation-'));
  const upstream = createServer((_req, res) => res.end('ok'));
  upstream.listen(0, '127.0.0.1');
  await once(upstream, 'listening');
  const target = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
  const upstream2 = createServer((_req, res) => res.end('two'));
  upstream2.listen(0, '127.0.0.1');
  await once(upstream2, 'listening');
  const target2 = `http://127.0.0.1:${(upstream2.address() as AddressInfo).port}`;
  const instances: Switchyard[] = [];
  try {
    /** per instance: revision → performance.now() when it was applied */
    const appliedAt: Map<number, number>[] = [];
    for (let i = 0; i < INSTANCES; i++) {
      const config = parseConfig({
        listen: { host: '127.0.0.1', port: 0 },
        admin: { host: '127.0.0.1', port: 0, tokens: [{ name: 'bench', token: BENCH_TOKEN }] },
        store: { kind: 'redis', url: redis.url, prefix: 'bench', cachePath: join(dir, `cache-${i}.json`) },
        apps: [{ name: 'bench', hosts: ['*'], pools: { blue: { version: '1', targets: [target] }, green: { version: '2', targets: [target] } } }],
        log: { level: 'silent' },
      });
      const sy = await build(config, { logger: pino({ level: 'silent' }), instanceId: `bench-${i}` });
      const seen = new Map<number, number>();
      sy.controller.on('applied', (state: RoutingState) => seen.set(state.revision, performance.now()));
      appliedAt.push(seen);
      instances.push(sy);
    }
    const { adminPort } = await instances[0]!.listen();
    const proxyPorts = await Promise.all(instances.slice(1).map(async (sy) => (await sy.listen()).proxyPort));
    const admin = `http://127.0.0.1:${adminPort}/v1/apps/bench`;
    const post = (url: string, method: 'POST' | 'PUT', body: unknown) => request(url, { method, headers: { authorization: `Bearer ${BENCH_TOKEN}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });

    /** WRITES writes one after another: from each 200 until every instance applied its revision */
    const measure = async (send: (i: number) => { url: string; method: 'POST' | 'PUT'; body: unknown }, after?: (i: number) => Promise<void>) => {
      const ms: number[] = [];
      const write: number[] = [];
      const fromSend: number[] = [];
      const fromWriter: number[] = [];
      let beforeReply = 0;
      for (let i = 0; i < WRITES; i++) {
        const w = send(i);
        const t0 = performance.now();
        const r = await post(w.url, w.method, w.body);
        const body = (await r.body.json()) as { revision: number };
        const ok = performance.now();
        if (r.statusCode !== 200) throw new Error(`write ${i}: ${r.statusCode} ${JSON.stringify(body)}`);
        write.push(ok - t0);
        const rev = body.revision;
        const deadline = ok + 5_000;
        while (!appliedAt.every((m) => m.has(rev))) {
          if (performance.now() > deadline) throw new Error(`revision ${rev} did not reach every instance within 5 s`);
          await new Promise((resolve) => setImmediate(resolve));
        }
        const last = Math.max(...appliedAt.map((m) => m.get(rev)!));
        if (last <= ok) beforeReply++;
        ms.push(Math.max(0, last - ok));
        fromSend.push(last - t0);
        fromWriter.push(last - appliedAt[0]!.get(rev)!);
        await after?.(i);
      }
      return { ms, write, fromSend, fromWriter, beforeReply };
    };

    const switches = await measure((i) => ({ url: `${admin}/switch`, method: 'POST', body: { to: i % 2 === 0 ? 'green' : 'blue' } }));
    // green live, then its definition replaced WRITES times: a new version on the other upstream each time
    await (await post(`${admin}/switch`, 'POST', { to: 'green' })).body.dump();
    const pools = await measure(
      (i) => ({ url: `${admin}/pools/green`, method: 'PUT', body: { version: `2.${i}`, targets: [i % 2 === 0 ? target2 : target] } }),
      async (i) => {
        const port = proxyPorts[i % proxyPorts.length];
        if (port === undefined) return;
        const r = await request(`http://127.0.0.1:${port}/`);
        const body = await r.body.text();
        if (r.headers['x-served-by'] !== `green@2.${i}` || body !== (i % 2 === 0 ? 'two' : 'ok')) throw new Error(`pool write ${i}: served by ${String(r.headers['x-served-by'])} from "${body}"`);
      },
    );
    const base = await pubsubBaseline(redis.url, WRITES);

    const row = (name: string, xs: number[]): string[] => [name, fmt(pct(xs, 50), 2), fmt(pct(xs, 99), 2), fmt(Math.max(...xs), 2), ratio(pct(xs, 99), pct(base, 99))];
    console.log(`propagation: ${WRITES} switches, then ${WRITES} pool definitions (PUT …/pools/green: new version and targets), through instance 0, ${INSTANCES} instances in one process, one redis-server (loopback)\n`);
    console.log(formatTable(['measure (ms)', 'p50', 'p99', 'max', 'p99 vs baseline'], [
      row(`baseline: PUBLISH sent → ${INSTANCES} subscribers have it`, base),
      row('switch 200 → all instances routing on it', switches.ms),
      row('switch: writer applied (CAS ok) → all routing on it', switches.fromWriter),
      row('switch sent → all instances routing on it', switches.fromSend),
      row('switch: admin write round trip', switches.write),
      row('pool PUT 200 → all instances routing on it', pools.ms),
      row('pool PUT: writer applied → all routing on it', pools.fromWriter),
      row('pool PUT sent → all instances routing on it', pools.fromSend),
      row('pool PUT: admin write round trip', pools.write),
    ]));
    console.log(`\n${switches.beforeReply}/${WRITES} switches and ${pools.beforeReply}/${WRITES} pool writes had reached every instance before their 200 arrived (counted as 0 ms).`);
    console.log('every pool write was then served as green@NEW by the new target (one instance in turn).');
    const met = (xs: number[]): string => (pct(xs, 99) <= TARGET_MS ? 'met' : 'MISSED');
    console.log(`target p99 ≤ ${TARGET_MS} ms: switches ${met(switches.ms)}, pool writes ${met(pools.ms)}`);
    if (wantsJson()) console.log(JSON.stringify({ bench: 'propagation', writes: WRITES, instances: INSTANCES, p50: pct(switches.ms, 50), p99: pct(switches.ms, 99), max: Math.max(...switches.ms), poolP50: pct(pools.ms, 50), poolP99: pct(pools.ms, 99), poolMax: Math.max(...pools.ms), baselineP50: pct(base, 50), baselineP99: pct(base, 99) }));
  } finally {
    for (const sy of instances) await sy.close();
    upstream.close();
    upstream2.close();
    await redis.cleanup();
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
