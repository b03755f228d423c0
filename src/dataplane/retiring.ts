import type { PoolRuntime } from './pool-runtime.ts';
import type { Target } from './target.ts';

/** A target that left its pool: it finishes what it carries, then its connection pool is closed. */
export interface RetiringTarget {
  readonly app: string;
  readonly pool: PoolRuntime;
  readonly target: Target;
  /** epoch ms of the removal */
  readonly since: number;
  /** since + the app's drain.timeout: what is still open on it then is cut (WebSocket 1001) */
  readonly deadline: number;
}

/** Told when a retiring target is closed (nothing left on it) or cut (its deadline passed). */
export type RetireListener = (event: { app: string; pool: string; target: string; what: 'closed' | 'cut'; open: number }) => void;

/**
 * Targets that left their pool's definition (Runtime.sync): each is looked at every `every` ms
 * while any is left — closed once it carries nothing, and what is still open on it cut (WebSocket
 * 1001, stream end) once its deadline passed — so no request is lost and no connection pool leaks.
 */
export class RetiringTargets implements Iterable<RetiringTarget> {
  private readonly items = new Set<RetiringTarget>();
  private timer: NodeJS.Timeout | null = null;
  private closed = false;
  private readonly now: () => number;
  private readonly every: number;
  private readonly onRetire: RetireListener;

  constructor(now: () => number, every: number, onRetire: RetireListener) {
    this.now = now;
    this.every = every;
    this.onRetire = onRetire;
  }

  get size(): number {
    return this.items.size;
  }

  [Symbol.iterator](): Iterator<RetiringTarget> {
    return [...this.items][Symbol.iterator]();
  }

  add(r: RetiringTarget): void {
    this.items.add(r);
    this.schedule();
  }

  /** A target added back while it was still retiring keeps its connection pool and what it carries. */
  take(pool: PoolRuntime, url: string): Target | undefined {
    for (const r of this.items) {
      if (r.pool === pool && r.target.url === url) {
        this.items.delete(r);
        return r.target;
      }
    }
    return undefined;
  }

  /** Closes retiring targets that carry nothing; cuts what is still open on those past their deadline. */
  round(): void {
    const now = this.now();
    for (const r of [...this.items]) {
      if (r.target.inflight <= 0) {
        this.items.delete(r);
        void r.target.dispatcher.close().catch(() => undefined);
        this.onRetire({ app: r.app, pool: r.pool.name, target: r.target.url, what: 'closed', open: 0 });
      } else if (now >= r.deadline) {
        const open = r.pool.openOn(r.target);
        if (open.length > 0) this.onRetire({ app: r.app, pool: r.pool.name, target: r.target.url, what: 'cut', open: open.length });
        for (const c of open) c.cut('drain');
      }
    }
  }

  /** The retiring targets of one pool, for the drain figures. */
  of(app: string, pool: string): RetiringTarget[] {
    return [...this.items].filter((r) => r.app === app && r.pool.name === pool);
  }

  /** Stops looking; returns the targets still retiring, for the caller to destroy. */
  close(): Target[] {
    this.closed = true;
    if (this.timer !== null) clearTimeout(this.timer);
    const left = [...this.items].map((r) => r.target);
    this.items.clear();
    return left;
  }

  private schedule(): void {
    if (this.timer !== null || this.closed) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.round();
      if (this.items.size > 0) this.schedule();
    }, this.every).unref();
  }
}
