import { z } from 'zod';
import { setMirror, setRules } from '../control/routing-writes.ts';
import { SwitchyardError } from '../errors.ts';
import { decide } from '../routing/decide.ts';
import type { RequestFacts } from '../routing/rules.ts';
import type { AppRoute, PoolRoute } from '../routing/snapshot.ts';
import type { AdminRoute, RouteContext } from './router.ts';
import { write, type CoreRouteDeps } from './routes.ts';

const reason = z.string().max(1000).nullable().optional();

/** `PUT /v1/apps/:app/rules`: each rule is checked by the config's schema (`rules[1].to: unknown pool…`). */
export const rulesBody = z.strictObject({ rules: z.array(z.unknown()).max(1000), reason });
/** `PUT /v1/apps/:app/mirror`: `null` removes the mirror. */
export const mirrorBody = z.strictObject({ mirror: z.union([z.record(z.string(), z.unknown()), z.null()]), reason });

/** `NAME:VALUE` / `NAME=VALUE` query parameters as a map (lower-cased names for headers). */
function pairs(url: URL, param: string, sep: string, lower: boolean): Map<string, string> {
  const out = new Map<string, string>();
  for (const raw of url.searchParams.getAll(param)) {
    const i = raw.indexOf(sep);
    if (i <= 0) throw new SwitchyardError('BAD_REQUEST', `${param}: must be NAME${sep}VALUE, got "${raw.slice(0, 60)}"`, { details: [{ path: param, message: `must be NAME${sep}VALUE` }] });
    const name = raw.slice(0, i).trim();
    const key = lower ? name.toLowerCase() : name;
    if (!out.has(key)) out.set(key, raw.slice(i + 1).trim());
  }
  return out;
}

/** A request described by `whereis`' query: what routing/decide would read of a real one. */
class DescribedRequest implements RequestFacts {
  readonly method: string;
  readonly clientIp: string;
  private readonly headers: Map<string, string>;
  private readonly cookies: Map<string, string>;
  private readonly queryParams: Map<string, string>;
  private readonly pathOnly: string;

  constructor(url: URL) {
    this.headers = pairs(url, 'header', ':', true);
    this.cookies = pairs(url, 'cookie', '=', false);
    const path = url.searchParams.get('path') ?? '/';
    const q = path.indexOf('?');
    this.pathOnly = q === -1 ? path : path.slice(0, q);
    this.queryParams = pairs(url, 'query', '=', false);
    if (q !== -1) for (const [k, v] of new URLSearchParams(path.slice(q + 1))) if (!this.queryParams.has(k)) this.queryParams.set(k, v);
    this.method = (url.searchParams.get('method') ?? 'GET').toUpperCase();
    this.clientIp = url.searchParams.get('ip') ?? '';
  }
  header(lname: string): string | undefined {
    return this.headers.get(lname);
  }
  cookie(name: string): string | undefined {
    return this.cookies.get(name);
  }
  query(name: string): string | undefined {
    return this.queryParams.get(name);
  }
  path(): string {
    return this.pathOnly;
  }
}

const DESCRIBING = ['key', 'header', 'cookie', 'query', 'path', 'method', 'ip'];

/**
 * `GET /v1/apps/:app/whereis?key=K&header=N:V&cookie=N=V&query=N=V&path=P&method=M`: where such
 * a request goes now and which step decided (`by`), computed by the data plane's own
 * routing/decide. A pool counts as able to serve when the health checks say so (without checks:
 * when it has targets). When the answer depends on the per-request random draw (no sticky key),
 * `pool` is null and `random` true.
 */
function whereis(deps: CoreRouteDeps, ctx: RouteContext): Record<string, unknown> {
  const name = ctx.params['app'] as string;
  const cfg = deps.controller.appConfig(name);
  const app = deps.controller.snapshot.byName.get(name) as AppRoute;
  const url = ctx.url;
  if (!DESCRIBING.some((p) => url.searchParams.has(p))) {
    throw new SwitchyardError('BAD_REQUEST', 'key: required (a sticky key), or describe the request with header=, cookie=, query=, path= or method=', { details: [{ path: 'key', message: 'required' }] });
  }
  const facts = new DescribedRequest(url);
  const key = url.searchParams.get('key');
  const serving = {
    serves: (pool: PoolRoute): boolean => {
      const p = cfg.pools[pool.name];
      if (p === undefined || (p.targets.length === 0 && p.discover === undefined)) return false;
      return deps.health === undefined || deps.health.poolHealth(name, pool.name).healthy;
    },
  };
  const opts = key === null || key === '' ? {} : { key };
  const now = deps.now();
  const low = decide(app, facts, 0, now, serving, opts);
  const high = decide(app, facts, 1 - Number.EPSILON, now, serving, opts);
  const base = { key: low.key, revision: app.revision };
  if (low.pool !== high.pool || low.by !== high.by) {
    return { ...base, bucket: null, pool: null, version: null, by: null, random: true, message: 'no sticky key: split at random per request' };
  }
  return { ...base, bucket: low.key === null ? null : low.bucket, pool: low.pool.name, version: low.pool.version, by: low.by };
}

/** The routing endpoints of docs/cohorts.md §5 and §7: the rules and mirror writes, and `whereis`. */
export function routingRoutes(deps: CoreRouteDeps): AdminRoute[] {
  const { controller } = deps;
  return [
    {
      method: 'PUT',
      path: '/v1/apps/:app/rules',
      handler: async (ctx) => {
        const app = ctx.params['app'] as string;
        controller.appConfig(app);
        const body = await ctx.body(rulesBody);
        return write(deps, ctx, app, (opts) => setRules(controller, app, body.rules, opts), body);
      },
    },
    {
      method: 'PUT',
      path: '/v1/apps/:app/mirror',
      handler: async (ctx) => {
        const app = ctx.params['app'] as string;
        controller.appConfig(app);
        const body = await ctx.body(mirrorBody);
        return write(deps, ctx, app, (opts) => setMirror(controller, app, body.mirror, opts), body);
      },
    },
    { method: 'GET', path: '/v1/apps/:app/whereis', handler: (ctx) => ({ json: whereis(deps, ctx) }) },
  ];
}
