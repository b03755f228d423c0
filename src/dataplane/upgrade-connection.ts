import type { ClientRequest, IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { AppConfig } from '../config/schema.ts';
import { ERRORS, type ErrorCode } from '../errors.ts';
import { http, https } from '../node-http.ts';
import { CONNECT_ERRORS, errorCode } from './forward.ts';
import { errorResponse, responseHead } from './responses.ts';
import type { Outcome } from './types.ts';
import { forwardResponseHeaders } from './headers.ts';
import { REFUSED_BACKOFF_MS, type Target } from './target.ts';
import type { Cuttable } from './open-set.ts';
import type { PoolRuntime } from './pool-runtime.ts';
import { CLOSE_GOING_AWAY, clientCloseFrame, FrameCursor, serverCloseFrame } from './ws-frames.ts';

/** After a cut sent its close frames: how long the peers get for the close handshake before we end both sockets. */
export const CUT_BOUND_MS = 1000;
/** After an end (ours or a peer's): how long until both sockets are destroyed whatever their state. */
export const CLOSE_BOUND_MS = 1000;

/** The record of an upgrade's handshake: it ends with its answer's head (a 101 counts in no latency figure). */
function handshakeOutcome(status: number, error: ErrorCode | null, startedAt: number, at: number): Outcome {
  return { status, error, startedAt, headAt: at, endedAt: at };
}

export interface UpgradeContext {
  readonly client: Socket;
  /** bytes the client sent after its request head: the first of the new protocol */
  readonly head: Buffer;
  readonly method: string;
  readonly path: string;
  /** upstream request headers, flat, with `connection: Upgrade` and the client's `upgrade` added back */
  readonly headers: readonly string[];
  /** the client's Upgrade header value */
  readonly upgrade: string;
  /** whether a cut speaks WebSocket (close frames) or just ends both sockets */
  readonly websocket: boolean;
  readonly pool: PoolRuntime;
  readonly servedBy: string;
  readonly requestId: string;
  readonly timeouts: AppConfig['timeouts'];
  readonly now: () => number;
  /** once per connection, when the handshake resolves (101, the upstream's refusal, or our error) */
  readonly onHandshake: (outcome: Outcome) => void;
}

type Phase = 'handshake' | 'refused' | 'open' | 'cutting' | 'closed';

/**
 * One upgraded connection: the upstream handshake on a fresh node:http connection, then a
 * two-way byte pipe with backpressure. It counts as in flight on its pool during the handshake
 * and as upgraded once the 101 is through, and stays in `pool.open` until both sockets closed.
 *
 * Either socket failing, or idle for `timeouts.idle`, destroys both; one side ending ends the
 * other and destroys both after CLOSE_BOUND_MS at the latest, so nothing outlives its peer.
 */
export class UpgradeConnection implements Cuttable {
  /** shutdown cuts upgraded connections at once, other open entries only at hardStop */
  readonly upgraded = true;
  private readonly ctx: UpgradeContext;
  /** the target it is on now (a retry moves it); read when a removed target retires (runtime.ts) */
  target: Target;
  private attempts = 1;
  private phase: Phase = 'handshake';
  openSlot = -1;
  private counted: 'inflight' | 'upgraded' = 'inflight';
  private upReq: ClientRequest | null = null;
  private up: Socket | null = null;
  private connected = false;
  private timedOut = false;
  private closeBound = false;
  private released = false;
  /** one timer at a time: the handshake deadline, then the cut bound, then the close bound */
  private timer: NodeJS.Timeout | null = null;
  private toUpstream: Leg | null = null;
  private toClient: Leg | null = null;
  private readonly startedAt: number;
  private readonly destroyAll = (): void => this.destroy();
  private readonly onSocketClose = (): void => {
    if (this.phase === 'handshake' || this.phase === 'refused') return this.destroy();
    if (this.ctx.client.closed && (this.up === null || this.up.closed)) return this.destroy();
    this.endBoth();
  };

  constructor(ctx: UpgradeContext, target: Target) {
    this.ctx = ctx;
    this.target = target;
    this.startedAt = ctx.now();
    ctx.pool.inflight++;
    ctx.pool.open.add(this);
    target.inflight++;
    ctx.client.on('error', this.destroyAll);
    ctx.client.on('close', this.onSocketClose);
  }

  start(): void {
    this.connect();
  }

  private connect(): void {
    const { ctx } = this;
    const url = new URL(this.target.origin);
    const request = url.protocol === 'https:' ? https().request : http.request;
    // a fresh connection, not one of the request pool's: an upgraded socket is never reused,
    // and node:http hands us a refusal (403…) as a normal response we can relay
    const req = request({
      protocol: url.protocol,
      hostname: url.hostname.replace(/^\[|\]$/g, ''),
      port: url.port,
      method: ctx.method,
      path: ctx.path,
      headers: ctx.headers,
      setHost: false,
      agent: false,
    });
    this.upReq = req;
    this.connected = false;
    this.timedOut = false;
    this.arm(ctx.timeouts.connect, () => this.handshakeTimeout(req));
    req.once('socket', (s: Socket) => {
      s.once('connect', () => {
        if (req !== this.upReq || this.phase !== 'handshake') return;
        this.connected = true;
        this.arm(ctx.timeouts.response, () => this.handshakeTimeout(req));
      });
    });
    req.on('upgrade', (res: IncomingMessage, socket: Socket, head: Buffer) => this.onUpgrade(req, res, socket, head));
    req.on('response', (res: IncomingMessage) => this.onRefused(req, res));
    req.on('error', (err: Error) => this.onUpstreamError(req, err));
    req.end();
  }

  private handshakeTimeout(req: ClientRequest): void {
    if (req !== this.upReq || this.phase !== 'handshake') return;
    this.timedOut = true;
    req.destroy(new Error('upgrade handshake timed out'));
  }

  private onUpstreamError(req: ClientRequest, err: Error): void {
    if (req !== this.upReq || this.phase !== 'handshake') return;
    this.clearTimer();
    const { pool } = this.ctx;
    const now = this.ctx.now();
    const connectFailed = !this.connected && (this.timedOut || CONNECT_ERRORS.has(errorCode(err)));
    if (connectFailed) {
      this.target.downUntil = now + REFUSED_BACKOFF_MS;
      // nothing reached the upstream: another target of the pool may take it
      const next = this.attempts < pool.targets.length ? pool.pick(now, this.target) : null;
      if (next !== null) {
        this.target.inflight--;
        next.inflight++;
        this.target = next;
        this.attempts++;
        this.connect();
        return;
      }
    }
    const code: ErrorCode = this.timedOut ? 'UPSTREAM_TIMEOUT' : connectFailed && pool.pick(now, null) === null ? 'NO_TARGET' : 'UPSTREAM_ERROR';
    this.fail(code);
  }

  /** Our own error response, then let the client go. */
  private fail(code: ErrorCode): void {
    this.upReq?.destroy();
    this.phase = 'refused';
    this.ctx.onHandshake(handshakeOutcome(ERRORS[code].status, code, this.startedAt, this.ctx.now()));
    this.ctx.client.resume();
    this.ctx.client.end(errorResponse(code, this.ctx.requestId));
    // nothing of it is open on the pool any more; the socket itself goes within CLOSE_BOUND_MS
    this.release();
    this.arm(CLOSE_BOUND_MS, this.destroyAll);
  }

  /** The upstream answered the upgrade with a plain response (403, 404, 503…): relay it, close-delimited. */
  private onRefused(req: ClientRequest, res: IncomingMessage): void {
    if (req !== this.upReq || this.phase !== 'handshake') {
      res.destroy();
      return;
    }
    this.clearTimer();
    this.phase = 'refused';
    const status = res.statusCode ?? 502;
    const { client } = this.ctx;
    client.resume();
    client.write(responseHead(status, res.statusMessage ?? '', forwardResponseHeaders(res.headers, this.ctx.servedBy, this.ctx.requestId, true)));
    this.ctx.onHandshake(handshakeOutcome(status, null, this.startedAt, this.ctx.now()));
    res.on('error', this.destroyAll);
    res.socket.setTimeout(this.ctx.timeouts.idle, this.destroyAll);
    res.once('end', () => {
      this.release();
      this.arm(CLOSE_BOUND_MS, this.destroyAll);
    });
    res.pipe(client);
  }

  private onUpgrade(req: ClientRequest, res: IncomingMessage, up: Socket, upHead: Buffer): void {
    if (req !== this.upReq || this.phase !== 'handshake') {
      up.destroy();
      return;
    }
    this.clearTimer();
    const { ctx } = this;
    const { client, pool } = ctx;
    this.phase = 'open';
    this.up = up;
    pool.inflight--;
    pool.upgraded++;
    this.counted = 'upgraded';
    const headers = forwardResponseHeaders(res.headers, ctx.servedBy, ctx.requestId, false);
    headers.push('connection', 'Upgrade', 'upgrade', res.headers.upgrade ?? ctx.upgrade);
    client.write(responseHead(101, res.statusMessage ?? '', headers));
    ctx.onHandshake(handshakeOutcome(101, null, this.startedAt, ctx.now()));

    up.on('error', this.destroyAll);
    up.on('close', this.onSocketClose);
    for (const s of [client, up]) {
      s.setNoDelay(true);
      s.setTimeout(ctx.timeouts.idle);
      s.on('timeout', this.destroyAll);
    }
    const onCloseSeen = (): void => this.closeSeen();
    const onEnd = (): void => this.armCloseBound();
    this.toClient = new Leg(up, client, ctx.websocket ? new FrameCursor() : null, onCloseSeen, onEnd);
    this.toUpstream = new Leg(client, up, ctx.websocket ? new FrameCursor() : null, onCloseSeen, onEnd);
    if (upHead.length > 0) this.toClient.data(upHead);
    if (ctx.head.length > 0) this.toUpstream.data(ctx.head);
    client.resume();
    up.resume();
  }

  /**
   * Drain deadline or shutdown. An open WebSocket gets close 1001 both ways (an unmasked server
   * frame to the client, a masked client frame to the upstream, each between two frames), then
   * both sockets are ended after CUT_BOUND_MS and destroyed CLOSE_BOUND_MS later. A second
   * `shutdown` cut (hardStop) destroys at once. Never throws.
   */
  cut(reason: 'drain' | 'shutdown'): void {
    switch (this.phase) {
      case 'closed':
        return;
      case 'handshake':
        this.fail('GOING_AWAY');
        return;
      case 'refused':
        this.destroy();
        return;
      case 'cutting':
        if (reason === 'shutdown') this.destroy();
        return;
      case 'open':
        break;
    }
    this.phase = 'cutting';
    if (!this.ctx.websocket) {
      this.endBoth();
      return;
    }
    const text = reason === 'drain' ? 'pool drained' : 'shutting down';
    this.toClient?.seal(serverCloseFrame(CLOSE_GOING_AWAY, text));
    this.toUpstream?.seal(clientCloseFrame(CLOSE_GOING_AWAY, text));
    // a connection already half closed keeps its (shorter) close bound
    if (!this.closeBound) this.arm(CUT_BOUND_MS, () => this.endBoth());
  }

  /** Both peers answered our close frames: the close handshake is done, the server side closes TCP first. */
  private closeSeen(): void {
    if (this.phase === 'cutting' && this.toClient?.sealed === true && this.toUpstream?.sealed === true && this.toClient.replied && this.toUpstream.replied) this.endBoth();
  }

  private endBoth(): void {
    if (this.phase === 'closed') return;
    for (const s of [this.ctx.client, this.up]) if (s !== null && !s.writableEnded && !s.destroyed) s.end();
    this.armCloseBound();
  }

  private armCloseBound(): void {
    if (this.closeBound || this.phase === 'closed') return;
    this.closeBound = true;
    this.arm(CLOSE_BOUND_MS, this.destroyAll);
  }

  private arm(ms: number, fn: () => void): void {
    this.clearTimer();
    this.timer = setTimeout(fn, ms);
    this.timer.unref();
  }

  private clearTimer(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  /** Destroys everything this connection holds and gives back its counts; idempotent. */
  private destroy(): void {
    if (this.phase === 'closed') return;
    // the client went away (or failed) before the upstream answered
    if (this.phase === 'handshake') this.ctx.onHandshake(handshakeOutcome(499, null, this.startedAt, this.ctx.now()));
    this.phase = 'closed';
    this.clearTimer();
    this.upReq?.destroy();
    this.up?.destroy();
    this.ctx.client.destroy();
    this.release();
  }

  /** Gives back this connection's counts and leaves `pool.open`; idempotent. */
  private release(): void {
    if (this.released) return;
    this.released = true;
    const { pool } = this.ctx;
    if (this.counted === 'inflight') pool.inflight--;
    else pool.upgraded--;
    pool.open.delete(this);
    this.target.inflight--;
  }
}

/**
 * One direction of an upgraded connection: src's bytes to dst with backpressure. `seal` stops
 * the forwarding at the next frame boundary and puts a close frame there instead; after that,
 * src is only read to notice the peer's close reply.
 */
class Leg {
  private readonly src: Socket;
  private readonly dst: Socket;
  private readonly frames: FrameCursor | null;
  private readonly onCloseSeen: () => void;
  private closeFrame: Buffer | null = null;
  private state: 'open' | 'sealing' | 'sealed' = 'open';

  constructor(src: Socket, dst: Socket, frames: FrameCursor | null, onCloseSeen: () => void, onEnd: () => void) {
    this.src = src;
    this.dst = dst;
    this.frames = frames;
    this.onCloseSeen = onCloseSeen;
    src.on('data', (chunk: Buffer) => this.data(chunk));
    dst.on('drain', () => src.resume());
    src.on('end', () => {
      // a half close travels on; the close bound keeps a half-open pair from living on
      if (!dst.writableEnded && !dst.destroyed) dst.end();
      onEnd();
    });
  }

  get sealed(): boolean {
    return this.state === 'sealed';
  }

  /** whether src sent a close frame after ours went to dst */
  get replied(): boolean {
    return this.state === 'sealed' && this.frames?.closeSeen === true;
  }

  data(chunk: Buffer): void {
    const frames = this.frames;
    if (this.state === 'sealed') return this.scan(chunk);
    if (this.state === 'sealing' && frames !== null) {
      const n = frames.advance(chunk, true);
      if (n > 0) this.write(n === chunk.length ? chunk : chunk.subarray(0, n));
      if (frames.atBoundary) {
        this.inject();
        this.scan(chunk.subarray(n));
      }
      return;
    }
    frames?.advance(chunk);
    this.write(chunk);
  }

  seal(closeFrame: Buffer): void {
    if (this.state !== 'open') return;
    this.closeFrame = closeFrame;
    if (this.frames === null || this.frames.atBoundary) this.inject();
    else this.state = 'sealing';
  }

  private inject(): void {
    if (this.closeFrame !== null && !this.dst.writableEnded && !this.dst.destroyed) this.dst.write(this.closeFrame);
    this.closeFrame = null;
    this.state = 'sealed';
    if (this.frames !== null) this.frames.closeSeen = false;
    // nothing more goes to dst, so src may be read freely for its close reply
    this.src.resume();
  }

  private scan(chunk: Buffer): void {
    if (chunk.length === 0 || this.frames === null) return;
    this.frames.advance(chunk);
    if (this.frames.closeSeen) this.onCloseSeen();
  }

  private write(buf: Buffer): void {
    if (this.dst.writableEnded || this.dst.destroyed) return;
    if (!this.dst.write(buf)) this.src.pause();
  }
}
