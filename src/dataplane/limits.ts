import { readFileSync } from 'node:fs';
import type { Server } from 'node:http';
import type { Server as NetServer, Socket } from 'node:net';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.ts';
import { reduceMemory } from '../memory.ts';
import { RequestGuard } from './guard.ts';
import { StreamBudget } from './stream-budget.ts';
import type { ClientRequest } from './types.ts';

export type LimitsConfig = Config['limits'];

/** What a limit did: closed a connection or a request (`refused`: a connection over the cap). */
export const LIMIT_EVENTS = ['header', 'body', 'send', 'queue', 'refused'] as const;
export type LimitEvent = (typeof LIMIT_EVENTS)[number];

/**
 * File descriptors kept back from client connections when the cap is derived from the fd limit:
 * the admin listener and its clients, the store, health probes, logs, cluster IPC. With the
 * proxy's listeners (`listen.acceptors`) subtracted too, the admin API still answers when the
 * proxy is full (HAProxy derives maxconn from `ulimit -n` alike).
 */
export const FD_RESERVE = 256;
/** The cap when the fd limit cannot be read (not Linux): the fd limit itself is then unknown. */
export const FALLBACK_MAX_CONNECTIONS = 4096;

/** The soft RLIMIT_NOFILE of this process (Node raises it to the hard limit at start), or null when unknown. */
export function fdLimit(read: () => string = () => readFileSync('/proc/self/limits', 'utf8')): number | null {
  try {
    const m = /^Max open files\s+(\d+)/m.exec(read());
    return m === null ? null : Number(m[1]);
  } catch {
    return null;
  }
}

/**
 * The connection cap `limits.maxConnections: auto` stands for: half of what the fd limit leaves
 * after the listeners and `FD_RESERVE`, since every proxied client connection may hold an
 * upstream connection too. Null when the fd limit is unknown.
 */
export function autoMaxConnections(nofile: number | null, acceptors: number): number | null {
  if (nofile === null) return null;
  return Math.max(1, Math.floor((nofile - acceptors - FD_RESERVE) / 2));
}

const kHeaderTimer = Symbol('switchyard.headerTimer');
const kLimits = Symbol('switchyard.limits');
/** set on a TLS socket whose TCP connection was counted at accept (countAtAccept): not counted again */
const kCounted = Symbol('switchyard.counted');
type Tracked = Socket & { [kHeaderTimer]?: NodeJS.Timeout | null; [kLimits]?: Limits; [kCounted]?: true };

/** Marks a socket whose connection is counted already (a TLS socket over a TCP socket counted at accept). */
export function alreadyCounted(socket: Socket): void {
  (socket as Tracked)[kCounted] = true;
}

/** The proxy's answer to a request head that took too long (here and in front.ts). */
export const REQUEST_TIMEOUT_408 = 'HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-length: 0\r\n\r\n';

/** Stops a connection's header timer: its first request (or upgrade) has arrived. One property read when already stopped. */
export function headerReceived(socket: Socket): void {
  const t = (socket as Tracked)[kHeaderTimer];
  if (t != null) {
    clearTimeout(t);
    (socket as Tracked)[kHeaderTimer] = null;
  }
}

/**
 * Runs `fn` once the I/O already waiting has been handled. A timer that fires after the event
 * loop was held up runs before the loop reads the sockets: the header, body bytes or drain that
 * arrived meanwhile would not have been seen yet, and a client on time would be cut. The check
 * phase comes after the poll phase, so a limit decided there has seen them.
 */
export const afterPendingIo: (fn: () => void) => void = setImmediate;

function onHeaderTimeout(socket: Tracked): void {
  afterPendingIo(() => headerExpired(socket));
}

function headerExpired(socket: Tracked): void {
  // the request arrived while the timer's callback waited for the poll phase
  if (socket[kHeaderTimer] == null || socket.destroyed) return;
  socket[kHeaderTimer] = null;
  socket[kLimits]?.note('header');
  // nothing sent at all (a preconnect, an idle attack): close without a word, as nginx does;
  // part of a request line or header: 408, then close once it is written
  if (socket.bytesRead === 0) socket.destroy();
  else {
    socket.write(REQUEST_TIMEOUT_408);
    socket.destroySoon();
  }
}

function onSocketClose(this: Tracked): void {
  headerReceived(this);
  this[kLimits]?.closed();
}

function headerTimerOff(this: Tracked): void {
  headerReceived(this);
}

function onRawClose(this: Tracked): void {
  this[kLimits]?.closed();
}

export interface LimitsOptions {
  readonly config: LimitsConfig;
  /** listeners per process, subtracted from the fd limit for `auto` */
  readonly acceptors: number;
  readonly logger?: Logger;
  /** @default fdLimit() */
  readonly fdLimit?: number | null;
  /** called once a burst of connections is over (memory.ts gives the memory back) */
  readonly onBurstOver?: () => void;
  /** connections that make a burst worth a memory-reducing collection once over @default 1000 */
  readonly burstSize?: number;
  /** how long the connection count must stay under a tenth of the peak before `onBurstOver` @default 5000 */
  readonly burstQuietMs?: number;
  /** the burst-over timer's clock; tests pass a hand-moved one @default the global pair, unref'd */
  readonly timers?: { setTimeout(fn: () => void, ms: number): unknown; clearTimeout(handle: unknown): void };
}

/**
 * The connection limits of one data-plane process: the connection cap across all its listeners,
 * the first-request header timeout, and the counters and rate-limited log line of every limit
 * (the request-level timers are in forward.ts, through `Limits.config`).
 *
 * The cap is enforced by net.Server's own `maxConnections` check, which closes a new connection
 * before any JS socket exists ('drop'): each listener only counts its own connections, so the
 * count here is shared and every listener's `maxConnections` switches between 0 (full) and
 * unset. Connections are counted in the http server's 'connection' event, which every plain
 * listener feeds, synchronously with the accept, so the cap is exact; the TLS port's from its own
 * accept, before the handshake (`countAtAccept`). h2 streams take their upstream connections
 * from the same budget (`streams`).
 */
export class Limits {
  readonly config: LimitsConfig;
  /** the connection cap in force */
  readonly max: number;
  /** the process's fd limit, or null when unknown */
  readonly fdLimit: number | null;
  open = 0;
  /** exceptions caught while handling a request or a connection (src/dataplane/guard.ts) */
  readonly guard: RequestGuard;
  /** h2 streams forwarded at once, inside the connection cap (src/dataplane/stream-budget.ts) */
  readonly streams: StreamBudget = new StreamBudget(this);
  readonly counts: Record<LimitEvent, number> = { header: 0, body: 0, send: 0, queue: 0, refused: 0 };
  private readonly listeners: NetServer[] = [];
  private full = false;
  private readonly logger: Logger | undefined;
  private readonly pending: Record<LimitEvent, number> = { header: 0, body: 0, send: 0, queue: 0, refused: 0 };
  private logTimer: NodeJS.Timeout | null = null;
  private peak = 0;
  private burstTimer: unknown = null;
  private readonly timers: NonNullable<LimitsOptions['timers']>;
  private readonly onBurstOver: (() => void) | undefined;
  private readonly burstSize: number;
  private readonly burstQuietMs: number;

  constructor(opts: LimitsOptions) {
    this.config = opts.config;
    this.logger = opts.logger;
    this.guard = new RequestGuard(opts.logger);
    this.fdLimit = opts.fdLimit === undefined ? fdLimit() : opts.fdLimit;
    const auto = autoMaxConnections(this.fdLimit, opts.acceptors);
    this.max = opts.config.maxConnections === 'auto' ? (auto ?? FALLBACK_MAX_CONNECTIONS) : opts.config.maxConnections;
    this.onBurstOver = opts.onBurstOver;
    this.burstSize = opts.burstSize ?? 1000;
    this.burstQuietMs = opts.burstQuietMs ?? 5000;
    this.timers = opts.timers ?? { setTimeout: (fn, ms) => setTimeout(fn, ms).unref(), clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout) };
    if (this.fdLimit === null) opts.logger?.warn({ maxConnections: this.max, fdLimit: 'unknown' }, 'the fd limit cannot be read: the connection cap is a guess; set limits.maxConnections');
    else opts.logger?.info({ maxConnections: this.max, fdLimit: this.fdLimit }, 'connection cap');
    if (auto !== null && this.max > auto) {
      opts.logger?.warn({ maxConnections: this.max, fdLimit: this.fdLimit, safe: auto }, 'limits.maxConnections is more than the fd limit leaves room for: when full, new connections and the admin API may fail with EMFILE; raise `ulimit -n` or lower the cap');
    }
  }

  /** Counts the server's connections and starts their header timers (every listener feeds it). */
  attach(server: Server): void {
    // prepended: the timer starts before node:http sees the socket
    server.prependListener('connection', (socket: Socket) => this.accepted(socket as Tracked));
    this.watch(server);
  }

  /** A listener whose connections count against the cap (the http server itself and each acceptor). */
  watch(listener: NetServer): void {
    this.listeners.push(listener);
    listener.on('drop', () => this.note('refused'));
    if (this.full) listener.maxConnections = 0;
  }

  /**
   * Counts the connections of a listener that hands them on later, from the accept: the TLS port,
   * whose connections reach the http servers only after the handshake (a connection that never
   * finishes one would otherwise hold an fd uncounted). The socket the handshake yields is then
   * marked `alreadyCounted`.
   */
  countAtAccept(listener: NetServer): void {
    listener.prependListener('connection', (socket: Socket) => {
      this.count();
      (socket as Tracked)[kLimits] = this;
      socket.once('close', onRawClose);
    });
    this.watch(listener);
  }

  private count(): void {
    this.open++;
    if (this.open > this.peak) this.peak = this.open;
    if (this.open >= this.max) this.setFull(true);
  }

  private accepted(socket: Tracked): void {
    socket[kLimits] = this;
    socket[kHeaderTimer] = setTimeout(onHeaderTimeout, this.config.headerTimeout, socket);
    if (socket[kCounted] === true) {
      // a TLS connection counted at its accept: only its first request's header timer starts here
      socket.once('close', headerTimerOff);
      return;
    }
    this.count();
    socket.once('close', onSocketClose);
  }

  /** @internal a counted connection closed */
  closed(): void {
    this.open--;
    if (this.full && this.open < this.max) this.setFull(false);
    if (this.streams.queued > 0) this.streams.pump();
    if (this.onBurstOver !== undefined && this.peak >= this.burstSize && this.open * 10 <= this.peak && this.burstTimer === null) {
      this.burstTimer = this.timers.setTimeout(() => this.burstCheck(), this.burstQuietMs);
    }
  }

  private burstCheck(): void {
    this.burstTimer = null;
    if (this.open * 10 > this.peak) return; // a new burst: wait until it is over too
    this.logger?.info({ peak: this.peak, open: this.open }, 'connection burst over: giving memory back');
    this.peak = this.open;
    this.onBurstOver?.();
  }

  private setFull(full: boolean): void {
    this.full = full;
    for (const l of this.listeners) {
      if (full) l.maxConnections = 0;
      // deleting the own property restores net.Server's default (undefined: no cap)
      else delete (l as { maxConnections?: number }).maxConnections;
    }
  }

  /**
   * Counts one enforcement and logs it, at most one line per 10 s: under attack a limit fires
   * thousands of times a second, and one line per connection would be the attack's amplifier.
   */
  note(event: LimitEvent): void {
    this.counts[event]++;
    this.pending[event]++;
    if (this.logTimer === null) this.flushLog();
  }

  private flushLog(): void {
    this.logTimer = null;
    const p = this.pending;
    if (p.header + p.body + p.send + p.queue + p.refused === 0) return;
    this.logger?.warn({ ...p, open: this.open, max: this.max }, 'limits enforced (counts since the previous line, at most one line per 10 s)');
    for (const k of LIMIT_EVENTS) p[k] = 0;
    this.logTimer = setTimeout(() => this.flushLog(), 10_000).unref();
  }

  /** Stops the timers (close). */
  stop(): void {
    if (this.logTimer !== null) clearTimeout(this.logTimer);
    if (this.burstTimer !== null) this.timers.clearTimeout(this.burstTimer);
    this.logTimer = this.burstTimer = null;
    this.guard.stop();
    this.streams.stop();
  }
}

/**
 * The byte count that shows a request body arriving: the socket's for HTTP/1.1 (one request at a
 * time reads it), the stream's own for h2 (src/edge/h2.ts `bodyBytesRead`), since the session's
 * socket is moved by every other stream and by PINGs.
 */
function bodyBytes(req: ClientRequest): () => number {
  const h2 = req as { readonly bodyBytesRead?: unknown };
  if (typeof h2.bodyBytesRead === 'number') return () => h2.bodyBytesRead as number;
  const socket = req.socket;
  return () => socket.bytesRead;
}

/**
 * Watches a request body while the proxy reads it: calls `onStall` once no body byte arrived for
 * `ms` (checked every quarter of it) while the proxy was ready to read. Not a 'data' listener,
 * which would take the body from undici: it compares the socket's byte count. A paused request
 * (the upstream reads slowly) is not the client's stall.
 */
export function watchBody(req: ClientRequest, ms: number, onStall: () => void): NodeJS.Timeout {
  const read = bodyBytes(req);
  let seen = read();
  let quietSince = performance.now();
  const timer = setInterval(() => {
    if (req.complete || req.destroyed) {
      clearInterval(timer);
      return;
    }
    const bytes = read();
    const now = performance.now();
    if (bytes !== seen || req.isPaused() || req.readableLength > 0) {
      seen = bytes;
      quietSince = now;
    } else if (now - quietSince >= ms) {
      afterPendingIo(() => {
        // bytes read meanwhile: the next tick sees them and starts over
        if (read() !== seen || req.complete || req.destroyed) return;
        clearInterval(timer);
        onStall();
      });
    }
  }, Math.max(1, Math.floor(ms / 4)));
  return timer;
}

/**
 * The limits of a data-plane process built from the whole config. A burst's end gives memory
 * back: fresh upstream pools (the old ones keep a Client per connection of the burst), then one
 * memory-reducing collection.
 */
export function processLimits(config: Config, logger: Logger, runtime: { renewPools(): void }): Limits {
  const onBurstOver = (): void => {
    runtime.renewPools();
    // after the old pools closed their idle connections (close() is async): a turn or two
    setTimeout(reduceMemory, 200).unref();
  };
  return new Limits({ config: config.limits, acceptors: config.listen.acceptors, logger: logger.child({ component: 'limits' }), onBurstOver });
}
