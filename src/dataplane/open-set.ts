import type { Target } from './target.ts';

/** Something that can be cut at a drain deadline or at shutdown: an open stream or WebSocket. */
export interface Cuttable {
  /** close gracefully (WebSocket close 1001, stream end); returns nothing, never throws */
  cut(reason: 'drain' | 'shutdown'): void;
  /** its place in its pool's `OpenSet`, -1 when not in one (owned by OpenSet) */
  openSlot: number;
  /** its target left rotation: move to another if that is harmless (forward.ts); true when it moved */
  leaveTarget?(): boolean;
  /** the target it is on now (a retry moves it) */
  readonly target?: Target;
  /**
   * A request sent whole that waits on its target for the response head (not queued for a
   * connection): when it started; -1 otherwise. Read by the passive checks' stall sweep.
   */
  awaitingHeadSince?(): number;
}

/**
 * What is open on a pool, for the drain deadline and shutdown: O(1) add and delete by a slot
 * index kept on the item (swap with the last, pop).
 *
 * Not a `Set`, on purpose: a Set of short-lived items that churns ~20k times a second replaces
 * its hash table every few dozen operations, and V8 keeps each replaced table (for live
 * iterators) with all its entries. Those dead tables sit in old space, where the scavenger takes
 * their pointers for roots, so every request's objects survived the young generation: 12 MB
 * promoted per scavenge, 15–20 ms scavenges, a mark-compact every 0.6 s (p99 ~20 ms). With
 * this array a scavenge keeps only what is in flight (< 1 ms). `bench/README.md` has the trace.
 */
export class OpenSet<T extends Cuttable> implements Iterable<T> {
  private readonly items: T[] = [];

  get size(): number {
    return this.items.length;
  }

  add(item: T): void {
    if (item.openSlot !== -1) return;
    item.openSlot = this.items.length;
    this.items.push(item);
  }

  delete(item: T): void {
    const i = item.openSlot;
    if (i === -1 || this.items[i] !== item) return;
    const last = this.items.pop() as T;
    if (last !== item) {
      this.items[i] = last;
      last.openSlot = i;
    }
    item.openSlot = -1;
  }

  has(item: T): boolean {
    return item.openSlot !== -1 && this.items[item.openSlot] === item;
  }

  /** Iterates over a copy: cutting an item while iterating (which deletes it) is safe. */
  [Symbol.iterator](): Iterator<T> {
    return this.items.slice()[Symbol.iterator]();
  }
}
