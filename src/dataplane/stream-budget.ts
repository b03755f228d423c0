import { ERRORS } from '../errors.ts';
import { refuse } from './request-target.ts';
import type { ClientRequest, ClientResponse } from './types.ts';

/** What the budget reads of the connection limits (limits.ts). */
export interface ConnectionCount {
  /** client connections open now (every listener, TLS counted from the accept) */
  readonly open: number;
  /** the connection cap */
  readonly max: number;
  readonly config: { readonly queueTimeout: number };
  note(event: 'queue'): void;
}

interface Waiting {
  readonly req: ClientRequest;
  readonly res: ClientResponse;
  readonly run: () => void;
  readonly since: number;
}

/**
 * The upstream half of the fd budget for multiplexed client connections. An HTTP/1.1 client
 * connection forwards one request at a time, so it holds at most one upstream connection, which
 * is what `maxConnections: auto` assumes (half the fds for clients, half for upstreams). One h2
 * connection may forward `maxConcurrentStreams` requests at once, each on its own upstream
 * connection: 16 h2 clients × 128 streams once opened 2,003 upstream connections and took every
 * fd. So an h2 stream is forwarded only while
 *
 *     client connections open + h2 streams forwarded  ≤  maxConnections
 *
 * and otherwise waits here, in arrival order, for at most `limits.queueTimeout` (then 503
 * QUEUE_TIMEOUT, counted as `queue`), as an HTTP/1.1 request waits for a target connection.
 */
export class StreamBudget {
  /** h2 streams being forwarded now */
  inflight = 0;
  readonly #limits: ConnectionCount;
  readonly #queue: Waiting[] = [];
  #head = 0;
  #timer: NodeJS.Timeout | null = null;

  constructor(limits: ConnectionCount) {
    this.#limits = limits;
  }

  get queued(): number {
    return this.#queue.length - this.#head;
  }

  #room(): boolean {
    return this.#limits.open + this.inflight < this.#limits.max;
  }

  /** Runs `run` now when the budget has room, else once it has (or answers 503 after the queue timeout). */
  admit(req: ClientRequest, res: ClientResponse, run: () => void): void {
    if (this.queued === 0 && this.#room()) {
      this.#start(res, run);
      return;
    }
    this.#queue.push({ req, res, run, since: performance.now() });
    // one timer for the whole queue: the oldest entry's deadline, re-armed as entries leave
    this.#timer ??= setTimeout(() => this.#expire(), this.#limits.config.queueTimeout);
  }

  #start(res: ClientResponse, run: () => void): void {
    this.inflight++;
    res.once('close', this.#release);
    run();
  }

  readonly #release = (): void => {
    this.inflight--;
    this.pump();
  };

  /** Starts what waits while there is room (a stream ended, or a client connection closed). */
  pump(): void {
    while (this.queued > 0 && this.#room()) {
      const w = this.#queue[this.#head] as Waiting;
      this.#shift();
      // a stream the client reset while it waited is gone: nothing to start
      if (w.res.destroyed || w.req.destroyed) continue;
      this.#start(w.res, w.run);
    }
  }

  #shift(): void {
    this.#head++;
    if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
      this.#queue.splice(0, this.#head);
      this.#head = 0;
    }
    if (this.queued === 0) {
      this.#queue.length = this.#head = 0;
      if (this.#timer !== null) clearTimeout(this.#timer);
      this.#timer = null;
    }
  }

  #expire(): void {
    this.#timer = null;
    const limit = this.#limits.config.queueTimeout;
    const now = performance.now();
    while (this.queued > 0) {
      const w = this.#queue[this.#head] as Waiting;
      const left = limit - (now - w.since);
      if (left > 0) {
        this.#timer = setTimeout(() => this.#expire(), left);
        return;
      }
      this.#shift();
      if (w.res.destroyed || w.req.destroyed) continue;
      this.#limits.note('queue');
      refuse(w.res, ERRORS.QUEUE_TIMEOUT.status, 'no upstream connection free in time (the proxy is at its connection budget); try again');
    }
  }

  /** Drops what waits (close). */
  stop(): void {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    this.#queue.length = this.#head = 0;
  }
}
