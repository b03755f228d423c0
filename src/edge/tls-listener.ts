import type { Server as HttpServer } from 'node:http';
import type { Http2Server, Http2Session } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { createServer as createTlsServer, type SecureContext, type Server as TlsServer, type TLSSocket } from 'node:tls';
import { alreadyCounted, type Limits } from '../dataplane/limits.ts';
import { LISTEN_BACKLOG, listenOn } from '../dataplane/server.ts';
import type { CertificateSet } from './certificates.ts';

/** ALPN protocol of the TLS-ALPN-01 challenge (RFC 8737). */
export const ACME_TLS_ALPN = 'acme-tls/1';

export interface TlsListenerOptions {
  readonly certs: CertificateSet;
  /** the data plane's HTTP/1.1 server: TLS connections that speak http/1.1 go to it */
  readonly http1: HttpServer;
  /** null: h2 is not offered */
  readonly http2: Http2Server | null;
  readonly minVersion: 'TLSv1.2' | 'TLSv1.3';
  /** a handshake that failed (counted; it never crashes anything) */
  readonly onHandshakeError?: (err: Error) => void;
  /** TLS-ALPN-01: the challenge certificate for a host, when an order waits on one */
  readonly alpnChallenge?: (host: string) => SecureContext | null;
  /** the data plane's connection cap: TLS connections count against it from the accept, before the handshake */
  readonly limits?: Limits;
  /** a connection that has not finished its handshake by then is closed @default 10000 (Node's: 120 s) */
  readonly handshakeTimeout?: number;
}

/**
 * The TLS port. One tls.Server terminates TLS (SNI picks the certificate, ALPN picks the
 * protocol), then hands each connection to the server that speaks what was negotiated: the
 * data plane's HTTP/1.1 server for http/1.1 (its 'connection' listener: the raw-socket front with
 * the native engine, which hands node:http what it does not serve, so pipelining, WebSocket
 * upgrades, Expect and every connection hook behave exactly as on the plain port), or the http2
 * server for h2. Why not
 * `http2.createSecureServer({ allowHTTP1: true })`: its HTTP/1.1 fallback is a second node:http
 * setup with its own options and events, which is the forked path we want to avoid.
 */
export class TlsListener {
  readonly server: TlsServer;
  readonly #opts: TlsListenerOptions;
  readonly #sessions = new Set<Http2Session>();

  constructor(opts: TlsListenerOptions) {
    this.#opts = opts;
    const protocols = opts.http2 === null ? ['http/1.1'] : ['h2', 'http/1.1'];
    const first = opts.certs.pick(undefined);
    // resumption: session tickets (Node's default keys, one set per listener) stay on by default
    this.server = createTlsServer({
      minVersion: opts.minVersion,
      // as the plain port's listener: a response written in parts (a head, then chunks) is not
      // held back by Nagle waiting for the client's ACK of the previous record
      noDelay: true,
      // a connection that has not finished its handshake by then is dropped (Node's default: 120 s):
      // it holds an fd and a slot of the connection cap meanwhile
      handshakeTimeout: opts.handshakeTimeout ?? 10_000,
      ...(first === null ? {} : { cert: first.certPem, key: first.keyPem }),
      ALPNCallback: ({ servername, protocols: offered }) => {
        if (offered.includes(ACME_TLS_ALPN) && opts.alpnChallenge?.(servername ?? '') != null) return ACME_TLS_ALPN;
        for (const p of protocols) if (offered.includes(p)) return p;
        // a client offering only protocols we do not speak gets no_application_protocol (RFC 7301 §3.2);
        // a client that sends no ALPN at all never gets here and speaks http/1.1
        return undefined;
      },
      SNICallback: (servername, cb) => {
        const challenge = opts.alpnChallenge?.(servername) ?? null;
        if (challenge !== null) return cb(null, challenge);
        const cert = opts.certs.pick(servername);
        cb(cert === null ? new Error('no certificate') : null, cert?.context);
      },
    });
    // a client that sends no SNI gets the server's own context: keep it the default certificate
    opts.certs.onDefaultChange = (c) => {
      if (c !== null) this.server.setSecureContext({ cert: c.certPem, key: c.keyPem, minVersion: opts.minVersion });
    };
    // counted from the accept: 2,100 idle connections that never began a handshake once took every fd
    opts.limits?.countAtAccept(this.server);
    this.server.on('secureConnection', (socket: TLSSocket) => this.#dispatch(socket));
    this.server.on('tlsClientError', (err: Error, socket: TLSSocket) => {
      opts.onHandshakeError?.(err);
      socket.destroy();
    });
    if (opts.http2 !== null) {
      opts.http2.on('session', (s: Http2Session) => {
        this.#sessions.add(s);
        s.once('close', () => this.#sessions.delete(s));
      });
    }
  }

  #dispatch(socket: TLSSocket): void {
    if (socket.alpnProtocol === ACME_TLS_ALPN) {
      // the validation server only checks the certificate: nothing else is said on this connection
      socket.end();
      return;
    }
    // its TCP connection was counted at the accept; the TLS socket over it is the same connection
    alreadyCounted(socket);
    if (socket.alpnProtocol === 'h2' && this.#opts.http2 !== null) this.#opts.http2.emit('connection', socket);
    else this.#opts.http1.emit('connection', socket);
  }

  async listen(host: string, port: number): Promise<number> {
    await listenOn(this.server, { host, port, backlog: LISTEN_BACKLOG });
    return (this.server.address() as AddressInfo).port;
  }

  stopListening(): void {
    this.server.close();
  }

  /** Graceful: GOAWAY on every h2 connection (streams in flight finish). HTTP/1.1 ones belong to the data plane's server. */
  closeIdle(): void {
    for (const s of this.#sessions) if (!s.closed) s.close();
  }

  /** Hard stop: every h2 connection destroyed. */
  closeAll(): void {
    for (const s of this.#sessions) s.destroy();
    this.#sessions.clear();
  }
}
