import { mkdir, readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { ProcessError, SwitchyardError } from '../errors.ts';
import { removeStaleTemps, writeFileAtomic } from './atomic-file.ts';
import { Writability, type StoreHealth } from './writability.ts';
import { checkWrite, freezeState, InvalidStateError, parseStoredState, readableRevision, type PoolsOf } from './invariants.ts';
import { historyEntryOf, type CasOptions, type CasResult, type HistoryEntry, type RoutingState, type StateStore, type Unsubscribe } from './types.ts';

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
  /**
   * The pools each app may weigh (the config's): a write naming another pool is refused.
   * @default only the shape of the weights is checked
   */
  pools?: PoolsOf;
  /** ms between probes of whether the directory takes writes (`health()`) @default 5000 */
  probeInterval?: number;
}

/** One app in the file. `history` is newest first, at most `historyLimit` long. */
interface AppRecord {
  readonly state: RoutingState;
  readonly history: readonly HistoryEntry[];
}

/**
 * An app whose record in the file breaks an invariant: kept byte for byte (rewritten as read) so
 * nothing of the operator's is lost, until a write for the app replaces it.
 */
interface BrokenRecord {
  readonly raw: unknown;
  readonly error: InvalidStateError;
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
  readonly #pools: PoolsOf | undefined;
  /** Replaced, never mutated, so a failed write leaves nothing half-applied. */
  #apps: ReadonlyMap<string, AppRecord>;
  /** Replaced, never mutated, like #apps. */
  #broken: ReadonlyMap<string, BrokenRecord>;
  /** Tail of the write queue: each compareAndSet starts once the previous one settled. */
  #tail: Promise<unknown> = Promise.resolve();
  #closed = false;
  readonly #writability: Writability;

  private constructor(path: string, opts: FileStoreOptions, loaded: Loaded) {
    this.#path = path;
    this.#historyLimit = opts.historyLimit;
    this.#apps = loaded.apps;
    this.#broken = loaded.broken;
    this.#onListenerError = opts.onListenerError ?? (() => {});
    this.#pools = opts.pools;
    this.#writability = new Writability(path, opts.probeInterval ?? 5000);
  }

  /** Whether the file can be written now (the last write's or probe's outcome), for `/readyz` and `/metrics`. */
  get writable(): boolean {
    return this.#writability.writable;
  }

  health(): StoreHealth {
    return this.#writability.health();
  }

  /** Loads the file (a missing file is an empty store); rejects if it exists but cannot be used. */
  static async open(opts: FileStoreOptions): Promise<FileStore> {
    if (!Number.isInteger(opts.historyLimit) || opts.historyLimit < 1) {
      throw new ProcessError('BUG', `historyLimit must be a positive integer, got ${opts.historyLimit}`);
    }
    const path = resolve(opts.path);
    const dir = dirname(path);
    try {
      await mkdir(dir, { recursive: true });
    } catch (err) {
      throw new SwitchyardError('STORE_UNAVAILABLE', `cannot create the state directory ${dir}: ${messageOf(err)}`, { cause: err });
    }
    await removeStaleTemps(path);
    return new FileStore(path, opts, await load(path, opts.historyLimit));
  }

  async get(app: string): Promise<RoutingState | null> {
    const broken = this.#broken.get(app);
    if (broken !== undefined) throw broken.error;
    return this.#apps.get(app)?.state ?? null;
  }

  async getMany(apps: readonly string[], onInvalid?: (err: InvalidStateError) => void): Promise<Map<string, RoutingState>> {
    const out = new Map<string, RoutingState>();
    for (const app of apps) {
      const broken = this.#broken.get(app);
      if (broken !== undefined) onInvalid?.(broken.error);
      const rec = this.#apps.get(app);
      if (rec) out.set(app, rec.state);
    }
    return out;
  }

  async listApps(): Promise<string[]> {
    return [...new Set([...this.#apps.keys(), ...this.#broken.keys()])].sort();
  }

  async history(app: string, limit: number, offset = 0): Promise<HistoryEntry[]> {
    const entries = this.#apps.get(app)?.history ?? this.#broken.get(app)?.history ?? [];
    const from = Math.max(0, Math.floor(offset));
    return entries.slice(from, from + Math.max(0, Math.floor(limit)));
  }

  async compareAndSet(next: RoutingState, expected: number | null, opts: CasOptions = {}): Promise<CasResult> {
    // A wrong revision or a state that breaks an invariant is a caller's bug, not a conflict:
    // fail loudly instead of answering ok:false, and write nothing.
    checkWrite(next, expected, this.#pools, opts.repair === true);
    if (this.#closed) throw new SwitchyardError('STORE_UNAVAILABLE', `the file store ${this.#path} is closed`);
    const run = this.#tail.then(() => this.#casNow(next, expected));
    this.#tail = run.catch(() => {});
    return run;
  }

  /** The file is this process's alone: no state turns invalid while it runs, so `onInvalid` is never called. */
  watch(listener: (state: RoutingState) => void): Unsubscribe {
    this.#listeners.add(listener);
    return () => {
      this.#listeners.delete(listener);
    };
  }

  /** Waits for queued writes; later writes reject. Reads keep answering from memory. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#writability.stop();
    await this.#tail;
  }

  /** Runs alone (see #tail), so the revision check and the write form one step. */
  async #casNow(next: RoutingState, expected: number | null): Promise<CasResult> {
    const current = this.#apps.get(next.app);
    const broken = this.#broken.get(next.app);
    if (broken !== undefined) {
      // an invalid record counts as its readable revision (0 when it has none); replacing it repairs the app
      if ((broken.error.revision ?? 0) !== expected) throw broken.error;
    } else if ((current?.state.revision ?? null) !== expected) {
      return { ok: false, current: current?.state ?? null };
    }
    const state = freezeState(next);
    const history = [freezeEntry(historyEntryOf(state)), ...(current?.history ?? broken?.history ?? [])].slice(0, this.#historyLimit);
    const apps = new Map(this.#apps).set(next.app, { state, history });
    const stillBroken = new Map(this.#broken);
    stillBroken.delete(next.app);
    await this.#write(apps, stillBroken);
    this.#apps = apps;
    this.#broken = stillBroken;
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

  async #write(apps: ReadonlyMap<string, AppRecord>, broken: ReadonlyMap<string, BrokenRecord>): Promise<void> {
    const all = Object.fromEntries([...[...broken].map(([app, b]) => [app, b.raw] as const), ...apps]);
    const text = `${JSON.stringify({ version: FILE_VERSION, apps: all }, null, 2)}\n`;
    try {
      await writeFileAtomic(this.#path, text);
      this.#writability.note();
    } catch (err) {
      this.#writability.note(err);
      throw new SwitchyardError('STORE_UNAVAILABLE', `cannot write the state file ${this.#path}: ${messageOf(err)}`, { cause: err });
    }
  }
}

interface Loaded {
  readonly apps: Map<string, AppRecord>;
  readonly broken: Map<string, BrokenRecord>;
}

async function load(path: string, historyLimit: number): Promise<Loaded> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') return { apps: new Map(), broken: new Map() }; // first start: nothing stored yet
    throw new SwitchyardError('STORE_UNAVAILABLE', `cannot read the state file ${path}: ${messageOf(err)}`, { cause: err });
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    // Never start empty over an operator's state: the next write would erase it for good.
    throw new ProcessError('STATE_FILE_INVALID', `state file ${path} is not valid JSON (${messageOf(err)}); repair it or move it away`, { cause: err });
  }
  if (!isRecord(doc) || doc.version !== FILE_VERSION || !isRecord(doc.apps)) {
    throw new ProcessError('STATE_FILE_INVALID', `state file ${path} is not a version ${FILE_VERSION} Switchyard state file ({ version: 1, apps: {...} })`);
  }
  const apps = new Map<string, AppRecord>();
  const broken = new Map<string, BrokenRecord>();
  // one app's bad record must not keep the others from loading: it is set aside, named, and kept
  for (const [app, rec] of Object.entries(doc.apps)) {
    const where = `state file ${path}, apps.${app}`;
    const history = isRecord(rec) && Array.isArray(rec.history) ? (rec.history as unknown[]).filter(isEntry).slice(0, historyLimit).map(freezeEntry) : [];
    try {
      if (!isRecord(rec)) throw new InvalidStateError(app, where, [{ path: '(root)', message: 'must be a { state, history } record' }], null);
      if (!Array.isArray(rec.history)) throw new InvalidStateError(app, where, [{ path: 'history', message: 'must be an array' }], readableRevision(rec.state));
      apps.set(app, { state: parseStoredState(rec.state, app, `${where}.state`), history });
    } catch (err) {
      if (!(err instanceof InvalidStateError)) throw err;
      broken.set(app, { raw: rec, error: err, history });
    }
  }
  return { apps, broken };
}

/** Enough of a history entry to show and to roll back to (rollback's write is checked in full). */
function isEntry(e: unknown): e is HistoryEntry {
  return isRecord(e) && Number.isInteger(e.revision) && isRecord(e.weights);
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
