import type { LiveStats, StatsView } from '../metrics/stats.ts';
import type { AdminRoute } from './router.ts';

/**
 * `GET /v1/apps/:app/stats`: per pool over the last 10 s and 60 s, summed over the fleet when
 * there is one; `?history=1` adds the 10 s figures of each second of the last minute. `amend`:
 * what a process group's primary adds (its workers) to the view.
 */
export function statsRoutes(stats: LiveStats, amend: (view: StatsView) => object = (view) => view): AdminRoute[] {
  return [{ method: 'GET', path: '/v1/apps/:app/stats', handler: (ctx) => ({ json: amend(stats.view(ctx.params['app'] as string, { history: wantsHistory(ctx.url) })) }) }];
}

/** `?history=1` (or `true`): anything else, or nothing, leaves the history out. */
export function wantsHistory(url: URL): boolean {
  const v = url.searchParams.get('history');
  return v === '1' || v === 'true';
}
