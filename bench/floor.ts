import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createTestCa } from '../test/helpers/certs.ts';
import { cpuFor, cpuSeconds, envInt, findCommand, formatTable, freePort, installCleanup, pinSelf, sleep, startNodeService, startProcess, stopAll, waitForHttp, type Proc } from './common.ts';
import { pickDriver, runLoad } from './load.ts';
import { NGINX_PROXY_LOCATION, nginxProxyConf, startNginxUpstream, startSwitchyard } from './targets.ts';

/**
 * Where the proxy's CPU per request goes against nginx's, with TLS and without (issue 31): the
 * same keep-alive load (wrk -c CONNECTIONS on its own core) against, on the proxy's core,
 *
 * - an answer-only server: every request head gets one fixed `200 ok` in one write, no parsing,
 *   no upstream, no log. Node (bench/floor-server.ts: net or tls sockets and 'data' events, the
 *   least a Node process can do) and nginx (`return 200 ok`);
 * - the proxies: `switchyard serve` (default config, access log on) and nginx (upstream
 *   keepalive, as bench/run.ts), both in front of the nginx upstream on the other core;
 *
 * each plain and over TLS with the same certificate (ECDSA P-256, TLS 1.3, ALPN http/1.1).
 * ROUNDS interleaved rounds (order reversed every other round) of WARMUP + DURATION s; printed per
 * target as the median CPU µs per request and rps, and what TLS adds to each server's request.
 * What it answers: how much of Switchyard's distance to nginx is Node's own floor (sockets and
 * TLS as Node does them), which no JavaScript on top can remove. Standalone: `npx node bench/floor.ts`.
 */

const DURATION = envInt('DURATION', 5);
const WARMUP = envInt('WARMUP', 2);
const ROUNDS = Math.max(1, envInt('ROUNDS', 3));
const CONNECTIONS = envInt('CONNECTIONS', 50);

interface Target {
  readonly name: string;
  readonly url: string;
  readonly proc: Proc;
}

installCleanup();
pinSelf(cpuFor('load'));
const driver = pickDriver();
const tmp = mkdtempSync(join(tmpdir(), 'switchyard-bench-floor-'));
const ca = createTestCa();
const out = (s: string): void => void process.stdout.write(`${s}\n`);
try {
  const cert = ca.issue('bench', ['bench.test']);
  // nginx's worker (nobody) reads the key too
  chmodSync(ca.dir, 0o755);
  chmodSync(cert.key, 0o644);
  chmodSync(tmp, 0o755);
  const up = await startNginxUpstream(0, mkdtempSync(join(tmp, 'upstream-')), cpuFor('upstream'));
  const upstreamUrl = `http://127.0.0.1:${up.port}`;

  const nodePlain = await startNodeService('node-answer', 'floor-server.ts', {}, cpuFor('proxy'));
  const nodeTls = await startNodeService('node-answer-tls', 'floor-server.ts', { TLS_CERT: cert.cert, TLS_KEY: cert.key }, cpuFor('proxy'));

  const nginx = findCommand('nginx');
  if (nginx === undefined) throw new Error('nginx not installed (Debian: apt-get install nginx-light)');
  const [answerPort, answerTlsPort, proxyPort, proxyTlsPort] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const dir = mkdtempSync(join(tmp, 'nginx-'));
  chmodSync(dir, 0o755);
  const conf = join(dir, 'nginx.conf');
  const answer = 'location / { default_type text/plain; return 200 ok; }';
  writeFileSync(conf, nginxProxyConf(dir, `http://127.0.0.1:${up.port}`, [
    `server { listen 127.0.0.1:${answerPort} backlog=4096; ${answer} }`,
    `server { listen 127.0.0.1:${answerTlsPort} ssl backlog=4096; ${answer} }`,
    `server { listen 127.0.0.1:${proxyPort} backlog=4096; ${NGINX_PROXY_LOCATION} }`,
    `server { listen 127.0.0.1:${proxyTlsPort} ssl backlog=4096; ${NGINX_PROXY_LOCATION} }`,
  ], cert));
  const nginxProc = startProcess('nginx', nginx, ['-e', join(dir, 'error.log'), '-p', dir, '-c', conf], { cpu: cpuFor('proxy') });
  await waitForHttp(`http://127.0.0.1:${answerPort}/`, { proc: nginxProc, timeoutMs: 10_000 });

  const tlsPort = await freePort();
  const sy = await startSwitchyard({ blue: upstreamUrl, green: upstreamUrl, tmpDir: mkdtempSync(join(tmp, 'switchyard-')), tls: { port: tlsPort, cert: cert.cert, key: cert.key } });
  // with a TLS port, Switchyard's plain port keeps node:http for ACME HTTP-01 and the redirect; the
  // plain proxy row is a Switchyard without TLS, as bench/run.ts runs it
  const syPlain = await startSwitchyard({ blue: upstreamUrl, green: upstreamUrl, tmpDir: mkdtempSync(join(tmp, 'switchyard-plain-')) });

  const targets: Target[] = [
    { name: 'node answer', url: `http://127.0.0.1:${nodePlain.port}/`, proc: nodePlain.proc },
    { name: 'node answer TLS', url: `https://127.0.0.1:${nodeTls.port}/`, proc: nodeTls.proc },
    { name: 'nginx answer', url: `http://127.0.0.1:${answerPort}/`, proc: nginxProc },
    { name: 'nginx answer TLS', url: `https://127.0.0.1:${answerTlsPort}/`, proc: nginxProc },
    { name: 'switchyard', url: `http://127.0.0.1:${syPlain.port}/`, proc: syPlain.proc },
    { name: 'switchyard TLS', url: `https://127.0.0.1:${tlsPort}/`, proc: sy.proc },
    { name: 'nginx proxy', url: `http://127.0.0.1:${proxyPort}/`, proc: nginxProc },
    { name: 'nginx proxy TLS', url: `https://127.0.0.1:${proxyTlsPort}/`, proc: nginxProc },
  ];
  const per = new Map(targets.map((t) => [t.name, { us: [] as number[], rps: [] as number[] }]));
  out(`floor: ${driver} -c${CONNECTIONS}, ${ROUNDS} round(s) of ${WARMUP} + ${DURATION} s, servers on cpu ${cpuFor('proxy') ?? '-'}, load on ${cpuFor('load') ?? '-'}`);
  for (let round = 0; round < ROUNDS; round++) {
    for (const t of round % 2 === 0 ? targets : [...targets].reverse()) {
      const load = { url: t.url, connections: CONNECTIONS, driver, cpu: cpuFor('load') };
      if (WARMUP > 0) await runLoad({ ...load, durationSec: WARMUP });
      const c0 = cpuSeconds(t.proc.pid) ?? 0;
      const r = await runLoad({ ...load, durationSec: DURATION });
      const us = (((cpuSeconds(t.proc.pid) ?? 0) - c0) * 1e6) / Math.max(1, r.requests);
      per.get(t.name)?.us.push(us);
      per.get(t.name)?.rps.push(r.rps);
      out(`  round ${round + 1}/${ROUNDS} ${t.name.padEnd(17)} ${Math.round(r.rps).toLocaleString('en-US').padStart(7)} rps ${us.toFixed(1).padStart(6)} µs/req${r.errors + r.non2xx > 0 ? ` (${r.errors} errors, ${r.non2xx} non-2xx)` : ''}`);
      await sleep(200);
    }
  }
  const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1] as number;
  const us = (n: string): number => median(per.get(n)?.us ?? [Number.NaN]);
  out('');
  out(formatTable(['target', 'rps', 'CPU µs/req', 'TLS adds µs/req'], targets.map((t) => [
    t.name,
    Math.round(median(per.get(t.name)?.rps ?? [])).toLocaleString('en-US'),
    us(t.name).toFixed(1),
    t.name.endsWith(' TLS') ? (us(t.name) - us(t.name.slice(0, -4))).toFixed(1) : '',
  ])));
  out('');
  out(`  Node's floor against nginx's: answer-only ${us('node answer').toFixed(1)} vs ${us('nginx answer').toFixed(1)} µs (${(us('nginx answer') / us('node answer')).toFixed(2)}×), over TLS ${us('node answer TLS').toFixed(1)} vs ${us('nginx answer TLS').toFixed(1)} (${(us('nginx answer TLS') / us('node answer TLS')).toFixed(2)}×)`);
  out(`  the proxies: ${us('switchyard').toFixed(1)} vs ${us('nginx proxy').toFixed(1)} µs (${(us('nginx proxy') / us('switchyard')).toFixed(2)}×), over TLS ${us('switchyard TLS').toFixed(1)} vs ${us('nginx proxy TLS').toFixed(1)} (${(us('nginx proxy TLS') / us('switchyard TLS')).toFixed(2)}×); ratios: nginx ÷ Node CPU per request (0.50×: Node needs twice nginx's CPU)`);
} finally {
  await stopAll();
  ca.close();
  rmSync(tmp, { recursive: true, force: true });
}
process.exit(0);
