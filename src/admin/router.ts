import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { z } from 'zod';
import { ProcessError, SwitchyardError } from '../errors.ts';

export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

/** What a route handler sees of its request. */
export interface RouteContext {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly url: URL;
  /** decoded `:name` segments of the route's path */
  readonly params: Readonly<Record<string, string>>;
  /** the matched token's name (`anonymous` without tokens); null on a route without auth */
  readonly actor: string | null;
  /** Reads, parses and validates the JSON body: 415, 413 and 400 (details naming fields) thrown as SwitchyardError. */
  body<T>(schema: z.ZodType<T>): Promise<T>;
  /** `If-Match` as the revision a write expects; undefined when absent or `*`; a malformed one is a 400. */
  expectedRevision(): number | undefined;
}

/** A JSON answer, a raw one (text, HTML, Prometheus), or undefined when the handler wrote `res` itself. */
export type Reply =
  | { readonly status?: number; readonly headers?: OutgoingHttpHeaders; readonly json: unknown }
  | { readonly status?: number; readonly headers?: OutgoingHttpHeaders; readonly raw: string | Buffer; readonly contentType: string }
  | undefined;

/**
 * One endpoint. Later features (whereis, stats, rollouts, the dashboard) add theirs through
 * `AdminServerDeps.routes` and get auth, 405s, body parsing and error rendering for free.
 */
export interface AdminRoute {
  readonly method: HttpMethod;
  /** `/v1/apps/:app/whereis`: literal segments and `:name` parameters */
  readonly path: string;
  /**
   * Needs a bearer token. Under /v1 a token is always required (docs/admin-api.md puts every /v1
   * path behind one), so this only matters elsewhere, e.g. `/metrics`.
   * @default true under /v1, false elsewhere
   */
  readonly auth?: boolean;
  handler(ctx: RouteContext): Reply | Promise<Reply>;
}

/**
 * Tried for a path no route knows, before the 404 (a `/v1` path only once authenticated):
 * answers on `res` itself and returns true, or returns false to let the 404 through.
 */
export type FallbackHandler = (req: IncomingMessage, res: ServerResponse, url: URL) => boolean | Promise<boolean>;

export type Match =
  | { readonly kind: 'route'; readonly route: AdminRoute; readonly params: Record<string, string> }
  | { readonly kind: 'method'; readonly allow: readonly string[] }
  | { readonly kind: 'none' };

interface Compiled {
  readonly route: AdminRoute;
  readonly segments: readonly string[];
}

export function isV1(pathname: string): boolean {
  return pathname === '/v1' || pathname.startsWith('/v1/');
}

/** `/a/b/` and `/a/b` are the same path; `/` stays `/`. */
function segmentsOf(path: string): string[] {
  const trimmed = path.length > 1 && path.endsWith('/') ? path.slice(0, -1) : path;
  return trimmed.split('/').slice(1);
}

/** A small exact-segment router: few routes, matched in registration order. */
export class Router {
  readonly #routes: Compiled[] = [];

  add(route: AdminRoute): this {
    const segments = segmentsOf(route.path);
    const clash = this.#routes.find((c) => c.route.method === route.method && c.segments.join('/') === segments.join('/'));
    if (clash !== undefined) throw new ProcessError('BUG', `admin route ${route.method} ${route.path} is registered twice`);
    this.#routes.push({ route, segments });
    return this;
  }

  /** Every route, in registration order (the OpenAPI document is built from this table). */
  routes(): readonly AdminRoute[] {
    return this.#routes.map((c) => c.route);
  }

  /** HEAD is answered by a GET route (node:http leaves the body out). */
  match(method: string, pathname: string): Match {
    const want = method === 'HEAD' ? 'GET' : method;
    const parts = segmentsOf(pathname);
    const allow = new Set<string>();
    for (const c of this.#routes) {
      const params = matchSegments(c.segments, parts);
      if (params === null) continue;
      if (c.route.method === want) return { kind: 'route', route: c.route, params };
      allow.add(c.route.method);
      if (c.route.method === 'GET') allow.add('HEAD');
    }
    return allow.size > 0 ? { kind: 'method', allow: [...allow] } : { kind: 'none' };
  }

  /** Whether a route needs a token: its own `auth`, else whether it lives under /v1. */
  static needsAuth(route: AdminRoute): boolean {
    return route.auth ?? isV1(route.path);
  }
}

function matchSegments(pattern: readonly string[], parts: readonly string[]): Record<string, string> | null {
  if (pattern.length !== parts.length) return null;
  const params: Record<string, string> = {};
  for (let i = 0; i < pattern.length; i++) {
    const p = pattern[i] as string;
    const v = parts[i] as string;
    if (p.startsWith(':')) {
      if (v === '') return null;
      let decoded: string;
      try {
        decoded = decodeURIComponent(v);
      } catch {
        throw new SwitchyardError('BAD_REQUEST', `malformed percent-encoding in the path segment "${v.slice(0, 100)}"`);
      }
      params[p.slice(1)] = decoded;
    } else if (p !== v) {
      return null;
    }
  }
  return params;
}

const BASE_HEADERS: OutgoingHttpHeaders = { 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' };

/** Writes a reply unless the response is already gone. */
export function writeReply(res: ServerResponse, reply: Exclude<Reply, undefined>): void {
  if (res.headersSent || res.destroyed) return;
  const status = reply.status ?? 200;
  if (status === 304) {
    res.writeHead(304, { ...BASE_HEADERS, ...reply.headers });
    res.end();
  } else if ('json' in reply) {
    const body = `${JSON.stringify(reply.json)}\n`;
    res.writeHead(status, { ...BASE_HEADERS, 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body), ...reply.headers });
    res.end(body);
  } else {
    res.writeHead(status, { ...BASE_HEADERS, 'content-type': reply.contentType, 'content-length': Buffer.byteLength(reply.raw), ...reply.headers });
    res.end(reply.raw);
  }
}

/** `{ error: { code, message, details? } }` with the code's status. */
export function writeError(res: ServerResponse, err: SwitchyardError, headers: OutgoingHttpHeaders = {}): void {
  writeReply(res, { status: err.status, headers, json: err.toJSON() });
}
