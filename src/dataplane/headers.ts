import { randomBytes } from 'node:crypto';
import { BlockList, isIPv4, isIPv6 } from 'node:net';
import { validHost } from './request-target.ts';

/** RFC 9110 §7.6.1 hop-by-hop fields, plus the non-standard ones proxies conventionally drop. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'http2-settings']);

export const VIA = '1.1 switchyard';

/**
 * How many Switchyard hops a request may already have passed (its `Via` entries received by
 * `switchyard`) before the next one refuses it 508 `LOOP_DETECTED`. A target that points at the
 * proxy itself, or two instances that point at each other, would otherwise turn one request into
 * an endless chain of connections (measured: ~2,300 descriptors in 0.7 s for one GET) until the
 * process runs out of them. Real deployments stack two or three tiers, never eight.
 */
export const MAX_SWITCHYARD_HOPS = 8;

/** The Switchyard entries of one `Via` field value (`1.1 switchyard, 1.1 cdn, 1.1 switchyard` → 2). */
export function switchyardHops(via: string): number {
  let n = 0;
  for (const entry of via.split(',')) {
    const t = entry.trim();
    // received-protocol RWS received-by [RWS comment] (RFC 9110 §7.6.3)
    const by = t.split(/\s+/)[1];
    if (by !== undefined && by.toLowerCase() === 'switchyard') n++;
  }
  return n;
}

/**
 * End-to-end fields a `Connection` header may not remove (RFC 9110 §7.6.1 lets a sender name
 * any field there): without Host the upstream sees undici's target address instead, and the
 * framing fields decide where a message ends.
 */
const NEVER_HOP_BY_HOP = new Set(['host', 'content-length', 'transfer-encoding']);

/**
 * Fields that say something about the client or an earlier proxy (address, port, scheme, TLS,
 * the original path), kept only from a trusted proxy: from anyone else they are a lie the
 * upstream would believe. X-Forwarded-For/-Proto/-Host and Forwarded are handled on their own.
 */
const FROM_TRUSTED_ONLY = new Set([
  'forwarded', 'x-forwarded-port', 'x-forwarded-prefix', 'x-forwarded-ssl', 'x-forwarded-scheme', 'x-forwarded-server',
  'x-forwarded-uri', 'x-real-ip', 'x-client-ip', 'true-client-ip', 'x-original-url', 'x-rewrite-url', 'x-original-forwarded-for',
]);

/**
 * Request ids: a random per-process prefix and a counter, unique across a fleet and about
 * 20× cheaper than a UUID per request (no CSPRNG call on the hot path).
 */
const ID_PREFIX = randomBytes(6).toString('hex');
let idSeq = 0;
export function nextRequestId(): string {
  idSeq = (idSeq + 1) % Number.MAX_SAFE_INTEGER;
  return `${ID_PREFIX}-${idSeq.toString(36)}`;
}
const REQUEST_ID_RE = /^[A-Za-z0-9._:@\-/+=]{1,128}$/;

/** `trustedProxies` as a matcher (node:net BlockList does the CIDR arithmetic). */
export class TrustedProxies {
  private readonly list = new BlockList();
  readonly empty: boolean;
  constructor(cidrs: readonly string[]) {
    this.empty = cidrs.length === 0;
    for (const c of cidrs) {
      const [addr, bits] = c.split('/') as [string, string | undefined];
      const type = isIPv6(addr) ? 'ipv6' : 'ipv4';
      if (bits === undefined) this.list.addAddress(addr, type);
      else this.list.addSubnet(addr, Number(bits), type);
    }
  }
  has(address: string): boolean {
    if (this.empty || address === '') return false;
    if (isIPv4(address)) return this.list.check(address, 'ipv4');
    if (isIPv6(address)) {
      // an IPv4 peer on a dual-stack socket shows up as ::ffff:a.b.c.d
      if (address.startsWith('::ffff:') && isIPv4(address.slice(7))) return this.list.check(address.slice(7), 'ipv4');
      return this.list.check(address, 'ipv6');
    }
    return false;
  }
}

export function normalizeAddress(address: string | undefined): string {
  if (address === undefined) return '';
  return address.startsWith('::ffff:') && isIPv4(address.slice(7)) ? address.slice(7) : address;
}

/** What the request steps learned about a request's headers in one pass. */
export interface ForwardedRequest {
  /** flat `[name, value, name, value…]` list for undici */
  readonly headers: string[];
  readonly requestId: string;
  readonly host: string | undefined;
  /** the client address as far as trusted proxies let us know it */
  readonly clientIp: string;
  /** whether the request has a body to stream */
  readonly hasBody: boolean;
  readonly cookie: string | undefined;
}

/**
 * A request refused before routing: 400, 501 for a transfer coding other than chunked, or 508
 * `LOOP_DETECTED` for a request that went round through Switchyard too often (with its code).
 */
export type FramingError = { readonly error: string; readonly status: 400 | 501 } | { readonly error: string; readonly status: 508; readonly code: 'LOOP_DETECTED'; readonly requestId: string };

/**
 * Builds the upstream request headers from the client's raw headers in one pass: drops
 * hop-by-hop fields (and those named in `Connection`), refuses ambiguous framing, and sets
 * X-Forwarded-For/-Proto/-Host, Via and X-Request-Id — trusting the client's own forwarded
 * fields only when it is a trusted proxy. `authority`: the authority of an absolute-form request
 * target, which replaces the client's Host (RFC 9112 §3.2.2); `proto`: https on the TLS port. `Expect` is never forwarded: the
 * proxy answers 100-continue itself (undici cannot send the field), and `Proxy-Authorization`
 * is meant for a proxy, not for the upstream.
 */
export function forwardRequestHeaders(raw: readonly string[], remote: string, trust: TrustedProxies, authority?: string, proto: 'http' | 'https' = 'http'): ForwardedRequest | FramingError {
  const trusted = trust.has(remote);
  const out: string[] = [];
  let host: string | undefined;
  let hostCount = 0;
  let clCount = 0;
  let te: string | undefined;
  let xff: string | undefined;
  let xfProto: string | undefined;
  let xfHost: string | undefined;
  let via: string | undefined;
  let hops = 0;
  let requestId: string | undefined;
  let cookie: string | undefined;
  let connectionTokens: string[] | null = null;
  let body = false;

  for (let i = 0; i < raw.length; i += 2) {
    const name = (raw[i] as string).toLowerCase();
    const value = raw[i + 1] as string;
    switch (name) {
      case 'host':
        hostCount++;
        host = value;
        if (authority === undefined) out.push('host', value);
        continue;
      case 'content-length':
        clCount++;
        body = value !== '0';
        out.push(name, value);
        continue;
      case 'transfer-encoding':
        te = te === undefined ? value : `${te}, ${value}`;
        body = true;
        continue;
      case 'expect':
      case 'proxy-authorization':
        continue;
      case 'connection':
        for (const t of value.split(',')) {
          const tok = t.trim().toLowerCase();
          if (tok !== '' && tok !== 'close' && tok !== 'keep-alive' && !HOP_BY_HOP.has(tok) && !NEVER_HOP_BY_HOP.has(tok)) (connectionTokens ??= []).push(tok);
        }
        continue;
      case 'x-forwarded-for':
        if (trusted) xff = xff === undefined ? value : `${xff}, ${value}`;
        continue;
      case 'x-forwarded-proto':
        if (trusted) xfProto = value;
        continue;
      case 'x-forwarded-host':
        if (trusted) xfHost = value;
        continue;
      case 'via':
        via = via === undefined ? value : `${via}, ${value}`;
        if (value.includes('witchyard')) hops += switchyardHops(value);
        continue;
      case 'x-request-id':
        if (requestId === undefined && REQUEST_ID_RE.test(value)) requestId = value;
        continue;
      case 'cookie':
        cookie = cookie === undefined ? value : `${cookie}; ${value}`;
        out.push(name, value);
        continue;
      default:
        if (HOP_BY_HOP.has(name) || (!trusted && FROM_TRUSTED_ONLY.has(name))) continue;
        out.push(name, value);
    }
  }
  if (hops >= MAX_SWITCHYARD_HOPS) return { error: `forwarding loop: the request passed Switchyard ${hops} times`, status: 508, code: 'LOOP_DETECTED', requestId: requestId ?? nextRequestId() };
  if (hostCount > 1) return { error: 'duplicate Host header', status: 400 };
  if (clCount > 1) return { error: 'duplicate Content-Length header', status: 400 };
  if (te !== undefined && clCount > 0) return { error: 'Transfer-Encoding together with Content-Length', status: 400 };
  // only chunked is decoded by Node's parser; nginx answers 501 to any other coding, and so do we
  // rather than forward a body whose coding nobody removed (RFC 9112 §6.1)
  if (te !== undefined && te.trim().toLowerCase() !== 'chunked') return { error: `transfer coding "${te}" is not implemented`, status: 501 };
  if (host !== undefined && !validHost(host)) return { error: 'invalid Host header', status: 400 };
  if (authority !== undefined) {
    host = authority;
    out.push('host', authority);
  }

  if (connectionTokens !== null) {
    const drop = new Set(connectionTokens);
    for (let i = out.length - 2; i >= 0; i -= 2) if (drop.has(out[i] as string)) out.splice(i, 2);
  }
  requestId ??= nextRequestId();
  const clientIp = trusted && xff !== undefined ? clientFromChain(xff, remote, trust) : remote;
  out.push(
    'x-forwarded-for', xff === undefined ? remote : `${xff}, ${remote}`,
    'x-forwarded-proto', xfProto ?? proto,
    'x-forwarded-host', xfHost ?? host ?? '',
    'via', via === undefined ? VIA : `${via}, ${VIA}`,
    'x-request-id', requestId,
  );
  return { headers: out, requestId, host, clientIp, hasBody: body, cookie };
}

/** The right-most address of an X-Forwarded-For chain that is not a trusted proxy. */
export function clientFromChain(xff: string, remote: string, trust: TrustedProxies): string {
  const parts = xff.split(',');
  for (let i = parts.length - 1; i >= 0; i--) {
    const a = normalizeAddress((parts[i] as string).trim());
    if (a !== '' && !trust.has(a)) return a;
  }
  return remote;
}

/**
 * Response headers for the client as a flat list for `res.writeHead`: upstream fields minus
 * hop-by-hop ones, plus Via, X-Served-By and X-Request-Id. A 204 never carries Content-Length
 * (RFC 9110 §8.6), whatever the upstream sent.
 */
export function forwardResponseHeaders(headers: Record<string, string | string[] | undefined>, servedBy: string, requestId: string, close: boolean, status = 200): string[] {
  const out: string[] = [];
  let drop: Set<string> | null = null;
  const conn = headers['connection'];
  if (conn !== undefined) {
    for (const t of String(conn).split(',')) {
      const tok = t.trim().toLowerCase();
      if (tok !== '' && tok !== 'close' && tok !== 'keep-alive' && !NEVER_HOP_BY_HOP.has(tok)) (drop ??= new Set()).add(tok);
    }
  }
  if (status === 204) (drop ??= new Set()).add('content-length');
  let via: string | undefined;
  for (const name in headers) {
    const value = headers[name];
    if (value === undefined || HOP_BY_HOP.has(name) || name === 'x-served-by') continue;
    if (drop !== null && drop.has(name)) continue;
    if (name === 'via') {
      via = Array.isArray(value) ? value.join(', ') : value;
      continue;
    }
    if (Array.isArray(value)) for (const v of value) out.push(name, v);
    else out.push(name, value);
  }
  out.push('via', via === undefined ? VIA : `${via}, ${VIA}`, 'x-served-by', servedBy);
  if (headers['x-request-id'] === undefined) out.push('x-request-id', requestId);
  if (close) out.push('connection', 'close');
  return out;
}

/** A cookie's value from a Cookie header, without parsing the others. */
export function cookieValue(header: string | undefined, name: string): string | undefined {
  if (header === undefined) return undefined;
  let start = 0;
  while (start < header.length) {
    let end = header.indexOf(';', start);
    if (end === -1) end = header.length;
    const eq = header.indexOf('=', start);
    if (eq !== -1 && eq < end && header.slice(start, eq).trim() === name) return header.slice(eq + 1, end).trim();
    start = end + 1;
  }
  return undefined;
}

/**
 * Sets (`value`) or removes (null) a field in a flat upstream header list. For the preview
 * header: its signature is a credential for the proxy, so the upstream gets the pool name only.
 */
export function replaceHeader(headers: string[], lname: string, value: string | null): void {
  // names in the list are lower-case already (forwardRequestHeaders made it)
  for (let i = headers.length - 2; i >= 0; i -= 2) if (headers[i] === lname) headers.splice(i, 2);
  if (value !== null) headers.push(lname, value);
}

/** Whether a response field is one the proxy drops (hop-by-hop), for relayed 1xx responses. */
export function isHopByHop(lname: string): boolean {
  return HOP_BY_HOP.has(lname);
}
