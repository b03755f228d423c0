import { chmodSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { dirname, join, resolve } from 'node:path';
import {
  BENCH_TOKEN, cpuFor, envInt, findCommand, freePort, NODE, REPO_ROOT, startNodeService, startProcess, tail, waitForHttp,
  type Proc,
} from './common.ts';

/** How each compared target is started: the references, nginx and Switchyard itself. */

export const TARGET_NAMES = ['direct', 'switchyard', 'switchyard-traced', 'switchyard-undici', 'http-proxy', 'undici-naive', 'nginx', 'caddy'] as const;
export type TargetName = (typeof TARGET_NAMES)[number];

export interface Running {
  name: TargetName;
  /** The URL the load generator hits. */
  url: string;
  /** The proxy's process (RSS is read from it); undefined for `direct`. */
  proc: Proc | undefined;
}

export interface StartContext {
  upstreamUrl: string;
  tmpDir: string;
}

/** Starts one target, or explains in one line why it could not (the row shows it). */
export async function startTarget(name: TargetName, ctx: StartContext): Promise<Running> {
  switch (name) {
    case 'direct':
      return { name, url: `${ctx.upstreamUrl}/`, proc: undefined };
    case 'http-proxy':
    case 'undici-naive':
      return startNodeRef(name, ctx);
    case 'nginx':
      return startNginx(ctx);
    case 'caddy':
      return startCaddy(ctx);
    case 'switchyard':
    case 'switchyard-traced':
    case 'switchyard-undici': {
      // switchyard-undici: the same, forwarding through the previous engine (config `engine: undici`);
      // switchyard-traced: the same with `tracing:` at TRACE_SAMPLE (1 %), exporting to a local OTLP sink
      const tracing = name === 'switchyard-traced' ? { otlp: await otlpSink(), sample: TRACE_SAMPLE } : undefined;
      const sy = await startSwitchyard({ blue: ctx.upstreamUrl, green: ctx.upstreamUrl, tmpDir: ctx.tmpDir, engine: name === 'switchyard-undici' ? 'undici' : 'native', ...(tracing === undefined ? {} : { tracing }) });
      return { name, url: `http://127.0.0.1:${sy.port}/`, proc: sy.proc };
    }
  }
}

/** `switchyard-traced`'s share of requests that start a trace: `TRACE_SAMPLE` (0..1) @default 0.01 */
const TRACE_SAMPLE = Number(process.env['TRACE_SAMPLE'] ?? '0.01');

let sink: Promise<string> | undefined;
/** An OTLP/HTTP receiver that reads each export and answers 200, in the harness (the load core): what a collector costs the proxy is the export, not the collector. */
function otlpSink(): Promise<string> {
  sink ??= new Promise((resolve) => {
    const server = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => res.writeHead(200, { 'content-type': 'application/json' }).end('{}'));
    });
    server.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${(server.address() as { port: number }).port}/v1/traces`));
    server.unref();
  });
  return sink;
}

async function startNodeRef(name: 'http-proxy' | 'undici-naive', ctx: StartContext): Promise<Running> {
  const script = name === 'http-proxy' ? 'ref-http-proxy.ts' : 'ref-undici-naive.ts';
  // as undici's own benchmarks run (and as a service is deployed): NODE_ENV=production, a pool with
  // a connection for every client of the load (never fewer than 256)
  const env = { TARGET: ctx.upstreamUrl, NODE_ENV: 'production', POOL_CONNECTIONS: String(Math.max(256, envInt('CONNECTIONS', 50))) };
  const { proc, port } = await startNodeService(name, script, env, cpuFor('proxy'));
  const url = `http://127.0.0.1:${port}/`;
  await ready(proc, url);
  return { name, url, proc };
}

async function ready(proc: Proc, url: string): Promise<void> {
  try {
    await waitForHttp(url, { proc, timeoutMs: 15_000 });
  } catch (e) {
    await proc.stop();
    throw new Error(`${(e as Error).message}; stderr: ${tail(proc.stderrTail())}`, { cause: e });
  }
}

// ---------------------------------------------------------------- caddy

/** Caddy as a reverse proxy on one core (GOMAXPROCS=1, pinned like every proxy), keep-alive upstream. */
async function startCaddy(ctx: StartContext): Promise<Running> {
  const caddy = findCommand('caddy');
  if (caddy === undefined) throw new Error('skipped: caddy not installed (Debian: apt-get install caddy)');
  const port = await freePort();
  const conf = join(ctx.tmpDir, 'Caddyfile');
  const upstream = new URL(ctx.upstreamUrl).host;
  writeFileSync(conf, `{\n\tadmin off\n\tauto_https off\n}\nhttp://127.0.0.1:${port} {\n\treverse_proxy ${upstream} {\n\t\ttransport http {\n\t\t\tkeepalive 60s\n\t\t\tkeepalive_idle_conns 256\n\t\t}\n\t}\n}\n`);
  const proc = startProcess('caddy', caddy, ['run', '--config', conf, '--adapter', 'caddyfile'], { cpu: cpuFor('proxy'), env: { GOMAXPROCS: '1', HOME: ctx.tmpDir, XDG_DATA_HOME: ctx.tmpDir, XDG_CONFIG_HOME: ctx.tmpDir } });
  const url = `http://127.0.0.1:${port}/`;
  await ready(proc, url);
  return { name: 'caddy', url, proc };
}

// ---------------------------------------------------------------- nginx

/**
 * One nginx worker (pinned by taskset like every proxy), its files under `dir` (pid, error log
 * `<name>-error.log`… temp paths), up to the open `http {`: no access log, epoll, every pending
 * accept taken at once, file descriptors for every connection (nginx's tuning advice for a proxy).
 */
export function nginxPreamble(dir: string, name: string, connections: number): string {
  return `worker_processes 1;
worker_rlimit_nofile ${connections * 2 + 64};
daemon off;
pid ${dir}/${name}.pid;
error_log ${dir}/${name === 'nginx' ? 'error' : `${name}-error`}.log warn;
events { worker_connections ${connections}; use epoll; multi_accept on; }
http {
  access_log off;
  tcp_nodelay on;
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;`;
}

/** The location every nginx proxy of the benches serves: HTTP/1.1 to the upstream block, an empty Connection. */
export const NGINX_PROXY_LOCATION = 'location / { proxy_pass http://bench_upstream; proxy_http_version 1.1; proxy_set_header Connection ""; }';

/**
 * nginx as its documentation advises for a keep-alive proxy (ngx_http_upstream_module "keepalive"):
 * an upstream block with idle keep-alive connections for every client of the load, HTTP/1.1 and an
 * empty Connection to the upstream, and upstream connections reused far beyond the 1,000-request
 * default (`keepalive_requests` in the upstream block, nginx ≥ 1.15.3), as Switchyard's are.
 * `servers`: the server blocks (NGINX_PROXY_LOCATION proxies); `tls`: the certificate every `ssl`
 * listener serves, TLS 1.2–1.3 with a session cache (the same for each TLS bench).
 */
export function nginxProxyConf(dir: string, upstreamUrl: string, servers: readonly string[], tls?: { cert: string; key: string }): string {
  const up = new URL(upstreamUrl);
  const tlsLines = tls === undefined ? '' : `
  ssl_protocols TLSv1.2 TLSv1.3;
  ssl_session_cache shared:SSL:10m;
  ssl_certificate ${tls.cert};
  ssl_certificate_key ${tls.key};`;
  return `${nginxPreamble(dir, 'nginx', 4096)}
  keepalive_requests 100000;${tlsLines}
  upstream bench_upstream {
    server ${up.hostname}:${up.port};
    keepalive ${Math.max(64, envInt('CONNECTIONS', 50))};
    keepalive_requests 1000000;
    keepalive_timeout 120s;
  }
${servers.map((srv) => `  ${srv}`).join('\n')}
}
`;
}

/** nginxProxyConf with one plain HTTP/1.1 listener: the reference proxy of `npm run bench`. */
export function nginxConf(dir: string, listenPort: number, upstreamUrl: string): string {
  return nginxProxyConf(dir, upstreamUrl, [`server { listen 127.0.0.1:${listenPort} backlog=4096; ${NGINX_PROXY_LOCATION} }`]);
}

/**
 * The upstream as nginx (one worker, pinned where the upstream goes): answers every request with
 * BODY_SIZE bytes of "x" (0: `ok`), `x-upstream: upstream`, keep-alive. A light upstream leaves
 * the load generator its core and makes the proxy under test the bottleneck, as in the issue's
 * setup ("upstream nginx on the other core"); the Node upstream (`UPSTREAM=node`) is the fallback.
 * Bodies up to RETURN_LIMIT bytes come from `return 200` (no file I/O per request: the file
 * served by try_files cost the shared upstream + load core an open/fstat/close per request, which
 * capped the fastest reference); larger ones from the file, with its descriptor cached and sendfile.
 */
/** Bodies up to this size are a `return` string: nginx reads its config in 4 KiB buffers, and a longer token fails ("too long parameter"). */
const RETURN_LIMIT = 2048;

export async function startNginxUpstream(bodySize: number, tmpDir: string, cpu: number | undefined): Promise<{ proc: Proc; port: number }> {
  const nginx = findCommand('nginx');
  if (nginx === undefined) throw new Error('nginx not installed');
  const port = await freePort();
  writeFileSync(join(tmpDir, 'body'), bodySize > 0 ? 'x'.repeat(bodySize) : 'ok');
  const conf = join(tmpDir, 'upstream.conf');
  const body = bodySize > RETURN_LIMIT
    ? `root ${tmpDir};
      try_files /body =404;`
    : `return 200 "${bodySize > 0 ? 'x'.repeat(bodySize) : 'ok'}";`;
  writeFileSync(conf, `${nginxPreamble(tmpDir, 'upstream', 8192)}
  keepalive_requests 1000000;
  keepalive_timeout 120s;
  sendfile on;
  open_file_cache max=16 inactive=600s;
  open_file_cache_valid 600s;
  server {
    listen 127.0.0.1:${port} backlog=4096;
    default_type text/plain;
    etag off;
    location / {
      add_header x-upstream upstream always;
      ${body}
    }
  }
}
`);
  // nginx's worker runs as nobody: it must reach the body file through the bench's temp dirs
  chmodSync(tmpDir, 0o755);
  chmodSync(dirname(tmpDir), 0o711);
  chmodSync(join(tmpDir, 'body'), 0o644);
  const proc = startProcess('upstream', nginx, ['-e', join(tmpDir, 'upstream-error.log'), '-p', tmpDir, '-c', conf], { cpu });
  await ready(proc, `http://127.0.0.1:${port}/`);
  return { proc, port };
}

async function startNginx(ctx: StartContext): Promise<Running> {
  const nginx = findCommand('nginx');
  if (nginx === undefined) throw new Error('skipped: nginx not installed (Debian: apt-get install nginx-light)');
  const port = await freePort();
  const conf = join(ctx.tmpDir, 'nginx.conf');
  writeFileSync(conf, nginxConf(ctx.tmpDir, port, ctx.upstreamUrl));
  // Started as root, nginx's worker runs as nobody and must reach its temp paths under the dir.
  chmodSync(ctx.tmpDir, 0o755);
  const proc = startProcess('nginx', nginx, ['-e', join(ctx.tmpDir, 'error.log'), '-p', ctx.tmpDir, '-c', conf], { cpu: cpuFor('proxy') });
  const url = `http://127.0.0.1:${port}/`;
  await ready(proc, url);
  return { name: 'nginx', url, proc };
}

// ---------------------------------------------------------------- switchyard

export interface SwitchyardOptions {
  blue: string;
  green: string;
  tmpDir: string;
  /** config `engine` @default native */
  engine?: 'native' | 'undici';
  /** a TLS port with this certificate (bench/tls.ts) */
  tls?: { port: number; cert: string; key: string };
  /** `tracing:` of the config */
  tracing?: { otlp: string; sample: number };
}

export interface SwitchyardRun {
  proc: Proc;
  port: number;
  adminPort: number;
}

/**
 * The bench config: one app "bench" on every host, blue and green pools, file store, the
 * default log (info, an access log line for every request: what a user runs; QUIET_LOG=1 for
 * `level: warn, accessSample: 0`); `workers` from WORKERS.
 */
export function switchyardConfig(o: { port: number; adminPort: number; blue: string; green: string; statePath: string; workers?: number; engine?: 'native' | 'undici'; tls?: SwitchyardOptions['tls']; tracing?: SwitchyardOptions['tracing'] }): string {
  const tls = o.tls === undefined ? '' : `, tls: { port: ${o.tls.port}, certs: [ { cert: ${JSON.stringify(o.tls.cert)}, key: ${JSON.stringify(o.tls.key)} } ] }`;
  return `listen: { host: 127.0.0.1, port: ${o.port}${tls} }
admin:
  host: 127.0.0.1
  port: ${o.adminPort}
  tokens: [ { name: bench, token: ${BENCH_TOKEN} } ]
store: { kind: file, path: ${JSON.stringify(o.statePath)} }
${process.env['QUIET_LOG'] === '1' ? 'log: { level: warn, accessSample: 0 }\n' : ''}engine: ${o.engine ?? 'native'}
shutdown: { grace: 1s, hardStop: 2s }
workers: ${o.workers ?? 1}
${o.tracing === undefined ? '' : `tracing: { otlp: ${JSON.stringify(o.tracing.otlp)}, sample: ${o.tracing.sample} }\n`}apps:
  - name: bench
    hosts: ["*"]
    pools:
      blue:  { version: "1.0.0", targets: [${JSON.stringify(o.blue)}] }
      green: { version: "2.0.0", targets: [${JSON.stringify(o.green)}] }
    initial: { blue: 100 }
${process.env['MAX_CONNECTIONS'] ? `    maxConnections: ${Number(process.env['MAX_CONNECTIONS'])}\n` : ''}`;
}

/**
 * V8 flags given on Switchyard's command line: none by default, as a user runs `switchyard
 * serve`: the process re-executes itself with its tuned flags (TUNED_NODE_FLAGS, src/main.ts).
 * `SWITCHYARD_NODE_FLAGS="…"` benches others (with SWITCHYARD_NODE_FLAGS=keep in the env to
 * stop the re-exec adding the tuned ones).
 */
export const SWITCHYARD_NODE_FLAGS = (process.env['SWITCHYARD_NODE_FLAGS'] ?? '').split(' ').filter((f) => f !== '' && f !== 'keep');

/**
 * Starts `node dist/main.js serve --config <generated>` (or `$SWITCHYARD_ENTRY`) and waits for
 * admin `/readyz` 200, then for the proxy port to answer 200.
 * Fails with "switchyard failed to start: <stderr tail>" (never crashes the harness).
 */
export async function startSwitchyard(o: SwitchyardOptions): Promise<SwitchyardRun> {
  const port = await freePort();
  const adminPort = await freePort();
  const configPath = join(o.tmpDir, 'switchyard.yaml');
  // WORKERS=N: N data-plane processes; pinned like the proxy, they share its CPU(s)
  writeFileSync(configPath, switchyardConfig({ port, adminPort, blue: o.blue, green: o.green, statePath: join(o.tmpDir, 'state.json'), workers: o.tls === undefined ? envInt('WORKERS', 1) : 1, ...(o.engine === undefined ? {} : { engine: o.engine }), ...(o.tls === undefined ? {} : { tls: o.tls }), ...(o.tracing === undefined ? {} : { tracing: o.tracing }) }));
  // SWITCHYARD_ENTRY benches another entry point, e.g. the built dist/main.js.
  // the built dist/ that `npm start` and the image run (`npm run bench` builds it first)
  const entry = resolve(REPO_ROOT, process.env['SWITCHYARD_ENTRY'] ?? 'dist/main.js');
  const proc = startProcess('switchyard', NODE, [...SWITCHYARD_NODE_FLAGS, entry, 'serve', '--config', configPath], {
    cpu: cpuFor('proxy'),
    cwd: REPO_ROOT,
  });
  try {
    await waitForHttp(`http://127.0.0.1:${adminPort}/readyz`, { proc, timeoutMs: 20_000 });
    await waitForHttp(`http://127.0.0.1:${port}/`, { proc, timeoutMs: 5_000 });
  } catch (e) {
    await proc.stop();
    const out = [proc.stderrTail(), proc.stdoutTail()].filter((s) => s !== '').join('\n');
    throw new Error(`switchyard failed to start: ${(e as Error).message}; output: ${tail(out)}`, { cause: e });
  }
  return { proc, port, adminPort };
}
