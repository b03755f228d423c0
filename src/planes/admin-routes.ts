import { canaryRoutes } from '../admin/canary-routes.ts';
import type { AdminRoute } from '../admin/router.ts';
import { rolloutRoutes } from '../admin/rollout-routes.ts';
import { statsRoutes } from '../admin/stats-routes.ts';
import type { Controller } from '../control/controller.ts';
import { certificateRoutes, type CertificateSource } from '../edge/certificates-route.ts';
import type { LiveStats, StatsView } from '../metrics/stats.ts';
import type { Rollouts } from '../rollout/rollouts.ts';

export interface AdminRouteParts {
  readonly controller: Controller;
  readonly stats: LiveStats;
  /** what a process group's primary adds to the stats view (its workers) @default the view as it is */
  readonly statsView?: (view: StatsView) => object;
  readonly rollouts: Rollouts;
  /** the certificates this process serves (or, the primary of workers, sends); null without `listen.tls` */
  readonly certificates: () => CertificateSource | null;
  readonly now: () => number;
}

/**
 * The admin API's endpoints beyond the core ones `createAdminServer` registers itself (states,
 * definitions, routing, health, metrics): the one table the single process and a group's
 * primary both serve.
 */
export function adminRoutes(parts: AdminRouteParts): AdminRoute[] {
  const { controller } = parts;
  return [
    ...canaryRoutes(controller),
    ...statsRoutes(parts.stats, parts.statsView),
    ...certificateRoutes(parts.certificates, parts.now),
    ...rolloutRoutes(parts.rollouts, (app) => Object.keys(controller.appConfig(app).pools)),
  ];
}
