import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFileSync, unwatchFile, watchFile } from 'node:fs';
import { createSecureContext, type SecureContext } from 'node:tls';
import type { Logger } from 'pino';
import { ConfigError } from '../errors.ts';

/** One certificate ready to serve: its SecureContext, the names it answers and when it expires. */
export interface LoadedCert {
  readonly context: SecureContext;
  /** DNS names from subjectAltName (CN when there are none), lower case; `*.x` for wildcards */
  readonly names: readonly string[];
  readonly notAfter: number;
  readonly notBefore: number;
  /** where it came from: a file path, or `acme:HOST` */
  readonly source: string;
  /** the PEMs, for the listener's default context (a client that sends no SNI) */
  readonly certPem: string | Buffer;
  readonly keyPem: string | Buffer;
}

/** The DNS names a certificate answers for: its subjectAltName DNS entries, else its CN. */
export function certNames(x509: X509Certificate): string[] {
  const san = x509.subjectAltName;
  if (san !== undefined) {
    const names = san.split(',').map((s) => s.trim()).filter((s) => s.startsWith('DNS:')).map((s) => s.slice(4).toLowerCase());
    if (names.length > 0) return names;
  }
  const cn = /(?:^|\n)CN=([^\n]+)/.exec(x509.subject)?.[1];
  return cn === undefined ? [] : [cn.toLowerCase()];
}

/** Renewal starts when a third of the lifetime remains (as certbot and Caddy do); the dashboard warns from then on. */
export function renewalDue(cert: Pick<LoadedCert, 'notBefore' | 'notAfter'>, now: number): boolean {
  return now >= cert.notAfter - (cert.notAfter - cert.notBefore) / 3;
}

/**
 * Parses a PEM chain and key into a LoadedCert; throws with a plain reason when they are not a
 * usable pair (unparsable, key does not match, expired), so a bad renewal never replaces a good one.
 */
export function loadPem(certPem: string | Buffer, keyPem: string | Buffer, source: string, minVersion: 'TLSv1.2' | 'TLSv1.3' = 'TLSv1.2'): LoadedCert {
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(certPem);
  } catch (err) {
    throw new Error(`${source}: not a PEM certificate (${(err as Error).message})`, { cause: err });
  }
  let key;
  try {
    key = createPrivateKey(keyPem);
  } catch (err) {
    throw new Error(`${source}: not a PEM private key (${(err as Error).message})`, { cause: err });
  }
  if (!x509.checkPrivateKey(key)) throw new Error(`${source}: the private key does not match the certificate`);
  const notAfter = Date.parse(x509.validTo);
  const context = createSecureContext({ cert: certPem, key: keyPem, minVersion });
  return { context, names: certNames(x509), notAfter, notBefore: Date.parse(x509.validFrom), source, certPem, keyPem };
}

/**
 * The certificates of the TLS listener, picked by SNI: exact name first, then a wildcard one
 * label deep (`*.example.com` covers `a.example.com`, not `a.b.example.com`, as RFC 6125), else
 * the first certificate. Files are watched (stat polling, which follows the symlink swaps of
 * certbot and cert-manager where an inotify watch on the old inode would go deaf) and re-read
 * when either file changes; a replacement that does not load is logged and the old one serves on.
 */
export class CertificateSet {
  readonly #files: { cert: string; key: string }[];
  readonly #logger: Logger;
  readonly #minVersion: 'TLSv1.2' | 'TLSv1.3';
  readonly #pollMs: number;
  /** index by config position; the loaded file certificates */
  #fromFiles: (LoadedCert | null)[] = [];
  /** certificates obtained by ACME, by host */
  readonly #extra = new Map<string, LoadedCert>();
  #exact = new Map<string, LoadedCert>();
  #wild = new Map<string, LoadedCert>();
  #default: LoadedCert | null = null;
  #watching = false;
  /** reloads that failed, for /metrics */
  reloadFailures = 0;
  /** hears every change of the default certificate (the TLS listener's no-SNI context) */
  onDefaultChange: ((c: LoadedCert | null) => void) | null = null;

  constructor(opts: { files: readonly { cert: string; key: string }[]; logger: Logger; minVersion?: 'TLSv1.2' | 'TLSv1.3'; pollMs?: number }) {
    this.#files = opts.files.map((f) => ({ ...f }));
    this.#logger = opts.logger;
    this.#minVersion = opts.minVersion ?? 'TLSv1.2';
    this.#pollMs = opts.pollMs ?? 1000;
    // at start a certificate that does not load is a configuration error (exit 2, key path named)
    this.#fromFiles = this.#files.map((f, i) => {
      try {
        return this.#read(f);
      } catch (err) {
        throw new ConfigError([`listen.tls.certs[${i}]: ${(err as Error).message}`]);
      }
    });
    this.#index();
  }

  #read(f: { cert: string; key: string }): LoadedCert {
    return loadPem(readFileSync(f.cert), readFileSync(f.key), f.cert, this.#minVersion);
  }

  #index(): void {
    const exact = new Map<string, LoadedCert>();
    const wild = new Map<string, LoadedCert>();
    // ACME certificates first (one exists only where no file covered its host, or the file's was
    // due for renewal), then the files in order: the first that names a host wins
    const files = this.#fromFiles.filter((c): c is LoadedCert => c !== null);
    const all = [...files, ...this.#extra.values()];
    for (const c of [...this.#extra.values(), ...files]) {
      for (const n of c.names) {
        if (n.startsWith('*.')) {
          if (!wild.has(n.slice(2))) wild.set(n.slice(2), c);
        } else if (!exact.has(n)) exact.set(n, c);
      }
    }
    this.#exact = exact;
    this.#wild = wild;
    const before = this.#default;
    this.#default = all[0] ?? null;
    if (before !== this.#default) this.onDefaultChange?.(this.#default);
  }

  /** The certificate for an SNI name (undefined: none sent): exact, wildcard, else the first. */
  pick(servername: string | undefined): LoadedCert | null {
    if (servername !== undefined && servername !== '') {
      const name = servername.toLowerCase();
      const exact = this.#exact.get(name);
      if (exact !== undefined) return exact;
      const dot = name.indexOf('.');
      if (dot !== -1) {
        const wild = this.#wild.get(name.slice(dot + 1));
        if (wild !== undefined) return wild;
      }
    }
    return this.#default;
  }

  /** Whether some certificate other than the default covers `host` (ACME skips those). */
  covers(host: string): LoadedCert | null {
    const c = this.pick(host);
    return c !== null && c.names.some((n) => n === host || (n.startsWith('*.') && host.slice(host.indexOf('.') + 1) === n.slice(2))) ? c : null;
  }

  /** Adds or replaces a certificate for `host` (ACME). */
  setExtra(host: string, cert: LoadedCert): void {
    this.#extra.set(host, cert);
    this.#index();
  }

  /** every certificate loaded now */
  all(): LoadedCert[] {
    return [...this.#fromFiles.filter((c): c is LoadedCert => c !== null), ...this.#extra.values()];
  }

  get size(): number {
    return this.#fromFiles.length + this.#extra.size;
  }

  /** Re-reads one configured pair; on failure keeps what serves now. */
  reload(index: number): boolean {
    const f = this.#files[index];
    if (f === undefined) return false;
    try {
      this.#fromFiles[index] = this.#read(f);
    } catch (err) {
      this.reloadFailures++;
      this.#logger.error({ err: (err as Error).message, cert: f.cert, key: f.key }, 'certificate reload failed: the previous certificate keeps serving');
      return false;
    }
    this.#index();
    this.#logger.info({ cert: f.cert, names: this.#fromFiles[index]?.names }, 'certificate reloaded');
    return true;
  }

  /** Re-reads every configured pair now (SIGHUP), whatever the polling saw; how many loaded and failed. */
  reloadAll(): { reloaded: number; failed: number } {
    let reloaded = 0;
    for (let i = 0; i < this.#files.length; i++) if (this.reload(i)) reloaded++;
    return { reloaded, failed: this.#files.length - reloaded };
  }

  /** Starts watching the files. */
  watch(): void {
    if (this.#watching) return;
    this.#watching = true;
    this.#files.forEach((f, i) => {
      const onChange = (cur: { mtimeMs: number; ino: number; size: number }, prev: { mtimeMs: number; ino: number; size: number }): void => {
        if (cur.mtimeMs === prev.mtimeMs && cur.ino === prev.ino && cur.size === prev.size) return;
        this.reload(i);
      };
      for (const p of new Set([f.cert, f.key])) watchFile(p, { interval: this.#pollMs, persistent: false }, onChange);
    });
  }

  close(): void {
    if (!this.#watching) return;
    this.#watching = false;
    for (const f of this.#files) {
      unwatchFile(f.cert);
      unwatchFile(f.key);
    }
  }
}
