import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Config, TlsConfig } from '../config/schema.ts';
import type { DataPlane } from '../dataplane/server.ts';
import { CertificateSet } from './certificates.ts';
import { createH2Server } from './h2.ts';
import { TlsListener } from './tls-listener.ts';

/** Where ACME's HTTP-01 challenge is asked (RFC 8555 §8.3). */
export const HTTP01_PREFIX = '/.well-known/acme-challenge/';

export interface EdgeDeps {
  readonly config: Config;
  readonly tls: TlsConfig;
  readonly dataPlane: DataPlane;
  readonly logger: Logger;
  readonly registry: Registry;
  /** how often certificate files are checked for a change @default 1000 */
  readonly certPollMs?: number;
}

/** A part of the edge that answers some plain-port requests itself (ACME HTTP-01). */
export interface Http01Responder {
  /** the key authorization for a token, or null; may look in the store (this is not proxied traffic) */
  answer(token: string): Promise<string | null>;
}

/**
 * The TLS side of the proxy: certificates (files, ACME), the TLS listener with h2, and what the
 * plain port answers itself (308 to https, HTTP-01 challenges).
 */
export class Edge {
  readonly certs: CertificateSet;
  readonly listener: TlsListener;
  readonly #deps: EdgeDeps;
  http01: Http01Responder | null = null;
  #port = 0;

  constructor(deps: EdgeDeps) {
    this.#deps = deps;
    const { tls, logger, registry } = deps;
    this.certs = new CertificateSet({ files: tls.certs, logger: logger.child({ component: 'tls' }), minVersion: tls.minVersion, ...(deps.certPollMs === undefined ? {} : { pollMs: deps.certPollMs }) });
    const handshakeErrors = new Counter({ name: 'switchyard_tls_handshake_errors_total', help: 'TLS handshakes that failed on the TLS port', registers: [registry] });
    const certs = this.certs;
    new Gauge({
      name: 'switchyard_tls_certificate_expiry_seconds',
      help: 'Seconds until each served certificate expires',
      labelNames: ['source'],
      registers: [registry],
      collect() {
        this.reset();
        for (const c of certs.all()) this.set({ source: c.source }, Math.round((c.notAfter - Date.now()) / 1000));
      },
    });
    new Gauge({
      name: 'switchyard_tls_certificate_reload_failures',
      help: 'Certificate file replacements that did not load (the previous certificate kept serving)',
      registers: [registry],
      collect() {
        this.set(certs.reloadFailures);
      },
    });
    const h2 = tls.http2 ? createH2Server({ maxConcurrentStreams: tls.maxConcurrentStreams, handle: (req, res) => deps.dataPlane.handle(req, res) }) : null;
    this.listener = new TlsListener({
      certs: this.certs,
      http1: deps.dataPlane.server,
      http2: h2,
      minVersion: tls.minVersion,
      onHandshakeError: (err) => {
        handshakeErrors.inc();
        logger.debug({ err: err.message }, 'TLS handshake failed');
      },
    });
  }

  async listen(host: string): Promise<number> {
    this.certs.watch();
    this.#port = await this.listener.listen(host, this.#deps.tls.port);
    return this.#port;
  }

  /**
   * Requests the proxy answers itself before routing: on the plain port, ACME HTTP-01 challenges
   * and (with `listen.redirect`) a 308 to the same URL on https. Returns true when it took `req`.
   */
  intercept(req: IncomingMessage, res: ServerResponse): boolean {
    if ((req.socket as { encrypted?: boolean }).encrypted === true) return false;
    const url = req.url ?? '/';
    if (url.startsWith(HTTP01_PREFIX) && this.http01 !== null) {
      const token = url.slice(HTTP01_PREFIX.length);
      this.http01.answer(token).then(
        (ka) => plain(res, ka === null ? 404 : 200, ka ?? 'no such challenge\n'),
        () => plain(res, 503, 'challenge store unavailable\n'),
      );
      return true;
    }
    if (!this.#deps.config.listen.redirect) return false;
    const host = (req.headers.host ?? '').replace(/:\d+$/, '');
    if (host === '' || !/^[A-Za-z0-9.-]+$|^\[[0-9A-Fa-f:.]+\]$/.test(host)) {
      plain(res, 400, 'a redirect to https needs a valid Host\n');
      return true;
    }
    const port = this.#deps.tls.port === 443 ? '' : `:${this.#port || this.#deps.tls.port}`;
    const location = `https://${host}${port}${url.startsWith('/') ? url : '/'}`;
    res.writeHead(308, { location, 'content-length': '0' });
    res.end();
    return true;
  }

  stopListening(): void {
    this.listener.stopListening();
  }

  close(): void {
    this.certs.close();
    this.listener.closeAll();
  }
}

function plain(res: ServerResponse, status: number, body: string): void {
  if (res.headersSent || res.destroyed) return;
  res.writeHead(status, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}
