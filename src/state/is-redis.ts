import type { RedisStore } from './redis-store.ts';
import type { StateStore } from './types.ts';

/**
 * Whether a store is the Redis one, without importing it: ioredis (~7 MB of RSS) is loaded only
 * when the config asks for Redis (see `openStore`). Apart from types.ts, which the Redis store
 * itself imports, so that the two do not name each other.
 */
export function isRedisStore(store: StateStore): store is RedisStore {
  return store.kind === 'redis';
}
