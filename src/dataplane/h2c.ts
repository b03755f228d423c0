import type { Http2Server, Http2Session } from 'node:http2';
import type { Socket } from 'node:net';
import { headerReceived } from './limits.ts';

/** The client connection preface of HTTP/2 (RFC 9113 §3.4): what an h2c client with prior knowledge sends first. */
export const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

/** Whether `buf`, the first bytes of a connection, are (so far) the HTTP/2 preface; `undefined` while too short to tell. */
export function startsWithPreface(buf: Buffer): boolean | undefined {
  const n = Math.min(buf.length, H2_PREFACE.length);
  if (buf.compare(H2_PREFACE, 0, n, 0, n) !== 0) return false;
  return n === H2_PREFACE.length ? true : undefined;
}

/**
 * HTTP/2 with prior knowledge beside HTTP/1.1 on the plain port (`listen.h2c`). Each new
 * connection's first bytes decide: the HTTP/2 connection preface hands it to the h2 server (the
 * same one the TLS port uses, so every stream takes the HTTP/1.1 request path: routing,
 * forwarding, drain counts, metrics), anything else to the HTTP/1.1 side exactly as before (the
 * raw front or node:http), with the bytes read so far. No HTTP/1.1 request line starts like the
 * preface ("PRI" is no method we serve), so the first differing byte settles it; a client that
 * sends nothing is left to the header timeout of limits.ts, as on HTTP/1.1.
 *
 * Why not node:http's own h2c: it has none (its `Upgrade: h2c` dance is not what gRPC clients
 * speak, and HTTP/1.1 servers answer the preface with 400 or nothing, the "Empty reply" a user saw).
 */
export class H2cPort {
  readonly server: Http2Server;
  private readonly sessions = new Set<Http2Session>();

  constructor(server: Http2Server) {
    this.server = server;
    server.on('session', (s: Http2Session) => {
      this.sessions.add(s);
      s.once('close', () => this.sessions.delete(s));
    });
  }

  /** Wraps the plain port's connection listener: `http1` gets every connection that is not h2c. */
  accept(http1: (socket: Socket) => void): (socket: Socket) => void {
    return (socket: Socket) => {
      let seen: Buffer | null = null;
      const onData = (chunk: Buffer): void => {
        seen = seen === null ? chunk : Buffer.concat([seen, chunk]);
        const h2 = startsWithPreface(seen);
        if (h2 === undefined) return;
        socket.removeListener('data', onData);
        socket.removeListener('error', onError);
        socket.pause();
        const bytes = seen;
        seen = null;
        if (h2) {
          // the preface is a request head as far as the first-head timeout goes; the h2 server's
          // own idle timeout (src/edge/h2.ts) takes over
          headerReceived(socket);
          // node:http2 reads what was put back before taking the socket's handle (checked on Node 24)
          socket.unshift(bytes);
          this.server.emit('connection', socket);
          return;
        }
        http1(socket);
        // as the raw front hands node:http a connection whose bytes it already read (front.ts handOff)
        socket.resume();
        socket.emit('data', bytes);
      };
      // until a side takes it, a reset before the first bytes must not be an uncaught 'error'
      const onError = (): void => {
        socket.destroy();
      };
      socket.on('data', onData);
      socket.on('error', onError);
    };
  }

  /** Graceful: GOAWAY on every h2c connection (streams in flight finish). */
  closeIdle(): void {
    for (const s of this.sessions) if (!s.closed) s.close();
  }

  /** Hard stop: every h2c connection destroyed. */
  closeAll(): void {
    for (const s of this.sessions) s.destroy();
    this.sessions.clear();
  }
}
