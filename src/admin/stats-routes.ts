import type { LiveStats } from '../metrics/stats.ts';
import type { AdminRoute } from './router.ts';

/** `GET /v1/apps/:app/stats`: per pool over the last 10 s and 60 s, summed over the fleet when there is one. */
export function statsRoutes(stats: LiveStats): AdminRoute[] {
  return [{ method: 'GET', path: '/v1/apps/:app/stats', handler: (ctx) => ({ json: stats.view(ctx.params['app'] as string) }) }];
}
