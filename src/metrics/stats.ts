import type { Snapshot } from '../routing/snapshot.ts';
import type { Config } from '../config/schema.ts';
import type { MirrorRecord, RequestRecord } from '../dataplane/types.ts';
import { grpcClass } from '../dataplane/grpc.ts';
import { NOT_THE_POOLS_FAULT, SwitchyardError } from '../errors.ts';
import { MirrorStats, type MirrorWindowView } from './mirror-stats.ts';
import { addEncoded, BUCKET_SCHEME, emptyHistogram, encode, PEER_MAX_AGE_S, PoolRing, summarize, STATS_WINDOWS, type Histogram, type PoolWindowStats, type StatsExport, type StatsWindow } from './pool-ring.ts';

/**
 * Live per-pool figures over the last 10 s and 60 s (rps, error rate, p50/p95/p99), the signal
 * the dashboard draws and rollouts judge a canary by.
 *
 * Latency is the time to the response head (TTFB: from routing the request to its status line
 * going to the client, or to the proxy's own answer), so a stream, a long download or an SSE
 * response that stays open for minutes is as fast as its head; how long responses stayed open
 * after their head is kept apart (`streamP99`). An upgrade (101) counts as a request and in the
 * error rate, in neither duration figure: its connection's life is not a response time.
 *
 * Each pool keeps a ring of per-second rows: request count, error count and two fixed-bucket
 * histograms (latency, stream duration). Recording is O(1) and allocates nothing (a few typed-array increments; a
 * row is zeroed once per second). A window sums the complete seconds before the current one, so
 * figures lag by under a second and `rps` is exactly `requests / seconds`.
 *
 * Latency resolution: durations are whole milliseconds; every value under 16 ms has its own
 * bucket (exact), above that each power of two is split into 8 buckets, so a bucket is at most
 * 12.5 % wide. A percentile reports the upper end of its bucket: exact under 16 ms, otherwise
 * high by less than 12.5 %, never low. Values from 2^21 ms (~35 min) up land in the last bucket.
 *
 * Memory: 61 rows × 290 uint32 ≈ 70.8 KB per pool, allocated once at startup, plus the last
 * minute's sampled 10 s figures (60 small objects per pool) for the dashboard's charts.
 */

export * from './pool-ring.ts';

/**
 * Where the fleet's other instances' latest exports come from (their heartbeats). `passive`: a
 * background read (the once-a-second sampler), which takes what is at hand rather than asking
 * for fresher figures.
 */
export type PeerWindows = (passive?: boolean) => Iterable<StatsExport>;

export interface LiveStatsOptions {
  /** @default Date.now */
  readonly now?: () => number;
  /**
   * How often the 10 s window of every pool is sampled into the last minute's history (what
   * the dashboard's charts start from); 0: never by itself, `sample()` does it (tests).
   * @default 1000
   */
  readonly sampleEveryMs?: number;
  /** the other instances' exports, when the store is a fleet (see `attachFleet`) */
  readonly peers?: PeerWindows;
  /** the current routing snapshot: apps and pools defined while the process runs are found there */
  readonly snapshot?: () => Snapshot;
}

/** `GET /v1/apps/:app/stats` */
export interface StatsView {
  app: string;
  at: string;
  windows: Record<`${StatsWindow}s`, Record<string, PoolWindowStats>>;
  /** true when the figures are summed over the fleet's instances */
  fleet: boolean;
  /** instances whose figures are included (this one and fresh peers) */
  instances: number;
  /**
   * Only with `?history=1`: the 10 s window as it was at each second of the last minute, oldest
   * first, as this instance saw it (summed over the fleet like the windows). Seconds before the
   * instance started, or when its clock stalled, are missing, not zero.
   */
  history?: HistoryPoint[];
  /** the app's mirror pool, when it has a mirror (src/metrics/mirror-stats.ts) */
  mirror?: MirrorWindowView;
}

/** One second of `StatsView.history`: every pool's figures over the 10 s up to `at`. */
export interface HistoryPoint {
  at: string;
  pools: Record<string, PoolWindowStats>;
}

/** Seconds of history kept: the dashboard's charts show the last minute. */
export const HISTORY_SECONDS = 60;

/** Live per-pool stats of one proxy instance, merged with its fleet's when attached. */
export class LiveStats {
  /** [app slot][pool slot], like the snapshot (AppRoute.index, PoolRoute.index); grows as apps and pools are added live */
  private readonly rings: PoolRing[][];
  /** app → its slot and its pools' names by slot */
  private readonly apps: Map<string, { readonly index: number; readonly pools: string[] }>;
  private readonly now: () => number;
  private peers: PeerWindows | null;
  private readonly snapshot: (() => Snapshot) | undefined;
  /** app → its last HISTORY_SECONDS samples, oldest first */
  private readonly history = new Map<string, { sec: number; point: HistoryPoint }[]>();
  private readonly sampler: NodeJS.Timeout | null;
  private readonly mirrors = new MirrorStats();

  constructor(config: Config, opts: LiveStatsOptions = {}) {
    this.now = opts.now ?? Date.now;
    this.peers = opts.peers ?? null;
    this.snapshot = opts.snapshot;
    this.rings = [];
    this.apps = new Map();
    const start = opts.snapshot?.();
    if (start === undefined) config.apps.forEach((a, i) => Object.keys(a.pools).forEach((p, j) => this.grow(i, a.name, j, p)));
    // slots: the snapshot's (AppRoute.index, PoolRoute.index), so the hot path indexes them like the Runtime
    else for (const a of start.apps) for (const p of a.pools) this.grow(a.index, a.name, p.index, p.name);
    const every = opts.sampleEveryMs ?? 1000;
    // a few microseconds per pool each second; unref'd so it never keeps a process alive
    this.sampler = every > 0 ? setInterval(() => this.sample(), every).unref() : null;
  }

  /**
   * Records every app's 10 s windows as the history point of the current second (once per
   * second; a second already sampled is replaced). Sampling, rather than recomputing the past
   * from the rings, keeps the fleet's share: peers export only their current windows.
   */
  sample(): void {
    const nowMs = this.now();
    const nowSec = Math.floor(nowMs / 1000);
    // passive: a sampler asking every second on every instance would have each read every other's heartbeats on every change
    const peers = this.freshPeers(nowSec, true);
    const live = this.snapshot?.().byName;
    for (const app of this.apps.keys()) {
      if (live !== undefined && !live.has(app)) continue; // deleted since
      const pools: Record<string, PoolWindowStats> = {};
      for (const [pool, h] of this.histograms(app, 10, nowSec, peers)) pools[pool] = summarize(h, 10);
      let list = this.history.get(app);
      if (list === undefined) this.history.set(app, (list = []));
      const point = { sec: nowSec, point: { at: new Date(nowSec * 1000).toISOString(), pools } };
      if (list.at(-1)?.sec === nowSec) list[list.length - 1] = point;
      else list.push(point);
      while (list.length > 0 && (list[0] as { sec: number }).sec <= nowSec - HISTORY_SECONDS) list.shift();
    }
  }

  /** Stops the sampling timer. */
  close(): void {
    if (this.sampler !== null) clearInterval(this.sampler);
  }

  /** Hot path: one finished request. */
  record(rec: RequestRecord): void {
    const o = rec.outcome;
    // a proxy's own answer (shutdown, a stalled client) says nothing about the pool: not counted
    if (o.error !== null && NOT_THE_POOLS_FAULT.has(o.error)) return;
    const ring = this.rings[rec.app.index]?.[rec.pool.index] ?? this.grow(rec.app.index, rec.app.name, rec.pool.index, rec.pool.name);
    if (o.status === 101) {
      ring.add(o.status, false, -1, -1, o.endedAt);
      return;
    }
    // a gRPC call answered 200 failed when its grpc-status is the server's fault (docs/grpc.md §4)
    const failed = o.error !== null || (o.grpc !== undefined && grpcClass(o.grpc) === 'server');
    ring.add(o.status, failed, Math.max(0, o.headAt - o.startedAt), Math.max(0, o.endedAt - o.headAt), o.endedAt);
  }

  /** One mirrored copy's end (or skip), or a compared pair (src/dataplane/mirror.ts). */
  recordMirror(rec: MirrorRecord): void {
    this.mirrors.record(rec);
  }

  /** The ring of an app or pool added while the process runs (its first request). */
  private grow(appSlot: number, app: string, poolSlot: number, pool: string): PoolRing {
    let a = this.apps.get(app);
    if (a === undefined) this.apps.set(app, (a = { index: appSlot, pools: [] }));
    a.pools[poolSlot] = pool;
    const row = (this.rings[appSlot] ??= []);
    return (row[poolSlot] = new PoolRing());
  }

  /** The fleet's other instances' exports: from now on windows are summed over the fleet. */
  attachFleet(peers: PeerWindows): void {
    this.peers = peers;
  }

  get fleet(): boolean {
    return this.peers !== null;
  }

  /** This instance's windows, for its heartbeat. */
  exportWindows(): StatsExport {
    const nowSec = Math.floor(this.now() / 1000);
    const apps: Record<string, Record<string, Partial<Record<`${StatsWindow}`, number[]>>>> = {};
    for (const [name, a] of this.apps) {
      a.pools.forEach((pool, p) => {
        for (const w of STATS_WINDOWS) {
          const h = emptyHistogram();
          this.rings[a.index]?.[p]?.sumInto(h, nowSec, w);
          if (h.requests > 0) ((apps[name] ??= {})[pool] ??= {})[`${w}`] = encode(h);
        }
      });
    }
    this.mirrors.exportInto(apps, nowSec);
    return { v: BUCKET_SCHEME, at: nowSec, apps };
  }

  /** Histograms of every pool of `app` over the window, this instance plus fresh peers. */
  private histograms(app: string, seconds: StatsWindow, nowSec: number, peers: readonly StatsExport[]): Map<string, Histogram> {
    const route = this.snapshot?.().byName.get(app);
    // an app or pool defined since the start, with no request yet, gets its (empty) rings now
    if (route !== undefined) for (const p of route.pools) if (this.rings[route.index]?.[p.index] === undefined) this.grow(route.index, app, p.index, p.name);
    const a = this.apps.get(app);
    if (a === undefined || (this.snapshot !== undefined && route === undefined)) throw new SwitchyardError('UNKNOWN_APP', `unknown app "${app}"`);
    const out = new Map<string, Histogram>();
    a.pools.forEach((pool, p) => {
      if (route !== undefined && !route.poolsByName.has(pool)) return; // a pool removed since
      const h = emptyHistogram();
      this.rings[a.index]?.[p]?.sumInto(h, nowSec, seconds);
      for (const peer of peers) addEncoded(h, peer.apps[app]?.[pool]?.[`${seconds}`]);
      out.set(pool, h);
    });
    return out;
  }

  private freshPeers(nowSec: number, passive = false): StatsExport[] {
    if (this.peers === null) return [];
    const fresh: StatsExport[] = [];
    for (const p of this.peers(passive)) if (p?.v === BUCKET_SCHEME && typeof p.at === 'number' && nowSec - p.at <= PEER_MAX_AGE_S && typeof p.apps === 'object' && p.apps !== null) fresh.push(p);
    return fresh;
  }

  /**
   * Per-pool figures of `app` over the last `seconds` (complete seconds), summed over the fleet
   * when attached. What a rollout's analysis reads. Throws UNKNOWN_APP (404).
   */
  window(app: string, seconds: StatsWindow): Record<string, PoolWindowStats> {
    const nowSec = Math.floor(this.now() / 1000);
    const out: Record<string, PoolWindowStats> = {};
    for (const [pool, h] of this.histograms(app, seconds, nowSec, this.freshPeers(nowSec))) out[pool] = summarize(h, seconds);
    return out;
  }

  /** The copies sent to `pool` as `app`'s mirror over `seconds`, and their compared pairs: what a rollout's mirror step judges. */
  mirrorWindow(app: string, pool: string, seconds: StatsWindow): { copies: PoolWindowStats; compare: { pairs: number; mismatches: number; mismatchRate: number } } {
    const nowSec = Math.floor(this.now() / 1000);
    const v = this.mirrors.view(app, pool, nowSec, this.freshPeers(nowSec));
    return { copies: v.windows[`${seconds}s`], compare: v.compare[`${seconds}s`] };
  }

  /** The JSON of `GET /v1/apps/:app/stats`; with `history`, the last minute's samples too. */
  view(app: string, opts: { history?: boolean } = {}): StatsView {
    const nowMs = this.now();
    const nowSec = Math.floor(nowMs / 1000);
    const peers = this.freshPeers(nowSec);
    const windows = {} as StatsView['windows'];
    for (const w of STATS_WINDOWS) {
      const pools: Record<string, PoolWindowStats> = {};
      for (const [pool, h] of this.histograms(app, w, nowSec, peers)) pools[pool] = summarize(h, w);
      windows[`${w}s`] = pools;
    }
    const out: StatsView = { app, at: new Date(nowMs).toISOString(), windows, fleet: this.fleet, instances: 1 + peers.length };
    const mirror = this.snapshot?.().byName.get(app)?.mirror;
    if (mirror !== undefined && mirror !== null) out.mirror = this.mirrors.view(app, mirror.to, nowSec, peers);
    if (opts.history === true) out.history = (this.history.get(app) ?? []).filter((p) => p.sec > nowSec - HISTORY_SECONDS && p.sec <= nowSec).map((p) => p.point);
    return out;
  }
}
