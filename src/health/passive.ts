import type { HealthConfig } from '../config/schema.ts';
import type { Outlier, Target } from '../dataplane/runtime.ts';

export type PassiveConfig = NonNullable<HealthConfig['passive']>;

export interface Ejection {
  readonly target: Target;
  /** epoch ms it returns */
  readonly until: number;
  readonly failures: number;
}

/**
 * Passive health checks of one pool, Envoy's consecutive-5xx outlier detection: a target whose
 * last `failures` answers were 5xx or upstream errors is left out for `ejectFor`, then returns
 * by itself (the data plane compares `ejectedUntil` with the clock; no timer). At most
 * `maxEjectedShare` of the pool is out at once, and never its last target in rotation: ejecting
 * everything would turn a flaky pool into a dead one.
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
  }

  /** Called by `Target.recordResult(false)`; cheap until the streak reaches `failures`. */
  failed(target: Target): void {
    const failures = target.consecutiveFailures;
    if (failures < this.cfg.failures) return;
    const now = this.now();
    if (target.ejectedUntil > now) return; // requests still in flight when it was ejected
    let ejected = 0;
    let others = 0;
    for (const t of this.targets) {
      if (t.ejectedUntil > now) ejected++;
      else if (t !== target && t.healthy) others++;
    }
    if (ejected >= this.cap || others === 0) {
      // report a held ejection once per streak, not on every failure after it
      if (failures === this.cfg.failures) this.onHeld(target);
      return;
    }
    const until = now + this.cfg.ejectFor;
    target.ejectedUntil = until;
    target.consecutiveFailures = 0;
    target.ejections++;
    this.onEject({ target, until, failures });
  }
}
