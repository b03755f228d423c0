import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { Redis, type RedisOptions } from 'ioredis';
import type { Logger } from 'pino';
import { ProcessError, SwitchyardError } from '../errors.ts';
import { mayHaveRun, settleWrite } from './redis-settle.ts';
import { readStateCache, StateCacheWriter } from './state-cache.ts';
import { checkWrite, InvalidStateError, parseStoredState, readableRevision, type PoolsOf } from './invariants.ts';
import { CAS_SCRIPT, clockOffset, readRedisClock, RESEED_SCRIPT, redactUrl, redisKeys, redisOptions, writeDeadline, type ClockOffset, type RedisConnection, type RedisKeys } from './redis-connect.ts';
import { historyEntryOf, type CasOptions, type CasResult, type InvalidListener, type HistoryEntry, type RoutingState, type StateStore, type Unsubscribe } from './types.ts';

export { redisKeys, type RedisKeys };

/** The history entry's key for the id of the write that made it (stored in Redis, not shown in the history). */
const WRITE_ID = 'write';

type CasClient = Redis & {
  switchyardCas(state: string, history: string, apps: string, expected: string, json: string, entry: string, limit: number, channel: string, deadline: number, app: string): Promise<number | string | null>;
  switchyardReseed(state: string, history: string, apps: string, json: string, entry: string, limit: number, channel: string, revision: number, app: string): Promise<number | string>;
};

export interface RedisStoreOptions extends RedisConnection {
  /** Key prefix, so several fleets can share one Redis. */
  readonly prefix: string;
  /** History entries kept per app (LTRIM on every write). */
  readonly historyLimit: number;
  /** Local JSON copy of the newest state seen per app, read at start when Redis is down. Omitted: no cache. */
  readonly cachePath?: string | undefined;
  /** Safety-net poll of every app's state, in ms. @default 1000 */
  readonly pollInterval?: number | undefined;
  /** @default a silent logger */
  readonly logger?: Logger | undefined;
  /** Told about a watch listener that threw. @default ignores it */
  readonly onListenerError?: ((err: unknown) => void) | undefined;
  /** The pools each app may weigh (the config's): a write naming another pool is refused. @default only the shape is checked */
  readonly pools?: PoolsOf | undefined;
  /** ms an instance that stopped heartbeating without leaving stays in the fleet's figures, unaccounted (control/fleet.ts). @default 600000 */
  readonly unaccountedWindow?: number | undefined;
}

export interface RedisStoreEvents {
  /** the command connection came up (true) or went down (false) */
  connection: [up: boolean];
  /** the subscriber connection is subscribed (true) or lost (false) */
  subscription: [up: boolean];
  /** a poll or reconnect read every known app: its state in Redis, or null if Redis has none */
  sync: [remote: ReadonlyMap<string, RoutingState | null>];
}

/**
 * The fleet store. Writes are one Lua compare-and-set; propagation is pub/sub on a separate
 * subscriber connection, a full re-read after every (re)connect (messages sent while it was down
 * are lost) and a poll as the safety net — no keyspace notifications, which managed Redis
 * services turn off. Every watcher gets each newer revision once, whichever path saw it first.
 *
 * Fail-static: a command that cannot run at once rejects with STORE_UNAVAILABLE (no offline
 * queue, a command timeout). The newest state seen per app is kept in memory and on disk, and
 * `getMany` — what a starting controller reads — answers from it when Redis cannot be reached,
 * and prefers it over an older (or missing) state in Redis, so an instance never starts on a
 * revision lower than the one it last routed on.
 */
export class RedisStore extends EventEmitter<RedisStoreEvents> implements StateStore {
  readonly kind = 'redis' as const;
  /** The command connection; the fleet heartbeat shares it. */
  readonly client: Redis;
  readonly keys: RedisKeys;
  /** store.unaccountedWindow, for the fleet */
  readonly unaccountedWindow: number;
  readonly #sub: Redis;
  readonly #opts: RedisStoreOptions;
  /** ioredis options of the command connection, for the fresh one that settles a write (redis-settle.ts) */
  readonly #options: RedisOptions;
  readonly #logger: Logger | undefined;
  readonly #listeners = new Set<(state: RoutingState) => void>();
  readonly #invalidListeners = new Set<InvalidListener>();
  /** apps a caller asked about: the ones the poll reads */
  readonly #known = new Set<string>();
  /** newest state seen per app (from Redis, a message, a write, or the disk cache) */
  readonly #latest = new Map<string, RoutingState>();
  /** newest revision handed to watchers per app */
  readonly #delivered = new Map<string, number>();
  readonly #pending = new Set<Promise<unknown>>();
  /** the invalid value last reported per app, so the poll logs a bad state once, not every second */
  readonly #reportedInvalid = new Map<string, string>();
  readonly #cache: StateCacheWriter | null;
  readonly #replicas: number;
  readonly #replicaTimeout: number;
  readonly #poll: NodeJS.Timeout;
  /** app → the last revision this store itself wrote (so an observer can tell others' changes from its own) */
  readonly #wrote = new Map<string, number>();
  /** JSON of this store's writes in flight: the published message can arrive before the script's reply */
  readonly #writing = new Set<string>();
  #clock: ClockOffset | null = null;
  #syncing: Promise<void> | null = null;
  #syncAgain = false;
  #connected = false;
  #subscribed = false;
  #closed = false;

  private constructor(opts: RedisStoreOptions, cached: ReadonlyMap<string, RoutingState>) {
    super();
    this.#opts = opts;
    this.#logger = opts.logger;
    this.keys = redisKeys(opts.prefix);
    this.unaccountedWindow = opts.unaccountedWindow ?? 600_000;
    this.#replicas = opts.replicas ?? 0;
    this.#replicaTimeout = opts.replicaTimeout ?? 500;
    for (const [app, state] of cached) this.#latest.set(app, state);
    this.#cache = opts.cachePath === undefined ? null : new StateCacheWriter(opts.cachePath, opts.prefix, (err) => this.#logger?.warn({ err }, 'cannot write the routing state cache'));
    const options = redisOptions(opts);
    this.#options = options;
    this.client = new Redis({ ...options, connectionName: 'switchyard' });
    this.client.defineCommand('switchyardCas', { numberOfKeys: 3, lua: CAS_SCRIPT });
    this.client.defineCommand('switchyardReseed', { numberOfKeys: 3, lua: RESEED_SCRIPT });
    // resubscribed by hand on `ready`, so the re-read starts only once the subscription is live
    this.#sub = new Redis({ ...options, connectionName: 'switchyard-sub', autoResubscribe: false });

    this.client.on('ready', () => {
      this.#setConnected(true);
      void this.sync();
    });
    this.client.on('close', () => this.#setConnected(false));
    this.client.on('error', (err) => this.#logger?.debug({ err }, 'redis command connection error'));
    this.#sub.on('ready', () => {
      this.#sub.subscribe(this.keys.changes).then(() => {
        this.#setSubscribed(true);
        return this.sync();
      }, (err: unknown) => this.#logger?.warn({ err }, 'redis subscribe failed; relying on the poll until the next reconnect'));
    });
    this.#sub.on('close', () => this.#setSubscribed(false));
    this.#sub.on('error', (err) => this.#logger?.debug({ err }, 'redis subscriber connection error'));
    this.#sub.on('message', (_channel: string, message: string) => this.#onMessage(message));
    this.#poll = setInterval(() => void this.sync(), opts.pollInterval ?? 1000).unref();
  }

  /**
   * Connects (waiting at most the command timeout, and at least 2 s: a short command timeout is
   * about answers, not about how long a start may wait for the connection) and loads the disk
   * cache. Resolves even when Redis is down: the store keeps reconnecting, and meanwhile answers
   * from the cache.
   */
  static async open(opts: RedisStoreOptions): Promise<RedisStore> {
    if (!Number.isInteger(opts.historyLimit) || opts.historyLimit < 1) throw new ProcessError('BUG', `historyLimit must be a positive integer, got ${opts.historyLimit}`);
    const cached = opts.cachePath === undefined ? new Map<string, RoutingState>() : await readStateCache(opts.cachePath, opts.prefix, opts.logger);
    const store = new RedisStore(opts, cached);
    await store.#waitConnected(Math.max(opts.commandTimeout ?? 2000, 2000));
    if (!store.connected) opts.logger?.warn({ url: redactUrl(opts.url), cached: [...cached.keys()] }, 'redis is unreachable at start; routing on the cached state until it is back');
    return store;
  }

  /** Whether the command connection is up (writes can work). */
  get connected(): boolean {
    return this.#connected;
  }

  /** Whether the subscriber connection is up and subscribed. */
  get subscribed(): boolean {
    return this.#subscribed;
  }

  async get(app: string): Promise<RoutingState | null> {
    this.#known.add(app);
    const text = await this.#run('GET', () => this.client.get(this.keys.state(app)));
    if (text === null) return null;
    const state = parseState(text, this.#where(app), app);
    this.#observe(state);
    return state;
  }

  async getMany(apps: readonly string[], onInvalid?: (err: InvalidStateError) => void): Promise<Map<string, RoutingState>> {
    const out = new Map<string, RoutingState>();
    if (apps.length === 0) return out;
    for (const app of apps) this.#known.add(app);
    let texts: (string | null)[];
    try {
      texts = await this.#run('MGET', () => this.client.mget(apps.map((a) => this.keys.state(a))));
    } catch (err) {
      for (const app of apps) {
        const mine = this.#latest.get(app);
        if (mine !== undefined) out.set(app, mine);
      }
      if (out.size === 0) throw err;
      this.#logger?.warn({ err, apps: [...out.keys()] }, 'redis is unreachable: answering from the last known (cached) state');
      return out;
    }
    apps.forEach((app, i) => {
      const text = texts[i];
      if (text !== null && text !== undefined) {
        try {
          this.#observe(parseState(text, this.#where(app), app));
        } catch (err) {
          // one app's bad state must not hide the others: it is reported and left out
          if (!(err instanceof InvalidStateError)) throw err;
          onInvalid?.(err);
          return;
        }
      }
      const newest = this.#latest.get(app);
      if (newest !== undefined) out.set(app, newest);
    });
    return out;
  }

  async history(app: string, limit: number, offset = 0): Promise<HistoryEntry[]> {
    const n = Math.floor(limit);
    const from = Math.max(0, Math.floor(offset));
    if (!(n > 0)) return [];
    const texts = await this.#run('LRANGE', () => this.client.lrange(this.keys.history(app), from, from + n - 1));
    return texts.map((t) => {
      const { [WRITE_ID]: _id, ...entry } = JSON.parse(t) as HistoryEntry & { [WRITE_ID]?: string };
      return Object.freeze(entry);
    });
  }

  async compareAndSet(next: RoutingState, expected: number | null, opts: CasOptions = {}): Promise<CasResult> {
    // A wrong revision or a state that breaks an invariant is a caller's bug, not a conflict:
    // fail loudly instead of answering ok:false, and write nothing.
    checkWrite(next, expected, this.#opts.pools, opts.repair === true);
    if (this.#closed) throw new SwitchyardError('STORE_UNAVAILABLE', 'the redis store is closed');
    const run = this.#cas(next, expected);
    this.#pending.add(run);
    void run.catch(() => undefined).finally(() => this.#pending.delete(run));
    return run;
  }

  /**
   * Re-seeding: writes `state` only if Redis holds no state for the app or an older revision
   * (never over the same or a newer one), appending its history entry and publishing it.
   */
  async reseed(state: RoutingState): Promise<CasResult> {
    // the same invariants as every write (a re-seed has no expected revision)
    checkWrite(state, null, this.#opts.pools);
    if (this.#closed) throw new SwitchyardError('STORE_UNAVAILABLE', 'the redis store is closed');
    this.#known.add(state.app);
    const json = JSON.stringify(state);
    const client = this.client as CasClient;
    const k = this.keys;
    const res = await this.#writingWhile(json, () => this.#run('re-seed', () => client.switchyardReseed(k.state(state.app), k.history(state.app), k.apps, json, JSON.stringify(historyEntryOf(state)), this.#opts.historyLimit, k.changes, state.revision, state.app)));
    return this.#casResult(res, json, state.app);
  }

  /**
   * Every app Redis holds a state for (the apps set the write scripts keep), plus any this store
   * knows from a message or its disk cache; the cache alone when Redis cannot be reached.
   */
  async listApps(): Promise<string[]> {
    let names: string[] = [];
    try {
      names = await this.#run('SMEMBERS', () => this.client.smembers(this.keys.apps));
    } catch (err) {
      if (this.#latest.size === 0) throw err;
    }
    for (const app of names) this.#known.add(app);
    return [...new Set([...names, ...this.#latest.keys()])].sort();
  }

  /** Whether the newest write this store made for `app` is `revision`: tells a change it observes from one it wrote. */
  wroteHere(app: string, revision: number): boolean {
    return this.#wrote.get(app) === revision;
  }

  watch(listener: (state: RoutingState) => void, onInvalid?: InvalidListener): Unsubscribe {
    this.#listeners.add(listener);
    if (onInvalid !== undefined) this.#invalidListeners.add(onInvalid);
    return () => {
      this.#listeners.delete(listener);
      if (onInvalid !== undefined) this.#invalidListeners.delete(onInvalid);
    };
  }

  /**
   * Reads every known app's state and hands newer ones to watchers; runs after every reconnect,
   * on the poll timer, or on demand. Concurrent calls share one read (plus one more if asked
   * during it). Never rejects: an unreachable Redis just skips this round.
   */
  sync(): Promise<void> {
    if (this.#syncing !== null) {
      this.#syncAgain = true;
      return this.#syncing;
    }
    this.#syncing = (async () => {
      do {
        this.#syncAgain = false;
        await this.#syncOnce();
      } while (this.#syncAgain && !this.#closed);
    })().finally(() => {
      this.#syncing = null;
    });
    return this.#syncing;
  }

  /** Waits for writes in flight, then disconnects; later writes reject with STORE_UNAVAILABLE. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#poll);
    await Promise.allSettled([...this.#pending]);
    await this.#syncing;
    await this.#cache?.flush();
    this.#sub.disconnect();
    this.client.disconnect();
    this.#setConnected(false);
    this.#setSubscribed(false);
  }

  async #cas(next: RoutingState, expected: number | null): Promise<CasResult> {
    this.#known.add(next.app);
    const json = JSON.stringify(next);
    // the write id makes the entry this write's alone, for settling (redis-settle.ts); history() drops it
    const entry = JSON.stringify({ ...historyEntryOf(next), [WRITE_ID]: randomBytes(8).toString('hex') });
    const client = this.client as CasClient;
    const k = this.keys;
    const deadline = await this.#run('compare-and-set', () => this.#deadline());
    return this.#writingWhile(json, async () => {
      let res: number | string | null;
      try {
        res = await client.switchyardCas(k.state(next.app), k.history(next.app), k.apps, expected === null ? '' : String(expected), json, entry, this.#opts.historyLimit, k.changes, deadline, next.app);
      } catch (err) {
        if (!mayHaveRun(err)) throw unavailable('compare-and-set', err);
        // no answer, but the script may have run (a slow reply, a connection lost mid-command):
        // settle it, so the caller is told what happened, never a 503 for a write that landed
        const timeout = this.#opts.commandTimeout ?? 2000;
        const { settled, current, replicated } = await settleWrite({ options: this.#options, stateKey: k.state(next.app), historyKey: k.history(next.app), json, entry, revision: next.revision, deadline, budgetMs: timeout, replicas: this.#replicas, replicaTimeout: this.#replicaTimeout, probeKey: k.waitProbe });
        this.#logger?.warn({ err, app: next.app, revision: next.revision, settled }, `redis compare-and-set gave no answer; settled by a read after its deadline: ${settled}`);
        if (settled === 'landed') return this.#confirmed(this.#casResult(1, json, next.app), replicated);
        // another writer got there first: a lost compare-and-set, which the caller may retry on the newer state
        if (settled === 'not-landed' && current !== null && expected !== null && readableRevision(safeJson(current)) !== expected) return this.#casResult(current, json, next.app);
        if (settled === 'not-landed') throw unavailable('compare-and-set', err, ' (read back after its deadline: not applied, and never will be)');
        throw new SwitchyardError('WRITE_OUTCOME_UNKNOWN', `the write of revision ${next.revision} of app "${next.app}" may or may not have landed: redis did not answer (${messageOf(err)}) and could not be read back within ${timeout} ms; read the app's revision and history before retrying`, { cause: err, details: { app: next.app, revision: next.revision } });
      }
      const result = this.#casResult(res, json, next.app);
      return result.ok && this.#replicas > 0 ? this.#confirmed(result, await this.#waitReplicas(client)) : result;
    });
  }

  /**
   * WAIT on the connection that wrote: how many replicas acknowledged everything it wrote so far
   * (an error counts as none). Replication is in order, so an acknowledgement covers this write.
   */
  async #waitReplicas(client: Redis): Promise<number> {
    try {
      return Number(await client.call('WAIT', String(this.#replicas), String(this.#replicaTimeout)));
    } catch (err) {
      this.#logger?.warn({ err }, 'WAIT for the replicas failed');
      return 0;
    }
  }

  /**
   * A write that landed on the primary is answered 200 only once `replicas` replicas have it: a
   * failover promotes a replica, and one that never got the write loses it. Otherwise 504: it is on
   * the primary (every instance applies it) but may vanish with it. `acked` null: no WAIT was needed.
   */
  #confirmed(result: CasResult, acked: number | null): CasResult {
    if (!result.ok || this.#replicas === 0 || (acked !== null && acked >= this.#replicas)) return result;
    const { app, revision } = result.state;
    throw new SwitchyardError('WRITE_OUTCOME_UNKNOWN', `revision ${revision} of app "${app}" was written to the redis primary, but ${acked ?? 0} of the ${this.#replicas} replica(s) store.replicas asks for confirmed it within ${this.#replicaTimeout} ms: a failover now could lose it; read the app's revision and history before retrying`, { details: { app, revision, replicas: this.#replicas, acknowledged: acked ?? 0 } });
  }

  async #writingWhile<T>(json: string, fn: () => Promise<T>): Promise<T> {
    this.#writing.add(json);
    try {
      return await fn();
    } finally {
      this.#writing.delete(json);
    }
  }

  #casResult(res: number | string | null, json: string, app: string): CasResult {
    if (res === 1) {
      const state = parseState(json, 'compareAndSet', app);
      // before observing it: watchers told of it must already see it as this store's own write
      this.#wrote.set(app, state.revision);
      this.#observe(state);
      return { ok: true, state };
    }
    if (typeof res !== 'string') return { ok: false, current: null };
    // an invalid stored state whose revision is not `expected` rejects with InvalidStateError, as in the file store
    const current = parseState(res, this.#where(app), app);
    this.#observe(current);
    return { ok: false, current };
  }

  /** The write script's deadline (writeDeadline), measuring the clock offset first if no poll has yet. */
  async #deadline(): Promise<number> {
    const timeout = this.#opts.commandTimeout ?? 2000;
    this.#clock ??= await readRedisClock(this.client, timeout / 4);
    if (this.#clock === null) throw new Error('cannot read the redis clock');
    return writeDeadline(this.#clock, timeout, Date.now());
  }

  async #syncOnce(): Promise<void> {
    const apps = [...this.#known];
    if (this.#closed || !this.#connected) return;
    let texts: (string | null)[];
    try {
      // one round trip: Redis's clock (the poll keeps the offset the write deadline uses fresh),
      // the apps set (apps created by another instance whose message this one missed) and the known apps' states
      const k = this.keys;
      const pipe = this.client.pipeline().time().smembers(k.apps);
      if (apps.length > 0) pipe.mget(apps.map((a) => k.state(a)));
      const sent = Date.now();
      const res = await pipe.exec();
      const got = Date.now();
      if (res === null) throw new Error('the poll was discarded');
      for (const [err] of res) if (err !== null) throw err;
      const [time, members, states] = res.map(([, v]) => v) as [[string, string], string[], (string | null)[] | undefined];
      this.#clock = clockOffset(time, sent, got, (this.#opts.commandTimeout ?? 2000) / 4) ?? this.#clock;
      texts = states ?? [];
      const found = members.filter((app) => !this.#known.has(app));
      for (const app of found) this.#known.add(app);
      if (found.length > 0) {
        texts = [...texts, ...(await this.client.mget(found.map((a) => k.state(a))))];
        apps.push(...found);
      }
    } catch (err) {
      this.#logger?.debug({ err }, 'redis poll failed');
      return;
    }
    const remote = new Map<string, RoutingState | null>();
    apps.forEach((app, i) => {
      const text = texts[i] ?? null;
      try {
        const state = text === null ? null : parseState(text, this.#where(app), app);
        remote.set(app, state);
        if (state !== null && this.#writing.has(text as string)) this.#wrote.set(state.app, state.revision);
        if (state !== null) this.#observe(state);
        if (this.#reportedInvalid.delete(app)) for (const l of [...this.#invalidListeners]) l(app, null);
      } catch (err) {
        if (this.#reportedInvalid.get(app) === text) return;
        this.#reportedInvalid.set(app, text as string);
        // the controller lists it (/readyz brokenStates) and logs it; without one, the store says it
        if (this.#invalidListeners.size === 0 || !(err instanceof InvalidStateError)) this.#logger?.error({ err, app }, 'redis holds a routing state that is not valid; ignoring it (a write to the app replaces it)');
        if (err instanceof InvalidStateError) for (const l of [...this.#invalidListeners]) l(app, err);
      }
    });
    this.emit('sync', remote);
  }

  #onMessage(message: string): void {
    let state: RoutingState;
    try {
      state = parseState(message, `message on ${this.keys.changes}`);
    } catch (err) {
      this.#logger?.warn({ err }, 'ignoring a malformed change message; the poll will catch up');
      return;
    }
    this.#known.add(state.app);
    if (this.#writing.has(message)) this.#wrote.set(state.app, state.revision);
    this.#observe(state);
  }

  /** Remembers a state read from anywhere and hands it to watchers if it is newer than the last they got. */
  #observe(state: RoutingState): void {
    const latest = this.#latest.get(state.app);
    if (latest === undefined || state.revision > latest.revision) {
      this.#latest.set(state.app, state);
      this.#cache?.schedule(this.#latest);
    }
    // with nobody listening nothing counts as delivered, so a watcher added later still gets it on the next sync
    if (this.#listeners.size === 0 || state.revision <= (this.#delivered.get(state.app) ?? 0)) return;
    this.#delivered.set(state.app, state.revision);
    for (const listener of [...this.#listeners]) {
      try {
        listener(state);
      } catch (err) {
        try {
          this.#opts.onListenerError?.(err);
        } catch {
          // nothing left to tell
        }
      }
    }
  }

  #where(app: string): string {
    return `redis key ${this.keys.state(app)}`;
  }

  async #run<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw unavailable(what, err);
    }
  }

  #setConnected(up: boolean): void {
    if (this.#connected === up) return;
    this.#connected = up;
    if (up) this.#logger?.info('redis connected');
    else if (!this.#closed) this.#logger?.warn('redis connection lost; routing on the last known state, writes answer 503');
    this.emit('connection', up);
  }

  #setSubscribed(up: boolean): void {
    if (this.#subscribed === up) return;
    this.#subscribed = up;
    this.emit('subscription', up);
  }

  /** Until both connections are up (so no message published after open resolves is missed), or the timeout. */
  async #waitConnected(timeoutMs: number): Promise<void> {
    await new Promise<void>((resolve) => {
      const check = (): void => {
        if (!this.#connected || !this.#subscribed) return;
        done();
      };
      const done = (): void => {
        clearTimeout(timer);
        this.off('connection', check);
        this.off('subscription', check);
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      this.on('connection', check);
      this.on('subscription', check);
      check();
    });
  }
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function unavailable(what: string, err: unknown, more = ''): SwitchyardError {
  return err instanceof SwitchyardError ? err : new SwitchyardError('STORE_UNAVAILABLE', `redis ${what} failed: ${messageOf(err)}${more}`, { cause: err });
}

/**
 * Parses and checks (invariants.ts) a state read from `where`; the result is frozen. `app` is the
 * app it is stored for (a message names its own). Rejects with InvalidStateError.
 */
export function parseState(text: string, where: string, app?: string): RoutingState {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new InvalidStateError(app ?? '?', where, [{ path: '(root)', message: `not JSON (${err instanceof Error ? err.message : String(err)})` }], null);
  }
  const named = (value as { app?: unknown } | null)?.app;
  return parseStoredState(value, app ?? (typeof named === 'string' ? named : '?'), where);
}

/** JSON.parse, or undefined for text that is not JSON. */
function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
