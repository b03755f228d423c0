import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { ClientRequest, ClientResponse } from './types.ts';

// the front, h2 and the pipeline import it from here, as before
export { refuse } from './responses.ts';

/**
 * The request line's semantics, checked before a request is routed: what nginx and HAProxy
 * refuse, we refuse, with the same statuses. llhttp (Node's parser) accepts more than HTTP/1.1
 * allows a proxy to pass on (`HTTP/2.0` and `HTTP/0.9` request lines, any URI scheme, `*` for
 * every method, fragments), and undici refuses to send some of it, which used to surface as a
 * 502 counted against a healthy target.
 */

/** Where a request goes and what is sent upstream, or why it is refused. */
export type RequestTarget =
  | { readonly path: string; readonly authority: string | null }
  | { readonly status: 400 | 505; readonly reason: string };

/** The authority of a Host field or absolute-form target: reg-name, IPv4 or [IPv6], optional port (RFC 9110 §7.2, RFC 3986 §3.2). */
const AUTHORITY_RE = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]+)(?::[0-9]{0,5})?$/;

/** Whether a Host field value (or an absolute-form authority) is one a client may send; empty is allowed (RFC 9112 §3.2). */
export function validHost(host: string): boolean {
  return host === '' || AUTHORITY_RE.test(host);
}

/**
 * Checks the version and the request target of a request (RFC 9112 §2.3, §3.2) and turns an
 * absolute-form target (`GET http://host/path`) into origin-form plus its authority, which
 * routes the request and becomes the upstream's Host (RFC 9112 §3.2.2: the target's authority wins over
 * the Host field).
 */
export function parseRequestTarget(req: ClientRequest): RequestTarget {
  // HTTP/2 streams come from the TLS listener's h2 server (src/edge/h2.ts); an `HTTP/2.0` request line on HTTP/1.1 does not
  if (req.httpVersionMajor !== 1 && !(req.httpVersionMajor === 2 && 'stream' in req)) return { status: 505, reason: `HTTP/${req.httpVersion} is not supported` };
  const url = req.url ?? '';
  // '#' never belongs in a request target (RFC 9112 §3.2); HAProxy refuses it too
  if (url.includes('#')) return { status: 400, reason: 'fragment in the request target' };
  if (url.charCodeAt(0) === 47 /* / */) return { path: url, authority: null };
  // asterisk-form: undici cannot send it, and nginx answers 400 to it as well
  if (url === '*') return { status: 400, reason: 'asterisk-form request target' };
  const colon = url.indexOf(':');
  const scheme = colon === -1 ? '' : url.slice(0, colon).toLowerCase();
  if (scheme !== 'http' && scheme !== 'https') return { status: 400, reason: colon === -1 ? 'request target is not a path' : `scheme ${scheme} in the request target` };
  if (url.charCodeAt(colon + 1) !== 47 || url.charCodeAt(colon + 2) !== 47) return { status: 400, reason: 'absolute-form target without an authority' };
  const start = colon + 3;
  let end = start;
  while (end < url.length && url[end] !== '/' && url[end] !== '?') end++;
  const authority = url.slice(start, end);
  // userinfo is deprecated in http(s) URIs (RFC 9110 §4.2.4) and a classic way to disguise a host
  if (authority === '' || authority.includes('@') || !AUTHORITY_RE.test(authority)) return { status: 400, reason: 'bad authority in the request target' };
  const rest = url.slice(end);
  return { path: rest === '' ? '/' : rest.charCodeAt(0) === 63 /* ? */ ? `/${rest}` : rest, authority };
}

const CONNECT_BODY = '501 CONNECT is not served by Switchyard\n';
const CONNECT_REFUSED = `HTTP/1.1 501 Not Implemented\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ${CONNECT_BODY.length}\r\nconnection: close\r\n\r\n${CONNECT_BODY}`;

/** node:http's 'connect' listener: without one a CONNECT gets no answer at all, only a closed socket. */
export function refuseConnect(_req: IncomingMessage, socket: Socket): void {
  socket.on('error', () => socket.destroy());
  socket.end(CONNECT_REFUSED);
}

/**
 * Upstream 1xx responses (102 Processing, 103 Early Hints, …) relayed to the client before the
 * final response (RFC 9110 §15.2). node:http has writeEarlyHints, but it drops hints without a
 * Link field and knows only 103, hence the raw write. 100 is the proxy's own business (it answers
 * Expect itself), 101 is an upgrade, and an HTTP/1.0 client must not get a 1xx at all.
 */
export function relayInformational(req: ClientRequest, res: ClientResponse, status: number, headers: Record<string, string | string[] | undefined>, dropped: (name: string) => boolean): void {
  if (status === 100 || status === 101 || res.headersSent) return;
  if (res.writeInformational !== undefined) {
    // h2: its own HEADERS frame on the stream (never raw bytes on the session's socket)
    const fields: Record<string, string | string[]> = {};
    for (const name in headers) {
      const value = headers[name];
      if (value !== undefined && !dropped(name)) fields[name] = value;
    }
    res.writeInformational(status, fields);
    return;
  }
  const socket = res.socket;
  if (req.httpVersionMinor === 0 || socket === null || socket.destroyed) return;
  let head = `HTTP/1.1 ${status} ${status === 103 ? 'Early Hints' : status === 102 ? 'Processing' : 'Informational'}\r\n`;
  for (const name in headers) {
    const value = headers[name];
    if (value === undefined || dropped(name)) continue;
    if (Array.isArray(value)) for (const v of value) head += `${name}: ${v}\r\n`;
    else head += `${name}: ${value}\r\n`;
  }
  socket.write(`${head}\r\n`, 'latin1');
}
