import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { createServer as createNetServer, type AddressInfo, type ListenOptions, type Server as NetServer, type Socket } from 'node:net';
import type { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import { PinCookies } from '../routing/affinity.ts';
import { decide, mirrorFor, type DecideOptions } from '../routing/decide.ts';
import { findApp, type AppRoute } from '../routing/snapshot.ts';
import { DEFAULT_ACCEPTORS } from '../config/schema.ts';
import { http } from '../node-http.ts';
import { ProxyHandler, type Plane } from './forward.ts';
import { sendError } from './responses.ts';
import type { ClientRequest, ClientResponse, DataPlaneOptions, Decision, Outcome } from './types.ts';
import { Front, KEEP_ALIVE_MS, type FrontExchange } from './front.ts';
import { H2cPort } from './h2c.ts';
import { llhttp } from './engine/internals.ts';
import type { Http2Server } from 'node:http2';
import { forwardRequestHeaders, normalizeAddress, replaceHeader, type ForwardedRequest } from './headers.ts';
import { headerReceived, Limits, type LimitsConfig } from './limits.ts';
import { Mirror } from './mirror.ts';
import { inOrder } from './pipeline.ts';
import { adopt, type ListenHandle } from '../upgrade/handles.ts';
import { claimPort, type PortClaim } from './port-claim.ts';
import { ProxyFacts, rawHeader } from './request-facts.ts';
import { parseRequestTarget, refuse, refuseConnect } from './request-target.ts';
import type { Runtime } from './runtime.ts';
import type { Tracing } from '../tracing/types.ts';
import { isProxiedUpgrade, UpgradeProxy } from './upgrade.ts';
import { ProcessError } from '../errors.ts';

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

/** `limits` with every default, for planes built without a config (tests). */
export const DEFAULT_LIMITS: LimitsConfig = { maxConnections: 'auto', headerTimeout: 60_000, bodyTimeout: 60_000, sendTimeout: 60_000, queueTimeout: 10_000 };

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
  /** copies of requests to each app's mirror pool, off the client's path */
  readonly mirror: Mirror;
  readonly limits: Limits;

  /** extra listeners on the proxy port (see DEFAULT_ACCEPTORS); their connections go to `server` */
  private readonly acceptors: NetServer[] = [];
  private claim: PortClaim | null = null;
  /** the raw-socket front, or null when node:http serves every connection */
  private readonly front: Front | null = null;
  /** HTTP/2 with prior knowledge on the plain port (`listen.h2c`, see enableH2c), or null */
  private h2c: H2cPort | null = null;
  /** what serves a new HTTP/1.1 connection: the front's accept, or node:http's own listener */
  private readonly http1: (socket: Socket) => void;
  /** the server's 'connection' listener that serves the connection (the front's, node:http's, or h2c's preface check) */
  private onConnection: (socket: Socket) => void;

  constructor(opts: DataPlaneOptions) {
    this.opts = opts;
    this.random = opts.random ?? Math.random;
    this.now = opts.now ?? Date.now;
    this.tracing = opts.tracing ?? null;
    this.limits = opts.limits ?? new Limits({ config: DEFAULT_LIMITS, acceptors: DEFAULT_ACCEPTORS });
    this.mirror = new Mirror({ runtime: opts.runtime, now: this.now, ...(opts.onMirror === undefined ? {} : { onRecord: opts.onMirror }) });
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
      try {
        this.upgrades.handle(req, socket, head);
      } catch (err) {
        // nothing is written on an upgrade's socket before its pipe starts
        this.limits.guard.socket(err, socket, 'upgrade', false);
      }
    });
    // the front parses with Node's HTTPParser: without a usable one node:http serves (engine/internals.ts)
    const front = llhttp.ok ? (opts.front ?? (opts.runtime.engine === 'native' ? 'native' : 'node')) : 'node';
    // node:http's own connection listener serves what the front (or, with h2c, the preface check) hands it
    const nodeConnection = this.server.listeners('connection')[0] as (socket: Socket) => void;
    const server = this.server;
    this.http1 = (socket: Socket) => nodeConnection.call(server, socket);
    this.onConnection = nodeConnection;
    if (front === 'native') {
      const f = new Front(
        {
          // the exchange is both the request and its response (types.ts ClientExchange)
          handle: (ex: FrontExchange) => this.handle(ex, ex),
          handOff: (socket: Socket) => nodeConnection.call(server, socket),
          closing: () => this.closing,
          caught: (err: unknown, socket: Socket, answered: boolean) => this.limits.guard.socket(err, socket, 'connection', answered),
        },
        laterHeadTimeout,
      );
      this.front = f;
      // with an intercept (the edge's ACME HTTP-01 and redirect, which read node:http's request),
      // plain connections stay with node:http; TLS ones (src/edge/tls-listener.ts) go to the front
      this.http1 = opts.intercept === undefined
        ? (socket: Socket) => f.accept(socket)
        : (socket: Socket) => ((socket as { encrypted?: boolean }).encrypted === true ? f.accept(socket) : nodeConnection.call(server, socket));
      this.server.removeListener('connection', nodeConnection);
      this.onConnection = this.http1;
      this.server.on('connection', this.http1);
    }
    this.limits.attach(this.server);
  }

  /**
   * `listen.h2c`: connections of the plain port that open with the HTTP/2 preface go to `h2`
   * (src/edge/h2.ts, loaded by the caller only when configured), the others to HTTP/1.1 as before
   * (src/dataplane/h2c.ts). Called once, before listening.
   */
  enableH2c(h2: Http2Server): void {
    if (this.h2c !== null) return;
    const port = new H2cPort(h2);
    this.h2c = port;
    this.server.removeListener('connection', this.onConnection);
    this.onConnection = port.accept(this.http1);
    this.server.on('connection', this.onConnection);
  }

  /** Connections the raw-socket front serves now (plain and TLS), 0 without the front: for tests and diagnostics. */
  get frontConnections(): number {
    return this.front?.connections.size ?? 0;
  }

  /** Turns tracing on (a worker loads the SDK after construction, in its async listen()). */
  setTracing(tracing: Tracing | null): void {
    this.tracing = tracing;
  }

  /** Of those, the ones that read into the front's own buffer (front.ts readInto): for tests and diagnostics. */
  get frontDirectConnections(): number {
    return this.front?.direct ?? 0;
  }

  /** Closes the client connections with no request in flight (shutdown, as they go idle). */
  closeIdleConnections(): void {
    this.server.closeIdleConnections();
    this.front?.closeIdle();
    this.h2c?.closeIdle();
  }

  /** Closes every client connection. */
  closeAllConnections(): void {
    this.mirror.close();
    this.server.closeAllConnections();
    this.front?.closeAll();
    this.h2c?.closeAll();
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

  /**
   * Accepts on sockets a previous Switchyard handed over (src/upgrade): the first one is the http
   * server's, the others acceptors as in `addAcceptors`. No port claim here: the process takes it
   * once the old one released it (`holdClaim`). Resolves with the port.
   */
  async adopt(handles: readonly ListenHandle[]): Promise<number> {
    const [first, ...more] = handles;
    if (first === undefined) throw new ProcessError('UPGRADE_FAILED', 'adopt: no socket to accept on');
    await adopt(this.server, first);
    for (const h of more) {
      const acceptor = createNetServer({ noDelay: true }, (socket) => this.server.emit('connection', socket));
      await adopt(acceptor, h);
      this.acceptors.push(acceptor);
      this.limits.watch(acceptor);
    }
    return (this.server.address() as AddressInfo).port;
  }

  /** The listening servers of the proxy port (the http server and the acceptors), for a hand-over. */
  listeners(): NetServer[] {
    return this.server.listening ? [this.server, ...this.acceptors] : [];
  }

  /** Holds the port claim taken after a hand-over; released by `stopListening` as the one `listen` takes. */
  holdClaim(claim: PortClaim): void {
    this.claim?.release();
    this.claim = claim;
  }

  /** Stops accepting connections (every listener); open connections are left to the caller. */
  stopListening(): void {
    this.claim?.release();
    this.claim = null;
    this.server.close();
    for (const a of this.acceptors) a.close();
    this.acceptors.length = 0;
  }

  /**
   * The routing decision of a request: routing/decide on its facts, this plane's random draw and
   * clock, and the Runtime's view of which pools have a target up. `target`: the origin-form
   * request target (path and query).
   */
  decide(app: AppRoute, req: ClientRequest, fwd: ForwardedRequest, target: string, opts?: DecideOptions): Decision {
    const now = this.now();
    const facts = new ProxyFacts(req.rawHeaders, fwd, req.method ?? 'GET', target, this.opts.runtime, app.index, now);
    const d = decide(app, facts, this.random(), now, facts, opts);
    if (d.previewRejected) this.opts.onPreviewRejected?.(app);
    return d.by === 'pin' ? { app, pool: d.pool, by: d.by, fwd, at: now } : { app, pool: d.pool, by: d.by };
  }

  private readonly handleNow = (req: ClientRequest, res: ClientResponse): void => this.handle(req, res);

  /** Routes and forwards one request (every front, node:http, h2). An exception ends this request only (guard.ts). */
  handle(req: ClientRequest, res: ClientResponse): void {
    try {
      this.route(req, res);
    } catch (err) {
      this.limits.guard.request(err, res);
    }
  }

  private route(req: ClientRequest, res: ClientResponse): void {
    headerReceived(req.socket);
    // an upgrade we serve as a plain request (h2c): llhttp took what followed its head as the new
    // protocol's bytes, so a request pipelined behind it would never be answered; closing the
    // connection after this response tells the client to send it again (RFC 9112 §9.3.2)
    if (req.headers.upgrade !== undefined) res.shouldKeepAlive = false;
    const encrypted = (req.socket as { encrypted?: boolean }).encrypted === true;
    if (this.opts.intercept !== undefined && !encrypted && this.opts.intercept(req, res)) return;
    const remote = normalizeAddress(req.socket.remoteAddress);
    const line = parseRequestTarget(req);
    if ('status' in line) {
      refuse(res, line.status, line.reason);
      return;
    }
    const fwd = forwardRequestHeaders(req.rawHeaders, remote, this.opts.trust, line.authority ?? undefined, encrypted ? 'https' : 'http');
    if ('error' in fwd) {
      if ('code' in fwd) sendError(res, fwd.code, fwd.requestId, true);
      else refuse(res, fwd.status, fwd.error);
      return;
    }
    const app = findApp(this.opts.source.snapshot, fwd.host);
    if (app === null) {
      sendError(res, 'MISDIRECTED', fwd.requestId, this.closing);
      return;
    }
    const decision = this.decide(app, req, fwd, line.path);
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
      this.opts.onRequest?.({ app, pool, by, requestId: fwd.requestId, method: req.method ?? 'GET', path: req.url ?? '/', outcome: { status: 503, error: 'NO_TARGET', startedAt: now, headAt: now, endedAt: now } });
      return;
    }
    // `te: trailers` is hop-by-hop, but an h2 hop wants it again: gRPC servers may check it (RFC 9113 §8.2.2)
    if (target.protocol === 'h2' && rawHeader(req.rawHeaders, 'te')?.toLowerCase().includes('trailers') === true) fwd.headers.push('te', 'trailers');
    const opts: Dispatcher.DispatchOptions = {
      method: req.method ?? 'GET',
      path: line.path,
      headers: fwd.headers,
      // an h2 stream's body is its core stream (src/edge/h2.ts), an HTTP/1.1 one the request itself
      body: fwd.hasBody ? (req.requestBody ?? (req as ClientRequest & Readable)) : null,
    };
    const setCookie = by === 'weights' ? this.pins.setCookie(app, pool, now) : null;
    // shadow traffic: the copy is sent after this request is on its way and never waited on
    if (app.mirror !== null) {
      const m = mirrorFor(app, pool, opts.method, this.random());
      if (m !== null) decision.mirror = this.mirror.copy(app, pool, m, opts.method, line.path, fwd, fwd.hasBody ? (rawHeader(req.rawHeaders, 'content-length') ?? null) : '0', (opts.body as Readable | Buffer | null | undefined) ?? null);
    }
    // routed to a target: now the client may send its body (Node left the Expect to us; on
    // HTTP/1.1 only 100-continue gets here, any other expectation got 417; h2 sends it as a HEADERS frame)
    if (fwd.hasBody && req.headers.expect !== undefined && (req.httpVersionMinor === 1 || (req.httpVersionMajor === 2 && /^100-continue$/i.test(String(req.headers.expect))))) res.writeContinue?.();
    const handler = new ProxyHandler(this, req, res, runtime, target, opts, pool.servedBy, fwd.requestId, setCookie);
    handler.tag = span === null ? decision : { ...decision, span };
    handler.start();
  }

  /**
   * A request a pin held on a draining pool failed to connect there, and the pool has no target
   * up any more (forward.ts asks only then, so nothing of it reached that pool): it is routed
   * again by weight exactly as if it carried no pin, recorded as such, and its response pins the
   * new pool (docs/routing.md §3: never a 503 when another pool can serve). False: not a
   * pinned request, or the weights find no target either.
   */
  reroute(handler: ProxyHandler): boolean {
    const pinned = handler.tag as Decision;
    if (pinned.by !== 'pin' || pinned.fwd === undefined) return false;
    // a body the engine began to read could not go whole to another pool (engines read none before
    // connecting); a whole body (a Buffer, from the raw front) can always go again
    if ((handler.opts.body as Partial<Readable> | null | undefined)?.readableDidRead === true) return false;
    const app = pinned.app;
    const decision = this.decide(app, handler.req, pinned.fwd, handler.opts.path, { skipPin: true });
    const runtime = this.opts.runtime.apps[app.index]?.pools[decision.pool.index];
    const now = this.now();
    const target = runtime?.pick(now, null) ?? null;
    if (runtime === undefined || target === null) return false;
    // the draining pool did not serve it: it leaves the pool's pinned figure
    if (pinned.at !== undefined) handler.pool.pinned.remove(pinned.at);
    decision.mirror = pinned.mirror ?? null;
    handler.tag = pinned.span === undefined ? decision : { ...decision, span: pinned.span };
    handler.moveTo(runtime, target, decision.pool.servedBy, this.pins.setCookie(app, decision.pool, now));
    return true;
  }

  requestDone(handler: ProxyHandler, outcome: Outcome): void {
    const decision = handler.tag as Decision;
    decision.mirror?.live(outcome);
    if (decision.span !== undefined) this.tracing?.end(decision.span, decision, handler.target.url, outcome);
    const onRequest = this.opts.onRequest;
    if (onRequest === undefined) return;
    const { app, pool, by } = decision;
    onRequest({ app, pool, by, requestId: handler.requestId, method: handler.opts.method, path: handler.opts.path, outcome });
  }
}
