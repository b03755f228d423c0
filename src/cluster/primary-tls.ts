import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { Config, TlsConfig } from '../config/schema.ts';
import type * as AcmeModule from '../edge/acme.ts';
import type { AcmeManager } from '../edge/acme.ts';
import { CertificateSet, type LoadedCert } from '../edge/certificates.ts';
import type { CertificateSource } from '../edge/certificates-route.ts';
import { createAcme } from '../edge/edge.ts';
import type { StateStore } from '../state/types.ts';
import type { AcmePem, ToWorker } from './ipc.ts';

export interface PrimaryTlsDeps {
  readonly config: Config;
  readonly tls: TlsConfig;
  readonly logger: Logger;
  readonly registry: Registry;
  readonly store: StateStore;
  readonly instanceId: string;
  readonly now: () => number;
  /** to every worker that got its init */
  readonly broadcast: (msg: ToWorker) => void;
  /** to one worker (the answer to its HTTP-01 question) */
  readonly sendTo: (slot: number, msg: ToWorker) => void;
}

/**
 * `listen.tls` in the primary of `workers: N`, which serves no TLS itself. ACME: one orderer per
 * process group (and, under the lease, per fleet), as in a single process; every certificate it
 * loads from the store or gets issued goes to every worker (and, in their `init`, to a worker
 * started later), and the workers ask it for HTTP-01 answers. Its CertificateSet, the same files
 * and ACME certificates the workers serve, is what the renewal decisions and
 * `GET /v1/certificates` look at.
 */
export class PrimaryTls implements CertificateSource {
  readonly acmeManager: AcmeManager | null;
  readonly #certs: CertificateSet;
  readonly #pems = new Map<string, AcmePem>();
  readonly #deps: PrimaryTlsDeps;

  static async create(deps: PrimaryTlsDeps): Promise<PrimaryTls> {
    return new PrimaryTls(deps, deps.tls.acme === undefined ? null : await import('../edge/acme.ts'));
  }

  private constructor(deps: PrimaryTlsDeps, module: typeof AcmeModule | null) {
    this.#deps = deps;
    const { tls, logger } = deps;
    this.#certs = new CertificateSet({ files: tls.certs, logger: logger.child({ component: 'tls' }), minVersion: tls.minVersion });
    this.acmeManager = module === null || tls.acme === undefined ? null : createAcme(deps, tls.acme, module, this.#certs, {
      onCertificate: (host, pem) => {
        const msg: AcmePem = { host, cert: pem.cert, key: pem.key };
        this.#pems.set(host, msg);
        deps.broadcast({ type: 'sy:acme-cert', ...msg });
      },
      onAlpnChallenge: (host, pem) => deps.broadcast({ type: 'sy:acme-alpn', host, cert: pem?.cert ?? null, key: pem?.key ?? null }),
    });
  }

  /** The ACME certificates a worker starts with. */
  pems(): AcmePem[] {
    return [...this.#pems.values()];
  }

  certificates(): LoadedCert[] {
    return this.#certs.all();
  }

  acme(): ReturnType<AcmeManager['status']> | null {
    return this.acmeManager?.status() ?? null;
  }

  /** Starts ordering: call once the workers listen, so the CA's challenges are answered. */
  start(): void {
    this.#certs.watch();
    this.acmeManager?.start();
  }

  /** A worker's HTTP-01 question. */
  ask(slot: number, id: number, token: string): void {
    if (this.acmeManager === null) {
      this.#deps.sendTo(slot, { type: 'sy:http01', id, keyAuthorization: null, failed: false });
      return;
    }
    this.acmeManager.answer(token).then(
      (keyAuthorization) => this.#deps.sendTo(slot, { type: 'sy:http01', id, keyAuthorization, failed: false }),
      (err: unknown) => {
        this.#deps.logger.warn({ err: (err as Error).message }, 'acme: cannot read the challenge store');
        this.#deps.sendTo(slot, { type: 'sy:http01', id, keyAuthorization: null, failed: true });
      },
    );
  }

  /** For /readyz, as a single process's edge: ACME status per host. */
  details(): Record<string, unknown> {
    return this.acmeManager === null ? {} : { acme: this.acmeManager.status() };
  }

  /** SIGHUP: the certificate files read again now (the workers do the same with theirs) */
  reloadCertificates(): { reloaded: number; failed: number } {
    return this.#certs.reloadAll();
  }

  async close(): Promise<void> {
    this.#certs.close();
    await this.acmeManager?.close();
  }
}
