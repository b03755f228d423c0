import type { Dispatcher } from 'undici';
import { ERRORS, type ErrorCode } from '../errors.ts';
import { answersGrpc, endGrpcStream, goAway, grpcStatusFor, grpcStatusOf, sendGrpcError } from './grpc.ts';
import { forwardResponseHeaders, isHopByHop } from './headers.ts';
import { afterPendingIo, watchBody, type Limits } from './limits.ts';
import { relayInformational } from './request-target.ts';
import { refuse, sendError } from './responses.ts';
import type { ChunkHolder } from './engine/read-buffers.ts';
import { INTERNAL_ERROR_CODE } from './engine/upstream.ts';
import { UPSTREAM_CODES, upstreamCodes } from './engine/upstream-codes.ts';
import { REFUSED_BACKOFF_MS, type Target } from './target.ts';
import type { Cuttable } from './open-set.ts';
import type { PoolRuntime } from './pool-runtime.ts';
import type { ClientRequest, ClientResponse, Outcome } from './types.ts';

/** What a handler needs from the data plane that created it (one object shared by all requests). */
export interface Plane {
  /** read when a response starts: once `closing`, responses carry `Connection: close` */
  readonly closing: boolean;
  now(): number;
  /** the body, send and queue timeouts, and where their enforcement is counted */
  readonly limits: Limits;
  /** called exactly once per handler, when its request ends one way or another */
  requestDone(handler: ProxyHandler, outcome: Outcome): void;
  /**
   * Asked when the request failed to connect (nothing reached the upstream) and its pool has no
   * target up: true when the plane sent it elsewhere (`moveTo`), false to answer the error.
   */
  reroute?(handler: ProxyHandler): boolean;
}

const U = UPSTREAM_CODES;
export const CONNECT_ERRORS = upstreamCodes(U.ECONNREFUSED, U.CONNECT_TIMEOUT, U.EHOSTUNREACH, U.ENETUNREACH, U.ENOTFOUND, U.EAI_AGAIN);
const TIMEOUTS = upstreamCodes(U.CONNECT_TIMEOUT, U.HEADERS_TIMEOUT, U.BODY_TIMEOUT);
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);
/**
 * undici refusing the request itself (a target, method or field it will not send): nothing
 * reached the upstream, so it is the request's fault, answered 400 and never counted against
 * the target's passive health or the pool's error rate.
 */
const REFUSED_BY_UNDICI = upstreamCodes(U.INVALID_ARG, U.NOT_SUPPORTED);
/**
 * The proxy's own resources ran out while it connected (fds, ephemeral ports, socket buffers):
 * our limit, not the target's failure, so never counted against its health or the pool's error
 * rate (45 such failures once fed ejection and rollout analysis for a healthy target).
 */
const OWN_LIMITS = upstreamCodes(U.EMFILE, U.ENFILE, U.EADDRNOTAVAIL, U.ENOBUFS, U.ENOMEM);

export function errorCode(err: unknown): string {
  const e = err as { code?: unknown; cause?: { code?: unknown } };
  if (typeof e?.code === 'string') return e.code;
  if (typeof e?.cause?.code === 'string') return e.cause.code;
  return '';
}

/**
 * One proxied request: undici's low-level dispatch handler writing straight into the client
 * response (no intermediate stream: on this box `dispatch` beat `Pool.stream` by ~10 %).
 * Backpressure both ways: undici pulls the request body from `req`; a full client socket
 * pauses the upstream read. A client that goes away aborts the upstream request.
 */
export class ProxyHandler implements Dispatcher.DispatchHandler, Cuttable {
  // one object per request: the fields below replace a context object and closures (the
  // profile showed per-request allocations as the largest cost we control on this path)
  readonly plane: Plane;
  readonly req: ClientRequest;
  readonly res: ClientResponse;
  pool: PoolRuntime;
  servedBy: string;
  readonly requestId: string;
  readonly opts: Dispatcher.DispatchOptions;
  readonly startedAt: number;
  /** Set-Cookie for an affinity pin, or null */
  private setCookie: string | null;
  /** free for the creator (the data plane keeps its routing decision here) */
  tag: unknown;
  /** the target it is on now (a retry moves it); read by the passive checks' stall sweep */
  target: Target;
  private controller: Dispatcher.DispatchController | null = null;
  private responded = false;
  private finished = false;
  private status = 0;
  /** when the response head was handed to the client (0: not yet) */
  private headAt = 0;
  private chunked = false;
  /** the response body is known to be complete after this many bytes (content-length), or -1 */
  private remaining = -1;
  /** the client response was ended with the last body chunk (onResponseData) */
  private ended = false;
  private attempts = 1;
  openSlot = -1;
  private resume: (() => void) | null = null;
  /** the queue timer until a connection takes the request, then the send timer (kept and refreshed at each pause) */
  private timer: NodeJS.Timeout | null = null;
  /** the response waits for the client to read (the upstream read is paused) */
  private paused = false;
  /** a backpressure check is queued for the end of the tick */
  private pauseCheck = false;
  private bodyWatch: NodeJS.Timeout | null = null;
  /** the response's `grpc-status` once seen (headers of a Trailers-Only answer, or trailers), or -1 */
  private grpc = -1;
  /** grpc-status and its fellows moved from a Trailers-Only answer's head to the trailers of an h2 client (see onResponseStart) */
  private grpcTrailers: Record<string, string | string[] | undefined> | null = null;
  private readonly onClientClose = (): void => {
    if (this.finished) return;
    // finished first: undici can report the abort through onResponseError at once, which would
    // log a 502 and count the client's leaving against the target's passive health
    this.finish(499, null);
    this.controller?.abort(new Error('client went away'));
  };

  constructor(plane: Plane, req: ClientRequest, res: ClientResponse, pool: PoolRuntime, target: Target, opts: Dispatcher.DispatchOptions, servedBy: string, requestId: string, setCookie: string | null) {
    this.plane = plane;
    this.req = req;
    this.res = res;
    this.pool = pool;
    this.target = target;
    this.opts = opts;
    this.servedBy = servedBy;
    this.requestId = requestId;
    this.setCookie = setCookie;
    this.startedAt = plane.now();
    pool.inflight++;
    pool.open.add(this);
    target.inflight++;
    // 'close' also fires after a normal finish; finish() makes that a no-op, so the listener
    // is never removed (one EventEmitter operation less per request)
    res.once('close', this.onClientClose);
  }

  start(): void {
    // more requests in flight on the target than connections: this one waits in undici's queue
    if (this.target.inflight > this.target.maxConnections) this.timer = setTimeout(() => this.limitTimeout('queue'), this.plane.limits.config.queueTimeout);
    this.target.dispatcher.dispatch(this.opts, this);
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    // a queue timeout already answered: the request leaves the queue without reaching the upstream
    if (this.finished) return controller.abort(new Error('client went away'));
    this.clearTimer();
    if (this.opts.body != null && !this.req.complete && this.bodyWatch === null) this.bodyWatch = watchBody(this.req, this.plane.limits.config.bodyTimeout, () => this.limitTimeout('body'));
  }

  /**
   * A limit of limits.ts ran out. Finished first, as for a client that leaves: the abort then
   * reaches onResponseError as a no-op, so the client's slowness or the full queue never counts
   * against the target's health.
   */
  limitTimeout(kind: 'queue' | 'body' | 'send'): void {
    if (kind === 'body') this.enforce(kind);
    // a connection freed or a drain that came in while the timer waited for the loop counts
    else afterPendingIo(() => (kind === 'queue' ? this.queued : this.paused) && this.enforce(kind));
  }

  private enforce(kind: 'queue' | 'body' | 'send'): void {
    if (this.finished) return;
    this.plane.limits.note(kind);
    const res = this.res;
    const code = kind === 'queue' ? 'QUEUE_TIMEOUT' : 'BODY_TIMEOUT';
    // a body or send timeout is the client's doing: logged as its status, not as a proxy error
    this.finish(res.headersSent ? this.status : ERRORS[code].status, kind === 'queue' ? code : null);
    this.controller?.abort(new Error(`${kind} timeout`));
    if (kind === 'send' || res.headersSent) res.destroy();
    else sendError(res, code, this.requestId, true);
  }

  /** Cuttable: a request sent whole that waits for its response head, not queued: since when; else -1 (the passive stall sweep). */
  awaitingHeadSince(): number {
    return this.res.headersSent || !this.req.complete || this.queued ? -1 : this.startedAt;
  }

  /** true while it waits in undici's queue for a connection (the target has not seen it yet) */
  get queued(): boolean {
    return this.controller === null && !this.finished;
  }

  private clearTimer(): void {
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
  }

  onResponseStart(controller: Dispatcher.DispatchController, statusCode: number, headers: Record<string, string | string[] | undefined>, statusMessage?: string): void {
    if (this.finished) return;
    // three digits outside 100–599 are not a status (RFC 9110 §15): a broken response, 502 (found by the fuzz tests)
    if (statusCode > 599) return controller.abort(new Error(`upstream status ${statusCode} is not a status`));
    if (statusCode < 200) {
      relayInformational(this.req, this.res, statusCode, headers, isHopByHop);
      return;
    }
    this.target.recordResult(statusCode < 500); // passive health checks
    this.responded = true;
    this.status = statusCode;
    const cl = headers['content-length'];
    this.chunked = cl === undefined;
    if (headers['grpc-status'] !== undefined) headers = this.trailersOnly(headers);
    this.remaining = cl === undefined || this.opts.method === 'HEAD' || statusCode === 204 || statusCode === 304 ? -1 : Number(cl);
    const res = this.res;
    // an h2 client's stream waits for the trailers an h2 target may send (src/edge/h2.ts H2Exchange)
    if (this.target.protocol === 'h2' && this.req.httpVersionMajor === 2) (res as { trailersFollow?: boolean }).trailersFollow = true;
    const out = forwardResponseHeaders(headers, this.servedBy, this.requestId, this.plane.closing, statusCode);
    if (this.setCookie !== null) out.push('set-cookie', this.setCookie);
    try {
      if (statusMessage) res.writeHead(statusCode, statusMessage, out);
      else res.writeHead(statusCode, out);
      this.headAt = this.plane.now();
    } catch (err) {
      // an upstream header Node will not send (e.g. invalid characters): a broken response
      controller.abort(err as Error);
      this.responded = false;
    }
  }

  /**
   * A gRPC Trailers-Only answer (its status in the response head, no message). An h2 client gets
   * it as a head and then trailers: node:http2's compatibility API cannot end a stream with its
   * head, and a head without END_STREAM followed by an empty end is no gRPC status at all (grpc-js:
   * INTERNAL "call ended without gRPC status").
   */
  private trailersOnly(headers: Record<string, string | string[] | undefined>): Record<string, string | string[] | undefined> {
    this.grpc = grpcStatusOf(headers);
    if (this.req.httpVersionMajor !== 2) return headers;
    const head: Record<string, string | string[] | undefined> = {};
    const trailers: Record<string, string | string[] | undefined> = {};
    for (const name of Object.keys(headers)) {
      // every field of a Trailers-Only answer is a trailer but its framing
      if (name === 'content-type' || name === 'date') head[name] = headers[name];
      else trailers[name] = headers[name];
    }
    this.grpcTrailers = trailers;
    return head;
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.finished) return;
    if (this.remaining === chunk.length) {
      // the whole (rest of the) body: end() now sends it with the head in one write and
      // spares the separate write() and end() round through the stream machinery
      this.remaining = 0;
      this.ended = true;
      this.res.end(chunk);
      return;
    }
    if (this.remaining > 0) this.remaining -= chunk.length;
    // node:http corks the client socket until the end of the tick, so write() answers false for
    // any chunk over the high-water mark even when the kernel then takes it at once (every
    // 64 KiB response did): the upstream read pauses only if the bytes still wait after the uncork
    if (!this.res.write(chunk) && !this.pauseCheck) {
      this.pauseCheck = true;
      process.nextTick(checkBackpressure, this);
    }
  }

  /** The client still has more than the high-water mark to take: the upstream read waits for 'drain'. */
  backpressure(): void {
    this.pauseCheck = false;
    const res = this.res;
    if (this.finished || this.paused || res.writableLength < res.writableHighWaterMark) return;
    this.controller?.pause();
    this.paused = true;
    res.once('drain', (this.resume ??= () => {
      this.paused = false;
      this.controller?.resume();
    }));
    // one timer per response, not one per pause: a stream to a slow reader pauses often
    if (this.timer === null) this.timer = setTimeout(() => this.limitTimeout('send'), this.plane.limits.config.sendTimeout);
    else this.timer.refresh();
  }

  /**
   * The native engine reuses a read buffer once the body chunks given to onResponseData were
   * handed to the kernel (src/dataplane/engine/read-buffers.ts): nothing left in the response
   * (a pipelined one not yet on the socket) nor in the HTTP/1 client socket's write queue.
   */
  chunksReleased(): boolean {
    // the raw front and the h2 exchange know whether they copied the chunks (FrontExchange, H2Exchange)
    const res = this.res as Partial<ChunkHolder>;
    if (typeof res.chunksReleased === 'function') return res.chunksReleased();
    const socket = this.req.socket;
    return this.req.httpVersionMajor === 1 && !socket.destroyed && this.res.writableLength === 0 && socket.writableLength === 0;
  }

  onResponseEnd(_controller: Dispatcher.DispatchController, trailers?: Record<string, string | string[] | undefined> | null): void {
    if (this.finished) return;
    let relay = this.grpcTrailers;
    // HTTP/1.1 targets' trailers are dropped by both engines alike (the native one does not parse
    // them; engine-differential.test.ts holds them to it); HTTP/2 ones carry gRPC's status
    if (trailers != null && this.target.protocol === 'h2' && hasFields(trailers)) {
      relay = relay === null ? trailers : { ...relay, ...trailers };
      const code = grpcStatusOf(trailers);
      if (code !== -1) this.grpc = code;
    }
    // trailers go out with the end of the body: any h2 response, an HTTP/1.1 one only when chunked
    if (relay !== null && !this.ended && (this.chunked || this.req.httpVersionMajor === 2)) this.res.addTrailers(relay as Record<string, string>);
    // a Content-Length: 0 body has no chunk to end it with: remaining is 0 from the start
    if (!this.ended) this.res.end();
    this.finish(this.status, null);
  }

  onResponseError(_controller: Dispatcher.DispatchController, err: Error): void {
    const code = errorCode(err);
    if (code === INTERNAL_ERROR_CODE) {
      // the proxy's own bug, caught by the engine (even after the response ended): this request
      // ends, the target is not blamed
      this.plane.limits.guard.request(err.cause ?? err, this.res, 'engine');
      this.finish(this.responded ? this.status : 500, 'INTERNAL');
      return;
    }
    if (this.finished) return;
    if (REFUSED_BY_UNDICI.has(code) && !this.responded) {
      refuse(this.res, 400, `bad request: ${err.message}`, this.requestId);
      // error null: the request's fault, so neither the target nor the pool's error rate pays
      this.finish(400, null);
      return;
    }
    if (OWN_LIMITS.has(code) && !this.responded) {
      sendError(this.res, 'PROXY_OVERLOADED', this.requestId, true);
      this.finish(ERRORS.PROXY_OVERLOADED.status, 'PROXY_OVERLOADED');
      return;
    }
    const t = this.target;
    t.recordResult(false);
    if (this.responded) {
      const timeout = TIMEOUTS.has(code);
      // a gRPC client on h2 learns it from the trailers; otherwise the status line is out and all
      // we can do is cut the client connection so it sees a broken response
      if (!answersGrpc(this.res) || !endGrpcStream(this.res, grpcStatusFor(timeout ? 504 : 502), timeout ? 'upstream timeout' : 'upstream broke the response')) this.res.destroy(err);
      this.finish(this.status, timeout ? 'UPSTREAM_TIMEOUT' : 'UPSTREAM_ERROR');
      return;
    }
    const connectFailed = CONNECT_ERRORS.has(code);
    if (connectFailed) t.downUntil = this.plane.now() + REFUSED_BACKOFF_MS;
    // retry only when nothing reached the upstream, or when replaying is harmless
    const retryable = connectFailed || (IDEMPOTENT.has(this.opts.method) && this.opts.body == null);
    if (retryable && this.attempts < this.pool.targets.length) {
      const next = this.pool.pick(this.plane.now(), t);
      if (next !== null) {
        t.inflight--;
        next.inflight++;
        this.target = next;
        this.attempts++;
        this.controller = null;
        next.dispatcher.dispatch(this.opts, this);
        return;
      }
    }
    const noTarget = connectFailed && this.pool.pick(this.plane.now(), null) === null;
    // e.g. a pin held it on a draining pool whose last target just died: the plane routes it by weight
    if (noTarget && this.plane.reroute?.(this) === true) return;
    const errCode: ErrorCode = TIMEOUTS.has(code) ? 'UPSTREAM_TIMEOUT' : noTarget ? 'NO_TARGET' : 'UPSTREAM_ERROR';
    sendError(this.res, errCode, this.requestId, this.plane.closing);
    this.finish(ERRORS[errCode].status, errCode);
  }

  /**
   * Its target was ejected or marked down while this request waits for the response head: when
   * replaying is harmless (the retry rule's: idempotent, no body) and another target is up, the
   * dispatch is aborted and onResponseError re-sends it there now, rather than at the response
   * timeout (a hung target would hold it that long).
   */
  leaveTarget(): boolean {
    if (this.finished || this.responded || this.controller === null || !IDEMPOTENT.has(this.opts.method) || this.opts.body != null) return false;
    if (this.attempts >= this.pool.targets.length || this.pool.pick(this.plane.now(), this.target) === null) return false;
    this.controller.abort(new Error('its target left rotation (ejected or down)'));
    return true;
  }

  /**
   * Sends the request, which reached no upstream, to `target` of another pool (DataPlane.reroute):
   * it counts there from now on and answers as that pool's.
   */
  moveTo(pool: PoolRuntime, target: Target, servedBy: string, setCookie: string | null): void {
    this.pool.inflight--;
    this.pool.open.delete(this);
    this.target.inflight--;
    pool.inflight++;
    pool.open.add(this);
    target.inflight++;
    this.pool = pool;
    this.target = target;
    this.servedBy = servedBy;
    this.setCookie = setCookie;
    this.attempts = 1;
    this.controller = null;
    target.dispatcher.dispatch(this.opts, this);
  }

  /**
   * Drain deadline or shutdown: stop the stream where a client can tell it ended. At shutdown a
   * request that got no response head yet is answered 503 GOING_AWAY (src/dataplane/shutdown.ts).
   */
  cut(reason?: 'drain' | 'shutdown'): void {
    if (this.finished) return;
    const res = this.res;
    const answer = reason === 'shutdown' && !res.headersSent;
    // finished first: undici reports the abort through onResponseError at once, which would
    // otherwise destroy the client response we mean to end cleanly
    this.finish(answer ? 503 : this.status || 503, answer ? 'GOING_AWAY' : null);
    this.controller?.abort(new Error(reason === 'shutdown' ? 'shutting down' : 'drain deadline'));
    if (answersGrpc(res)) {
      // a gRPC stream ends with UNAVAILABLE, which clients may retry on a new connection, and its
      // connection gets a GOAWAY so the next calls open one (routed anew), as a WebSocket gets 1001
      const why = reason === 'shutdown' ? 'the proxy is shutting down' : 'the pool was drained';
      if (!res.headersSent) sendGrpcError(res, 14, why, this.requestId);
      else if (!endGrpcStream(res, 14, why)) res.destroy();
      goAway(res);
      return;
    }
    if (answer) sendError(res, 'GOING_AWAY', this.requestId, true);
    else if (res.headersSent && this.chunked) res.end();
    else res.destroy();
  }

  private finish(status: number, error: ErrorCode | null): void {
    if (this.finished) return;
    this.finished = true;
    const pool = this.pool;
    pool.inflight--;
    pool.open.delete(this);
    this.target.inflight--;
    if (this.resume !== null) this.res.removeListener('drain', this.resume);
    this.clearTimer();
    if (this.bodyWatch !== null) clearInterval(this.bodyWatch);
    const endedAt = this.plane.now();
    const headAt = this.headAt === 0 ? endedAt : this.headAt;
    this.plane.requestDone(this, this.grpc === -1 ? { status, error, startedAt: this.startedAt, headAt, endedAt } : { status, error, startedAt: this.startedAt, headAt, endedAt, grpc: this.grpc });
  }
}

function hasFields(o: object): boolean {
  for (const _ in o) return true;
  return false;
}

function checkBackpressure(h: ProxyHandler): void {
  h.backpressure();
}

