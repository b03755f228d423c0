import { connect, type Socket } from 'node:net';
import { listen, onRead, responseParser, writeDeferred } from './http1-events.ts';
import { Body, type Exchange } from './http1-exchange.ts';
import type { Http1Pool } from './http1-pool.ts';
import { HTTPParser, type Parser } from './llhttp.ts';
import { releaseAfterTick, releasedNow, takeReadBuffer } from './read-buffers.ts';
import { INTERNAL_ERROR_CODE, UpstreamError } from './upstream.ts';
import { UPSTREAM_CODES } from './upstream-codes.ts';
import { batchWrites, destroyAfterWrites, flushWrites } from '../write-batch.ts';

/** A whole body up to this size is copied after its head into one buffer (one send); a larger one goes as a writev of the two. */
const WHOLE_COPY_LIMIT = 16 * 1024;



/**
 * A response's header record. Its prototype has no prototype of its own and no `constructor`, so
 * no name can reach an inherited member (`__proto__` is an own field like any other), as with
 * Object.create(null); but V8 keeps these objects in fast mode, where Object.create(null) makes a
 * dictionary, slower to fill and to walk (the `for…in` of forwardResponseHeaders): README
 * Performance, "CPU per request on the plain path".
 */
class HeaderRecord {
  [name: string]: string | string[];
}
Object.setPrototypeOf(HeaderRecord.prototype, null);
Reflect.deleteProperty(HeaderRecord.prototype, 'constructor');

/** What the sweep of the pool checks a connection's deadline for. */
export const Phase = { Connecting: 1, Headers: 2, Body: 3, Idle: 4 } as const;
type PhaseValue = (typeof Phase)[keyof typeof Phase];


/**
 * One keep-alive connection to a target. It carries one request at a time (no pipelining, as
 * undici with `pipelining: 1`), is reused only after a complete response whose framing and
 * `Connection` allow it, and is destroyed on anything unexpected (bytes while idle, a parse
 * error, a response before the request body was all sent).
 */
export class Http1Connection {
  readonly pool: Http1Pool;
  readonly socket: Socket;
  private readonly parser: Parser;
  exchange: Exchange | null = null;
  phase: PhaseValue = Phase.Connecting;
  /** epoch ms when the current phase times out; 0: never (a paused body) */
  deadline = 0;
  /** the idle keep-alive time this connection is allowed (an upstream's Keep-Alive hint lowers it) */
  keepAlive: number;
  /** the upstream said it will close, or the request asked for it: not reused */
  private reusable = true;
  /** the exchange completed inside the current parser.execute; released after it returns */
  private completed = false;
  /** bytes that belong to no request (a response while idle, or after the one expected) */
  private unsolicited = false;
  /** header fields delivered in pieces before the head was complete (a head over ~32 fields) */
  private partialHeaders: string[] | null = null;
  closed = false;
  /** exchanges completed on this connection: a reused one may have been closed idle by the upstream */
  private served = 0;
  /** bytes of the current exchange's response came */
  private answering = false;
  /** bytes of a length-delimited body still to pass through (passBody) */
  private rawRemaining = 0;
  /** inside parser.execute or finish */
  private executing = false;
  /** the exchange whose onResponseEnd runs: an exception out of it is still that request's (crashed) */
  private ending: Exchange | null = null;
  /** slot in the pool's idle stack, -1 when busy */
  idleSlot = -1;
  /** the buffer the socket reads into (read-buffers.ts) */
  private readBuffer: Buffer;
  /** the handler the last read's body bytes went to: the buffer is theirs until it lets go */
  private lentTo: unknown = null;

  constructor(pool: Http1Pool, now: number) {
    this.pool = pool;
    this.keepAlive = pool.options.keepAliveTimeout;
    this.readBuffer = takeReadBuffer();
    // the socket reads into a buffer of ours (no 64 KiB allocation per read); nextReadBuffer is
    // asked for the next one after each read, once the read's bytes were passed on
    this.socket = connect({ host: pool.hostname, port: pool.port, noDelay: true, onread: { buffer: this.nextReadBuffer, callback: onRead } });
    this.deadline = now + pool.options.connectTimeout;
    this.parser = responseParser(this);
    listen(this.socket, this);
  }

  /** Sends `ex` on this connection (connecting or idle). */
  start(ex: Exchange, now: number): void {
    this.exchange = ex;
    ex.conn = this;
    this.completed = false;
    if (this.phase !== Phase.Connecting) {
      this.phase = Phase.Headers;
      this.deadline = now + this.pool.options.headersTimeout;
    }
    ex.handler.onRequestStart?.(ex, {});
    if (ex.aborted) return; // the handler gave up while it waited in the queue: nothing was sent
    const refused = ex.pathError();
    if (refused !== null) return this.giveBack(ex, new UpstreamError(UPSTREAM_CODES.INVALID_ARG, refused));
    // nothing is written before the connection is up (connected() writes it, as undici): a refused
    // connect then leaves the client's body unread, so the request can go whole to another target
    if (this.phase === Phase.Connecting) return;
    // a chunked body: its head waits one turn of the loop, so that a body that came whole with
    // its head goes with a length (as undici sends it, which writes after connect or a setImmediate)
    if (ex.lengthUnknown) setImmediate(writeDeferred, this, ex);
    else this.writeHead(ex);
  }

  writeHead(ex: Exchange): void {
    if (this.exchange !== ex || this.closed) return;
    const head = ex.head(this.pool.hostHeader);
    if (ex.opts.method === 'HEAD') this.reusable = false;
    ex.written = true;
    const body = ex.opts.body;
    // a head alone, or with a small whole body, is a copy: it waits for the end of the loop's
    // turn (write-batch.ts); a streamed body's chunks go as they come
    if (ex.body !== Body.Sending || (Buffer.isBuffer(body) && body.length <= WHOLE_COPY_LIMIT)) batchWrites(this.socket);
    if (ex.body === Body.Sending && Buffer.isBuffer(body)) return this.writeWhole(ex, head, body);
    this.socket.write(head, 'latin1');
    if (ex.body === Body.Sending) ex.pipeBody();
  }

  /**
   * Head and a whole body (a Buffer: the raw front read it with its head) in one write: one
   * buffer when small (one send, as the front's responses: FrontExchange.together), a corked
   * writev otherwise. Nothing streams, so the body is sent at once.
   */
  private writeWhole(ex: Exchange, head: string, body: Buffer): void {
    const s = this.socket;
    if (body.length <= WHOLE_COPY_LIMIT) {
      const out = Buffer.allocUnsafe(head.length + body.length);
      out.write(head, 0, 'latin1');
      body.copy(out, head.length);
      s.write(out);
    } else {
      s.cork();
      s.write(head, 'latin1');
      s.write(body);
      s.uncork();
    }
    this.endBody(ex);
  }

  /** A body chunk from the client; false when the socket is full (the client's body pauses until it drains). */
  writeBody(ex: Exchange, chunk: Buffer): boolean {
    if (this.exchange !== ex || this.closed) return true;
    if (this.phase === Phase.Headers) this.deadline = Date.now() + this.pool.options.headersTimeout;
    const s = this.socket;
    flushWrites(s);
    if (!ex.chunked) return s.write(chunk);
    if (chunk.length === 0) return true;
    // chunked framing of our own: the client's chunk boundaries are not kept (Node's parser has
    // decoded them), each read becomes one chunk, written with one syscall (cork)
    s.cork();
    s.write(`${chunk.length.toString(16)}\r\n`, 'latin1');
    s.write(chunk);
    const ok = s.write('\r\n', 'latin1');
    s.uncork();
    return ok;
  }

  endBody(ex: Exchange): void {
    if (this.exchange !== ex || this.closed) return;
    ex.body = Body.Sent;
    if (ex.chunked) this.socket.write('0\r\n\r\n', 'latin1');
    if (this.phase === Phase.Headers) this.deadline = Date.now() + this.pool.options.headersTimeout;
  }

  resumeReading(): void {
    if (this.phase === Phase.Body) this.deadline = Date.now() + this.pool.options.bodyTimeout;
    this.socket.resume();
  }

  /** The handler aborted `ex` (client gone, a limit, a drain or shutdown cut). */
  abortExchange(ex: Exchange, reason: Error): void {
    if (this.exchange !== ex) return;
    if (ex.written) this.fail(reason);
    else this.giveBack(ex, reason);
  }

  /** Ends `ex` before anything of it was sent: the connection goes back to the pool as it was. */
  private giveBack(ex: Exchange, err: Error): void {
    this.exchange = null;
    ex.done = true;
    ex.conn = null;
    this.pool.release(this);
    ex.handler.onResponseError?.(ex, ex.aborted && ex.reason !== null ? ex.reason : err);
  }

  /** The sweep found the deadline passed. */
  timedOut(): void {
    switch (this.phase) {
      case Phase.Connecting:
        return this.fail(new UpstreamError(UPSTREAM_CODES.CONNECT_TIMEOUT, `connect timeout (${this.pool.options.connectTimeout} ms)`));
      case Phase.Headers: {
        const ex = this.exchange;
        // still streaming the client's body and the upstream takes it: the client's pace, not the target's (as undici)
        if (ex !== null && ex.body === Body.Sending && !this.socket.writableNeedDrain) {
          this.deadline = Date.now() + this.pool.options.headersTimeout;
          return;
        }
        return this.fail(new UpstreamError(UPSTREAM_CODES.HEADERS_TIMEOUT, 'headers timeout'));
      }
      case Phase.Body:
        if (this.exchange?.paused === true) return;
        return this.fail(new UpstreamError(UPSTREAM_CODES.BODY_TIMEOUT, 'body timeout'));
      default:
        this.destroy();
    }
  }

  /**
   * The upstream closed or reset the connection. On a kept-alive connection before any byte of
   * the response, an idempotent request without a body is sent again on a new connection: the
   * upstream most likely closed it idle just as the request left (RFC 9112 §9.3.1 allows the
   * retry; nginx does it). undici answers that race with an error, a 502 here.
   */
  lost(err: Error): void {
    const ex = this.exchange;
    if (ex !== null && !ex.done && !ex.aborted && !ex.retried && this.served > 0 && !this.answering && ex.replayable()) {
      ex.retried = true;
      ex.written = false;
      ex.conn = null;
      this.exchange = null;
      this.destroy();
      this.pool.redispatch(ex);
      return;
    }
    this.fail(err);
  }

  /** Ends the exchange with an error (the handler's own abort reason when it aborted) and destroys the connection. */
  fail(err: Error): void {
    const ex = this.exchange;
    this.exchange = null;
    if (ex !== null && !ex.done) {
      ex.done = true;
      ex.unpipeBody();
      ex.conn = null;
      ex.handler.onResponseError?.(ex, ex.aborted && ex.reason !== null ? ex.reason : err);
    }
    this.destroy();
  }

  /**
   * An exception out of this connection's read path (a bug, in the engine or in a handler
   * callback it called): the exchange ends with `INTERNAL_ERROR_CODE`, which the handler answers
   * 500 without counting it against the target, and the connection is destroyed.
   */
  crashed(err: unknown): void {
    // the exception left llhttp's execute() mid-call; it has returned now, so the parser may be freed
    this.executing = false;
    const internal = new UpstreamError(INTERNAL_ERROR_CODE, 'internal error in the forwarding engine', { cause: err });
    const ended = this.ending;
    this.ending = null;
    try {
      // an exchange already ended is told too (the one case of an error after its end): the handler counts it
      if (ended !== null) ended.handler.onResponseError?.(ended, internal);
      this.fail(internal);
    } catch {
      // the handler's error path threw too: the client side closes with the socket
      this.destroy();
    }
  }

  destroy(): void {
    if (this.closed) return;
    this.closed = true;
    destroyAfterWrites(this.socket);
    // freeing llhttp from inside one of its own callbacks crashes the process: after execute
    if (!this.executing) this.parser.close();
    this.pool.removed(this);
  }

  /** parser.execute / finish, and the parser freed afterwards when the connection closed meanwhile */
  private execute(data: Buffer | null): number | Error | undefined {
    this.executing = true;
    const ret = data === null ? this.parser.finish() : this.parser.execute(data);
    this.executing = false;
    if (this.closed) this.parser.close();
    return ret;
  }

  /** After each read: a completed exchange frees the connection, unless bytes came that no request asked for. */
  private afterExecute(ret: number | Error): void {
    if (ret instanceof Error) {
      const e = ret as Error & { code?: `HPE_${string}`; reason?: string };
      return this.fail(new UpstreamError(e.code ?? UPSTREAM_CODES.HPE_INVALID, `upstream response: ${e.reason ?? e.message}`, { cause: e }));
    }
    if (this.unsolicited) return this.destroy();
    if (this.completed) {
      this.completed = false;
      if (this.reusable) this.pool.release(this);
      else this.destroy();
    }
  }

  /** net's onread buffer source: the same buffer again, unless the last read's bytes were lent to a response */
  private readonly nextReadBuffer = (): Buffer => {
    const holder = this.lentTo;
    if (holder === null) return this.readBuffer;
    this.lentTo = null;
    // the response copied the bytes (or handed them to the kernel) already: the same buffer again
    if (releasedNow(holder)) return this.readBuffer;
    releaseAfterTick(this.readBuffer, holder);
    return (this.readBuffer = takeReadBuffer());
  };

  read(data: Buffer): void {
    if (this.exchange === null || this.completed) {
      this.unsolicited = true;
      return this.destroy();
    }
    if (this.phase === Phase.Body) this.deadline = Date.now() + this.pool.options.bodyTimeout;
    this.answering = true;
    if (this.rawRemaining > 0) return this.passBody(data, 0);
    const ret = this.execute(data) as number | Error;
    if (this.closed) return;
    // the parser stopped after a length-delimited head: the rest of this read is body
    if (this.rawRemaining > 0 && typeof ret === 'number') return this.passBody(data, ret);
    this.afterExecute(ret);
  }

  /**
   * A length-delimited body, passed through as slices of the socket's reads: llhttp's body
   * callback copies every span into a new Buffer (node_http_parser.cc, Buffer::Copy), which at
   * 64 KiB bodies was a tenth of the CPU and most of the garbage. The parser is re-armed for
   * the next response once the declared length has come.
   */
  private passBody(data: Buffer, from: number): void {
    const available = data.length - from;
    if (available <= 0) return;
    const take = available < this.rawRemaining ? available : this.rawRemaining;
    this.rawRemaining -= take;
    const ex = this.exchange;
    if (ex !== null && !ex.done) {
      this.lentTo = ex.handler;
      ex.handler.onResponseData?.(ex, from === 0 && take === data.length ? data : data.subarray(from, from + take));
    }
    if (this.closed || this.rawRemaining > 0) return;
    this.parser.initialize(HTTPParser.RESPONSE, {}, 0, HTTPParser.kLenientNone);
    this.messageComplete();
    // bytes past the declared length: no request asked for them
    if (take < available) this.unsolicited = true;
    this.afterExecute(0);
  }

  ended(): void {
    const ex = this.exchange;
    if (ex === null || this.completed) return this.destroy();
    if (this.rawRemaining > 0) return this.fail(new UpstreamError(UPSTREAM_CODES.SOCKET, 'other side closed'));
    if (!this.answering) return this.lost(new UpstreamError(UPSTREAM_CODES.SOCKET, 'other side closed'));
    // a body delimited by the connection's end: finish() completes it, anything else is cut short
    this.reusable = false;
    const ret = this.execute(null);
    if (this.closed) return;
    if (ret instanceof Error || this.exchange !== null) this.fail(new UpstreamError(UPSTREAM_CODES.SOCKET, 'other side closed'));
    else this.afterExecute(0);
  }

  headersComplete(headers: string[], statusCode: number, statusMessage: string, upgrade: boolean, keepAlive: boolean): number {
    const ex = this.exchange;
    if (ex === null || this.completed) {
      this.unsolicited = true;
      return -1;
    }
    if (upgrade && statusCode === 101) {
      this.fail(new UpstreamError(UPSTREAM_CODES.SOCKET, 'bad upgrade'));
      return -1;
    }
    const record = new HeaderRecord();
    for (let i = 0; i < headers.length; i += 2) {
      const key = (headers[i] as string).toLowerCase();
      const value = headers[i + 1] as string;
      const seen = record[key];
      if (seen === undefined) record[key] = value;
      else if (typeof seen === 'string') record[key] = [seen, value];
      else seen.push(value);
      if (key === 'keep-alive') this.keepAliveHint(value);
    }
    if (statusCode < 200) {
      ex.handler.onResponseStart?.(ex, statusCode, record, statusMessage);
      return 1;
    }
    if (!keepAlive) this.reusable = false;
    ex.status = statusCode;
    this.phase = Phase.Body;
    this.deadline = Date.now() + this.pool.options.bodyTimeout;
    ex.handler.onResponseStart?.(ex, statusCode, record, statusMessage);
    if (ex.opts.method === 'HEAD') return 1;
    // a body of a declared length: 2 (node:http's "upgrade") stops llhttp right after the head, and passBody takes it
    const length = record['content-length'];
    if (typeof length === 'string' && statusCode !== 204 && statusCode !== 304 && record['transfer-encoding'] === undefined && !this.closed && this.exchange === ex) {
      const n = Number(length);
      if (n > 0) {
        this.rawRemaining = n;
        return 2;
      }
    }
    return 0;
  }

  body(chunk: Buffer): void {
    const ex = this.exchange;
    if (ex !== null && !ex.done) ex.handler.onResponseData?.(ex, chunk);
  }

  messageComplete(): void {
    const ex = this.exchange;
    // the end of a 1xx, or llhttp's own end of a head whose body passBody takes
    if (ex === null || ex.status === 0 || this.rawRemaining > 0) return;
    this.exchange = null;
    this.completed = true;
    this.answering = false;
    this.served++;
    this.partialHeaders = null;
    ex.done = true;
    ex.conn = null;
    // the upstream answered before taking the whole body: the connection's framing is lost
    if (ex.body === Body.Sending) {
      this.reusable = false;
      ex.unpipeBody();
    }
    if (ex.paused) this.socket.resume();
    this.ending = ex;
    ex.handler.onResponseEnd?.(ex, {});
    this.ending = null;
  }

  pushHeaders(fields: string[]): void {
    if (this.exchange === null) return;
    // fields after the head are trailers, which the handler does not forward (as with undici)
    if (this.exchange.status !== 0) return;
    (this.partialHeaders ??= []).push(...fields);
  }

  takePartialHeaders(): string[] {
    const h = this.partialHeaders ?? [];
    this.partialHeaders = null;
    return h;
  }

  /** `Keep-Alive: timeout=N`: the upstream closes idle connections after N s; we let go a second earlier (undici's threshold). */
  private keepAliveHint(value: string): void {
    const m = /timeout=(\d+)/i.exec(value);
    if (m === null) return;
    const ms = Number(m[1]) * 1000 - 1000;
    this.keepAlive = Math.max(0, Math.min(ms, this.pool.options.keepAliveMaxTimeout));
  }

  connected(now: number): void {
    if (this.phase !== Phase.Connecting) return;
    if (this.exchange === null) {
      this.phase = Phase.Idle;
      this.deadline = now + this.keepAlive;
      if (this.idleSlot === -1) this.pool.release(this);
      return;
    }
    this.phase = Phase.Headers;
    this.deadline = now + this.pool.options.headersTimeout;
    this.writeHead(this.exchange);
  }
}
