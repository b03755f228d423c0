import { mkdir, readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import type { Logger } from 'pino';
import type { RoutingState } from './types.ts';
import { writeFileAtomic } from './atomic-file.ts';
import { parseStoredState } from './invariants.ts';

const CACHE_VERSION = 1;

/**
 * How long a change waits for others before the cache file is rewritten. The file only matters
 * when an instance starts while Redis is down, so a second of lag costs nothing real; a shorter
 * wait rewrote the file (six file-system calls, each a wake-up) for nearly every write of a burst
 * on every instance of a fleet (docs/fleet.md §2).
 */
export const CACHE_DEBOUNCE_MS = 1000;

/**
 * Reads the local copy of the last known routing states. A missing, unreadable or foreign file
 * (another prefix, i.e. another fleet) is an empty cache: it only matters while Redis is down,
 * and then a start without it fails loudly anyway (no state to route on).
 */
export async function readStateCache(path: string, prefix: string, logger?: Logger): Promise<Map<string, RoutingState>> {
  const out = new Map<string, RoutingState>();
  let doc: unknown;
  try {
    doc = JSON.parse(await readFile(resolve(path), 'utf8'));
  } catch (err) {
    if ((err as { code?: string }).code !== 'ENOENT') logger?.warn({ err, path }, 'ignoring an unreadable routing state cache');
    return out;
  }
  const d = doc as { version?: unknown; prefix?: unknown; states?: unknown };
  if (d.version !== CACHE_VERSION || d.prefix !== prefix || typeof d.states !== 'object' || d.states === null) {
    logger?.warn({ path, prefix }, 'ignoring a routing state cache written for another store or version');
    return out;
  }
  for (const [app, s] of Object.entries(d.states as Record<string, unknown>)) {
    try {
      out.set(app, parseStoredState(s, app, `routing state cache ${path}, states.${app}`));
    } catch (err) {
      logger?.warn({ err, path, app }, 'ignoring an invalid state in the routing state cache');
    }
  }
  return out;
}

/**
 * Rewrites the cache file with every app's newest state, at most once per debounce period, as
 * one atomic replace (temp file, fsync, rename) so a crash leaves the old or the new file whole.
 */
export class StateCacheWriter {
  readonly #path: string;
  readonly #prefix: string;
  readonly #onError: (err: unknown) => void;
  #pending: ReadonlyMap<string, RoutingState> | null = null;
  #timer: NodeJS.Timeout | null = null;
  #writing: Promise<void> = Promise.resolve();
  #dirMade = false;

  constructor(path: string, prefix: string, onError: (err: unknown) => void) {
    this.#path = resolve(path);
    this.#prefix = prefix;
    this.#onError = onError;
  }

  /** Queues a write of `states` (read when the write starts, so pass the live map). */
  schedule(states: ReadonlyMap<string, RoutingState>): void {
    this.#pending = states;
    if (this.#timer !== null) return;
    this.#timer = setTimeout(() => {
      this.#timer = null;
      void this.#writeNow();
    }, CACHE_DEBOUNCE_MS).unref();
  }

  /** Writes a queued change now and waits for every write to land. */
  async flush(): Promise<void> {
    if (this.#timer !== null) {
      clearTimeout(this.#timer);
      this.#timer = null;
      void this.#writeNow();
    }
    await this.#writing;
  }

  #writeNow(): Promise<void> {
    this.#writing = this.#writing.then(async () => {
      const states = this.#pending;
      this.#pending = null;
      if (states === null) return;
      const text = `${JSON.stringify({ version: CACHE_VERSION, prefix: this.#prefix, states: Object.fromEntries(states) })}\n`;
      try {
        if (!this.#dirMade) {
          await mkdir(dirname(this.#path), { recursive: true });
          this.#dirMade = true;
        }
        // a cache: no directory fsync, a lost rename only costs the newest copy
        await writeFileAtomic(this.#path, text, { durable: false });
      } catch (err) {
        this.#onError(err);
      }
    });
    return this.#writing;
  }
}
