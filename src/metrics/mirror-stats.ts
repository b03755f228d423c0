import type { MirrorRecord } from '../dataplane/types.ts';
import { addEncoded, emptyHistogram, encode, PoolRing, STATS_WINDOWS, summarize, type PoolWindowStats, type StatsExport, type StatsWindow } from './pool-ring.ts';

/**
 * The mirror pool's figures beside the live pools' (docs/cohorts.md §7): per app, the
 * copies sent to its mirror pool over the last 10 s and 60 s (rps, error rate, p99, as a live
 * pool's), and with `compare` the (live, copy) status-class pairs and how many differed.
 *
 * Both are PoolRings (pool-ring.ts): the copies as requests; the compared pairs with "errors" counting
 * the mismatches, so the fleet's heartbeat carries and merges them like any pool's windows, under
 * the keys `mirror:POOL` and `compare:POOL` (a pool name has no colon, so they never meet one).
 */
export interface MirrorWindowView {
  /** the mirror pool */
  pool: string;
  /** the copies that went out (skipped ones are counted in /metrics only) */
  windows: Record<`${StatsWindow}s`, PoolWindowStats>;
  /** with `compare`: pairs compared, pairs whose status classes differed, and their ratio */
  compare: Record<`${StatsWindow}s`, { pairs: number; mismatches: number; mismatchRate: number }>;
}

export class MirrorStats {
  /** app → key (`mirror:POOL` / `compare:POOL`) → ring; allocated at an app's first copy */
  private readonly rings = new Map<string, Map<string, PoolRing>>();

  record(rec: MirrorRecord): void {
    if (rec.kind === 'copy') {
      if (rec.outcome === 'skipped_body' || rec.outcome === 'skipped_busy') return;
      this.ring(rec.app.name, `mirror:${rec.pool.name}`).add(rec.outcome === '5xx' ? 500 : 200, rec.outcome === 'error', rec.endedAt - rec.startedAt, 0, rec.endedAt);
      return;
    }
    this.ring(rec.app.name, `compare:${rec.pool.name}`).add(rec.live === rec.mirror ? 200 : 500, false, 0, 0, rec.at);
  }

  private ring(app: string, key: string): PoolRing {
    let byKey = this.rings.get(app);
    if (byKey === undefined) this.rings.set(app, (byKey = new Map()));
    let ring = byKey.get(key);
    if (ring === undefined) byKey.set(key, (ring = new PoolRing()));
    return ring;
  }

  /** Adds this instance's windows to a heartbeat export's `apps`. */
  exportInto(apps: Record<string, Record<string, Partial<Record<`${StatsWindow}`, number[]>>>>, nowSec: number): void {
    for (const [app, byKey] of this.rings) {
      for (const [key, ring] of byKey) {
        for (const w of STATS_WINDOWS) {
          const h = emptyHistogram();
          ring.sumInto(h, nowSec, w);
          if (h.requests > 0) ((apps[app] ??= {})[key] ??= {})[`${w}`] = encode(h);
        }
      }
    }
  }

  /** The mirror figures of `app` with `pool` as its mirror pool, this instance plus fresh peers. */
  view(app: string, pool: string, nowSec: number, peers: readonly StatsExport[]): MirrorWindowView {
    const windows = {} as MirrorWindowView['windows'];
    const compare = {} as MirrorWindowView['compare'];
    for (const w of STATS_WINDOWS) {
      const copies = emptyHistogram();
      const pairs = emptyHistogram();
      this.rings.get(app)?.get(`mirror:${pool}`)?.sumInto(copies, nowSec, w);
      this.rings.get(app)?.get(`compare:${pool}`)?.sumInto(pairs, nowSec, w);
      for (const peer of peers) {
        addEncoded(copies, peer.apps[app]?.[`mirror:${pool}`]?.[`${w}`]);
        addEncoded(pairs, peer.apps[app]?.[`compare:${pool}`]?.[`${w}`]);
      }
      windows[`${w}s`] = summarize(copies, w);
      compare[`${w}s`] = { pairs: pairs.requests, mismatches: pairs.errors, mismatchRate: pairs.requests === 0 ? 0 : Math.round((pairs.errors / pairs.requests) * 1000) / 1000 };
    }
    return { pool, windows, compare };
  }
}
