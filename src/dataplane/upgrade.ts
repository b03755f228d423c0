import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { findApp, type AppRoute } from '../routing/snapshot.ts';
import type { Outcome } from './types.ts';
import { forwardRequestHeaders, normalizeAddress, type ForwardedRequest } from './headers.ts';
import { parseRequestTarget } from './request-target.ts';
import type { PoolRuntime } from './pool-runtime.ts';
import type { DataPlaneOptions, Decision } from './types.ts';
import { errorResponse, textResponse } from './responses.ts';
import { CLOSE_BOUND_MS, UpgradeConnection } from './upgrade-connection.ts';

/**
 * Upgrade tokens never proxied: h2c through a proxy tunnels past its per-request routing and
 * header hygiene ("h2c smuggling"). Such a request is served as a plain request instead.
 */
const REFUSED_TOKENS = new Set(['h2c']);

function tokens(upgrade: string | undefined): string[] {
  return (upgrade ?? '').split(',').map((t) => t.trim().toLowerCase()).filter((t) => t !== '');
}

/** The server's `shouldUpgradeCallback`: which upgrade requests reach the upgrade pipe. */
export function isProxiedUpgrade(req: IncomingMessage): boolean {
  const t = tokens(req.headers.upgrade);
  return t.length > 0 && !t.some((x) => REFUSED_TOKENS.has(x));
}

/** The parts of the DataPlane the upgrade pipe routes with (routing/decide), so upgrades and requests route alike. */
export interface UpgradePlane {
  decide(app: AppRoute, req: IncomingMessage, fwd: ForwardedRequest, target: string): Decision;
  readonly closing: boolean;
}

/** Answers an upgrade request we will not proxy, then lets the socket go (bounded). */
function refuse(socket: Socket, response: string): void {
  const timer = setTimeout(() => socket.destroy(), CLOSE_BOUND_MS).unref();
  socket.once('close', () => clearTimeout(timer));
  socket.resume(); // read (and drop) what the client sends so its FIN is seen and the socket closes
  socket.end(response);
}

const ignore = (): void => undefined;

/**
 * Routes and proxies upgrade requests (WebSocket and any other token but h2c), wired from the
 * DataPlane's `upgrade` event. Routing and header hygiene are the request path's own
 * (`decide`, `forwardRequestHeaders`); the pool is chosen once, at upgrade time.
 */
export class UpgradeProxy {
  private readonly plane: UpgradePlane;
  private readonly opts: DataPlaneOptions;
  private readonly now: () => number;

  constructor(plane: UpgradePlane, opts: DataPlaneOptions) {
    this.plane = plane;
    this.opts = opts;
    this.now = opts.now ?? Date.now;
  }

  handle(req: IncomingMessage, socket: Socket, head: Buffer): void {
    // node:http takes its own error listener off an upgraded socket: without one, a client
    // reset would crash the process (http-proxy #1510)
    socket.on('error', ignore);
    const now = this.now();
    // the request line's checks of the request path (fragment, absolute-form, asterisk): an
    // upgrade's target once went upstream verbatim, `#fragment` and absolute-form included
    const line = parseRequestTarget(req);
    if ('status' in line) return refuse(socket, textResponse(line.status, `${line.status} ${line.reason}\n`, null));
    const fwd = forwardRequestHeaders(req.rawHeaders, normalizeAddress(socket.remoteAddress), this.opts.trust, line.authority ?? undefined, (socket as { encrypted?: boolean }).encrypted === true ? 'https' : 'http');
    if ('error' in fwd) return refuse(socket, 'code' in fwd ? errorResponse(fwd.code, fwd.requestId) : textResponse(400, `400 ${fwd.error}\n`, null));
    const upgrade = req.headers.upgrade ?? '';
    const toks = tokens(upgrade);
    // only reachable on Node < 24.9, which has no shouldUpgradeCallback to turn these into plain requests
    if (toks.length === 0 || toks.some((t) => REFUSED_TOKENS.has(t))) return refuse(socket, textResponse(400, `400 upgrade to "${upgrade}" is not proxied\n`, fwd.requestId));
    // what follows the head of an upgrade request is the new protocol, not a body
    if (fwd.hasBody) return refuse(socket, textResponse(400, '400 an upgrade request cannot carry a body\n', fwd.requestId));
    // a WebSocket opened now would be closed with 1001 a moment later: let the client retry elsewhere
    if (this.plane.closing) return refuse(socket, errorResponse('GOING_AWAY', fwd.requestId));
    const app = findApp(this.opts.source.snapshot, fwd.host);
    if (app === null) return refuse(socket, errorResponse('MISDIRECTED', fwd.requestId));
    const { pool, by } = this.plane.decide(app, req, fwd, req.url ?? '/');
    const runtime = (this.opts.runtime.apps[app.index] as DataPlaneOptions['runtime']['apps'][number]).pools[pool.index] as PoolRuntime;
    if (by === 'pin') runtime.pinned.add(now);
    const method = req.method ?? 'GET';
    const record = (outcome: Outcome): void => this.opts.onRequest?.({ app, pool, by, requestId: fwd.requestId, method, path: line.path, outcome });
    const target = runtime.pick(now, null);
    if (target === null) {
      record({ status: 503, error: 'NO_TARGET', startedAt: now, headAt: now, endedAt: now });
      return refuse(socket, errorResponse('NO_TARGET', fwd.requestId));
    }
    const conn = new UpgradeConnection(
      {
        client: socket,
        head,
        method,
        path: line.path,
        headers: [...fwd.headers, 'connection', 'Upgrade', 'upgrade', upgrade],
        upgrade,
        websocket: toks.includes('websocket'),
        pool: runtime,
        servedBy: pool.servedBy,
        requestId: fwd.requestId,
        timeouts: app.config.timeouts,
        now: this.now,
        onHandshake: record,
      },
      target,
    );
    conn.start();
  }
}
