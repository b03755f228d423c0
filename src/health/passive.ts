import type { HealthConfig } from '../config/schema.ts';
import type { Cuttable } from '../dataplane/open-set.ts';
import type { Outlier, Target } from '../dataplane/target.ts';

export type PassiveConfig = NonNullable<HealthConfig['passive']>;

export interface Ejection {
  readonly target: Target;
  /** epoch ms it returns */
  readonly until: number;
  /** the failure streak, or with `stalled` the requests found waiting over `stallAfter` */
  readonly failures: number;
  /** ejected by the stall sweep: requests waited over `stallAfter` and it answered none */
  readonly stalled: boolean;
}

/**
 * Passive health checks of one pool, Envoy's consecutive-5xx outlier detection: a target whose
 * last `failures` answers were 5xx or upstream errors is left out for `ejectFor`, then returns
 * by itself (the data plane compares `ejectedUntil` with the clock; no timer). At most
 * `maxEjectedShare` of the pool is out at once, and never its last target in rotation: ejecting
 * everything would turn a flaky pool into a dead one.
 *
 * A hanging target (it accepts requests and never answers) gives no failure until the response
 * timeout fires, a minute by default, while every request routed to it queues there: Envoy and
 * HAProxy count a timeout only when it fires. So `sweep` also ejects a target with `failures`
 * requests waiting over `stallAfter` for a response head when it answered none in that time
 * (the waiting requests count as the failure streak). The "answered none" keeps a healthy target
 * with a few slow requests in rotation: under load a live target answers something every moment.
 *
 * Active checks do not un-eject a target: passive checks exist to catch what the health
 * endpoint does not see (Envoy's `successful_active_health_check_uneject_host` set to false).
 */
export class OutlierDetector implements Outlier {
  private readonly targets: readonly Target[];
  private readonly cfg: PassiveConfig;
  private readonly now: () => number;
  private readonly onEject: (e: Ejection) => void;
  private readonly onHeld: (target: Target) => void;
  /** when each target last answered (a non-5xx response), as the sweeps saw it */
  private readonly answeredAt = new Map<Target, number>();
  /** stalled targets already reported as held at the ejection limit (reported once per stall) */
  private readonly heldStalled = new Set<Target>();
  /** the most targets out at once, for this pool's size */
  readonly cap: number;

  constructor(targets: readonly Target[], cfg: PassiveConfig, hooks: { now: () => number; onEject: (e: Ejection) => void; onHeld: (target: Target) => void }) {
    this.targets = targets;
    this.cfg = cfg;
    this.now = hooks.now;
    this.onEject = hooks.onEject;
    this.onHeld = hooks.onHeld;
    // the epsilon keeps 0.3 × 10 at 3 despite floating point
    this.cap = Math.min(Math.floor(cfg.maxEjectedShare * targets.length + 1e-9), targets.length - 1);
    const now = this.now();
    for (const t of targets) this.answeredAt.set(t, now);
  }

  /** Called by `Target.recordResult(false)`; cheap until the streak reaches `failures`. */
  failed(target: Target): void {
    const failures = target.consecutiveFailures;
    if (failures < this.cfg.failures) return;
    const now = this.now();
    if (target.ejectedUntil > now) return; // requests still in flight when it was ejected
    // report a held ejection once per streak, not on every failure after it
    if (!this.eject(target, now, failures, false) && failures === this.cfg.failures) this.onHeld(target);
  }

  /**
   * The stall check, run every few hundred ms over the pool's open requests (`PoolRuntime.open`):
   * O(requests in flight), nothing on the request path but the `answered` flag.
   */
  sweep(open: Iterable<Cuttable>): void {
    const stallAfter = this.cfg.stallAfter;
    if (stallAfter <= 0) return;
    const now = this.now();
    for (const t of this.targets) {
      if (!t.answered) continue;
      t.answered = false;
      this.answeredAt.set(t, now);
      this.heldStalled.delete(t);
    }
    let waiting: Map<Target, number> | null = null;
    for (const c of open) {
      // a request whose body is still arriving waits on its client, not on the target; one in
      // the queue for a connection (apps[].maxConnections) waits on the cap (limits.queueTimeout)
      const since = c.awaitingHeadSince?.() ?? -1;
      if (since < 0 || now - since < stallAfter || c.target === undefined) continue;
      waiting ??= new Map();
      waiting.set(c.target, (waiting.get(c.target) ?? 0) + 1);
    }
    if (waiting === null) return;
    for (const [t, n] of waiting) {
      if (n < this.cfg.failures || t.ejectedUntil > now || now - (this.answeredAt.get(t) ?? now) < stallAfter) continue;
      if (this.eject(t, now, n, true)) this.heldStalled.delete(t);
      else if (!this.heldStalled.has(t)) {
        this.heldStalled.add(t);
        this.onHeld(t);
      }
    }
  }

  /** Ejects `target` unless the pool is at its ejection limit or it is the last one up; false when held. */
  private eject(target: Target, now: number, failures: number, stalled: boolean): boolean {
    let ejected = 0;
    let others = 0;
    for (const t of this.targets) {
      if (t.ejectedUntil > now) ejected++;
      else if (t !== target && t.healthy) others++;
    }
    if (ejected >= this.cap || others === 0) return false;
    const until = now + this.cfg.ejectFor;
    target.ejectedUntil = until;
    target.consecutiveFailures = 0;
    target.ejections++;
    this.onEject({ target, until, failures, stalled });
    return true;
  }
}
