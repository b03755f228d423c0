import type { IncomingMessage } from 'node:http';
import { isIP } from 'node:net';
import { SwitchyardError } from '../errors.ts';
import { isJsonType } from './body.ts';

/**
 * What keeps a web page in the operator's browser from driving the admin API: without tokens
 * (allowed on loopback) the browser itself is the credential, so a cross-site page or a DNS
 * rebinding page could otherwise switch traffic. Three checks, each cheap and independent:
 *
 * - **Host** must be a name the admin listener answers to. DNS rebinding points an attacker's
 *   name at 127.0.0.1, so the browser sends `Host: attacker.example`; an IP literal cannot be
 *   rebound (the page's origin would be that very address), so every IP literal is accepted, as
 *   are `localhost`, the configured `admin.host` and `admin.allowedHosts`.
 * - **Origin / Sec-Fetch-Site**: a browser names the page behind a request; one from another
 *   origin (another site, or another port of localhost) is refused. Tools that send neither
 *   (curl, the CLI) are unaffected.
 * - **Content-Type** on every write must be application/json: a cross-site HTML form or a
 *   "simple" fetch can only send text/plain, form or multipart bodies, and a body-less POST is no
 *   longer read as `{}`.
 */

export interface RequestGuardOptions {
  /** `admin.host`: the listener's own address or name */
  readonly adminHost: string;
  /** `admin.allowedHosts`: further names the admin API is reached by (a reverse proxy's name) */
  readonly allowedHosts: readonly string[];
}

/** Paths a load balancer or orchestrator probes by whatever name it knows; they expose nothing. */
const PROBES = new Set(['/healthz', '/readyz']);
const WRITES = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);
/** Addresses that mean "every interface": no name to add. */
const WILDCARDS = new Set(['0.0.0.0', '::', '']);

/** The hostname of a Host header value (`[::1]:8081` → `::1`, `Example.COM.:80` → `example.com`), or null when malformed. */
export function hostnameOf(host: string): string | null {
  let name: string;
  if (host.startsWith('[')) {
    const end = host.indexOf(']');
    if (end < 0) return null;
    name = host.slice(1, end);
  } else {
    const colon = host.indexOf(':');
    name = colon < 0 ? host : host.slice(0, colon);
  }
  name = name.toLowerCase();
  if (name.endsWith('.')) name = name.slice(0, -1);
  return name === '' ? null : name;
}

export class RequestGuard {
  readonly #names: ReadonlySet<string>;
  /** names an operator configured: a page served by that name (a fronting proxy) may call the API */
  readonly #origins: ReadonlySet<string>;

  constructor(opts: RequestGuardOptions) {
    const names = new Set(['localhost']);
    const origins = new Set<string>();
    const own = hostnameOf(opts.adminHost);
    if (own !== null && !WILDCARDS.has(opts.adminHost)) names.add(own);
    for (const h of opts.allowedHosts) {
      const n = hostnameOf(h);
      if (n !== null) {
        names.add(n);
        origins.add(n);
      }
    }
    this.#names = names;
    this.#origins = origins;
  }

  /** Whether a request with this Host header may be served. */
  hostAllowed(host: string | undefined): boolean {
    // HTTP/1.0 without Host: no browser sends that, so no rebinding either
    if (host === undefined) return true;
    const name = hostnameOf(host);
    if (name === null) return false;
    return isIP(name) !== 0 || this.#names.has(name) || name.endsWith('.localhost');
  }

  /** Throws a 403 SwitchyardError for a request from a name or a page the admin API must not answer. */
  check(req: IncomingMessage, pathname: string): void {
    const host = req.headers.host;
    if (!PROBES.has(pathname) && !this.hostAllowed(host)) {
      throw new SwitchyardError('HOST_NOT_ALLOWED', `the admin API does not answer to the host "${String(host).slice(0, 100)}"; add it to admin.allowedHosts if you reach the admin API by that name`);
    }
    if (req.headers['sec-fetch-site'] === 'cross-site') {
      throw new SwitchyardError('CROSS_ORIGIN_REQUEST', 'refused a request a page from another site made (Sec-Fetch-Site: cross-site)');
    }
    const origin = req.headers.origin;
    if (origin !== undefined && !sameOrigin(origin, host) && !this.#origins.has(originHostname(origin))) {
      throw new SwitchyardError('CROSS_ORIGIN_REQUEST', `refused a request made by a page from ${origin.slice(0, 100)}: only the dashboard's own origin may call the admin API from a browser`);
    }
  }

  /** Throws a 415 for a write that is not application/json, body or not (checked once a route matched, so a wrong path is still a 404). */
  checkWrite(req: IncomingMessage): void {
    // a DELETE with no body (docs/definitions.md §2 `DELETE …/targets?url=`) needs no type: no form and no
    // no-cors fetch can send a DELETE, so a cross-site page cannot make one without a preflight
    const bodyless = req.method === 'DELETE' && req.headers['transfer-encoding'] === undefined && (req.headers['content-length'] ?? '0') === '0';
    if (WRITES.has(req.method ?? '') && !bodyless && !isJsonType(req.headers['content-type'] ?? '')) {
      const got = req.headers['content-type'];
      throw new SwitchyardError('UNSUPPORTED_MEDIA_TYPE', got === undefined ? 'writes must be application/json (no Content-Type given; send {} for an empty body)' : `writes must be application/json, got ${got.slice(0, 100)}`);
    }
  }
}

function originHostname(origin: string): string {
  try {
    return hostnameOf(new URL(origin).host) ?? '';
  } catch {
    return '';
  }
}

/** Whether `Origin` names the host (and port) the request was sent to; `null` and malformed origins never do. */
function sameOrigin(origin: string, host: string | undefined): boolean {
  if (host === undefined) return false;
  let url: URL;
  try {
    url = new URL(origin);
  } catch {
    return false;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return false;
  // URL.host drops a default port; compare against the Host header parsed the same way
  let target: URL;
  try {
    target = new URL(`${url.protocol}//${host}`);
  } catch {
    return false;
  }
  return url.host === target.host;
}
