import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { Config, TlsConfig } from '../config/schema.ts';
import type * as AcmeModule from '../edge/acme.ts';
import type { AcmeManager } from '../edge/acme.ts';
import { CertificateSet } from '../edge/certificates.ts';
import { createAcme } from '../edge/edge.ts';
import type { StateStore } from '../state/types.ts';
import type { AcmePem, ToWorker } from './ipc.ts';

export interface PrimaryAcmeDeps {
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
 * ACME in the primary of `workers: N`: one orderer per process group (and, under the lease, per
 * fleet), as in a single process; every certificate it loads from the store or gets issued goes
 * to every worker (and, in their `init`, to a worker started later), and the workers ask it for
 * HTTP-01 answers. Its CertificateSet serves nothing: it holds the files and ACME certificates
 * the renewal decisions look at.
 */
export class PrimaryAcme {
  readonly acme: AcmeManager;
  readonly #certs: CertificateSet;
  readonly #pems = new Map<string, AcmePem>();
  readonly #deps: PrimaryAcmeDeps;

  static async create(deps: PrimaryAcmeDeps): Promise<PrimaryAcme | null> {
    if (deps.tls.acme === undefined) return null;
    return new PrimaryAcme(deps, deps.tls.acme, await import('../edge/acme.ts'));
  }

  private constructor(deps: PrimaryAcmeDeps, config: NonNullable<TlsConfig['acme']>, module: typeof AcmeModule) {
    this.#deps = deps;
    const { tls, logger } = deps;
    this.#certs = new CertificateSet({ files: tls.certs, logger: logger.child({ component: 'tls' }), minVersion: tls.minVersion });
    this.acme = createAcme(deps, config, module, this.#certs, {
      onCertificate: (host, pem) => {
        const msg: AcmePem = { host, cert: pem.cert, key: pem.key };
        this.#pems.set(host, msg);
        deps.broadcast({ type: 'sy:acme-cert', ...msg });
      },
      onAlpnChallenge: (host, pem) => deps.broadcast({ type: 'sy:acme-alpn', host, cert: pem?.cert ?? null, key: pem?.key ?? null }),
    });
  }

  /** The certificates a worker starts with. */
  certificates(): AcmePem[] {
    return [...this.#pems.values()];
  }

  /** Starts ordering: call once the workers listen, so the CA's challenges are answered. */
  start(): void {
    this.#certs.watch();
    this.acme.start();
  }

  /** A worker's HTTP-01 question. */
  ask(slot: number, id: number, token: string): void {
    this.acme.answer(token).then(
      (keyAuthorization) => this.#deps.sendTo(slot, { type: 'sy:http01', id, keyAuthorization, failed: false }),
      (err: unknown) => {
        this.#deps.logger.warn({ err: (err as Error).message }, 'acme: cannot read the challenge store');
        this.#deps.sendTo(slot, { type: 'sy:http01', id, keyAuthorization: null, failed: true });
      },
    );
  }

  details(): Record<string, unknown> {
    return { acme: this.acme.status() };
  }

  async close(): Promise<void> {
    this.#certs.close();
    await this.acme.close();
  }
}
