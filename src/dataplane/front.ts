import type { Socket } from 'node:net';
import { Readable } from 'node:stream';
import { CHUNKED_ERROR, CHUNKED_MORE, ChunkedDecoder } from './chunked.ts';
import { http } from '../node-http.ts';
import { readSlots, setSlot, slot } from './engine/internals.ts';
import { HTTPParser, METHODS, type Parser } from './engine/llhttp.ts';
import { REQUEST_TIMEOUT_408 } from './limits.ts';
import { MAX_PIPELINED } from './pipeline.ts';
import { refuse } from './request-target.ts';
import { batchWrites, destroyAfterWrites, flushWrites } from './write-batch.ts';

/**
 * The client side of the proxy port on raw sockets: the HTTP/1.1 requests that make up nearly
 * all traffic (a common method, origin-form or absolute-form target, one Host, no body or a body
 * framed by Content-Length or `Transfer-Encoding: chunked`, `Expect: 100-continue`) are parsed by
 * Node's strict llhttp and answered here, without node:http's IncomingMessage, ServerResponse
 * and their stream machinery, which cost more per request than the rest of the proxy (README
 * Performance). A request body streams to the engine through a Readable of its own (FrontBody),
 * with backpressure: the client socket pauses while the body's reader (the upstream socket) is
 * full. Everything else — another expectation or transfer coding, an upgrade, CONNECT, HTTP/1.0,
 * a parse error, a head split over many packets — is handed to node:http at the first byte of
 * that request, with the connection, so those paths keep node:http's behaviour exactly (its
 * refusals, its upgrade event).
 *
 * Why not a library: no maintained HTTP/1.1 server lets a proxy take the parsed head and write the
 * response bytes itself on the socket; uWebSockets.js is a native binary outside npm's registry.
 */

/** What the front needs from the data plane. */
export interface FrontPlane {
  /** routes and forwards one request (DataPlane.handle); `ex` is both its request and its response */
  handle(ex: FrontExchange): void;
  /** node:http's own connection listener, which takes the connection from the current request on */
  handOff(socket: Socket): void;
  /** true once shutdown started: every response then closes its connection */
  closing(): boolean;
  /** an exception while reading the connection (a bug): counted and logged, the connection answered 500 (if nothing was written) and closed */
  caught(err: unknown, socket: Socket, answered: boolean): void;
}

/** Bytes of a request head that may arrive in pieces before node:http takes the connection. */
const MAX_SPLIT_HEAD = 8192;
/** Pipelined bytes buffered behind the request being served before reading pauses. */
const PIPELINE_BUFFER = 64 * 1024;
/** node:http's keepAliveTimeout as configured in server.ts (and announced in Keep-Alive). */
export const KEEP_ALIVE_MS = 65_000;
const KEEP_ALIVE_HEADER = `Connection: keep-alive\r\nKeep-Alive: timeout=${KEEP_ALIVE_MS / 1000}\r\n`;
const FAST_METHODS = new Set(['GET', 'HEAD', 'DELETE', 'OPTIONS', 'POST', 'PUT', 'PATCH']);
/** by llhttp's method number: whether the front serves that method (decided once, not per request) */
const SERVED_METHOD: readonly boolean[] = METHODS.map((m) => FAST_METHODS.has(m));
const CONTINUE = 'HTTP/1.1 100 Continue\r\n\r\n';
const BAD_REQUEST = 'HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n';
/** a whole response is copied into one buffer (one write syscall) below this size; above, writev */
const COPY_LIMIT = 16 * 1024;
const EMPTY_HEADERS: FrontHeaders = Object.freeze({});
const EXPECT_HEADERS: FrontHeaders = Object.freeze({ expect: '100-continue' });
type FrontHeaders = { readonly expect?: string };
/** the async-hooks resource llhttp's initialize() asks for; the front has no async context of its own */
const PARSER_RESOURCE = Object.freeze({});
const HEAD_END = Buffer.from('\r\n\r\n');
/** the shortest head the front serves (`GET / HTTP/1.1`, an empty Host) */
const MIN_HEAD = 'GET / HTTP/1.1\r\nHost:\r\n\r\n'.length;

let dateSecond = -1;
let dateValue = '';
/** The Date field node:http adds, cached per second as node:http does. */
function utcDate(): string {
  const now = Date.now();
  const s = Math.floor(now / 1000);
  if (s !== dateSecond) {
    dateSecond = s;
    dateValue = new Date(now).toUTCString();
  }
  return dateValue;
}

/** net.Socket's read-buffer slots (engine/internals.ts), or null: the front then reads through 'data' events */
const SLOTS = readSlots.ok ? readSlots : null;
/**
 * The one buffer every plain front connection of this thread reads into (see readInto): a read's
 * bytes are parsed before the next read can come, and whatever outlives the read (a partial or
 * pipelined head, body bytes) is copied out of it (own). 64 KiB: the size Node reads with.
 */
const READ_BUFFER: Buffer | null = SLOTS === null ? null : Buffer.allocUnsafeSlow(64 * 1024);
const READ_AB: ArrayBufferLike | null = READ_BUFFER === null ? null : READ_BUFFER.buffer;

/** `b`, or a copy of it when it is a view of READ_BUFFER (which the next read overwrites). */
function own(b: Buffer): Buffer {
  return b.buffer === READ_AB ? Buffer.from(b) : b;
}

type Handle = { useUserBuffer?: (buf: Buffer) => void };

/**
 * Switches an accepted plain socket to reading into READ_BUFFER with `onRead` as its callback,
 * as net.connect's `onread` option sets up a socket it creates (the same slots, the same
 * `useUserBuffer` on the handle): Node's onStreamRead then calls onRead with the read's length,
 * and the bytes go through no Readable push, 'data' event or end-of-tick maybeReadMore (README
 * Performance, "CPU per request on the plain path"). The end of the stream still comes as
 * 'end', and pause()/resume() stop and start the handle's reads. False (the socket keeps its
 * 'data' events): slots not usable in this Node (engine/internals.ts), or a handle without user buffers.
 */
function readInto(socket: Socket): boolean {
  const handle = (socket as Socket & { _handle?: Handle | null })._handle;
  if (SLOTS === null || READ_BUFFER === null || typeof handle?.useUserBuffer !== 'function') return false;
  if (slot(socket, SLOTS.kBuffer) !== null) return false;
  setSlot(socket, SLOTS.kBuffer, READ_BUFFER);
  setSlot(socket, SLOTS.kBufferCb, onRead);
  handle.useUserBuffer(READ_BUFFER);
  return true;
}

const kConn = Symbol('switchyard.front');
type FrontSocket = Socket & { [kConn]: FrontConnection };
type FrontParser = Parser & { [kConn]: FrontConnection };

/** Every raw-socket connection of one data plane, with the idle and slow-head sweep. */
export class Front {
  readonly plane: FrontPlane;
  readonly connections = new Set<FrontConnection>();
  private readonly headerTimeout: number;
  private sweeper: NodeJS.Timeout | null = null;

  /** @param headerTimeout a later head's deadline: node:http's headersTimeout in server.ts (limits.ts times a connection's first head) */
  constructor(plane: FrontPlane, headerTimeout: number) {
    this.plane = plane;
    this.headerTimeout = headerTimeout;
  }

  accept(socket: Socket): void {
    const conn = new FrontConnection(this, socket);
    this.connections.add(conn);
    // one timer for every connection, as node:http's connectionsCheckingInterval
    this.sweeper ??= setInterval(() => this.sweep(), Math.min(1000, this.headerTimeout)).unref();
  }

  /** Keep-alive connections idle for KEEP_ALIVE_MS close; a later head that takes too long gets 408. */
  private sweep(): void {
    const now = performance.now();
    for (const c of this.connections) {
      if (c.active !== null) continue;
      if (c.partialSince !== 0) {
        if (now - c.partialSince >= this.headerTimeout) c.timedOut();
      } else if (now - c.idleSince >= KEEP_ALIVE_MS) destroyAfterWrites(c.socket);
    }
    if (this.connections.size === 0 && this.sweeper !== null) {
      clearInterval(this.sweeper);
      this.sweeper = null;
    }
  }

  /** Closes the connections with no request in flight (node:http's closeIdleConnections). */
  closeIdle(): void {
    for (const c of this.connections) if (c.active === null) destroyAfterWrites(c.socket);
  }

  closeAll(): void {
    for (const c of this.connections) destroyAfterWrites(c.socket);
  }

  /** Connections that read into the front's buffer (readInto), not through 'data' events: for tests and diagnostics. */
  get direct(): number {
    let n = 0;
    for (const c of this.connections) if (c.direct) n++;
    return n;
  }

  forget(conn: FrontConnection): void {
    this.connections.delete(conn);
  }
}

/** One client connection while the front serves it (until it closes or is handed to node:http). */
export class FrontConnection {
  readonly front: Front;
  readonly socket: Socket;
  /** a TLSSocket (the TLS port's HTTP/1.1 connections) */
  readonly tls: boolean;
  private readonly parser: FrontParser;
  /** bytes received and not yet parsed, starting at a request's first byte */
  private buf: Buffer | null = null;
  /** the request being served; pipelined ones wait in `buf` */
  active: FrontExchange | null = null;
  /** performance.now() when the connection last became idle */
  idleSince = performance.now();
  /** performance.now() when part of a head arrived after the first request, or 0 */
  partialSince = 0;
  private gone = false;
  private parsing = false;
  private paused = false;
  private requests = 0;
  /** the request (by count) that found MAX_PIPELINED others waiting before it, or 0 */
  private overflowAt = 0;
  // the head of the last execute, from the parser's callback
  private headDone = false;
  private split = false;
  private hMethod = 0;
  private hUrl = '';
  private hHeaders: string[] = [];
  private hMinor = 0;
  private hMajor = 0;
  private hUpgrade = false;
  private hKeepAlive = false;
  /** the head's body framing (plain() reads it): a Content-Length over 0, chunked, Expect: 100-continue */
  private hLength = 0;
  private hChunked = false;
  private hExpect = false;
  /** the request whose body is being read (until its end, a framing error or the connection's end) */
  private bodyOf: FrontExchange | null = null;
  /** Content-Length bytes of that body still to come (not chunked) */
  private bodyLeft = 0;
  private chunks: ChunkedDecoder | null = null;
  /** the socket is paused because the body's reader is full (`paused`: because pipelined bytes are) */
  private bodyPaused = false;
  /** the socket reads into READ_BUFFER (readInto), not through 'data' events */
  readonly direct: boolean;
  private readonly onChunk = (chunk: Buffer): void => this.bodyOf?.bodyData(chunk);

  constructor(front: Front, socket: Socket) {
    this.front = front;
    this.socket = socket;
    this.tls = (socket as Socket & { encrypted?: boolean }).encrypted === true;
    const parser = new HTTPParser() as FrontParser;
    parser[kConn] = this;
    parser[HTTPParser.kOnHeaders] = onHeaders;
    parser[HTTPParser.kOnHeadersComplete] = onHeadersComplete;
    parser[HTTPParser.kOnBody] = noop;
    parser[HTTPParser.kOnMessageComplete] = noop;
    parser[HTTPParser.kOnExecute] = noop;
    this.parser = parser;
    const s = socket as FrontSocket;
    s[kConn] = this;
    s.on('data', onData);
    s.on('end', onEnd);
    s.on('error', noop);
    s.on('close', onClose);
    // bytes already emitted or emitted later by whoever accepted the socket (h2c's preface check,
    // application data that came with the TLS handshake) still come through onData, first: a
    // buffered Readable flushes on the next tick, before any read of the poll phase. A TLS socket's
    // handle is its TLSWrap, which hands up cleartext to the same slots (README Performance, "HTTPS")
    this.direct = readInto(socket);
  }

  /** @internal the parser's head callback */
  head(major: number, minor: number, headers: string[] | undefined, method: number, url: string, upgrade: boolean, keepAlive: boolean): number {
    this.headDone = true;
    this.hMajor = major;
    this.hMinor = minor;
    this.hHeaders = headers ?? [];
    this.hMethod = method;
    this.hUrl = url;
    this.hUpgrade = upgrade;
    this.hKeepAlive = keepAlive;
    // 2: no body, and execute() returns where this head ends, so each request's bytes are known
    return 2;
  }

  /** @internal more than 32 header fields: the parser delivers them in parts */
  headersInParts(): void {
    this.split = true;
  }

  /** @internal a read into READ_BUFFER: parsed, and what waits for the next read copied out */
  receivedInto(chunk: Buffer): void {
    try {
      this.received(chunk);
    } catch (err) {
      this.crashed(err);
    }
    const buf = this.buf;
    if (buf !== null && buf.buffer === READ_AB) this.buf = Buffer.from(buf);
  }

  received(chunk: Buffer): void {
    if (this.gone) return; // closing: nothing more is read
    if (this.bodyOf !== null) {
      // a request body first; what follows its end is the next request
      const rest = this.feedBody(chunk);
      if (rest === null || this.gone) return;
      chunk = rest;
    }
    this.buf = this.buf === null ? chunk : Buffer.concat([this.buf, chunk]);
    if (this.active === null) this.parse();
    else {
      this.countWaiting();
      if (this.buf.length > PIPELINE_BUFFER && !this.paused) {
        this.paused = true;
        this.socket.pause();
      }
    }
  }

  /**
   * The cap of pipeline.ts, as node:http applies it there: a request that arrives with
   * MAX_PIPELINED others waiting before it is answered 503 at its turn, and the connection ends.
   * Heads waiting in `buf` are counted by their blank line (only heads without a body are served
   * here), and only when `buf` could hold that many.
   */
  private countWaiting(): void {
    const buf = this.buf;
    if (buf === null || this.overflowAt !== 0 || buf.length < MIN_HEAD * (MAX_PIPELINED + 1)) return;
    let waiting = 0;
    for (let at = buf.indexOf(HEAD_END); at !== -1 && waiting <= MAX_PIPELINED; at = buf.indexOf(HEAD_END, at + 4)) waiting++;
    if (waiting > MAX_PIPELINED) this.overflowAt = this.requests + MAX_PIPELINED + 1;
  }

  private parse(): void {
    this.parsing = true;
    const parser = this.parser;
    while (this.buf !== null && this.active === null && !this.gone) {
      const buf = this.buf;
      // a fresh parser state for every request: after a head's return 2 llhttp stays in its
      // upgrade state, where it would report no error for what follows
      parser.initialize(HTTPParser.REQUEST, PARSER_RESOURCE, 0, HTTPParser.kLenientNone);
      this.headDone = false;
      this.split = false;
      const r = parser.execute(buf);
      if (typeof r !== 'number') {
        this.handOff(); // node:http answers the parse error (400, 431…) as it always did
        break;
      }
      if (!this.headDone) {
        // part of a head: parsed again from its first byte once more arrives
        if (buf.length > MAX_SPLIT_HEAD) this.handOff();
        else if (this.requests > 0 && this.partialSince === 0) this.partialSince = performance.now();
        break;
      }
      if (!this.plain()) {
        this.handOff();
        break;
      }
      this.partialSince = 0;
      this.buf = r < buf.length ? buf.subarray(r) : null;
      this.requests++;
      const ex = new FrontExchange(this, METHODS[this.hMethod] as string, this.hUrl, this.hHeaders, this.hKeepAlive && !this.front.plane.closing(), this.hExpect);
      this.active = ex;
      const rest = this.buf;
      if (this.hLength > 0 && !this.hChunked && !this.hExpect && rest !== null && rest.length >= this.hLength) {
        // the common small POST: the whole Content-Length body came in the same read as its head.
        // It goes on as one Buffer (no stream, no tick per chunk and per end): the engine writes
        // head and body in one write, a mirror copies it at once, and nothing waits on the client
        const n = this.hLength;
        ex.bodyWhole(n === rest.length ? rest : rest.subarray(0, n));
        this.buf = n < rest.length ? rest.subarray(n) : null;
      } else if (this.hLength > 0 || this.hChunked) {
        // the body's bytes already here are read before the request is routed, as node:http does
        ex.bodyStart();
        this.bodyOf = ex;
        this.bodyLeft = this.hLength;
        this.chunks = this.hChunked ? new ChunkedDecoder() : null;
        this.buf = null;
        if (rest !== null) this.buf = this.feedBody(rest);
        if (this.gone) break;
      }
      if (this.requests === this.overflowAt) {
        refuse(ex, 503, `more than ${MAX_PIPELINED} pipelined requests on one connection`);
        break;
      }
      if (this.buf !== null) this.countWaiting();
      this.front.plane.handle(ex);
    }
    this.parsing = false;
    if (this.paused && this.active === null && !this.gone) {
      this.paused = false;
      if (!this.bodyPaused) this.socket.resume();
    }
  }

  /**
   * Passes body bytes of the request being read to its FrontBody, in its framing; returns what
   * follows the body's end (the next request's bytes), or null. A framing error ends the
   * connection as node:http does (400 when nothing was written on it yet).
   */
  private feedBody(chunk: Buffer): Buffer | null {
    const ex = this.bodyOf as FrontExchange;
    let end: number;
    if (this.chunks === null) {
      const take = this.bodyLeft < chunk.length ? this.bodyLeft : chunk.length;
      this.bodyLeft -= take;
      ex.bodyData(take === chunk.length ? chunk : chunk.subarray(0, take));
      end = this.bodyLeft === 0 ? take : CHUNKED_MORE;
    } else {
      end = this.chunks.feed(chunk, 0, this.onChunk);
      if (end === CHUNKED_ERROR) {
        this.badBody(ex);
        return null;
      }
    }
    if (end === CHUNKED_MORE || this.gone) return null;
    this.bodyOf = null;
    this.chunks = null;
    // nothing more to push: the socket reads on (the next request's bytes have their own bound)
    if (this.bodyPaused) {
      this.bodyPaused = false;
      if (!this.paused) this.socket.resume();
    }
    ex.bodyEnd();
    return end < chunk.length ? chunk.subarray(end) : null;
  }

  /** @internal the body's reader is full: the client socket waits (node:http's readStop) */
  bodyFull(): void {
    if (this.bodyPaused || this.gone) return;
    this.bodyPaused = true;
    this.socket.pause();
  }

  /** @internal the body's reader wants more (FrontBody._read) */
  bodyWanted(): void {
    if (!this.bodyPaused) return;
    this.bodyPaused = false;
    if (!this.paused && !this.gone) this.socket.resume();
  }

  /** A malformed chunked body: node:http's answer to a parse error (400 if nothing was written on the connection, then closed); the request ends as the client's. */
  private badBody(ex: FrontExchange): void {
    this.gone = true;
    this.bodyOf = null;
    this.chunks = null;
    const s = this.socket;
    if (s.bytesWritten === 0 && !ex.headersSent) {
      s.end(BAD_REQUEST);
      s.destroySoon();
    } else destroyAfterWrites(s);
    ex.bodyAborted();
    if (!ex.finished) ex.clientGone();
  }

  /** Whether the front serves the request whose head was just parsed, or node:http does. */
  private plain(): boolean {
    if (this.hMajor !== 1 || this.hMinor !== 1 || this.hUpgrade || this.split) return false;
    if (SERVED_METHOD[this.hMethod] !== true) return false;
    const h = this.hHeaders;
    let hosts = 0;
    let lengths = 0;
    this.hLength = 0;
    this.hChunked = false;
    this.hExpect = false;
    for (let i = 0; i < h.length; i += 2) {
      const name = h[i] as string;
      switch (name.length) {
        case 4:
          if (name.toLowerCase() === 'host') hosts++;
          break;
        case 6:
          if (name.toLowerCase() === 'expect') {
            // node:http answers any other expectation 417, and a second one as it sees fit
            if (this.hExpect || (h[i + 1] as string).toLowerCase() !== '100-continue') return false;
            this.hExpect = true;
          }
          break;
        case 7:
          if (name.toLowerCase() === 'upgrade') return false;
          break;
        case 14:
          if (name.toLowerCase() === 'content-length') {
            // llhttp (strict) let through digits only; a length past 2^53, or two fields, stay node:http's
            const n = Number(h[i + 1]);
            if (++lengths > 1 || !Number.isSafeInteger(n)) return false;
            this.hLength = n;
          }
          break;
        case 17:
          if (name.toLowerCase() === 'transfer-encoding') {
            // chunked alone; any other coding (or a list) is node:http's to answer
            if (this.hChunked || (h[i + 1] as string).toLowerCase() !== 'chunked') return false;
            this.hChunked = true;
          }
          break;
      }
    }
    // both framings at once is a smuggling shape: node:http (llhttp) refuses it
    if (this.hChunked && lengths > 0) return false;
    return hosts === 1;
  }

  /** node:http takes the connection from the first byte of the current request on. */
  private handOff(): void {
    this.gone = true;
    const s = this.socket;
    s.removeListener('data', onData);
    s.removeListener('end', onEnd);
    s.removeListener('error', noop);
    s.removeListener('close', onClose);
    this.front.forget(this);
    this.parser.close();
    // node:http writes and destroys on its own from now on: what the front wrote goes first
    flushWrites(s);
    if (this.paused) s.resume();
    const rest = this.buf;
    this.buf = null;
    // node:http reads the handle itself from now on (its parser consumes it), or, when it lets go
    // of it (an upgrade), through 'data' events again: each read copied and pushed
    if (this.direct && SLOTS !== null) setSlot(s, SLOTS.kBufferCb, pushCopy);
    this.front.plane.handOff(s);
    // a copy: an upgrade's head is a slice of it, kept
    if (rest !== null) s.emit('data', own(rest));
  }

  /** @internal the response of `ex` is written whole */
  responseDone(ex: FrontExchange): void {
    if (this.active !== ex) return;
    this.active = null;
    this.idleSince = performance.now();
    // a connection already cut (destroy) serves nothing more that was pipelined on it
    if (!ex.keepAlive || this.socket.destroyed) {
      this.gone = true;
      this.buf = null;
      this.socket.destroySoon();
      return;
    }
    if (!this.parsing) this.parse();
  }

  /** A later head did not arrive in time (node:http's headersTimeout answer). */
  timedOut(): void {
    this.gone = true;
    this.socket.end(REQUEST_TIMEOUT_408);
    this.socket.destroySoon();
  }

  /** The client finished sending (FIN): as node:http without allowHalfOpen, the connection ends. */
  ended(): void {
    if (this.gone) return;
    this.gone = true;
    if (this.active !== null) destroyAfterWrites(this.socket);
    else if (this.buf !== null) this.socket.end(BAD_REQUEST); // a request cut short
    else this.socket.end();
  }

  /** An exception out of the parse loop: this connection ends, nothing else does (guard.ts). */
  crashed(err: unknown): void {
    this.gone = true;
    this.parsing = false;
    this.buf = null;
    const ex = this.active;
    this.front.plane.caught(err, this.socket, ex !== null && ex.headersSent);
  }

  closed(): void {
    this.gone = true;
    this.buf = null;
    this.front.forget(this);
    this.parser.close();
    // a body cut short: its reader stops (the handler aborts the upstream request, which saw part of it)
    this.bodyOf?.bodyAborted();
    this.bodyOf = null;
    const ex = this.active;
    this.active = null;
    if (ex !== null && !ex.finished) ex.clientGone();
  }
}

/**
 * One request and its response on a front connection: the members of IncomingMessage and
 * ServerResponse that the data plane uses (server.ts, forward.ts, request-target.ts), with
 * node:http's framing and connection fields, so a client sees the same response either way.
 */
export class FrontExchange {
  readonly conn: FrontConnection;
  readonly socket: Socket;
  readonly method: string;
  readonly url: string;
  readonly rawHeaders: string[];
  readonly httpVersionMajor = 1;
  readonly httpVersionMinor = 1;
  readonly httpVersion = '1.1';
  /** the fields read by name: only Expect (100-continue), which the data plane answers once the request is routed */
  readonly headers: FrontHeaders;
  /** the request body as it arrives, or null (none) */
  private body: FrontBody | null = null;
  /** the whole body when it came with the head (bodyWhole), handed on as it is */
  private whole: Buffer | null = null;
  /** the whole body was received (IncomingMessage.complete) */
  complete = true;
  /** a 100 Continue went out */
  private continued = false;
  /** false: the connection closes once this response is written */
  keepAlive: boolean;
  headersSent = false;
  finished = false;
  private head = '';
  private chunked = false;
  private noBody = false;
  /** trailer fields for the end of a chunked body (addTrailers), as written */
  private trailers = '';
  /** a body chunk was handed to the socket uncopied and its write queue may still hold it (chunksReleased) */
  private held = false;
  private onClose: (() => void) | null = null;

  constructor(conn: FrontConnection, method: string, url: string, rawHeaders: string[], keepAlive: boolean, expect: boolean) {
    this.conn = conn;
    this.socket = conn.socket;
    this.method = method;
    this.url = url;
    this.rawHeaders = rawHeaders;
    this.keepAlive = keepAlive;
    this.headers = expect ? EXPECT_HEADERS : EMPTY_HEADERS;
  }

  /** The body the engine (or undici, or a mirror copy) reads: IncomingMessage is its own body, this exchange has one of its own (as h2's). */
  get requestBody(): Readable | Buffer | null {
    return this.whole ?? this.body;
  }

  /** @internal the whole Content-Length body came with the head: a Buffer, not a stream */
  bodyWhole(body: Buffer): void {
    this.whole = own(body);
  }

  /** @internal the request has a body: its stream opens */
  bodyStart(): void {
    this.complete = false;
    this.body = new FrontBody(this.conn);
  }
  /** @internal body bytes, as received (a slice of the socket's read, or of a chunk) */
  bodyData(chunk: Buffer): void {
    const body = this.body as FrontBody;
    if (!body.push(own(chunk))) this.conn.bodyFull();
  }
  /** @internal the body's last byte came */
  bodyEnd(): void {
    this.complete = true;
    const body = this.body as FrontBody;
    body.complete = true;
    body.push(null);
  }
  /** @internal the body will not end (framing error, client gone): its reader stops, without an 'error' nobody may listen to */
  bodyAborted(): void {
    if (this.body !== null && !this.complete) this.body.destroy();
  }

  /** ServerResponse.shouldKeepAlive, which refuse() clears */
  set shouldKeepAlive(v: boolean) {
    this.keepAlive &&= v;
  }
  get shouldKeepAlive(): boolean {
    return this.keepAlive;
  }

  get writableLength(): number {
    return this.socket.writableLength;
  }
  get writableEnded(): boolean {
    return this.finished;
  }
  get destroyed(): boolean {
    return this.socket.destroyed;
  }
  /** the body's reader paused it (the upstream is full): not the client's stall (limits.ts watchBody) */
  isPaused(): boolean {
    return this.body !== null && this.body.isPaused();
  }
  /** body bytes received and not yet read */
  get readableLength(): number {
    return this.body === null ? 0 : this.body.readableLength;
  }

  /** ServerResponse.writeContinue: the interim 100 before the client sends its body (RFC 9110 §10.1.1). */
  writeContinue(): void {
    if (this.headersSent || this.continued || this.socket.destroyed) return;
    this.continued = true;
    this.socket.write(CONTINUE, 'latin1');
  }
  get writableHighWaterMark(): number {
    return this.socket.writableHighWaterMark;
  }

  once(event: 'close' | 'drain', fn: () => void): this {
    if (event === 'close') this.onClose = fn;
    else this.socket.once('drain', fn);
    return this;
  }
  removeListener(event: 'close' | 'drain', fn: () => void): this {
    if (event === 'close') this.onClose = null;
    else this.socket.removeListener('drain', fn);
    return this;
  }

  /**
   * Builds the response head as node:http's _storeHeader does: the fields as given, then Date,
   * Connection/Keep-Alive and the body framing (chunked when no Content-Length on a response
   * that has a body). Written with the first body bytes, in one write.
   */
  writeHead(status: number, reason?: string | string[], fields?: string[]): this {
    // as node:http, a final answer to an Expect without its 100 closes the connection (the client
    // may send the body anyway); so does one that starts before the body all came: its rest
    // would have to be read and dropped
    if ((this.headers.expect !== undefined && !this.continued) || !this.complete) this.keepAlive = false;
    const message = typeof reason === 'string' ? reason : (http.STATUS_CODES[status] ?? 'unknown');
    const list = typeof reason === 'string' ? (fields ?? []) : (reason ?? []);
    let head = `HTTP/1.1 ${status} ${message}\r\n`;
    let length = false;
    let date = false;
    let connection = false;
    let trailer = false;
    for (let i = 0; i < list.length; i += 2) {
      const name = list[i] as string;
      const value = list[i + 1] as string;
      // names and values come from llhttp (strict) or from the proxy itself: node:http's
      // character checks would find nothing to refuse
      head += `${name}: ${value}\r\n`;
      switch (name.length) {
        case 4:
          date ||= name.toLowerCase() === 'date';
          break;
        case 7:
          trailer ||= name.toLowerCase() === 'trailer';
          break;
        case 10:
          if (name.toLowerCase() === 'connection') {
            connection = true;
            if (/close/i.test(value)) this.keepAlive = false;
          }
          break;
        case 14:
          length ||= name.toLowerCase() === 'content-length';
          break;
      }
    }
    if (!date) head += `Date: ${utcDate()}\r\n`;
    this.noBody = this.method === 'HEAD' || status === 204 || status === 304 || (status >= 100 && status < 200);
    if (!connection) head += this.keepAlive ? KEEP_ALIVE_HEADER : 'Connection: close\r\n';
    if (!length && !this.noBody) {
      head += 'Transfer-Encoding: chunked\r\n';
      this.chunked = true;
    }
    // as node:http: trailers need chunked framing (forward.ts catches the throw: a broken response)
    if (trailer && !this.chunked) throw new Error('Trailers are invalid with this transfer encoding');
    this.head = `${head}\r\n`;
    this.headersSent = true;
    return this;
  }

  /** ServerResponse.addTrailers: sent with the end of a chunked body (an upstream's, relayed; its fields were parsed strictly), dropped otherwise as node:http does. */
  addTrailers(fields: Record<string, string | string[] | undefined>): void {
    for (const name in fields) {
      const value = fields[name];
      if (value === undefined) continue;
      for (const v of Array.isArray(value) ? value : [value]) this.trailers += `${name}: ${v}\r\n`;
    }
  }

  write(chunk: Buffer | string): boolean {
    if (this.finished) return false;
    return this.send(typeof chunk === 'string' ? Buffer.from(chunk) : chunk, false);
  }

  end(chunk?: Buffer | string): this {
    if (this.finished) return this;
    if (!this.headersSent) this.writeHead(200, []);
    this.send(chunk === undefined ? null : typeof chunk === 'string' ? Buffer.from(chunk) : chunk, true);
    this.finished = true;
    this.conn.responseDone(this);
    return this;
  }

  /** Writes the head (first time), the chunk in the response's framing, and the end of a chunked body when `last`. */
  private send(chunk: Buffer | null, last: boolean): boolean {
    const socket = this.socket;
    if (socket.destroyed) return false;
    const head = this.head;
    this.head = '';
    const n = chunk === null || this.noBody ? 0 : chunk.length;
    // what is written as a copy waits for the end of the loop's turn (write-batch.ts); a chunk
    // written as it is (a view of the engine's read buffer) goes at once, after what was held
    if (n === 0 || (n <= COPY_LIMIT && (head !== '' || this.chunked))) batchWrites(socket);
    else flushWrites(socket);
    if (!this.chunked) {
      if (n === 0) return head === '' ? true : socket.write(head, 'latin1');
      if (head !== '') return this.together(head, chunk as Buffer, '');
      this.holds();
      return socket.write(chunk as Buffer);
    }
    const tail = last ? (this.trailers === '' ? (n === 0 ? '0\r\n\r\n' : '\r\n0\r\n\r\n') : `${n === 0 ? '' : '\r\n'}0\r\n${this.trailers}\r\n`) : n === 0 ? '' : '\r\n';
    if (n === 0) return head + tail === '' ? true : socket.write(head + tail, 'latin1');
    return this.together(`${head}${n.toString(16)}\r\n`, chunk as Buffer, tail);
  }

  /** before + chunk + after in one write: copied into one buffer when small, one writev when large. */
  private together(before: string, chunk: Buffer, after: string): boolean {
    const socket = this.socket;
    if (chunk.length <= COPY_LIMIT) {
      const size = before.length + chunk.length + after.length;
      const out = Buffer.allocUnsafe(size);
      out.write(before, 0, 'latin1');
      chunk.copy(out, before.length);
      if (after !== '') out.write(after, before.length + chunk.length, 'latin1');
      return socket.write(out);
    }
    this.holds();
    socket.cork();
    if (before !== '') socket.write(before, 'latin1');
    socket.write(chunk);
    if (after !== '') socket.write(after, 'latin1');
    socket.uncork();
    // what the kernel did not take at the uncork: the corked writes alone answer false for any chunk over the mark
    return socket.writableLength < socket.writableHighWaterMark;
  }

  /**
   * Called before a body chunk goes to the socket uncopied. A TLS socket with nothing queued and
   * not corked passes a write straight to OpenSSL, which encrypts it into its own buffer before
   * write() returns (Node's TLSWrap::DoWrite copies what SSL_write could not take): the chunk is
   * not referenced afterwards. A plain socket's write, or one queued behind another, may be.
   */
  private holds(): void {
    const socket = this.socket;
    if (!this.conn.tls || socket.writableLength !== 0 || socket.writableCorked !== 0) this.held = true;
  }

  /**
   * Whether no body chunk given to write()/end() is still referenced (the native engine then reuses
   * its read buffer: src/dataplane/engine/read-buffers.ts). Small chunks are copied with the head
   * (together()), and a TLS socket's writes are encrypted at once (holds()), so over TLS this is
   * true without waiting for the write's completion, which TLSSocket reports only after the tick:
   * waiting for it dropped a 64 KiB read buffer per response and made the GC run a mark-compact
   * every ~100 ms (README Performance, "HTTPS").
   */
  chunksReleased(): boolean {
    return !this.held || (!this.socket.destroyed && this.socket.writableLength === 0);
  }

  /** Cuts the connection: the client sees a broken response (ServerResponse.destroy). */
  destroy(): this {
    destroyAfterWrites(this.socket);
    return this;
  }

  /** @internal the connection closed before the response was written */
  clientGone(): void {
    const fn = this.onClose;
    this.onClose = null;
    fn?.();
  }
}

/**
 * A request body on the front: a Readable as IncomingMessage is one (the engine, undici and the
 * mirror read it as they read node:http's), filled by FrontConnection as the bytes come. Its
 * buffer's high-water mark (16 KiB, IncomingMessage's) is where the client socket pauses.
 */
class FrontBody extends Readable {
  private readonly conn: FrontConnection;
  /** every byte came (the engine's pipeBody reads it as IncomingMessage.complete) */
  complete = false;

  constructor(conn: FrontConnection) {
    super();
    this.conn = conn;
  }

  override _read(): void {
    this.conn.bodyWanted();
  }
}

// socket and parser callbacks: shared functions that find their connection on `this`
function onData(this: FrontSocket, chunk: Buffer): void {
  const c = this[kConn];
  try {
    c.received(chunk);
  } catch (err) {
    c.crashed(err);
  }
}
/** Node's onStreamRead callback for a socket reading into READ_BUFFER (readInto): `nread` fresh bytes at its start */
function onRead(this: FrontSocket, nread: number): boolean {
  this[kConn].receivedInto((READ_BUFFER as Buffer).subarray(0, nread));
  return true; // a pause is the front's, through socket.pause()
}
/** A handed-off socket's reads (readInto's callback stays with the socket): pushed as 'data', as without it */
function pushCopy(this: Socket, nread: number): boolean {
  return this.push(Buffer.from((READ_BUFFER as Buffer).subarray(0, nread)));
}
function onEnd(this: FrontSocket): void {
  this[kConn].ended();
}
function onClose(this: FrontSocket): void {
  this[kConn].closed();
}
function onHeaders(this: FrontParser): void {
  this[kConn].headersInParts();
}
function onHeadersComplete(this: FrontParser, major: number, minor: number, headers: string[] | undefined, method: number, url: string, _status: unknown, _message: unknown, upgrade: boolean, keepAlive: boolean): number {
  return this[kConn].head(major, minor, headers, method, url, upgrade, keepAlive);
}
function noop(): void {}
