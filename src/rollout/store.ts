import { mkdir, readFile } from 'node:fs/promises';
import { basename, dirname, extname, join, resolve } from 'node:path';
import { ProcessError, SwitchyardError } from '../errors.ts';
import { writeFileAtomic } from '../state/atomic-file.ts';
import type { Rollout } from './model.ts';

export type PutResult = { readonly ok: true; readonly rollout: Rollout } | { readonly ok: false; readonly current: Rollout | null };

/**
 * Where rollout records live: one per app, the running one or the last one. Apart from the
 * routing state (StateStore) on purpose: a record changes on its own schedule (pause, resume, the
 * driver's steps), and keeping it out leaves the StateStore contract, which every instance's
 * routing depends on, as it was. Both implementations compare-and-set on `version`.
 */
export interface RolloutStore {
  get(app: string): Promise<Rollout | null>;
  /** Writes `next` only if the stored record's version is `expected` (0: none stored); `next.version` must be `expected + 1`. */
  put(next: Rollout, expected: number): Promise<PutResult>;
}

function checkVersion(next: Rollout, expected: number): void {
  if (next.version !== expected + 1) throw new ProcessError('BUG', `rollout put(${next.app}): version must be ${expected + 1}, got ${next.version}`);
}

/** In memory: tests, and a store of a kind this module does not know. */
export class MemoryRolloutStore implements RolloutStore {
  readonly #records = new Map<string, Rollout>();

  async get(app: string): Promise<Rollout | null> {
    return this.#records.get(app) ?? null;
  }

  async put(next: Rollout, expected: number): Promise<PutResult> {
    checkVersion(next, expected);
    const current = this.#records.get(next.app) ?? null;
    if ((current?.version ?? 0) !== expected) return { ok: false, current };
    const rollout = Object.freeze(structuredClone(next));
    this.#records.set(next.app, rollout);
    return { ok: true, rollout };
  }
}

const FILE_VERSION = 1;

/** `data/state.json` → `data/state.rollouts.json` */
export function rolloutsPathBeside(statePath: string): string {
  const abs = resolve(statePath);
  const ext = extname(abs);
  return join(dirname(abs), `${basename(abs, ext)}.rollouts.json`);
}

/**
 * The file store's rollouts: a JSON file beside the state file, owned by the one instance,
 * read once at open and rewritten whole on every put (temp file, fsync, rename), so a restart
 * finds the last record complete and resumes it.
 */
export class FileRolloutStore implements RolloutStore {
  readonly path: string;
  #records: ReadonlyMap<string, Rollout>;
  #tail: Promise<unknown> = Promise.resolve();

  private constructor(path: string, records: ReadonlyMap<string, Rollout>) {
    this.path = path;
    this.#records = records;
  }

  static async open(path: string): Promise<FileRolloutStore> {
    await mkdir(dirname(path), { recursive: true });
    let records = new Map<string, Rollout>();
    let text: string | null = null;
    try {
      text = await readFile(path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new SwitchyardError('STORE_UNAVAILABLE', `cannot read the rollouts file ${path}: ${(err as Error).message}`, { cause: err });
    }
    if (text !== null) {
      let doc: { version?: unknown; rollouts?: Record<string, Rollout> };
      try {
        doc = JSON.parse(text) as typeof doc;
      } catch (err) {
        // never start empty over a rollout in progress: the next write would forget it
        throw new ProcessError('ROLLOUTS_FILE_INVALID', `rollouts file ${path} is not valid JSON (${(err as Error).message}); repair it or move it away`, { cause: err });
      }
      if (doc.version !== FILE_VERSION || typeof doc.rollouts !== 'object' || doc.rollouts === null) throw new ProcessError('ROLLOUTS_FILE_INVALID', `rollouts file ${path} is not a version ${FILE_VERSION} Switchyard rollouts file; repair it or move it away`);
      records = new Map(Object.entries(doc.rollouts).map(([app, r]) => [app, Object.freeze(r)]));
    }
    return new FileRolloutStore(path, records);
  }

  async get(app: string): Promise<Rollout | null> {
    return this.#records.get(app) ?? null;
  }

  put(next: Rollout, expected: number): Promise<PutResult> {
    checkVersion(next, expected);
    // one put at a time, so the version check and the write form one step
    const run = this.#tail.then(async (): Promise<PutResult> => {
      const current = this.#records.get(next.app) ?? null;
      if ((current?.version ?? 0) !== expected) return { ok: false, current };
      const rollout = Object.freeze(structuredClone(next));
      const records = new Map(this.#records).set(next.app, rollout);
      await this.#write(records);
      this.#records = records;
      return { ok: true, rollout };
    });
    this.#tail = run.catch(() => undefined);
    return run;
  }

  /** Waits for the write in progress. */
  async close(): Promise<void> {
    await this.#tail;
  }

  async #write(records: ReadonlyMap<string, Rollout>): Promise<void> {
    const text = `${JSON.stringify({ version: FILE_VERSION, rollouts: Object.fromEntries(records) }, null, 2)}\n`;
    try {
      await writeFileAtomic(this.path, text);
    } catch (err) {
      throw new SwitchyardError('STORE_UNAVAILABLE', `cannot write the rollouts file ${this.path}: ${(err as Error).message}`, { cause: err });
    }
  }
}

