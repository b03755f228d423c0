import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createTestCa } from '../test/helpers/certs.ts';
import { cpuFor, envInt, findCommand, freePort, installCleanup, pinSelf, sleep, startProcess, stopAll } from './common.ts';
import { NGINX_PROXY_LOCATION, nginxProxyConf, startNginxUpstream, startSwitchyard } from './targets.ts';
import { handshakeAndClose } from './tls.ts';

/**
 * Where a request over TLS costs its CPU (issue 31): Switchyard's TLS port and/or nginx (WHO,
 * default `switchyard,nginx`) with the same certificate in front of the nginx upstream; per
 * target a 2 s warmup, then DURATION s (default 5) of wrk -c50 (PROTO=h1, default) or h2load
 * -c5 -m10 (PROTO=h2), printed as CPU µs per request split user/system, with the load average.
 * Also prints the negotiated protocol, cipher and key (openssl s_client), and for Switchyard the
 * scavenges and mark-compacts of the measured window when its flags include `--trace-gc`
 * (`SWITCHYARD_NODE_FLAGS=--trace-gc`). MODE=strace adds `strace -c` of the proxy (syscalls per
 * request; slows it), MODE=perf a `perf record` into $TMPDIR/<target>-<proto>.data. PLAIN=1 loads
 * Switchyard's plain port instead of its TLS port. PROTO=hs: new TLS connections instead of
 * requests (bench/tls.ts's loop: HANDSHAKE_CLIENTS loops of connect → handshake → end, from this
 * process), printed as CPU µs per handshake; the s_client line then also counts the TLS 1.3
 * session tickets the server sends. Standalone: `npx node bench/tls-profile.ts`.
 */

const DURATION = envInt('DURATION', 5);
const MODE = process.env['MODE'] ?? 'plain';
const PROTO = process.env['PROTO'] ?? 'h1';
const WHO = (process.env['WHO'] ?? 'switchyard,nginx').split(',');
const LOAD_CPU = String(cpuFor('load') ?? 1);

installCleanup();
pinSelf(cpuFor('load'));
const tmp = mkdtempSync(join(tmpdir(), 'switchyard-tls-profile-'));
const ca = createTestCa();
const cert = ca.issue('bench', ['bench.test']);
// the key is read by nginx's worker (nobody) too
chmodSync(ca.dir, 0o755);
chmodSync(cert.key, 0o644);
chmodSync(tmp, 0o755);
const up = await startNginxUpstream(0, mkdtempSync(join(tmp, 'upstream-')), cpuFor('upstream'));

/** user and system CPU seconds of a process and its children */
function cpu(pid: number): [number, number] {
  let user = 0;
  let system = 0;
  for (const p of [pid, ...children(pid)]) {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      user += Number(f[11]);
      system += Number(f[12]);
    } catch {
      // gone meanwhile
    }
  }
  return [user / 100, system / 100];
}
function children(pid: number): number[] {
  const out = spawnSync('pgrep', ['-P', String(pid)]).stdout.toString().trim();
  return out === '' ? [] : out.split('\n').map(Number);
}
function run(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve) => {
    const c = spawn(cmd, args);
    let out = '';
    c.stdout.on('data', (d: Buffer) => (out += d.toString()));
    c.stderr.on('data', (d: Buffer) => (out += d.toString()));
    c.on('close', () => resolve(out));
  });
}

const gc = { on: false, scavenges: 0, markCompacts: 0 };
const targets: { name: string; port: number; pid: number; plainPort?: number }[] = [];
if (WHO.includes('switchyard')) {
  const tlsPort = await freePort();
  const sy = await startSwitchyard({ blue: `http://127.0.0.1:${up.port}`, green: `http://127.0.0.1:${up.port}`, tmpDir: mkdtempSync(join(tmp, 'switchyard-')), tls: { port: tlsPort, cert: cert.cert, key: cert.key } });
  sy.proc.child.stdout?.on('data', (d: Buffer | string) => {
    if (!gc.on) return;
    for (const line of String(d).split('\n')) {
      if (line.includes('Scavenge')) gc.scavenges++;
      if (line.includes('Mark-Compact')) gc.markCompacts++;
    }
  });
  targets.push({ name: 'switchyard', port: tlsPort, pid: sy.proc.pid, plainPort: sy.port });
}
if (WHO.includes('nginx')) {
  const nginx = findCommand('nginx');
  if (nginx === undefined) throw new Error('nginx not installed');
  const port = await freePort();
  const dir = mkdtempSync(join(tmp, 'nginx-'));
  chmodSync(dir, 0o755);
  const conf = join(dir, 'nginx.conf');
  // as bench/tls.ts configures it
  writeFileSync(conf, nginxProxyConf(dir, `http://127.0.0.1:${up.port}`, [`server { listen 127.0.0.1:${port} ssl http2 backlog=4096; ${NGINX_PROXY_LOCATION} }`], cert));
  const proc = startProcess('nginx-tls', nginx, ['-e', join(dir, 'error.log'), '-p', dir, '-c', conf], { cpu: cpuFor('proxy') });
  await sleep(1000);
  targets.push({ name: 'nginx', port, pid: proc.pid });
}

/** full handshakes completed in `sec` seconds, as bench/tls.ts counts them */
async function handshakes(port: number, sec: number): Promise<number> {
  const end = Date.now() + sec * 1000;
  let done = 0;
  const loop = async (): Promise<void> => {
    while (Date.now() < end) {
      if (await handshakeAndClose(port)) done++;
    }
  };
  await Promise.all(Array.from({ length: envInt('HANDSHAKE_CLIENTS', 16) }, loop));
  return done;
}

/** requests completed in `sec` seconds */
async function load(t: (typeof targets)[number], sec: number): Promise<number> {
  if (PROTO === 'hs') return handshakes(t.port, sec);
  if (PROTO === 'h1') {
    const url = process.env['PLAIN'] === '1' && t.plainPort !== undefined ? `http://127.0.0.1:${t.plainPort}/` : `https://127.0.0.1:${t.port}/`;
    const out = await run('taskset', ['-c', LOAD_CPU, 'wrk', '-t1', '-c50', `-d${sec}s`, url]);
    return Number(/(\d+) requests in/.exec(out)?.[1] ?? 0);
  }
  const out = await run('taskset', ['-c', LOAD_CPU, 'h2load', '-c5', '-m10', '-D', String(sec), `https://127.0.0.1:${t.port}/`]);
  return Number(/(\d+) succeeded/.exec(out)?.[1] ?? 0);
}

for (const t of targets) {
  await load(t, 2);
  // the input stays open for a second: TLS 1.3 tickets come after the handshake
  const tls = await run('bash', ['-c', `(sleep 1; echo) | openssl s_client -connect 127.0.0.1:${t.port} -servername bench.test -alpn http/1.1 2>/dev/null | grep -E 'Cipher is|Server Temp Key|Peer signature type|ALPN|New Session Ticket arrived' | sort | uniq -c`]);
  process.stdout.write(`${t.name}: ${tls.trim().replace(/\n\s*/g, ' | ')}\n`);
  let side: Promise<string> | undefined;
  const pids = [t.pid, ...children(t.pid)];
  if (MODE === 'perf') side = run('perf', ['record', '-e', 'cpu-clock', '-F', '2000', '-g', '-o', join(tmpdir(), `${t.name}-${PROTO}.data`), '-p', pids.join(','), '--', 'sleep', String(DURATION)]);
  if (MODE === 'strace') side = run('timeout', ['-s', 'INT', String(DURATION), 'strace', '-c', '-f', ...pids.flatMap((p) => ['-p', String(p)])]);
  const a = cpu(t.pid);
  const own = process.cpuUsage();
  gc.scavenges = 0;
  gc.markCompacts = 0;
  gc.on = true;
  const n = await load(t, DURATION);
  gc.on = false;
  const b = cpu(t.pid);
  const sideOut = side === undefined ? '' : await side;
  const [user, system] = [b[0] - a[0], b[1] - a[1]];
  // PROTO=hs: the handshaking client is this process; its CPU shows whether it, not the server, set the pace
  const ownUsage = process.cpuUsage(own);
  const clientNote = PROTO === 'hs' ? `, client (this process) ${(((ownUsage.user + ownUsage.system) / 1e6 / DURATION) * 100).toFixed(0)} % of a core, server ${(((user + system) / DURATION) * 100).toFixed(0)} %` : '';
  const perReq = (s: number): string => ((s * 1e6) / Math.max(1, n)).toFixed(1);
  const gcNote = t.name === 'switchyard' && gc.scavenges + gc.markCompacts > 0 ? `, GC: ${gc.scavenges} scavenges, ${gc.markCompacts} mark-compacts` : '';
  process.stdout.write(`${t.name} ${PROTO}: ${n} ${PROTO === 'hs' ? 'handshakes' : 'requests'} (${(n / DURATION).toFixed(0)}/s), CPU µs each user ${perReq(user)} system ${perReq(system)} total ${perReq(user + system)}${gcNote}${clientNote} | load average ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}\n`);
  if (MODE === 'strace') process.stdout.write(`${sideOut.split('\n').filter((l) => /calls|write|read|epoll|total|accept|close|shutdown|sendmsg|recvmsg|setsockopt/.test(l)).join('\n')}\n`);
}
await stopAll();
ca.close();
