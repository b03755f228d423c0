// The per-second rings and fixed-bucket histograms live stats are made of (see stats.ts for
// the design), apart from LiveStats so that the mirror's figures (mirror-stats.ts) use them
// without importing LiveStats, which holds MirrorStats.

/** Buckets 0..15 are exact milliseconds; then 8 per octave for octaves 2^4 … 2^20. */
const EXACT = 16;
const SUB = 8;
const MAX_OCTAVE = 20;
export const LATENCY_BUCKETS = EXACT + (MAX_OCTAVE - 4 + 1) * SUB;
/**
 * The bucket scheme's id in exports: peers with another scheme are not merged. Stream-duration
 * buckets travel as indexes LATENCY_BUCKETS + i, which an instance of an older version ignores.
 */
export const BUCKET_SCHEME = 1;
const MAX_MS = 2 ** (MAX_OCTAVE + 1);

/** The windows the API, the dashboard and rollouts use, in seconds. */
export const STATS_WINDOWS = [10, 60] as const;
export type StatsWindow = (typeof STATS_WINDOWS)[number];

/** 60 complete seconds plus the one being written. */
const SLOTS = 61;
/** per row: requests, errors, the latency buckets, then the stream-duration buckets */
const ROW = 2 + 2 * LATENCY_BUCKETS;
/** where a row's stream-duration buckets start */
const STREAM = 2 + LATENCY_BUCKETS;
/** A peer export older than this (seconds) is from an instance that stopped heartbeating: left out. */
export const PEER_MAX_AGE_S = 15;

/** The latency bucket of a duration in ms (negative or NaN count as 0). */
export function bucketOf(ms: number): number {
  if (!(ms >= 1)) return 0;
  if (ms < EXACT) return Math.floor(ms);
  if (ms >= MAX_MS) return LATENCY_BUCKETS - 1;
  const v = Math.floor(ms);
  const e = 31 - Math.clz32(v);
  return EXACT + (e - 4) * SUB + ((v >>> (e - 3)) & (SUB - 1));
}

/** The largest whole millisecond a bucket holds: what a percentile falling in it reports. */
export function bucketUpperMs(i: number): number {
  if (i < EXACT) return i;
  const e = 4 + ((i - EXACT) >> 3);
  const sub = (i - EXACT) & (SUB - 1);
  return (SUB + sub + 1) * 2 ** (e - 3) - 1;
}

/** Requests, errors, latency and stream-duration buckets summed over some seconds (and instances). */
export interface Histogram {
  requests: number;
  errors: number;
  /** time to the response head */
  readonly buckets: Float64Array;
  /** time from the response head to its end */
  readonly streams: Float64Array;
}

export function emptyHistogram(): Histogram {
  return { requests: 0, errors: 0, buckets: new Float64Array(LATENCY_BUCKETS), streams: new Float64Array(LATENCY_BUCKETS) };
}

/** Nearest-rank percentile (q in 0..1) of bucket counts (a Histogram's `buckets` or `streams`), in ms; null when empty. */
export function percentile(h: Histogram | Float64Array, q: number): number | null {
  const buckets = h instanceof Float64Array ? h : h.buckets;
  let total = 0;
  for (let i = 0; i < LATENCY_BUCKETS; i++) total += buckets[i] as number;
  if (total === 0) return null;
  const rank = Math.max(1, Math.ceil(q * total));
  let seen = 0;
  for (let i = 0; i < LATENCY_BUCKETS; i++) {
    seen += buckets[i] as number;
    if (seen >= rank) return bucketUpperMs(i);
  }
  return bucketUpperMs(LATENCY_BUCKETS - 1);
}

/** What the API answers per pool and window. */
export interface PoolWindowStats {
  requests: number;
  /** requests per second over the window */
  rps: number;
  /** responses with status ≥ 500, gRPC calls ending with status 2, 4, 13, 14 or 15, plus proxy errors (refused, no target, timeout, broken response) */
  errors: number;
  /** errors / requests, 0 without requests */
  errorRate: number;
  /** time to the response head (TTFB), ms; null without requests */
  p50: number | null;
  p95: number | null;
  p99: number | null;
  /** how long responses stayed open after their head (streams, downloads), 99th percentile in ms; null without responses */
  streamP99: number | null;
}

export function summarize(h: Histogram, seconds: number): PoolWindowStats {
  return {
    requests: h.requests,
    rps: round3(h.requests / seconds),
    errors: h.errors,
    errorRate: h.requests === 0 ? 0 : round3(h.errors / h.requests),
    p50: percentile(h, 0.5),
    p95: percentile(h, 0.95),
    p99: percentile(h, 0.99),
    streamP99: percentile(h.streams, 0.99),
  };
}

function round3(n: number): number {
  return Math.round(n * 1000) / 1000;
}

/** One pool's ring of per-second rows. */
export class PoolRing {
  readonly rows = new Uint32Array(SLOTS * ROW);
  readonly stamps = new Float64Array(SLOTS).fill(-1);

  /** `headMs` and `streamMs` negative: not counted in those figures (an upgrade). */
  add(status: number, error: boolean, headMs: number, streamMs: number, endedAt: number): void {
    const sec = Math.floor(endedAt / 1000);
    const slot = sec % SLOTS;
    const stamp = this.stamps[slot] as number;
    if (stamp !== sec) {
      // a record from a second already recycled is too old to count
      if (stamp > sec) return;
      this.stamps[slot] = sec;
      this.rows.fill(0, slot * ROW, slot * ROW + ROW);
    }
    const base = slot * ROW;
    const rows = this.rows;
    rows[base] = (rows[base] as number) + 1;
    if (error || status >= 500) rows[base + 1] = (rows[base + 1] as number) + 1;
    if (headMs < 0) return;
    const b = base + 2 + bucketOf(headMs);
    rows[b] = (rows[b] as number) + 1;
    const t = base + STREAM + bucketOf(streamMs);
    rows[t] = (rows[t] as number) + 1;
  }

  /** Adds the complete seconds [nowSec - seconds, nowSec) into `into`. */
  sumInto(into: Histogram, nowSec: number, seconds: number): void {
    for (let s = Math.max(0, nowSec - seconds); s < nowSec; s++) {
      const slot = s % SLOTS;
      if (this.stamps[slot] !== s) continue;
      const base = slot * ROW;
      into.requests += this.rows[base] as number;
      into.errors += this.rows[base + 1] as number;
      for (let i = 0; i < LATENCY_BUCKETS; i++) (into.buckets[i] as number) += this.rows[base + 2 + i] as number;
      for (let i = 0; i < LATENCY_BUCKETS; i++) (into.streams[i] as number) += this.rows[base + STREAM + i] as number;
    }
  }
}

/**
 * What an instance publishes in its fleet heartbeat: per app, pool and window, a flat array
 * `[requests, errors, bucket, count, bucket, count, …]` (non-empty buckets only). Pools without
 * requests in a window are left out, so an idle instance publishes almost nothing.
 */
export interface StatsExport {
  /** bucket scheme (BUCKET_SCHEME) */
  readonly v: number;
  /** epoch second the windows end at (exclusive) */
  readonly at: number;
  readonly apps: Readonly<Record<string, Readonly<Record<string, Readonly<Partial<Record<`${StatsWindow}`, readonly number[]>>>>>>>;
}

export function encode(h: Histogram): number[] {
  const out = [h.requests, h.errors];
  for (let i = 0; i < LATENCY_BUCKETS; i++) if ((h.buckets[i] as number) > 0) out.push(i, h.buckets[i] as number);
  for (let i = 0; i < LATENCY_BUCKETS; i++) if ((h.streams[i] as number) > 0) out.push(LATENCY_BUCKETS + i, h.streams[i] as number);
  return out;
}

/** Adds an encoded window into `into`; ignores anything malformed (a peer's payload is input). */
export function addEncoded(into: Histogram, flat: readonly number[] | undefined): void {
  if (!Array.isArray(flat) || flat.length < 2) return;
  const [requests, errors] = flat as [unknown, unknown];
  if (!isCount(requests) || !isCount(errors)) return;
  into.requests += requests;
  into.errors += errors;
  for (let k = 2; k + 1 < flat.length; k += 2) {
    const i = flat[k];
    const n = flat[k + 1];
    if (!Number.isInteger(i) || (i as number) < 0 || !isCount(n)) continue;
    if ((i as number) < LATENCY_BUCKETS) (into.buckets[i as number] as number) += n;
    else if ((i as number) < 2 * LATENCY_BUCKETS) (into.streams[(i as number) - LATENCY_BUCKETS] as number) += n;
  }
}

function isCount(n: unknown): n is number {
  return typeof n === 'number' && Number.isFinite(n) && n >= 0;
}

/**
 * Sums exports (of several instances) into one, window by window. Exports with another bucket
 * scheme are skipped. Pure: what a fleet module can use to pre-aggregate heartbeats.
 */
export function mergeWindows(exports: Iterable<StatsExport>): StatsExport {
  const sums = new Map<string, Histogram>();
  let at = 0;
  for (const ex of exports) {
    if (ex?.v !== BUCKET_SCHEME || typeof ex.apps !== 'object' || ex.apps === null) continue;
    at = Math.max(at, ex.at);
    for (const [app, pools] of Object.entries(ex.apps)) {
      for (const [pool, windows] of Object.entries(pools ?? {})) {
        for (const w of STATS_WINDOWS) {
          const key = `${app}\u0000${pool}\u0000${w}`;
          let h = sums.get(key);
          if (h === undefined) sums.set(key, (h = emptyHistogram()));
          addEncoded(h, windows?.[`${w}`]);
        }
      }
    }
  }
  const apps: Record<string, Record<string, Partial<Record<`${StatsWindow}`, number[]>>>> = {};
  for (const [key, h] of sums) {
    if (h.requests === 0) continue;
    const [app, pool, w] = key.split('\u0000') as [string, string, `${StatsWindow}`];
    ((apps[app] ??= {})[pool] ??= {})[w] = encode(h);
  }
  return { v: BUCKET_SCHEME, at, apps };
}

/** Where the fleet's other instances' latest exports come from (their heartbeats). */
