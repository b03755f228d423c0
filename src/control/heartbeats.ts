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
 * One heartbeat, and the glance of the fleet that comes with it (one script a second is an idle
 * instance's whole fleet traffic). The JSON is stored only when it changed (ARGV[2] '' =
 * unchanged: only the index score moves), so an idle fleet bumps no version and its readers read
 * no hash. Instances silent past the window are forgotten here (the only place they are; every
 * tenth beat is enough).
 * It also writes the legacy per-instance key (JSON with the TTL), which instances of earlier
 * versions read. KEYS: beats, index, version, born, legacy key. ARGV: id, JSON or '', window ms,
 * '1' to forget the silent, ttl ms, the whole JSON.
 * Answers the glance (GLANCE_SCRIPT) with the version before this beat's own bump appended, or
 * -1 when the hash lost this instance's entry (a Redis that restarted empty): then the caller
 * sends the whole heartbeat.
 */
const BEAT_SCRIPT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('SET', KEYS[5], ARGV[6], 'PX', ARGV[5])
local born = redis.call('GET', KEYS[4])
if not born then
  born = tostring(now)
  redis.call('SET', KEYS[4], born)
end
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
local before = redis.call('GET', KEYS[3]) or '0'
local version = before
if changed then version = tostring(redis.call('INCR', KEYS[3])) end
local silent = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. (now - tonumber(ARGV[5])), 'WITHSCORES', 'LIMIT', 0, 1000)
return { now, version, born, redis.call('ZCARD', KEYS[2]), silent, before }
`;

/**
 * The glance without a heartbeat (a reader that wants the figures fresher than its heartbeats
 * come): Redis's time, the version, when the registry was born, how many members, and only the
 * silent ones (score older than the TTL) — normally none, so a reader's traffic does not grow
 * with the fleet. KEYS: index, version, born. ARGV: ttl ms.
 */
const GLANCE_SCRIPT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local silent = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. (now - tonumber(ARGV[1])), 'WITHSCORES', 'LIMIT', 0, 1000)
return { now, redis.call('GET', KEYS[2]) or '0', redis.call('GET', KEYS[3]) or '0', redis.call('ZCARD', KEYS[1]), silent }
`;

/** now, version, born, members, silent (id, score, …), and from a beat the version before its own bump */
type Glance = [number, string, string, number, string[], string?];

type BeatClient = Redis & {
  switchyardBeat(beats: string, index: string, version: string, born: string, legacy: string, id: string, json: string, windowMs: number, prune: '0' | '1', ttlMs: number, full: string): Promise<Glance | -1>;
  switchyardGlance(index: string, version: string, born: string, ttlMs: number): Promise<Glance>;
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
 * of when each last beat, and a version that moves when either changes. Each heartbeat brings a
 * glance of the fleet back (one small script a second); the hash itself is read only when it
 * changed — and not for this instance's own change — and someone wants the figures (or a while
 * has passed), so an idle fleet's Redis traffic is linear in its size.
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
  /** the glance being taken in: glances (a beat's and a read's may overlap) are taken in one at a time, in the order Redis answered them */
  #absorbing: Promise<unknown> = Promise.resolve();

  constructor(client: Redis, keys: RedisKeys, opts: RegistryOptions) {
    this.#client = client as BeatClient;
    this.#keys = keys;
    this.#opts = opts;
    if (!('switchyardBeat' in client)) {
      client.defineCommand('switchyardBeat', { numberOfKeys: 5, lua: BEAT_SCRIPT });
      client.defineCommand('switchyardGlance', { numberOfKeys: 3, lua: GLANCE_SCRIPT });
    }
  }

  /**
   * Writes `hb` (only its changes; also as the legacy per-instance key, which instances of
   * earlier versions read) and reads the fleet with it, as `read` does: one round trip.
   * Rejects when Redis does.
   */
  async beat(hb: Heartbeat, wanted: boolean): Promise<FleetRead> {
    const k = this.#keys;
    const full = JSON.stringify(hb);
    const content = JSON.stringify({ ...hb, at: 0, stats: idleStats(hb.stats) });
    const json = content === this.#written ? '' : full;
    this.#written = null; // unknown until the write answers
    const prune = this.#beats++ % 10 === 0 ? '1' : '0';
    const send = (hash: string): Promise<Glance | -1> => this.#client.switchyardBeat(k.beats, k.instances, k.beatsVersion, k.beatsBorn, k.instance(hb.id), hb.id, hash, this.#opts.window, prune, this.#opts.ttl, full);
    let answer = await send(json);
    // the hash lost our entry (a Redis that restarted empty): the whole heartbeat, now
    if (answer === -1) answer = await send(full);
    this.#written = content;
    if (answer === -1) throw new Error('the heartbeat hash lost this instance\'s entry twice in a row');
    return this.#absorb(answer, wanted);
  }

  /** Removes this instance: the others count it gone at once, not as silent. */
  async leave(): Promise<void> {
    const k = this.#keys;
    await this.#client.multi().hdel(k.beats, this.#opts.id).zrem(k.instances, this.#opts.id).del(k.instance(this.#opts.id)).incr(k.beatsVersion).exec();
  }

  /** Reads the fleet: a glance, and the hash when it changed and `wanted` (or it is old). Rejects when Redis does. */
  async read(wanted: boolean): Promise<FleetRead> {
    const k = this.#keys;
    return this.#absorb(await this.#client.switchyardGlance(k.instances, k.beatsVersion, k.beatsBorn, this.#opts.ttl), wanted);
  }

  #absorb(glance: Glance, wanted: boolean): Promise<FleetRead> {
    const next = this.#absorbing.then(() => this.#absorbOne(glance, wanted));
    this.#absorbing = next.catch(() => undefined);
    return next;
  }

  async #absorbOne(glance: Glance, wanted: boolean): Promise<FleetRead> {
    const [now, version, bornText, count, silentFlat, before] = glance;
    const born = Number(bornText);
    const silent = new Map<string, number>();
    for (let i = 0; i + 1 < silentFlat.length; i += 2) silent.set(silentFlat[i] as string, Number(silentFlat[i + 1]));
    const reborn = born !== this.#born;
    const membersMoved = count !== this.#count || reborn || [...silent.keys()].some((id) => id !== this.#opts.id && !this.#members.has(id));
    // this beat's own change is the only one since the last read: nothing of the others' moved
    if (!membersMoved && before !== undefined && before === this.#version) this.#version = version;
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
