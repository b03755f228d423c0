import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.ts';
import type { Controller } from '../control/controller.ts';
import type { CountsSource } from '../control/counts.ts';
import type { HealthSource } from '../health/monitor.ts';
import { SwitchyardError } from '../errors.ts';
import { readFileSync } from 'node:fs';
import { http, https } from '../node-http.ts';
import { Authenticator } from './auth.ts';
import { attachOpenApi } from './openapi.ts';
import { parseIfMatch, readJson, validate } from './body.ts';
import { RequestGuard } from './request-guard.ts';
import { definitionRoutes } from './definition-routes.ts';
import { routingRoutes } from './routing-routes.ts';
import { coreRoutes } from './routes.ts';
import type { TargetFiguresSource } from './views.ts';
import { isV1, Router, writeError, writeReply, type AdminRoute, type FallbackHandler, type RouteContext } from './router.ts';

export interface AdminServerDeps {
  readonly config: Config;
  readonly controller: Controller;
  readonly counts: CountsSource;
  /** target health in AppState and `expectVersion` on switch; without it neither is available */
  readonly health?: HealthSource;
  readonly logger: Logger;
  /** @default Date.now */
  readonly now?: () => number;
  /** `/readyz` answers 200 while this is true, 503 otherwise (loading, shutting down) */
  readonly ready: () => boolean;
  /** extra fields for `/readyz`, under `details` */
  readonly readyDetails?: () => Record<string, unknown>;
  /** Prometheus registry (or anything alike) for `GET /metrics`; without it /metrics is a 404 */
  readonly metrics?: { readonly contentType: string; render(): Promise<string> };
  /**
   * Further endpoints (whereis, stats, rollouts, the dashboard), registered after the core
   * ones; a method and path already taken is an error at startup.
   */
  readonly routes?: readonly AdminRoute[];
  /** Tried for a path no route knows, before the 404 (e.g. the dashboard's static files). */
  readonly fallback?: FallbackHandler;
  /** this instance's per-target figures (AppState `targetFigures`, drain `targets`); omitted where it carries no traffic */
  readonly targetFigures?: TargetFiguresSource;
}

/** Bounded waits for a slow or stuck client. */
const HEADERS_TIMEOUT_MS = 10_000;
const REQUEST_TIMEOUT_MS = 30_000;

/**
 * The admin listener (docs/admin-api.md §1), not yet listening. Every answer is JSON, errors are
 * `{ error: { code, message, details? } }`; an unexpected exception is a logged 500, never a crash.
 */
export function createAdminServer(deps: AdminServerDeps): Server {
  const now = deps.now ?? Date.now;
  const { admin } = deps.config;
  const router = new Router();
  const coreDeps = { controller: deps.controller, counts: deps.counts, health: deps.health, now, ready: deps.ready, readyDetails: deps.readyDetails, metrics: deps.metrics, metricsAuth: admin.metricsAuth, targetFigures: deps.targetFigures };
  for (const route of [...coreRoutes(coreDeps), ...definitionRoutes(coreDeps), ...routingRoutes(coreDeps), ...(deps.routes ?? [])]) router.add(route);
  const authenticator = new Authenticator({ tokens: admin.tokens, maxFailedLogins: admin.maxFailedLogins, now });
  const logger = deps.logger;
  const guard = new RequestGuard({ adminHost: admin.host, allowedHosts: admin.allowedHosts });

  /** Answers 401/429 and returns null, or returns the actor. */
  function authenticate(req: IncomingMessage, res: ServerResponse): string | null {
    const r = authenticator.authenticate(req);
    if (r.ok) return r.actor;
    const headers = r.code === 'TOO_MANY_FAILED_LOGINS' ? { 'retry-after': String(r.retryAfterS) } : { 'www-authenticate': 'Bearer realm="switchyard"' };
    // the address, never the token
    logger.warn({ address: req.socket.remoteAddress, path: pathOf(req), code: r.code }, 'admin login refused');
    writeError(res, new SwitchyardError(r.code, r.message), headers);
    return null;
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = now();
    const method = req.method ?? 'GET';
    const url = new URL(`http://admin${pathOf(req)}`);
    let actor: string | null = null;
    res.once('finish', () => {
      logger.debug({ method, path: url.pathname, status: res.statusCode, actor, ms: now() - started }, 'admin request');
    });
    // before auth: a refused browser request learns nothing, not even whether a token is needed
    guard.check(req, url.pathname);
    if (isV1(url.pathname)) {
      actor = authenticate(req, res);
      if (actor === null) return;
    }
    const match = router.match(method, url.pathname);
    if (match.kind === 'route') {
      guard.checkWrite(req);
      if (actor === null && Router.needsAuth(match.route)) {
        actor = authenticate(req, res);
        if (actor === null) return;
      }
      const ctx: RouteContext = {
        req,
        res,
        url,
        params: match.params,
        actor,
        body: async (schema) => validate(schema, await readJson(req)),
        expectedRevision: () => parseIfMatch(req.headers['if-match']),
      };
      const reply = await match.route.handler(ctx);
      if (reply !== undefined) writeReply(res, reply);
    } else if (match.kind === 'method') {
      writeError(res, new SwitchyardError('METHOD_NOT_ALLOWED', `${method} is not allowed on ${url.pathname} (allowed: ${match.allow.join(', ')})`), { allow: match.allow.join(', ') });
    } else if (deps.fallback === undefined || !(await deps.fallback(req, res, url))) {
      writeError(res, new SwitchyardError('NOT_FOUND', `no such path: ${url.pathname.slice(0, 200)}`));
    }
  }

  function fail(req: IncomingMessage, res: ServerResponse, err: unknown): void {
    const path = pathOf(req).split('?')[0];
    if (!(err instanceof SwitchyardError)) {
      logger.error({ err, method: req.method, path }, 'admin request failed');
      err = new SwitchyardError('INTERNAL');
    } else if (err.status >= 500) {
      logger.warn({ err, method: req.method, path }, `admin request failed: ${err.code}`);
    } else if (err.code === 'HOST_NOT_ALLOWED' || err.code === 'CROSS_ORIGIN_REQUEST') {
      // what an operator needs to tell an attack from a missing admin.allowedHosts entry
      logger.warn({ address: req.socket.remoteAddress, method: req.method, path, host: req.headers.host, origin: req.headers.origin, code: err.code }, 'admin request from a browser page refused');
    }
    if (res.headersSent) {
      res.destroy();
      return;
    }
    const e = err as SwitchyardError;
    // an oversized body is left unread: close the connection rather than parse its rest as a request
    writeError(res, e, e.code === 'BODY_TOO_LARGE' ? { connection: 'close' } : {});
  }

  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    handle(req, res).catch((err: unknown) => fail(req, res, err));
  };
  const options = { headersTimeout: HEADERS_TIMEOUT_MS, requestTimeout: REQUEST_TIMEOUT_MS };
  const tls = deps.config.admin.tls;
  // admin.tls: tokens never cross the network in clear text (the files are read once, at start)
  const server = tls !== undefined
    ? https().createServer({ ...options, cert: readFileSync(tls.cert), key: readFileSync(tls.key), minVersion: 'TLSv1.2' }, onRequest)
    : http.createServer(options, onRequest);
  attachOpenApi(router, server);
  return server;
}

/** The request target as a path; the origin is fixed so a `//host/x` target cannot change the parsed host. */
function pathOf(req: IncomingMessage): string {
  const target = req.url ?? '/';
  return target.startsWith('/') ? target : `/${target}`;
}
