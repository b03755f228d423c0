import type { Logger } from 'pino';

/** How often a failure that keeps repeating is logged again, by default. */
export const REPEAT_EVERY_MS = 60_000;

export interface RepeatedWarningOptions {
  /** a failure that keeps repeating is logged again at most this often, with how many were left out @default REPEAT_EVERY_MS */
  readonly everyMs?: number;
  /** @default Date.now */
  readonly now?: () => number;
}

interface Streak {
  /** failures since the streak began */
  count: number;
  /** when its first failure came */
  readonly since: number;
  /** failures not logged since the last line */
  unlogged: number;
  lastLoggedAt: number;
}

/**
 * A warning for a failure that repeats while a dependency is down (a Redis outage fails the
 * rollout driver's round every second): the first failure of a streak is logged as it comes, the
 * next ones at most once per `everyMs` with how many were left out, and the end of the streak
 * once, so the log says when it started, that it lasted, and when it ended, without a line a
 * second. One instance per component; `key` separates what fails independently (an app).
 */
export class RepeatedWarning {
  readonly #logger: Logger;
  readonly #everyMs: number;
  readonly #now: () => number;
  readonly #streaks = new Map<string, Streak>();

  constructor(logger: Logger, opts: RepeatedWarningOptions = {}) {
    this.#logger = logger;
    this.#everyMs = opts.everyMs ?? REPEAT_EVERY_MS;
    this.#now = opts.now ?? Date.now;
  }

  /** One failure of `key`: logged now, or counted until the next line is due. */
  failed(key: string, fields: Record<string, unknown>, message: string): void {
    const now = this.#now();
    const s = this.#streaks.get(key);
    if (s === undefined) {
      this.#streaks.set(key, { count: 1, since: now, unlogged: 0, lastLoggedAt: now });
      this.#logger.warn(fields, message);
      return;
    }
    s.count++;
    if (now - s.lastLoggedAt < this.#everyMs) {
      s.unlogged++;
      return;
    }
    this.#logger.warn({ ...fields, repeated: s.unlogged + 1, failingForMs: now - s.since }, `${message} (still failing: ${s.count} times in a row; repeats are logged once per ${Math.round(this.#everyMs / 1000)} s)`);
    s.unlogged = 0;
    s.lastLoggedAt = now;
  }

  /** `key` worked: ends its streak, saying so once when there was one. */
  succeeded(key: string, fields: Record<string, unknown>, message: string): void {
    const s = this.#streaks.get(key);
    if (s === undefined) return;
    this.#streaks.delete(key);
    this.#logger.info({ ...fields, failures: s.count, failedForMs: this.#now() - s.since }, message);
  }

  /** Failures of `key` in its current streak (0 when it works). */
  streak(key: string): number {
    return this.#streaks.get(key)?.count ?? 0;
  }
}
