/**
 * `npm run demo`: two tiny upstreams (blue 1.0.0 on :9001, green 2.0.0 on :9002) and Switchyard
 * on the embedded file store with config/switchyard.yaml, then the lines to try a switch, a
 * canary and a rollback. Ctrl-C stops everything (gracefully, like SIGTERM).
 */
import { createServer } from 'node:http';
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import { parse as parseYaml } from 'yaml';
import { build } from '../src/app.ts';
import { parseConfig } from '../src/config/load.ts';
import { ConfigError } from '../src/errors.ts';
import { createLogger } from '../src/logger.ts';
import { demoLines } from './demo-lines.ts';

interface Ports {
  proxy: number;
  admin: number;
  blue: number;
  green: number;
}

function demoPorts(spec: string | undefined): Ports {
  const [proxy = 8080, admin = 8081, blue = 9001, green = 9002] = spec === undefined || spec === '' ? [] : spec.split(',').map(Number);
  for (const p of [proxy, admin, blue, green]) {
    if (!Number.isInteger(p) || p < 1 || p > 65_535) throw new Error(`SWITCHYARD_DEMO_PORTS: four ports PROXY,ADMIN,BLUE,GREEN, got "${spec}"`);
  }
  return { proxy, admin, blue, green };
}

/** The config file, on `ports` instead of its own (the demo upstreams' targets follow them). */
async function loadDemoConfig(file: string, ports: Ports) {
  const doc = parseYaml(await readFile(file, 'utf8')) as { listen: { port: number }; admin: { port: number }; apps?: { pools: Record<string, { targets?: string[] }> }[] };
  doc.listen.port = ports.proxy;
  doc.admin.port = ports.admin;
  const moved: Record<string, number> = { ':9001': ports.blue, ':9002': ports.green };
  for (const app of doc.apps ?? []) for (const pool of Object.values(app.pools)) if (pool.targets !== undefined) pool.targets = pool.targets.map((t) => t.replace(/:900[12]$/, (m) => `:${moved[m]}`));
  return parseConfig(doc, process.env);
}

function upstream(pool: string, version: string, port: number) {
  const server = createServer((req, res) => {
    if (req.url === '/healthz') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ status: 'ok', version }));
      return;
    }
    res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' });
    res.end(`hello from ${pool} ${version} (${req.method} ${req.url}, user ${req.headers['x-user-id'] ?? '-'})\n`);
  });
  server.listen(port, '127.0.0.1');
  return server;
}

const file = process.env['SWITCHYARD_CONFIG'] ?? 'config/switchyard.yaml';
// SWITCHYARD_DEMO_PORTS=PROXY,ADMIN,BLUE,GREEN when 8080, 8081, 9001 and 9002 are taken (and for the test that runs the demo)
const ports = demoPorts(process.env['SWITCHYARD_DEMO_PORTS']);
let config;
try {
  config = await loadDemoConfig(file, ports);
} catch (err) {
  if (err instanceof ConfigError) {
    process.stderr.write(`demo: ${file}: ${err.message}\n`);
    process.exit(2);
  }
  throw err;
}
const blue = upstream('blue', '1.0.0', ports.blue);
const green = upstream('green', '2.0.0', ports.green);
await Promise.all([once(blue, 'listening'), once(green, 'listening')]);
const logger = createLogger('warn', process.stdout.isTTY === true);
const sy = await build(config, { logger });
const { proxyPort, adminPort } = await sy.listen();
const token = config.admin.tokens[0]?.token ?? '';
const P = `http://127.0.0.1:${proxyPort}`;

process.stdout.write(`
Switchyard demo: proxy ${P}, admin http://127.0.0.1:${adminPort} (dashboard in a browser), blue 1.0.0 on :${ports.blue}, green 2.0.0 on :${ports.green}.
State is kept in ${config.store.kind === 'file' ? config.store.path : 'redis'}; Ctrl-C stops.

In another terminal:

${demoLines(P, `http://127.0.0.1:${adminPort}`, token).map((l) => (l === '' ? '' : `  ${l}`)).join('\n')}

`);

let stopping = false;
const stop = () => {
  if (stopping) return;
  stopping = true;
  void sy.shutdown().finally(() => {
    blue.close();
    green.close();
    process.exit(0);
  });
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
