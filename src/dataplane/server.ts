import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { createServer as createNetServer, type AddressInfo, type ListenOptions, type Server as NetServer, type Socket } from 'node:net';
import type { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import { PinCookies, pinnedPool } from '../routing/affinity.ts';
import { poolForBucket, previewPool, randomBucket, stickyBucket, type RoutedBy } from '../routing/choose.ts';
import { findApp, type AppRoute, type PoolRoute, type Snapshot } from '../routing/snapshot.ts';
import { DEFAULT_ACCEPTORS } from '../config/schema.ts';
import { http } from '../node-http.ts';
import { ProxyHandler, sendError, type Outcome, type Plane } from './forward.ts';
import { Front, KEEP_ALIVE_MS, type FrontExchange } from './front.ts';
import { cookieValue, forwardRequestHeaders, normalizeAddress, replaceHeader, type ForwardedRequest, type TrustedProxies } from './headers.ts';
import { headerReceived, Limits, type LimitsConfig } from './limits.ts';
import { inOrder } from './pipeline.ts';
import { claimPort, type PortClaim } from './port-claim.ts';
import { parseRequestTarget, refuse, refuseConnect } from './request-target.ts';
import type { Runtime } from './runtime.ts';
import type { RequestSpan, Tracing } from '../tracing/types.ts';
import { isProxiedUpgrade, UpgradeProxy } from './upgrade.ts';

/**
 * Accept queue length asked of the kernel for the proxy listener (capped by
 * net.core.somaxconn, 4096 on current Linux). Node's default of 511 overflows when a thousand
 * clients connect at once while the event loop is busy proxying: the kernel then drops their
 * SYNs and each one waits a 1 s retransmit (measured: p99 600 ms and wrk timeouts at 1,000
 * clients, TcpExtListenOverflows in the thousands). HAProxy sizes its backlog from maxconn alike.
 */
export const LISTEN_BACKLOG = 4096;

/** Listening sockets per data-plane process by default: see `DEFAULT_ACCEPTORS` in config/schema.ts. */
export { DEFAULT_ACCEPTORS };

/** One finished request, as metrics, stats and the access log see it. */
export interface RequestRecord {
  readonly app: AppRoute;
  readonly pool: PoolRoute;
  readonly by: RoutedBy;
  readonly requestId: string;
  readonly method: string;
  /** the request target as received (path and query); the access log keeps the path only */
  readonly path?: string;
  readonly outcome: Outcome;
}

export interface DataPlaneOptions {
  /** anything holding the current snapshot (the Controller) */
  readonly source: { readonly snapshot: Snapshot };
  readonly runtime: Runtime;
  readonly trust: TrustedProxies;
  /** @default Math.random — injectable so split tests assert exact counts */
  readonly random?: () => number;
  /** @default Date.now */
  readonly now?: () => number;
  /** called once per proxied request when it ends (metrics, stats, access log) */
  readonly onRequest?: (record: RequestRecord) => void;
  /** called when a preview header carries a bad signature */
  readonly onPreviewRejected?: (app: AppRoute) => void;
  /** connection and request limits (src/dataplane/limits.ts) @default the config defaults */
  readonly limits?: Limits;
  /** answers a request itself before routing (true: taken), e.g. the 308 to https (src/edge) */
  readonly intercept?: (req: IncomingMessage, res: ServerResponse) => boolean;
  /**
   * Who serves HTTP/1.1 clients: `native`, the raw-socket front (src/dataplane/front.ts), which
   * hands node:http every request it does not serve itself; `node`, node:http alone.
   * @default native with the native engine and no `intercept`, node otherwise
   */
  readonly front?: 'native' | 'node';
  /** OpenTelemetry spans and trace context (src/tracing), or null: off, one null check per request @default null */
  readonly tracing?: Tracing | null;
}

/** `limits` with every default, for planes built without a config (tests). */
export const DEFAULT_LIMITS: LimitsConfig = { maxConnections: 'auto', headerTimeout: 60_000, bodyTimeout: 60_000, sendTimeout: 60_000, queueTimeout: 10_000 };

/** Picks the pool of a request: preview, then affinity pin, then sticky bucket or random split. */
export interface Decision {
  readonly app: AppRoute;
  readonly pool: PoolRoute;
  readonly by: RoutedBy;
  /** a pin's only: the request's facts, to route it by weight should its pool fail it (DataPlane.reroute) */
  readonly fwd?: ForwardedRequest;
  /** with tracing: the request's sampled span, ended when it is done */
  readonly span?: RequestSpan;
  /** a pin's only: the time it was counted in its pool's `pinned` figure */
  readonly at?: number;
}

/** Errors that mean "no SO_REUSEPORT here", not "the port is taken". */
export const REUSEPORT_UNSUPPORTED = new Set(['ENOTSUP', 'EOPNOTSUPP', 'ENOPROTOOPT', 'EINVAL', 'ERR_INVALID_ARG_VALUE']);

/** `server.listen(options)`, resolved once listening, rejected with the listen error (EADDRINUSE…). */
export function listenOn(server: NetServer, options: ListenOptions): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => {
      server.off('listening', onListening);
      reject(err);
    };
    const onListening = (): void => {
      server.off('error', onError);
      resolve();
    };
    server.once('error', onError);
    server.once('listening', onListening);
    server.listen(options);
  });
}

function rawHeader(raw: readonly string[], lname: string): string | undefined {
  for (let i = 0; i < raw.length; i += 2) if ((raw[i] as string).length === lname.length && (raw[i] as string).toLowerCase() === lname) return raw[i + 1];
  return undefined;
}

/**
 * The data plane: a node:http server that routes every request on the current snapshot (no
 * store I/O, no await) and forwards it with undici. Also used for upgrades (see upgrade.ts).
 */
export class DataPlane implements Plane {
  readonly server: Server;
  /** true once shutdown started: responses carry Connection: close */
  closing = false;
  private readonly opts: DataPlaneOptions;
  private readonly random: () => number;
  readonly now: () => number;
  /** set at construction, or by a worker once it loaded the SDK (setTracing) */
  private tracing: Tracing | null;
  private readonly pins = new PinCookies();
  private readonly upgrades: UpgradeProxy;
  readonly limits: Limits;

  /** extra listeners on the proxy port (see DEFAULT_ACCEPTORS); their connections go to `server` */
  private readonly acceptors: NetServer[] = [];
  private claim: PortClaim | null = null;
  /** the raw-socket front, or null when node:http serves every connection */
  private readonly front: Front | null = null;

  constructor(opts: DataPlaneOptions) {
    this.opts = opts;
    this.random = opts.random ?? Math.random;
    this.now = opts.now ?? Date.now;
    this.tracing = opts.tracing ?? null;
    this.limits = opts.limits ?? new Limits({ config: DEFAULT_LIMITS, acceptors: DEFAULT_ACCEPTORS });
    const { headerTimeout } = this.limits.config;
    // a keep-alive connection's next head, on node:http and the front alike
    const laterHeadTimeout = Math.ceil(headerTimeout * 1.1);
    this.server = http.createServer(
      {
        keepAliveTimeout: KEEP_ALIVE_MS,
        // a keep-alive connection's next request (checked every connectionsCheckingInterval). The
        // first one is timed from the accept in limits.ts; the 10 % margin lets that timer act
        // first (silent close when nothing came, counted) rather than race Node's check
        headersTimeout: laterHeadTimeout,
        connectionsCheckingInterval: Math.min(30_000, headerTimeout),
        // long uploads and streams are bounded by the upstream timeouts, not by Node's 300 s default
        requestTimeout: 0,
        noDelay: true,
        // a request with two Host fields is refused below, never merged
        joinDuplicateHeaders: false,
        // h2c and other tokens we do not tunnel are served as plain requests (Node ≥ 24.9)
        shouldUpgradeCallback: isProxiedUpgrade,
      },
      (req, res) => inOrder(req, res, this.handleNow),
    );
    // Expect: 100-continue is answered in handle(), once the request is routed to a target
    this.server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => inOrder(req, res, this.handleNow));
    this.server.on('connect', refuseConnect);
    this.upgrades = new UpgradeProxy(this, opts);
    this.server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
      headerReceived(socket);
      this.upgrades.handle(req, socket, head);
    });
    const front = opts.front ?? (opts.intercept === undefined && opts.runtime.engine === 'native' ? 'native' : 'node');
    if (front === 'native') {
      // node:http's own connection listener serves only what the front hands it
      const nodeConnection = this.server.listeners('connection')[0] as (socket: Socket) => void;
      this.server.removeListener('connection', nodeConnection);
      const server = this.server;
      const f = new Front(
        {
          // the exchange carries the members of IncomingMessage and ServerResponse this path uses
          handle: (ex: FrontExchange) => this.handle(ex as unknown as IncomingMessage, ex as unknown as ServerResponse),
          handOff: (socket: Socket) => nodeConnection.call(server, socket),
          closing: () => this.closing,
        },
        laterHeadTimeout,
      );
      this.front = f;
      this.server.on('connection', (socket: Socket) => f.accept(socket));
    }
    this.limits.attach(this.server);
  }

  /** Turns tracing on (a worker loads the SDK after construction, in its async listen()). */
  setTracing(tracing: Tracing | null): void {
    this.tracing = tracing;
  }

  /** Closes the client connections with no request in flight (shutdown, as they go idle). */
  closeIdleConnections(): void {
    this.server.closeIdleConnections();
    this.front?.closeIdle();
  }

  /** Closes every client connection. */
  closeAllConnections(): void {
    this.server.closeAllConnections();
    this.front?.closeAll();
  }

  /**
   * Listens on host:port (port 0: any) with `acceptors` sockets in one SO_REUSEPORT group where
   * the platform has it, one socket otherwise. Resolves with the port. `acceptors: 1`: one plain
   * socket (no SO_REUSEPORT).
   */
  async listen(host: string, port: number, acceptors: number = DEFAULT_ACCEPTORS): Promise<number> {
    const reusePort = acceptors > 1;
    // no second Switchyard joins this port's reuse-port group (src/dataplane/port-claim.ts)
    this.claim = await claimPort(host, port);
    try {
      await listenOn(this.server, { host, port, backlog: LISTEN_BACKLOG, reusePort });
    } catch (err) {
      if (!reusePort || !REUSEPORT_UNSUPPORTED.has((err as { code?: string }).code ?? '')) throw err;
      await listenOn(this.server, { host, port, backlog: LISTEN_BACKLOG });
      return (this.server.address() as AddressInfo).port;
    }
    const bound = (this.server.address() as AddressInfo).port;
    await this.addAcceptors(host, bound, acceptors);
    return bound;
  }

  /** Adds the extra listeners to a server already listening with reusePort on host:port (a worker's). */
  async addAcceptors(host: string, port: number, acceptors: number = DEFAULT_ACCEPTORS): Promise<void> {
    for (let i = 1; i < acceptors; i++) {
      // noDelay as the http server's own listener; 'connection' hands the socket to node:http
      // exactly as its listener does (the documented way to feed an http.Server a socket)
      const acceptor = createNetServer({ noDelay: true }, (socket) => this.server.emit('connection', socket));
      try {
        await listenOn(acceptor, { host, port, backlog: LISTEN_BACKLOG, reusePort: true });
      } catch {
        acceptor.close();
        return; // no SO_REUSEPORT group to join: the first listener serves alone
      }
      this.acceptors.push(acceptor);
      this.limits.watch(acceptor);
    }
  }

  /** Stops accepting connections (every listener); open connections are left to the caller. */
  stopListening(): void {
    this.claim?.release();
    this.claim = null;
    this.server.close();
    for (const a of this.acceptors) a.close();
    this.acceptors.length = 0;
  }

  /** Routing decision for a request (pure apart from the random source and the clock). */
  decide(app: AppRoute, req: IncomingMessage, fwd: ForwardedRequest): Decision {
    const cfg = app.config;
    if (cfg.preview !== undefined) {
      const value = rawHeader(req.rawHeaders, cfg.preview.header);
      if (value !== undefined) {
        const pool = previewPool(app, value);
        if (pool !== null) return { app, pool, by: 'preview' };
        this.opts.onPreviewRejected?.(app);
      }
    }
    if (cfg.affinity !== undefined) {
      const pin = cookieValue(fwd.cookie, cfg.affinity.cookie);
      if (pin !== undefined) {
        const now = this.now();
        const pool = pinnedPool(app, pin, now);
        // a pin to a draining pool with no target up is ignored: the weights route it, never a 503
        if (pool !== null && this.opts.runtime.apps[app.index]?.pools[pool.index]?.targets.some((t) => t.isUp(now)) === true) return { app, pool, by: 'pin', fwd, at: now };
      }
    }
    return this.byWeight(app, req, fwd);
  }

  /** The sticky bucket's pool, or the random split's: the weights alone decide. */
  private byWeight(app: AppRoute, req: IncomingMessage, fwd: ForwardedRequest): Decision {
    if (app.sticky !== null) {
      for (const src of app.sticky) {
        const key = src.kind === 'ip' ? fwd.clientIp : src.kind === 'header' ? rawHeader(req.rawHeaders, src.name) : cookieValue(fwd.cookie, src.name);
        if (key !== undefined && key !== '') return { app, pool: poolForBucket(app, stickyBucket(app, key)), by: 'sticky' };
      }
    }
    return { app, pool: poolForBucket(app, randomBucket(this.random())), by: 'random' };
  }

  private readonly handleNow = (req: IncomingMessage, res: ServerResponse): void => this.handle(req, res);

  handle(req: IncomingMessage, res: ServerResponse): void {
    headerReceived(req.socket);
    if (this.opts.intercept !== undefined && this.opts.intercept(req, res)) return;
    const remote = normalizeAddress(req.socket.remoteAddress);
    const line = parseRequestTarget(req);
    if ('status' in line) {
      refuse(res, line.status, line.reason);
      return;
    }
    const fwd = forwardRequestHeaders(req.rawHeaders, remote, this.opts.trust, line.authority ?? undefined, (req.socket as { encrypted?: boolean }).encrypted === true ? 'https' : 'http');
    if ('error' in fwd) {
      refuse(res, fwd.status, fwd.error);
      return;
    }
    const app = findApp(this.opts.source.snapshot, fwd.host);
    if (app === null) {
      sendError(res, 'MISDIRECTED', fwd.requestId, this.closing);
      return;
    }
    const decision = this.decide(app, req, fwd);
    const { pool, by } = decision;
    // the preview signature is the proxy's credential: the upstream learns the pool name only
    if (app.config.preview !== undefined) replaceHeader(fwd.headers, app.config.preview.header, by === 'preview' ? pool.name : null);
    const runtime = (this.opts.runtime.apps[app.index] as Runtime['apps'][number]).pools[pool.index] as Runtime['apps'][number]['pools'][number];
    const now = this.now();
    if (by === 'pin') runtime.pinned.add(decision.at ?? now);
    // tracing on only: the span starts here and its traceparent goes upstream in fwd.headers
    const span = this.tracing === null ? null : this.tracing.start(fwd.headers, req.method ?? 'GET', line.path, fwd.host, now);
    const target = runtime.pick(now, null);
    if (target === null) {
      sendError(res, 'NO_TARGET', fwd.requestId, this.closing);
      if (span !== null) this.tracing?.end(span, decision, null, { status: 503, error: 'NO_TARGET', endedAt: now });
      this.opts.onRequest?.({ app, pool, by, requestId: fwd.requestId, method: req.method ?? 'GET', path: req.url ?? '/', outcome: { status: 503, error: 'NO_TARGET', startedAt: now, endedAt: now } });
      return;
    }
    const opts: Dispatcher.DispatchOptions = {
      method: req.method ?? 'GET',
      path: line.path,
      headers: fwd.headers,
      body: fwd.hasBody ? req : null,
    };
    const setCookie = by === 'random' || by === 'sticky' ? this.pins.setCookie(app, pool, now) : null;
    // routed to a target: now the client may send its body (Node left the Expect to us; on
    // HTTP/1.1 only 100-continue gets here, any other expectation got 417)
    if (fwd.hasBody && req.headers.expect !== undefined && req.httpVersionMinor === 1) res.writeContinue();
    const handler = new ProxyHandler(this, req, res, runtime, target, opts, pool.servedBy, fwd.requestId, setCookie);
    handler.tag = span === null ? decision : { ...decision, span };
    handler.start();
  }

  /**
   * A request a pin held on a draining pool failed to connect there, and the pool has no target
   * up any more (forward.ts asks only then, so nothing of it reached that pool): it is routed
   * again by weight exactly as if it carried no pin, recorded as such, and its response pins the
   * new pool (CONTRACT.md §3 step 3: never a 503 when another pool can serve). False: not a
   * pinned request, or the weights find no target either.
   */
  reroute(handler: ProxyHandler): boolean {
    const pinned = handler.tag as Decision;
    if (pinned.by !== 'pin' || pinned.fwd === undefined) return false;
    // a body the engine began to read could not go whole to another pool (engines read none before connecting)
    if ((handler.opts.body as Readable | null | undefined)?.readableDidRead === true) return false;
    const app = pinned.app;
    const decision = this.byWeight(app, handler.req, pinned.fwd);
    const runtime = this.opts.runtime.apps[app.index]?.pools[decision.pool.index];
    const now = this.now();
    const target = runtime?.pick(now, null) ?? null;
    if (runtime === undefined || target === null) return false;
    // the draining pool did not serve it: it leaves the pool's pinned figure
    if (pinned.at !== undefined) handler.pool.pinned.remove(pinned.at);
    handler.tag = pinned.span === undefined ? decision : { ...decision, span: pinned.span };
    handler.moveTo(runtime, target, decision.pool.servedBy, this.pins.setCookie(app, decision.pool, now));
    return true;
  }

  requestDone(handler: ProxyHandler, outcome: Outcome): void {
    const decision = handler.tag as Decision;
    if (decision.span !== undefined) this.tracing?.end(decision.span, decision, handler.target.url, outcome);
    const onRequest = this.opts.onRequest;
    if (onRequest === undefined) return;
    const { app, pool, by } = decision;
    onRequest({ app, pool, by, requestId: handler.requestId, method: handler.opts.method, path: handler.opts.path, outcome });
  }
}
