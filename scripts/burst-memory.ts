/**
 * Measures the proxy's memory around a burst of connections: RSS and V8 heap at rest, at the
 * peak, and at rest again after the burst. A measuring script, not a test (the tests assert the
 * limits' behaviour); run it as `npx node scripts/burst-memory.ts`.
 *
 * Env: CONNECTIONS (default 8000; the client, the upstream and the proxy each need about as many
 * file descriptors, so keep it under `ulimit -n` / 2), SY_DIR (the Switchyard tree to run,
 * default this one: point it at an export of another commit to compare), SETTLE_S (seconds
 * watched after the burst, default 15), IDLE=1 (connections that send nothing, as in an idle
 * flood: those over the cap are closed by the proxy, and the admin API is asked meanwhile).
 * MALLOC_ARENA_MAX and friends are passed to the proxy.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { connect, createServer as createNetServer, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

const N = Number(process.env.CONNECTIONS ?? 8000);
const DIR = process.env.SY_DIR ?? process.cwd();
const SETTLE_S = Number(process.env.SETTLE_S ?? 15);
const IDLE = process.env.IDLE === '1';

async function freePort(): Promise<number> {
  const s = createNetServer().listen(0, '127.0.0.1');
  await once(s, 'listening');
  const { port } = s.address() as AddressInfo;
  s.close();
  return port;
}

function rssMiB(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m === null ? NaN : Number(m[1]) / 1024;
}

/** V8 heap used, V8 heap committed, and memory outside the heap (Buffers, ArrayBuffers), in MiB. */
async function heapMiB(adminPort: number): Promise<number[]> {
  const text = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
  return ['nodejs_heap_size_used_bytes', 'nodejs_heap_size_total_bytes', 'nodejs_external_memory_bytes'].map((name) => {
    const m = new RegExp(`^${name} (\\d+(?:\\.\\d+)?)$`, 'm').exec(text);
    return m === null ? NaN : Number(m[1]) / 1048576;
  });
}

const upstream = createServer({ keepAliveTimeout: 120_000 }, (_req, res) => res.end('ok\n'));
upstream.listen(0, '127.0.0.1');
await once(upstream, 'listening');
const upPort = (upstream.address() as AddressInfo).port;

const dir = await mkdtemp(join(tmpdir(), 'sy-burst-'));
const proxyPort = await freePort();
const adminPort = await freePort();
const cfg = join(dir, 'switchyard.json');
const target = `http://127.0.0.1:${upPort}`;
await writeFile(
  cfg,
  JSON.stringify({
    listen: { host: '127.0.0.1', port: proxyPort },
    admin: { host: '127.0.0.1', port: adminPort },
    store: { kind: 'file', path: join(dir, 'state.json') },
    log: { level: 'warn', accessSample: 0 },
    apps: [{ name: 'shop', hosts: ['*'], pools: { blue: { version: '1', targets: [target] }, green: { version: '2', targets: [target] } } }],
  }),
);
const child = spawn(process.execPath, ['src/main.ts', 'serve', '--config', cfg], { cwd: DIR, stdio: ['ignore', 'inherit', 'inherit'] });
const pid = child.pid as number;
for (let i = 0; ; i++) {
  try {
    if ((await fetch(`http://127.0.0.1:${adminPort}/readyz`)).ok) break;
  } catch {
    if (i > 200) throw new Error('the proxy did not start');
  }
  await sleep(50);
}
await sleep(2000);
const rows: [string, number, number[]][] = [];
const sample = async (when: string): Promise<void> => {
  rows.push([when, rssMiB(pid), await heapMiB(adminPort)]);
};
await sample('at rest before');

// the burst: N connections, each one request (answered) and then held open, then all closed
let peak = 0;
let closedByProxy = 0;
const watch = setInterval(() => (peak = Math.max(peak, rssMiB(pid))), 100);
const sockets: Socket[] = [];
const started = performance.now();
await Promise.all(
  Array.from({ length: N }, async (_, i) => {
    await sleep(Math.floor(i / 500) * 20); // 500 connects per 20 ms: a burst the accept queue holds
    const s = connect(proxyPort, '127.0.0.1');
    s.on('error', () => undefined);
    s.on('close', () => closedByProxy++);
    sockets.push(s);
    await once(s, 'connect');
    if (IDLE) return;
    s.write('GET / HTTP/1.1\r\nHost: shop\r\n\r\n');
    await once(s, 'data');
  }),
);
const openMs = performance.now() - started;
await sleep(1000);
clearInterval(watch);
rows.push(['peak during the burst', peak, []]);
await sample(`${N} connections open`);
const asked = performance.now();
const health = await fetch(`http://127.0.0.1:${adminPort}/healthz`).then((r) => r.status, (err: Error) => err.message);
const metrics = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
const figure = (name: string): string => new RegExp(`^${name} (\\d+)$`, 'm').exec(metrics)?.[1] ?? 'unknown';
const during = `admin /healthz during the burst: ${health} in ${(performance.now() - asked).toFixed(0)} ms; proxy holds ${figure('switchyard_client_connections')} of cap ${figure('switchyard_client_connections_max')}, refused ${/^switchyard_limit_enforced_total\{limit="refused"\} (\d+)$/m.exec(metrics)?.[1] ?? 'unknown'}; closed by the proxy ${closedByProxy}`;
for (const s of sockets) s.destroy();
for (let t = 1; t <= SETTLE_S; t++) {
  await sleep(1000);
  if (t === 1 || t === 4 || t === 7 || t === 10 || t === SETTLE_S) await sample(`${t} s after the burst`);
}

console.log(`\n${DIR}  connections ${N} (opened and answered in ${(openMs / 1000).toFixed(1)} s)  MALLOC_ARENA_MAX=${process.env.MALLOC_ARENA_MAX ?? 'unset'}`);
console.log(during);
console.log('when'.padEnd(28), 'RSS MiB'.padStart(9), 'heap used'.padStart(10), 'heap total'.padStart(11), 'external'.padStart(9));
for (const [when, rss, heap] of rows) console.log(when.padEnd(28), rss.toFixed(1).padStart(9), ...[10, 11, 9].map((w, i) => (heap[i] === undefined ? '' : (heap[i] as number).toFixed(1)).padStart(w)));

child.kill('SIGKILL');
upstream.closeAllConnections();
upstream.close();
await rm(dir, { recursive: true, force: true });
