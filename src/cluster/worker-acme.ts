import { createSecureContext, type SecureContext } from 'node:tls';
import type { Logger } from 'pino';
import { loadPem } from '../edge/certificates.ts';
import type { Edge, RemoteAcme } from '../edge/edge.ts';
import type { AcmePem, ToPrimary, ToWorker } from './ipc.ts';

/** How long a worker waits for the primary's answer to an HTTP-01 token before answering 503. */
const ASK_TIMEOUT_MS = 5_000;

/**
 * ACME as a worker of `workers: N` sees it: the primary orders (one orderer per fleet, under the
 * lease) and reads the store; the worker serves the certificates it is sent, answers the CA's
 * TLS-ALPN-01 handshake with the challenge certificate it is sent, and asks the primary for the
 * key authorization of an HTTP-01 token that reached its plain port (the primary answers from
 * its own orders or the store, as a single process does).
 */
export class WorkerAcme implements RemoteAcme {
  readonly #send: (msg: ToPrimary) => void;
  readonly #logger: Logger;
  readonly #alpn = new Map<string, SecureContext>();
  readonly #pending = new Map<number, PromiseWithResolvers<string | null>>();
  #next = 0;
  #edge: Edge | null = null;
  /** certificates sent before the edge exists (init), served once it does */
  #early: AcmePem[] = [];

  constructor(send: (msg: ToPrimary) => void, logger: Logger) {
    this.#send = send;
    this.#logger = logger;
  }

  attach(edge: Edge): void {
    this.#edge = edge;
    for (const pem of this.#early) this.certificate(pem);
    this.#early = [];
  }

  /** A certificate the primary sent: serves it for its host from the next handshake on. */
  certificate(pem: AcmePem): void {
    if (this.#edge === null) {
      this.#early.push(pem);
      return;
    }
    try {
      this.#edge.certs.setExtra(pem.host, loadPem(pem.cert, pem.key, `acme:${pem.host}`));
    } catch (err) {
      // the primary loaded it before sending: this only happens with a corrupted message
      this.#logger.error({ err: (err as Error).message, host: pem.host }, 'acme: the certificate from the primary does not load; the current one keeps serving');
    }
  }

  onMessage(msg: Extract<ToWorker, { type: 'sy:acme-alpn' | 'sy:http01' }>): void {
    if (msg.type === 'sy:acme-alpn') {
      if (msg.cert === null || msg.key === null) this.#alpn.delete(msg.host);
      else this.#alpn.set(msg.host, createSecureContext({ cert: msg.cert, key: msg.key }));
      return;
    }
    const p = this.#pending.get(msg.id);
    if (p === undefined) return;
    this.#pending.delete(msg.id);
    if (msg.failed) p.reject(new Error('the primary could not read the challenge store'));
    else p.resolve(msg.keyAuthorization);
  }

  answer(token: string): Promise<string | null> {
    const id = ++this.#next;
    const p = Promise.withResolvers<string | null>();
    this.#pending.set(id, p);
    const timer = setTimeout(() => {
      if (this.#pending.delete(id)) p.reject(new Error('the primary did not answer'));
    }, ASK_TIMEOUT_MS);
    timer.unref();
    this.#send({ type: 'sy:http01', id, token });
    return p.promise.finally(() => clearTimeout(timer));
  }

  alpnChallenge(host: string): SecureContext | null {
    return this.#alpn.get(host.toLowerCase()) ?? null;
  }
}
