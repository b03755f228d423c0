import type { Controller } from '../control/controller.ts';
import { SwitchyardError } from '../errors.ts';
import type { AdminRoute } from './router.ts';

/** `GET /v1/apps/:app/pools/:pool/preview-header` (whereis: src/admin/routing-routes.ts). */
export function canaryRoutes(controller: Controller): AdminRoute[] {
  return [
    {
      // the signature is an HMAC of APP:POOL under the app's preview secret, so only a token holder
      // (or whoever has the secret) can mint the header
      method: 'GET',
      path: '/v1/apps/:app/pools/:pool/preview-header',
      handler: ({ params }) => {
        const name = params['app'] as string;
        const cfg = controller.appConfig(name);
        const poolName = params['pool'] as string;
        // a Map lookup: a pool name like `constructor` or `__proto__` is simply not there
        const pool = controller.snapshot.byName.get(name)?.poolsByName.get(poolName);
        if (pool === undefined) throw new SwitchyardError('UNKNOWN_POOL', `app "${name}" has no pool "${poolName}"`, { details: [{ path: 'pool', message: `unknown pool (pools: ${Object.keys(cfg.pools).join(', ')})` }] });
        if (cfg.preview === undefined || pool.previewValue === null) throw new SwitchyardError('CONFLICT', `app "${name}" has no preview config`);
        return { json: { header: cfg.preview.header, value: pool.previewValue } };
      },
    },
  ];
}
