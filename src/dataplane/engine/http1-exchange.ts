import type { IncomingMessage } from 'node:http';
import type { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import type { Http1Connection } from './http1-connection.ts';

/** Methods whose request is expected to carry a body: undici sends `content-length: 0` for them when the body is empty. */
const EXPECTS_PAYLOAD = new Set(['POST', 'PUT', 'PATCH', 'QUERY']);
/** Methods a client may send again after a lost connection (RFC 9110 §9.2.2). */
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);
/** What undici refuses in a request path (any byte outside 0x21–0xFF): refused alike, so both engines answer 400 to the same requests. */
const INVALID_PATH = /[^\u0021-\u00ff]/;

/** The request body's state on the connection: none, streaming from the client, all sent. */
export const Body = { None: 0, Sending: 1, Sent: 2 } as const;
type BodyState = (typeof Body)[keyof typeof Body];

const kExchange = Symbol('switchyard.exchange');
type BodySource = Readable & { [kExchange]?: Exchange | null };

/**
 * One request on the native engine, and its controller (undici's `DispatchController`): the
 * handler pauses, resumes or aborts through it. One object per request, holding what a closure
 * would otherwise capture; the body's stream listeners are shared functions that find their
 * exchange on the stream (no per-request closures).
 */
export class Exchange implements Dispatcher.DispatchController {
  readonly opts: Dispatcher.DispatchOptions;
  readonly handler: Dispatcher.DispatchHandler;
  conn: Http1Connection | null = null;
  body: BodyState = Body.None;
  /** chunked request framing: the client's body has no length (it came chunked) */
  chunked = false;
  /** the response status once the head is in (>= 200), 0 before */
  status = 0;
  /** the head went out: from here an abort costs the connection */
  written = false;
  done = false;
  /** sent again once after its kept-alive connection was lost (Http1Connection.lost) */
  retried = false;
  aborted = false;
  paused = false;
  reason: Error | null = null;

  constructor(opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler) {
    this.opts = opts;
    this.handler = handler;
  }

  /** The request head as undici writes it: host first, then connection, the fields, the framing. */
  head(defaultHost: string): string {
    const { method, path } = this.opts;
    const headers = this.opts.headers as string[] | null | undefined;
    let host: string | null = null;
    let length: string | null = null;
    let fields = '';
    if (headers != null) {
      for (let i = 0; i < headers.length; i += 2) {
        const name = headers[i] as string;
        if (name === 'host') host = headers[i + 1] as string;
        else if (name === 'content-length') length = headers[i + 1] as string;
        else fields += `${name}: ${headers[i + 1] as string}\r\n`;
      }
    }
    // HEAD: undici closes the connection after it (servers that send a body anyway); kept so the
    // upstream sees the same request from both engines
    let head = `${method} ${path} HTTP/1.1\r\nhost: ${host ?? defaultHost}\r\nconnection: ${method === 'HEAD' ? 'close' : 'keep-alive'}\r\n${fields}`;
    if (this.opts.body == null) {
      return length === '0' && EXPECTS_PAYLOAD.has(method) ? `${head}content-length: 0\r\n\r\n` : `${head}\r\n`;
    }
    this.body = Body.Sending;
    // a chunked body already all here (ended, still buffered) goes with its length, as undici
    // sends it (util.bodyLength): the upstream gets the simpler framing
    const body = this.opts.body;
    if (Buffer.isBuffer(body)) length ??= String(body.length);
    const state = (body as Readable & { _readableState?: { ended: boolean; objectMode: boolean; length: number } })._readableState;
    if (length === null && state !== undefined && state.ended && !state.objectMode) length = String(state.length);
    if (length === null) {
      this.chunked = true;
      head += 'transfer-encoding: chunked\r\n\r\n';
    } else head += `content-length: ${length}\r\n\r\n`;
    return head;
  }

  /** Whether it may be sent again on a new connection: idempotent, and no body. */
  replayable(): boolean {
    return this.opts.body == null && IDEMPOTENT.has(this.opts.method);
  }

  /** undici's refusal of the request path, in its words (so both engines answer the same 400), or null */
  pathError(): string | null {
    const path = this.opts.path;
    if (path.charCodeAt(0) !== 47 /* / */) return 'path must be an absolute URL or start with a slash';
    return INVALID_PATH.test(path) ? 'invalid request path' : null;
  }

  /** A body whose length the client did not give (it came chunked). */
  get lengthUnknown(): boolean {
    if (this.opts.body == null || Buffer.isBuffer(this.opts.body)) return false;
    const headers = this.opts.headers as string[];
    for (let i = 0; i < headers.length; i += 2) if (headers[i] === 'content-length') return false;
    return true;
  }

  /** Starts streaming the request body into the connection's socket (after the head). */
  pipeBody(): void {
    const src = this.opts.body as BodySource;
    src[kExchange] = this;
    src.on('data', onBodyData);
    src.on('end', onBodyEnd);
    if ((src as IncomingMessage).complete === true && src.readableLength === 0 && src.readableEnded) onBodyEnd.call(src);
  }

  /** Stops reading the request body (response done, abort, error). */
  unpipeBody(): void {
    if (this.body !== Body.Sending) return;
    const src = this.opts.body as BodySource;
    src[kExchange] = null;
    src.removeListener('data', onBodyData);
    src.removeListener('end', onBodyEnd);
  }

  /** The socket drained: the client's body may flow again. */
  bodyDrained(): void {
    if (this.body === Body.Sending) (this.opts.body as Readable).resume();
  }

  abort(reason: Error): void {
    if (this.done || this.aborted) return;
    this.aborted = true;
    this.reason = reason;
    this.conn?.abortExchange(this, reason);
  }

  pause(): void {
    if (this.done || this.paused) return;
    this.paused = true;
    this.conn?.socket.pause();
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    this.conn?.resumeReading();
  }
}

function onBodyData(this: BodySource, chunk: Buffer): void {
  const ex = this[kExchange];
  if (ex == null || ex.conn === null) return;
  if (!ex.conn.writeBody(ex, chunk)) this.pause();
}

function onBodyEnd(this: BodySource): void {
  const ex = this[kExchange];
  if (ex == null || ex.conn === null || ex.body !== Body.Sending) return;
  this[kExchange] = null;
  this.removeListener('data', onBodyData);
  this.removeListener('end', onBodyEnd);
  ex.conn.endBody(ex);
}
