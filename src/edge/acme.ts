import { readFileSync } from 'node:fs';
import { Agent } from 'node:https';
import * as acme from 'acme-client';
import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { AcmeConfig } from '../config/schema.ts';
import type { Lease } from '../state/lease.ts';
import type { AcmeStorage } from './acme-store.ts';
import { loadPem, renewalDue, type CertificateSet } from './certificates.ts';
import type { SecureContext } from 'node:tls';
import { createSecureContext } from 'node:tls';

/** How long a challenge answer lives in the store: an order that takes longer has failed anyway. */
const CHALLENGE_TTL_MS = 10 * 60_000;
const MAX_BACKOFF_MS = 60 * 60_000;
/** acme-client's polling of orders and challenges: quick at first, a few seconds at most */
const CLIENT_BACKOFF = { backoffAttempts: 10, backoffMin: 200, backoffMax: 5000 };

/** What /readyz and the dashboard show of one host's certificate. */
export interface AcmeHostStatus {
  host: string;
  /** ISO time the served certificate expires, or null: none yet */
  notAfter: string | null;
  /** the last failed order's message, cleared by a success */
  lastError: string | null;
  failures: number;
  /** ISO time of the next order attempt after a failure, or null */
  retryAt: string | null;
}

export interface AcmeDeps {
  readonly config: AcmeConfig;
  /** exact hosts to order for (config `hosts`, else every exact host of every app) */
  readonly hosts: readonly string[];
  readonly storage: AcmeStorage;
  /** one orderer per fleet (src/state/lease.ts) */
  readonly lease: Lease;
  readonly certs: CertificateSet;
  readonly logger: Logger;
  readonly registry: Registry;
  /** @default Date.now */
  readonly now?: () => number;
  /** how often the store is read for certificates other instances ordered, and due renewals checked @default 5000 */
  readonly syncMs?: number;
  /** a certificate was loaded (from the store, or issued here): the primary of `workers: N` sends it to its workers */
  readonly onCertificate?: (host: string, pem: { cert: string; key: string }) => void;
  /** a TLS-ALPN-01 challenge certificate was made (or, null, removed): the workers answer the CA's handshake */
  readonly onAlpnChallenge?: (host: string, pem: { cert: string; key: string } | null) => void;
}

export { renewalDue } from './certificates.ts';

/**
 * ACME (RFC 8555) with acme-client: every instance loads the certificates from the store and
 * serves them; the lease holder orders the missing ones and renews the due ones. A failed order
 * is retried with doubling backoff, logged, counted and shown; the certificate serving meanwhile
 * is never taken away (a new one replaces it only once it is issued and loads).
 */
export class AcmeManager {
  readonly #d: AcmeDeps;
  readonly #now: () => number;
  readonly #status = new Map<string, AcmeHostStatus>();
  readonly #backoff = new Map<string, { until: number; delay: number }>();
  /** served PEM per host, to notice a change in the store */
  readonly #loaded = new Map<string, string>();
  /** TLS-ALPN-01 certificates of the orders this instance runs */
  readonly #alpn = new Map<string, SecureContext>();
  /** HTTP-01 answers of the orders this instance runs (others come from the store) */
  readonly #http01 = new Map<string, string>();
  readonly #failures: Counter<'host'>;
  readonly #orders: Counter<'host'>;
  #timer: NodeJS.Timeout | null = null;
  #running: Promise<void> | null = null;
  #closed = false;

  constructor(deps: AcmeDeps) {
    this.#d = deps;
    // acme-client retries a network error 5 times, 5 s × attempt apart (75 s) before failing; the
    // backoff here does the retrying, so an order fails fast and shows in /readyz (process-wide setting)
    const settings = (acme.axios.defaults as { acmeSettings?: Record<string, number> }).acmeSettings;
    if (settings !== undefined) Object.assign(settings, { retryMaxAttempts: 1, retryDefaultDelay: 1 });
    this.#now = deps.now ?? Date.now;
    for (const host of deps.hosts) this.#status.set(host, { host, notAfter: null, lastError: null, failures: 0, retryAt: null });
    this.#failures = new Counter({ name: 'switchyard_acme_order_failures_total', help: 'ACME orders that failed (retried with backoff)', labelNames: ['host'], registers: [deps.registry] });
    this.#orders = new Counter({ name: 'switchyard_acme_orders_total', help: 'ACME certificates issued to this instance', labelNames: ['host'], registers: [deps.registry] });
    const status = this.#status;
    new Gauge({
      name: 'switchyard_acme_certificate_ok',
      help: '1 when the host has a certificate and its last order did not fail',
      labelNames: ['host'],
      registers: [deps.registry],
      collect() {
        for (const s of status.values()) this.set({ host: s.host }, s.notAfter !== null && s.lastError === null ? 1 : 0);
      },
    });
  }

  start(): void {
    this.#d.lease.start((held) => {
      if (held) this.#kick();
    });
    this.#kick();
  }

  #kick(): void {
    if (this.#closed || this.#running !== null) return;
    this.#running = this.tick()
      .catch((err: unknown) => this.#d.logger.error({ err }, 'acme: round failed'))
      .finally(() => {
        this.#running = null;
        if (this.#closed) return;
        if (this.#timer !== null) clearTimeout(this.#timer);
        this.#timer = setTimeout(() => this.#kick(), this.#d.syncMs ?? 5000);
        this.#timer.unref();
      });
  }

  /** One round: load what the store has, then (lease holder only) order what is missing or due. */
  async tick(): Promise<void> {
    for (const host of this.#d.hosts) {
      if (this.#closed) return;
      await this.#load(host);
      if (!this.#d.lease.held()) continue;
      const current = this.#d.certs.covers(host);
      const due = current === null || renewalDue(current, this.#now());
      const back = this.#backoff.get(host);
      if (due && (back === undefined || this.#now() >= back.until)) await this.#order(host);
    }
  }

  async #load(host: string): Promise<void> {
    let text: string | null;
    try {
      text = await this.#d.storage.get(`cert:${host}`);
    } catch (err) {
      this.#d.logger.warn({ err: (err as Error).message, host }, 'acme: cannot read the certificate store');
      return;
    }
    if (text === null || this.#loaded.get(host) === text) return;
    try {
      const { cert, key } = JSON.parse(text) as { cert: string; key: string };
      const loaded = loadPem(cert, key, `acme:${host}`);
      this.#d.certs.setExtra(host, loaded);
      this.#loaded.set(host, text);
      this.#d.onCertificate?.(host, { cert, key });
      const s = this.#status.get(host);
      if (s !== undefined) s.notAfter = new Date(loaded.notAfter).toISOString();
      this.#d.logger.info({ host, notAfter: new Date(loaded.notAfter).toISOString() }, 'acme: certificate loaded from the store');
    } catch (err) {
      this.#d.logger.error({ err: (err as Error).message, host }, 'acme: the stored certificate does not load; the current one keeps serving');
    }
  }

  /**
   * A client on the fleet's one account: key and URL stored together, so a later order skips
   * registration (acme-client would otherwise "update" the existing account with an empty body,
   * which RFC 8555 servers such as pebble refuse).
   */
  async #client(): Promise<acme.Client> {
    const { config, storage } = this.#d;
    const stored = await storage.get('account');
    if (stored !== null) {
      const { key, url } = JSON.parse(stored) as { key: string; url: string };
      return new acme.Client({ directoryUrl: config.directory, accountKey: key, accountUrl: url, ...CLIENT_BACKOFF });
    }
    const key = await acme.crypto.createPrivateEcdsaKey();
    const client = new acme.Client({ directoryUrl: config.directory, accountKey: key, ...CLIENT_BACKOFF });
    await client.createAccount({ termsOfServiceAgreed: true, ...(config.email === undefined ? {} : { contact: [`mailto:${config.email}`] }) });
    await storage.put('account', JSON.stringify({ key: key.toString(), url: client.getAccountUrl() }));
    return client;
  }

  async #order(host: string): Promise<void> {
    const { config, storage, logger } = this.#d;
    const status = this.#status.get(host) as AcmeHostStatus;
    logger.info({ host, challenge: config.challenge }, 'acme: ordering a certificate');
    try {
      const client = await this.#client();
      const [key, csr] = await acme.crypto.createCsr({ altNames: [host] }, await acme.crypto.createPrivateEcdsaKey());
      const cert = await client.auto({
        csr,
        ...(config.email === undefined ? {} : { email: config.email }),
        termsOfServiceAgreed: true,
        challengePriority: [config.challenge],
        // the CA checks; a self-check would need the proxy's public name to resolve from inside
        skipChallengeVerification: true,
        challengeCreateFn: async (authz, challenge, keyAuthorization) => {
          if (challenge.type === 'http-01') {
            this.#http01.set(challenge.token, keyAuthorization);
            await storage.put(`http01:${challenge.token}`, keyAuthorization, CHALLENGE_TTL_MS);
          } else if ((challenge.type as string) === 'tls-alpn-01') {
            // acme-client's types list http-01 and dns-01 only; the library handles tls-alpn-01 (createAlpnCertificate)
            const [k, c] = await acme.crypto.createAlpnCertificate(authz, keyAuthorization);
            this.#alpn.set(authz.identifier.value, createSecureContext({ key: k, cert: c }));
            this.#d.onAlpnChallenge?.(authz.identifier.value, { cert: c.toString(), key: k.toString() });
          }
        },
        challengeRemoveFn: async (authz, challenge) => {
          if (challenge.type === 'http-01') {
            this.#http01.delete(challenge.token);
            await storage.delete(`http01:${challenge.token}`);
          } else {
            this.#alpn.delete(authz.identifier.value);
            this.#d.onAlpnChallenge?.(authz.identifier.value, null);
          }
        },
      });
      // loads before it is stored: a certificate that would not serve never replaces one that does
      const loaded = loadPem(cert, key, `acme:${host}`);
      const text = JSON.stringify({ cert, key: key.toString() });
      await storage.put(`cert:${host}`, text);
      this.#d.certs.setExtra(host, loaded);
      this.#loaded.set(host, text);
      this.#d.onCertificate?.(host, { cert, key: key.toString() });
      this.#backoff.delete(host);
      this.#orders.inc({ host });
      Object.assign(status, { notAfter: new Date(loaded.notAfter).toISOString(), lastError: null, failures: 0, retryAt: null });
      logger.info({ host, notAfter: status.notAfter }, 'acme: certificate issued');
    } catch (err) {
      // acme-client reports a server that does not answer as a TypeError from its own code
      const message = err instanceof TypeError && err.message.includes("reading 'config'") ? `the ACME server ${config.directory} did not answer` : (err as Error).message;
      const prev = this.#backoff.get(host);
      const delay = prev === undefined ? config.retry : Math.min(prev.delay * 2, MAX_BACKOFF_MS);
      const until = this.#now() + delay;
      this.#backoff.set(host, { until, delay });
      this.#failures.inc({ host });
      Object.assign(status, { lastError: message, failures: status.failures + 1, retryAt: new Date(until).toISOString() });
      logger.error({ err: message, host, retryInMs: delay }, 'acme: order failed; the current certificate keeps serving');
    }
  }

  /** The key authorization of an HTTP-01 token: this instance's own orders, else the store (another instance's). */
  async answer(token: string): Promise<string | null> {
    if (!/^[A-Za-z0-9_-]+$/.test(token)) return null;
    return this.#http01.get(token) ?? (await this.#d.storage.get(`http01:${token}`));
  }

  /** The TLS-ALPN-01 certificate for a host while this instance's order waits on it. */
  alpnChallenge(host: string): SecureContext | null {
    return this.#alpn.get(host.toLowerCase()) ?? null;
  }

  status(): { orderer: boolean; hosts: AcmeHostStatus[] } {
    return { orderer: this.#d.lease.held(), hosts: [...this.#status.values()].map((s) => ({ ...s })) };
  }

  /** Waits for the round in progress (tests and shutdown). */
  async settled(): Promise<void> {
    await this.#running;
  }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer !== null) clearTimeout(this.#timer);
    await this.#running;
    await this.#d.lease.close();
  }
}

/** A CA to trust for the ACME directory (config `caFile`): acme-client talks through its axios instance. */
export function trustDirectoryCa(caFile: string): void {
  // acme-client has one axios instance per process; every ACME client of the process shares it
  acme.axios.defaults.httpsAgent = new Agent({ ca: readFileSync(caFile) });
}
