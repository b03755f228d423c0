import { createRequire } from 'node:module';
import type * as Http2 from 'node:http2';
import type { ClientRequest, ClientResponse } from '../dataplane/types.ts';
import type { Socket } from 'node:net';
import { Readable } from 'node:stream';
import { isGrpcContentType } from '../dataplane/grpc.ts';
import type { Limits } from '../dataplane/limits.ts';
import { refuse } from '../dataplane/request-target.ts';
import { http } from '../node-http.ts';

const require = createRequire(import.meta.url);
// loaded with require() for the reason given in src/node-http.ts (no namespace of lazy getters)
const http2 = require('node:http2') as typeof Http2;

/** Fields HTTP/2 forbids (RFC 9113 §8.2.2); node:http2 throws on them, so they are dropped here. */
const CONNECTION_SPECIFIC = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade']);

const kExchange = Symbol('switchyard.h2exchange');
/** body chunks up to this size are copied before they go to the stream (H2Exchange.own) */
const COPY_LIMIT = 16 * 1024;
type ExchangeStream = Http2.ServerHttp2Stream & { [kExchange]: H2Exchange; [kBody]: H2Body };

/**
 * One h2 stream as the HTTP/1.1 request path reads and answers it, on node:http2's core stream
 * API: the members of IncomingMessage and ServerResponse that server.ts, forward.ts,
 * request-target.ts and limits.ts use, over the stream and its headers object, as the raw front's
 * FrontExchange does for HTTP/1.1 (src/dataplane/front.ts). node:http2's compatibility API made
 * two stream objects (Http2ServerRequest, Http2ServerResponse) per request on top of the core
 * stream and copied every body chunk from one to the other; here the core stream is the request
 * body itself (`requestBody`) and the response is written on it.
 *
 * `rawHeaders` are as HTTP/1.1 has them: without the pseudo-headers, `:authority` as Host
 * (RFC 9113 §8.3.1), and the cookie fields h2 may split joined into one (RFC 9113 §8.2.3), since
 * the upstream may speak HTTP/1.1.
 */
export class H2Exchange {
  readonly stream: Http2.ServerHttp2Stream;
  /** the request's fields as nghttp2 delivered them (lower-case names, pseudo-headers included) */
  readonly headers: Http2.IncomingHttpHeaders;
  readonly method: string;
  readonly url: string;
  readonly socket: Socket;
  readonly httpVersionMajor = 2;
  readonly httpVersionMinor = 0;
  readonly httpVersion = '2.0';
  /** no Connection on h2: refuse() clears it, and nothing else reads it */
  shouldKeepAlive = true;
  /** the request body, or null (END_STREAM on the HEADERS frame) */
  readonly body: H2Body | null;
  /** set by forward.ts when the response comes from an h2 target, whose trailers may follow */
  trailersFollow = false;
  private readonly raw: string[];
  private h1Raw: string[] | undefined;
  private trailers: Record<string, string | string[]> | null = null;
  /** the response head is out and the stream waits for `wantTrailers` before it ends */
  private waiting = false;
  /** a body chunk went to the stream uncopied: nghttp2 reads it when it sends the DATA frames (chunksReleased) */
  private held = false;

  constructor(stream: Http2.ServerHttp2Stream, headers: Http2.IncomingHttpHeaders, raw: string[]) {
    this.stream = stream;
    this.headers = headers;
    this.raw = raw;
    this.method = (headers[':method'] as string | undefined) ?? '';
    this.url = (headers[':path'] as string | undefined) ?? '';
    this.socket = (stream.session as Http2.ServerHttp2Session).socket as Socket;
    (stream as ExchangeStream)[kExchange] = this;
    this.body = stream.endAfterHeaders ? null : new H2Body(stream);
  }

  /** IncomingMessage is its own body; here it is an object of its own (server.ts forwards this) */
  get requestBody(): Readable | null {
    return this.body;
  }
  /** Body bytes this stream received: the body timeout watches them (limits.ts `watchBody`), not the session socket's, which other streams and PINGs move. */
  get bodyBytesRead(): number {
    return this.body === null ? 0 : this.body.bytes;
  }
  /** ServerResponse.req, which answersGrpc reads: the exchange is both */
  get req(): this {
    return this;
  }
  get rawHeaders(): string[] {
    return (this.h1Raw ??= h1Headers(this.raw, !this.stream.endAfterHeaders));
  }
  get complete(): boolean {
    return this.body === null || this.body.readableEnded;
  }
  get destroyed(): boolean {
    return this.stream.destroyed;
  }
  get headersSent(): boolean {
    return this.stream.headersSent;
  }
  get writableEnded(): boolean {
    return this.stream.writableEnded;
  }
  get writableLength(): number {
    return this.stream.writableLength;
  }
  get writableHighWaterMark(): number {
    return this.stream.writableHighWaterMark;
  }
  get readableLength(): number {
    return this.body === null ? 0 : this.body.readableLength;
  }
  isPaused(): boolean {
    return this.body !== null && this.body.isPaused();
  }

  once(event: 'close' | 'drain', fn: () => void): this {
    this.stream.once(event, fn);
    return this;
  }
  removeListener(event: 'close' | 'drain', fn: () => void): this {
    this.stream.removeListener(event, fn);
    return this;
  }

  /**
   * The response head from the HTTP/1.1 path's flat list (or a fields object): names in lower
   * case, what h2 forbids dropped (RFC 9113 §8.2.2; node:http2 throws on it), no reason phrase
   * (RFC 9113 §8.3.2). The stream waits for trailers only when some may come: a gRPC call (its status is
   * a trailer), an h2 target's response (forward.ts says so) or an announced Trailer field;
   * otherwise the body's last DATA frame ends it, with no empty frame after it.
   */
  writeHead(status: number, a?: string | string[] | Record<string, string | string[]>, b?: string[] | Record<string, string | string[]>): this {
    const fields = typeof a === 'string' ? b : a;
    const out: Record<string, string | string[] | number> = { ':status': status };
    let trailer = false;
    if (Array.isArray(fields)) {
      for (let i = 0; i < fields.length; i += 2) {
        const name = (fields[i] as string).toLowerCase();
        if (CONNECTION_SPECIFIC.has(name)) continue;
        if (name === 'trailer') trailer = true;
        const value = fields[i + 1] as string;
        const prev = out[name];
        out[name] = prev === undefined ? value : Array.isArray(prev) ? [...prev, value] : [String(prev), value];
      }
    } else if (fields !== undefined) {
      for (const name in fields) {
        const l = name.toLowerCase();
        if (CONNECTION_SPECIFIC.has(l)) continue;
        out[l] = fields[name] as string | string[];
      }
    }
    const wait = this.trailersFollow || trailer || isGrpcContentType(this.headers['content-type']);
    // throws on a field node:http2 will not send: forward.ts takes that as a broken response
    this.stream.respond(out, wait ? { waitForTrailers: true } : undefined);
    if (wait) {
      this.waiting = true;
      this.stream.once('wantTrailers', sendTrailers);
    }
    return this;
  }

  /** The interim 100 for `expect: 100-continue` (RFC 9113 §8.1): a HEADERS frame before the response's. */
  writeContinue(): void {
    this.writeInformational(100, {});
  }

  /** An interim 1xx (100, 102, 103 Early Hints: RFC 9113 §8.1) relayed from the upstream, its own HEADERS frame; never after the response head. */
  writeInformational(status: number, fields: Record<string, string | string[]>): void {
    const stream = this.stream;
    if (stream.destroyed || stream.headersSent || status < 100 || status > 199 || status === 101) return;
    const out: Record<string, string | string[] | number> = { ':status': status };
    for (const name in fields) {
      const l = name.toLowerCase();
      if (!CONNECTION_SPECIFIC.has(l)) out[l] = fields[name] as string | string[];
    }
    try {
      stream.additionalHeaders(out);
    } catch {
      // a field node:http2 will not send: the interim response is dropped, the final one still comes
    }
  }

  /** ServerResponse.addTrailers: sent when the body ends (only on a stream that waits for them: see writeHead). */
  addTrailers(fields: Record<string, string | string[] | undefined>): void {
    const t = (this.trailers ??= {});
    for (const name in fields) {
      const value = fields[name];
      if (value !== undefined) t[name.toLowerCase()] = value;
    }
  }

  /** @internal the stream asks for its trailers (writeHead's waitForTrailers) */
  wantTrailers(): void {
    if (!this.waiting || this.stream.destroyed) return;
    this.waiting = false;
    // an empty set ends the stream with an empty DATA frame (node:http2)
    this.stream.sendTrailers(this.trailers ?? {});
  }

  write(chunk: Buffer | string): boolean {
    const stream = this.stream;
    if (stream.destroyed || stream.writableEnded) return false;
    if (!stream.headersSent) this.writeHead(200, []);
    return stream.write(this.own(chunk));
  }

  end(chunk?: Buffer | string): this {
    const stream = this.stream;
    if (stream.destroyed || stream.writableEnded) return this;
    if (!stream.headersSent) this.writeHead(200, []);
    if (chunk === undefined) stream.end();
    else stream.end(this.own(chunk));
    return this;
  }

  /**
   * A small body chunk is copied before it goes to the stream, whose queue references it until
   * nghttp2 has framed it: the native engine then reuses its 64 KiB read buffer at once
   * (src/dataplane/engine/read-buffers.ts) instead of leaving one to the GC per response.
   */
  private own(chunk: Buffer | string): Buffer | string {
    if (typeof chunk === 'string') return chunk;
    if (chunk.length > COPY_LIMIT) {
      this.held = true;
      return chunk;
    }
    return Buffer.from(chunk);
  }

  /** Whether no body chunk given to write()/end() is still referenced (read-buffers.ts ChunkHolder). */
  chunksReleased(): boolean {
    return !this.held;
  }

  /**
   * A cut (a limit, a broken upstream, a drain deadline) resets the stream with INTERNAL_ERROR, at
   * once: destroy() with an error sends RST_STREAM INTERNAL_ERROR and nothing before it. Not a
   * plain destroy(), which resets with NO_ERROR (a client that has paused the stream takes that as
   * "the rest of the body follows" and waits for ever), nor close(INTERNAL_ERROR), which ends the
   * writable side first, so nghttp2 sends END_STREAM before the reset and the client reads a
   * short response as complete (found by the h2 differential: an upstream's broken chunked body
   * came to the client as an empty 200). The stream's 'error' goes to its noop listener.
   */
  destroy(err?: Error): this {
    const stream = this.stream;
    if (!stream.destroyed) stream.destroy(err ?? new Error('the response was cut'));
    return this;
  }
}

function sendTrailers(this: ExchangeStream): void {
  this[kExchange].wantTrailers();
}

/**
 * A request body as the engines read it: the core stream's readable side relayed into a Readable
 * of its own, with backpressure (the stream pauses while this one is full). The core stream
 * cannot be handed to an engine itself: undici pipes a body with stream.pipeline(), which treats
 * a Duplex source as finished (and closed it, resetting the client's stream) once its readable
 * side ended. Counts the bytes for the body timeout.
 */
class H2Body extends Readable {
  readonly stream: Http2.ServerHttp2Stream;
  bytes = 0;
  constructor(stream: Http2.ServerHttp2Stream) {
    super();
    this.stream = stream;
    (stream as ExchangeStream)[kBody] = this;
    stream.on('data', bodyData);
    stream.on('end', bodyEnd);
    stream.once('close', bodyClose);
    // its reset is reported to whoever reads it; unread (the request already ended), it is nobody's error
    this.on('error', noop);
  }
  override _read(): void {
    this.stream.resume();
  }
}
const kBody = Symbol('switchyard.h2body');
function bodyData(this: ExchangeStream, chunk: Buffer): void {
  const body = this[kBody];
  body.bytes += chunk.length;
  if (!body.push(chunk)) this.pause();
}
function bodyEnd(this: ExchangeStream): void {
  this[kBody].push(null);
}
function bodyClose(this: ExchangeStream): void {
  const body = this[kBody];
  // reset before its end: the engine sees an aborted body, as from an HTTP/1.1 client that left
  if (!body.readableEnded && !body.destroyed) body.destroy(new Error('aborted'));
}

/** rawHeaders as HTTP/1.1 has them, from node:http2's flat raw list (see H2Exchange). */
function h1Headers(src: string[], body: boolean): string[] {
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
  // path forwards it (the engine then sends it chunked)
  if (body && !length) out.push('transfer-encoding', 'chunked');
  return out;
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
function h1Refusal(req: ClientRequest): string | null {
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
  readonly handle: (req: ClientRequest, res: ClientResponse) => void;
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
    // not counted: it holds nothing open, and its 'close' may be past; a session that only
    // opens and resets streams is still cut at headerTimeout, having been served nothing
    if (goneBeforeItsEvent(stream)) return;
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
 * goes through the HTTP/1.1 request path as an H2Exchange on the core stream API (no 'request'
 * listener, so node:http2 builds no compatibility objects): routing, forwarding, drain counts,
 * metrics and the access log are the same code. A stream the client resets closes, which aborts
 * the upstream request (ProxyHandler listens to 'close').
 */
export function createH2Server(opts: H2Options): Http2.Http2Server {
  const limits = opts.limits;
  // one session never holds more streams than the whole budget has upstream connections
  const maxConcurrentStreams = Math.min(opts.maxConcurrentStreams ?? 128, limits?.max ?? Infinity);
  const server = http2.createServer({
    settings: { maxConcurrentStreams, maxHeaderListSize: opts.maxHeaderListSize ?? 16_384, enablePush: false },
    maxSessionInvalidFrames: 100,
  });
  const handle = opts.handle;
  server.on('stream', (stream: Http2.ServerHttp2Stream, headers: Http2.IncomingHttpHeaders, _flags: number, raw: string[]) => {
    stream.on('error', noop);
    if (goneBeforeItsEvent(stream)) return;
    try {
      const ex = new H2Exchange(stream, headers, raw);
      // the exchange is both the request and its response (src/dataplane/types.ts ClientExchange)
      const refusal = h1Refusal(ex);
      if (refusal !== null) return refuse(ex, 400, refusal);
      if (limits === undefined) handle(ex, ex);
      else limits.streams.admit(ex, ex, () => handle(ex, ex));
    } catch (err) {
      // as for a request the data plane handles (guard.ts): a bug here ends this stream, counted
      // and logged, never the process
      limits?.guard.caught('request', err);
      if (!stream.destroyed) stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
    }
  });
  server.on('sessionError', noop);
  server.on('session', (session) => {
    session.on('error', noop);
    // an idle h2 connection gets a GOAWAY after the HTTP/1.1 keep-alive timeout of the data plane;
    // streams still open finish first
    watchSession(session as TimedSession, limits?.config.headerTimeout ?? H2_IDLE_MS, limits);
  });
  return server;
}

function noop(): void {}

/**
 * A stream the client reset before its 'stream' event ran: node:http2 emits the event a tick
 * after the HEADERS frame, and a RST_STREAM in the same read (HTTP/2 rapid reset, CVE-2023-44487)
 * destroys the stream in between, which also detaches it from its session (`stream.session`
 * undefined: reading the session's socket threw, and ended the process). Nothing to answer and
 * no upstream request to make.
 */
function goneBeforeItsEvent(stream: Http2.ServerHttp2Stream): boolean {
  return stream.destroyed || stream.session === undefined;
}

export function isH2Request(req: ClientRequest): boolean {
  return req instanceof H2Exchange;
}
