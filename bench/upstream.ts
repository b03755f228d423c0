import { createServer } from 'node:http';

/**
 * The bench upstream: answers every request with BODY_SIZE bytes (0: the two bytes "ok"),
 * keep-alive. PORT picks the port (0: any free one); the port is printed as `{"port":N}`.
 * NAME is echoed in `x-upstream`; `GET /__stats` answers `{ name, requests }` (not counted).
 */

const size = Number(process.env['BODY_SIZE'] ?? '0');
const name = process.env['NAME'] ?? 'upstream';
const body = size > 0 ? Buffer.alloc(size, 'x') : Buffer.from('ok');
const headers = {
  'content-type': 'text/plain',
  'content-length': String(body.length),
  'x-upstream': name,
};
let requests = 0;

const server = createServer((req, res) => {
  if (req.url === '/__stats') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ name, requests }));
    return;
  }
  requests++;
  // Read the request body to its end before answering, as a real app would.
  req.resume();
  req.on('end', () => {
    res.writeHead(200, headers);
    res.end(body);
  });
});
// Longer than any proxy's idle pool timeout, so a proxy never reuses a socket we are closing.
server.keepAliveTimeout = 120_000;
server.headersTimeout = 125_000;

// a 4096 accept queue, as Switchyard's listener: 1,000 clients connecting at once must not overflow it
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
