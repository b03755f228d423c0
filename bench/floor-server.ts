import { readFileSync } from 'node:fs';
import { createServer as createNetServer, type Socket } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';

/**
 * The least a Node process can do per HTTP/1.1 keep-alive request (bench/floor.ts): every
 * request head that arrives ("\r\n\r\n") is answered with one fixed 200 `ok`, one write, no
 * parsing, no upstream, no log. TLS_CERT/TLS_KEY (PEM files): the same over TLS, ALPN http/1.1.
 * Prints `{"port":N}`.
 */

const RESPONSE = Buffer.from('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok');
const END = Buffer.from('\r\n\r\n');

function serve(socket: Socket): void {
  socket.setNoDelay(true);
  socket.on('data', (chunk: Buffer) => {
    let n = 0;
    for (let at = chunk.indexOf(END); at !== -1; at = chunk.indexOf(END, at + 4)) n++;
    if (n === 1) socket.write(RESPONSE);
    else if (n > 1) socket.write(Buffer.concat(Array.from({ length: n }, () => RESPONSE)));
  });
  socket.on('error', () => socket.destroy());
}

const cert = process.env['TLS_CERT'];
const key = process.env['TLS_KEY'];
const server = cert !== undefined && key !== undefined
  ? createTlsServer({ cert: readFileSync(cert), key: readFileSync(key), ALPNProtocols: ['http/1.1'] }, serve)
  : createNetServer(serve);
server.listen({ port: 0, host: '127.0.0.1', backlog: 4096 }, () => {
  const addr = server.address();
  process.stdout.write(`${JSON.stringify({ port: typeof addr === 'object' && addr !== null ? addr.port : 0 })}\n`);
});
process.on('SIGTERM', () => process.exit(0));
