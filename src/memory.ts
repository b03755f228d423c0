import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

type Gc = (options: { type: 'major'; execution: 'sync'; flavor: 'last-resort' }) => void;

/**
 * Hands back the memory that starting up used and no longer needs, once, when the process is
 * ready to serve: one full collection that also shrinks the young generation.
 *
 * Why: loading the config, zod schemas and every module allocates enough for V8 to grow the
 * young generation to its 16 MB maximum, and nothing shrinks it while the proxy sits idle: V8's
 * memory reducer only starts after a full (mark-compact) collection, which a quiet process never
 * runs. Measured on the bench config: RSS 88 MiB at rest, of which 10 MiB were committed and
 * empty young-generation pages; 77 MiB after this call (new space 16 MB → 1 MB). Under load the
 * young generation grows back as V8 sees fit. It costs one collection of a ~15 MB heap (~40 ms measured here),
 * before the first request.
 *
 * `flavor: 'last-resort'` is the collection V8 runs under memory pressure (it reduces the heap's
 * footprint, which a plain `gc()` does not). Node has no API for it; the `gc` function V8 installs
 * with `--expose-gc` is taken from a fresh context after setting that flag (the flag is read when
 * a context is created), so the process needs no extra command-line flag.
 */
export function releaseStartupMemory(): boolean {
  return reduceMemory();
}

/**
 * The same memory-reducing collection, for when a burst of connections is over (limits.ts):
 * without it V8 keeps the heap and young generation the burst grew to. Sync, ~40–100 ms.
 */
export function reduceMemory(): boolean {
  try {
    let gc = (globalThis as { gc?: Gc }).gc;
    if (gc === undefined) {
      setFlagsFromString('--expose-gc');
      gc = runInNewContext('gc') as Gc | undefined;
    }
    if (typeof gc !== 'function') return false;
    gc({ type: 'major', execution: 'sync', flavor: 'last-resort' });
    return true;
  } catch {
    return false; // a runtime without V8's gc extension: nothing to give back, nothing broken
  }
}
