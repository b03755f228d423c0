import { Agent, createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createRequire } from 'node:module';

/**
 * Reference proxy: node-http-proxy (`http-proxy`) with a keep-alive agent, forwarding to
 * TARGET (e.g. http://127.0.0.1:3000). PORT picks the port (0: any); prints `{"port":N}`.
 */

// http-proxy ships no types and @types/http-proxy is not installed: this is the slice we use.
interface HttpProxy {
  web(req: IncomingMessage, res: ServerResponse): void;
  on(event: 'error', fn: (err: Error, req: IncomingMessage, res: ServerResponse) => void): void;
}
const httpProxy = createRequire(import.meta.url)('http-proxy') as {
  createProxyServer(opts: { target: string; agent: Agent; xfwd?: boolean }): HttpProxy;
};

const target = process.env['TARGET'];
if (target === undefined) {
  process.stderr.write('TARGET is required, e.g. TARGET=http://127.0.0.1:3000\n');
  process.exit(2);
}

const proxy = httpProxy.createProxyServer({
  target,
  agent: new Agent({ keepAlive: true, maxSockets: 256 }),
  xfwd: true,
});
proxy.on('error', (err, _req, res) => {
  if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
  res.end(`bad gateway: ${err.message}`);
});

const server = createServer((req, res) => proxy.web(req, res));
// the same accept queue as Switchyard's listener (4096), so 1,000-client runs compare proxies, not backlogs
server.listen({ port: Number(process.env['PORT'] ?? '0'), host: process.env['HOST'] ?? '127.0.0.1', backlog: 4096 }, () => {
  const addr = server.address();
  process.stdout.write(`${JSON.stringify({ port: typeof addr === 'object' && addr !== null ? addr.port : 0 })}\n`);
});

for (const sig of ['SIGTERM', 'SIGINT'] as const) {
  process.on(sig, () => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
  });
}
