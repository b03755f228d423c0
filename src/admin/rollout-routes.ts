import { SwitchyardError } from '../errors.ts';
import type { Rollouts } from '../rollout/rollouts.ts';
import { approveBody, finishBody, parseRolloutBody, pauseBody, rolloutBody } from '../rollout/spec.ts';
import { ANONYMOUS } from './auth.ts';
import type { AdminRoute, RouteContext } from './router.ts';

const app = (ctx: RouteContext): string => ctx.params['app'] as string;
const actor = (ctx: RouteContext): string => ctx.actor ?? ANONYMOUS;

/**
 * docs/rollouts.md §1, §3: `POST /v1/apps/:app/rollouts` (201), `GET …/rollouts/current`, and
 * `POST …/rollouts/current/pause|resume|promote|abort|approve` (docs/gates.md §1), each answering the rollout.
 */
export function rolloutRoutes(rollouts: Rollouts, pools: (app: string) => readonly string[]): AdminRoute[] {
  const commands = (['pause', 'resume', 'promote', 'abort', 'approve'] as const).map(
    (command): AdminRoute => ({
      method: 'POST',
      path: `/v1/apps/:app/rollouts/current/${command}`,
      handler: async (ctx) => {
        const name = app(ctx);
        pools(name);
        const body: { reason?: string | null | undefined; force?: boolean | undefined } = command === 'pause' || command === 'resume' ? await ctx.body(pauseBody) : command === 'approve' ? await ctx.body(approveBody) : await ctx.body(finishBody);
        const force = body.force;
        return { json: await rollouts.command(name, command, { by: actor(ctx), reason: body.reason ?? null, force }) };
      },
    }),
  );
  return [
    {
      method: 'POST',
      path: '/v1/apps/:app/rollouts',
      handler: async (ctx) => {
        const name = app(ctx);
        const names = pools(name);
        const spec = parseRolloutBody(await ctx.body(rolloutBody), names, rollouts.prometheus);
        const view = await rollouts.begin(name, spec, { by: actor(ctx), expectedRevision: ctx.expectedRevision() });
        return { status: 201, headers: { location: `/v1/apps/${encodeURIComponent(name)}/rollouts/current` }, json: view };
      },
    },
    { method: 'GET', path: '/v1/apps/:app/rollouts/current', handler: async (ctx) => ({ json: await rollouts.current(app(ctx)) }) },
    // the same without a 404 when the app never had one (what the dashboard polls)
    { method: 'GET', path: '/v1/apps/:app/rollouts', handler: async (ctx) => ({ json: { current: await rollouts.current(app(ctx)).catch((err: unknown) => (err instanceof SwitchyardError && err.code === 'NOT_FOUND' ? null : Promise.reject(err))) } }) },
    ...commands,
  ];
}
