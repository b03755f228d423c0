import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BENCH_TOKEN, cpuFor, envInt, findCommand, fmt, formatTable, freePort, installCleanup, NODE, pinningNote, pinSelf, ratio, REPO_ROOT, rssMb, sleep, startNodeService, startProcess, stopAll, tail, type Proc } from './common.ts';
import { nginxPreamble } from './targets.ts';

/**
 * Unary gRPC calls per second through Switchyard (h2c on the plain port, a `protocol: h2` pool)
 * against the gRPC server called directly and against nginx's `grpc_pass` (Debian's nginx, one
 * worker), in the same run: the proxy pinned to one core, the upstream and the grpc-js load
 * generator on the other. Prints calls/s, p50/p99 and the proxy's RSS under load.
 * Env: DURATION (s per target, default 10), WARMUP (s, default 2), CHANNELS (grpc-js channels,
 * one HTTP/2 connection each, default 4), CONCURRENCY (calls in flight per channel, default 16).
 * `node bench/grpc.ts` (it runs src/main.ts unless SWITCHYARD_ENTRY names another entry).
 */

const DURATION = envInt('DURATION', 10);
const WARMUP = envInt('WARMUP', 2);
const CHANNELS = envInt('CHANNELS', 4);
const CONCURRENCY = envInt('CONCURRENCY', 16);

const proto = fileURLToPath(new URL('../test/fixtures/grpc/echo.proto', import.meta.url));
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- proto-loader's package objects are untyped by nature
const pkg = grpc.loadPackageDefinition(protoLoader.loadSync(proto, { defaults: true })) as any;

interface Row {
  name: string;
  calls: number;
  errors: number;
  seconds: number;
  p50: number;
  p99: number;
  rss: number | undefined;
}

/** CHANNELS × CONCURRENCY loops of unary calls for `seconds`; latencies in ms. */
async function load(address: string, authority: string, seconds: number, pid?: number): Promise<Omit<Row, 'name'>> {
  // a channel per connection: grpc-js would otherwise share one subchannel between the clients
  const clients = Array.from({ length: CHANNELS }, () => new pkg.switchyard.test.Echo(address, grpc.credentials.createInsecure(), { 'grpc.default_authority': authority, 'grpc.use_local_subchannel_pool': 1 }));
  const lat: number[] = [];
  let errors = 0;
  let rss: number | undefined;
  const end = Date.now() + seconds * 1000;
  const t0 = Date.now();
  const loop = (client: grpc.Client & Record<string, (...a: unknown[]) => unknown>): Promise<void> =>
    new Promise((done) => {
      const next = (): void => {
        if (Date.now() >= end) return done();
        const s = performance.now();
        (client['Unary'] as (...a: unknown[]) => unknown)({ message: 'bench' }, (err: Error | null) => {
          if (err) errors++;
          else lat.push(performance.now() - s);
          next();
        });
      };
      next();
    });
  const sampler = pid === undefined ? null : setTimeout(() => (rss = rssMb(pid)), (seconds * 1000) / 2);
  await Promise.all(clients.flatMap((c) => Array.from({ length: CONCURRENCY }, () => loop(c))));
  if (sampler !== null) clearTimeout(sampler);
  const elapsed = (Date.now() - t0) / 1000;
  for (const c of clients) c.close();
  lat.sort((a, b) => a - b);
  const at = (q: number): number => lat[Math.min(lat.length - 1, Math.floor(q * lat.length))] ?? NaN;
  return { calls: lat.length, errors, seconds: elapsed, p50: at(0.5), p99: at(0.99), rss };
}

async function startSwitchyard(dir: string, upstreamPort: number): Promise<{ proc: Proc; port: number }> {
  const port = await freePort();
  const adminPort = await freePort();
  const config = join(dir, 'switchyard.yaml');
  writeFileSync(
    config,
    `listen: { host: 127.0.0.1, port: ${port}, h2c: true }
admin: { host: 127.0.0.1, port: ${adminPort}, tokens: [ { name: bench, token: ${BENCH_TOKEN} } ] }
store: { kind: file, path: ${JSON.stringify(join(dir, 'state.json'))} }
${process.env['QUIET_LOG'] === '1' ? 'log: { level: warn, accessSample: 0 }\n' : ''}shutdown: { grace: 1s, hardStop: 2s }
apps:
  - name: bench
    hosts: ["*"]
    pools:
      blue:  { version: "1.0.0", targets: ["http://127.0.0.1:${upstreamPort}"], protocol: h2 }
      green: { version: "2.0.0", targets: ["http://127.0.0.1:${upstreamPort}"], protocol: h2 }
    initial: { blue: 100 }
`,
  );
  const entry = resolve(REPO_ROOT, process.env['SWITCHYARD_ENTRY'] ?? 'src/main.ts');
  const proc = startProcess('switchyard', NODE, [entry, 'serve', '--config', config], { cpu: cpuFor('proxy'), cwd: REPO_ROOT, env: { SWITCHYARD_NODE_FLAGS: 'keep' } });
  const deadline = Date.now() + 20_000;
  for (;;) {
    const ok = await fetch(`http://127.0.0.1:${adminPort}/readyz`).then((r) => r.ok, () => false);
    if (ok) break;
    if (Date.now() > deadline || !proc.isRunning()) throw new Error(`switchyard failed to start: ${tail(proc.stderrTail() + proc.stdoutTail())}`);
    await sleep(100);
  }
  return { proc, port };
}

async function startNginx(dir: string, upstreamPort: number): Promise<{ proc: Proc; port: number } | null> {
  const nginx = findCommand('nginx');
  if (nginx === undefined) return null;
  const port = await freePort();
  const conf = join(dir, 'nginx-grpc.conf');
  writeFileSync(
    conf,
    `${nginxPreamble(dir, 'nginx', 4096)}
  upstream grpc_upstream {
    server 127.0.0.1:${upstreamPort};
    keepalive 64;
  }
  server {
    listen 127.0.0.1:${port} http2 backlog=4096;
    location / { grpc_pass grpc://grpc_upstream; }
  }
}
`,
  );
  const proc = startProcess('nginx', nginx, ['-c', conf, '-p', dir, '-e', join(dir, 'nginx-start.log')], { cpu: cpuFor('proxy') });
  await sleep(500);
  if (!proc.isRunning()) throw new Error(`nginx failed to start: ${tail(proc.stderrTail())}`);
  return { proc, port };
}

async function main(): Promise<void> {
  installCleanup();
  const dir = mkdtempSync(join(tmpdir(), 'switchyard-bench-grpc-'));
  try {
    const upstream = await startNodeService('grpc-upstream', 'grpc-upstream.ts', {}, cpuFor('upstream'));
    pinSelf(cpuFor('load'));
    const sy = await startSwitchyard(dir, upstream.port);
    const ngx = await startNginx(dir, upstream.port);
    const targets: { name: string; address: string; pid?: number }[] = [
      { name: 'direct', address: `127.0.0.1:${upstream.port}` },
      { name: 'switchyard', address: `127.0.0.1:${sy.port}`, pid: sy.proc.pid },
      ...(ngx === null ? [] : [{ name: 'nginx grpc_pass', address: `127.0.0.1:${ngx.port}`, pid: ngx.proc.pid }]),
    ];
    const rows: Row[] = [];
    for (const t of targets) {
      await load(t.address, 'bench.test', WARMUP);
      rows.push({ name: t.name, ...(await load(t.address, 'bench.test', DURATION, t.pid)) });
    }
    const byName = new Map(rows.map((r) => [r.name, r]));
    const rate = (r: Row | undefined): number | undefined => (r === undefined ? undefined : r.calls / r.seconds);
    console.log(`gRPC unary calls, ${CHANNELS} channels × ${CONCURRENCY} in flight, ${DURATION}s each; pinning: ${pinningNote()}`);
    console.log(
      formatTable(
        ['target', 'calls/s', 'p50 ms', 'p99 ms', 'errors', 'RSS MB', 'vs nginx'],
        rows.map((r) => [r.name, fmt(rate(r)), fmt(r.p50, 2), fmt(r.p99, 2), String(r.errors), r.rss === undefined ? '-' : fmt(r.rss, 1), ratio(rate(r), rate(byName.get('nginx grpc_pass')))]),
      ),
    );
    if (ngx === null) console.log('nginx not found: install Debian nginx (nginx-light has grpc_pass) for the reference row');
  } finally {
    await stopAll();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
