/** Live per-pool figures of the connections a proxy instance is carrying. */
export interface PoolCounts {
  /** requests (including open streams) being proxied to the pool */
  inflight: number;
  /** upgraded connections (WebSocket) open to the pool */
  upgraded: number;
  /** requests routed to the pool by an affinity pin in the last 60 s */
  pinned: number;
}

/**
 * Where AppState and the drain figures get their counts: this instance's own counters on the
 * file store, the sum over live instances' heartbeats on Redis.
 */
export interface CountsSource {
  poolCounts(app: string, pool: string): PoolCounts;
  /** per-instance breakdown, `{ [instanceId]: PoolCounts }` */
  poolCountsByInstance(app: string, pool: string): Record<string, PoolCounts>;
  /**
   * Live proxy instances, and how many of them route on `revision` of the state this instance
   * routes on. While the other instances cannot be read, `total` is null and `unknown` is set
   * with the reason; `applied` then counts only the instances known to route on it.
   */
  instances(app: string, revision: number): InstancesFigure;
  /** Why the fleet-wide figures cannot be known now, or null (always null for one instance). */
  figuresUnknown?(): string | null;
}

export type InstancesFigure = { applied: number; total: number } | { applied: number; total: null; unknown: true; reason: string };
