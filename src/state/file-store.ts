import { mkdir, readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { SwitchyardError } from '../errors.ts';
import { removeStaleTemps, writeFileAtomic } from './atomic-file.ts';
import { historyEntryOf, type CasResult, type HistoryEntry, type RoutingState, type StateStore, type Unsubscribe } from './types.ts';

export interface FileStoreOptions {
  /** The JSON file holding every app's state; its directory is created if missing. */
  path: string;
  /** History entries kept per app; older ones are dropped on the next write. */
  historyLimit: number;
  /**
   * Told about a watch listener that threw (the store itself carries on).
   * @default ignores the error
   */
  onListenerError?: (err: unknown) => void;
}

/** One app in the file. `history` is newest first, at most `historyLimit` long. */
interface AppRecord {
  readonly state: RoutingState;
  readonly history: readonly HistoryEntry[];
}

const FILE_VERSION = 1;

/**
 * The embedded store: every app's state and history in one JSON file, owned by one process.
 * Reads come from memory; writes replace the whole file atomically (temp file, fsync, rename,
 * fsync of the directory), so the file on disk is always a complete earlier or later version.
 */
export class FileStore implements StateStore {
  readonly kind = 'file' as const;
  readonly #path: string;
  readonly #historyLimit: number;
  readonly #onListenerError: (err: unknown) => void;
  readonly #listeners = new Set<(state: RoutingState) => void>();
  /** Replaced, never mutated, so a failed write leaves nothing half-applied. */
  #apps: ReadonlyMap<string, AppRecord>;
  /** Tail of the write queue: each compareAndSet starts once the previous one settled. */
  #tail: Promise<unknown> = Promise.resolve();
  #closed = false;

  private constructor(path: string, historyLimit: number, apps: ReadonlyMap<string, AppRecord>, onListenerError: (err: unknown) => void) {
    this.#path = path;
    this.#historyLimit = historyLimit;
    this.#apps = apps;
    this.#onListenerError = onListenerError;
  }

  /** Loads the file (a missing file is an empty store); rejects if it exists but cannot be used. */
  static async open(opts: FileStoreOptions): Promise<FileStore> {
    if (!Number.isInteger(opts.historyLimit) || opts.historyLimit < 1) {
      throw new Error(`historyLimit must be a positive integer, got ${opts.historyLimit}`);
    }
    const path = resolve(opts.path);
    const dir = dirname(path);
    try {
      await mkdir(dir, { recursive: true });
    } catch (err) {
      throw new SwitchyardError('STORE_UNAVAILABLE', `cannot create the state directory ${dir}: ${messageOf(err)}`, { cause: err });
    }
    await removeStaleTemps(path);
    const apps = await load(path, opts.historyLimit);
    return new FileStore(path, opts.historyLimit, apps, opts.onListenerError ?? (() => {}));
  }

  async get(app: string): Promise<RoutingState | null> {
    return this.#apps.get(app)?.state ?? null;
  }

  async getMany(apps: readonly string[]): Promise<Map<string, RoutingState>> {
    const out = new Map<string, RoutingState>();
    for (const app of apps) {
      const rec = this.#apps.get(app);
      if (rec) out.set(app, rec.state);
    }
    return out;
  }

  async history(app: string, limit: number): Promise<HistoryEntry[]> {
    return (this.#apps.get(app)?.history ?? []).slice(0, Math.max(0, Math.floor(limit)));
  }

  async compareAndSet(next: RoutingState, expected: number | null): Promise<CasResult> {
    // A wrong revision is a caller's bug, not a conflict: fail loudly instead of answering ok:false.
    if (expected !== null && next.revision !== expected + 1) {
      throw new Error(`compareAndSet(${next.app}): next.revision must be ${expected + 1}, got ${next.revision}`);
    }
    if (!Number.isInteger(next.revision) || next.revision < 1) {
      throw new Error(`compareAndSet(${next.app}): revision must be an integer >= 1, got ${next.revision}`);
    }
    if (this.#closed) throw new SwitchyardError('STORE_UNAVAILABLE', `the file store ${this.#path} is closed`);
    const run = this.#tail.then(() => this.#casNow(next, expected));
    this.#tail = run.catch(() => {});
    return run;
  }

  watch(listener: (state: RoutingState) => void): Unsubscribe {
    this.#listeners.add(listener);
    return () => {
      this.#listeners.delete(listener);
    };
  }

  /** Waits for queued writes; later writes reject. Reads keep answering from memory. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#tail;
  }

  /** Runs alone (see #tail), so the revision check and the write form one step. */
  async #casNow(next: RoutingState, expected: number | null): Promise<CasResult> {
    const current = this.#apps.get(next.app);
    if ((current?.state.revision ?? null) !== expected) return { ok: false, current: current?.state ?? null };
    const state = freezeState(next);
    const history = [freezeEntry(historyEntryOf(state)), ...(current?.history ?? [])].slice(0, this.#historyLimit);
    const apps = new Map(this.#apps).set(next.app, { state, history });
    await this.#write(apps);
    this.#apps = apps;
    for (const listener of [...this.#listeners]) {
      try {
        listener(state);
      } catch (err) {
        try {
          this.#onListenerError(err);
        } catch {
          // nothing left to tell; the write itself succeeded and must be reported as such
        }
      }
    }
    return { ok: true, state };
  }

  async #write(apps: ReadonlyMap<string, AppRecord>): Promise<void> {
    const text = `${JSON.stringify({ version: FILE_VERSION, apps: Object.fromEntries(apps) }, null, 2)}\n`;
    try {
      await writeFileAtomic(this.#path, text);
    } catch (err) {
      throw new SwitchyardError('STORE_UNAVAILABLE', `cannot write the state file ${this.#path}: ${messageOf(err)}`, { cause: err });
    }
  }
}

async function load(path: string, historyLimit: number): Promise<Map<string, AppRecord>> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') return new Map(); // first start: nothing stored yet
    throw new SwitchyardError('STORE_UNAVAILABLE', `cannot read the state file ${path}: ${messageOf(err)}`, { cause: err });
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    // Never start empty over an operator's state: the next write would erase it for good.
    throw new Error(`state file ${path} is not valid JSON (${messageOf(err)}); repair it or move it away`, { cause: err });
  }
  if (!isRecord(doc) || doc.version !== FILE_VERSION || !isRecord(doc.apps)) {
    throw new Error(`state file ${path} is not a version ${FILE_VERSION} Switchyard state file ({ version: 1, apps: {...} })`);
  }
  const apps = new Map<string, AppRecord>();
  for (const [app, rec] of Object.entries(doc.apps)) {
    if (!isRecord(rec) || !isRecord(rec.state) || rec.state.app !== app || !Number.isInteger(rec.state.revision) || !Array.isArray(rec.history)) {
      throw new Error(`state file ${path}: apps.${app} is not a valid { state, history } record`);
    }
    const history = (rec.history as HistoryEntry[]).slice(0, historyLimit).map(freezeEntry);
    apps.set(app, { state: freezeState(rec.state as unknown as RoutingState), history });
  }
  return apps;
}

function freezeState(state: RoutingState): RoutingState {
  const copy = structuredClone(state);
  Object.freeze(copy.weights);
  Object.freeze(copy.drainingSince);
  return Object.freeze(copy);
}

function freezeEntry(entry: HistoryEntry): HistoryEntry {
  Object.freeze(entry.weights);
  return Object.freeze(entry);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function errnoOf(err: unknown): string | undefined {
  return isRecord(err) && typeof err.code === 'string' ? err.code : undefined;
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
