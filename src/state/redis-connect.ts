import type { Redis, RedisOptions } from 'ioredis';

// How Switchyard meets Redis: connection options, key layout and the write script, shared by the
// store (redis-store.ts) and the fleet heartbeat (control/fleet.ts).

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
  /**
   * Replicas that must acknowledge a write (`WAIT`) before it is answered 200; one that is not
   * acknowledged in `replicaTimeout` answers 504 WRITE_OUTCOME_UNKNOWN. @default 0 (the primary's word is enough)
   */
  readonly replicas?: number | undefined;
  /** ms a write waits for its replica acknowledgements; below `commandTimeout`. @default 500 */
  readonly replicaTimeout?: number | undefined;
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
    // A primary that Sentinel (or an operator) demoted answers READONLY: reconnect (through the
    // sentinels, to whoever is primary now) rather than keep writing to it; never resend (1, not 2).
    reconnectOnError: (err: Error) => (err.message.startsWith('READONLY') ? 1 : false),
  };

  if (conn.sentinels !== undefined) {
    if (conn.name === undefined) throw new Error('store.name: required with sentinels');
    return {
      ...common,
      sentinels: conn.sentinels.map((s) => ({ host: s.host, port: s.port })),
      name: conn.name,
      sentinelCommandTimeout: commandTimeout,
      sentinelRetryStrategy: (times: number) => Math.min(50 * times, MAX_RECONNECT_DELAY_MS),
      // Follow a promotion as soon as any sentinel announces it (+switch-master). Without it a
      // client stays on a frozen primary's open socket for as long as the freeze lasts, then
      // writes to it until Sentinel demotes it, and its resync discards those writes.
      failoverDetector: true,
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

/**
 * Every key carries the one hash tag `{sy}`, so on Redis Cluster they all hash to one slot:
 * the compare-and-set script touches the state and history keys together, and the poll MGETs
 * every app's state in one call — both are refused across slots. One fleet's data is a few
 * kilobytes, so one slot is no hot spot.
 */
export function redisKeys(prefix: string) {
  const base = `${prefix}:{sy}`;
  return {
    state: (app: string) => `${base}:state:${app}`,
    history: (app: string) => `${base}:history:${app}`,
    /** set of every app name with a state (live definitions: apps created by the API are found by every instance) */
    apps: `${base}:apps`,
    /** pub/sub channel; each message is the new state's JSON */
    changes: `${base}:changes`,
    /** one heartbeat per proxy instance, with a TTL (fleet.ts) */
    instance: (id: string) => `${base}:instance:${id}`,
    /** sorted set of instance ids scored by their last heartbeat (Redis's clock): who is in the fleet, and since when silent */
    instances: `${base}:instances`,
    /** hash id → heartbeat JSON, rewritten only when it changes (control/heartbeats.ts) */
    beats: `${base}:beats`,
    /** grows on every change to `beats` or to the members: a reader re-reads the hash only when it moved */
    beatsVersion: `${base}:beats-version`,
    /** Redis's time when the heartbeat registry was (re)created: a Redis that lost its data says so here */
    beatsBorn: `${base}:beats-born`,
    /** a key written only to have something to WAIT on when settling a write (redis-settle.ts) */
    waitProbe: `${base}:wait-probe`,
    /** the running or last rollout of an app (rollout/redis.ts) */
    rollout: (app: string) => `${base}:rollout:${app}`,
    /** which instance drives the fleet's rollouts: `SET NX PX`, renewed by its holder */
    rolloutLease: `${base}:rollout-lease`,
  };
}
export type RedisKeys = ReturnType<typeof redisKeys>;

/**
 * The whole write as one atomic step: compare, set, append the bounded history, publish.
 * KEYS: state, history, apps set. ARGV: expected revision ('' = no state yet), state JSON, history
 * entry JSON, history limit, channel, deadline (epoch ms by Redis's clock), app name. Answers 1 when written,
 * else the current state JSON (nil if none); an error reply once the deadline has passed.
 *
 * The deadline is why a write answered 503 never lands later: a command that timed out on the
 * client (Redis paused, a slow link) still sits in the socket and would run when Redis wakes.
 * Checked against Redis's own TIME, so the client's clock only enters through its measured offset.
 */
export const CAS_SCRIPT = `
local t = redis.call('TIME')
if tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) > tonumber(ARGV[6]) then
  return redis.error_reply('SWITCHYARD_EXPIRED the write reached redis after its deadline; not applied')
end
local cur = redis.call('GET', KEYS[1])
if ARGV[1] == '' then
  if cur then return cur end
elseif not cur then
  return false
else
  -- a stored state that is not JSON or has no readable revision counts as revision 0 (invariants.ts readableRevision)
  local ok, doc = pcall(cjson.decode, cur)
  local rev = ok and type(doc) == 'table' and tonumber(doc.revision) or 0
  if rev < 1 or rev % 1 ~= 0 then rev = 0 end
  if rev ~= tonumber(ARGV[1]) then return cur end
end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('SADD', KEYS[3], ARGV[7])
redis.call('LPUSH', KEYS[2], ARGV[3])
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[4]) - 1)
redis.call('PUBLISH', ARGV[5], ARGV[2])
return 1
`;

/**
 * Re-seeding: writes the state only if Redis holds none or an older revision, so an instance
 * that routes on a newer revision than Redis (Redis restarted empty and a stale instance
 * re-seeded it first, or a failover lost a write) lifts it, and the fleet settles on the highest
 * revision any live instance holds. KEYS: state, history, apps set. ARGV: state JSON, history
 * entry JSON, history limit, channel, revision, app name. Answers 1 when written, else the current state JSON.
 */
export const RESEED_SCRIPT = `
local cur = redis.call('GET', KEYS[1])
if cur and cjson.decode(cur).revision >= tonumber(ARGV[5]) then return cur end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SADD', KEYS[3], ARGV[6])
redis.call('LPUSH', KEYS[2], ARGV[2])
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[3]) - 1)
redis.call('PUBLISH', ARGV[4], ARGV[1])
return 1
`;

/** Redis's clock minus ours, as measured with TIME, and how long that round trip took (the offset's uncertainty). */
export interface ClockOffset {
  readonly offset: number;
  readonly rtt: number;
}

/** Reads Redis's TIME against our clock; null when the round trip took over `maxRttMs` (too slow to say much). */
export async function readRedisClock(client: Redis, maxRttMs: number): Promise<ClockOffset | null> {
  const sent = Date.now();
  const time = (await client.call('TIME')) as [string, string];
  return clockOffset(time, sent, Date.now(), maxRttMs);
}

/** The offset a `TIME` reply sent at `sent` and answered at `got` (our clock) gives; null when the round trip took over `maxRttMs`. */
export function clockOffset([sec, usec]: readonly [string, string], sent: number, got: number, maxRttMs: number): ClockOffset | null {
  const rtt = got - sent;
  if (rtt > maxRttMs) return null;
  return { offset: Number(sec) * 1000 + Math.floor(Number(usec) / 1000) - (sent + got) / 2, rtt };
}

/**
 * The latest moment, by Redis's clock, at which CAS_SCRIPT may still apply a write sent at `now`:
 * a quarter of the command timeout, plus the clock offset's uncertainty, before the client gives
 * up and answers 503, so a reply still on its way cannot turn a 503 into a landed write.
 */
export function writeDeadline(clock: ClockOffset, commandTimeout: number, now: number): number {
  return Math.floor(now + clock.offset + commandTimeout - commandTimeout / 4 - clock.rtt);
}

/** The URL with its password masked, for log lines. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password !== '') u.password = '***';
    return u.toString();
  } catch {
    return 'redis://?';
  }
}
