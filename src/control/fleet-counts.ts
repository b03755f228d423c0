import type { CountsSource, PoolCounts } from './counts.ts';
import type { Fleet } from './fleet.ts';

/**
 * CountsSource over the fleet: this instance's own counts, live, plus every other instance's
 * last heartbeat — the silent (unaccounted) ones included, with their last figures, since their
 * silence proves nothing. Answers from memory only; asking marks the figures wanted, so the
 * fleet reads the heartbeat hash whenever it changes for a while (fleet.ts `want`).
 */
export function fleetCounts(fleet: Fleet): CountsSource {
  const zero = (): PoolCounts => ({ inflight: 0, upgraded: 0, pinned: 0 });
  const byInstance = (app: string, pool: string): Record<string, PoolCounts> => {
    fleet.want();
    const out: Record<string, PoolCounts> = { [fleet.instanceId]: fleet.ownCounts(app, pool) };
    // every instance last read, not only the fresh ones: while the figures are unknown the sum is a lower bound, flagged by figuresUnknown
    for (const hb of fleet.lastPeers().values()) out[hb.id] = hb.pools[app]?.[pool] ?? zero();
    return out;
  };
  return {
    poolCounts(app, pool) {
      const sum = zero();
      for (const c of Object.values(byInstance(app, pool))) {
        sum.inflight += c.inflight;
        sum.upgraded += c.upgraded;
        sum.pinned += c.pinned;
      }
      return sum;
    },
    poolCountsByInstance: byInstance,
    // applied: on this very revision *and* the same state (digest); a peer on a higher revision, or on this
    // revision of another state (Redis lost data and was re-seeded), does not route as this answer says
    instances(app, revision) {
      fleet.want();
      const digest = fleet.ownRevision(app) === revision ? fleet.ownDigest(app) : null;
      const same = (rev: number | undefined, d: string | undefined | null): boolean => rev === revision && digest !== null && d === digest;
      let applied = same(fleet.ownRevision(app), digest) ? 1 : 0;
      const unknown = fleet.figuresUnknown();
      if (unknown !== null) return { applied, total: null, unknown: true, reason: unknown };
      const peers = fleet.lastPeers();
      // a heartbeat without digests comes from an older version (a rolling upgrade): its revision is all it says
      for (const hb of peers.values()) if (same(hb.applied[app], hb.digests === undefined ? digest : hb.digests[app])) applied++;
      const unaccounted = fleet.unaccounted();
      return { applied, total: 1 + peers.size, ...(unaccounted.length === 0 ? {} : { unaccounted }) };
    },
    figuresUnknown: () => {
      fleet.want();
      return fleet.figuresUnknown();
    },
    drainUnknown: (app, pool) => fleet.drainUnknown(app, pool),
  };
}
