import { createRequire } from 'node:module';
import type * as Http2 from 'node:http2';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Limits } from '../dataplane/limits.ts';
import { refuse } from '../dataplane/request-target.ts';
import { http } from '../node-http.ts';

const require = createRequire(import.meta.url);
// loaded with require() for the reason given in src/node-http.ts (no namespace of lazy getters)
const http2 = require('node:http2') as typeof Http2;

/** Fields HTTP/2 forbids (RFC 9113 §8.2.2); node:http2 throws on them, so they are dropped here. */
const CONNECTION_SPECIFIC = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade']);

/**
 * An h2 request as the HTTP/1.1 request path reads it: `rawHeaders` without the pseudo-headers,
 * `:authority` as Host (RFC 9113 §8.3.1), and the cookie fields h2 may split joined into one
 * (RFC 9113 §8.2.3), since the upstream speaks HTTP/1.1.
 */
class H2Request extends http2.Http2ServerRequest {
  h1Raw: string[] | undefined;
  /**
   * Body bytes this stream received: the body timeout watches them (limits.ts `watchBody`), not
   * the session socket's byte count, which any other stream or one PING every few seconds moves.
   */
  bodyBytesRead = 0;
  override push(chunk: unknown, encoding?: BufferEncoding): boolean {
    if (chunk !== null && chunk !== undefined) this.bodyBytesRead += (chunk as { length: number }).length;
    return super.push(chunk, encoding);
  }
  /** rawHeaders as HTTP/1.1 has them (installed as the `rawHeaders` getter below) */
  h1RawHeaders(): string[] {
    if (this.h1Raw !== undefined) return this.h1Raw;
    const src = parentRaw.call(this) as string[];
    const out: string[] = [];
    let authority: string | undefined;
    let host = false;
    let cookie: string | undefined;
    let length = false;
    for (let i = 0; i < src.length; i += 2) {
      const name = src[i] as string;
      const value = src[i + 1] as string;
      if (name.charCodeAt(0) === 58 /* : */) {
        if (name === ':authority') authority = value;
        continue;
      }
      if (name === 'cookie') {
        cookie = cookie === undefined ? value : `${cookie}; ${value}`;
        continue;
      }
      if (name === 'host') host = true;
      // a field name, never a value: a header whose value was "content-length" once dropped the body
      else if (name === 'content-length') length = true;
      out.push(name, value);
    }
    if (!host && authority !== undefined) out.unshift('host', authority);
    if (cookie !== undefined) out.push('cookie', cookie);
    // a request body without content-length (h2 frames it itself): announce it, so the request
    // path forwards it (undici then sends it chunked)
    if (!this.stream.endAfterHeaders && !length) out.push('transfer-encoding', 'chunked');
    return (this.h1Raw = out);
  }
}
// node:http2 defines rawHeaders as a getter while @types/node declares a field, so TypeScript
// will not let a subclass override it: the override is installed on the prototype instead
const parentRaw = Object.getOwnPropertyDescriptor(http2.Http2ServerRequest.prototype, 'rawHeaders')?.get as () => unknown;
Object.defineProperty(H2Request.prototype, 'rawHeaders', {
  get(this: H2Request) {
    return this.h1RawHeaders();
  },
});

/** An h2 response that takes the HTTP/1.1 path's flat header lists and drops what h2 forbids. */
class H2Response extends http2.Http2ServerResponse {
  shouldKeepAlive = true;
  override writeHead(status: number, a?: unknown, b?: unknown): this {
    const headers = (typeof a === 'string' ? b : a) as string[] | Record<string, string | string[]> | undefined;
    if (!Array.isArray(headers)) return super.writeHead(status, headers as Http2.OutgoingHttpHeaders);
    const obj: Record<string, string | string[]> = {};
    for (let i = 0; i < headers.length; i += 2) {
      const name = (headers[i] as string).toLowerCase();
      if (CONNECTION_SPECIFIC.has(name)) continue;
      const value = headers[i + 1] as string;
      const prev = obj[name];
      obj[name] = prev === undefined ? value : Array.isArray(prev) ? [...prev, value] : [prev, value];
    }
    // no reason phrase in h2 (RFC 9113 §8.3.2)
    return super.writeHead(status, obj);
  }

  /**
   * A cut (a limit, a broken upstream, a drain deadline) resets the stream with INTERNAL_ERROR:
   * the compatibility API's plain destroy() resets it with NO_ERROR, which a client that has
   * paused the stream takes as "the rest of the body follows" and waits on for ever.
   */
  override destroy(err?: Error): this {
    const stream = this.stream;
    if (err === undefined && !stream.closed && !stream.destroyed) stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
    super.destroy(err);
    return this;
  }
}

/** The methods an HTTP/1.1 upstream's parser knows (llhttp's, which node:http lists). */
const H1_METHODS = new Set(http.METHODS);
/** A field value HTTP/1.1 can carry (RFC 9110 §5.5: VCHAR, obs-text, SP, HTAB); nghttp2 lets other controls through. */
const H1_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

/**
 * Why an h2 request cannot go to an HTTP/1.1 upstream as it is, or null. The HTTP/1.1 parser
 * refuses these at the client's door; on h2 they arrived parsed by nghttp2, which allows any
 * token as a method and control characters in values, and the upstream's strict parser then
 * failed on the head the proxy wrote (found by the fuzz tests, test/fuzz/edge.ts).
 */
function h1Refusal(req: IncomingMessage): string | null {
  if (!H1_METHODS.has(req.method ?? '')) return 'unknown method';
  const raw = req.rawHeaders;
  for (let i = 1; i < raw.length; i += 2) if (!H1_VALUE.test(raw[i] as string)) return `control character in the ${raw[i - 1] as string} field`;
  return null;
}

/** Idle h2 connections are closed after this, as HTTP/1.1 keep-alive ones (DataPlane's keepAliveTimeout). */
export const H2_IDLE_MS = 65_000;

export interface H2Options {
  /** SETTINGS_MAX_CONCURRENT_STREAMS per connection @default 128 (nginx's default) */
  readonly maxConcurrentStreams?: number;
  /** SETTINGS_MAX_HEADER_LIST_SIZE: bytes of request header fields @default 16384 (node:http's limit) */
  readonly maxHeaderListSize?: number;
  /** the same handler as HTTP/1.1 requests */
  readonly handle: (req: IncomingMessage, res: ServerResponse) => void;
  /**
   * The data plane's limits: streams are forwarded inside its connection budget (queued, then
   * 503), a session must open its first stream within `headerTimeout`, and the streams per
   * session never exceed the connection cap.
   */
  readonly limits?: Limits;
}

const kStreams = Symbol('switchyard.h2streams');
const kTimer = Symbol('switchyard.h2timer');
type TimedSession = Http2.ServerHttp2Session & { [kStreams]: number; [kTimer]: NodeJS.Timeout | null };

/**
 * Per-session timers driven by streams, not by bytes: a new session that opens no stream within
 * `headerTimeout` is closed (counted as `header`, like an HTTP/1.1 connection that sends no
 * request), and a session with no stream open for H2_IDLE_MS gets a GOAWAY, whatever PINGs or
 * SETTINGS keep its socket busy (the socket's own idle timer counts those as activity).
 */
function watchSession(session: TimedSession, headerTimeout: number, limits: Limits | undefined): void {
  session[kStreams] = 0;
  let first = true;
  const expire = (): void => {
    session[kTimer] = null;
    if (session.closed || session.destroyed || session[kStreams] > 0) return;
    if (first) {
      limits?.note('header');
      session.destroy();
    } else session.close();
  };
  session[kTimer] = setTimeout(expire, headerTimeout);
  session.on('stream', (stream: Http2.ServerHttp2Stream) => {
    first = false;
    session[kStreams]++;
    if (session[kTimer] !== null) {
      clearTimeout(session[kTimer]);
      session[kTimer] = null;
    }
    stream.once('close', () => {
      if (--session[kStreams] === 0 && !session.closed && !session.destroyed) session[kTimer] = setTimeout(expire, H2_IDLE_MS);
    });
  });
  session.once('close', () => {
    if (session[kTimer] !== null) clearTimeout(session[kTimer]);
    session[kTimer] = null;
  });
}

/**
 * A cleartext-API http2 server that never listens: the TLS listener hands it the connections
 * that negotiated h2 (its 'connection' event is how node:http2 takes a socket). Every stream
 * goes through the HTTP/1.1 request path via the compatibility API: routing, forwarding, drain
 * counts, metrics and the access log are the same code. A stream the client resets closes its
 * response, which aborts the upstream request (ProxyHandler listens to 'close').
 */
export function createH2Server(opts: H2Options): Http2.Http2Server {
  const limits = opts.limits;
  // one session never holds more streams than the whole budget has upstream connections
  const maxConcurrentStreams = Math.min(opts.maxConcurrentStreams ?? 128, limits?.max ?? Infinity);
  const server = http2.createServer({
    Http2ServerRequest: H2Request,
    Http2ServerResponse: H2Response as unknown as typeof Http2.Http2ServerResponse<H2Request>,
    settings: { maxConcurrentStreams, maxHeaderListSize: opts.maxHeaderListSize ?? 16_384, enablePush: false },
    maxSessionInvalidFrames: 100,
  });
  const handle = opts.handle;
  server.on('request', (r, s) => {
    const req = r as unknown as IncomingMessage;
    const res = s as unknown as ServerResponse;
    const refusal = h1Refusal(req);
    if (refusal !== null) return refuse(res, 400, refusal);
    if (limits === undefined) handle(req, res);
    else limits.streams.admit(req, res, () => handle(req, res));
  });
  server.on('sessionError', () => undefined);
  server.on('session', (session) => {
    session.on('error', () => undefined);
    // an idle h2 connection gets a GOAWAY after the HTTP/1.1 keep-alive timeout of the data plane;
    // streams still open finish first
    watchSession(session as TimedSession, limits?.config.headerTimeout ?? H2_IDLE_MS, limits);
  });
  return server;
}

export function isH2Request(req: IncomingMessage): boolean {
  return req instanceof http2.Http2ServerRequest;
}
