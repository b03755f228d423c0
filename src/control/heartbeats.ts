import type { Redis } from 'ioredis';
import type { RedisKeys } from '../state/redis-connect.ts';
import type { PoolCounts } from './counts.ts';

/** What each instance writes into the fleet's heartbeat hash (`…:{sy}:beats`, field = its id). */
export interface Heartbeat {
  readonly id: string;
  /** app → revision the instance routes on */
  readonly applied: Readonly<Record<string, number>>;
  /** app → `stateDigest` of the state it routes on at that revision (absent: not known, e.g. a worker still behind) */
  readonly digests?: Readonly<Record<string, string>>;
  /** app → pool → live counts */
  readonly pools: Readonly<Record<string, Readonly<Record<string, PoolCounts>>>>;
  /** epoch ms, the writer's clock, when its content last changed */
  readonly at: number;
  /** live stats windows (a metrics/stats.ts StatsExport), opaque here; validated by whoever merges them */
  readonly stats?: unknown;
}

/** One instance of the fleet as the last read saw it. */
export interface Member {
  readonly hb: Heartbeat;
  /** Redis's time (ms) of its last heartbeat */
  readonly lastSeen: number;
  /** it vanished with the data of a Redis that restarted empty: it never said it left */
  readonly lost?: true;
}

/** The fleet as read from Redis. */
export interface FleetRead {
  /** Redis's time (ms) at the read */
  readonly now: number;
  /** Redis's time (ms) when the registry was (re)created */
  readonly born: number;
  /** every instance that has not left (live or silent), this one excluded */
  readonly members: ReadonlyMap<string, Member>;
}

/**
 * One heartbeat: the JSON is stored only when it changed (ARGV[2] '' = unchanged: only the
 * index score moves), so an idle fleet bumps no version and its readers read no hash. Instances
 * silent past the window are forgotten here (the only place they are; every tenth beat is enough).
 * KEYS: beats, index, version, born. ARGV: id, JSON or '', window ms, '1' to forget the silent. Answers Redis's time, or -1 when the hash lost
 * this instance's entry (a Redis that restarted empty): then the caller sends the whole heartbeat.
 */
const BEAT_SCRIPT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if redis.call('EXISTS', KEYS[4]) == 0 then redis.call('SET', KEYS[4], now) end
local changed = false
if ARGV[2] ~= '' then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  changed = true
elseif redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then
  return -1
end
if redis.call('ZADD', KEYS[2], now, ARGV[1]) == 1 then changed = true end
if ARGV[4] == '1' then
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[3]), 'LIMIT', 0, 100)) do
    redis.call('ZREM', KEYS[2], id)
    redis.call('HDEL', KEYS[1], id)
    changed = true
  end
end
if changed then redis.call('INCR', KEYS[3]) end
return now
`;

/**
 * The cheap read every tick: Redis's time, the version, when the registry was born, how many
 * members, and only the silent ones (score older than the TTL) — normally none, so a reader's
 * traffic does not grow with the fleet. KEYS: index, version, born. ARGV: ttl ms.
 */
const GLANCE_SCRIPT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local silent = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. (now - tonumber(ARGV[1])), 'WITHSCORES', 'LIMIT', 0, 1000)
return { now, redis.call('GET', KEYS[2]) or '0', redis.call('GET', KEYS[3]) or '0', redis.call('ZCARD', KEYS[1]), silent }
`;

type BeatClient = Redis & {
  switchyardBeat(beats: string, index: string, version: string, born: string, id: string, json: string, windowMs: number, prune: '0' | '1'): Promise<number>;
  switchyardGlance(index: string, version: string, born: string, ttlMs: number): Promise<[number, string, string, number, string[]]>;
};

export interface RegistryOptions {
  readonly id: string;
  /** ms after its last heartbeat an instance counts as silent */
  readonly ttl: number;
  /** ms a silent instance stays a member before it is forgotten */
  readonly window: number;
  /** a changed hash is read at least this often (ms) even when nobody asks for the figures @default 5000 */
  readonly idleFullReadEvery?: number;
}

/**
 * The fleet's membership in Redis: one hash the instances write their heartbeats into, an index
 * of when each last beat, and a version that moves when either changes. Reading the fleet costs
 * one small script per tick; the hash itself is read only when it changed (and someone wants the
 * figures, or a while has passed), so an idle fleet's Redis traffic is linear in its size.
 */
export class HeartbeatRegistry {
  readonly #client: BeatClient;
  readonly #keys: RedisKeys;
  readonly #opts: RegistryOptions;
  /** the content of the last heartbeat written (without `at`), to send only changes */
  #written: string | null = null;
  #version = '';
  #count = -1;
  #born = 0;
  #fullAt = 0;
  #beats = 0;
  #members: ReadonlyMap<string, Member> = new Map();

  constructor(client: Redis, keys: RedisKeys, opts: RegistryOptions) {
    this.#client = client as BeatClient;
    this.#keys = keys;
    this.#opts = opts;
    if (!('switchyardBeat' in client)) {
      client.defineCommand('switchyardBeat', { numberOfKeys: 4, lua: BEAT_SCRIPT });
      client.defineCommand('switchyardGlance', { numberOfKeys: 3, lua: GLANCE_SCRIPT });
    }
  }

  /** Writes `hb` (only its changes); also as the legacy per-instance key, which instances of earlier versions read. */
  async beat(hb: Heartbeat): Promise<void> {
    const k = this.#keys;
    const full = JSON.stringify(hb);
    const content = JSON.stringify({ ...hb, at: 0, stats: idleStats(hb.stats) });
    const json = content === this.#written ? '' : full;
    this.#written = null; // unknown until the write answers
    const legacy = this.#client.set(k.instance(hb.id), full, 'PX', this.#opts.ttl).catch(() => undefined);
    const prune = this.#beats++ % 10 === 0 ? '1' : '0';
    const answer = await this.#client.switchyardBeat(k.beats, k.instances, k.beatsVersion, k.beatsBorn, hb.id, json, this.#opts.window, prune);
    // the hash lost our entry (a Redis that restarted empty): the whole heartbeat, now
    if (answer === -1) await this.#client.switchyardBeat(k.beats, k.instances, k.beatsVersion, k.beatsBorn, hb.id, full, this.#opts.window, prune);
    await legacy;
    this.#written = content;
  }

  /** Removes this instance: the others count it gone at once, not as silent. */
  async leave(): Promise<void> {
    const k = this.#keys;
    await this.#client.multi().hdel(k.beats, this.#opts.id).zrem(k.instances, this.#opts.id).del(k.instance(this.#opts.id)).incr(k.beatsVersion).exec();
  }

  /** Reads the fleet: a glance, and the hash when it changed and `wanted` (or it is old). Rejects when Redis does. */
  async read(wanted: boolean): Promise<FleetRead> {
    const k = this.#keys;
    const [now, version, bornText, count, silentFlat] = await this.#client.switchyardGlance(k.instances, k.beatsVersion, k.beatsBorn, this.#opts.ttl);
    const born = Number(bornText);
    const silent = new Map<string, number>();
    for (let i = 0; i + 1 < silentFlat.length; i += 2) silent.set(silentFlat[i] as string, Number(silentFlat[i + 1]));
    const reborn = born !== this.#born;
    const membersMoved = count !== this.#count || reborn || [...silent.keys()].some((id) => id !== this.#opts.id && !this.#members.has(id));
    const contentMoved = version !== this.#version;
    if (membersMoved || (contentMoved && (wanted || now - this.#fullAt >= (this.#opts.idleFullReadEvery ?? 5000)))) {
      await this.#readAll(now, reborn);
      this.#version = version;
      this.#count = count;
      this.#born = born;
      this.#fullAt = now;
    } else {
      // nobody changed anything the hash says: only who fell silent (or came back) moved
      const next = new Map<string, Member>();
      for (const [id, m] of this.#members) next.set(id, m.lost === true ? m : { hb: m.hb, lastSeen: silent.get(id) ?? Math.max(m.lastSeen, now) });
      this.#members = next;
    }
    // the ones lost with a Redis that restarted empty are forgotten once the window passes
    const members = new Map([...this.#members].filter(([, m]) => m.lost !== true || now - m.lastSeen < this.#opts.window));
    this.#members = members;
    return { now, born, members };
  }

  async #readAll(now: number, reborn: boolean): Promise<void> {
    const k = this.#keys;
    const res = await this.#client.multi().hgetall(k.beats).zrange(k.instances, 0, -1, 'WITHSCORES').exec();
    if (res === null) throw new Error('the heartbeat read was discarded');
    const [[hashErr, hash], [indexErr, index]] = res as [[Error | null, Record<string, string>], [Error | null, string[]]];
    if (hashErr !== null || indexErr !== null) throw hashErr ?? indexErr;
    const scores = new Map<string, number>();
    for (let i = 0; i + 1 < index.length; i += 2) scores.set(index[i] as string, Number(index[i + 1]));
    const texts = new Map(Object.entries(hash));
    // an instance of an earlier version writes only its own key, with a TTL
    const legacy = [...scores.keys()].filter((id) => id !== this.#opts.id && !texts.has(id));
    if (legacy.length > 0) (await this.#client.mget(legacy.map((id) => k.instance(id)))).forEach((t, i) => t !== null && texts.set(legacy[i] as string, t));
    const members = new Map<string, Member>();
    for (const [id, text] of texts) {
      if (id === this.#opts.id) continue;
      const hb = parseHeartbeat(text);
      if (hb === null || hb.id !== id) continue;
      // not in the index (an earlier version's instance pruned it): its own `at` says when it was last heard of
      const lastSeen = scores.get(id) ?? hb.at;
      if (now - lastSeen >= this.#opts.window) continue;
      members.set(id, { hb, lastSeen });
    }
    // Redis lost its data: the instances known before it did stay members until seen again
    // (or the window passes) — their silence since is no proof they are gone
    if (reborn && this.#born !== 0) for (const [id, m] of this.#members) if (!members.has(id)) members.set(id, { hb: m.hb, lastSeen: m.lastSeen, lost: true });
    this.#members = members;
  }
}

/** Stats windows with nothing in them compare equal whatever their timestamp: an idle instance's heartbeat does not change. */
function idleStats(stats: unknown): unknown {
  const apps = (stats as { apps?: unknown } | undefined)?.apps;
  return typeof apps === 'object' && apps !== null && Object.keys(apps).length === 0 ? { ...(stats as object), at: 0 } : stats;
}

export function parseHeartbeat(text: string): Heartbeat | null {
  try {
    const hb = JSON.parse(text) as Heartbeat;
    if (typeof hb?.id !== 'string' || typeof hb.applied !== 'object' || typeof hb.pools !== 'object' || hb.applied === null || hb.pools === null) return null;
    const pools: Record<string, Record<string, PoolCounts>> = {};
    for (const [app, byPool] of Object.entries(hb.pools)) {
      pools[app] = {};
      for (const [pool, c] of Object.entries(byPool ?? {})) pools[app][pool] = { inflight: num(c?.inflight), upgraded: num(c?.upgraded), pinned: num(c?.pinned) };
    }
    const digests = typeof hb.digests === 'object' && hb.digests !== null ? hb.digests : undefined;
    return { id: hb.id, applied: hb.applied, ...(digests === undefined ? {} : { digests }), pools, at: num(hb.at), ...(hb.stats === undefined ? {} : { stats: hb.stats }) };
  } catch {
    return null;
  }
}

function num(v: unknown): number {
  return typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : 0;
}
