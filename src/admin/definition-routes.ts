import { z } from 'zod';
import { addTarget, defineApp, deleteApp, deletePool, putPool, removeTarget, type DefinitionDeps } from '../control/definitions.ts';
import type { WriteOptions } from '../control/controller.ts';
import { NAME_RE, versionLabel } from '../config/schema.ts';
import { SwitchyardError } from '../errors.ts';
import { refuseProtoKeys } from './body.ts';
import { ANONYMOUS } from './auth.ts';
import type { AdminRoute, RouteContext } from './router.ts';
import { etagOf, flag, write, type CoreRouteDeps } from './routes.ts';

const reason = z.string().max(1000).nullable().optional();
const force = z.boolean().optional();

/** `PUT /v1/apps/:app/pools/:pool` (targets are checked by the config's schema: `targets[1]: must be an http(s) URL…`) */
export const poolBody = z.strictObject({ version: versionLabel, targets: z.array(z.string()), reason });
/** `DELETE /v1/apps/:app/pools/:pool` and `DELETE /v1/apps/:app` (an empty body is `{}`) */
export const removeBody = z.strictObject({ reason, force });
/** `POST /v1/apps/:app/pools/:pool/targets` */
export const targetBody = z.strictObject({ url: z.string().min(1), reason });
/** `DELETE /v1/apps/:app/pools/:pool/targets?url=URL` (optional: `force` and the reason may come in the query instead) */
export const removeTargetBody = z.strictObject({ reason });
/** `PUT /v1/apps/:app`: `definition` is one `apps[]` entry of the config (its `name` comes from the path) */
export const appBody = z.strictObject({ definition: z.unknown(), reason });

function options(ctx: RouteContext, fields: { reason?: string | null | undefined; force?: boolean | undefined }): WriteOptions {
  return { by: ctx.actor ?? ANONYMOUS, reason: fields.reason ?? null, expectedRevision: ctx.expectedRevision(), force: fields.force ?? false };
}

/** A body-less DELETE is `{}`; one with a body must be JSON like any write. */
async function optionalBody<T>(ctx: RouteContext, schema: z.ZodType<T>): Promise<T> {
  const length = ctx.req.headers['content-length'];
  const chunked = ctx.req.headers['transfer-encoding'] !== undefined;
  if (!chunked && (length === undefined || length === '0')) return schema.parse({});
  return ctx.body(schema);
}

/** The live-definition endpoints of docs/definitions.md §2. */
export function definitionRoutes(deps: CoreRouteDeps): AdminRoute[] {
  const { controller } = deps;
  const d: DefinitionDeps = { controller, counts: deps.counts, now: deps.now };
  const param = (ctx: RouteContext, name: string): string => ctx.params[name] as string;
  return [
    {
      method: 'PUT',
      path: '/v1/apps/:app/pools/:pool',
      handler: async (ctx) => {
        const app = param(ctx, 'app');
        controller.appConfig(app);
        const pool = param(ctx, 'pool');
        // a new pool's name comes from the path: `__proto__` once answered 200 and wrote nothing
        if (!NAME_RE.test(pool)) throw new SwitchyardError('BAD_REQUEST', `pool: "${pool.slice(0, 100)}" must match [a-z0-9-]{1,63}`, { details: [{ path: 'pool', message: 'must match [a-z0-9-]{1,63}' }] });
        const body = await ctx.body(poolBody);
        return write(deps, ctx, app, (opts) => putPool(d, app, pool, body, opts), body);
      },
    },
    {
      method: 'DELETE',
      path: '/v1/apps/:app/pools/:pool',
      handler: async (ctx) => {
        const app = param(ctx, 'app');
        controller.appConfig(app);
        const body = await optionalBody(ctx, removeBody);
        return write(deps, ctx, app, (opts) => deletePool(d, app, param(ctx, 'pool'), opts), body);
      },
    },
    {
      method: 'POST',
      path: '/v1/apps/:app/pools/:pool/targets',
      handler: async (ctx) => {
        const app = param(ctx, 'app');
        controller.appConfig(app);
        const body = await ctx.body(targetBody);
        return write(deps, ctx, app, (opts) => addTarget(d, app, param(ctx, 'pool'), body.url, opts), body);
      },
    },
    {
      method: 'DELETE',
      path: '/v1/apps/:app/pools/:pool/targets',
      handler: async (ctx) => {
        const app = param(ctx, 'app');
        controller.appConfig(app);
        const url = ctx.url.searchParams.get('url');
        if (url === null || url === '') throw new SwitchyardError('BAD_REQUEST', 'url: the target to remove is required (?url=http://host:port)', { details: [{ path: 'url', message: 'required' }] });
        const body = await optionalBody(ctx, removeTargetBody);
        const fields = { reason: body.reason ?? ctx.url.searchParams.get('reason'), force: flag(ctx.url, 'force') };
        return write(deps, ctx, app, (opts) => removeTarget(d, app, param(ctx, 'pool'), url, opts), fields);
      },
    },
    {
      method: 'PUT',
      path: '/v1/apps/:app',
      handler: async (ctx) => {
        const app = param(ctx, 'app');
        const body = await ctx.body(appBody);
        // zod's records drop an own `__proto__` key without a word (a pool so named vanished and the write answered 200)
        refuseProtoKeys(body.definition, ['definition']);
        let created = false;
        const reply = await write(deps, ctx, app, async (opts) => {
          const r = await defineApp(d, app, body.definition, opts);
          created = r.created;
          return r.state;
        }, body);
        return created && reply !== undefined ? { ...reply, status: 201 } : reply;
      },
    },
    {
      method: 'DELETE',
      path: '/v1/apps/:app',
      handler: async (ctx) => {
        const app = param(ctx, 'app');
        controller.appConfig(app);
        const body = await optionalBody(ctx, removeBody);
        const state = await deleteApp(d, app, options(ctx, body));
        return { headers: { etag: etagOf(state.revision) }, json: { app, revision: state.revision, deleted: true, updatedAt: state.updatedAt, updatedBy: state.updatedBy, reason: state.reason } };
      },
    },
    {
      method: 'GET',
      path: '/v1/config',
      handler: () => ({ json: { apps: controller.appNames().map((a) => controller.definition(a)) } }),
    },
  ];
}
