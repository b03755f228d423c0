import type { Controller, WriteOptions } from '../control/controller.ts';
import type { RollbackPlan } from '../control/rollback-plan.ts';
import type { CountsSource } from '../control/counts.ts';
import { SwitchyardError } from '../errors.ts';
import type { HealthSource } from '../health/monitor.ts';
import type { RoutingState } from '../state/types.ts';
import { ANONYMOUS } from './auth.ts';
import { ifNoneMatchHits, rollbackBody, switchBody, weightsBodyFor } from './body.ts';
import type { AdminRoute, Reply, RouteContext } from './router.ts';
import { rollbackDryRun, type RollbackDryRun } from './rollback-view.ts';
import { appStateView, drainView, historyView, type TargetFiguresSource } from './views.ts';

export interface CoreRouteDeps {
  readonly controller: Controller;
  readonly counts: CountsSource;
  /** target health in AppState, `expectVersion` on switch */
  readonly health?: HealthSource | undefined;
  readonly now: () => number;
  readonly ready: () => boolean;
  readonly readyDetails?: (() => Record<string, unknown>) | undefined;
  readonly metrics?: { readonly contentType: string; render(): Promise<string> } | undefined;
  /** whether /metrics needs a token (config.admin.metricsAuth) */
  readonly metricsAuth: boolean;
  /** this instance's per-target figures (AppState `targetFigures`, drain `targets`) */
  readonly targetFigures?: TargetFiguresSource | undefined;
}

export const HISTORY_DEFAULT_LIMIT = 50;
/** the store's own bound (store.historyLimit's largest value): a page can hold the whole history */
export const HISTORY_MAX_LIMIT = 100_000;

/** `"7"`: the ETag of an app's state is its revision. */
export function etagOf(revision: number): string {
  return `"${revision}"`;
}

/** An app's AppState with its ETag: of `state` when given (what a write wrote), else the current one. */
export function appStateReply(controller: Controller, counts: CountsSource, app: string, status = 200, health?: HealthSource, state?: RoutingState, figures?: TargetFiguresSource): Reply {
  const view = appStateView(controller, counts, app, health, state, Date.now(), figures);
  return { status, headers: { etag: etagOf(view.revision) }, json: view };
}

/**
 * Runs a write and answers the AppState it wrote (never a later writer's: under concurrency the
 * body and ETag are this write's own revision), or the current one for a write that changed
 * nothing. A stale If-Match is a 412 that carries the current state (and its ETag), so the
 * caller can look and retry without another round trip.
 */
export async function write(deps: CoreRouteDeps, ctx: RouteContext, app: string, run: (opts: WriteOptions) => Promise<RoutingState>, fields: { reason?: string | null | undefined; force?: boolean | undefined }, status = 200): Promise<Reply> {
  const opts: WriteOptions = { by: ctx.actor ?? ANONYMOUS, reason: fields.reason ?? null, expectedRevision: ctx.expectedRevision(), force: fields.force ?? false };
  let written: RoutingState;
  try {
    written = await run(opts);
  } catch (err) {
    if (err instanceof SwitchyardError && err.code === 'STALE_REVISION') {
      // an app that does not exist (PUT /v1/apps/:app with a stale If-Match) has no state to show
      if (!deps.controller.has(app)) throw err;
      const current = appStateView(deps.controller, deps.counts, app, deps.health, undefined, Date.now(), deps.targetFigures);
      const stale = new SwitchyardError('STALE_REVISION', err.message, { details: { currentRevision: current.revision, current } });
      return { status: stale.status, headers: { etag: etagOf(current.revision) }, json: stale.toJSON() };
    }
    throw err;
  }
  return appStateReply(deps.controller, deps.counts, app, status, deps.health, written, deps.targetFigures);
}

/** `expectVersion` of a switch: a fresh check of `to`'s targets, 409 VERSION_MISMATCH unless they all run it. */
async function verifyVersion(deps: CoreRouteDeps, app: string, to: string, expected: string): Promise<void> {
  if (!Object.hasOwn(deps.controller.appConfig(app).pools, to)) return; // the switch answers the 404
  if (deps.health === undefined) throw new SwitchyardError('VERSION_MISMATCH', 'this admin server has no health checks to read versions from');
  await deps.health.verifyVersion(app, to, expected);
}

/** What a rollback would write now, and what it would answer (VERSION_CHANGED unless forced); writes nothing. */
async function rollbackDryRunOf(controller: Controller, app: string, force: boolean): Promise<RollbackDryRun> {
  const plan = await controller.rollbackPlan(app);
  const refusal = plan.versionChanged.length > 0 && !force ? new SwitchyardError('VERSION_CHANGED', `would send traffic to ${plan.versionChanged.map((p) => `${p}, which ran ${plan.pools[p]?.versionThen} then and runs ${plan.pools[p]?.versionNow} now`).join('; ')}; send force: true (CLI --force; the dashboard asks) to roll back anyway`) : null;
  return rollbackDryRun(app, plan, Object.keys(controller.appConfig(app).pools), refusal);
}

function historyLimit(url: URL): number {
  return intParam(url, 'limit', HISTORY_DEFAULT_LIMIT, 1, HISTORY_MAX_LIMIT);
}

function intParam(url: URL, name: string, fallback: number, min: number, max: number): number {
  const raw = url.searchParams.get(name);
  if (raw === null) return fallback;
  const n = /^\d{1,7}$/.test(raw) ? Number(raw) : NaN;
  if (!(n >= min && n <= max)) {
    const message = `must be an integer from ${min} to ${max}`;
    throw new SwitchyardError('BAD_REQUEST', `${name}: ${message}, got "${raw.slice(0, 20)}"`, { details: [{ path: name, message }] });
  }
  return n;
}

export function flag(url: URL, name: string): boolean {
  const v = url.searchParams.get(name);
  return v === '1' || v === 'true' || v === '';
}

/** The endpoints of docs/admin-api.md §1 this module answers (whereis, stats and rollouts plug in later). */
export function coreRoutes(deps: CoreRouteDeps): AdminRoute[] {
  const { controller, counts } = deps;
  const param = (ctx: RouteContext, name: string): string => ctx.params[name] as string;
  const routes: AdminRoute[] = [
    { method: 'GET', path: '/healthz', handler: () => ({ json: { status: 'ok' } }) },
    {
      method: 'GET',
      path: '/readyz',
      handler: () => {
        const ready = deps.ready();
        const json: Record<string, unknown> = { status: ready ? 'ready' : 'unavailable' };
        if (deps.readyDetails !== undefined) json.details = deps.readyDetails();
        return { status: ready ? 200 : 503, json };
      },
    },
    { method: 'GET', path: '/v1/apps', handler: () => ({ json: { apps: controller.appNames().map((a) => appStateView(controller, counts, a, deps.health, undefined, Date.now(), deps.targetFigures)) } }) },
    {
      method: 'GET',
      path: '/v1/apps/:app',
      handler: (ctx) => {
        const app = param(ctx, 'app');
        const etag = etagOf(controller.state(app).revision);
        if (ifNoneMatchHits(ctx.req.headers['if-none-match'], etag)) return { status: 304, headers: { etag }, json: null };
        return appStateReply(controller, counts, app, 200, deps.health, undefined, deps.targetFigures);
      },
    },
    {
      method: 'POST',
      path: '/v1/apps/:app/switch',
      handler: async (ctx) => {
        const app = param(ctx, 'app');
        controller.appConfig(app);
        const body = await ctx.body(switchBody);
        if (body.expectVersion !== undefined) await verifyVersion(deps, app, body.to, body.expectVersion);
        return write(deps, ctx, app, (opts) => controller.switchTo(app, body.to, opts), body);
      },
    },
    {
      method: 'PUT',
      path: '/v1/apps/:app/weights',
      handler: async (ctx) => {
        const app = param(ctx, 'app');
        const body = await ctx.body(weightsBodyFor(Object.keys(controller.appConfig(app).pools)));
        const weights = controller.parseWeights(app, body.weights);
        return write(deps, ctx, app, (opts) => controller.setWeights(app, weights, opts), body);
      },
    },
    {
      method: 'POST',
      path: '/v1/apps/:app/rollback',
      handler: async (ctx) => {
        const app = param(ctx, 'app');
        controller.appConfig(app);
        const body = await ctx.body(rollbackBody);
        if (flag(ctx.url, 'dryRun')) return { json: await rollbackDryRunOf(controller, app, body.force === true) };
        const seen: { plan?: RollbackPlan } = {};
        const reply = await write(deps, ctx, app, (opts) => controller.rollback(app, opts, (p) => (seen.plan = p)), body);
        // the AppState it wrote, and what it restored: the weights and each pool's version then and now
        if (reply === undefined || !('json' in reply) || reply.status !== 200 || seen.plan === undefined) return reply;
        return { ...reply, json: { ...(reply.json as object), rollback: rollbackDryRun(app, seen.plan, Object.keys(controller.appConfig(app).pools), null, false) } };
      },
    },
    {
      method: 'GET',
      path: '/v1/apps/:app/history',
      handler: async (ctx) => {
        const app = param(ctx, 'app');
        const pools = Object.keys(controller.appConfig(app).pools);
        const limit = historyLimit(ctx.url);
        const offset = intParam(ctx.url, 'offset', 0, 0, HISTORY_MAX_LIMIT);
        const entries = await controller.history(app, limit, offset);
        // a full page may have more behind it: `next` is the offset of the next page (offsets move as writes land)
        return { json: { ...historyView(entries, pools), next: entries.length === limit ? offset + limit : null } };
      },
    },
    {
      method: 'GET',
      path: '/v1/apps/:app/pools/:pool/drain',
      handler: (ctx) => ({ json: drainView(controller, counts, param(ctx, 'app'), param(ctx, 'pool'), deps.now(), { byInstance: flag(ctx.url, 'instances'), figures: deps.targetFigures }) }),
    },
  ];
  const metrics = deps.metrics;
  if (metrics !== undefined) {
    routes.push({ method: 'GET', path: '/metrics', auth: deps.metricsAuth, handler: async () => ({ raw: await metrics.render(), contentType: metrics.contentType }) });
  }
  return routes;
}
