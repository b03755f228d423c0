import type { ClientRequest, ClientResponse } from '../dataplane/types.ts';
import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Config, TlsConfig } from '../config/schema.ts';
import type { DataPlane } from '../dataplane/server.ts';
import { randomUUID } from 'node:crypto';
import { LocalLease, RedisLease, type Lease } from '../state/lease.ts';
import { isRedisStore } from '../state/is-redis.ts';
import type { StateStore } from '../state/types.ts';
import type * as AcmeModule from './acme.ts';
import type { AcmeDeps, AcmeManager } from './acme.ts';
import { FileAcmeStorage, RedisAcmeStorage, type AcmeStorage } from './acme-store.ts';
import { CertificateSet } from './certificates.ts';
import { createH2Server } from './h2.ts';
import type { SecureContext } from 'node:tls';
import type { AddressInfo, Server } from 'node:net';
import { TlsListener } from './tls-listener.ts';

/** Where ACME's HTTP-01 challenge is asked (RFC 8555 §8.3). */
export const HTTP01_PREFIX = '/.well-known/acme-challenge/';

export interface EdgeDeps {
  readonly config: Config;
  readonly tls: TlsConfig;
  readonly dataPlane: DataPlane;
  readonly logger: Logger;
  readonly registry: Registry;
  /** the ACME store and lease; unused with `remoteAcme` */
  readonly store?: StateStore;
  readonly instanceId?: string;
  /** a worker of `workers: N`: ACME runs in the primary, which sends the certificates (src/cluster/worker-acme.ts) */
  readonly remoteAcme?: RemoteAcme;
  /** how often certificate files are checked for a change @default 1000 */
  readonly certPollMs?: number | undefined;
  /** how often ACME reads the store and checks renewals @default 5000 */
  readonly acmeSyncMs?: number | undefined;
  /** @default Date.now (ACME renewal decisions) */
  readonly now?: () => number;
}

/** The hosts ACME orders for: config `hosts`, else every exact host of every app (no wildcard, no "*"). */
export function acmeHosts(config: Config): string[] {
  const explicit = config.listen.tls?.acme?.hosts;
  if (explicit !== undefined) return [...explicit];
  const hosts = new Set<string>();
  for (const a of config.apps) for (const h of a.hosts) if (h !== '*' && !h.startsWith('*.')) hosts.add(h.replace(/:\d+$/, ''));
  return [...hosts];
}

/** A part of the edge that answers some plain-port requests itself (ACME HTTP-01). */
export interface Http01Responder {
  /** the key authorization for a token, or null; may look in the store (this is not proxied traffic) */
  answer(token: string): Promise<string | null>;
}

/** What a worker's edge asks of the primary's ACME: challenge answers (the certificates it is sent). */
export interface RemoteAcme extends Http01Responder {
  alpnChallenge(host: string): SecureContext | null;
}

/**
 * The TLS side of the proxy: certificates (files, ACME), the TLS listener with h2, and what the
 * plain port answers itself (308 to https, HTTP-01 challenges).
 */
export class Edge {
  readonly certs: CertificateSet;
  readonly listener: TlsListener;
  readonly acme: AcmeManager | null;
  readonly #deps: EdgeDeps;
  http01: Http01Responder | null = null;
  #port = 0;

  /** Builds the edge; ACME's code (acme-client) is loaded only when `tls.acme` is set (and ordered here). */
  static async create(deps: EdgeDeps): Promise<Edge> {
    const acme = deps.tls.acme === undefined || deps.remoteAcme !== undefined ? null : await import('./acme.ts');
    return new Edge(deps, acme);
  }

  private constructor(deps: EdgeDeps, acmeModule: typeof AcmeModule | null) {
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
      // with workers: N, each worker serves the same certificates; summing their figures would lie
      aggregator: 'min',
      collect() {
        this.reset();
        for (const c of certs.all()) this.set({ source: c.source }, Math.round((c.notAfter - Date.now()) / 1000));
      },
    });
    new Gauge({
      name: 'switchyard_tls_certificate_reload_failures',
      help: 'Certificate file replacements that did not load (the previous certificate kept serving)',
      registers: [registry],
      // every worker reads the same files: one bad replacement fails in each
      aggregator: 'max',
      collect() {
        this.set(certs.reloadFailures);
      },
    });
    this.acme = tls.acme === undefined || acmeModule === null ? null : createAcme(deps, tls.acme, acmeModule, this.certs);
    const acmeManager: RemoteAcme | null = this.acme ?? deps.remoteAcme ?? null;
    this.http01 = acmeManager;
    const limits = deps.dataPlane.limits;
    const h2 = tls.http2 ? createH2Server({ maxConcurrentStreams: tls.maxConcurrentStreams, limits, handle: (req, res) => deps.dataPlane.handle(req, res) }) : null;
    this.listener = new TlsListener({
      certs: this.certs,
      http1: deps.dataPlane.server,
      http2: h2,
      minVersion: tls.minVersion,
      limits,
      handshakeTimeout: Math.min(10_000, limits.config.headerTimeout),
      ...(acmeManager === null ? {} : { alpnChallenge: (host: string) => acmeManager.alpnChallenge(host) }),
      onHandshakeError: (err) => {
        handshakeErrors.inc();
        logger.debug({ err: err.message }, 'TLS handshake failed');
      },
    });
  }

  /** `bind`: how a worker of `workers: N` binds the port (src/cluster/listen.ts) */
  async listen(host: string, bind?: (server: Server, host: string, port: number) => Promise<unknown>): Promise<number> {
    this.certs.watch();
    if (bind === undefined) this.#port = await this.listener.listen(host, this.#deps.tls.port);
    else {
      await bind(this.listener.server, host, this.#deps.tls.port);
      this.#port = (this.listener.server.address() as AddressInfo).port;
    }
    // ordering starts once the ports answer the CA's challenges
    this.acme?.start();
    return this.#port;
  }

  /** For /readyz: ACME status per host (who orders, expiry, last error). */
  details(): Record<string, unknown> {
    return this.acme === null ? {} : { acme: this.acme.status() };
  }

  /**
   * Requests the proxy answers itself before routing: on the plain port, ACME HTTP-01 challenges
   * and (with `listen.redirect`) a 308 to the same URL on https. Returns true when it took `req`.
   */
  intercept(req: ClientRequest, res: ClientResponse): boolean {
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
    res.writeHead(308, ['location', location, 'content-length', '0']);
    res.end();
    return true;
  }

  stopListening(): void {
    this.listener.stopListening();
  }

  async close(): Promise<void> {
    this.certs.close();
    this.listener.closeAll();
    await this.acme?.close();
  }
}

export type AcmeHooks = Pick<AcmeDeps, 'onCertificate' | 'onAlpnChallenge'>;

/**
 * The ACME orderer of a process: the single process's edge, or the primary of `workers: N`
 * (which serves no TLS itself and passes what it gets to its workers through `hooks`).
 */
export function createAcme(deps: Omit<EdgeDeps, 'dataPlane'>, config: NonNullable<TlsConfig['acme']>, { AcmeManager, trustDirectoryCa }: typeof AcmeModule, certs: CertificateSet, hooks?: AcmeHooks): AcmeManager {
  const { logger } = deps;
  const store = deps.store as StateStore;
  const instanceId = deps.instanceId ?? '';
  if (config.caFile !== undefined) trustDirectoryCa(config.caFile);
  let storage: AcmeStorage;
  let lease: Lease;
  const log = logger.child({ component: 'acme' });
  if (isRedisStore(store) && deps.config.store.kind === 'redis') {
    const prefix = deps.config.store.prefix;
    storage = new RedisAcmeStorage(store.client, prefix);
    // the rollout lease's mechanism under its own key: ordering and driving rollouts are separate jobs
    lease = new RedisLease({ client: store.client, key: `${prefix}:acme-lease`, role: 'orders ACME certificates', id: `${instanceId}:${randomUUID()}`, logger: log, ...(deps.now === undefined ? {} : { now: deps.now }) });
  } else {
    storage = new FileAcmeStorage(deps.config.store.kind === 'file' ? deps.config.store.path : './data/state.json');
    lease = new LocalLease(instanceId);
  }
  return new AcmeManager({ config, hosts: acmeHosts(deps.config), storage, lease, certs, ...hooks, logger: log, registry: deps.registry, ...(deps.now === undefined ? {} : { now: deps.now }), ...(deps.acmeSyncMs === undefined ? {} : { syncMs: deps.acmeSyncMs }) });
}

function plain(res: ClientResponse, status: number, body: string): void {
  if (res.headersSent || res.destroyed) return;
  res.writeHead(status, ['content-type', 'text/plain', 'content-length', String(Buffer.byteLength(body))]);
  res.end(body);
}
