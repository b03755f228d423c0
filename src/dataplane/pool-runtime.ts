import type { AppConfig } from '../config/schema.ts';
import { OpenSet, type Cuttable } from './open-set.ts';
import type { Target } from './target.ts';

/** Live per-pool figures of the connections a proxy instance is carrying. */
export interface PoolCounts {
  /** requests (including open streams) being proxied to the pool */
  inflight: number;
  /** upgraded connections (WebSocket) open to the pool */
  upgraded: number;
  /** requests routed to the pool by an affinity pin in the last 60 s */
  pinned: number;
}

/** Per-second ring of counts over the last 60 s, for `pinned`. */
class RollingCount {
  private readonly slots = new Uint32Array(60);
  private readonly stamps = new Float64Array(60);
  add(now: number): void {
    const sec = Math.floor(now / 1000);
    const i = sec % 60;
    if (this.stamps[i] !== sec) {
      this.stamps[i] = sec;
      this.slots[i] = 0;
    }
    this.slots[i] = (this.slots[i] ?? 0) + 1;
  }
  /** Takes back one `add(at)`: a pinned request the pool did not serve after all (DataPlane.reroute). */
  remove(at: number): void {
    const sec = Math.floor(at / 1000);
    const i = sec % 60;
    if (this.stamps[i] === sec && (this.slots[i] ?? 0) > 0) this.slots[i] = (this.slots[i] as number) - 1;
  }
  total(now: number): number {
    const sec = Math.floor(now / 1000);
    let sum = 0;
    for (let i = 0; i < 60; i++) if (sec - (this.stamps[i] as number) < 60) sum += this.slots[i] as number;
    return sum;
  }
}

/** The live side of one pool: targets, balancing cursor, and what is in flight on it. */
export class PoolRuntime {
  readonly name: string;
  /**
   * The targets new requests may pick, in the definition's order. Replaced (never mutated) when
   * the definition changes (Runtime.sync); a removed target leaves this list at once and finishes
   * what it carries as a retiring target.
   */
  targets: readonly Target[];
  /** the definition's target URLs (Runtime.sync) */
  defined: readonly string[] = [];
  /** this instance's discovered target URLs (Runtime.setDiscoveredTargets), added after the defined ones */
  discovered: readonly string[] = [];
  private cursor = 0;
  inflight = 0;
  upgraded = 0;
  readonly pinned = new RollingCount();
  /** open streams and upgraded connections, cut at the drain deadline or at shutdown */
  readonly open = new OpenSet<Cuttable>();

  constructor(name: string, targets: Target[]) {
    this.name = name;
    this.targets = targets;
  }

  /**
   * Round robin over targets that are up, skipping `exclude` (targets already tried for this
   * request). Returns null when no target is up.
   */
  pick(now: number, exclude: Target | null): Target | null {
    const targets = this.targets;
    const n = targets.length;
    if (n === 1) {
      const t = targets[0] as Target;
      return t !== exclude && t.isUp(now) ? t : null;
    }
    for (let k = 0; k < n; k++) {
      const t = targets[(this.cursor + k) % n] as Target;
      if (t !== exclude && t.isUp(now)) {
        this.cursor = (this.cursor + k + 1) % n;
        return t;
      }
    }
    return null;
  }

  counts(now: number): PoolCounts {
    return { inflight: this.inflight, upgraded: this.upgraded, pinned: this.pinned.total(now) };
  }

  /**
   * `target` was ejected or marked down: the requests waiting on it that can be replayed
   * harmlessly go to another target now, not at the response timeout. Returns how many moved.
   */
  resendFrom(target: Target): number {
    let moved = 0;
    for (const c of this.openOn(target)) if (c.leaveTarget?.() === true) moved++;
    return moved;
  }

  /** What is open on one target (streams and upgraded connections), by the `target` each open item carries. */
  openOn(target: Target): Cuttable[] {
    return [...this.open].filter((c) => (c as { target?: unknown }).target === target);
  }
}

export class AppRuntime {
  readonly name: string;
  /** the app's current definition, compiled (replaced by Runtime.sync) */
  config: AppConfig;
  /** indexed by the pool's slot in the snapshot (PoolRoute.index); a removed pool keeps its slot and its counters */
  readonly pools: PoolRuntime[] = [];
  readonly byName = new Map<string, PoolRuntime>();
  constructor(config: AppConfig) {
    this.name = config.name;
    this.config = config;
  }
}
