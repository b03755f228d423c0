import type { RedisOptions } from 'ioredis';

/** Where and how to reach Redis: the `store` section of the config (kind redis), minus what the store itself uses. */
export interface RedisConnection {
  /** `redis://[user:pass@]host[:port][/db]` or `rediss://…` (TLS). With `sentinels`, only its credentials, db and scheme count. */
  readonly url: string;
  /** Overrides a password in the URL; the config may take it from `${ENV}`. */
  readonly password?: string | undefined;
  /** Sentinel nodes to ask for the current master of `name`. */
  readonly sentinels?: readonly { readonly host: string; readonly port: number }[] | undefined;
  /** The master group name the sentinels know. Required with `sentinels`. */
  readonly name?: string | undefined;
  /** Per-command deadline in ms; also bounds the connect attempt. @default 2000 */
  readonly commandTimeout?: number | undefined;
}

/** Longest pause between reconnect attempts: Redis back after an outage is noticed within about this. */
export const MAX_RECONNECT_DELAY_MS = 1000;

/**
 * ioredis options for a fail-fast client: a command either runs now or rejects (no offline
 * queue, no resend after a reconnect, a command timeout), while the connection itself keeps
 * reconnecting forever with a capped backoff. Routing never waits on Redis, so a write that
 * cannot be done at once is better answered with 503 than parked in a queue.
 */
export function redisOptions(conn: RedisConnection): RedisOptions {
  const u = new URL(conn.url);
  const tls = u.protocol === 'rediss:';
  const db = Number(u.pathname.replace(/^\//, '') || '0');
  if (!Number.isInteger(db) || db < 0) throw new Error(`store.url: "${u.pathname}" is not a database number`);
  const commandTimeout = conn.commandTimeout ?? 2000;
  const password = conn.password ?? (u.password === '' ? undefined : decodeURIComponent(u.password));
  const username = u.username === '' ? undefined : decodeURIComponent(u.username);

  const common: RedisOptions = {
    db,
    ...(password === undefined ? {} : { password }),
    ...(username === undefined ? {} : { username }),
    enableOfflineQueue: false,
    // A command cut off by a dropped connection fails at once; resending it after the reconnect
    // could apply a write the caller was already told had failed.
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    commandTimeout,
    connectTimeout: commandTimeout,
    retryStrategy: (times: number) => Math.min(50 * 2 ** Math.min(times, 10), MAX_RECONNECT_DELAY_MS),
    // A stock setup gets our own errors through `error` listeners; ioredis must not print them.
    showFriendlyErrorStack: false,
  };

  if (conn.sentinels !== undefined) {
    if (conn.name === undefined) throw new Error('store.name: required with sentinels');
    return {
      ...common,
      sentinels: conn.sentinels.map((s) => ({ host: s.host, port: s.port })),
      name: conn.name,
      sentinelCommandTimeout: commandTimeout,
      sentinelRetryStrategy: (times: number) => Math.min(50 * times, MAX_RECONNECT_DELAY_MS),
      ...(tls ? { tls: {}, enableTLSForSentinelMode: true } : {}),
    };
  }
  return {
    ...common,
    host: u.hostname.replace(/^\[(.*)\]$/, '$1'),
    port: u.port === '' ? 6379 : Number(u.port),
    ...(tls ? { tls: { servername: u.hostname } } : {}),
  };
}
