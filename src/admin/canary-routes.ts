import type { Controller } from '../control/controller.ts';
import { SwitchyardError } from '../errors.ts';
import { poolForBucket, stickyBucket } from '../routing/choose.ts';
import type { AdminRoute } from './router.ts';

/**
 * `GET /v1/apps/:app/whereis?key=K`: the bucket of a sticky key and the pool it gets now under
 * the current weights — what support needs when a user says "I see the new version". Pins and
 * preview headers a request may also carry are not part of the answer.
 */
export function canaryRoutes(controller: Controller): AdminRoute[] {
  return [
    {
      method: 'GET',
      path: '/v1/apps/:app/whereis',
      handler: ({ params, url }) => {
        const name = params['app'] as string;
        controller.appConfig(name);
        const app = controller.snapshot.byName.get(name);
        if (app === undefined) throw new SwitchyardError('UNKNOWN_APP', `unknown app "${name}"`);
        const key = url.searchParams.get('key');
        if (key === null || key === '') throw new SwitchyardError('BAD_REQUEST', 'key: required', { details: [{ path: 'key', message: 'required' }] });
        if (app.sticky === null) throw new SwitchyardError('CONFLICT', `app "${name}" has no sticky config: its split is random per request`);
        const bucket = stickyBucket(app, key);
        const pool = poolForBucket(app, bucket);
        return { json: { key, bucket, pool: pool.name, version: pool.version, revision: app.revision } };
      },
    },
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
