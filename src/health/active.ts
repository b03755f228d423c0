import type { HealthConfig } from '../config/schema.ts';
import type { Target } from '../dataplane/target.ts';
import type { Probe, ProbeResult } from './probe.ts';

/** The last check of a target, for the admin views. */
export interface LastCheck {
  /** epoch ms it ended */
  readonly at: number;
  readonly ok: boolean;
  readonly status: number | null;
  readonly error: string | null;
}

/** One target's active checks: HAProxy's rise/fall counters and its timer. */
export interface CheckedTarget {
  readonly app: string;
  readonly pool: string;
  readonly target: Target;
  readonly health: HealthConfig;
  /** consecutive passes / failures of the current streak */
  passes: number;
  failures: number;
  last: LastCheck | null;
}

export interface Transition {
  readonly check: CheckedTarget;
  readonly up: boolean;
  /** the failing check's reason when going down */
  readonly error: string | null;
}

/** Timers, injectable for tests; the default is the global pair with `unref()`. */
export interface Timers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

const realTimers: Timers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms).unref(),
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

export interface ActiveCheckerOptions {
  readonly checks: readonly CheckedTarget[];
  readonly probe: Probe;
  /** @default Date.now */
  readonly now?: () => number;
  /** @default setTimeout/clearTimeout, unref'd */
  readonly timers?: Timers;
  /** a target went down or came back up */
  readonly onTransition?: (t: Transition) => void;
}

/**
 * Active health checks: every target is probed every `interval`, one probe at a time (the next
 * is scheduled when one ends, so a slow target is never probed twice at once). A target starts
 * up, as in HAProxy, so a fresh proxy routes at once; `fall` consecutive failures take it down,
 * `rise` consecutive passes bring it back. Only `Target.healthy` and `Target.reportedVersion`
 * are written; the data plane reads them on every request.
 */
export class ActiveChecker {
  /** added and removed as targets join and leave their pools (live definitions) */
  readonly checks = new Set<CheckedTarget>();
  private readonly probe: Probe;
  private readonly now: () => number;
  private readonly timers: Timers;
  private readonly onTransition: (t: Transition) => void;
  private readonly timersOf = new Map<CheckedTarget, unknown>();
  private readonly abort = new AbortController();
  private readonly running = new Set<Promise<void>>();
  private started = false;

  constructor(opts: ActiveCheckerOptions) {
    for (const c of opts.checks) this.checks.add(c);
    this.probe = opts.probe;
    this.now = opts.now ?? Date.now;
    this.timers = opts.timers ?? realTimers;
    this.onTransition = opts.onTransition ?? (() => undefined);
  }

  /** Starts every target's loop with a first check right away. */
  start(): void {
    if (this.started || this.abort.signal.aborted) return;
    this.started = true;
    for (const c of this.checks) this.schedule(c, 0);
  }

  /** A target that joined: checked at once if the checks run (it starts up, as at a fresh start). */
  add(c: CheckedTarget): void {
    this.checks.add(c);
    if (this.started) this.schedule(c, 0);
  }

  /** A target that left: its loop stops (a probe under way ends without being counted). */
  remove(c: CheckedTarget): void {
    this.checks.delete(c);
    const h = this.timersOf.get(c);
    if (h !== undefined) this.timers.clearTimeout(h);
    this.timersOf.delete(c);
  }

  private schedule(c: CheckedTarget, ms: number): void {
    if (this.abort.signal.aborted || !this.checks.has(c)) return;
    this.timersOf.set(c, this.timers.setTimeout(() => this.tick(c), ms));
  }

  private tick(c: CheckedTarget): void {
    this.timersOf.delete(c);
    const run = this.check(c).then(() => this.schedule(c, c.health.interval));
    this.running.add(run);
    void run.finally(() => this.running.delete(run));
  }

  /** One check of one target, counted in its rise/fall streak. */
  async check(c: CheckedTarget): Promise<ProbeResult> {
    const r = await this.probe(c.target.origin, c.health, this.abort.signal);
    if (!this.abort.signal.aborted && this.checks.has(c)) this.record(c, r);
    return r;
  }

  /** Counts a result: HAProxy semantics, any pass resets the failure streak and vice versa. */
  record(c: CheckedTarget, r: ProbeResult): void {
    const t = c.target;
    c.last = { at: this.now(), ok: r.ok, status: r.status, error: r.error };
    if (r.ok) {
      if (c.health.versionFrom !== undefined) t.reportedVersion = r.version;
      c.failures = 0;
      c.passes++;
      if (!t.healthy && c.passes >= c.health.rise) {
        t.healthy = true;
        this.onTransition({ check: c, up: true, error: null });
      }
    } else {
      c.passes = 0;
      c.failures++;
      if (t.healthy && c.failures >= c.health.fall) {
        t.healthy = false;
        this.onTransition({ check: c, up: false, error: r.error });
      }
    }
  }

  /** A one-off probe of each given target, not counted in rise/fall (the version check). */
  async probeNow(checks: readonly CheckedTarget[]): Promise<ProbeResult[]> {
    return Promise.all(
      checks.map(async (c) => {
        const r = await this.probe(c.target.origin, c.health, this.abort.signal);
        if (r.ok && c.health.versionFrom !== undefined && !this.abort.signal.aborted) c.target.reportedVersion = r.version;
        return r;
      }),
    );
  }

  /** Stops every loop and aborts the probes under way; resolves once they have ended. */
  async close(): Promise<void> {
    this.abort.abort();
    for (const h of this.timersOf.values()) this.timers.clearTimeout(h);
    this.timersOf.clear();
    await Promise.allSettled([...this.running]);
  }
}
