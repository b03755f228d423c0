import { mkdtempSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { connect as h2connect } from 'node:http2';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { createTestCa } from '../test/helpers/certs.ts';
import { cpuFor, cpuSeconds, envInt, findCommand, fmt, formatTable, freePort, installCleanup, pinSelf, ratio, sleep, startNodeService, startProcess, stopAll, waitForHttp, type Proc } from './common.ts';
import { pickDriver, runLoad, type Driver } from './load.ts';
import { NGINX_PROXY_LOCATION, nginxProxyConf, startNginxUpstream, startSwitchyard } from './targets.ts';

/**
 * The https row of `npm run bench`: Switchyard's TLS port against nginx with the same certificate
 * (ECDSA P-256, made with openssl for the run) in front of the same upstream, in the same run:
 * new TLS connections per second (full handshakes, no resumption), keep-alive requests per second
 * over TLS with HTTP/1.1 (wrk or autocannon) and with h2 (an in-process node:http2 client).
 * Env: DURATION (s, default 10), CONNECTIONS (default 50), H2_STREAMS (concurrent streams per h2
 * connection, default 10), HANDSHAKE_CLIENTS (default 16), HANDSHAKE_ROUNDS (default 3),
 * KEEPALIVE_ROUNDS (default 3: interleaved rounds of the keep-alive h1 and h2 loads, medians
 * printed), WARMUP (s of the same load before each measured window, default 2, as bench/run.ts).
 * Standalone: `node bench/tls.ts`.
 *
 * Handshakes are measured in HANDSHAKE_ROUNDS interleaved rounds (the targets alternate, the order
 * reversed every other round) and printed as the median, with each server's CPU per handshake and
 * the share of a core the handshaking client (this process) used: one window per target moved
 * the ratio between 0.83× and 0.92× from run to run, and the client, not the server, sets the
 * pace when it is near a whole core (flagged CLIENT-BOUND).
 */

const DURATION = envInt('DURATION', 10);
const CONNECTIONS = envInt('CONNECTIONS', 50);
const H2_STREAMS = envInt('H2_STREAMS', 10);
const HANDSHAKE_CLIENTS = envInt('HANDSHAKE_CLIENTS', 16);
const HANDSHAKE_ROUNDS = Math.max(1, envInt('HANDSHAKE_ROUNDS', 3));
const KEEPALIVE_ROUNDS = Math.max(1, envInt('KEEPALIVE_ROUNDS', 3));
const WARMUP = envInt('WARMUP', 2);

interface TlsTarget {
  name: 'switchyard' | 'nginx';
  port: number;
  proc: Proc;
}

/**
 * One new connection with a full handshake, closed as a well-behaved client closes it: end() at
 * 'secureConnect' sends the client's Finished, close_notify and FIN; true once the server has
 * closed its side with no error. Until 2026-12-06 the loop destroy()ed the socket at
 * 'secureConnect', before the client's Finished had left: the server never completed a handshake
 * (every connection ended in 'socket hang up', a tlsClientError with a stack trace, on
 * Switchyard's side, and no session tickets were sent by either server), so the figure measured
 * half a handshake and an abort.
 */
export function handshakeAndClose(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = tlsConnect({ host: '127.0.0.1', port, servername: 'bench.test', rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] });
    let ok = false;
    let failed = false;
    s.once('secureConnect', () => {
      ok = true;
      s.end();
    });
    // read to the server's FIN (the session tickets come on this side; they are not stream data)
    s.resume();
    s.on('error', () => (failed = true));
    s.once('close', () => resolve(ok && !failed));
  });
}

/** One DURATION window of full handshakes (HANDSHAKE_CLIENTS loops of connect → handshake → close): how many completed, and the seconds it took. */
async function handshakeWindow(port: number): Promise<{ count: number; seconds: number }> {
  const end = Date.now() + DURATION * 1000;
  let done = 0;
  const loop = async (): Promise<void> => {
    while (Date.now() < end) {
      if (await handshakeAndClose(port)) done++;
    }
  };
  const t0 = Date.now();
  await Promise.all(Array.from({ length: HANDSHAKE_CLIENTS }, loop));
  return { count: done, seconds: (Date.now() - t0) / 1000 };
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
};

interface HandshakeFigures {
  /** median handshakes/s over the rounds */
  rate: number;
  /** median server CPU µs per handshake */
  serverUs: number | undefined;
  /** median share of a core the client used (0..1) */
  client: number;
}

/** Handshakes in interleaved rounds (order reversed every other round); medians per target. */
async function handshakeRounds(targets: TlsTarget[], log: (s: string) => void): Promise<Map<string, HandshakeFigures>> {
  const per = new Map<string, { rate: number[]; serverUs: number[]; client: number[] }>(targets.map((t) => [t.name, { rate: [], serverUs: [], client: [] }]));
  for (let round = 0; round < HANDSHAKE_ROUNDS; round++) {
    const order = round % 2 === 0 ? targets : [...targets].reverse();
    for (const t of order) {
      log(`  ${t.name}: handshakes (round ${round + 1}/${HANDSHAKE_ROUNDS})…`);
      const s0 = cpuSeconds(t.proc.pid);
      const c0 = process.cpuUsage();
      const w = await handshakeWindow(t.port);
      const c = process.cpuUsage(c0);
      const s1 = cpuSeconds(t.proc.pid);
      const f = per.get(t.name) as { rate: number[]; serverUs: number[]; client: number[] };
      f.rate.push(w.count / w.seconds);
      if (s0 !== undefined && s1 !== undefined && w.count > 0) f.serverUs.push(((s1 - s0) * 1e6) / w.count);
      f.client.push((c.user + c.system) / 1e6 / w.seconds);
    }
  }
  return new Map([...per].map(([name, f]) => [name, { rate: median(f.rate), serverUs: f.serverUs.length === 0 ? undefined : median(f.serverUs), client: median(f.client) }]));
}

/** h2 requests per second: CONNECTIONS/H2_STREAMS sessions (at least 1), H2_STREAMS streams in flight on each. */
async function h2RequestsPerSecond(port: number, seconds = DURATION): Promise<{ rps: number; errors: number }> {
  const sessions = Math.max(1, Math.floor(CONNECTIONS / H2_STREAMS));
  const end = Date.now() + seconds * 1000;
  let done = 0;
  let errors = 0;
  const t0 = Date.now();
  await Promise.all(
    Array.from({ length: sessions }, async () => {
      const session = h2connect(`https://127.0.0.1:${port}`, { rejectUnauthorized: false, servername: 'bench.test' });
      session.on('error', () => undefined);
      const stream = async (): Promise<void> => {
        while (Date.now() < end) {
          await new Promise<void>((resolve) => {
            const req = session.request({ ':path': '/', ':authority': 'bench.test' });
            req.on('response', (h) => {
              if (h[':status'] !== 200) errors++;
            });
            req.on('data', () => undefined);
            req.on('end', () => {
              done++;
              resolve();
            });
            req.on('error', () => {
              errors++;
              resolve();
            });
          });
        }
      };
      await Promise.all(Array.from({ length: H2_STREAMS }, stream));
      session.close();
    }),
  );
  return { rps: done / ((Date.now() - t0) / 1000), errors };
}

async function startTlsNginx(dir: string, upstreamUrl: string, cert: string, key: string): Promise<TlsTarget> {
  const nginx = findCommand('nginx');
  if (nginx === undefined) throw new Error('nginx not installed (Debian: apt-get install nginx-light)');
  const port = await freePort();
  const conf = join(dir, 'nginx-tls.conf');
  // the listen flag rather than `http2 on` (nginx ≥ 1.25.1 only): older nginx, as Debian's, knows only the flag
  writeFileSync(conf, nginxProxyConf(dir, upstreamUrl, [`server { listen 127.0.0.1:${port} ssl http2 backlog=4096; ${NGINX_PROXY_LOCATION} }`], { cert, key }));
  chmodSync(dir, 0o755);
  const proc = startProcess('nginx-tls', nginx, ['-e', join(dir, 'error.log'), '-p', dir, '-c', conf], { cpu: cpuFor('proxy') });
  return { name: 'nginx', port, proc };
}

async function waitTls(port: number, proc: Proc): Promise<void> {
  const deadline = Date.now() + 15_000;
  while ((await handshakeOnce(port)) === false) {
    if (Date.now() > deadline) throw new Error(`TLS port ${port} did not answer: ${proc.stderrTail()}`);
    await sleep(100);
  }
}

function handshakeOnce(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = tlsConnect({ host: '127.0.0.1', port, rejectUnauthorized: false, servername: 'bench.test' });
    s.once('secureConnect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** Runs the https row; returns the printed table. */
export async function benchTls(driver: Driver, log: (s: string) => void): Promise<string> {
  const tmp = mkdtempSync(join(tmpdir(), 'switchyard-bench-tls-'));
  const ca = createTestCa();
  try {
    const cert = ca.issue('bench', ['bench.test']);
    // the key is read by nginx's worker (nobody) too
    chmodSync(ca.dir, 0o755);
    chmodSync(cert.key, 0o644);
    const upstream = findCommand('nginx') !== undefined
      ? await startNginxUpstream(0, mkdtempSync(join(tmp, 'upstream-')), cpuFor('upstream'))
      : await startNodeService('upstream', 'upstream.ts', { BODY_SIZE: '0' }, cpuFor('upstream'));
    const upstreamUrl = `http://127.0.0.1:${upstream.port}`;
    const targets: TlsTarget[] = [];
    const tlsPort = await freePort();
    const sy = await startSwitchyard({ blue: upstreamUrl, green: upstreamUrl, tmpDir: mkdtempSync(join(tmp, 'switchyard-')), tls: { port: tlsPort, cert: cert.cert, key: cert.key } });
    targets.push({ name: 'switchyard', port: tlsPort, proc: sy.proc });
    try {
      const ng = await startTlsNginx(mkdtempSync(join(tmp, 'nginx-')), upstreamUrl, cert.cert, cert.key);
      await waitTls(ng.port, ng.proc);
      targets.push(ng);
    } catch (e) {
      log(`  nginx (tls): ${(e as Error).message}`);
    }
    await waitForHttp(`http://127.0.0.1:${sy.port}/`, { proc: sy.proc });
    // the ceiling, same run: the upstream hit by the same driver with no proxy and no TLS (an upper
    // bound: over TLS the driver does more per request on the core it shares with the upstream)
    log('  direct (ceiling): plain HTTP/1.1 to the upstream…');
    const direct = await runLoad({ url: `${upstreamUrl}/`, connections: CONNECTIONS, durationSec: DURATION, driver, cpu: cpuFor('load') });
    const results = new Map<string, { hs: number; h1: number; h1CpuUs: number | undefined; h2: number; errors: number }>();
    const handshakes = await handshakeRounds(targets, log);
    // keep-alive h1 and h2: KEEPALIVE_ROUNDS interleaved rounds (the order reversed every other
    // round), each window after WARMUP s of the same load, printed as medians. Until 2026-12-06 one
    // cold window per target: Switchyard's first seconds of keep-alive traffic after the handshake
    // rounds ran code V8 had not optimised yet, and one window moved with the machine's noise
    // (the same build measured 58–84 µs per request minutes apart)
    const per = new Map(targets.map((t) => [t.name, { h1: [] as number[], h1CpuUs: [] as number[], h2: [] as number[], errors: 0 }]));
    for (let round = 0; round < KEEPALIVE_ROUNDS; round++) {
      for (const t of round % 2 === 0 ? targets : [...targets].reverse()) {
        const f = per.get(t.name) as { h1: number[]; h1CpuUs: number[]; h2: number[]; errors: number };
        log(`  ${t.name}: HTTP/1.1 keep-alive over TLS (round ${round + 1}/${KEEPALIVE_ROUNDS})…`);
        const load = { url: `https://127.0.0.1:${t.port}/`, connections: CONNECTIONS, driver, cpu: cpuFor('load') };
        if (WARMUP > 0) await runLoad({ ...load, durationSec: WARMUP });
        const cpu0 = cpuSeconds(t.proc.pid);
        const h1 = await runLoad({ ...load, durationSec: DURATION });
        const cpu1 = cpuSeconds(t.proc.pid);
        f.h1.push(h1.rps);
        if (cpu0 !== undefined && cpu1 !== undefined && h1.requests > 0) f.h1CpuUs.push(((cpu1 - cpu0) * 1e6) / h1.requests);
        log(`    ${t.name}: ${fmt(h1.rps)} rps, ${fmt(f.h1CpuUs.at(-1), 0)} µs CPU per request`);
        log(`  ${t.name}: h2 (round ${round + 1}/${KEEPALIVE_ROUNDS})…`);
        if (WARMUP > 0) await h2RequestsPerSecond(t.port, WARMUP);
        const h2 = await h2RequestsPerSecond(t.port);
        f.h2.push(h2.rps);
        f.errors += h1.non2xx + h1.errors + h1.timeouts + h2.errors;
      }
    }
    for (const t of targets) {
      const f = per.get(t.name) as { h1: number[]; h1CpuUs: number[]; h2: number[]; errors: number };
      results.set(t.name, { hs: handshakes.get(t.name)?.rate ?? 0, h1: median(f.h1), h1CpuUs: f.h1CpuUs.length === 0 ? undefined : median(f.h1CpuUs), h2: median(f.h2), errors: f.errors });
    }
    const ng = results.get('nginx');
    const rows = [...results].map(([name, r]) => [name, fmt(r.hs), fmt(r.h1), fmt(r.h1CpuUs, 0), fmt(r.h2), fmt(r.errors), ratio(r.hs, ng?.hs), ratio(r.h1, ng?.h1), ratio(r.h2, ng?.h2)]);
    const capped = [...results].filter(([, r]) => r.h1 >= 0.85 * direct.rps || r.h2 >= 0.85 * direct.rps).map(([name]) => name);
    const ceiling = `  ceiling: direct (plain HTTP/1.1 to the upstream, same driver) ${fmt(direct.rps)} rps; targets within 15 % of it: ${capped.length === 0 ? 'none' : `${capped.join(', ')} (CEILING: a lower bound, not a comparison)`}`;
    const hsLine = `  handshakes: median of ${HANDSHAKE_ROUNDS} interleaved ${DURATION} s rounds, ${HANDSHAKE_CLIENTS} client loops; ${[...handshakes].map(([name, h]) => `${name} ${fmt(h.serverUs, 0)} µs server CPU per handshake, client at ${(h.client * 100).toFixed(0)} % of a core${h.client >= 0.9 ? ' (CLIENT-BOUND: the figure is the client\'s ceiling, not the server\'s)' : ''}`).join('; ')}`;
    const kaLine = `  keep-alive (h1.1 and h2): median of ${KEEPALIVE_ROUNDS} interleaved ${DURATION} s rounds, each after ${WARMUP} s of the same load`;
    return `${formatTable(['https target', 'new TLS conn/s', 'h1.1 rps (TLS)', 'h1.1 CPU µs/req', 'h2 rps', 'errors', 'conn/s vs nginx', 'h1.1 vs nginx', 'h2 vs nginx'], rows)}\n${ceiling}\n${hsLine}\n${kaLine}`;
  } finally {
    await stopAll();
    ca.close();
    rmSync(tmp, { recursive: true, force: true });
  }
}

if (import.meta.filename === process.argv[1]) {
  installCleanup();
  pinSelf(cpuFor('load'));
  benchTls(pickDriver(), (s) => void process.stdout.write(`${s}\n`)).then(
    (table) => process.stdout.write(`\n== https (${DURATION} s each, ${CONNECTIONS} connections, h2: ${H2_STREAMS} streams per connection) ==\n${table}\n`),
    (e: unknown) => {
      process.stderr.write(`bench failed: ${(e as Error).stack ?? String(e)}\n`);
      process.exitCode = 1;
    },
  );
}
