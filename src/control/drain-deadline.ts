import type { PoolCounts } from './counts.ts';

// Which deadline a draining pool waits for, so `drain` names it rather than the drain timeout
// alone: with affinity, pins keep a pool in use for the whole window (10 minutes, say) although
// the drain timeout for streams may be shorter, and `drain --wait --timeout 1m` could never end.

/** What holds a pool from being drained, and when that ends by itself. */
export interface DrainBlock {
  /**
   * `weight`: the pool still gets traffic, nothing ends it but a write;
   * `affinity`: sessions pinned to it are still routed there until the affinity window ends;
   * `drain-timeout`: requests, streams or upgraded connections are open, cut at the drain timeout at the latest.
   */
  readonly by: 'weight' | 'affinity' | 'drain-timeout';
  /** ISO time it ends by itself, null for `weight` */
  readonly until: string | null;
  /** ms until then by the server's clock, null for `weight` */
  readonly remainingMs: number | null;
}

export interface DrainBlockFacts {
  readonly weightBp: number;
  readonly counts: PoolCounts;
  /** epoch ms until which affinity pins to the pool are routable, or null */
  readonly pinsUntil: number | null;
  /** epoch ms of drainingSince + drain.timeout, or null while the pool has weight */
  readonly drainDeadline: number | null;
  readonly now: number;
}

/**
 * The deadline that decides when the pool is drained at the latest: the later of the affinity
 * window's end (while pins are routable) and the drain timeout (while anything is open); null
 * when nothing holds it.
 */
export function drainBlock(f: DrainBlockFacts): DrainBlock | null {
  if (f.weightBp > 0) return { by: 'weight', until: null, remainingMs: null };
  const pins = f.pinsUntil !== null && f.now < f.pinsUntil ? f.pinsUntil : null;
  const open = f.counts.inflight > 0 || f.counts.upgraded > 0;
  // open connections outlive the drain timeout only if something is wrong; it is their deadline all the same
  const timeout = open && f.drainDeadline !== null ? Math.max(f.drainDeadline, f.now) : null;
  if (pins === null && timeout === null) return null;
  const [by, at] = pins !== null && (timeout === null || pins >= timeout) ? (['affinity', pins] as const) : (['drain-timeout', timeout as number] as const);
  return { by, until: new Date(at).toISOString(), remainingMs: Math.max(0, at - f.now) };
}

/** The block in words, for messages: the affinity window's end is a floor, the drain timeout a ceiling. */
export function blockWords(b: DrainBlock): string {
  if (b.by === 'weight') return 'its weight (it still gets traffic)';
  return b.by === 'affinity' ? `the affinity window (sessions pinned to it are still routed there) until ${b.until}` : `what is still open is cut at the drain timeout, ${b.until}`;
}
