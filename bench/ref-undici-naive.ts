import { createServer, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http';
import { Pool } from 'undici';

/**
 * Reference proxy, the "naive" one: node:http server + undici `Pool` + `pool.stream()` piping
 * the answer into `res`. It forwards method, headers and body and nothing more (no routing,
 * no forwarded headers, no metrics): the floor cost of node:http + undici that Switchyard
 * builds on. TARGET is the upstream origin; PORT picks the port (0: any); prints `{"port":N}`.
 * The harness starts it with NODE_ENV=production, as undici's benchmarks run.
 */

const target = process.env['TARGET'];
if (target === undefined) {
  process.stderr.write('TARGET is required, e.g. TARGET=http://127.0.0.1:3000\n');
  process.exit(2);
}

// A connection for every client of the load (POOL_CONNECTIONS, set by the harness to
// max(256, CONNECTIONS)), as undici's own benchmarks size their Pool: no request waits in its queue.
const pool = new Pool(target, { connections: Number(process.env['POOL_CONNECTIONS'] ?? '256') });

// The few hop-by-hop names undici refuses in a request (and that must not be relayed anyway).
const HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade']);

function strip(headers: IncomingHttpHeaders): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const [k, v] of Object.entries(headers)) if (v !== undefined && !HOP.has(k)) out[k] = v;
  return out;
}

const server = createServer((req, res) => {
  const ac = new AbortController();
  res.on('close', () => {
    if (!res.writableFinished) ac.abort();
  });
  const bodyless = req.method === 'GET' || req.method === 'HEAD';
  if (bodyless) req.resume();
  pool.stream(
    {
      path: req.url ?? '/',
      method: (req.method ?? 'GET') as 'GET',
      headers: strip(req.headers) as Record<string, string>,
      body: bodyless ? null : req,
      signal: ac.signal,
      opaque: res,
    },
    ({ statusCode, headers, opaque }) => {
      opaque.writeHead(statusCode, strip(headers));
      return opaque;
    },
    (err) => {
      if (err === null) return;
      if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
      res.end(`bad gateway: ${err.message}`);
    },
  );
});

// the same accept queue as Switchyard's listener (4096), so 1,000-client runs compare proxies, not backlogs
server.listen({ port: Number(process.env['PORT'] ?? '0'), host: process.env['HOST'] ?? '127.0.0.1', backlog: 4096 }, () => {
  const addr = server.address();
  process.stdout.write(`${JSON.stringify({ port: typeof addr === 'object' && addr !== null ? addr.port : 0 })}\n`);
});

for (const sig of ['SIGTERM', 'SIGINT'] as const) {
  process.on(sig, () => {
    server.close(() => void pool.close().finally(() => process.exit(0)));
    server.closeAllConnections();
  });
}
