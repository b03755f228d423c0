import { unlink, writeFile } from 'node:fs/promises';

/** Whether a store can write now, as its last write or probe found; what `/readyz` (`storeHealth`) and `/metrics` show. */
export interface StoreHealth {
  readonly writable: boolean;
  /** ISO time it became unwritable */
  readonly since?: string;
  /** why (the failed write's or probe's error) */
  readonly error?: string;
}

/**
 * Tracks whether the file store's directory takes writes. A failed write says so at once; a
 * small probe file written and removed every `intervalMs` says so between writes (a filesystem
 * remounted read-only, or full, while nobody writes) and notices when it is fixed.
 */
export class Writability {
  readonly #probePath: string;
  readonly #timer: NodeJS.Timeout;
  #failed: { since: number; error: string } | null = null;

  constructor(path: string, intervalMs: number) {
    this.#probePath = `${path}.probe`;
    this.#timer = setInterval(() => void this.probe(), intervalMs).unref();
  }

  get writable(): boolean {
    return this.#failed === null;
  }

  health(): StoreHealth {
    const f = this.#failed;
    return f === null ? { writable: true } : { writable: false, since: new Date(f.since).toISOString(), error: f.error };
  }

  /** The outcome of a write (or a probe): `err` undefined is a success. */
  note(err?: unknown): void {
    if (err === undefined) this.#failed = null;
    else this.#failed ??= { since: Date.now(), error: err instanceof Error ? err.message : String(err) };
  }

  async probe(): Promise<void> {
    try {
      await writeFile(this.#probePath, 'probe\n');
      await unlink(this.#probePath);
      this.note();
    } catch (err) {
      this.note(err);
    }
  }

  stop(): void {
    clearInterval(this.#timer);
  }
}

/** `/readyz`'s `storeHealth` detail for any store: the file store's own, Redis's connection. */
export function storeHealth(store: object): { storeHealth: StoreHealth } {
  const s = store as { health?: () => StoreHealth; connected?: unknown };
  if (typeof s.health === 'function') return { storeHealth: s.health() };
  return { storeHealth: s.connected === false ? { writable: false, error: 'redis is unreachable' } : { writable: true } };
}
