import type { Config } from '../config/schema.ts';
import type { CountsSource, PoolCounts } from '../control/counts.ts';
import { mergeWindows, type StatsExport } from '../metrics/stats.ts';
import type { WorkerReport } from './ipc.ts';

interface Member {
  /** app → revision it acknowledged */
  applied: Readonly<Record<string, number>>;
  report: WorkerReport | null;
}

interface Waiter {
  readonly app: string;
  readonly revision: number;
  readonly done: (settled: boolean) => void;
}

const zero = (): PoolCounts => ({ inflight: 0, upgraded: 0, pinned: 0 });

/**
 * What the primary knows of its live workers' figures: their acknowledged revisions and last
 * reports. The instance the API and the fleet speak of is the whole process group: its counts
 * are summed over the workers, and it routes on a revision once the primary applied it and
 * every live worker acknowledged it. Answers from memory only, like `fleetCounts`.
 */
export class WorkerGroup {
  /** every app's pools now (live definitions: they change while the process runs) */
  private readonly apps: () => readonly { readonly name: string; readonly pools: readonly string[] }[];
  private readonly members = new Map<number, Member>();
  private readonly waiters = new Set<Waiter>();
  private readonly listeners: (() => void)[] = [];

  /** `apps`: the config (its apps, fixed) or a function answering the live apps and pools */
  constructor(apps: Config | (() => readonly { readonly name: string; readonly pools: readonly string[] }[])) {
    if (typeof apps === 'function') this.apps = apps;
    else {
      const fixed = apps.apps.map((a) => ({ name: a.name, pools: Object.keys(a.pools) }));
      this.apps = () => fixed;
    }
  }

  /** A worker is listening and routes on `applied`. */
  join(slot: number, applied: Readonly<Record<string, number>>): void {
    this.members.set(slot, { applied, report: null });
    this.changed();
  }

  /** A worker went away: its counts go with it (its connections did), and no write waits for it. */
  leave(slot: number): void {
    if (this.members.delete(slot)) this.changed();
  }

  acknowledge(slot: number, applied: Readonly<Record<string, number>>): void {
    const m = this.members.get(slot);
    if (m === undefined) return;
    m.applied = applied;
    this.changed();
  }

  report(slot: number, report: WorkerReport): void {
    const m = this.members.get(slot);
    if (m === undefined) return;
    m.report = report;
    // a report carries `applied` too: a lost acknowledgement is made good within one interval
    if (!sameRevisions(m.applied, report.applied)) this.acknowledge(slot, report.applied);
  }

  /** Live (listening) workers. */
  get size(): number {
    return this.members.size;
  }

  /** Called whenever a worker joins, leaves or acknowledges a revision. */
  onChange(fn: () => void): void {
    this.listeners.push(fn);
  }

  /** One pool's counts summed over the live workers, as of their last reports. */
  counts(app: string, pool: string): PoolCounts {
    const sum = zero();
    for (const m of this.members.values()) {
      const c = m.report?.pools[app]?.[pool];
      if (c === undefined) continue;
      sum.inflight += c.inflight;
      sum.upgraded += c.upgraded;
      sum.pinned += c.pinned;
    }
    return sum;
  }

  /** Every pool's summed counts: the group's fleet heartbeat. */
  pools(): Record<string, Record<string, PoolCounts>> {
    const out: Record<string, Record<string, PoolCounts>> = {};
    for (const a of this.apps()) {
      const byPool: Record<string, PoolCounts> = {};
      for (const p of a.pools) byPool[p] = this.counts(a.name, p);
      out[a.name] = byPool;
    }
    return out;
  }

  /** The revision the whole group routes `app` on: the lowest of the primary's and the workers'; 0 with no worker. */
  revision(app: string, primaryRevision: number): number {
    if (this.members.size === 0) return 0;
    let min = primaryRevision;
    for (const m of this.members.values()) min = Math.min(min, m.applied[app] ?? 0);
    return min;
  }

  /** Resolves true once every live worker routes `app` on `revision` (or later), false after `timeoutMs`. */
  settled(app: string, revision: number, timeoutMs: number): Promise<boolean> {
    if (this.isSettled(app, revision)) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => finish(false), timeoutMs);
      const w: Waiter = { app, revision, done: (ok) => finish(ok) };
      const finish = (ok: boolean): void => {
        clearTimeout(timer);
        this.waiters.delete(w);
        resolve(ok);
      };
      this.waiters.add(w);
    });
  }

  /** The live workers' stats windows summed into one export, or null before any report. */
  stats(): StatsExport | null {
    const exports: StatsExport[] = [];
    for (const m of this.members.values()) if (m.report !== null) exports.push(m.report.stats);
    return exports.length === 0 ? null : mergeWindows(exports);
  }

  /** Per live worker: requests served and revisions, for `/readyz` details. */
  figures(slot: number): { served: number; reportedAt: number | null; applied: Readonly<Record<string, number>> } | null {
    const m = this.members.get(slot);
    return m === undefined ? null : { served: m.report?.served ?? 0, reportedAt: m.report?.at ?? null, applied: m.applied };
  }

  private isSettled(app: string, revision: number): boolean {
    for (const m of this.members.values()) if ((m.applied[app] ?? 0) < revision) return false;
    return true;
  }

  private changed(): void {
    for (const w of [...this.waiters]) if (this.isSettled(w.app, w.revision)) w.done(true);
    for (const fn of this.listeners) fn();
  }
}

function sameRevisions(a: Readonly<Record<string, number>>, b: Readonly<Record<string, number>>): boolean {
  const keys = Object.keys(b);
  return keys.length === Object.keys(a).length && keys.every((k) => a[k] === b[k]);
}

/**
 * CountsSource of a process group on the file store: one instance (the group), its counts the
 * workers' sum, applied once every worker routes on the revision.
 */
export function groupCounts(group: WorkerGroup, instanceId: string, primaryRevision: (app: string) => number): CountsSource {
  return {
    poolCounts: (app, pool) => group.counts(app, pool),
    poolCountsByInstance: (app, pool) => ({ [instanceId]: group.counts(app, pool) }),
    instances: (app, revision) => ({ applied: group.revision(app, primaryRevision(app)) >= revision ? 1 : 0, total: 1 }),
  };
}
