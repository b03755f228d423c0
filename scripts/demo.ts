/**
 * `npm run demo`: two tiny upstreams (blue 1.0.0 on :9001, green 2.0.0 on :9002) and Switchyard
 * on the embedded file store with config/switchyard.yaml, then the lines to try a switch, a
 * canary and a rollback. Ctrl-C stops everything (gracefully, like SIGTERM).
 */
import { createServer } from 'node:http';
import { once } from 'node:events';
import { build } from '../src/app.ts';
import { loadConfig } from '../src/config/load.ts';
import { ConfigError } from '../src/errors.ts';
import { createLogger } from '../src/logger.ts';

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
let config;
try {
  config = await loadConfig(file, process.env);
} catch (err) {
  if (err instanceof ConfigError) {
    process.stderr.write(`demo: ${file}: ${err.message}\n`);
    process.exit(2);
  }
  throw err;
}
const blue = upstream('blue', '1.0.0', 9001);
const green = upstream('green', '2.0.0', 9002);
await Promise.all([once(blue, 'listening'), once(green, 'listening')]);
const logger = createLogger('warn', process.stdout.isTTY === true);
const sy = await build(config, { logger });
const { proxyPort, adminPort } = await sy.listen();
const token = config.admin.tokens[0]?.token ?? '';
const P = `http://127.0.0.1:${proxyPort}`;

process.stdout.write(`
Switchyard demo: proxy ${P}, admin http://127.0.0.1:${adminPort} (dashboard in a browser), blue 1.0.0 on :9001, green 2.0.0 on :9002.
State is kept in ${config.store.kind === 'file' ? config.store.path : 'redis'}; Ctrl-C stops.

In another terminal:

  export SWITCHYARD_ADMIN_URL=http://127.0.0.1:${adminPort} SWITCHYARD_TOKEN=${token}
  curl -s ${P}/                                   # hello from blue 1.0.0
  npx switchyard status shop

  # canary: 10 % of users, sticky per user
  npx switchyard weights shop blue=90 green=10 --reason "canary 2.0.0"
  for i in $(seq 1 20); do curl -s -H "x-user-id: user-$i" ${P}/; done
  npx switchyard whereis shop user-7

  # preview green before it gets traffic
  curl -s -H "$(npx switchyard preview-header shop green)" ${P}/

  # switch, watch blue drain, roll back
  npx switchyard switch shop green --reason "release 2.0.0"
  curl -s ${P}/                                   # hello from green 2.0.0
  npx switchyard drain shop blue --wait --timeout 1m
  npx switchyard rollback shop
  npx switchyard history shop

  # the same over HTTP
  curl -s -X POST -H "authorization: Bearer ${token}" -H 'content-type: application/json' \\
       -d '{"to":"green","reason":"release"}' http://127.0.0.1:${adminPort}/v1/apps/shop/switch

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
