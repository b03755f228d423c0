import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createTestCa } from '../test/helpers/certs.ts';
import { cpuFor, cpuSeconds, envInt, fmt, freePort, installCleanup, pinSelf, stopAll } from './common.ts';
import { pickDriver, runLoad } from './load.ts';
import { startNginxUpstream, startSwitchyard } from './targets.ts';

/**
 * One Switchyard (SWITCHYARD_ENTRY: any checkout's src/main.ts or dist/main.js, so two commits
 * compare with the same harness) with a TLS port in front of the nginx upstream: HTTP/1.1
 * keep-alive over TLS, then plain HTTP/1.1, each WARMUP + DURATION s at CONNECTIONS clients,
 * printed as rps, p50/p99 and the proxy's CPU µs per request (steadier than rps on a busy
 * machine). ONLY=tls|plain runs one. Made to bisect the HTTPS path (issue 31); one line of output.
 */

const DURATION = envInt('DURATION', 5);
const WARMUP = envInt('WARMUP', 2);
const CONNECTIONS = envInt('CONNECTIONS', 50);

installCleanup();
pinSelf(cpuFor('load'));
const driver = pickDriver();
const tmp = mkdtempSync(join(tmpdir(), 'switchyard-bench-tls-cost-'));
const ca = createTestCa();
try {
  const cert = ca.issue('bench', ['bench.test']);
  chmodSync(ca.dir, 0o755);
  chmodSync(cert.key, 0o644);
  const up = await startNginxUpstream(0, mkdtempSync(join(tmp, 'upstream-')), cpuFor('upstream'));
  const upstreamUrl = `http://127.0.0.1:${up.port}`;
  const tlsPort = await freePort();
  const sy = await startSwitchyard({ blue: upstreamUrl, green: upstreamUrl, tmpDir: mkdtempSync(join(tmp, 'switchyard-')), tls: { port: tlsPort, cert: cert.cert, key: cert.key } });
  const parts: string[] = [];
  for (const [label, url] of [['tls', `https://127.0.0.1:${tlsPort}/`], ['plain', `http://127.0.0.1:${sy.port}/`]] as const) {
    if (process.env['ONLY'] !== undefined && process.env['ONLY'] !== label) continue;
    const load = { url, connections: CONNECTIONS, driver, cpu: cpuFor('load') };
    if (WARMUP > 0) await runLoad({ ...load, durationSec: WARMUP });
    const c0 = cpuSeconds(sy.proc.pid);
    const r = await runLoad({ ...load, durationSec: DURATION });
    const c1 = cpuSeconds(sy.proc.pid);
    const us = c0 !== undefined && c1 !== undefined && r.requests > 0 ? ((c1 - c0) * 1e6) / r.requests : undefined;
    parts.push(`${label}: ${fmt(r.rps)} rps, p50 ${fmt(r.p50Ms, 2)} ms, p99 ${fmt(r.p99Ms, 2)} ms, ${fmt(us, 0)} µs/req, errors ${r.non2xx + r.errors + r.timeouts}`);
  }
  process.stdout.write(`${process.env['SWITCHYARD_ENTRY'] ?? 'dist/main.js'} | ${parts.join(' | ')}\n`);
} finally {
  await stopAll();
  ca.close();
  rmSync(tmp, { recursive: true, force: true });
}
