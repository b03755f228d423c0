import type { Dispatcher } from 'undici';
import { Http1Connection, Phase } from './http1-connection.ts';
import { Exchange } from './http1-exchange.ts';
import { UpstreamError, type Upstream, type UpstreamOptions } from './upstream.ts';
import { UPSTREAM_CODES } from './upstream-codes.ts';

/**
 * The native engine's connections to one `http://host:port` target: a LIFO stack of idle
 * keep-alive connections (the most recently used is the one least likely to have been closed by
 * the upstream), a FIFO queue when `connections` caps them, and one coarse timer per pool that
 * sweeps every connection's deadline (connect, response head, body read, idle keep-alive).
 *
 * Why by hand and not undici's Pool: undici allocates a Request, validates every field again
 * (node:http's parser already did), parses with its WebAssembly llhttp, and defers every write
 * to a reused socket by a setImmediate; and its Pool keeps one Client object per connection it
 * ever opened (see Target.renewPool). This path writes the head as one string and hands body
 * bytes through as they come. A timer per connection phase (as undici) would be set and
 * cleared several times a request; the sweep costs one pass over the open connections per tick.
 */
export class Http1Pool implements Upstream {
  readonly options: UpstreamOptions;
  readonly hostname: string;
  readonly port: number;
  /** `host:` written when the request has no Host field (an HTTP/1.0 client), as undici does */
  readonly hostHeader: string;
  private readonly idle: Http1Connection[] = [];
  private readonly all = new Set<Http1Connection>();
  /** slots before queueHead are taken (undefined) until the queue empties and is reset */
  private readonly queue: (Exchange | undefined)[] = [];
  private queueHead = 0;
  private timer: NodeJS.Timeout | null = null;
  private readonly tick: number;
  private closing = false;
  private destroyed = false;
  private onEmpty: (() => void) | null = null;

  constructor(origin: string, options: UpstreamOptions) {
    const u = new URL(origin);
    this.options = options;
    // URL keeps the brackets of an IPv6 literal; net.connect wants the address alone
    this.hostname = u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname;
    this.port = Number(u.port || 80);
    this.hostHeader = u.host;
    // a quarter of the shortest deadline, between 10 ms and 250 ms: a 200 ms response timeout fires within 250 ms
    const shortest = Math.min(options.connectTimeout, options.headersTimeout, options.bodyTimeout, options.keepAliveTimeout);
    this.tick = Math.max(10, Math.min(250, Math.floor(shortest / 4)));
  }

  dispatch(opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    const ex = new Exchange(opts, handler);
    if (this.closing || this.destroyed) {
      handler.onResponseError?.(ex, new UpstreamError(UPSTREAM_CODES.DESTROYED, 'the target\'s pool is closed'));
      return false;
    }
    const now = Date.now();
    const conn = this.idle.pop() ?? (this.options.connections === null || this.all.size < this.options.connections ? this.open(now) : null);
    if (conn === null) {
      this.queue.push(ex);
      return false;
    }
    conn.idleSlot = -1;
    conn.start(ex, now);
    return true;
  }

  /** Sends `ex` again on a new connection (a lost kept-alive one), or queues it first in line at the cap. */
  redispatch(ex: Exchange): void {
    if (this.closing || this.destroyed) {
      ex.done = true;
      ex.handler.onResponseError?.(ex, new UpstreamError(UPSTREAM_CODES.DESTROYED, 'the target\'s pool is closed'));
      return;
    }
    if (this.options.connections !== null && this.all.size >= this.options.connections) {
      this.queue.splice(this.queueHead, 0, ex);
      return;
    }
    const now = Date.now();
    this.open(now).start(ex, now);
  }

  private open(now: number): Http1Connection {
    const c = new Http1Connection(this, now);
    this.all.add(c);
    this.timer ??= setInterval(sweep, this.tick, this).unref();
    return c;
  }

  /** A connection finished its exchange (or connected with none): the next queued request takes it, else it waits idle. */
  release(c: Http1Connection): void {
    if (c.closed || c.idleSlot !== -1) return;
    const now = Date.now();
    while (this.queueHead < this.queue.length) {
      const ex = this.queue[this.queueHead] as Exchange;
      this.queue[this.queueHead++] = undefined;
      if (this.queueHead === this.queue.length) this.queue.length = this.queueHead = 0;
      // a queued request its handler gave up on (queue timeout, client gone) is skipped
      if (ex.aborted) continue;
      c.start(ex, now);
      return;
    }
    if (this.closing) return c.destroy();
    if (c.phase !== Phase.Connecting) {
      c.phase = Phase.Idle;
      c.deadline = now + c.keepAlive;
    }
    c.idleSlot = this.idle.length;
    this.idle.push(c);
  }

  /** A connection closed: it leaves the pool; a queued request gets a new one in its place. */
  removed(c: Http1Connection): void {
    if (!this.all.delete(c)) return;
    if (c.idleSlot !== -1) {
      const i = this.idle.indexOf(c);
      if (i !== -1) this.idle.splice(i, 1);
      for (let k = 0; k < this.idle.length; k++) (this.idle[k] as Http1Connection).idleSlot = k;
      c.idleSlot = -1;
    }
    if (this.queueHead < this.queue.length && !this.closing && !this.destroyed) this.release(this.open(Date.now()));
    if (this.all.size === 0) {
      if (this.timer !== null) clearInterval(this.timer);
      this.timer = null;
      this.onEmpty?.();
    }
  }

  /** One pass of the deadline sweep. */
  sweep(): void {
    const now = Date.now();
    for (const c of this.all) if (c.deadline !== 0 && now >= c.deadline) c.timedOut();
  }

  get closed(): boolean {
    return this.closing || this.destroyed;
  }

  close(): Promise<void> {
    this.closing = true;
    for (const c of this.idle.splice(0)) {
      c.idleSlot = -1;
      c.destroy();
    }
    if (this.all.size === 0) return Promise.resolve();
    return new Promise((resolve) => (this.onEmpty = resolve));
  }

  destroy(): Promise<void> {
    this.destroyed = true;
    const err = new UpstreamError(UPSTREAM_CODES.DESTROYED, 'the target\'s pool was destroyed');
    for (const ex of this.queue.splice(0)) if (ex !== undefined && !ex.aborted) ex.handler.onResponseError?.(ex, err);
    this.queueHead = 0;
    for (const c of [...this.all]) c.fail(err);
    return Promise.resolve();
  }
}

function sweep(pool: Http1Pool): void {
  pool.sweep();
}
